"""Influence score, model "influence-v1": one 1..100 number per customer.

Pure pandas/numpy (no I/O), vectorised over all customer-network rows at
once, so a whole customer book scores in one call. The formula is published
here, versioned by `MODEL_VERSION`, and every score carries its parts, so an
agent or a customer can see why and contest it (Klout's undoing was opacity).

Per network row (a customer's account on one network)
------------------------------------------------------
Influence is heavy-tailed, so every feature is on a log10 scale ("points per
decade"); reactions count relative to output (per post), as in Klout.

- audience      A = followers. Networks without followers use a proxy:
                reddit karma / REDDIT_KARMA_PER_FOLLOWER (karma arrives in
                `likes` with `sample_posts = 0`, see connectors/social/reddit.py);
                YouTube subscribers and GitHub followers are used as they are.
- following     TweepCred rule (twitter/the-algorithm, Reputation.scala): if an
  penalty       account follows more than 2,500 others, its audience is divided
                by d = clip(exp(3 (r - 0.6) ln ln following), 1, 50) with
                r = (1 + following) / (1 + followers). Follow-for-follow
                audiences are not influence.
- engagement    An audience is only credible as far as engagement shows it:
  damping       C = (interactions per post + 1) / MIN_ENGAGEMENT_RATE, i.e.
                at most ~333 followers per interaction per post (0.3 %, about
                the typical rate of large accounts, so healthy accounts are
                untouched; the +1 keeps small accounts from being judged on
                noise). Only applies when a post sample exists; networks that
                publish no reactions are never damped for that.
- reach         = log10(1 + min(A / d, C))     ("true reach": bought or
                                                 follow-back audiences count
                                                 only as far as they engage)
- amplification = log10(1 + reposts per post)   (reposts + quotes)
- engagement    = log10(1 + (likes + replies) per post)
- activity      = log10(1 + min(posts in 90 days, ACTIVITY_CAP))
- network score s = W_REACH reach + W_AMPLIFICATION amplification
                    + W_ENGAGEMENT engagement + W_ACTIVITY activity
  Unknown features contribute 0 (no evidence, no points).

Across networks
---------------
Sort a customer's network scores descending and add them with weights
NETWORK_DECAY**k (1, 0.5, 0.25, ...): raw = sum_k s_(k) NETWORK_DECAY**k.
Because s >= 0 and the weights are geometric, adding a network can only add,
and adds at most half of what the best network gives.

Mapping to 1..100
-----------------
influence = 1 + 99 (1 - exp(-(raw / CURVE_SCALE) ** CURVE_SHAPE)), rounded to
0.1. A Weibull-CDF shape: near-linear low down, flattening at the top, so
20 -> 30 is far cheaper than 60 -> 70, and raw 0 (no usable network) is 1.0.
CURVE_SCALE and CURVE_SHAPE come from `fit_curve` on
`calibration_population(200_000, seed=20261125)`: median 20 and 99th
percentile 62 (so the desk's INFLUENCER flag at 60 marks roughly the top 1 %).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from .metrics import NetworkMetrics

MODEL_VERSION = "influence-v1"

# Feature weights: points per decade of each per-post / per-account quantity.
W_REACH = 1.0
W_AMPLIFICATION = 1.0
W_ENGAGEMENT = 1.0
W_ACTIVITY = 0.5  # being busy is not influence; it only tips close calls
ACTIVITY_CAP = 180  # posts / 90 days (2 a day); more is not more influence

# Audience quality.
MIN_ENGAGEMENT_RATE = 3e-3  # interactions per post per credible follower
ENGAGEMENT_PRIOR = 1.0  # pseudo-interactions per post before damping
FOLLOWING_THRESHOLD = 2500  # TweepCred threshAbsNumFriendsReps
FOLLOW_RATIO_THRESHOLD = 0.6  # TweepCred threshFriendsToFollowersRatioUMass
FOLLOW_PENALTY_SLOPE = 3.0  # TweepCred constantDivisionFactor...
MAX_FOLLOW_DIVISOR = 50.0  # TweepCred maxDivFactorReps

REDDIT_KARMA_PER_FOLLOWER = 10.0  # ~10 lifetime upvotes per "follower"

NETWORK_DECAY = 0.5

# 1..100 curve, from fit_curve() on calibration_population(200_000, 20261125).
CURVE_SCALE = 10.1873
CURVE_SHAPE = 1.7281
MEDIAN_SCORE = 20.0
TOP_PERCENTILE, TOP_SCORE = 0.99, 62.0

FRAME_COLUMNS: tuple[str, ...] = (
    "customer_id",
    "network",
    "handle",
    "followers",
    "following",
    "posts_total",
    "sample_posts",
    "reposts",
    "replies",
    "likes",
    "recent_posts_90d",
)
NUMERIC_COLUMNS = FRAME_COLUMNS[3:]
RESULT_COLUMNS: tuple[str, ...] = ("influence", "raw", "explanation")

COMBINATION_NOTE = (
    "network scores sorted high to low and added with weights 1, 0.5, 0.25, ...: "
    "another network adds, at most half of the best, and never subtracts"
)


def metrics_frame(metrics: Iterable[tuple[str, NetworkMetrics]]) -> pd.DataFrame:
    """The model's input frame from (customer_id, NetworkMetrics) pairs.

    None becomes NaN ("the network doesn't say"), which the model treats as
    no evidence rather than as zero.
    """
    rows = [
        (
            str(customer_id),
            m.network,
            m.handle,
            m.followers,
            m.following,
            m.posts_total,
            m.sample_posts,
            m.reposts,
            m.replies,
            m.likes,
            m.recent_posts_90d,
        )
        for customer_id, m in metrics
    ]
    frame = pd.DataFrame.from_records(rows, columns=list(FRAME_COLUMNS))
    frame[list(NUMERIC_COLUMNS)] = frame[list(NUMERIC_COLUMNS)].astype("float64")
    return frame


def network_features(frame: pd.DataFrame) -> pd.DataFrame:
    """Per-row parts of the model (reach, amplification, ..., score).

    Exposed so the worker, the bench and tests can look at the parts without
    going through the per-customer combination.
    """
    return pd.DataFrame(_features(_columns(frame)))


def score_influence(frame: pd.DataFrame, *, explain: bool = True) -> pd.DataFrame:
    """Score every customer in `frame` (rows as built by `metrics_frame`).

    Returns one row per customer_id with `influence` (1..100, 0.1 steps),
    `raw` and a JSON-serialisable `explanation`. A customer whose rows carry
    nothing usable gets influence 1.0, the floor of the scale.

    Building the explanation dicts costs more than the arithmetic (about
    two thirds of the time on large books); `explain=False` leaves the column
    out for bulk re-ranking where nobody will read it.
    """
    parts = _features(_columns(frame))
    if len(parts["score"]) == 0:
        empty = pd.DataFrame(
            {
                "influence": pd.Series(dtype="float64"),
                "raw": pd.Series(dtype="float64"),
                "explanation": pd.Series(dtype=object),
            }
        )
        empty.index.name = "customer_id"
        return empty if explain else empty.drop(columns="explanation")

    # Customer, then best network first; each customer is one contiguous block.
    codes, uniques = pd.factorize(parts["customer_id"], sort=True)
    order = np.lexsort((parts["network"].astype(str), -parts["score"], codes))
    parts = {name: values[order] for name, values in parts.items()}
    codes = codes[order]
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    rank = np.arange(len(codes)) - np.repeat(starts, np.diff(np.r_[starts, len(codes)]))
    parts["weight"] = NETWORK_DECAY ** rank.astype("float64")
    parts["contribution"] = parts["weight"] * parts["score"]

    raw = np.add.reduceat(parts["contribution"], starts)
    result = pd.DataFrame(
        {"influence": scale(raw), "raw": raw},
        index=pd.Index(np.asarray(uniques)[codes[starts]], name="customer_id"),
    )
    if explain:
        result["explanation"] = _explanations(parts, starts, result)
    return result


def scale(raw: np.ndarray | float) -> np.ndarray:
    """Map raw model output to the published 1..100 scale (0.1 steps)."""
    raw = np.clip(np.nan_to_num(np.asarray(raw, dtype="float64"), nan=0.0), 0.0, None)
    curve = 1.0 + 99.0 * -np.expm1(-((raw / CURVE_SCALE) ** CURVE_SHAPE))
    return np.clip(np.round(curve, 1), 1.0, 100.0)


def fit_curve(
    raw: np.ndarray,
    median_score: float = MEDIAN_SCORE,
    top_percentile: float = TOP_PERCENTILE,
    top_score: float = TOP_SCORE,
) -> tuple[float, float]:
    """(CURVE_SCALE, CURVE_SHAPE) putting a population's median and top percentile
    at the given scores; closed form, because the Weibull CDF inverts exactly."""
    raw = np.asarray(raw, dtype="float64")
    low, high = np.quantile(raw, [0.5, top_percentile])
    target_low = -np.log1p(-(median_score - 1.0) / 99.0)
    target_high = -np.log1p(-(top_score - 1.0) / 99.0)
    shape = np.log(target_high / target_low) / np.log(high / low)
    return float(low / target_low ** (1.0 / shape)), float(shape)


def calibration_population(n_customers: int, seed: int) -> pd.DataFrame:
    """The synthetic customer book the curve is calibrated on (see module doc).

    Followers are lognormal (median 200, sigma 1.7) as on real networks;
    likes per post grow sub-linearly with followers (0.02 F^0.85 with
    lognormal noise), replies and reposts follow likes; most customers have
    one network, some up to four. Reach-only networks are left out: the
    curve is set by accounts that show engagement.
    """
    rng = np.random.default_rng(seed)
    per_customer = rng.choice([1, 2, 3, 4], size=n_customers, p=[0.62, 0.26, 0.09, 0.03])
    n = int(per_customer.sum())
    customer = np.repeat(np.arange(n_customers), per_customer)
    z = rng.standard_normal((n, 2))
    followers = np.round(np.exp(np.log(200.0) + 1.7 * z[:, 0]))
    following = np.round(np.exp(np.log(250.0) + 1.0 * (0.5 * z[:, 0] + 0.87 * z[:, 1])))
    sample = np.where(rng.random(n) < 0.9, 20.0, 0.0)
    likes_pp = 0.02 * followers**0.85 * rng.lognormal(0.0, 0.8, n)
    replies_pp = 0.15 * likes_pp * rng.lognormal(0.0, 0.5, n)
    reposts_pp = 0.10 * likes_pp * rng.lognormal(0.0, 0.7, n)
    recent = rng.poisson(rng.lognormal(np.log(12.0), 1.2, n))
    recent = np.where(sample > 0, recent, 0)
    return pd.DataFrame(
        {
            "customer_id": np.char.add("P-", customer.astype(str)),
            "network": rng.choice(["x", "bluesky", "mastodon"], size=n, p=[0.6, 0.25, 0.15]),
            "handle": np.char.add("h", np.arange(n).astype(str)),
            "followers": followers,
            "following": following,
            "posts_total": recent * 8.0 + 50.0,
            "sample_posts": sample,
            "reposts": np.round(reposts_pp * sample),
            "replies": np.round(replies_pp * sample),
            "likes": np.round(likes_pp * sample),
            "recent_posts_90d": recent.astype("float64"),
        }
    )


def _columns(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """The input frame as plain arrays: labels as objects, counts as float64.

    Counts are finite and never negative, so anything else (negative,
    infinite, unreadable) becomes NaN ("not said"); an absent optional column
    is all NaN. Repeated rows for the
    same customer, network and handle count once.
    """
    missing = {"customer_id", "network"} - set(frame.columns)
    if missing:
        raise ValueError(f"influence frame lacks required column(s): {', '.join(sorted(missing))}")
    if "handle" in frame.columns:
        frame = frame.drop_duplicates(["customer_id", "network", "handle"])
    n = len(frame)
    columns: dict[str, np.ndarray] = {
        "customer_id": frame["customer_id"].astype(str).to_numpy(dtype=object),
        "network": frame["network"].astype(str).to_numpy(dtype=object),
        "handle": (
            frame["handle"].fillna("").astype(str).to_numpy(dtype=object)
            if "handle" in frame.columns
            else np.full(n, "", dtype=object)
        ),
    }
    for name in NUMERIC_COLUMNS:
        if name not in frame.columns:
            columns[name] = np.full(n, np.nan)
            continue
        series = frame[name]
        if series.dtype.kind not in "fiu":
            series = pd.to_numeric(series, errors="coerce")
        values = series.to_numpy(dtype="float64", na_value=np.nan, copy=True)
        with np.errstate(invalid="ignore"):
            values[~np.isfinite(values) | (values < 0)] = np.nan
        columns[name] = values
    return columns


def _features(col: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The per-network formula of the module docstring, on whole columns."""
    network = col["network"]
    followers, following, likes = col["followers"], col["following"], col["likes"]
    posts = np.nan_to_num(col["sample_posts"], nan=0.0)
    has_sample = posts > 0

    karma_proxy = (network == "reddit") & np.isnan(followers)
    audience = np.where(karma_proxy, likes / REDDIT_KARMA_PER_FOLLOWER, followers)

    # TweepCred: divide the audience of heavy followers by their follow ratio.
    ratio = (1.0 + following) / (1.0 + np.nan_to_num(audience, nan=0.0))
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        exponent = (
            FOLLOW_PENALTY_SLOPE
            * (ratio - FOLLOW_RATIO_THRESHOLD)
            * np.log(np.log(np.maximum(following, np.e)))
        )
        divisor = np.exp(np.minimum(exponent, np.log(MAX_FOLLOW_DIVISOR)))
    penalised = (following > FOLLOWING_THRESHOLD) & ~np.isnan(audience)
    divisor = np.where(penalised, np.clip(divisor, 1.0, MAX_FOLLOW_DIVISOR), 1.0)

    # Reactions per post over the sample; karma (reddit) is not a sample.
    reposts, replies = col["reposts"], col["replies"]
    reaction_likes = np.where(karma_proxy, np.nan, likes)
    known_reactions = ~(np.isnan(reposts) & np.isnan(replies) & np.isnan(reaction_likes))
    per_post = np.where(has_sample, 1.0 / np.where(has_sample, posts, 1.0), 0.0)
    reposts_pp = np.nan_to_num(reposts) * per_post
    reactions_pp = (np.nan_to_num(reaction_likes) + np.nan_to_num(replies)) * per_post

    # True reach: the audience counts only as far as engagement vouches for it.
    judged = has_sample & known_reactions
    credible = np.where(
        judged, (reposts_pp + reactions_pp + ENGAGEMENT_PRIOR) / MIN_ENGAGEMENT_RATE, np.inf
    )
    true_audience = np.minimum(audience / divisor, credible)  # NaN audience stays NaN
    with np.errstate(invalid="ignore", divide="ignore"):
        quality = np.where(audience > 0, true_audience / audience, 1.0)

    recent = np.clip(np.nan_to_num(col["recent_posts_90d"], nan=0.0), 0.0, ACTIVITY_CAP)
    parts = {
        "customer_id": col["customer_id"],
        "network": network,
        "handle": col["handle"],
        "followers": followers,
        "audience": audience,
        "following_divisor": divisor,
        "credible_audience": np.where(np.isinf(credible), np.nan, credible),
        "quality": np.nan_to_num(quality, nan=1.0),
        "reach": W_REACH * np.log10(1.0 + np.nan_to_num(true_audience, nan=0.0)),
        "amplification": W_AMPLIFICATION * np.log10(1.0 + reposts_pp),
        "engagement": W_ENGAGEMENT * np.log10(1.0 + reactions_pp),
        "activity": W_ACTIVITY * np.log10(1.0 + recent),
    }
    parts["score"] = (
        parts["reach"] + parts["amplification"] + parts["engagement"] + parts["activity"]
    )
    return parts


_EXPLAINED = (
    "network",
    "handle",
    "weight",
    "followers",
    "audience",
    "following_divisor",
    "credible_audience",
    "quality",
    "reach",
    "amplification",
    "engagement",
    "activity",
    "score",
    "contribution",
)


def _explanations(
    parts: dict[str, np.ndarray], starts: np.ndarray, result: pd.DataFrame
) -> list[dict[str, Any]]:
    """One dict per customer, in `result` order; plain Python types only.

    Built from column arrays in one pass (no per-row pandas access): parts
    are sorted by customer then rank, so each customer's networks are the
    contiguous slice starting at `starts[i]`.
    """
    columns = []
    for name in _EXPLAINED:
        values = parts[name]
        if values.dtype.kind == "f":
            values = np.where(np.isfinite(values), np.round(values, 3), None)
        columns.append(values.tolist())
    records = [dict(zip(_EXPLAINED, row)) for row in zip(*columns)]
    bounds = np.r_[starts, len(records)].tolist()
    return [
        {
            "model": MODEL_VERSION,
            "influence": influence,
            "raw": raw,
            "networks": records[start:end],
            "combination": COMBINATION_NOTE,
        }
        for start, end, influence, raw in zip(
            bounds[:-1],
            bounds[1:],
            result["influence"].tolist(),
            np.round(result["raw"].to_numpy(), 3).tolist(),
        )
    ]
