"""Ticket priority: many tickets at once, as whole-column numpy arithmetic.

A worker ranks a batch of tickets per job and `clout rank` ranks whole
exports, so the maths here runs on columns, never row by row. Every component
is squeezed into 0..1 first, so the admin-facing weights in `Weights` mean
"share of the score" and the score itself stays 0..1 whatever they are.

Components (each 0..1, before weighting):

influence  ((influence - 1) / 99) ** 1.5.  The influence score is already
           calibrated so the median user is ~20; the convex curve keeps those
           users near zero (20 -> 0.08) while the top of the scale still
           counts (60 -> 0.46, 80 -> 0.70, 100 -> 1.0).
spend      Mid-rank percentile of the customer's monthly spend in the whole
           customer book: (#book below + #book at-or-below) / (2 * len(book)).
           Percentiles make the weight independent of currency and of a few
           giant accounts; the mid-rank keeps ties (many customers on the same
           plan) from all looking like the top of the book. Spend <= 0 or
           unknown gives 0: a free account gets no spend boost.
renewal    Linear 1 - days_left / renewal_horizon_days for a contract ending
           within the horizon; after the end it falls linearly from 1 to 0 over
           `renewal_grace_days` (the renewal is being lost; no cliff when the grace
           ends); 0 when further out, longer past, or unknown.
complaint  The `complaint` column (0..1, e.g. from `ranking.sentiment`),
           raised to at least `complaint_threshold` when the customer
           mentions going public: a public complaint matters even when the
           wording is mild.
waiting    Hours waited / sla_hours, capped at 1.

Fairness guard, applied after the thresholds:
  * a ticket that waited >= 2 x SLA is at least "high", whoever sent it;
  * "urgent" needs the score *without* influence to reach `tier_high`, so
    influence can sharpen a real problem but never creates one.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from functools import lru_cache

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .weights import TIERS, Weights

__all__ = [
    "COMPONENTS",
    "FLAGS",
    "OUTPUT_COLUMNS",
    "REQUIRED_COLUMNS",
    "influence_curve",
    "map_tiers",
    "prioritize",
    "renewal_urgency",
    "share_thresholds",
    "share_weights",
    "spend_percentile",
]

COMPONENTS: tuple[str, ...] = ("influence", "spend", "renewal", "complaint", "waiting")
FLAGS: tuple[str, ...] = ("VIP", "INFLUENCER", "RENEWAL_SOON", "SOCIAL_COMPLAINT", "AGED")
OUTPUT_COLUMNS: tuple[str, ...] = ("tier", "score", "flags", "reason") + tuple(
    f"c_{name}" for name in COMPONENTS
)
REQUIRED_COLUMNS: tuple[str, ...] = (
    "ticket_id",
    "influence",
    "monthly_spend",
    "contract_end",
    "ticket_created_at",
)

INFLUENCE_CURVE = 1.5  # exponent of the influence curve (see module docstring)
REASON_TOP = 3
_TOL = 1e-9  # score == threshold must reach the tier despite float sums

_URGENT, _HIGH, _NORMAL, _LOW = range(4)  # indexes into TIERS
_TRUE_STRINGS = frozenset({"true", "t", "yes", "y", "1", "1.0"})
_DAY = pd.Timedelta(days=1)
_HOUR = pd.Timedelta(hours=1)


def prioritize(
    frame: pd.DataFrame,
    weights: Weights,
    *,
    now: pd.Timestamp | datetime,
    spend_book: pd.Series | np.ndarray | None = None,
    tier_shares: tuple[float, float, float] | None = None,
) -> pd.DataFrame:
    """Tier, score, flags and a one-line reason for every ticket in `frame`.

    `now` is required rather than defaulting to the clock so that a ranking
    can be replayed and previewed exactly. `spend_book` should be the spend of
    every customer; without it spend is ranked within `frame` only, which
    makes a ticket's priority depend on what else happens to be in the batch.

    An optional `reason_note` column (text) is appended to a row's reason (e.g.
    "spend not ranked: no rate for XYZ"). Missing columns among `complaint`,
    `social_mention`, `desk_priority` and missing/unparseable values anywhere
    count as "no signal" (0). The
    columns in `REQUIRED_COLUMNS` must exist (they may hold NaN) so that a
    misspelt column fails loudly instead of silently ranking on nothing.
    `desk_priority` is copied to the output untouched when present.

    `tier_shares` (urgent, high, normal) sets the tier thresholds from this
    frame's own scores (see `share_weights`), for ranking a whole book at once;
    the service instead passes weights whose thresholds came from the open
    tickets' recent scores.
    """
    _check_weights(weights)
    if len(frame) == 0:
        return _empty_output(frame)
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"prioritize: frame lacks column(s) {', '.join(missing)}")

    sig = _read_signals(frame, _utc_timestamp(now), spend_book)
    contrib = _components(sig, weights) * _weight_shares(weights)
    score = np.clip(contrib.sum(axis=1), 0.0, 1.0)
    if tier_shares is not None:
        weights = share_weights(weights, score, *tier_shares)

    base = _tier_index(score, weights)
    capped = (base == _URGENT) & (score - contrib[:, 0] < weights.tier_high - _TOL)
    tier = np.where(capped, _HIGH, base)
    floored = ((weights.waiting_floor_slas > 0)
               & (sig.hours >= weights.waiting_floor_slas * weights.sla_hours) & (tier > _HIGH))
    tier = np.where(floored, _HIGH, tier)

    reason = _reasons(tier, contrib, sig, capped, floored, weights)
    if "reason_note" in frame.columns:  # what the caller knows the score left out
        note = pa.array(frame["reason_note"].fillna("").astype(str).to_numpy(dtype=object),
                        type=pa.large_string())
        reason = pc.if_else(pc.not_equal(note, _NOTHING),
                            pc.binary_join_element_wise(reason, note, _NOTE_SEPARATOR), reason)
    out = pd.DataFrame(
        {
            "tier": pd.array(_take(_TIER_NAMES, tier), dtype="str"),
            "score": score,
            "flags": _flags(sig, weights),
            "reason": pd.array(reason, dtype="str"),
        },
        index=frame.index,
    )
    for i, name in enumerate(COMPONENTS):
        out[f"c_{name}"] = contrib[:, i]
    if "desk_priority" in frame.columns:
        out["desk_priority"] = frame["desk_priority"].array
    return out


@dataclass(frozen=True, slots=True)
class _Signals:
    """Raw per-row inputs after coercion; NaN = unknown (except where noted)."""

    influence: np.ndarray
    spend_pct: np.ndarray  # 0 when unknown
    days_left: np.ndarray  # whole days to contract end, negative once ended
    complaint: np.ndarray  # clipped 0..1, before the social boost
    social: np.ndarray  # bool
    hours: np.ndarray  # hours waited, 0 when unknown or in the future


def _read_signals(
    frame: pd.DataFrame, now: pd.Timestamp, spend_book: pd.Series | np.ndarray | None
) -> _Signals:
    spend = _numeric(frame, "monthly_spend")
    book = spend if spend_book is None else _as_float(spend_book)
    return _Signals(
        influence=_numeric(frame, "influence"),
        spend_pct=spend_percentile(spend, book),
        days_left=_days_until(frame["contract_end"], now),
        complaint=np.clip(_numeric(frame, "complaint"), 0.0, 1.0),
        social=_boolean(frame, "social_mention"),
        hours=_hours_since(frame["ticket_created_at"], now),
    )


def _components(sig: _Signals, weights: Weights) -> np.ndarray:
    """(n, 5) matrix of 0..1 components in `COMPONENTS` order, never NaN."""
    return np.column_stack(
        [
            influence_curve(sig.influence),
            sig.spend_pct,
            renewal_urgency(sig.days_left, weights.renewal_horizon_days,
                            weights.renewal_grace_days),
            _boosted_complaint(sig, weights),
            np.clip(sig.hours / weights.sla_hours, 0.0, 1.0),
        ]
    )


def _boosted_complaint(sig: _Signals, weights: Weights) -> np.ndarray:
    # Going public makes a complaint louder; it doesn't turn praise into one.
    known = np.nan_to_num(sig.complaint)
    return np.where(sig.social & (known > 0), np.fmax(known, weights.complaint_threshold), known)


def _weight_shares(weights: Weights) -> np.ndarray:
    w = np.array([getattr(weights, name) for name in COMPONENTS], dtype=float)
    return w / w.sum()


def _flags(sig: _Signals, weights: Weights) -> np.ndarray:
    """Tuple of flag names per row. NaN compares False, so unknown never flags."""
    with np.errstate(invalid="ignore"):
        bits = np.column_stack(
            [
                sig.spend_pct >= weights.vip_spend_percentile,
                sig.influence >= weights.influencer_score,
                (sig.days_left <= weights.renewal_soon_days)
                & (sig.days_left >= -weights.renewal_grace_days),
                sig.social & (sig.complaint >= weights.complaint_threshold),
                sig.hours >= weights.aged_hours,
            ]
        )
    masks = bits.astype(np.int64) @ (1 << np.arange(len(FLAGS), dtype=np.int64))
    return _FLAG_TABLE[masks]


def share_thresholds(scores: np.ndarray | pd.Series, urgent: float, high: float,
                     normal: float) -> tuple[float, float, float]:
    """Tier thresholds that give about these shares of `scores` to each tier.

    "At most 5% urgent and 20% high": the urgent threshold is the score the top 5%
    reach, the high one what the next 20% reach, and so on. The guards still apply
    after the thresholds (influence alone never makes Urgent; a long wait lifts to
    High), so the shares are "at most" for urgent and close for the rest. With no
    scores yet, every threshold is 0.
    """
    values = np.asarray(scores, dtype=float)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return 0.0, 0.0, 0.0
    cuts = np.clip(1.0 - np.cumsum([urgent, high, normal]), 0.0, 1.0)
    # "higher": a threshold is a score some ticket actually has, so ties never push
    # a tier over its share by more than the tie itself.
    t = np.quantile(values, cuts, method="higher")
    return float(t[0]), float(t[1]), float(t[2])


MIN_SHARE_SCORES = 20  # fewer scores than this say nothing about shares: fixed thresholds


def share_weights(weights: Weights, scores: np.ndarray | pd.Series, urgent: float, high: float,
                  normal: float) -> Weights:
    """`weights` with tier thresholds taken from `scores` by `share_thresholds`.

    Too few scores (< `MIN_SHARE_SCORES`) keep the fixed thresholds. The high
    threshold stays above 0, because the guard "influence alone never makes
    Urgent" compares the score without influence against it.
    """
    values = np.asarray(scores, dtype=float)
    if np.count_nonzero(np.isfinite(values)) < MIN_SHARE_SCORES:
        return weights
    t_urgent, t_high, t_normal = share_thresholds(values, urgent, high, normal)
    t_high = max(t_high, 1e-6)
    return replace(weights, tier_urgent=max(t_urgent, t_high), tier_high=t_high,
                   tier_normal=min(t_normal, t_high))


def map_tiers(tiers: pd.Series, mapping: dict[str, str]) -> pd.Series:
    """Translate Clout tiers into one desk's priority values.

    Raises ValueError (not a silent NaN) when the desk's mapping lacks a tier
    that occurs, because writing an empty priority back to a desk is worse
    than failing the job where the config error is visible.
    """
    present = pd.unique(tiers.dropna())
    unmapped = sorted(str(t) for t in present if t not in mapping)
    if unmapped:
        raise ValueError(
            f"tier mapping has no value for tier(s) {', '.join(map(repr, unmapped))}; "
            f"mapped tiers: {', '.join(sorted(mapping))}"
        )
    return tiers.map(mapping)


# --- normalisation curves (public so previews and docs can plot them) -----


def influence_curve(influence: np.ndarray) -> np.ndarray:
    """1..100 influence -> 0..1; unknown -> 0. See module docstring."""
    x = (np.clip(influence, 1.0, 100.0) - 1.0) / 99.0
    return np.nan_to_num(x**INFLUENCE_CURVE)


def spend_percentile(spend: np.ndarray, book: np.ndarray) -> np.ndarray:
    """Mid-rank percentile of each spend within `book`; <= 0 or unknown -> 0."""
    # Searching sorted needles is ~3x faster (cache-friendly) than random ones on big
    # batches; the results are scattered back to the rows' order.
    order = np.argsort(spend, kind="stable")
    needles = spend[order]
    if book.shape == spend.shape and np.array_equal(book, spend, equal_nan=True):
        ref = needles[np.isfinite(needles)]  # ranking the book itself: one sort serves both
    else:
        ref = np.sort(book[np.isfinite(book)])
    if ref.size == 0:
        return np.zeros_like(spend)
    pct_sorted = (np.searchsorted(ref, needles, side="left")
                  + np.searchsorted(ref, needles, side="right")) / (2.0 * ref.size)
    pct = np.empty_like(pct_sorted)
    pct[order] = pct_sorted
    return np.where(np.isfinite(spend) & (spend > 0), pct, 0.0)


def renewal_urgency(days_left: np.ndarray, horizon_days: float,
                    grace_days: float = 30.0) -> np.ndarray:
    """Days until contract end -> 0..1; see module docstring. After the end, urgency
    falls linearly from 1 to 0 over `grace_days`: no cliff, and an ended contract never
    outranks one renewing soon for longer than it deserves."""
    with np.errstate(invalid="ignore", divide="ignore"):
        ahead = np.clip(1.0 - days_left / horizon_days, 0.0, 1.0)
        after = (np.clip(1.0 + days_left / grace_days, 0.0, 1.0) if grace_days > 0
                 else np.zeros_like(days_left, dtype=float))
        urgency = np.where(days_left < 0, after, ahead)
    return np.nan_to_num(urgency)


# --- input coercion ------------------------------------------------------


def _check_weights(weights: Weights) -> None:
    """Guard against values that would make the score NaN or leave 0..1."""
    for name in COMPONENTS:
        value = getattr(weights, name)
        if not np.isfinite(value) or value < 0:
            raise ValueError(f"weight {name!r} must be a finite number >= 0, got {value!r}")
    if sum(getattr(weights, name) for name in COMPONENTS) <= 0:
        raise ValueError("weights: at least one component weight must be > 0")
    for name in ("sla_hours", "renewal_horizon_days"):
        if not getattr(weights, name) > 0:
            raise ValueError(f"weight {name!r} must be > 0, got {getattr(weights, name)!r}")


def _utc_timestamp(value: pd.Timestamp | datetime) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    if ts is pd.NaT:
        raise ValueError("prioritize: `now` must be a real timestamp")
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _as_float(values: pd.Series | np.ndarray) -> np.ndarray:
    return pd.to_numeric(pd.Series(np.asarray(values).ravel()), errors="coerce").to_numpy(
        dtype=float, na_value=np.nan
    )


def _numeric(frame: pd.DataFrame, column: str) -> np.ndarray:
    if column not in frame.columns:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def _boolean(frame: pd.DataFrame, column: str) -> np.ndarray:
    """Booleans as desks send them: bools, 0/1, "true"/"yes"; unknown -> False."""
    if column not in frame.columns:
        return np.zeros(len(frame), dtype=bool)
    col = frame[column]
    if pd.api.types.is_bool_dtype(col.dtype) or pd.api.types.is_numeric_dtype(col.dtype):
        return col.fillna(0).to_numpy(dtype=float) != 0
    return col.astype(str).str.strip().str.lower().isin(_TRUE_STRINGS).to_numpy(dtype=bool)


def _to_utc(col: pd.Series) -> pd.Series:
    return pd.to_datetime(col, errors="coerce", utc=True, format="ISO8601")


def _days_until(col: pd.Series, now: pd.Timestamp) -> np.ndarray:
    """Whole calendar days (UTC) from today to each date; NaN when unknown."""
    end = _to_utc(col).dt.normalize()
    return ((end - now.normalize()) / _DAY).to_numpy(dtype=float, na_value=np.nan)


def _hours_since(col: pd.Series, now: pd.Timestamp) -> np.ndarray:
    """Hours waited; 0 when unknown or in the future (clock skew): no waiting signal."""
    hours = ((now - _to_utc(col)) / _HOUR).to_numpy(dtype=float, na_value=np.nan)
    return np.clip(np.nan_to_num(hours, nan=0.0), 0.0, None)


def _tier_index(score: np.ndarray, weights: Weights) -> np.ndarray:
    return np.select(
        [
            score >= weights.tier_urgent - _TOL,
            score >= weights.tier_high - _TOL,
            score >= weights.tier_normal - _TOL,
        ],
        [_URGENT, _HIGH, _NORMAL],
        default=_LOW,
    )


# --- output --------------------------------------------------------------

def _table(strings: list) -> np.ndarray:
    """1-d object array; used for lookup tables indexed by integer codes."""
    table = np.empty(len(strings), dtype=object)
    table[:] = strings
    return table


# All 32 possible flag tuples, so each row's flags are one table lookup.
_FLAG_TABLE = _table(
    [tuple(f for i, f in enumerate(FLAGS) if mask >> i & 1) for mask in range(1 << len(FLAGS))]
)


def _label_keys(sig: _Signals, weights: Weights) -> np.ndarray:
    """Per row and component, the index of its phrase in `_phrase_tables`' list.

    Every phrase comes from a small table indexed by an integer key (influence
    1..100, top-% 1..100, days, tenths of complaint, hours/days), so a million rows
    cost a few integer operations, never a million formats. Values outside a
    component's contributing range are clipped; their phrase is never shown
    because their contribution is 0. Returns an (n, 5) matrix, `COMPONENTS` order.
    """
    # Floored, like the flags' ">=" tests: "influence 60" always comes with INFLUENCER at 60.
    infl_key = np.clip(np.nan_to_num(np.floor(sig.influence), nan=1.0), 1, 100)
    top_key = np.clip(np.ceil(np.round((1.0 - sig.spend_pct) * 100.0, 6)), 1, 100)

    lo, hi = _renewal_span(weights)
    day_key = np.clip(np.nan_to_num(sig.days_left, nan=hi), lo, hi) - lo

    # The complaint as measured (floored to tenths, like the flag's ">=" test), "public"
    # when it went public: the label and SOCIAL_COMPLAINT agree; the boost going public
    # gives shows in the contribution.
    tenth = np.clip(np.floor(np.round(np.nan_to_num(sig.complaint) * 10, 6)), 0, 10)
    complaint_key = tenth + 11 * sig.social

    h = sig.hours
    wait_key = np.where(h < 48, np.floor(h), 46 + np.minimum(h // 24, _MAX_LABEL_DAYS))

    offsets = _phrase_offsets(lo, hi)
    keys = np.empty((len(h), len(COMPONENTS)), dtype=np.int64)
    for i, key in enumerate((infl_key, top_key, day_key, complaint_key, wait_key)):
        np.add(key, offsets[i], out=keys[:, i], casting="unsafe")
    return keys


def _renewal_span(weights: Weights) -> tuple[int, int]:
    """Days covered by the renewal phrases: from just past the grace to just past the horizon."""
    lo = -int(np.ceil(weights.renewal_grace_days)) - 1
    hi = int(min(np.ceil(weights.renewal_horizon_days), _MAX_LABEL_DAYS)) + 1
    return lo, hi


def _component_phrases(lo: int, hi: int, sla_hours: float) -> list[list[str]]:
    sla = f" vs {sla_hours:g}h SLA"
    return [
        [f"influence {i}" for i in range(101)],
        [f"spend top {i}%" for i in range(101)],
        [_renewal_phrase(d) for d in range(lo, hi + 1)],
        [f"{kind}complaint {t / 10:.1f}" for kind in ("", "public ") for t in range(11)],
        # Index h (< 48) -> "waiting {h}h ..."; index 46 + d (d >= 2) -> "waiting {d}d ...".
        [f"waiting {i}h{sla}" for i in range(48)]
        + [f"waiting {d}d{sla}" for d in range(2, _MAX_LABEL_DAYS + 1)],
    ]


def _phrase_offsets(lo: int, hi: int) -> np.ndarray:
    sizes = [101, 101, hi - lo + 1, 22]  # the first four lists of `_component_phrases`
    return np.cumsum([0, *sizes])


@lru_cache(maxsize=8)
def _phrase_tables(lo: int, hi: int, sla_hours: float, floor_slas: float
                   ) -> tuple[pa.Array, pa.Array, pa.Array, int, int]:
    """The reason's pieces, pre-joined so a row is six lookups and one join.

    head[tier * P + p]   "High: " + phrase p (p = P - 1: "no priority signals")
    tail[p]              ", " + phrase p, or "" at index P (an unshown slot)
    last[cents * 3 + k]  " (+0.31)" + guard note k (none, kept below Urgent, raised)
    and P and the index of "no priority signals".
    """
    phrases = [p for group in _component_phrases(lo, hi, sla_hours) for p in group]
    phrases.append(_NO_SIGNALS)
    size = len(phrases)
    head = _text([t.capitalize() + ": " + p for t in TIERS for p in phrases])
    tail = _text([", " + p for p in phrases] + [""])
    notes = ("", "; kept below Urgent: influence alone can't make a ticket urgent",
             f"; raised to High: waited over {floor_slas:g}x SLA")
    last = _text([amount + note for amount in _AMOUNT_TEXT for note in notes])
    return head, tail, last, size, size - 1


def _renewal_phrase(days: int) -> str:
    if days > 1:
        return f"renewal in {days} days"
    if days == 1:
        return "renewal tomorrow"
    if days == 0:
        return "renewal today"
    if days == -1:
        return "contract ended yesterday"
    return f"contract ended {-days} days ago"


def _text(strings: list[str]) -> pa.Array:
    # 64-bit offsets: a book of tens of millions of reasons passes 2 GiB of text.
    return pa.array(strings, type=pa.large_string())


_MAX_LABEL_DAYS = 9999  # label tables stop here; longer spans print as 9999 days
_NO_SIGNALS = "no priority signals"
_AMOUNT_TEXT = [""] + [f" (+{c / 100:.2f})" for c in range(1, 101)]  # "" for 0 cents
_AMOUNTS = _text(_AMOUNT_TEXT)
_TIER_NAMES = _text(list(TIERS))
_NOTHING = pa.scalar("", type=pa.large_string())
_NOTE_SEPARATOR = pa.scalar("; ", type=pa.large_string())


def _slot_components(contrib: np.ndarray, slots: int) -> list[np.ndarray]:
    """For each of the first `slots` places, which component is there per row: the
    largest contribution first, ties in `COMPONENTS` order (a stable descending sort).

    With five components, counting who beats whom is several times cheaper than a
    row-wise argsort of the (n, 5) matrix.
    """
    n, k = contrib.shape
    cols = [np.ascontiguousarray(contrib[:, i]) for i in range(k)]
    ranks = []
    for j in range(k):
        rank = np.zeros(n, dtype=np.int8)
        for i in range(k):
            if i != j:
                rank += (cols[i] > cols[j]) if i > j else (cols[i] >= cols[j])
        ranks.append(rank)
    picks = []
    for slot in range(slots):
        comp = np.zeros(n, dtype=np.int64)
        for j in range(1, k):
            comp += j * (ranks[j] == slot)
        picks.append(comp)
    return picks


def _take(table: pa.Array, index: np.ndarray) -> pa.Array:
    return table.take(pa.array(index, type=pa.int64()))


def _reasons(
    tier: np.ndarray,
    contrib: np.ndarray,
    sig: _Signals,
    capped: np.ndarray,
    floored: np.ndarray,
    weights: Weights,
) -> pa.Array:
    """'High: renewal in 12 days (+0.31), spend top 4% (+0.22), influence 71 (+0.18)'.

    Only the up-to-three largest contributions are shown so the line fits a
    desk's priority-reason field; a note is appended when the fairness
    guard, not the score, decided the tier, so agents never see a reason
    that contradicts the tier. Every piece is an integer index into a small
    table of pre-joined phrases; Arrow gathers and joins them in C, so there
    is no per-row Python work, and the result is already the Arrow string
    array pandas keeps text in.
    """
    rows = np.arange(len(tier))
    keys = _label_keys(sig, weights)
    head, tail, last, size, none_index = _phrase_tables(
        *_renewal_span(weights), weights.sla_hours, weights.waiting_floor_slas)
    note = np.where(floored, 2, np.where(capped, 1, 0))
    pieces = []
    for slot, comp in enumerate(_slot_components(contrib, REASON_TOP)):
        # Half-up to whole cents; anything that would print as +0.00 is no reason.
        cents = np.clip(np.floor(contrib[rows, comp] * 100 + 0.5), 0, 100).astype(np.int64)
        shown = cents > 0
        label = keys[rows, comp]
        if slot == 0:
            pieces.append(_take(head, tier * size + np.where(shown, label, none_index)))
        else:
            pieces.append(_take(tail, np.where(shown, label, size)))
        if slot < REASON_TOP - 1:
            pieces.append(_take(_AMOUNTS, cents))
        else:
            pieces.append(_take(last, cents * 3 + note))
    return pc.binary_join_element_wise(*pieces, _NOTHING)


def _empty_output(frame: pd.DataFrame) -> pd.DataFrame:
    data: dict[str, pd.Series] = {
        "tier": pd.Series([], dtype=str),
        "score": pd.Series([], dtype=float),
        "flags": pd.Series([], dtype=object),
        "reason": pd.Series([], dtype=str),
    }
    for name in COMPONENTS:
        data[f"c_{name}"] = pd.Series([], dtype=float)
    out = pd.DataFrame(data)
    out.index = frame.index[:0]
    if "desk_priority" in frame.columns:
        out["desk_priority"] = frame["desk_priority"].iloc[:0].array
    return out
