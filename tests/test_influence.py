"""The influence model: its published properties, its calibration, the demo story.

Everything runs the real model on real frames; the synthetic population is
generated here independently of `calibration_population`, so the median
check is a check of the calibration, not a restatement of it.
"""

from __future__ import annotations

import json
import math
from itertools import pairwise
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from connectors.social.base import NetworkMetrics
from connectors.social.snapshot import SnapshotSource
from ranking import influence
from ranking.influence import MODEL_VERSION, metrics_frame, score_influence

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOT = ROOT / "config" / "demo" / "social_snapshot.json"
CUSTOMERS = ROOT / "config" / "demo" / "customers.json"


def account(
    followers: float = 1000,
    likes_per_post: float | None = None,
    *,
    network: str = "x",
    customer: str = "C",
    handle: str | None = None,
    following: float = 300,
    posts: int = 20,
    reposts_per_post: float | None = None,
    replies_per_post: float | None = None,
    recent: float = 15,
) -> dict:
    """One row; engagement defaults to what a typical account of that size gets."""
    lpp = 0.02 * followers**0.85 if likes_per_post is None else likes_per_post
    rpp = 0.1 * lpp if reposts_per_post is None else reposts_per_post
    cpp = 0.15 * lpp if replies_per_post is None else replies_per_post
    return {
        "customer_id": customer,
        "network": network,
        "handle": handle or f"{customer}-{network}",
        "followers": followers,
        "following": following,
        "posts_total": 1000.0,
        "sample_posts": posts,
        "likes": lpp * posts,
        "reposts": rpp * posts,
        "replies": cpp * posts,
        "recent_posts_90d": recent,
    }


def score(*rows: dict) -> float:
    return float(score_influence(pd.DataFrame(list(rows))).influence.iloc[0])


def raw(*rows: dict) -> float:
    return float(score_influence(pd.DataFrame(list(rows))).raw.iloc[0])


def population(n_customers: int, seed: int) -> pd.DataFrame:
    """A realistic customer book: lognormal audiences (median 250), engagement
    that grows with audience, most people on one network, some on two or three."""
    rng = np.random.default_rng(seed)
    per_customer = rng.choice([1, 2, 3], size=n_customers, p=[0.65, 0.27, 0.08])
    n = int(per_customer.sum())
    followers = np.floor(rng.lognormal(np.log(250), 1.6, n))
    likes_pp = 0.025 * followers**0.82 * rng.lognormal(0, 0.9, n)
    posts = np.where(rng.random(n) < 0.88, 20, 0)
    return pd.DataFrame(
        {
            "customer_id": np.repeat(np.arange(n_customers), per_customer).astype(str),
            "network": rng.choice(["x", "bluesky", "mastodon"], n),
            "handle": np.arange(n).astype(str),
            "followers": followers,
            "following": np.floor(rng.lognormal(np.log(300), 1.1, n)),
            "posts_total": np.nan,
            "sample_posts": posts,
            "likes": np.round(likes_pp * posts),
            "replies": np.round(0.12 * likes_pp * posts * rng.lognormal(0, 0.5, n)),
            "reposts": np.round(0.08 * likes_pp * posts * rng.lognormal(0, 0.7, n)),
            "recent_posts_90d": np.where(
                posts > 0, rng.poisson(rng.lognormal(np.log(10), 1.3, n)), 0
            ),
        }
    )


# ---------------------------------------------------------------- frame


def test_metrics_frame_columns_and_missing_values():
    frame = metrics_frame(
        [
            ("C-1", NetworkMetrics("x", "a", followers=10, following=2, sample_posts=3, likes=4)),
            ("C-1", NetworkMetrics("github", "a", followers=5)),
        ]
    )
    assert list(frame.columns) == list(influence.FRAME_COLUMNS)
    assert frame.loc[1, "likes"] != frame.loc[1, "likes"]  # NaN: "doesn't say"
    assert frame["followers"].dtype == np.float64
    assert metrics_frame([]).empty


# ---------------------------------------------------------------- monotonicity


def test_monotone_in_followers():
    sizes = np.geomspace(10, 5e7, 40)
    typical = [score(account(f)) for f in sizes]
    assert all(b > a for a, b in pairwise(typical))
    # with engagement held fixed, more followers never lowers the score
    fixed = [score(account(f, likes_per_post=40)) for f in sizes]
    assert all(b >= a for a, b in pairwise(fixed))


@pytest.mark.parametrize("field", ["likes_per_post", "reposts_per_post", "replies_per_post"])
def test_monotone_in_engagement(field):
    levels = np.geomspace(0.5, 50_000, 30)
    scores = [raw(account(20_000, **{field: level})) for level in levels]
    assert all(b > a for a, b in pairwise(scores))


def test_scores_stay_in_range_and_extremes_are_sane():
    rows = [
        account(0, 0, customer="zero", recent=0),
        account(1e12, 1e9, customer="huge", recent=1e6),
        {"customer_id": "nan", "network": "x", "followers": np.nan},
        account(-5, -3, customer="negative"),
    ]
    result = score_influence(pd.DataFrame(rows))
    assert result.influence.between(1.0, 100.0).all()
    assert result.loc["huge", "influence"] >= 99.5
    assert result.loc["nan", "influence"] == 1.0
    assert np.isfinite(result.raw).all()


def test_customers_without_usable_rows_get_the_floor():
    frame = metrics_frame(
        [
            ("suspended", NetworkMetrics("reddit", "gone")),
            ("hidden", NetworkMetrics("youtube", "q", posts_total=40)),
            ("real", NetworkMetrics("github", "r", followers=300)),
        ]
    )
    result = score_influence(frame)
    assert result.loc["suspended", "influence"] == 1.0
    assert result.loc["hidden", "influence"] == 1.0
    assert result.loc["real", "influence"] > 1.0


def test_empty_frame_gives_empty_result():
    result = score_influence(metrics_frame([]))
    assert result.empty and list(result.columns) == ["influence", "raw", "explanation"]


# ---------------------------------------------------------------- audience quality


def test_bought_audience_scores_far_below_engaged_smaller_account():
    bought = account(
        500_000,
        likes_per_post=2,
        reposts_per_post=0.5,
        replies_per_post=0.5,
        following=40_000,
        posts=10,
        recent=900,
        customer="bought",
    )
    engaged = account(
        20_000,
        likes_per_post=300,
        reposts_per_post=40,
        replies_per_post=30,
        posts=10,
        recent=30,
        customer="engaged",
    )
    undamped = dict(bought, likes=500_000 * 0.01 * 10, customer_id="undamped")
    result = score_influence(pd.DataFrame([bought, engaged, undamped]))
    assert result.loc["engaged", "influence"] - result.loc["bought", "influence"] > 25
    assert result.loc["undamped", "influence"] - result.loc["bought", "influence"] > 30
    x = result.loc["bought", "explanation"]["networks"][0]
    assert x["quality"] < 0.01 and x["credible_audience"] < 5_000


def test_following_penalty_follows_tweepcred():
    def divisor(followers, following):
        row = account(followers, 5, following=following)
        return score_influence(pd.DataFrame([row])).explanation.iloc[0]["networks"][0][
            "following_divisor"
        ]

    assert divisor(300, 2_500) == 1.0  # at the threshold: no penalty
    assert divisor(300, 2_600) == 50.0  # ratio ~8.7: capped divisor
    assert divisor(100_000, 5_000) == 1.0  # ratio below 0.6
    ratio = (1 + 4000) / (1 + 5000)
    expected = math.exp(3.0 * (ratio - 0.6) * math.log(math.log(4000)))
    assert divisor(5000, 4000) == pytest.approx(expected, abs=1e-3)
    assert score(account(300, 5, following=2_600)) < score(account(300, 5, following=2_400)) - 5


def test_networks_without_engagement_are_not_damped():
    github = metrics_frame([("g", NetworkMetrics("github", "g", followers=5000, following=10))])
    parts = score_influence(github).explanation.iloc[0]["networks"][0]
    assert parts["quality"] == 1.0 and parts["credible_audience"] is None
    assert parts["reach"] == pytest.approx(math.log10(5001), abs=1e-3)


def test_reddit_karma_is_a_scaled_reach_proxy():
    frame = metrics_frame([("r", NetworkMetrics("reddit", "r", likes=150_000))])
    parts = score_influence(frame).explanation.iloc[0]["networks"][0]
    assert parts["audience"] == 150_000 / influence.REDDIT_KARMA_PER_FOLLOWER
    assert parts["engagement"] == 0.0  # karma is not per-post engagement


def test_reactions_count_relative_to_output():
    few_posts = account(5000, reposts_per_post=100 / 10, posts=10)
    many_posts = account(5000, reposts_per_post=100 / 1000, posts=1000)
    assert raw(few_posts) > raw(many_posts)


def test_activity_is_capped():
    assert raw(account(1000, recent=influence.ACTIVITY_CAP)) == raw(account(1000, recent=10_000))
    assert raw(account(1000, recent=50)) > raw(account(1000, recent=5))


# ---------------------------------------------------------------- networks combined


def test_second_network_adds_less_than_the_first_and_never_subtracts():
    rng = np.random.default_rng(7)
    rows = []
    for i in range(300):
        a = account(float(rng.lognormal(6, 2)), network="x", customer=f"a{i}")
        b = account(float(rng.lognormal(6, 2)), network="bluesky", customer=f"b{i}")
        rows += [a, b, dict(a, customer_id=f"ab{i}"), dict(b, customer_id=f"ab{i}")]
    result = score_influence(pd.DataFrame(rows)).raw
    for i in range(300):
        both, only_a, only_b = result[f"ab{i}"], result[f"a{i}"], result[f"b{i}"]
        best, other = max(only_a, only_b), min(only_a, only_b)
        assert both >= best
        assert both - best == pytest.approx(0.5 * other, abs=1e-9)
        assert both - best <= 0.5 * best + 1e-9
    useless = {"customer_id": "C", "network": "reddit", "handle": "gone"}
    single = account(5000, customer="C")
    assert raw(single, useless) == raw(single)


def test_third_network_weights():
    rows = [account(10**k, network=n) for k, n in zip((5, 3, 2), ("x", "bluesky", "mastodon"))]
    networks = score_influence(pd.DataFrame(rows)).explanation.iloc[0]["networks"]
    assert [n["weight"] for n in networks] == [1.0, 0.5, 0.25]
    assert [n["network"] for n in networks] == ["x", "bluesky", "mastodon"]


# ---------------------------------------------------------------- the scale


def followers_for(target: float) -> float:
    """Followers a typical single-network account needs for a score (bisection)."""
    low, high = 0.0, 10.0  # log10 followers
    for _ in range(60):
        mid = (low + high) / 2
        if score(account(10**mid)) < target:
            low = mid
        else:
            high = mid
    return 10**high


def test_points_are_harder_to_earn_near_the_top():
    f20, f30, f60, f70 = (followers_for(t) for t in (20, 30, 60, 70))
    assert f20 < f30 < f60 < f70
    assert (f70 - f60) > 100 * (f30 - f20)  # in followers
    raw_at = {
        t: influence.CURVE_SCALE * (-math.log1p(-(t - 1) / 99)) ** (1 / influence.CURVE_SHAPE)
        for t in (20, 30, 60, 70)
    }
    assert raw_at[70] - raw_at[60] > raw_at[30] - raw_at[20]  # in raw model units


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_median_of_a_realistic_population_is_about_20(seed):
    result = score_influence(population(20_000, seed))
    median = float(result.influence.median())
    assert 17.0 <= median <= 23.0, median
    assert result.influence.between(1, 100).all()
    top = result.influence.quantile(0.99)
    assert 45 <= top <= 80, top  # a small top tier, not a crowd


def test_calibration_constants_reproduce_from_the_published_population():
    result = score_influence(influence.calibration_population(60_000, seed=20261125))
    scale, shape = influence.fit_curve(result.raw.to_numpy())
    assert scale == pytest.approx(influence.CURVE_SCALE, rel=0.03)
    assert shape == pytest.approx(influence.CURVE_SHAPE, rel=0.05)
    assert result.influence.median() == pytest.approx(20, abs=1.0)


# ---------------------------------------------------------------- explanation


def test_explanation_is_json_and_adds_up():
    rows = [
        account(50_000, network="x"),
        account(800, network="bluesky"),
        {"customer_id": "C", "network": "youtube", "handle": "@c", "followers": 9000},
    ]
    result = score_influence(pd.DataFrame(rows))
    explanation = result.explanation.iloc[0]
    json.dumps(explanation, allow_nan=False)
    assert explanation["model"] == MODEL_VERSION
    assert explanation["influence"] == result.influence.iloc[0]
    total = 0.0
    for part in explanation["networks"]:
        points = part["reach"] + part["amplification"] + part["engagement"] + part["activity"]
        assert points == pytest.approx(part["score"], abs=0.005)
        assert part["contribution"] == pytest.approx(part["weight"] * part["score"], abs=0.005)
        total += part["contribution"]
    assert total == pytest.approx(result.raw.iloc[0], abs=0.01)
    assert "never subtracts" in explanation["combination"]


def test_row_order_strings_and_duplicates_do_not_matter():
    frame = population(300, 11)
    baseline = score_influence(frame)
    shuffled = frame.sample(frac=1.0, random_state=3)
    doubled = pd.concat([shuffled, shuffled.head(50)])
    as_text = doubled.assign(followers=doubled["followers"].astype(str))
    again = score_influence(as_text)
    pd.testing.assert_series_equal(baseline.influence, again.influence.loc[baseline.index])


def test_missing_required_columns_are_named():
    with pytest.raises(ValueError, match="customer_id"):
        score_influence(pd.DataFrame({"network": ["x"], "followers": [1]}))


# ---------------------------------------------------------------- demo, end to end


def test_demo_snapshot_tells_the_story():
    source = SnapshotSource(SNAPSHOT)
    customers = json.loads(CUSTOMERS.read_text(encoding="utf-8"))
    pairs = []
    for customer in customers:
        for network, handle in customer["handles"].items():
            found = source.fetch_metrics(network, [handle])
            assert handle in found, (network, handle)
            pairs.append((customer["id"], found[handle]))
    scores = score_influence(metrics_frame(pairs))
    by_handle = {
        handle: scores.loc[c["id"], "influence"]
        for c in customers
        for handle in c["handles"].values()
    }
    assert set(scores.index) == {c["id"] for c in customers if c["handles"]}
    assert by_handle["farahtech"] > by_handle["adaq"] > by_handle["elmstdental"]
    assert by_handle["farahtech"] >= 85
    assert by_handle["jonahpike_promo"] < by_handle["farahtech"] - 50
    assert by_handle["jonahpike_promo"] < by_handle["adaq"] - 30
    jonah = scores.loc["C-1010", "explanation"]["networks"][0]
    assert jonah["followers"] > 400_000 and jonah["quality"] < 0.01
    assert scores.influence.between(1, 100).all()
