"""`clout rank INPUT -o OUTPUT`: rank a CSV or Parquet book offline.

For a backfill or a nightly re-rank: no Redis, no store, no network. Everything
the model needs comes from the file: influence from an `influence` column
(1, "no influence", when the column is absent), spend converted to the base
currency with the settings' rates, complaint and public-mention signals from
the optional `subject`/`description` text, and the spend book is the file's
own spend (one value per customer when `customer_id` is given). The weights
are the settings' (`Settings.weights`), exactly as the service ranks.

The file is checked before anything is ranked, and every error names the row
and column: rows are numbered as in the file (CSV: the header is row 1, so the
first ticket is row 2; a record spanning several lines is still one row.
Parquet: the first record is row 1).
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path
from typing import Any

import click
import numpy as np
import pandas as pd

from ranking.currency import join_notes, no_rate_notes, to_base
from ranking.priority import COMPONENTS, OUTPUT_COLUMNS, prioritize

__all__ = ["rank_command", "read_book", "rank_book", "write_book", "BookError"]

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
REQUIRED = ("ticket_id", "monthly_spend", "contract_end", "ticket_created_at")
NUMBER_COLUMNS = ("influence", "monthly_spend")
DATE_COLUMNS = ("contract_end", "ticket_created_at")
TEXT_COLUMNS = ("subject", "description")
TEXT_CHUNK = 20_000  # rows of text scored per progress-bar step
DEFAULT_INFLUENCE = 1.0
# Columns this command writes; an input that already has them (yesterday's output
# re-ranked tonight) gets them recomputed, not duplicated.
_WRITTEN = tuple(OUTPUT_COLUMNS) + ("reason_note",)
# Progress-bar budget per stage (out of 100).
_READ, _TEXT, _RANK, _WRITE = 10, 60, 20, 10


class BookError(click.ClickException):
    """A problem with the input or output file; exits 1 with the message."""


def _format(path: Path, what: str) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise BookError(f"{what} {path}: unknown format {path.suffix or '(no extension)'!r}; "
                        "use .csv or .parquet")
    return fmt


def _need_pyarrow(path: Path) -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise BookError(f"{path}: Parquet needs pyarrow (pip install 'pyarrow>=14')") from None


def read_book(path: Path) -> tuple[pd.DataFrame, int]:
    """(frame, row number of the first record in the file). CSV cells are read as text,
    blanks as missing, so nothing is silently re-typed before it is checked."""
    fmt = _format(path, "INPUT")
    if not path.exists():
        raise BookError(f"INPUT {path}: no such file")
    if path.stat().st_size == 0:
        raise BookError(f"INPUT {path}: the file is empty (expected a header and tickets)")
    try:
        if fmt == "csv":
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""],
                                skipinitialspace=True)
            first_row = 2  # the header is row 1
        else:
            _need_pyarrow(path)
            frame = pd.read_parquet(path)
            first_row = 1
    except pd.errors.EmptyDataError:
        raise BookError(f"INPUT {path}: the file is empty (expected a header and tickets)") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as exc:
        raise BookError(f"INPUT {path}: cannot read as {fmt.upper()}: {exc}") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    if len(frame) == 0:
        raise BookError(f"INPUT {path}: no tickets (the file has a header but no rows)")
    return frame.reset_index(drop=True), first_row


def check_book(frame: pd.DataFrame, first_row: int) -> None:
    """Refuse a book the model would silently misread: missing columns, unreadable cells."""
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise BookError(f"missing required column(s): {', '.join(missing)} "
                        f"(found: {', '.join(map(str, frame.columns)) or 'none'})")
    dupes = sorted({c for c in frame.columns if list(frame.columns).count(c) > 1})
    if dupes:
        raise BookError(f"column(s) appear more than once: {', '.join(dupes)}")
    for column in NUMBER_COLUMNS:
        if column in frame.columns:
            _check_column(frame[column], column, "number", first_row)
    for column in DATE_COLUMNS:
        _check_column(frame[column], column, "date", first_row)


def _check_column(col: pd.Series, column: str, kind: str, first_row: int) -> None:
    if kind == "number":
        if pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype):
            return
        parsed = pd.to_numeric(col, errors="coerce")
    else:
        if pd.api.types.is_datetime64_any_dtype(col.dtype):
            return
        # The same parser the model uses (ranking.priority), so "readable" means ranked.
        parsed = pd.to_datetime(col, errors="coerce", utc=True, format="ISO8601")
    bad = np.flatnonzero((col.notna() & parsed.isna()).to_numpy(dtype=bool))
    if bad.size:
        i = int(bad[0])
        more = f" ({bad.size - 1} more row(s) like it)" if bad.size > 1 else ""
        raise BookError(f"row {i + first_row}, column {column}: cannot read "
                        f"{str(col.iat[i])!r} as a {kind}{more}")


def _model_frame(frame: pd.DataFrame, settings: Any) -> pd.DataFrame:
    """What `prioritize` reads, built from the book; the book itself is left as read."""
    model = pd.DataFrame(index=frame.index)
    model["ticket_id"] = frame["ticket_id"]
    model["influence"] = (pd.to_numeric(frame["influence"], errors="coerce")
                          if "influence" in frame.columns else DEFAULT_INFLUENCE)
    spend = pd.to_numeric(frame["monthly_spend"], errors="coerce").to_numpy(dtype=float,
                                                                             na_value=np.nan)
    money = settings.config.ranking.currency
    if "currency" in frame.columns:
        codes = [c.strip() if isinstance(c, str) and c.strip() else None
                 for c in frame["currency"].astype(object).tolist()]
        converted, unknown = to_base(spend, codes, money.rates, money.base)
        model["monthly_spend"] = converted
        model["reason_note"] = no_rate_notes(codes, unknown)
    else:  # no currency column: every amount is in the base currency
        model["monthly_spend"] = spend
        model["reason_note"] = ""
    model["contract_end"] = frame["contract_end"]
    model["ticket_created_at"] = frame["ticket_created_at"]
    if "desk_priority" in frame.columns:
        model["desk_priority"] = frame["desk_priority"]
    return model


def _spend_book(frame: pd.DataFrame, spend: pd.Series) -> np.ndarray:
    """The book's own spend, once per customer (rows without a customer_id count alone)."""
    if "customer_id" not in frame.columns:
        return spend.to_numpy(dtype=float)
    ids = frame["customer_id"]
    known = ids.notna().to_numpy()
    per_customer = spend[known].groupby(ids[known].astype(str).to_numpy(), sort=False).first()
    return np.concatenate([per_customer.to_numpy(dtype=float), spend[~known].to_numpy(dtype=float)])


def _text(frame: pd.DataFrame) -> pd.Series | None:
    present = [c for c in TEXT_COLUMNS if c in frame.columns]
    if not present:
        return None
    parts = [frame[c].astype(object).where(frame[c].notna(), "").astype(str) if c in frame.columns
             else pd.Series("", index=frame.index) for c in TEXT_COLUMNS]
    return parts[0] + "\n" + parts[1]


def rank_book(frame: pd.DataFrame, settings: Any, *, now: pd.Timestamp,
              advance=lambda steps, stage: None) -> pd.DataFrame:
    """The book (as read) plus reason_note, tier, score, flags (";"-joined), reason, c_*."""
    from ranking.sentiment import complaint_strength, mentions_social, unscored_notes

    model = _model_frame(frame, settings)
    text = _text(frame)
    if text is not None:
        complaint = np.zeros(len(frame))
        social = np.zeros(len(frame), dtype=bool)
        chunks = max(1, -(-len(frame) // TEXT_CHUNK))
        done = 0
        for k, start in enumerate(range(0, len(frame), TEXT_CHUNK)):
            part = text.iloc[start:start + TEXT_CHUNK]
            complaint[start:start + len(part)] = complaint_strength(part).to_numpy(dtype=float)
            social[start:start + len(part)] = mentions_social(part).to_numpy(dtype=bool)
            step = (_TEXT * (k + 1)) // chunks - done
            done += step
            advance(step, f"scoring text {min(start + len(part), len(frame))}/{len(frame)}")
        model["complaint"] = complaint
        model["social_mention"] = social
        # As the service does: text the model can't read is said, not guessed.
        model["reason_note"] = join_notes(model["reason_note"].tolist(), unscored_notes(text))
    else:
        advance(_TEXT, "no text to score")
    book = _spend_book(frame, model["monthly_spend"])
    try:
        tiers = settings.config.ranking.tiers
        # Tiers set as shares: the shares of this book, which is the whole queue to rank.
        shares = ((tiers.urgent_share, tiers.high_share, tiers.normal_share)
                  if tiers.mode == "share" else None)
        ranked = prioritize(model, settings.weights, now=now, spend_book=book, tier_shares=shares)
    except ValueError as exc:  # e.g. weights the model refuses
        raise BookError(f"cannot rank: {exc}") from None
    advance(_RANK, "ranked")
    out = frame.drop(columns=[c for c in _WRITTEN if c in frame.columns])
    out["reason_note"] = model["reason_note"].to_numpy()
    out["tier"] = ranked["tier"].array
    out["score"] = ranked["score"].to_numpy()
    out["flags"] = [";".join(f) for f in ranked["flags"].tolist()]
    out["reason"] = ranked["reason"].array
    for name in COMPONENTS:
        out[f"c_{name}"] = ranked[f"c_{name}"].to_numpy()
    return out


def write_book(out: pd.DataFrame, path: Path) -> None:
    """Written next to OUTPUT first and moved into place: no half-written book."""
    fmt = _format(path, "OUTPUT")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if fmt == "csv":
            out.to_csv(tmp, index=False)
        else:
            _need_pyarrow(path)
            out.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    except OSError as exc:
        raise BookError(f"OUTPUT {path}: cannot write: {exc}") from None
    finally:
        if tmp.exists():
            tmp.unlink()


def _now(value: str | None) -> pd.Timestamp:
    if value is None:
        return pd.Timestamp(dt.datetime.now(dt.timezone.utc))
    ts = pd.to_datetime(value, errors="coerce", utc=True, format="ISO8601")
    if ts is pd.NaT:
        raise click.BadParameter(f"cannot read {value!r} as a date", param_hint="--now")
    return ts


@click.command("rank")
@click.argument("input_path", metavar="INPUT", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", "output_path", required=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the ranked book (.csv or .parquet).")
@click.option("--now", "now_text", default=None, metavar="ISO-TIME",
              help="Rank as of this time (default: now), to replay a past ranking.")
def rank_command(input_path: Path, output_path: Path, now_text: str | None) -> None:
    """Rank a CSV or Parquet book of tickets offline (backfill, nightly re-rank).

    Columns: ticket_id, monthly_spend, contract_end, ticket_created_at (required);
    customer_id, influence (default 1), currency, subject, description,
    desk_priority (optional). Writes the book plus tier, score, flags, reason,
    reason_note and the c_* components. Uses the weights from the settings.
    """
    from plugin.settings import SettingsError, load_settings

    _format(input_path, "INPUT")
    _format(output_path, "OUTPUT")
    now = _now(now_text)
    try:
        settings = load_settings()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None

    with click.progressbar(length=100, label="Ranking", file=sys.stderr,
                           item_show_func=lambda stage: stage) as bar:
        frame, first_row = read_book(input_path)
        check_book(frame, first_row)
        bar.update(_READ, f"read {len(frame)} row(s)")
        out = rank_book(frame, settings, now=now, advance=bar.update)
        write_book(out, output_path)
        bar.update(_WRITE, "written")
    counts = out["tier"].value_counts()
    summary = ", ".join(f"{counts.get(t, 0)} {t}" for t in ("urgent", "high", "normal", "low"))
    notes = int((out["reason_note"] != "").sum())
    click.echo(f"ranked {len(out)} ticket(s) -> {output_path}: {summary}"
               + (f"; {notes} ranked without spend (no currency rate)" if notes else ""))
