"""Behaviour of the complaint lexicon and the social-mention detector."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ranking.sentiment import COMPLAINT_LEXICON, complaint_strength, mentions_social


def strength(text: str | None) -> float:
    return float(complaint_strength(pd.Series([text])).iloc[0])


def social(text: str | None) -> bool:
    return bool(mentions_social(pd.Series([text])).iloc[0])


# --- complaint_strength ---------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["How do I export my invoices to CSV?", "Thanks, that fixed it!", "", "   ",
     "Please update the billing address", "Downtown office hours?",
     "Is the refundable deposit taxed?"],
)
def test_neutral_text_scores_zero(text):
    assert strength(text) == 0.0


@pytest.mark.parametrize(
    "text",
    ["I want a refund", "Please cancel my account", "This is unacceptable",
     "Is there an outage?", "I am furious", "The export is broken", "Sync stopped working",
     "Your site is down", "We want our cancellation processed"],
)
def test_each_strong_term_alone_is_a_clear_signal(text):
    assert 0.3 < strength(text) < 0.5


def test_case_insensitive():
    assert strength("REFUND") == strength("refund") == strength("Refund") > 0


def test_more_hits_raise_strength_but_saturate_below_one():
    ladder = [
        "the export is broken",
        "the export is broken again",
        "the export is still broken again!!!",
        "the export is still broken again!!! refund me or I cancel",
        "broken broken broken refund cancel outage unacceptable furious worst scam " * 5,
    ]
    values = [strength(t) for t in ladder]
    assert values == sorted(values) and len(set(values)) == len(values)
    assert values[-1] < 1.0
    assert values[-1] > 0.99


def test_intensifiers_add_to_but_do_not_make_a_complaint():
    assert 0 < strength("still waiting, again") < strength("still broken")
    assert strength("great!!!") > strength("great!") == 0.0


def test_missing_text_scores_zero_and_index_is_kept():
    texts = pd.Series(["refund now", None, np.nan, 42], index=["a", "b", "c", "d"])
    out = complaint_strength(texts)
    assert out.index.tolist() == ["a", "b", "c", "d"]
    assert out.dtype == np.float64
    assert out.loc["a"] > 0
    assert out.loc[["b", "c", "d"]].tolist() == [0.0, 0.0, 0.0]


def test_bounded_and_vectorized_over_many_rows():
    rng = np.random.default_rng(0)
    words = np.array(["refund", "hello", "still", "broken", "thanks", "!!!", "invoice", "again"])
    texts = pd.Series([" ".join(rng.choice(words, rng.integers(0, 12))) for _ in range(5_000)])
    out = complaint_strength(texts)
    assert len(out) == 5_000
    assert out.between(0, 1).all() and out.notna().all()
    # Row-wise equals batch-wise: no cross-row state.
    for i in range(0, 5_000, 499):
        assert strength(texts.iloc[i]) == out.iloc[i]


def test_lexicon_is_documented_with_points():
    assert all(points > 0 and isinstance(rx, str) for points, rx in COMPLAINT_LEXICON)
    assert len(COMPLAINT_LEXICON) >= 10


def test_empty_series():
    assert complaint_strength(pd.Series([], dtype=object)).empty
    assert mentions_social(pd.Series([], dtype=object)).empty


# --- mentions_social ------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["I tweeted about this yesterday", "Posted on Reddit, people agree", "cc @acme_support",
     "@acme fix your app", "My twitter thread about your outage is blowing up",
     "I'll write a thread on this", "Telling my 50k followers", "We are going public with this",
     "This will go viral", "I'm posting this to LinkedIn", "Reviewed on Trustpilot"],
)
def test_detects_public_mentions(text):
    assert social(text)


@pytest.mark.parametrize(
    "text",
    ["Email me at bob@example.com", "See the email thread below", "I will post the logs later",
     "Please follow up", "Publication date is wrong", "Can you thread the needle here?", None, ""],
)
def test_ignores_ordinary_support_language(text):
    assert not social(text)


def test_mentions_social_is_boolean_series_with_same_index():
    texts = pd.Series(["tweeted it", None, "hello"], index=[10, 20, 30])
    out = mentions_social(texts)
    assert out.dtype == bool
    assert out.index.tolist() == [10, 20, 30]
    assert out.tolist() == [True, False, False]
