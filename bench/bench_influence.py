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
    """`rows` customer-network rows: the calibration population, with some
    reach-only networks (reddit karma, github, youtube) and follow-back
    accounts mixed in so every branch of the formula is exercised."""
    frame = model.calibration_population(int(rows / 1.53) + 1000, seed).head(rows).copy()
    rng = np.random.default_rng(seed + 1)
    pick = rng.random(len(frame))
    reddit, github, youtube = (
        pick < 0.08,
        (pick >= 0.08) & (pick < 0.13),
        (pick >= 0.13) & (pick < 0.16),
    )
    reach_only = reddit | github | youtube
    frame.loc[reddit, "network"] = "reddit"
    frame.loc[github, "network"] = "github"
    frame.loc[youtube, "network"] = "youtube"
    frame.loc[reddit, "likes"] = np.round(rng.lognormal(np.log(2000), 1.8, int(reddit.sum())))
    frame.loc[reddit, ["followers", "following"]] = np.nan
    frame.loc[reach_only, ["sample_posts"]] = 0.0
    frame.loc[reach_only, ["reposts", "replies", "recent_posts_90d"]] = np.nan
    frame.loc[github | youtube, "likes"] = np.nan
    heavy = (pick >= 0.16) & (pick < 0.19)
    frame.loc[heavy, "following"] = np.round(rng.uniform(2_000, 8_000, int(heavy.sum())))
    return frame.reset_index(drop=True)


# ---------------------------------------------------------------- naive baseline


def _num(value: Any) -> float:
    if value is None:
        return math.nan
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan
    return number if math.isfinite(number) and number >= 0 else math.nan


def _nz(value: float) -> float:
    return 0.0 if math.isnan(value) else value


def naive_row(row: Any) -> dict[str, Any]:
    """The per-network formula of ranking/influence.py for one row."""
    followers, following, likes = _num(row.followers), _num(row.following), _num(row.likes)
    reposts, replies = _num(row.reposts), _num(row.replies)
    posts = _nz(_num(row.sample_posts))
    karma_proxy = row.network == "reddit" and math.isnan(followers)
    audience = likes / model.REDDIT_KARMA_PER_FOLLOWER if karma_proxy else followers

    divisor = 1.0
    if following > model.FOLLOWING_THRESHOLD and not math.isnan(audience):
        ratio = (1.0 + following) / (1.0 + audience)
        exponent = (
            model.FOLLOW_PENALTY_SLOPE
            * (ratio - model.FOLLOW_RATIO_THRESHOLD)
            * math.log(math.log(max(following, math.e)))
        )
        divisor = min(
            max(math.exp(min(exponent, math.log(model.MAX_FOLLOW_DIVISOR))), 1.0),
            model.MAX_FOLLOW_DIVISOR,
        )

    reaction_likes = math.nan if karma_proxy else likes
    reposts_pp = _nz(reposts) / posts if posts > 0 else 0.0
    reactions_pp = (_nz(reaction_likes) + _nz(replies)) / posts if posts > 0 else 0.0
    known = not (math.isnan(reposts) and math.isnan(replies) and math.isnan(reaction_likes))
    credible = math.inf
    if posts > 0 and known:
        credible = (reposts_pp + reactions_pp + model.ENGAGEMENT_PRIOR) / model.MIN_ENGAGEMENT_RATE
    true_audience = math.nan if math.isnan(audience) else min(audience / divisor, credible)
    quality = true_audience / audience if audience > 0 else 1.0
    recent = min(max(_nz(_num(row.recent_posts_90d)), 0.0), model.ACTIVITY_CAP)

    parts = {
        "network": row.network,
        "handle": row.handle,
        "followers": followers,
        "audience": audience,
        "following_divisor": divisor,
        "credible_audience": math.nan if math.isinf(credible) else credible,
        "quality": 1.0 if math.isnan(quality) else quality,
        "reach": model.W_REACH * math.log10(1.0 + _nz(true_audience)),
        "amplification": model.W_AMPLIFICATION * math.log10(1.0 + reposts_pp),
        "engagement": model.W_ENGAGEMENT * math.log10(1.0 + reactions_pp),
        "activity": model.W_ACTIVITY * math.log10(1.0 + recent),
    }
    parts["score"] = (
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

    out = {}
    for customer, networks in by_customer.items():
        networks.sort(key=lambda p: (-p["score"], p["network"]))
        raw = 0.0
        for rank, parts in enumerate(networks):
            parts["weight"] = model.NETWORK_DECAY**rank
            parts["contribution"] = parts["weight"] * parts["score"]
            raw += parts["contribution"]
        curve = 1.0 + 99.0 * -math.expm1(-((raw / model.CURVE_SCALE) ** model.CURVE_SHAPE))
        influence = min(max(round(curve, 1), 1.0), 100.0)
        entry: dict[str, Any] = {"influence": influence, "raw": raw}
        if explain:
            entry["explanation"] = {
                "model": model.MODEL_VERSION,
                "influence": influence,
                "raw": round(raw, 3),
                "networks": [{k: _clean(p[k]) for k in model._EXPLAINED} for p in networks],
                "combination": model.COMBINATION_NOTE,
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
                for key in ("reach", "amplification", "engagement", "activity", "score", "quality"):
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
