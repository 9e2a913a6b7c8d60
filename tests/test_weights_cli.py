"""`clout weights check` and `clout weights preview`: a weights change seen before it is made."""

from __future__ import annotations

import datetime as dt
import uuid

from click.testing import CliRunner

from plugin.cli import cli


def _event(ticket_id: str, spend: float, complaint: str = "") -> dict:
    return {"event_id": f"evt_{uuid.uuid4().hex}",
            "occurred_at": dt.datetime.now(dt.timezone.utc).isoformat(),
            "ticket": {"id": ticket_id, "subject": "Help", "description": complaint},
            "customer": {"id": f"C-{ticket_id}", "monthly_spend": spend,
                         "contract_end": (dt.date.today() + dt.timedelta(days=10)).isoformat()}}


def test_check_says_valid_or_names_the_bad_key(base_env, tmp_path):
    good = tmp_path / "good.toml"
    good.write_text("[ranking.weights]\nspend = 0.4\n")
    bad = tmp_path / "bad.toml"
    bad.write_text("[ranking.tiers]\nhigh = 0\nnormal = 0\n")
    runner = CliRunner()
    out = runner.invoke(cli, ["weights", "check", str(good)], env=base_env)
    assert out.exit_code == 0 and "valid; weights version" in out.output
    out = runner.invoke(cli, ["weights", "check", str(bad)], env=base_env)
    assert out.exit_code == 1 and "ranking.tiers.high" in out.output


def test_preview_ranks_the_open_tickets_both_ways_and_writes_nothing(runtime, post_generic, drain,
                                                                   base_env, tmp_path):
    for i, spend in enumerate([10, 50, 200, 900, 5000, 20000]):
        assert post_generic(_event(f"T-P{i}", spend, "still broken, refund now")).status_code == 202
    drain()
    decisions_before = runtime.store.count("decisions")
    proposed = tmp_path / "proposed.toml"
    proposed.write_text("[ranking.weights]\ninfluence = 0.0\nspend = 0.9\nrenewal = 0.05\n"
                        "complaint = 0.05\nwaiting = 0.0\n")
    chart = tmp_path / "tiers.png"
    out = CliRunner().invoke(cli, ["weights", "preview", str(proposed), "--plot", str(chart)],
                             env=base_env)
    assert out.exit_code == 0, out.output
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "6 open ticket(s)" in out.output and "change tier" in out.output
    assert "today:" in out.output and "proposed:" in out.output
    assert runtime.store.count("decisions") == decisions_before  # nothing recorded


def test_preview_over_a_book_file(base_env, tmp_path):
    import pandas as pd

    book = tmp_path / "book.csv"
    today = dt.date.today()
    pd.DataFrame({
        "ticket_id": [f"B-{i}" for i in range(8)],
        "influence": [10, 80, 20, 30, 95, 5, 40, 60],
        "monthly_spend": [10, 20, 5000, 80, 30, 20000, 400, 60],
        "contract_end": [(today + dt.timedelta(days=d)).isoformat() for d in (5, 300, 40, 90, 200, 20, 10, 400)],
        "ticket_created_at": [(dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=h)).isoformat()
                              for h in (1, 2, 3, 30, 5, 6, 70, 8)],
    }).to_csv(book, index=False)
    proposed = tmp_path / "proposed.toml"
    proposed.write_text("[ranking.weights]\ninfluence = 0.0\nspend = 0.9\nrenewal = 0.05\n"
                        "complaint = 0.05\nwaiting = 0.0\n")
    out = CliRunner().invoke(cli, ["weights", "preview", str(proposed), "--book", str(book)],
                             env=base_env)
    assert out.exit_code == 0, out.output
    assert "8 ticket(s) in the book" in out.output and "book/B-" in out.output
