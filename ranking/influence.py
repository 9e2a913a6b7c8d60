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
                at most 1,000 followers per interaction per post (the +1 keeps
                small accounts from being judged on noise). Only applies when
                a post sample exists; networks that publish no reactions are
                never damped for that.
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

from connectors.social.base import NetworkMetrics

MODEL_VERSION = "influence-v1"

# Feature weights: points per decade of each per-post / per-account quantity.
W_REACH = 1.0
W_AMPLIFICATION = 1.0
W_ENGAGEMENT = 1.0
W_ACTIVITY = 0.5  # being busy is not influence; it only tips close calls
ACTIVITY_CAP = 180  # posts / 90 days (2 a day); more is not more influence

# Audience quality.
MIN_ENGAGEMENT_RATE = 1e-3  # interactions per post per credible follower
ENGAGEMENT_PRIOR = 1.0  # pseudo-interactions per post before damping
FOLLOWING_THRESHOLD = 2500  # TweepCred threshAbsNumFriendsReps
FOLLOW_RATIO_THRESHOLD = 0.6  # TweepCred threshFriendsToFollowersRatioUMass
FOLLOW_PENALTY_SLOPE = 3.0  # TweepCred constantDivisionFactor...
MAX_FOLLOW_DIVISOR = 50.0  # TweepCred maxDivFactorReps

REDDIT_KARMA_PER_FOLLOWER = 10.0  # ~10 lifetime upvotes per "follower"

NETWORK_DECAY = 0.5

# 1..100 curve, from fit_curve() on calibration_population(200_000, 20261125).
CURVE_SCALE = 7.6463
CURVE_SHAPE = 1.6553
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
    data = _normalised(frame)
    network = data["network"].to_numpy(dtype=object)
    col = {c: data[c].to_numpy(dtype="float64") for c in NUMERIC_COLUMNS}
    followers, following, likes = col["followers"], col["following"], col["likes"]
    posts = np.nan_to_num(col["sample_posts"], nan=0.0)
    has_sample = posts > 0

    karma_proxy = (network == "reddit") & np.isnan(followers)
    audience = np.where(karma_proxy, likes / REDDIT_KARMA_PER_FOLLOWER, followers)
    audience = np.where(audience >= 0, audience, np.nan)

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

    reposts, replies = col["reposts"], col["replies"]
    reaction_likes = np.where(karma_proxy, np.nan, likes)
    known_reactions = ~(np.isnan(reposts) & np.isnan(replies) & np.isnan(reaction_likes))
    per_post = np.where(has_sample, 1.0 / np.where(has_sample, posts, 1.0), 0.0)
    reposts_pp = np.nan_to_num(reposts) * per_post
    reactions_pp = (np.nan_to_num(reaction_likes) + np.nan_to_num(replies)) * per_post
    judged = has_sample & known_reactions
    credible = np.where(
        judged, (reposts_pp + reactions_pp + ENGAGEMENT_PRIOR) / MIN_ENGAGEMENT_RATE, np.inf
    )

    true_audience = np.minimum(audience / divisor, credible)  # NaN audience stays NaN
    reach = np.log10(1.0 + np.nan_to_num(true_audience, nan=0.0))
    amplification = np.log10(1.0 + reposts_pp)
    engagement = np.log10(1.0 + reactions_pp)
    recent = np.clip(np.nan_to_num(col["recent_posts_90d"], nan=0.0), 0.0, ACTIVITY_CAP)
    activity = np.log10(1.0 + recent)

    with np.errstate(invalid="ignore", divide="ignore"):
        quality = np.where(audience > 0, true_audience / audience, 1.0)

    parts = pd.DataFrame(
        {
            "customer_id": data["customer_id"].to_numpy(dtype=object),
            "network": network,
            "handle": data["handle"].to_numpy(dtype=object),
            "followers": followers,
            "audience": audience,
            "following_divisor": divisor,
            "credible_audience": np.where(np.isinf(credible), np.nan, credible),
            "quality": np.nan_to_num(quality, nan=1.0),
            "reach": W_REACH * reach,
            "amplification": W_AMPLIFICATION * amplification,
            "engagement": W_ENGAGEMENT * engagement,
            "activity": W_ACTIVITY * activity,
        },
        index=data.index,
    )
    parts["score"] = parts[["reach", "amplification", "engagement", "activity"]].sum(axis=1)
    return parts


def score_influence(frame: pd.DataFrame) -> pd.DataFrame:
    """Score every customer in `frame` (rows as built by `metrics_frame`).

    Returns one row per customer_id with `influence` (1..100, 0.1 steps),
    `raw` and a JSON-serialisable `explanation`. A customer whose rows carry
    nothing usable gets influence 1.0, the floor of the scale.
    """
    parts = network_features(frame)
    if parts.empty:
        empty = pd.DataFrame(columns=list(RESULT_COLUMNS))
        empty.index.name = "customer_id"
        return empty.astype({"influence": "float64", "raw": "float64"})

    parts = parts.sort_values(
        ["customer_id", "score", "network"], ascending=[True, False, True], kind="mergesort"
    )
    rank = parts.groupby("customer_id", sort=False).cumcount().to_numpy()
    parts["rank"] = rank + 1
    parts["weight"] = NETWORK_DECAY ** rank.astype("float64")
    parts["contribution"] = parts["weight"] * parts["score"]

    raw = parts.groupby("customer_id", sort=False)["contribution"].sum()
    influence = scale(raw.to_numpy())
    result = pd.DataFrame({"influence": influence, "raw": raw.to_numpy()}, index=raw.index)
    result.index.name = "customer_id"
    result["explanation"] = _explanations(parts, result)
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


def _normalised(frame: pd.DataFrame) -> pd.DataFrame:
    missing = {"customer_id", "network"} - set(frame.columns)
    if missing:
        raise ValueError(f"influence frame lacks required column(s): {', '.join(sorted(missing))}")
    data = frame.drop_duplicates(["customer_id", "network", "handle"]) if "handle" in frame else frame
    data = data.assign(
        **{
            c: pd.to_numeric(data[c], errors="coerce").astype("float64")
            if c in data
            else np.nan
            for c in NUMERIC_COLUMNS
        }
    )
    if "handle" not in data:
        data = data.assign(handle="")
    return data.assign(
        customer_id=data["customer_id"].astype(str),
        network=data["network"].astype(str),
        handle=data["handle"].fillna("").astype(str),
    )


_EXPLAINED = (
    "network",
    "handle",
    "rank",
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


def _explanations(parts: pd.DataFrame, result: pd.DataFrame) -> list[dict[str, Any]]:
    """One dict per customer, in `result` order; plain Python types only.

    Built from column arrays in one pass: parts are already sorted by
    customer then rank, so each customer's networks are a contiguous slice.
    """
    columns = []
    for name in _EXPLAINED:
        values = parts[name].to_numpy()
        if values.dtype.kind == "f":
            rounded = np.round(values, 3).astype(object)
            rounded[~np.isfinite(values)] = None
            values = rounded
        columns.append(values.tolist())
    records = [dict(zip(_EXPLAINED, row)) for row in zip(*columns)]

    ids = parts["customer_id"].to_numpy()
    bounds = np.flatnonzero(ids[1:] != ids[:-1]) + 1
    starts = np.concatenate(([0], bounds)).tolist()
    ends = np.concatenate((bounds, [len(ids)])).tolist()

    explanations = []
    for start, end, influence, raw in zip(
        starts, ends, result["influence"].tolist(), result["raw"].tolist()
    ):
        explanations.append(
            {
                "model": MODEL_VERSION,
                "influence": influence,
                "raw": round(raw, 3),
                "networks": records[start:end],
                "combination": COMBINATION_NOTE,
            }
        )
    return explanations
