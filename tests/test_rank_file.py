"""`clout rank INPUT -o OUTPUT`: a CSV or Parquet book ranked offline, with clear errors."""

from __future__ import annotations

import pandas as pd
import pytest
from click.testing import CliRunner

from plugin.rank_file import rank_command

NOW = "2025-06-02T12:00:00Z"
HEADER = "ticket_id,customer_id,influence,monthly_spend,currency,contract_end,ticket_created_at,subject,description"
ROWS = [
    "T-1,C-1,20,50,USD,2026-03-01,2025-06-02T10:00:00Z,Question,How do I export?",
    "T-2,C-2,20,20000,USD,2026-03-01,2025-06-02T10:00:00Z,Question,How do I export?",
    "T-3,C-3,80,900,EUR,2025-06-20,2025-06-01T08:00:00Z,Broken,Still broken and charged twice. Refund now!",
    "T-4,C-4,,300,,2025-09-01,2025-05-30T08:00:00Z,,",
    "T-5,C-5,35,120,GBP,,2025-06-02T11:30:00Z,Thanks,Great tool",
]


@pytest.fixture()
def env(tmp_path):
    return {"CLOUT_DATA_DIR": str(tmp_path / "data")}


def _run(env, *args):
    return CliRunner().invoke(rank_command, [*map(str, args), "--now", NOW], env=env)


def _write(tmp_path, lines, name="book.csv"):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def test_csv_round_trip_ranks_every_ticket_and_the_richer_customer_higher(tmp_path, env):
    out_path = tmp_path / "ranked.csv"
    result = _run(env, _write(tmp_path, [HEADER, *ROWS]), "-o", out_path)
    assert result.exit_code == 0, result.output
    assert "ranked 5 ticket(s)" in result.output
    out = pd.read_csv(out_path, dtype={"flags": str}, keep_default_na=False)
    assert out["ticket_id"].tolist() == ["T-1", "T-2", "T-3", "T-4", "T-5"]
    for column in ("tier", "score", "flags", "reason", "reason_note",
                   "c_influence", "c_spend", "c_renewal", "c_complaint", "c_waiting",
                   "subject", "currency", "customer_id"):
        assert column in out.columns
    assert set(out["tier"]) <= {"urgent", "high", "normal", "low"}
    assert all(r.split(":")[0].lower() == t for r, t in zip(out["reason"], out["tier"]))
    by_id = out.set_index("ticket_id")
    # Same ticket, same influence, same contract: only spend differs.
    assert by_id.loc["T-2", "score"] > by_id.loc["T-1", "score"]
    assert by_id.loc["T-2", "c_spend"] > by_id.loc["T-1", "c_spend"]
    # The complaint text was scored; flags are ";"-joined names.
    assert by_id.loc["T-3", "c_complaint"] > 0
    assert all(f == "" or set(f.split(";")) <= {"VIP", "INFLUENCER", "RENEWAL_SOON",
                                                "SOCIAL_COMPLAINT", "AGED"} for f in out["flags"])
    # Re-ranking the output (a nightly re-rank of yesterday's file) gives the same result.
    again = tmp_path / "again.csv"
    assert _run(env, out_path, "-o", again).exit_code == 0
    pd.testing.assert_frame_equal(pd.read_csv(again, dtype={"flags": str}, keep_default_na=False), out)


def test_influence_column_is_optional(tmp_path, env):
    lines = ["ticket_id,monthly_spend,contract_end,ticket_created_at",
             "T-1,100,2025-07-01,2025-06-01T00:00:00Z"]
    result = _run(env, _write(tmp_path, lines), "-o", tmp_path / "out.csv")
    assert result.exit_code == 0, result.output
    out = pd.read_csv(tmp_path / "out.csv")
    assert out.loc[0, "c_influence"] == 0


def test_parquet_round_trip(tmp_path, env):
    pytest.importorskip("pyarrow")
    book = pd.read_csv(_write(tmp_path, [HEADER, *ROWS]), dtype=str)
    book["monthly_spend"] = pd.to_numeric(book["monthly_spend"])
    book["ticket_created_at"] = pd.to_datetime(book["ticket_created_at"], utc=True)
    src = tmp_path / "book.parquet"
    book.to_parquet(src, index=False)
    result = _run(env, src, "-o", tmp_path / "ranked.parquet")
    assert result.exit_code == 0, result.output
    out = pd.read_parquet(tmp_path / "ranked.parquet")
    assert len(out) == 5 and {"tier", "reason", "c_spend"} <= set(out.columns)
    csv_result = _run(env, _write(tmp_path, [HEADER, *ROWS]), "-o", tmp_path / "ranked.csv")
    assert csv_result.exit_code == 0
    from_csv = pd.read_csv(tmp_path / "ranked.csv", keep_default_na=False)
    assert out["tier"].tolist() == from_csv["tier"].tolist()
    assert out["score"].round(9).tolist() == from_csv["score"].round(9).tolist()


def test_unknown_currency_is_ranked_without_spend_and_says_so(tmp_path, env):
    lines = [HEADER, *ROWS[:2], "T-9,C-9,20,20000,XYZ,2026-03-01,2025-06-02T10:00:00Z,Question,Hi"]
    result = _run(env, _write(tmp_path, lines), "-o", tmp_path / "out.csv")
    assert result.exit_code == 0, result.output
    assert "1 ranked without spend" in result.output
    out = pd.read_csv(tmp_path / "out.csv", keep_default_na=False).set_index("ticket_id")
    assert out.loc["T-9", "reason_note"] == "spend not ranked: no rate for XYZ"
    assert "spend not ranked: no rate for XYZ" in out.loc["T-9", "reason"]
    assert out.loc["T-9", "c_spend"] == 0
    assert out.loc["T-2", "reason_note"] == ""


def test_missing_column_exits_1_naming_it(tmp_path, env):
    lines = ["ticket_id,influence,ticket_created_at", "T-1,20,2025-06-01T00:00:00Z"]
    result = _run(env, _write(tmp_path, lines), "-o", tmp_path / "out.csv")
    assert result.exit_code == 1
    assert "missing required column(s): monthly_spend, contract_end" in result.output
    assert not (tmp_path / "out.csv").exists()


def test_bad_date_in_row_3_exits_1_naming_row_and_column(tmp_path, env):
    lines = [HEADER, ROWS[0], ROWS[1].replace("2026-03-01", "next spring"), *ROWS[2:]]
    result = _run(env, _write(tmp_path, lines), "-o", tmp_path / "out.csv")
    assert result.exit_code == 1
    assert "row 3, column contract_end: cannot read 'next spring' as a date" in result.output
    assert not (tmp_path / "out.csv").exists()


def test_bad_number_names_row_and_column(tmp_path, env):
    lines = [HEADER, *ROWS[:3], ROWS[3].replace(",300,", ",3 hundred,")]
    result = _run(env, _write(tmp_path, lines), "-o", tmp_path / "out.csv")
    assert result.exit_code == 1
    assert "row 5, column monthly_spend: cannot read '3 hundred' as a number" in result.output


def test_empty_file_and_header_only_are_clear_errors(tmp_path, env):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    result = _run(env, empty, "-o", tmp_path / "out.csv")
    assert result.exit_code == 1 and "the file is empty" in result.output
    result = _run(env, _write(tmp_path, [HEADER], "header.csv"), "-o", tmp_path / "out.csv")
    assert result.exit_code == 1 and "no tickets" in result.output


def test_unknown_extension_is_refused(tmp_path, env):
    result = _run(env, _write(tmp_path, [HEADER, *ROWS], "book.xlsx"), "-o", tmp_path / "out.csv")
    assert result.exit_code == 1 and "use .csv or .parquet" in result.output


def test_text_the_model_cannot_read_is_marked_not_scored(tmp_path, env):
    lines = [HEADER, *ROWS[:2],
             "T-DE,C-9,20,200,EUR,2026-03-01,2025-06-02T10:00:00Z,Rechnung falsch,"
             "Wir wurden zweimal belastet und niemand antwortet"]
    result = _run(env, _write(tmp_path, lines), "-o", tmp_path / "out.csv")
    assert result.exit_code == 0, result.output
    out = pd.read_csv(tmp_path / "out.csv", keep_default_na=False).set_index("ticket_id")
    assert out.loc["T-DE", "reason_note"] == "complaint not scored: language not read"
    assert out.loc["T-DE", "c_complaint"] == 0
    assert "not scored" not in out.loc["T-2", "reason_note"]


def test_tiers_by_share_follow_the_book_being_ranked(tmp_path, env):
    """With `[ranking.tiers] mode = "share"`, a book is tiered by its own scores."""
    rows = [f"T-{i},C-{i},{10 + i},{50 * (i + 1)},USD,2025-{6 + i % 6:02d}-15,"
            f"2025-06-02T{i % 12:02d}:00:00Z,Question,How do I export?" for i in range(100)]
    path = _write(tmp_path, [HEADER, *rows])
    fixed_out, share_out = tmp_path / "fixed.csv", tmp_path / "share.csv"
    assert _run(env, path, "-o", fixed_out).exit_code == 0
    share_env = {**env, "CLOUT_RANKING__TIERS__MODE": "share",
                 "CLOUT_RANKING__TIERS__URGENT_SHARE": "0.05",
                 "CLOUT_RANKING__TIERS__HIGH_SHARE": "0.20"}
    result = _run(share_env, path, "-o", share_out)
    assert result.exit_code == 0, result.output
    share = pd.read_csv(share_out)["tier"].value_counts()
    assert share.get("urgent", 0) <= 5
    assert share.get("high", 0) >= 15  # the top fifth is high, whatever the fixed cut said
    assert not pd.read_csv(fixed_out)["tier"].equals(pd.read_csv(share_out)["tier"])
