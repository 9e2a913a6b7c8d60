"""Throughput of `ranking.prioritize` against a naive per-row Python baseline.

Run:  python bench/bench_priority.py [--rows 200000] [--repeat 3]

The baseline is written here, independently, from the documented formula
(module docstring of ranking/priority.py), so the run is also a cross-check:
both must agree on tier, score, flags and reason text for every row. Both run in
this process over the same DataFrame; the baseline walks it with
`itertuples`, which is what a straightforward per-row implementation does.
"""

from __future__ import annotations

import argparse
import bisect
import math
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ranking.priority import prioritize  # noqa: E402
from ranking.weights import TIERS, Weights  # noqa: E402

NOW = pd.Timestamp("2025-06-02T12:00:00Z")


def make_frame(n: int, seed: int = 42) -> tuple[pd.DataFrame, np.ndarray]:
    """Tickets shaped like a worker batch: ISO strings, some holes, a heavy-tailed spend."""
    rng = np.random.default_rng(seed)
    today = NOW.normalize().tz_localize(None)
    frame = pd.DataFrame(
        {
            "ticket_id": [f"T-{i}" for i in range(n)],
            "influence": np.clip(rng.lognormal(3.0, 0.6, n), 1, 100).round(),
            "monthly_spend": rng.lognormal(5, 1.5, n),
            "contract_end": (today + pd.to_timedelta(rng.integers(-60, 400, n), unit="D"))
            .strftime("%Y-%m-%d"),
            "complaint": rng.random(n) ** 2,
            "social_mention": rng.random(n) < 0.08,
            "ticket_created_at": (NOW - pd.to_timedelta(rng.random(n) * 96, unit="h"))
            .strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
    )
    for col in ("influence", "monthly_spend", "contract_end", "complaint"):
        frame.loc[rng.random(n) < 0.05, col] = None
    book = rng.lognormal(5, 1.5, 50_000)
    return frame, book


# --- naive baseline: one Python call per ticket -------------------------------


def _num(value: object) -> float:
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan
    return x


def _parse(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        ts = datetime.fromisoformat(value)
    except ValueError:
        return None
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


def naive_row(row, w: Weights, now: datetime, book: list[float]) -> tuple[str, float, tuple, str]:
    comps = ("influence", "spend", "renewal", "complaint", "waiting")
    total = sum(getattr(w, c) for c in comps)

    infl = _num(row.influence)
    c_infl = 0.0 if math.isnan(infl) else ((min(max(infl, 1), 100) - 1) / 99) ** 1.5

    spend = _num(row.monthly_spend)
    pct = 0.0
    if not math.isnan(spend) and spend > 0 and book:
        lo, hi = bisect.bisect_left(book, spend), bisect.bisect_right(book, spend)
        pct = (lo + hi) / (2 * len(book))

    end = _parse(row.contract_end)
    days_left = math.nan if end is None else (end.date() - now.date()).days
    if math.isnan(days_left) or days_left < -30 or days_left >= w.renewal_horizon_days:
        c_ren = 0.0
    elif days_left < 0:
        c_ren = 1.0
    else:
        c_ren = 1 - days_left / w.renewal_horizon_days

    raw = _num(row.complaint)
    raw = math.nan if math.isnan(raw) else min(max(raw, 0.0), 1.0)
    social = bool(row.social_mention)
    c_comp = 0.0 if math.isnan(raw) else raw
    if social and c_comp > 0:
        c_comp = max(c_comp, w.complaint_threshold)

    created = _parse(row.ticket_created_at)
    hours = math.nan if created is None else max((now - created).total_seconds() / 3600, 0.0)
    c_wait = 0.0 if math.isnan(hours) else min(hours / w.sla_hours, 1.0)

    contrib = [w.influence * c_infl, w.spend * pct, w.renewal * c_ren,
               w.complaint * c_comp, w.waiting * c_wait]
    contrib = [c / total for c in contrib]
    score = sum(contrib)

    eps = 1e-9
    capped = floored = False
    if score >= w.tier_urgent - eps:
        tier = "urgent"
        if score - contrib[0] < w.tier_high - eps:
            tier, capped = "high", True
    elif score >= w.tier_high - eps:
        tier = "high"
    elif score >= w.tier_normal - eps:
        tier = "normal"
    else:
        tier = "low"
    if not math.isnan(hours) and hours >= 2 * w.sla_hours and tier in ("normal", "low"):
        tier, floored = "high", True

    labels = [
        f"influence {int(round(infl)) if not math.isnan(infl) else 1}",
        f"spend top {min(max(math.ceil(round((1 - pct) * 100, 6)), 1), 100)}%",
        _renewal_label(days_left),
        f"{'public ' if social else ''}complaint {round(c_comp * 10) / 10:.1f}",
        (f"waiting {int(hours // 24)}d" if hours >= 48 else f"waiting {int(hours)}h")
        + f" vs {w.sla_hours:g}h SLA" if not math.isnan(hours) else "",
    ]
    ranked = sorted(range(5), key=lambda i: -contrib[i])[:3]
    pieces = [f"{labels[i]} (+{math.floor(contrib[i] * 100 + 0.5) / 100:.2f})"
              for i in ranked if math.floor(contrib[i] * 100 + 0.5) > 0]
    reason = f"{tier.capitalize()}: {', '.join(pieces) or 'no priority signals'}"
    if capped:
        reason += "; kept below Urgent: influence alone can't make a ticket urgent"
    if floored:
        reason += "; raised to High: waited over 2x SLA"

    flags = tuple(
        name for name, on in (
            ("VIP", pct >= w.vip_spend_percentile),
            ("INFLUENCER", not math.isnan(infl) and infl >= w.influencer_score),
            ("RENEWAL_SOON", not math.isnan(days_left) and -30 <= days_left <= w.renewal_soon_days),
            ("SOCIAL_COMPLAINT", social and not math.isnan(raw) and raw >= w.complaint_threshold),
            ("AGED", not math.isnan(hours) and hours >= w.aged_hours),
        ) if on
    )
    return tier, score, flags, reason


def _renewal_label(days: float) -> str:
    if math.isnan(days):
        return ""
    d = int(days)
    return {1: "renewal tomorrow", 0: "renewal today", -1: "contract ended yesterday"}.get(
        d, f"renewal in {d} days" if d > 1 else f"contract ended {-d} days ago"
    )


def naive(frame: pd.DataFrame, w: Weights, book: np.ndarray) -> list[tuple[str, float, tuple, str]]:
    ref = sorted(float(x) for x in book if not math.isnan(x))
    now = NOW.to_pydatetime()
    return [naive_row(row, w, now, ref) for row in frame.itertuples(index=False)]


# --- run ----------------------------------------------------------------------


def best_of(repeat: int, fn):
    best, result = math.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    w = Weights()
    frame, book = make_frame(args.rows)
    t_vec, out = best_of(args.repeat, lambda: prioritize(frame, w, now=NOW, spend_book=book))
    t_naive, base = best_of(1, lambda: naive(frame, w, book))

    tiers = np.array([b[0] for b in base], dtype=object)
    scores = np.array([b[1] for b in base])
    flags = pd.Series([b[2] for b in base], index=out.index)
    tier_agree = (out["tier"].to_numpy(dtype=object) == tiers).mean()
    max_score_diff = float(np.abs(out["score"].to_numpy() - scores).max())
    flag_agree = (out["flags"] == flags).mean()
    reasons = np.array([b[3] for b in base], dtype=object)
    same_reason = out["reason"].to_numpy(dtype=object) == reasons
    reason_agree = same_reason.mean()
    if reason_agree < 1.0:
        i = int(np.argmin(same_reason))
        print(f"first reason mismatch (row {i}):")
        print(f"  vectorized: {out['reason'].iloc[i]}\n  naive:      {reasons[i]}")

    n = len(frame)
    print(f"rows                     {n:,}")
    print(f"prioritize (vectorized)  {t_vec:8.3f} s  {n / t_vec:12,.0f} rows/s"
          f"  (best of {args.repeat})")
    print(f"naive per-row Python     {t_naive:8.3f} s  {n / t_naive:12,.0f} rows/s"
          "  (same outputs: tier, score, flags, reason)")
    print(f"speed-up                 {t_naive / t_vec:8.1f} x")
    print(f"agreement on {n:,} rows: tiers {tier_agree:.4%}, flags {flag_agree:.4%}, "
          f"reasons {reason_agree:.4%}, max |score diff| {max_score_diff:.2e}")
    print("tier mix                 " + ", ".join(
        f"{t} {(out['tier'] == t).mean():.1%}" for t in TIERS))
    if min(tier_agree, flag_agree, reason_agree) < 1.0 or max_score_diff > 1e-9:
        sys.exit("MISMATCH between vectorized and naive implementations")


if __name__ == "__main__":
    main()
