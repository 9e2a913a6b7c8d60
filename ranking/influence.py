"""Influence score, model "influence-v2": one 1..100 number per customer.

Pure pandas/numpy (no I/O), vectorised over all customer-network rows at
once, so a whole customer book scores in one call. The formula is published
here, versioned by `MODEL_VERSION`, and every score carries its parts, so an
agent or a customer can see why and contest it (Klout's undoing was opacity).
Facts behind it: ../shared/reference/INFLUENCE.md (Klout, Kred, TweepCred).

What changed from v1 (issue 8): every network is normalised against its own
reference (`REFERENCE`), so a top YouTube creator and a top X account both
reach the 90s; audience quality is judged whether or not posts were sampled,
and posting with no engagement never scores below not posting; the TweepCred
following penalty ramps in smoothly instead of at a cliff; the 1..100 curve is
concave (each +10 needs more growth than the last) and is calibrated on a
population with all six networks, heavy tails and silent accounts.

Per network row (a customer's account on one network)
------------------------------------------------------
Influence is heavy-tailed, so everything is on a log10 scale.

1. audience     A = followers (YouTube: subscribers). Reddit publishes no
                followers, only karma (in `likes`, with `sample_posts = 0`,
                see connectors/social/reddit.py): karma is Reddit's audience
                unit, and its reference row is in karma.
2. following    TweepCred (twitter/the-algorithm, Reputation.scala) divides
   penalty      the audience of accounts following more than 2,500 others by
                d = clip(exp(3 (r - 0.6) ln ln following), 1, 50),
                r = (1 + following) / (1 + followers). v1 switched that on at
                exactly 2,500 (a cliff: 1,000 followers scored 24.3 following
                2,500 and 12.7 following 2,501); v2 lets it in by a smooth ramp
                w = 1 / (1 + (2,500 / following)^6) (5 % at 1,500, half at
                2,500, 94 % at 4,000): ln d = w min(3 max(r - 0.6, 0) ln ln
                following, ln 50). A' = A / d.
3. credibility  On networks that publish reactions (x, bluesky, mastodon) an
                audience counts only as far as something vouches for it:
                  prior    C0 = M (A' / M)^PRIOR_EXPONENT, M = PRIOR_MEDIANS x
                           the network's reference median (600 on X): without
                           evidence an audience counts in full up to M, beyond
                           that only as its fourth root (1M silent -> ~3,800);
                  evidence C1 = the audience for which the reactions per post
                           seen are CREDIBLE_SHARE (a fifth) of typical (see 5).
                true audience T = min(A', C0 + C1). The prior holds whether or
                not posts were sampled and reactions only ever add to it, so an
                account that posts and gets nothing is judged exactly like a
                silent one (plus its activity): posting never scores below
                silence, and a large silent account is damped like one with no
                engagement. Networks that publish no reactions (github, reddit,
                youtube) cannot be judged this way and are never damped for it.
4. normalised   Each network's audience is mapped onto one common scale, in
   reach        decades of "X-equivalent followers", through its reference row:
                with l = log10(1 + audience), the network's median account maps
                to X's median and its top accounts (~100th largest) to X's top,
                linearly in l between (and beyond) the two, and linearly from 0
                to the median below it. X maps onto itself. R = map(T);
                `equivalent_followers` in the explanation is 10^R - 1.
5. engagement   Reactions count relative to output (per post, as in Klout) and
                to what is typical on that network: a typical account with A
                followers gets INTERACTIONS_1K (A / 1,000)^0.85 likes + replies
                and REPOSTS_1K (A / 1,000)^0.85 reposts per post. Reactions
                seen are read as the audience they are typical for, at least
                min(T, the network's median) (the prior for unknown
                engagement: no sample and a sample with nothing land there),
                and normalised like reach:
                  engagement    = W_ENGAGEMENT R(likes + replies per post)
                  amplification = W_AMPLIFICATION R(reposts per post)
                so a typical account gets W_ENGAGEMENT R and W_AMPLIFICATION R.
                Networks that publish no reactions get exactly that, marked
                `engagement_imputed`: the network doesn't say, so they are
                taken as typical, neither rewarded nor punished.
6. activity     = W_ACTIVITY log10(1 + min(posts in 90 days, ACTIVITY_CAP));
                TYPICAL_ACTIVITY is imputed where the network doesn't say.
7. strength     s = W_REACH R + amplification + engagement + activity: a
                typical account has s = 2 R + activity on every network, i.e.
                COMBINE_SCALE (2) strength per decade of audience.
Unknown features contribute 0 (no evidence, no points).

Across networks
---------------
Strengths add like audiences: sort a customer's networks by strength, weight
them NETWORK_DECAY**k (1, 0.5, 0.25, ...), and
  s = COMBINE_SCALE log10(1 + sum_k w_k (10^(s_k / COMBINE_SCALE) - 1)).
Adding a network can only add, an equal second network adds log10(1.5) decades
of audience (a tenth as big: 0.02), and a network with nothing adds nothing.
Each network's `contribution` in the explanation is the strength it adds to
those ranked above it; they sum to the customer's `strength`.

Mapping to 1..100
-----------------
raw = softplus(s - CURVE_OFFSET) - softplus(-CURVE_OFFSET) >= 0, with
softplus(x) = SOFTPLUS_WIDTH ln(1 + exp(x / SOFTPLUS_WIDTH)): strength above
the floor of "no influence", through a smooth knee instead of a kink.
influence = 100 - 99 (1 - min(raw / CURVE_RANGE, 1))^CURVE_POWER, rounded to
0.1; raw 0 is 1.0. The map is concave (its slope falls with the square root of
the distance to 100) and raw grows linearly in log audience above the knee, so
60 -> 70 needs more follower growth than 20 -> 30, and 80 -> 90 more still, on
every network. CURVE_OFFSET and CURVE_RANGE come from
`fit_curve(calibration_population(200_000))`: its median account scores
MEDIAN_SCORE (20, as Klout's average user) and a top-of-network account with
typical engagement (`typical_frame(network, REFERENCE[network].top)`) scores
TOP_SCORE (93) on every network. bench/influence_calibration.py checks this on
an independently generated population.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .metrics import NETWORKS, NetworkMetrics

MODEL_VERSION = "influence-v2"


# ---------------------------------------------------------------- reference table


@dataclass(frozen=True)
class NetworkReference:
    """Where a network's accounts sit: the scale every network is normalised on.

    median: a typical active account (the median of accounts that posted
            recently, not of all accounts: most accounts on every network are
            abandoned at 0-1 followers). top: roughly the 100th largest
            account. Rounded, order-of-magnitude figures: the map needs to
            know where a network's ordinary and its top accounts are, not
            exact counts. Sensitivity: a median off by a factor 2 moves that
            network's ordinary accounts by about 5 points (at most 9), its
            top accounts by less.
    interactions_1k / reposts_1k: likes + replies, and reposts + quotes, per
            post that a typical account with 1,000 followers gets on that
            network (growing as followers^0.85: large accounts engage a
            smaller share of their audience). NaN: the network's API gives no
            per-post reactions.
    """

    unit: str
    median: float
    top: float
    publishes_engagement: bool
    interactions_1k: float = float("nan")
    reposts_1k: float = float("nan")


# Sources and reasoning (public figures, rounded; revise as live data comes in):
# - x: among accounts that tweeted in the past month, the median had 61
#   followers, 1,000 was the 96th percentile and 3,000 the top 1 % ("Tweets
#   loud and quiet", Jon Bruner, O'Reilly Radar, Dec 2013, 400k random
#   accounts); Pew Research 2019 found 19 for the median US adult user. The
#   50th most-followed account had 37.7M followers in 2018 (Wikipedia's list),
#   so the ~100th is about 40M today. Engagement: a few likes per post per
#   thousand followers for ordinary accounts, well under 0.1 % of followers
#   for large ones (industry engagement-rate reports).
# - bluesky: mid-2024 network statistics (bsky.jazco.dev / Atlas): the median
#   account of all ~6M had 1 follower, 95 % had under 95 and 99.9 % under
#   2,300; active posters sit at a few tens. The Nov 2024 influx brought
#   journalists, politicians and authors with hundreds of thousands to a few
#   million followers (e.g. J. Scalzi 207k in Dec 2024): top ~100 about 500k.
#   Reactions per follower run higher than on X (smaller, chronological feeds).
# - mastodon: ~1M monthly actives over ~10M+ accounts on many instances; active
#   accounts have tens of followers, the largest accounts some 100k-1M (top
#   ~100 about 100k). Favourites are fewer than X likes, boosts relatively more.
# - github: most of 100M+ accounts have 0-1 followers; developers who push a
#   few; the most-followed users (public follower rankings) run from ~250k
#   (the first) to ~20k around the 100th. Follow counts are hard to inflate
#   and there are no per-post reactions in /users/{name}.
# - reddit: karma (post + comment) is the only public standing; regular
#   commenters hold about a thousand, karma leaderboards put the top ~100
#   accounts around 10M. Karma is itself reactions received, so it is not
#   damped again.
# - youtube: most channels that upload have tens of subscribers; about 2,000
#   channels had 1M+ in 2016 (Tubefilter, VidStatsX) and Pew Research counted
#   43,770 with 250k+ in late 2018; the ~100th largest channel today has about
#   60M subscribers (public subscriber rankings).
REFERENCE: dict[str, NetworkReference] = {
    "x": NetworkReference("followers", 60.0, 40e6, True, 5.0, 0.5),
    "bluesky": NetworkReference("followers", 30.0, 500e3, True, 10.0, 1.5),
    "mastodon": NetworkReference("followers", 40.0, 100e3, True, 4.0, 1.5),
    "github": NetworkReference("followers", 3.0, 20e3, False),
    "reddit": NetworkReference("karma", 1_000.0, 10e6, False),
    "youtube": NetworkReference("subscribers", 50.0, 60e6, False),
}
COMMON_SCALE = "x"  # the common scale is X followers: X maps onto itself
DEFAULT_REFERENCE = REFERENCE[COMMON_SCALE]  # for a network not in the table

# Feature weights: strength per decade of (normalised) audience.
W_REACH = 1.0
W_AMPLIFICATION = 0.5
W_ENGAGEMENT = 0.5
W_ACTIVITY = 0.25  # being busy is not influence; it only tips close calls
ACTIVITY_CAP = 90.0  # posts / 90 days (1 a day); more is not more influence
TYPICAL_ACTIVITY = 30.0  # imputed where a network doesn't say
ENGAGEMENT_EXPONENT = 0.85  # typical reactions per post ~ followers^0.85

# Audience quality.
CREDIBLE_SHARE = 0.2  # reactions at a fifth of typical vouch for the whole audience
PRIOR_MEDIANS = 10.0  # without evidence, audiences count in full up to 10x median...
PRIOR_EXPONENT = 0.25  # ...and beyond that only as the fourth root
FOLLOWING_THRESHOLD = 2500.0  # TweepCred threshAbsNumFriendsReps: the ramp's midpoint
FOLLOW_RAMP_POWER = 6.0  # steepness of the ramp around the threshold
FOLLOW_RATIO_THRESHOLD = 0.6  # TweepCred threshFriendsToFollowersRatioUMass
FOLLOW_PENALTY_SLOPE = 3.0  # TweepCred constantDivisionFactor...
MAX_FOLLOW_DIVISOR = 50.0  # TweepCred maxDivFactorReps

NETWORK_DECAY = 0.5
COMBINE_SCALE = W_REACH + W_AMPLIFICATION + W_ENGAGEMENT  # strength per decade, typically
MAX_STRENGTH = 300.0  # keeps 10^(s / COMBINE_SCALE) finite for absurd inputs
MAX_COUNT = 1e15  # no account has more of anything; keeps the arithmetic finite

# 1..100 curve, from fit_curve(calibration_population(200_000, 20261125)).
SOFTPLUS_WIDTH = 0.5
CURVE_POWER = 2.0
CURVE_OFFSET = 2.9188
CURVE_RANGE = 17.2412
MEDIAN_SCORE = 20.0
TOP_SCORE = 93.0
CALIBRATION_SEED = 20261125

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
    "networks sorted by strength, their audiences added with weights 1, 0.5, 0.25, ... "
    "(strength = 2 log10(1 + sum w (10^(s/2) - 1))): another network adds, an equal one "
    "log10(1.5) decades of audience, and never subtracts"
)


def _table(field: str) -> np.ndarray:
    """One reference column in NETWORKS order, plus the default row last."""
    rows = [REFERENCE.get(n, DEFAULT_REFERENCE) for n in NETWORKS] + [DEFAULT_REFERENCE]
    return np.array([getattr(r, field) for r in rows], dtype="float64")


_MEDIAN = _table("median")
_PUBLISHES = _table("publishes_engagement") > 0
_INTERACTIONS_1K = _table("interactions_1k")
_REPOSTS_1K = _table("reposts_1k")
_L_MEDIAN = np.log10(1.0 + _MEDIAN)
_L_TOP = np.log10(1.0 + _table("top"))
REACH_MEDIAN = float(np.log10(1.0 + DEFAULT_REFERENCE.median))
REACH_TOP = float(np.log10(1.0 + DEFAULT_REFERENCE.top))
_LOW_SLOPE = REACH_MEDIAN / _L_MEDIAN
_HIGH_SLOPE = (REACH_TOP - REACH_MEDIAN) / (_L_TOP - _L_MEDIAN)
# A typical account on a network that publishes nothing: 2 R + this.
IMPUTED_ACTIVITY = W_ACTIVITY * float(np.log10(1.0 + TYPICAL_ACTIVITY))
TOP_STRENGTH = (W_REACH + W_AMPLIFICATION + W_ENGAGEMENT) * REACH_TOP + IMPUTED_ACTIVITY

CURVE_NOTE = (
    f"influence = 100 - 99 (1 - min(raw / {CURVE_RANGE}, 1))^{CURVE_POWER:g}; "
    f"raw = softplus(strength - {CURVE_OFFSET}) - softplus(-{CURVE_OFFSET}), "
    f"softplus width {SOFTPLUS_WIDTH}"
)


# ---------------------------------------------------------------- public API


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
    """Per-row parts of the model (reach, amplification, ..., strength, points).

    Exposed so the worker, the bench and tests can look at the parts without
    going through the per-customer combination.
    """
    parts = _features(_columns(frame))
    parts["points"] = _points(parts["strength"], CURVE_OFFSET)
    return pd.DataFrame(parts)


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
    if len(parts["strength"]) == 0:
        empty = pd.DataFrame(
            {
                "influence": pd.Series(dtype="float64"),
                "raw": pd.Series(dtype="float64"),
                "explanation": pd.Series(dtype=object),
            }
        )
        empty.index.name = "customer_id"
        return empty if explain else empty.drop(columns="explanation")

    parts, codes, uniques = _rank(parts)
    starts, raw = _combine(parts, codes, CURVE_OFFSET)
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
    curve = 100.0 - 99.0 * (1.0 - np.minimum(raw / CURVE_RANGE, 1.0)) ** CURVE_POWER
    return np.clip(np.round(curve, 1), 1.0, 100.0)


def typical_frame(
    network: str,
    audience: Iterable[float] | float,
    *,
    engagement: float = 1.0,
    activity: float = TYPICAL_ACTIVITY,
    following: float = 300.0,
    posts: int = 20,
    customer_prefix: str = "T",
) -> pd.DataFrame:
    """Rows for accounts of the given sizes with `engagement` x the network's
    typical reactions per post (one customer each): the "typical engagement
    profile" used for the calibration anchors, the bench and the tests.

    Reddit's audience is karma (in `likes`); networks that publish no
    reactions get none (the model imputes them).
    """
    size = np.atleast_1d(np.asarray(audience, dtype="float64"))
    n = len(size)
    ref = REFERENCE.get(network, DEFAULT_REFERENCE)
    interactions = engagement * _typical(size, ref.interactions_1k)
    reposts = engagement * _typical(size, ref.reposts_1k)
    publishes = ref.publishes_engagement
    nan = np.full(n, np.nan)
    return pd.DataFrame(
        {
            "customer_id": np.char.add(customer_prefix, np.arange(n).astype(str)),
            "network": network,
            "handle": np.char.add(f"{network}-", np.arange(n).astype(str)),
            "followers": nan if network == "reddit" else size,
            "following": nan if network in ("reddit", "youtube") else np.full(n, following),
            "posts_total": np.full(n, 1000.0),
            "sample_posts": np.full(n, float(posts if publishes else 0)),
            "reposts": reposts * posts if publishes else nan,
            "replies": 0.15 * interactions * posts if publishes else nan,
            "likes": (
                0.85 * interactions * posts if publishes else size if network == "reddit" else nan
            ),
            "recent_posts_90d": np.full(n, activity) if publishes else nan,
        }
    )


def fit_curve(
    frame: pd.DataFrame,
    median_score: float = MEDIAN_SCORE,
    top_score: float = TOP_SCORE,
    power: float = CURVE_POWER,
) -> tuple[float, float]:
    """(CURVE_OFFSET, CURVE_RANGE) putting the median customer of `frame` at
    `median_score` and a top-of-network account with typical engagement
    (strength TOP_STRENGTH, the same on every network) at `top_score`.

    For an offset, the range follows from the top anchor in closed form; the
    median's score falls as the offset rises, so the offset is bisected.
    """
    parts, codes, _ = _rank(_features(_columns(frame)))
    top_share = 1.0 - ((100.0 - top_score) / 99.0) ** (1.0 / power)
    median_share = 1.0 - ((100.0 - median_score) / 99.0) ** (1.0 / power)

    def median_excess(offset: float) -> tuple[float, float]:
        curve_range = float(_points(np.array([TOP_STRENGTH]), offset)[0]) / top_share
        _, raw = _combine(parts, codes, offset)
        return float(np.median(raw)) / curve_range - median_share, curve_range

    low, high = 0.0, TOP_STRENGTH - 1.0
    for _ in range(60):
        mid = (low + high) / 2
        if median_excess(mid)[0] > 0:
            low = mid
        else:
            high = mid
    offset = (low + high) / 2
    return round(offset, 4), round(median_excess(offset)[1], 4)


def calibration_population(n_profiles: int, seed: int = CALIBRATION_SEED) -> pd.DataFrame:
    """The synthetic accounts the curve is calibrated on, one customer each.

    Accounts of a customer book, not a census: people who give a support desk
    their handles are more active than the median account. Each account's
    standing is drawn on the common scale (X-equivalent followers: median
    180, a Student-t tail with 5 degrees of freedom, 0.75 decades per unit,
    capped 1 decade above the top) and mapped to its own network through the
    reference table, so every network gets the same population in its own
    units. Networks: x 28 %, bluesky 14 %, mastodon 8 %, github 16 %, reddit
    16 %, youtube 18 %. A quarter of the accounts on networks with posts are
    silent (no posts sampled); the rest get their network's typical reactions
    x lognormal(0, 0.9); 2 % of those bought their audience (10-100x
    followers, engagement of the real audience); 3 % of all follow
    1,000-10,000 accounts.

    One account per customer: the median is set for an account on its own;
    customers with several networks score somewhat higher (another network
    only adds), see bench/influence_calibration.py.
    """
    rng = np.random.default_rng(seed)
    n = int(n_profiles)
    customer = np.arange(n)
    network_idx = rng.choice(len(NETWORKS), size=n, p=[0.28, 0.14, 0.08, 0.16, 0.16, 0.18])
    network = np.asarray(NETWORKS, dtype=object)[network_idx]
    standing = np.log10(180.0) + 0.75 * rng.standard_t(5, n)
    audience = np.round(_denormalise(np.clip(standing, 0.0, REACH_TOP + 1.0), network_idx))

    publishes = _PUBLISHES[network_idx]
    silent = publishes & (rng.random(n) < 0.25)
    active = publishes & ~silent
    noise = rng.lognormal(0.0, 0.9, n)
    interactions = _typical(audience, _INTERACTIONS_1K[network_idx]) * noise
    reposts = _typical(audience, _REPOSTS_1K[network_idx]) * noise * rng.lognormal(0.0, 0.5, n)
    bought = active & (rng.random(n) < 0.02)
    audience = np.where(bought, np.round(audience * 10 ** rng.uniform(1, 2, n)), audience)
    following = np.round(10 ** (np.log10(250.0) + 0.45 * rng.standard_normal(n)))
    heavy = rng.random(n) < 0.03
    following = np.where(heavy, np.round(rng.uniform(1_000, 10_000, n)), following)

    sample = np.where(active, 20.0, 0.0)
    recent = np.where(active, rng.poisson(rng.lognormal(np.log(15.0), 1.0, n)), 0.0)
    is_reddit = network == "reddit"
    no_follow = is_reddit | (network == "youtube")
    return pd.DataFrame(
        {
            "customer_id": np.char.add("P-", customer.astype(str)),
            "network": network,
            "handle": np.char.add("h", np.arange(n).astype(str)),
            "followers": np.where(is_reddit, np.nan, audience),
            "following": np.where(no_follow, np.nan, following),
            "posts_total": recent * 8.0 + 50.0,
            "sample_posts": sample,
            "reposts": np.where(active, np.round(reposts * sample), np.nan),
            "replies": np.where(active, np.round(0.15 * interactions * sample), np.nan),
            "likes": np.where(
                active,
                np.round(0.85 * interactions * sample),
                np.where(is_reddit, audience, np.nan),
            ),
            "recent_posts_90d": np.where(publishes, recent, np.nan),
        }
    )


# ---------------------------------------------------------------- internals


def _typical(audience: np.ndarray, per_1k: np.ndarray | float) -> np.ndarray:
    """Typical reactions per post for an audience on a network."""
    return per_1k * (np.asarray(audience, dtype="float64") / 1000.0) ** ENGAGEMENT_EXPONENT


def _implied_audience(per_post: np.ndarray, per_1k: np.ndarray) -> np.ndarray:
    """The audience for which `per_post` reactions would be typical."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return 1000.0 * (per_post / per_1k) ** (1.0 / ENGAGEMENT_EXPONENT)


def _normalise(audience: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Native audience -> decades on the common scale (NaN -> 0)."""
    ell = np.log10(1.0 + np.nan_to_num(audience, nan=0.0))
    median = _L_MEDIAN[idx]
    low = ell * _LOW_SLOPE[idx]
    high = REACH_MEDIAN + (ell - median) * _HIGH_SLOPE[idx]
    return np.where(ell <= median, low, high)


def _denormalise(reach: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Inverse of `_normalise`: decades on the common scale -> native audience."""
    low = reach / _LOW_SLOPE[idx]
    high = _L_MEDIAN[idx] + (reach - REACH_MEDIAN) / _HIGH_SLOPE[idx]
    return 10 ** np.where(reach <= REACH_MEDIAN, low, high) - 1.0


def _softplus(x: np.ndarray | float) -> np.ndarray:
    return SOFTPLUS_WIDTH * np.logaddexp(0.0, np.asarray(x, dtype="float64") / SOFTPLUS_WIDTH)


def _points(strength: np.ndarray, offset: float) -> np.ndarray:
    """A network's contribution above the floor: smooth, >= 0, 0 at strength 0."""
    return np.maximum(_softplus(strength - offset) - _softplus(-offset), 0.0)


_NETWORK_INDEX = pd.Index(list(NETWORKS))


def _network_index(network: np.ndarray) -> np.ndarray:
    """Row -> position in NETWORKS; a network not in the table -> the default row."""
    codes = _NETWORK_INDEX.get_indexer(network).astype(np.int64)
    return np.where(codes < 0, len(NETWORKS), codes)


def _columns(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """The input frame as plain arrays: labels as objects, counts as float64.

    Counts are finite and never negative, so anything else (negative,
    infinite, unreadable) becomes NaN ("not said"); counts above MAX_COUNT are
    taken as MAX_COUNT, and a sample of posts counts whole posts. An absent
    optional column is all NaN. Repeated rows for the same customer, network
    and handle count once.
    """
    missing = {"customer_id", "network"} - set(frame.columns)
    if missing:
        raise ValueError(f"influence frame lacks required column(s): {', '.join(sorted(missing))}")
    if "handle" in frame.columns and len(frame) > 1:
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
        np.minimum(values, MAX_COUNT, out=values)  # NaN stays NaN
        columns[name] = values
    columns["sample_posts"] = np.floor(columns["sample_posts"])
    return columns


def _features(col: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The per-network formula of the module docstring, on whole columns."""
    network = col["network"]
    idx = _network_index(network)
    publishes = _PUBLISHES[idx]
    followers, following, likes = col["followers"], col["following"], col["likes"]

    # 1. Audience: karma is Reddit's.
    karma = (network == "reddit") & np.isnan(followers)
    audience = np.where(karma, likes, followers)
    known = ~np.isnan(audience)
    size = np.nan_to_num(audience, nan=0.0)

    # 2. TweepCred's following penalty, ramped in smoothly around 2,500.
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        ramp = 1.0 / (1.0 + (FOLLOWING_THRESHOLD / following) ** FOLLOW_RAMP_POWER)
        ratio = (1.0 + following) / (1.0 + size)
        exponent = (
            FOLLOW_PENALTY_SLOPE
            * np.maximum(ratio - FOLLOW_RATIO_THRESHOLD, 0.0)
            * np.log(np.log(np.maximum(following, np.e)))
        )
    log_divisor = np.nan_to_num(ramp, nan=0.0) * np.minimum(
        np.nan_to_num(exponent, nan=0.0), np.log(MAX_FOLLOW_DIVISOR)
    )
    divisor = np.exp(log_divisor)
    penalised = size / divisor

    # 3. Credibility: a prior that holds with or without posts, plus evidence.
    posts = np.nan_to_num(col["sample_posts"], nan=0.0)
    per_post = np.where(posts > 0, 1.0 / np.where(posts > 0, posts, 1.0), 0.0)
    reposts_pp = np.nan_to_num(col["reposts"]) * per_post
    interactions_pp = (np.nan_to_num(likes) + np.nan_to_num(col["replies"])) * per_post
    interactions_pp = np.where(publishes, interactions_pp, 0.0)
    reposts_pp = np.where(publishes, reposts_pp, 0.0)
    anchor = PRIOR_MEDIANS * _MEDIAN[idx]
    prior = anchor * (penalised / anchor) ** PRIOR_EXPONENT
    evidence = _implied_audience(
        (interactions_pp + reposts_pp) / CREDIBLE_SHARE, _INTERACTIONS_1K[idx] + _REPOSTS_1K[idx]
    )
    credible = prior + np.nan_to_num(evidence, nan=0.0)
    true_audience = np.where(publishes, np.minimum(penalised, credible), penalised)
    with np.errstate(invalid="ignore", divide="ignore"):
        quality = np.where(size > 0, true_audience / size, 1.0)

    # 4-6. Normalised reach, engagement and activity. Reactions are read as
    # the audience they are typical for, and that never falls below the
    # prior: the network's median account (no sample and a sample with
    # nothing both land there; reactions seen only ever add).
    reach = _normalise(true_audience, idx)
    imputed = known & ~publishes
    floor = np.where(known & publishes, np.minimum(_MEDIAN[idx], true_audience), 0.0)
    engaged = np.maximum(_implied_audience(interactions_pp, _INTERACTIONS_1K[idx]), floor)
    amplified = np.maximum(_implied_audience(reposts_pp, _REPOSTS_1K[idx]), floor)
    engagement = np.where(imputed, reach, _normalise(engaged, idx))
    amplification = np.where(imputed, reach, _normalise(amplified, idx))
    recent = np.clip(np.nan_to_num(col["recent_posts_90d"], nan=0.0), 0.0, ACTIVITY_CAP)
    activity = np.where(imputed, IMPUTED_ACTIVITY, W_ACTIVITY * np.log10(1.0 + recent))

    parts = {
        "customer_id": col["customer_id"],
        "network": network,
        "handle": col["handle"],
        "followers": followers,
        "audience": audience,
        "following_divisor": divisor,
        "prior_audience": np.where(publishes & known, prior, np.nan),
        "credible_audience": np.where(publishes & known, credible, np.nan),
        "true_audience": np.where(known, true_audience, np.nan),
        "quality": np.where(known, quality, 1.0),
        "damping": np.where(known, 1.0 - quality, 0.0),
        "normalised_reach": reach,
        "equivalent_followers": np.where(known, 10**reach - 1.0, np.nan),
        "engagement_imputed": imputed,
        "reach": W_REACH * reach,
        "amplification": W_AMPLIFICATION * amplification,
        "engagement": W_ENGAGEMENT * engagement,
        "activity": activity,
    }
    parts["strength"] = (
        parts["reach"] + parts["amplification"] + parts["engagement"] + parts["activity"]
    )
    return parts


def _rank(parts: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Sort rows by customer, then strongest network first (ties by name):
    each customer becomes one contiguous block."""
    codes, uniques = pd.factorize(parts["customer_id"], sort=True)
    order = np.lexsort(
        (parts["handle"].astype(str), parts["network"].astype(str), -parts["strength"], codes)
    )
    return {name: values[order] for name, values in parts.items()}, codes[order], uniques


def _combine(
    parts: dict[str, np.ndarray], codes: np.ndarray, offset: float
) -> tuple[np.ndarray, np.ndarray]:
    """Weights and contributions into `parts`; (block starts, raw per customer).

    Strengths combine like audiences: s = COMBINE_SCALE log10(1 + sum_k w_k
    (10^(s_k / COMBINE_SCALE) - 1)), where COMBINE_SCALE strength is one decade
    of audience for a typical account. A network's `contribution` is the
    strength it adds to the ones ranked above it (they add up to s).
    """
    n = len(codes)
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    rank = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))
    weight = NETWORK_DECAY ** rank.astype("float64")
    audience = weight * np.expm1(
        np.log(10.0) * np.clip(parts["strength"], 0.0, MAX_STRENGTH) / COMBINE_SCALE
    )
    # Running sum within each customer's block. One pass per rank (a handful:
    # one per network a customer has), never across customers, so a customer's
    # score can't depend on who else is in the frame.
    cumulative = audience.copy()
    for level in range(1, int(rank.max(initial=0)) + 1):
        rows = np.flatnonzero(rank == level)
        cumulative[rows] += cumulative[rows - 1]
    combined = COMBINE_SCALE * np.log10(1.0 + cumulative)
    parts["weight"] = weight
    parts["contribution"] = np.diff(np.r_[0.0, combined]) * (rank > 0) + combined * (rank == 0)
    ends = np.r_[starts[1:], n] - 1
    strength = combined[ends]
    parts["combined_strength"] = np.repeat(strength, np.diff(np.r_[starts, n]))
    return starts, _points(strength, offset)


_EXPLAINED = (
    "network",
    "handle",
    "weight",
    "followers",
    "audience",
    "following_divisor",
    "prior_audience",
    "credible_audience",
    "true_audience",
    "quality",
    "damping",
    "normalised_reach",
    "equivalent_followers",
    "engagement_imputed",
    "reach",
    "amplification",
    "engagement",
    "activity",
    "strength",
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
            "strength": strength,
            "networks": records[start:end],
            "combination": COMBINATION_NOTE,
            "curve": CURVE_NOTE,
        }
        for start, end, influence, raw, strength in zip(
            bounds[:-1],
            bounds[1:],
            result["influence"].tolist(),
            np.round(result["raw"].to_numpy(), 3).tolist(),
            np.round(parts["combined_strength"][starts], 3).tolist(),
        )
    ]
