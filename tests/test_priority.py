"""Behaviour of `ranking.prioritize`: ordering, flags, fairness, reasons, robustness."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import datetime

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
import pandas as pd
import pytest

from ranking.priority import OUTPUT_COLUMNS, map_tiers, prioritize
from ranking.sentiment import complaint_strength, mentions_social
from ranking.weights import TIERS, Weights

NOW = pd.Timestamp("2025-06-02T12:00:00Z")
W = Weights()
# A book of 100 customers spending 100, 200, ..., 10_000 a month.
BOOK = np.arange(1, 101) * 100.0
TIER_RANK = {t: i for i, t in enumerate(TIERS)}  # 0 = urgent (best)


def ticket(**overrides) -> dict:
    """A small, quiet customer who just opened a ticket: the baseline."""
    row = {
        "ticket_id": "T-1",
        "influence": 20.0,
        "monthly_spend": 150.0,
        "contract_end": (NOW + pd.Timedelta(days=300)).strftime("%Y-%m-%d"),
        "complaint": 0.0,
        "social_mention": False,
        "ticket_created_at": (NOW - pd.Timedelta(hours=1)).isoformat(),
    }
    row.update(overrides)
    return row


def frame(*rows: dict) -> pd.DataFrame:
    return pd.DataFrame(
        [dict(r, ticket_id=r.get("ticket_id", f"T-{i}")) for i, r in enumerate(rows)]
    )


def rank_one(weights: Weights = W, **overrides) -> pd.Series:
    return prioritize(frame(ticket(**overrides)), weights, now=NOW, spend_book=BOOK).iloc[0]


def days(n: float) -> str:
    return (NOW + pd.Timedelta(days=n)).strftime("%Y-%m-%d")


def waited(hours: float) -> str:
    return (NOW - pd.Timedelta(hours=hours)).isoformat()


def random_frame(n: int, seed: int = 7, holes: bool = True) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    f = pd.DataFrame(
        {
            "ticket_id": [f"R-{i}" for i in range(n)],
            "influence": rng.integers(1, 101, n).astype(float),
            "monthly_spend": rng.lognormal(6, 1.5, n),
            "contract_end": [days(int(d)) for d in rng.integers(-80, 400, n)],
            "complaint": rng.random(n),
            "social_mention": rng.random(n) < 0.15,
            "ticket_created_at": [waited(float(h)) for h in rng.random(n) * 120],
            "desk_priority": rng.choice(["High", "Low", None], n),
        }
    )
    if holes:
        for col in ("influence", "monthly_spend", "contract_end", "complaint", "ticket_created_at"):
            f.loc[rng.random(n) < 0.1, col] = None
    return f


# --- ordering and the score formula -------------------------------------------


def test_renewal_soon_big_spender_outranks_small_idle_customer():
    f = frame(
        ticket(ticket_id="small", monthly_spend=120.0),
        ticket(ticket_id="big", monthly_spend=9_800.0, contract_end=days(10)),
    )
    out = prioritize(f, W, now=NOW, spend_book=BOOK).set_index(f["ticket_id"])
    assert out.loc["big", "score"] > out.loc["small", "score"] + 0.3
    assert out.loc["big", "tier"] in ("urgent", "high")
    assert out.loc["small", "tier"] == "low"
    assert {"VIP", "RENEWAL_SOON"} <= set(out.loc["big", "flags"])
    assert out.loc["small", "flags"] == ()


def test_score_is_weighted_mean_of_documented_components():
    row = rank_one(influence=71, monthly_spend=9_650.0, contract_end=days(12),
                   complaint=0.4, ticket_created_at=waited(6))
    expected = {
        "c_influence": 0.20 * (70 / 99) ** 1.5,
        "c_spend": 0.25 * 0.96,  # 96 of 100 book customers spend less
        "c_renewal": 0.25 * (1 - 12 / 90),
        "c_complaint": 0.15 * 0.4,
        "c_waiting": 0.15 * 6 / 24,
    }
    for col, value in expected.items():
        assert row[col] == pytest.approx(value), col
    assert row["score"] == pytest.approx(sum(expected.values()))


def test_contributions_sum_to_score_and_stay_in_unit_range():
    out = prioritize(random_frame(2_000), W, now=NOW, spend_book=BOOK)
    parts = out[[c for c in OUTPUT_COLUMNS if c.startswith("c_")]]
    assert np.allclose(parts.sum(axis=1), out["score"])
    assert out["score"].between(0, 1).all()
    assert out["score"].notna().all()
    assert (parts >= 0).all().all()
    assert set(out["tier"]) <= set(TIERS)


def test_score_is_normalised_by_total_weight():
    # Doubling every weight changes nothing: weights are shares, not absolutes.
    doubled = replace(W, influence=0.4, spend=0.5, renewal=0.5, complaint=0.3, waiting=0.3)
    f = random_frame(300)
    a = prioritize(f, W, now=NOW, spend_book=BOOK)
    b = prioritize(f, doubled, now=NOW, spend_book=BOOK)
    pd.testing.assert_frame_equal(a, b)


def test_maximal_ticket_scores_one():
    row = rank_one(influence=100, monthly_spend=1e9, contract_end=days(0), complaint=1.0,
                   ticket_created_at=waited(30))
    assert row["score"] == pytest.approx(1.0)
    assert row["tier"] == "urgent"


# --- components ---------------------------------------------------------------


def test_influence_curve_keeps_median_users_small_and_rewards_the_top():
    c = {i: rank_one(influence=i)["c_influence"] / W.influence for i in (1, 20, 60, 100)}
    assert c[1] == 0.0 and c[100] == pytest.approx(1.0)
    assert c[20] < 0.1  # median user: little
    assert c[60] > 0.4  # influencer: a lot
    assert c[60] - c[20] > c[20] - c[1]  # convex


@pytest.mark.parametrize(
    ("end", "urgency"),
    [(days(90), 0.0), (days(200), 0.0), (days(45), 0.5), (days(0), 1.0),
     (days(-10), 2 / 3), (days(-15), 0.5), (days(-30), 0.0), (days(-31), 0.0), (None, 0.0)],
)
def test_renewal_urgency_rises_towards_contract_end_and_fades_after_it(end, urgency):
    assert rank_one(contract_end=end)["c_renewal"] == pytest.approx(W.renewal * urgency)


@pytest.mark.parametrize("overrides", [
    {"influence": 59.5}, {"influence": 60.0}, {"influence": 59.99},
    {"complaint": 0.2, "social_mention": True}, {"complaint": 0.49, "social_mention": True},
    {"complaint": 0.5, "social_mention": True}, {"complaint": 0.96, "social_mention": True},
])
def test_a_reasons_labels_agree_with_its_flags(overrides):
    """The audit's cases: 'influence 60' without INFLUENCER (59.5 rounded up), and
    'public complaint 0.5' without SOCIAL_COMPLAINT (the boosted value shown)."""
    row = rank_one(**overrides)
    reason, flags = row["reason"], row["flags"]
    shows_60_plus = any(f"influence {i}" in reason for i in range(60, 101))
    if "influence" in overrides and f"influence" in reason:
        assert shows_60_plus == ("INFLUENCER" in flags), (reason, flags)
    shows_public_half = any(f"public complaint {t / 10:.1f}" in reason for t in range(5, 11))
    if "public complaint" in reason:
        assert shows_public_half == ("SOCIAL_COMPLAINT" in flags), (reason, flags)


def test_tiers_that_would_let_influence_alone_reach_urgent_are_refused():
    from plugin.settings import SettingsError, load_settings

    with pytest.raises(SettingsError) as err:
        load_settings({"CLOUT_RANKING__TIERS__URGENT": "0", "CLOUT_RANKING__TIERS__HIGH": "0",
                       "CLOUT_RANKING__TIERS__NORMAL": "0"})
    assert "ranking.tiers.high" in str(err.value)


def test_the_waiting_lift_is_a_setting_and_holds_with_a_zero_waiting_weight():
    from dataclasses import replace

    no_wait = replace(W, waiting=0.0, influence=0.35)
    lifted = rank_one(weights=no_wait, ticket_created_at=waited(49))
    assert lifted["tier"] == "high" and "raised to High" in lifted["reason"]
    off = rank_one(weights=replace(no_wait, waiting_floor_slas=0.0), ticket_created_at=waited(49))
    assert off["tier"] != "high" or "raised to High" not in off["reason"]


def test_an_ended_contract_has_no_cliff_and_never_beats_one_renewing_tomorrow():
    """The audit's case: ended 30 days ago used to outrank renewing tomorrow, then drop to 0."""
    tomorrow = rank_one(contract_end=days(1))["c_renewal"]
    ended = [rank_one(contract_end=days(-d))["c_renewal"] for d in range(0, 33)]
    assert all(e <= tomorrow + 1e-9 for e in ended[1:])
    assert all(abs(a - b) <= W.renewal / 30 + 1e-9 for a, b in zip(ended, ended[1:]))


def test_waiting_component_is_hours_over_sla_capped_at_one():
    assert rank_one(ticket_created_at=waited(12))["c_waiting"] == pytest.approx(W.waiting * 0.5)
    assert rank_one(ticket_created_at=waited(240))["c_waiting"] == pytest.approx(W.waiting)
    # A creation time in the future (clock skew) is "just created", not negative.
    assert rank_one(ticket_created_at=waited(-5))["c_waiting"] == 0.0


def test_social_mention_boosts_complaint_to_threshold():
    quiet = rank_one(complaint=0.1)
    public = rank_one(complaint=0.1, social_mention=True)
    loud = rank_one(complaint=0.9, social_mention=True)
    assert quiet["c_complaint"] == pytest.approx(W.complaint * 0.1)
    assert public["c_complaint"] == pytest.approx(W.complaint * W.complaint_threshold)
    assert loud["c_complaint"] == pytest.approx(W.complaint * 0.9)


def test_social_mention_without_any_complaint_is_not_a_complaint():
    praise = rank_one(complaint=0.0, social_mention=True)
    assert praise["c_complaint"] == 0.0
    assert "complaint" not in praise["reason"]


def test_spend_percentile_without_book_ranks_within_frame():
    f = frame(*[ticket(monthly_spend=s) for s in (10, 20, 30, 40, 50, 60, 70, 80, 90, 100)])
    out = prioritize(f, W, now=NOW)
    pct = out["c_spend"] / W.spend
    assert pct.is_monotonic_increasing
    assert pct.iloc[-1] == pytest.approx(0.95)  # mid-rank of the top of 10
    assert "VIP" in out["flags"].iloc[-1] and "VIP" not in out["flags"].iloc[-3]


def test_zero_spend_gets_no_spend_boost_even_when_common():
    book = np.r_[np.zeros(50), np.arange(1, 51) * 10.0]
    f = frame(ticket(monthly_spend=0.0), ticket(monthly_spend=-5.0))
    assert (prioritize(f, W, now=NOW, spend_book=book)["c_spend"] == 0).all()


# --- flags --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "on", "off"),
    [
        ("VIP", {"monthly_spend": 9_500.0}, {"monthly_spend": 8_900.0}),
        ("INFLUENCER", {"influence": 60}, {"influence": 59}),
        ("RENEWAL_SOON", {"contract_end": days(30)}, {"contract_end": days(31)}),
        ("RENEWAL_SOON", {"contract_end": days(-30)}, {"contract_end": days(-31)}),
        ("SOCIAL_COMPLAINT", {"complaint": 0.5, "social_mention": True},
         {"complaint": 0.49, "social_mention": True}),
        ("SOCIAL_COMPLAINT", {"complaint": 0.9, "social_mention": True},
         {"complaint": 0.9, "social_mention": False}),
        ("AGED", {"ticket_created_at": waited(48)}, {"ticket_created_at": waited(47.9)}),
    ],
)
def test_flag_thresholds(flag, on, off):
    assert flag in rank_one(**on)["flags"]
    assert flag not in rank_one(**off)["flags"]


def test_flags_are_tuples_in_fixed_order():
    row = rank_one(monthly_spend=1e6, influence=90, contract_end=days(3), complaint=0.8,
                   social_mention=True, ticket_created_at=waited(72))
    assert row["flags"] == ("VIP", "INFLUENCER", "RENEWAL_SOON", "SOCIAL_COMPLAINT", "AGED")


# --- tiers and the fairness guard ---------------------------------------------

WAIT_ONLY = Weights(influence=0, spend=0, renewal=0, complaint=0, waiting=1,
                    sla_hours=100, aged_hours=1_000)


@pytest.mark.parametrize(
    ("hours", "tier"), [(19.9, "low"), (20, "normal"), (39.9, "normal"), (40, "high"),
                        (59.9, "high"), (60, "urgent"), (99, "urgent")],
)
def test_tier_thresholds_are_inclusive(hours, tier):
    row = rank_one(WAIT_ONLY, ticket_created_at=waited(hours))
    assert row["score"] == pytest.approx(hours / 100)
    assert row["tier"] == tier


def test_custom_thresholds_move_tiers():
    strict = replace(WAIT_ONLY, tier_urgent=0.9, tier_high=0.8, tier_normal=0.7)
    assert rank_one(strict, ticket_created_at=waited(75))["tier"] == "normal"
    assert rank_one(WAIT_ONLY, ticket_created_at=waited(75))["tier"] == "urgent"


def test_influence_alone_never_reaches_urgent():
    celebrity_weights = replace(W, influence=5.0)  # an admin who loves celebrities
    row = rank_one(celebrity_weights, influence=100, monthly_spend=None)
    assert row["score"] >= celebrity_weights.tier_urgent  # the raw score would say urgent...
    assert row["tier"] == "high"  # ...but influence alone can't get there
    assert "influence alone can't make a ticket urgent" in row["reason"]


def test_influence_can_tip_a_real_problem_into_urgent():
    w = replace(W, influence=0.5)
    problem = dict(monthly_spend=9_900.0, contract_end=days(5), complaint=0.6)
    base = rank_one(w, influence=1, **problem)
    boosted = rank_one(w, influence=100, **problem)
    assert base["score"] - base["c_influence"] >= w.tier_high
    assert base["tier"] == "high" and boosted["tier"] == "urgent"


def test_old_ticket_from_small_customer_rises_to_high():
    fresh = rank_one(monthly_spend=20.0, influence=5, ticket_created_at=waited(47))
    old = rank_one(monthly_spend=20.0, influence=5, ticket_created_at=waited(48))
    assert fresh["tier"] == "low"
    assert old["tier"] == "high"
    assert old["reason"].startswith("High: waiting 2d vs 24h SLA")
    assert old["reason"].endswith("; raised to High: waited over 2x SLA")


def test_waiting_floor_holds_even_with_zero_waiting_weight():
    w = replace(W, waiting=0.0)
    row = rank_one(w, monthly_spend=None, influence=None, ticket_created_at=waited(24 * 30))
    assert row["tier"] == "high"
    assert row["reason"] == "High: no priority signals; raised to High: waited over 2x SLA"


def test_fairness_invariants_hold_on_random_queue():
    w = replace(W, influence=0.6)  # make the influence cap actually bite
    f = random_frame(3_000, seed=3)
    out = prioritize(f, w, now=NOW, spend_book=BOOK)
    urgent = out["tier"] == "urgent"
    assert urgent.any()
    assert (out.loc[urgent, "score"] - out.loc[urgent, "c_influence"] >= w.tier_high - 1e-9).all()
    hours = (NOW - pd.to_datetime(f["ticket_created_at"], utc=True)) / pd.Timedelta(hours=1)
    long_wait = hours >= 2 * w.sla_hours
    assert long_wait.any()
    assert out.loc[long_wait, "tier"].isin(["urgent", "high"]).all()


# --- weights change the outcome ----------------------------------------------


def test_raising_spend_weight_moves_big_spender_up():
    f = frame(
        ticket(ticket_id="star", influence=100, monthly_spend=200.0),
        ticket(ticket_id="payer", influence=10, monthly_spend=9_900.0),
    )
    social_first = replace(W, influence=0.6, spend=0.1)
    money_first = replace(W, influence=0.1, spend=0.6)
    a = prioritize(f, social_first, now=NOW, spend_book=BOOK)
    b = prioritize(f, money_first, now=NOW, spend_book=BOOK)
    assert a["score"].iloc[0] > a["score"].iloc[1]
    assert b["score"].iloc[1] > b["score"].iloc[0]
    assert TIER_RANK[b["tier"].iloc[1]] < TIER_RANK[a["tier"].iloc[1]]


@pytest.mark.parametrize(
    "bad",
    [dict(spend=-0.1), dict(influence=float("nan")),
     dict(influence=0, spend=0, renewal=0, complaint=0, waiting=0), dict(sla_hours=0)],
)
def test_invalid_weights_are_rejected_with_a_clear_error(bad):
    with pytest.raises(ValueError):
        prioritize(frame(ticket()), replace(W, **bad), now=NOW)


# --- missing and odd values ---------------------------------------------------


def test_all_missing_values_rank_low_without_nan():
    row = rank_one(influence=None, monthly_spend=np.nan, contract_end=None, complaint=None,
                   social_mention=None, ticket_created_at=None)
    assert row["score"] == 0.0
    assert row["tier"] == "low"
    assert row["flags"] == ()
    assert row["reason"] == "Low: no priority signals"


def test_garbage_values_count_as_unknown():
    f = frame(
        ticket(influence="n/a", monthly_spend="lots", contract_end="soon",
               complaint="very", social_mention="maybe", ticket_created_at="yesterday"),
        ticket(influence=250, complaint=7.0, contract_end="2025-13-45"),
    )
    out = prioritize(f, W, now=NOW, spend_book=BOOK)
    assert out["score"].notna().all() and out["score"].between(0, 1).all()
    assert out["c_influence"].iloc[0] == 0.0
    assert out["c_influence"].iloc[1] == pytest.approx(W.influence)  # clipped to 100
    assert out["c_complaint"].iloc[1] == pytest.approx(W.complaint)  # clipped to 1


def test_optional_columns_may_be_absent():
    f = frame(ticket(), ticket(contract_end=days(3))).drop(columns=["complaint", "social_mention"])
    out = prioritize(f, W, now=NOW, spend_book=BOOK)
    assert (out["c_complaint"] == 0).all()
    assert "desk_priority" not in out.columns


def test_missing_required_column_is_named():
    f = frame(ticket()).rename(columns={"monthly_spend": "spend"})
    with pytest.raises(ValueError, match="monthly_spend"):
        prioritize(f, W, now=NOW)


def test_booleans_as_desks_send_them():
    values = (True, "true", "Yes", 1, "false", 0, None)
    f = frame(*[ticket(complaint=0.9, social_mention=v) for v in values])
    flagged = prioritize(f, W, now=NOW)["flags"].map(lambda fl: "SOCIAL_COMPLAINT" in fl)
    assert flagged.tolist() == [True, True, True, True, False, False, False]


def test_book_with_nans_is_fine():
    book = np.r_[BOOK, [np.nan, np.nan]]
    a = rank_one(monthly_spend=5_050.0)
    b = prioritize(frame(ticket(monthly_spend=5_050.0)), W, now=NOW, spend_book=book).iloc[0]
    assert a["c_spend"] == b["c_spend"]
    empty_book = prioritize(frame(ticket()), W, now=NOW, spend_book=np.array([np.nan]))
    assert empty_book["c_spend"].iloc[0] == 0.0


def test_time_inputs_in_any_common_form():
    created = NOW - pd.Timedelta(hours=12)
    forms = [
        created.isoformat(),
        created.tz_convert("America/New_York").isoformat(),
        created.to_pydatetime(),
        created.strftime("%Y-%m-%dT%H:%M:%SZ"),
    ]
    f = frame(*[ticket(ticket_created_at=c, contract_end=e) for c, e in
                zip(forms, [days(10), (NOW + pd.Timedelta(days=10)).date(),
                            NOW + pd.Timedelta(days=10), days(10)])])
    out = prioritize(f, W, now=NOW.to_pydatetime())
    assert np.allclose(out["c_waiting"], W.waiting * 0.5)
    assert np.allclose(out["c_renewal"], W.renewal * (1 - 10 / 90))
    naive_now = prioritize(f, W, now=datetime(2025, 6, 2, 12, 0))  # naive -> UTC
    pd.testing.assert_frame_equal(out, naive_now)


def test_empty_frame_gives_empty_output_with_columns():
    out = prioritize(frame(ticket()).iloc[:0], W, now=NOW)
    assert list(out.columns) == list(OUTPUT_COLUMNS)
    assert len(out) == 0
    assert prioritize(pd.DataFrame(), W, now=NOW).columns.tolist() == list(OUTPUT_COLUMNS)


def test_index_and_desk_priority_are_preserved():
    f = frame(ticket(desk_priority="High"), ticket(desk_priority=None), ticket(desk_priority="Low"))
    f.index = ["z", "a", "z"]  # even duplicates
    out = prioritize(f, W, now=NOW)
    assert out.index.tolist() == ["z", "a", "z"]
    assert out["desk_priority"].tolist()[::2] == ["High", "Low"]
    assert pd.isna(out["desk_priority"].iloc[1])


# --- reason text --------------------------------------------------------------


def test_reason_matches_agent_facing_example():
    row = rank_one(influence=71, monthly_spend=9_650.0, contract_end=days(12))
    assert row["reason"] == (
        "High: spend top 4% (+0.24), renewal in 12 days (+0.22), influence 71 (+0.12)"
    )


@pytest.mark.parametrize(
    ("overrides", "phrase"),
    [
        ({"contract_end": days(1)}, "renewal tomorrow"),
        ({"contract_end": days(0)}, "renewal today"),
        ({"contract_end": days(-1)}, "contract ended yesterday"),
        ({"contract_end": days(-9)}, "contract ended 9 days ago"),
        ({"complaint": 0.8}, "complaint 0.8 (+0.12)"),
        # The measured value, marked public (the boost going public gives is in the amount).
        ({"complaint": 0.2, "social_mention": True}, "public complaint 0.2 (+0.08)"),
        ({"ticket_created_at": waited(30)}, "waiting 30h vs 24h SLA (+0.15)"),
        ({"ticket_created_at": waited(24 * 9 + 5)}, "waiting 9d vs 24h SLA"),
    ],
)
def test_reason_phrases(overrides, phrase):
    assert phrase in rank_one(**overrides)["reason"]


REASON_RE = re.compile(
    r"^(Urgent|High|Normal|Low): "
    r"(no priority signals|[^,;()]+ \(\+\d\.\d\d\)(, [^,;()]+ \(\+\d\.\d\d\)){0,2})"
    r"(; .+)?$"
)


def test_reason_format_and_order_over_random_queue():
    out = prioritize(random_frame(2_000, seed=11), W, now=NOW, spend_book=BOOK)
    for tier, reason in zip(out["tier"], out["reason"]):
        assert REASON_RE.match(reason), reason
        assert reason.startswith(tier.capitalize() + ": ")
        amounts = [float(a) for a in re.findall(r"\(\+(\d\.\d\d)\)", reason)]
        assert amounts == sorted(amounts, reverse=True), reason
        assert all(a > 0 for a in amounts)


def test_reason_skips_zero_contributions():
    row = rank_one(influence=1, monthly_spend=None, contract_end=days(60),
                   ticket_created_at=waited(0))
    assert row["reason"] == "Low: renewal in 60 days (+0.08)"


# --- consistency and properties -----------------------------------------------


def test_one_row_alone_equals_same_row_in_a_thousand():
    f = random_frame(1_000, seed=5)
    book = pd.Series(np.random.default_rng(1).lognormal(6, 1.5, 5_000))
    together = prioritize(f, W, now=NOW, spend_book=book)
    for i in range(0, 1_000, 37):
        alone = prioritize(f.iloc[[i]], W, now=NOW, spend_book=book)
        pd.testing.assert_frame_equal(alone, together.iloc[[i]])


def test_deterministic_and_order_independent_without_book():
    f = random_frame(500, seed=9)
    a = prioritize(f, W, now=NOW)
    pd.testing.assert_frame_equal(a, prioritize(f, W, now=NOW))
    shuffled = f.sample(frac=1.0, random_state=4)
    b = prioritize(shuffled, W, now=NOW)
    pd.testing.assert_frame_equal(a, b.loc[a.index])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_more_spend_never_lowers_score(seed):
    f = random_frame(1_000, seed=seed)
    book = np.random.default_rng(seed).lognormal(6, 1.5, 2_000)
    before = prioritize(f, W, now=NOW, spend_book=book)
    richer = f.assign(monthly_spend=f["monthly_spend"] * 1.7 + 1.0)
    after = prioritize(richer, W, now=NOW, spend_book=book)
    known = f["monthly_spend"].notna()
    assert (after["score"] >= before["score"] - 1e-12).all()
    assert (after.loc[known, "c_spend"] >= before.loc[known, "c_spend"]).all()
    assert (after["tier"].map(TIER_RANK) <= before["tier"].map(TIER_RANK)).all()


@pytest.mark.parametrize("seed", [0, 1])
def test_waiting_longer_never_lowers_score(seed):
    f = random_frame(1_000, seed=seed)
    base = prioritize(f, W, now=NOW, spend_book=BOOK)
    # Five hours on is still the same calendar day, so only waiting can change.
    later = prioritize(f, W, now=NOW + pd.Timedelta(hours=5), spend_book=BOOK)
    assert (later["c_waiting"] >= base["c_waiting"]).all()
    assert (later["score"] >= base["score"] - 1e-12).all()
    assert (later["tier"].map(TIER_RANK) <= base["tier"].map(TIER_RANK)).all()


# --- tier mapping and sentiment integration -----------------------------------


def test_map_tiers_to_desk_values():
    tiers = pd.Series(["urgent", "high", "normal", "low"], index=[5, 6, 7, 8])
    salesforce = {"urgent": "High", "high": "High", "normal": "Medium", "low": "Low"}
    freshdesk = {"urgent": "4", "high": "3", "normal": "2", "low": "1"}
    assert map_tiers(tiers, salesforce).tolist() == ["High", "High", "Medium", "Low"]
    assert map_tiers(tiers, freshdesk).index.tolist() == [5, 6, 7, 8]
    out = prioritize(random_frame(200), W, now=NOW)
    assert set(map_tiers(out["tier"], salesforce)) <= {"High", "Medium", "Low"}


def test_map_tiers_names_the_missing_tier():
    with pytest.raises(ValueError, match="'urgent'"):
        map_tiers(pd.Series(["high", "urgent"]), {"high": "High", "normal": "Medium", "low": "Low"})


def test_complaint_text_feeds_priority():
    texts = pd.Series([
        "How do I export my invoices?",
        "Still broken again!!! I want a refund. Tweeted about it to my 40k followers.",
    ])
    f = frame(ticket(), ticket()).assign(
        complaint=complaint_strength(texts), social_mention=mentions_social(texts)
    )
    out = prioritize(f, W, now=NOW, spend_book=BOOK)
    assert out["flags"].iloc[1] == ("SOCIAL_COMPLAINT",)
    assert out["score"].iloc[1] > out["score"].iloc[0]
    assert "public complaint" in out["reason"].iloc[1]


def test_package_reexports_public_api():
    import ranking

    assert ranking.prioritize is prioritize and ranking.map_tiers is map_tiers
    assert ranking.Weights is Weights and ranking.TIERS == TIERS
    assert ranking.complaint_strength is complaint_strength


def test_spend_converts_to_the_base_currency_and_flags_unknown_ones():
    from ranking.currency import to_base

    spend, unknown = to_base([100.0, 20_000.0, 50.0, None], ["USD", "jpy", "XTS", "EUR"],
                             {"USD": 1.0, "JPY": 0.0067, "EUR": 1.08}, "USD")
    assert spend[0] == 100.0 and spend[1] == pytest.approx(134.0)
    assert np.isnan(spend[2]) and np.isnan(spend[3])
    assert unknown.tolist() == [False, False, True, False]  # no amount: nothing to say


def test_currency_rates_are_validated_naming_the_key():
    from plugin.settings import SettingsError, load_settings

    with pytest.raises(SettingsError, match="ranking.currency"):
        load_settings({"CLOUT_RANKING__CURRENCY__RATES": '{ usd = 1.0, EUR = -2 }'})
    assert load_settings({}).config.ranking.currency.rates["JPY"] == pytest.approx(0.0067)


def test_tiers_by_share_hold_within_one_point_on_a_100k_book():
    """The issue's done-when: shares of 5% urgent, 20% high, 40% normal on a 100k book.
    The long-wait lift is off here: it lifts on purpose, whatever the shares."""
    from dataclasses import replace

    from ranking.priority import share_thresholds

    book = random_frame(100_000, seed=11, holes=False)
    w = replace(W, waiting_floor_slas=0.0)
    scores = prioritize(book, w, now=NOW, spend_book=BOOK)["score"].to_numpy()
    urgent, high, normal = share_thresholds(scores, 0.05, 0.20, 0.40)
    ranked = prioritize(book, replace(w, tier_urgent=urgent, tier_high=high, tier_normal=normal),
                        now=NOW, spend_book=BOOK)
    share = ranked["tier"].value_counts(normalize=True)
    assert share.get("urgent", 0) <= 0.05 + 1e-9  # "at most": the influence guard only lowers it
    assert abs(share.get("urgent", 0) - 0.05) <= 0.01
    assert abs(share.get("high", 0) - 0.20) <= 0.01
    assert abs(share.get("normal", 0) - 0.40) <= 0.01


def test_share_thresholds_with_no_scores_and_ties():
    from ranking.priority import share_thresholds

    assert share_thresholds(np.array([]), 0.05, 0.2, 0.4) == (0.0, 0.0, 0.0)
    same = share_thresholds(np.full(100, 0.3), 0.05, 0.2, 0.4)
    assert same == (0.3, 0.3, 0.3)  # a tie is one tier; shares can't split equal scores


def test_tier_shares_in_one_call_match_the_two_pass_thresholds():
    """`prioritize(..., tier_shares=...)` (what `clout rank` and the bench use) gives the
    same tiers as computing the scores, taking thresholds, and ranking again."""
    from dataclasses import replace

    from ranking.priority import share_weights

    book = random_frame(20_000, seed=5)
    scores = prioritize(book, W, now=NOW, spend_book=BOOK)["score"].to_numpy()
    two_pass = prioritize(book, share_weights(W, scores, 0.05, 0.20, 0.40), now=NOW, spend_book=BOOK)
    one_call = prioritize(book, W, now=NOW, spend_book=BOOK, tier_shares=(0.05, 0.20, 0.40))
    assert one_call["tier"].equals(two_pass["tier"])
    assert one_call["reason"].equals(two_pass["reason"])
    assert one_call["tier"].value_counts(normalize=True)["urgent"] <= 0.05 + 1e-9
    # Fixed thresholds would have given a different mix: the shares really applied.
    assert not one_call["tier"].equals(prioritize(book, W, now=NOW, spend_book=BOOK)["tier"])
    # Too few scores say nothing about shares: the fixed thresholds stay.
    assert share_weights(W, scores[:19], 0.05, 0.2, 0.4) == W
    high_only = share_weights(replace(W), np.zeros(100), 0.05, 0.2, 0.4)
    assert high_only.tier_high > 0  # influence-alone guard keeps a threshold above 0


@given(st.lists(st.lists(st.sampled_from([0.0, 0.05, 0.1, 0.1, 0.2, 0.35]), min_size=5,
                         max_size=5), min_size=1, max_size=60))
@settings(max_examples=200, deadline=None)
def test_reason_order_is_a_stable_descending_sort_of_contributions(rows):
    """The reason's slots come from pairwise counting, not argsort: same order, ties
    included (many equal contributions here)."""
    from ranking.priority import _slot_components

    contrib = np.array(rows, dtype=float)
    expected = np.argsort(-contrib, axis=1, kind="stable")[:, :3]
    got = np.column_stack(_slot_components(contrib, 3))
    assert (got == expected).all()


def test_reasons_are_arrow_backed_text_and_notes_join():
    frame = random_frame(50, seed=2)
    frame["reason_note"] = ["spend not ranked: no rate for XYZ" if i % 2 else None
                            for i in range(50)]
    out = prioritize(frame, W, now=NOW, spend_book=BOOK)
    assert out["reason"].dtype == "str" and out["tier"].dtype == "str"
    noted = out["reason"][1::2]
    assert noted.str.endswith("; spend not ranked: no rate for XYZ").all()
    assert not out["reason"][0::2].str.contains("no rate").any()
    assert out["reason"].str.match(r"^(Urgent|High|Normal|Low): ").all()
