"""Benchmark: vectorised `score_influence` against a naive per-row baseline.

Why this exists: the worker scores whole customer books (and `clout rank`
whole files), so the model is written as column arithmetic. This script
keeps that claim honest by timing it, in the same process and on the same
rows, against a straightforward Python implementation of the same formula
(one loop iteration per row, `math` instead of numpy), and by checking the
two agree before printing any figure.

    python bench/bench_influence.py [--rows 100000] [--repeat 3] [--seed 7]
"""

from __future__ import annotations

import argparse
import importlib
import math
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # runnable from a checkout without installing
model = importlib.import_module("ranking.influence")
score_influence = model.score_influence


def bench_frame(rows: int, seed: int) -> pd.DataFrame:
    """`rows` customer-network rows: the calibration population (all six
    networks, silent and bought accounts, heavy followers), grouped into
    customers of 1-3 accounts so the cross-network combination is exercised."""
    frame = model.calibration_population(rows, seed).copy()
    rng = np.random.default_rng(seed + 1)
    sizes = rng.choice([1, 2, 3], size=rows, p=[0.62, 0.29, 0.09])
    owner = np.repeat(np.arange(rows), sizes)[:rows]
    frame["customer_id"] = np.char.add("P-", owner.astype(str))
    return frame


# ---------------------------------------------------------------- naive baseline


def _num(value: Any) -> float:
    if value is None:
        return math.nan
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan
    if not math.isfinite(number) or number < 0:
        return math.nan
    return min(number, model.MAX_COUNT)


def _nz(value: float) -> float:
    return 0.0 if math.isnan(value) else value


def _normalise(audience: float, ref: Any) -> float:
    ell = math.log10(1.0 + _nz(audience))
    med, top = math.log10(1.0 + ref.median), math.log10(1.0 + ref.top)
    if ell <= med:
        return ell * model.REACH_MEDIAN / med
    return model.REACH_MEDIAN + (ell - med) * (model.REACH_TOP - model.REACH_MEDIAN) / (top - med)


def _implied(per_post: float, per_1k: float) -> float:
    return 1000.0 * (per_post / per_1k) ** (1.0 / model.ENGAGEMENT_EXPONENT)


def _softplus(x: float) -> float:
    w = model.SOFTPLUS_WIDTH
    return w * (max(x / w, 0.0) + math.log1p(math.exp(-abs(x / w))))


def naive_row(row: Any) -> dict[str, Any]:
    """The per-network formula of ranking/influence.py for one row."""
    ref = model.REFERENCE.get(row.network, model.DEFAULT_REFERENCE)
    followers, following, likes = _num(row.followers), _num(row.following), _num(row.likes)
    reposts, replies = _num(row.reposts), _num(row.replies)
    posts = math.floor(_nz(_num(row.sample_posts)))
    audience = likes if row.network == "reddit" and math.isnan(followers) else followers
    known = not math.isnan(audience)
    size = _nz(audience)

    log_divisor = 0.0
    if not math.isnan(following) and following > 0:
        ramp = 1.0 / (1.0 + (model.FOLLOWING_THRESHOLD / following) ** model.FOLLOW_RAMP_POWER)
        ratio = (1.0 + following) / (1.0 + size)
        exponent = (
            model.FOLLOW_PENALTY_SLOPE
            * max(ratio - model.FOLLOW_RATIO_THRESHOLD, 0.0)
            * math.log(math.log(max(following, math.e)))
        )
        log_divisor = ramp * min(exponent, math.log(model.MAX_FOLLOW_DIVISOR))
    divisor = math.exp(log_divisor)
    penalised = size / divisor

    publishes = ref.publishes_engagement
    reposts_pp = _nz(reposts) / posts if posts > 0 and publishes else 0.0
    interactions_pp = (_nz(likes) + _nz(replies)) / posts if posts > 0 and publishes else 0.0
    anchor = model.PRIOR_MEDIANS * ref.median
    prior = anchor * (penalised / anchor) ** model.PRIOR_EXPONENT
    credible = prior + _implied(
        (interactions_pp + reposts_pp) / model.CREDIBLE_SHARE, ref.interactions_1k + ref.reposts_1k
    )
    true_audience = min(penalised, credible) if publishes else penalised
    quality = true_audience / size if size > 0 else 1.0

    reach = _normalise(true_audience, ref)
    if known and not publishes:
        engagement = amplification = reach
        activity = model.IMPUTED_ACTIVITY
    else:
        floor = min(ref.median, true_audience) if known and publishes else 0.0
        engagement = _normalise(max(_implied(interactions_pp, ref.interactions_1k), floor), ref)
        amplification = _normalise(max(_implied(reposts_pp, ref.reposts_1k), floor), ref)
        recent = min(max(_nz(_num(row.recent_posts_90d)), 0.0), model.ACTIVITY_CAP)
        activity = model.W_ACTIVITY * math.log10(1.0 + recent)
    parts = {
        "network": row.network,
        "handle": row.handle,
        "followers": followers,
        "audience": audience,
        "following_divisor": divisor,
        "prior_audience": prior if publishes and known else math.nan,
        "credible_audience": credible if publishes and known else math.nan,
        "true_audience": true_audience if known else math.nan,
        "quality": quality if known else 1.0,
        "damping": 1.0 - quality if known else 0.0,
        "normalised_reach": reach,
        "equivalent_followers": 10**reach - 1.0 if known else math.nan,
        "engagement_imputed": known and not publishes,
        "reach": model.W_REACH * reach,
        "amplification": model.W_AMPLIFICATION * amplification,
        "engagement": model.W_ENGAGEMENT * engagement,
        "activity": activity,
    }
    parts["strength"] = (
        parts["reach"] + parts["amplification"] + parts["engagement"] + parts["activity"]
    )
    return parts


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 3) if math.isfinite(value) else None
    return value


def naive_score(frame: pd.DataFrame, explain: bool = True) -> dict[str, dict[str, Any]]:
    """customer_id -> {"influence", "raw"[, "explanation"]}, one row at a time."""
    by_customer: dict[str, list[dict[str, Any]]] = defaultdict(list)
    seen = set()
    for row in frame.itertuples(index=False):
        key = (str(row.customer_id), row.network, row.handle)
        if key in seen:
            continue
        seen.add(key)
        by_customer[key[0]].append(naive_row(row))

    scale = model.COMBINE_SCALE
    out = {}
    for customer, networks in by_customer.items():
        networks.sort(key=lambda p: (-p["strength"], p["network"], str(p["handle"])))
        total, combined = 0.0, 0.0
        for rank, parts in enumerate(networks):
            parts["weight"] = model.NETWORK_DECAY**rank
            strength = min(max(parts["strength"], 0.0), model.MAX_STRENGTH)
            total += parts["weight"] * math.expm1(math.log(10.0) * strength / scale)
            now = scale * math.log10(1.0 + total)
            parts["contribution"], combined = now - combined, now
        raw = max(_softplus(combined - model.CURVE_OFFSET) - _softplus(-model.CURVE_OFFSET), 0.0)
        share = 1.0 - min(raw / model.CURVE_RANGE, 1.0)
        curve = 100.0 - 99.0 * share**model.CURVE_POWER
        influence = min(max(round(curve, 1), 1.0), 100.0)
        entry: dict[str, Any] = {"influence": influence, "raw": raw}
        if explain:
            entry["explanation"] = {
                "model": model.MODEL_VERSION,
                "influence": influence,
                "raw": round(raw, 3),
                "strength": round(combined, 3),
                "networks": [{k: _clean(p[k]) for k in model._EXPLAINED} for p in networks],
                "combination": model.COMBINATION_NOTE,
                "curve": model.CURVE_NOTE,
            }
        out[customer] = entry
    return out


# ---------------------------------------------------------------- harness


def best_of(repeat: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    best, result = math.inf, None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def check_agreement(
    fast: pd.DataFrame, slow: dict[str, dict[str, Any]], sample: int, seed: int
) -> int:
    assert set(fast.index) == set(slow), "different customers scored"
    rng = np.random.default_rng(seed)
    ids = rng.choice(
        np.asarray(fast.index, dtype=object), size=min(sample, len(fast)), replace=False
    )
    for customer in ids:
        mine, theirs = fast.loc[customer], slow[customer]
        assert math.isclose(mine["raw"], theirs["raw"], rel_tol=1e-9, abs_tol=1e-9), customer
        assert abs(mine["influence"] - theirs["influence"]) <= 0.1 + 1e-9, customer
        if "explanation" in theirs:
            a, b = mine["explanation"]["networks"], theirs["explanation"]["networks"]
            assert [n["network"] for n in a] == [n["network"] for n in b], customer
            for x, y in zip(a, b):
                for key in ("reach", "amplification", "engagement", "activity", "strength",
                            "contribution", "quality"):
                    assert math.isclose(x[key], y[key], abs_tol=2e-3), (customer, key)
    return len(ids)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)

    frame = bench_frame(args.rows, args.seed)
    customers = frame["customer_id"].nunique()
    print(
        f"influence model {model.MODEL_VERSION}: {len(frame):,} customer-network rows, "
        f"{customers:,} customers, best of {args.repeat}"
    )

    rows = len(frame)
    for explain in (True, False):
        label = "with explanations" if explain else "scores only (explain=False)"
        fast_s, fast = best_of(args.repeat, partial(score_influence, frame, explain=explain))
        slow_s, slow = best_of(args.repeat, partial(naive_score, frame, explain=explain))
        checked = check_agreement(fast, slow, sample=2_000, seed=args.seed)
        print(f"\n{label}")
        print(f"  vectorised score_influence : {fast_s:7.3f} s  {rows / fast_s:>12,.0f} rows/s")
        print(f"  naive per-row baseline     : {slow_s:7.3f} s  {rows / slow_s:>12,.0f} rows/s")
        print(
            f"  speed-up                   : {slow_s / fast_s:7.1f}x   "
            f"(agreement checked on {checked:,} customers)"
        )

    scored = score_influence(frame, explain=False)["influence"]
    print(
        f"\nscore distribution on this frame: median {scored.median():.1f}, "
        f"p90 {scored.quantile(0.9):.1f}, p99 {scored.quantile(0.99):.1f}"
    )


if __name__ == "__main__":
    main()
