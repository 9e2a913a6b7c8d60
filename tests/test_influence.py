"""The influence model: its published properties, its calibration, the demo story.

Everything runs the real model on real frames; the synthetic population is
generated here independently of `calibration_population` (and of the bench's),
so the median check is a check of the calibration, not a restatement of it.
Property-based checks of the same statements live in
tests/test_influence_properties.py.
"""

from __future__ import annotations

import json
import math
from itertools import pairwise
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from connectors.social.snapshot import SnapshotSource
from ranking import influence
from ranking.influence import MODEL_VERSION, metrics_frame, score_influence
from ranking.metrics import NetworkMetrics

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


# network: (share, median audience, sigma of ln audience); reddit's audience is karma
BOOK = {
    "x": (0.34, 200.0, 1.8),
    "bluesky": (0.17, 90.0, 1.7),
    "mastodon": (0.15, 70.0, 1.5),
    "github": (0.12, 10.0, 1.6),
    "reddit": (0.12, 2_000.0, 1.9),
    "youtube": (0.10, 150.0, 2.2),
}


def population(n_accounts: int, seed: int) -> pd.DataFrame:
    """A realistic book of accounts, one customer each: lognormal audiences in
    each network's own units, a third on Reddit/GitHub/YouTube, a quarter
    silent, engagement that grows with audience where the network has posts."""
    rng = np.random.default_rng(seed)
    names = list(BOOK)
    share = np.array([BOOK[k][0] for k in names])
    network = np.asarray(names, dtype=object)[rng.choice(len(names), n_accounts, p=share)]
    median = np.array([BOOK[k][1] for k in network])
    sigma = np.array([BOOK[k][2] for k in network])
    audience = np.floor(median * rng.lognormal(0.0, sigma))
    has_posts = np.isin(network, ["x", "bluesky", "mastodon"])
    posts = np.where(has_posts & (rng.random(n_accounts) < 0.75), 20, 0)
    likes_pp = 0.025 * audience**0.82 * rng.lognormal(0, 0.9, n_accounts)
    reddit = network == "reddit"
    return pd.DataFrame(
        {
            "customer_id": np.arange(n_accounts).astype(str),
            "network": network,
            "handle": np.arange(n_accounts).astype(str),
            "followers": np.where(reddit, np.nan, audience),
            "following": np.floor(rng.lognormal(np.log(300), 1.1, n_accounts)),
            "posts_total": np.nan,
            "sample_posts": posts,
            "likes": np.where(
                reddit, audience, np.where(posts > 0, np.round(likes_pp * posts), np.nan)
            ),
            "replies": np.round(0.12 * likes_pp * posts * rng.lognormal(0, 0.5, n_accounts)),
            "reposts": np.round(0.08 * likes_pp * posts * rng.lognormal(0, 0.7, n_accounts)),
            "recent_posts_90d": np.where(
                posts > 0, rng.poisson(rng.lognormal(np.log(10), 1.3, n_accounts)), 0
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
    assert result.loc["zero", "influence"] == 1.0
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
    assert result.loc["engaged", "influence"] - result.loc["bought", "influence"] > 20
    assert result.loc["undamped", "influence"] - result.loc["bought", "influence"] > 25
    x = result.loc["bought", "explanation"]["networks"][0]
    # 500k followers count as some 6k: the prior (10 medians x the fourth root of
    # followers / 10 medians) plus what 3 reactions a post vouch for
    assert x["quality"] < 0.02 and x["credible_audience"] < 10_000
    assert x["damping"] > 0.95


def test_following_penalty_follows_tweepcred_without_a_cliff():
    def divisor(followers, following):
        row = account(followers, 5, following=following)
        return score_influence(pd.DataFrame([row])).explanation.iloc[0]["networks"][0][
            "following_divisor"
        ]

    assert divisor(300, 1_000) < 1.05  # well below the threshold: next to nothing
    assert divisor(300, 2_500) == pytest.approx(math.sqrt(50.0), rel=1e-3)  # half way in
    assert divisor(300, 6_000) > 45  # ratio ~20: (almost) the capped divisor
    assert divisor(100_000, 5_000) == 1.0  # ratio below 0.6
    ratio = (1 + 4000) / (1 + 5000)
    ramp = 1 / (1 + (2500 / 4000) ** 6)
    expected = math.exp(ramp * 3.0 * (ratio - 0.6) * math.log(math.log(4000)))
    assert divisor(5000, 4000) == pytest.approx(expected, abs=1e-3)
    # v1 dropped 1,000 followers from 24.3 to 12.7 between 2,500 and 2,501 followed
    assert abs(score(account(1000, following=2_500)) - score(account(1000, following=2_501))) <= 0.1
    assert score(account(300, 5, following=6_000)) < score(account(300, 5, following=1_000)) - 5


def test_networks_without_engagement_are_not_damped_and_taken_as_typical():
    github = metrics_frame([("g", NetworkMetrics("github", "g", followers=5000, following=10))])
    parts = score_influence(github).explanation.iloc[0]["networks"][0]
    assert parts["quality"] == 1.0 and parts["credible_audience"] is None
    ref = influence.REFERENCE["github"]
    slope = (influence.REACH_TOP - influence.REACH_MEDIAN) / (
        math.log10(1 + ref.top) - math.log10(1 + ref.median)
    )
    expected = influence.REACH_MEDIAN + (math.log10(5001) - math.log10(1 + ref.median)) * slope
    assert parts["normalised_reach"] == pytest.approx(expected, abs=1e-3)
    assert parts["equivalent_followers"] == pytest.approx(10**expected - 1, rel=1e-2)
    # the API has no reactions: imputed as typical for that reach, neither reward nor penalty
    assert parts["engagement_imputed"] is True
    assert parts["engagement"] == pytest.approx(influence.W_ENGAGEMENT * expected, abs=2e-3)
    assert parts["amplification"] == pytest.approx(influence.W_AMPLIFICATION * expected, abs=2e-3)


def test_reddit_karma_is_reddits_audience():
    frame = metrics_frame([("r", NetworkMetrics("reddit", "r", likes=150_000))])
    parts = score_influence(frame).explanation.iloc[0]["networks"][0]
    assert parts["audience"] == 150_000  # karma, normalised on reddit's own reference
    assert parts["engagement_imputed"] is True  # karma is not per-post engagement
    assert parts["quality"] == 1.0  # karma is reactions already: not damped again


def test_reactions_count_relative_to_output():
    few_posts = account(5000, reposts_per_post=100 / 10, posts=10)
    many_posts = account(5000, reposts_per_post=100 / 1000, posts=1000)
    assert raw(few_posts) > raw(many_posts)


def test_activity_is_capped():
    assert raw(account(1000, recent=influence.ACTIVITY_CAP)) == raw(account(1000, recent=10_000))
    assert raw(account(1000, recent=50)) > raw(account(1000, recent=5))


# ---------------------------------------------------------------- networks combined


def strength(result: pd.DataFrame, customer: str) -> float:
    return result.loc[customer, "explanation"]["strength"]


def test_second_network_adds_less_than_the_first_and_never_subtracts():
    rng = np.random.default_rng(7)
    rows = []
    for i in range(300):
        a = account(float(rng.lognormal(6, 2)), network="x", customer=f"a{i}")
        b = account(float(rng.lognormal(6, 2)), network="bluesky", customer=f"b{i}")
        rows += [a, b, dict(a, customer_id=f"ab{i}"), dict(b, customer_id=f"ab{i}")]
    result = score_influence(pd.DataFrame(rows))
    most = influence.COMBINE_SCALE * math.log10(1 + influence.NETWORK_DECAY)
    for i in range(300):
        both, only_a, only_b = (strength(result, f"{k}{i}") for k in ("ab", "a", "b"))
        best, other = max(only_a, only_b), min(only_a, only_b)
        assert both >= best - 1e-9
        # audiences add: the second counts at half, so it adds at most log10(1.5)
        # decades (an equal second network), and less the smaller it is
        expected = influence.COMBINE_SCALE * math.log10(
            1
            + 0.5
            * (10 ** (other / influence.COMBINE_SCALE) - 1)
            / 10 ** (best / influence.COMBINE_SCALE)
        )
        assert both - best == pytest.approx(expected, abs=2e-3)
        assert both - best <= most + 1e-3
        raw_both = result.loc[f"ab{i}", "raw"]
        raw_best = result.loc[[f"a{i}", f"b{i}"], "raw"].max()
        assert raw_best <= raw_both < 2 * raw_best + 1e-9  # adds less than the first gives
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
    f20, f30, f60, f70, f80, f90 = (followers_for(t) for t in (20, 30, 60, 70, 80, 90))
    assert f20 < f30 < f60 < f70 < f80 < f90
    assert (f70 - f60) > 100 * (f30 - f20)  # in followers
    assert f30 / f20 < f70 / f60 < f90 / f80  # in follower growth (v1: x4.4, x4.2, x16)
    raw_at = {
        t: influence.CURVE_RANGE * (1 - ((100 - t) / 99) ** (1 / influence.CURVE_POWER))
        for t in (20, 30, 60, 70)
    }
    assert raw_at[70] - raw_at[60] > raw_at[30] - raw_at[20]  # in raw model units


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_median_of_a_realistic_population_is_about_20(seed):
    frame = population(20_000, seed)
    result = score_influence(frame, explain=False)
    median = float(result.influence.median())
    assert 17.0 <= median <= 23.0, median
    assert result.influence.between(1, 100).all()
    top = result.influence.quantile(0.99)
    assert 45 <= top <= 80, top  # a small top tier, not a crowd
    by_network = result.influence.groupby(frame.set_index("customer_id")["network"]).median()
    assert by_network.between(10, 30).all(), by_network.to_dict()  # no network left behind


def test_calibration_constants_reproduce_from_the_published_population():
    frame = influence.calibration_population(60_000, seed=influence.CALIBRATION_SEED)
    offset, curve_range = influence.fit_curve(frame)
    assert offset == pytest.approx(influence.CURVE_OFFSET, abs=0.1)
    assert curve_range == pytest.approx(influence.CURVE_RANGE, rel=0.02)
    result = score_influence(frame, explain=False)
    assert result.influence.median() == pytest.approx(20, abs=1.0)
    for network in influence.REFERENCE:  # the top anchor, on every network
        top = influence.typical_frame(network, influence.REFERENCE[network].top)
        assert score_influence(top).influence.iloc[0] == pytest.approx(influence.TOP_SCORE, abs=0.2)


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
        assert points == pytest.approx(part["strength"], abs=0.005)
        assert part["damping"] == pytest.approx(1 - part["quality"], abs=0.002)
        assert part["normalised_reach"] is not None
        total += part["contribution"]
    assert [p["weight"] for p in explanation["networks"]] == [1.0, 0.5, 0.25]
    assert total == pytest.approx(explanation["strength"], abs=0.01)
    offset = influence.CURVE_OFFSET
    assert result.raw.iloc[0] == pytest.approx(
        float(influence._points(np.array([explanation["strength"]]), offset)[0]), abs=0.01
    )
    assert "never subtracts" in explanation["combination"]
    assert str(influence.CURVE_RANGE) in explanation["curve"]


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
            assert isinstance(found.get(handle), NetworkMetrics), (network, handle, found)
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
    assert by_handle["farahtech"] == scores.influence.max()
    # Jonah's half million bought followers count as some 6k: he ranks with the
    # small accounts, far below Ada and Farah, and gets no INFLUENCER flag
    assert by_handle["jonahpike_promo"] < by_handle["farahtech"] - 35
    assert by_handle["jonahpike_promo"] < by_handle["adaq"] - 15
    assert by_handle["jonahpike_promo"] < 60  # no INFLUENCER flag
    jonah = scores.loc["C-1010", "explanation"]["networks"][0]
    assert jonah["followers"] > 400_000 and jonah["quality"] < 0.05
    assert scores.influence.between(1, 100).all()
