"""`clout weights preview FILE`: what a weights change would do, before anyone makes it.

The current open tickets are ranked twice at the same moment, under today's
settings and under the proposed file, with the same customers, influence and
spend book; only the weights, tiers and flags differ. No decision is recorded
and nothing is written to a desk (an influence score looked up on the way is
cached, as any lookup's is).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any, Callable

from ranking.weights import TIERS

from .ranker import rank_tickets

PAGE = 2000
BAR = 40


class _With:
    """A runtime that answers `settings` with other settings and everything else as `rt`."""

    def __init__(self, rt: Any, settings: Any) -> None:
        self._rt = rt
        self.settings = settings

    def __getattr__(self, name: str) -> Any:
        return getattr(self._rt, name)


def preview(rt: Any, proposed: Any, *, limit: int = 100_000) -> dict[str, Any]:
    """Both rankings of the open tickets: tier counts, how many move, the biggest movers."""
    now = dt.datetime.now(dt.timezone.utc)
    rows: list[dict[str, Any]] = []
    after = None
    while len(rows) < limit:
        page = rt.store.open_tickets(after, PAGE)
        if not page:
            break
        rows += [{**t, "event_id": t["last_event_id"]} for t in page]
        after = (page[-1]["source"], page[-1]["id"])
        if len(page) < PAGE:
            break
    before = rank_tickets(rt, rows, now=now)
    after_ = rank_tickets(_With(rt, proposed), rows, now=now)
    moves = []
    for b, a in zip(before, after_, strict=True):
        if b.tier != a.tier or abs(b.score - a.score) > 1e-9:
            moves.append({"source": b.source, "ticket_id": b.ticket_id, "before": b.tier,
                          "after": a.tier, "score_before": b.score, "score_after": a.score,
                          "reason_before": b.reason, "reason_after": a.reason})
    moves.sort(key=lambda m: (TIERS.index(m["before"]) - TIERS.index(m["after"]) == 0,
                              -abs(m["score_after"] - m["score_before"])))
    return {
        "tickets": len(rows),
        "changed_tier": sum(1 for m in moves if m["before"] != m["after"]),
        "before": Counter(d.tier for d in before),
        "after": Counter(d.tier for d in after_),
        "movers": moves[:20],
        "weights_before": rt.settings.weights.version(),
        "weights_after": proposed.weights.version(),
    }


def report(result: dict[str, Any], echo: Callable[[str], None]) -> None:
    n = result["tickets"]
    echo(f"{n} {result.get('what', 'open ticket(s)')}; weights {result['weights_before']} -> "
         f"{result['weights_after']}; "
         f"{result['changed_tier']} change tier.")
    if not n:
        return
    echo("")
    echo(f"{'tier':8} {'today':>6} {'proposed':>9}")
    for tier in TIERS:
        b, a = result["before"].get(tier, 0), result["after"].get(tier, 0)
        echo(f"{tier:8} {b:6d} {a:9d}  {'#' * round(BAR * b / n):<{BAR}} | {'#' * round(BAR * a / n)}")
    if result["movers"]:
        echo("")
        echo("Tickets that move most:")
        for m in result["movers"]:
            echo(f"  {m['source']}/{m['ticket_id']}: {m['before']} {m['score_before']:.2f} -> "
                 f"{m['after']} {m['score_after']:.2f}")
            echo(f"      today:    {m['reason_before']}")
            echo(f"      proposed: {m['reason_after']}")


def plot(result: dict[str, Any], path: str) -> None:
    """Before/after tier counts as a grouped bar chart (PNG). Needs matplotlib."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    x = range(len(TIERS))
    before = [result["before"].get(t, 0) for t in TIERS]
    after = [result["after"].get(t, 0) for t in TIERS]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar([i - 0.2 for i in x], before, width=0.4, label=f"today ({result['weights_before']})")
    ax.bar([i + 0.2 for i in x], after, width=0.4, label=f"proposed ({result['weights_after']})")
    ax.set_xticks(list(x), [t.capitalize() for t in TIERS])
    ax.set_ylabel("open tickets")
    ax.set_title(f"{result['tickets']} open tickets, {result['changed_tier']} change tier")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def preview_book(path: str, today: Any, proposed: Any) -> dict[str, Any]:
    """The same comparison over a CSV or Parquet book (`clout rank`'s input) instead of
    the open tickets: both rankings at one moment, nothing read from or written to the store."""
    from pathlib import Path

    import pandas as pd

    from .rank_file import check_book, rank_book, read_book

    frame, first_row = read_book(Path(path))
    check_book(frame, first_row)
    now = pd.Timestamp.now(tz="UTC")
    before = rank_book(frame, today, now=now)
    after = rank_book(frame, proposed, now=now)
    ids = frame["ticket_id"].astype(str).tolist()
    moves = []
    for i, tid in enumerate(ids):
        b_tier, a_tier = before["tier"].iat[i], after["tier"].iat[i]
        b_score, a_score = float(before["score"].iat[i]), float(after["score"].iat[i])
        if b_tier != a_tier or abs(b_score - a_score) > 1e-9:
            moves.append({"source": "book", "ticket_id": tid, "before": b_tier, "after": a_tier,
                          "score_before": b_score, "score_after": a_score,
                          "reason_before": before["reason"].iat[i],
                          "reason_after": after["reason"].iat[i]})
    moves.sort(key=lambda m: (m["before"] == m["after"], -abs(m["score_after"] - m["score_before"])))
    return {
        "what": "ticket(s) in the book",
        "tickets": len(ids),
        "changed_tier": int((before["tier"] != after["tier"]).sum()),
        "before": Counter(before["tier"].tolist()),
        "after": Counter(after["tier"].tolist()),
        "movers": moves[:20],
        "weights_before": today.weights.version(),
        "weights_after": proposed.weights.version(),
    }
