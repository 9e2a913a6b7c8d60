"""Behaviour of the complaint detector (VADER + support cues), readability and social mentions."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ranking.sentiment import (COMPLAINT_CUES, SOCIAL_PATTERNS, SOCIAL_WORDS, complaint_readable,
                               complaint_strength, mentions_social)

ROOT = Path(__file__).resolve().parent.parent
EVAL_SET = ROOT / "tests" / "fixtures" / "complaints" / "eval.jsonl"
_spec = importlib.util.spec_from_file_location("complaint_eval", ROOT / "bench" / "complaint_eval.py")
complaint_eval = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(complaint_eval)


def strength(text: str | None) -> float:
    return float(complaint_strength(pd.Series([text])).iloc[0])


def social(text: str | None) -> bool:
    return bool(mentions_social(pd.Series([text])).iloc[0])


# --- complaint_strength ---------------------------------------------------------

THRESHOLD = 0.5  # the priority model's default complaint_threshold


@pytest.mark.parametrize(
    "text",
    ["How do I export my invoices to CSV?", "Thanks, that fixed it!", "", "   ",
     "Please update the billing address", "Downtown office hours?",
     "Is the refundable deposit taxed?", "great!!!"],
)
def test_neutral_text_scores_zero(text):
    assert strength(text) == 0.0


@pytest.mark.parametrize(
    "text",
    ["I want a refund", "Please cancel my account", "This is unacceptable",
     "Your site is down", "I am furious and fed up", "The export is broken", "Sync stopped working",
     "We are switching to a competitor", "Third time I report this"],
)
def test_each_support_cue_alone_flags_a_complaint(text):
    assert THRESHOLD <= strength(text) < 1.0


# The examples issue 9 found misread by the old lexicon.
@pytest.mark.parametrize(
    "text",
    ["Not happy with the latest release.", "Login doesn't work", "You charged me twice for March",
     "Great, charged twice again. Love it.", "Can't log in since this morning",
     "Still broken after your last update", "This is the third time I'm asking"],
)
def test_issue_complaints_are_flagged(text):
    assert strength(text) >= THRESHOLD


@pytest.mark.parametrize(
    "text",
    ["Not disappointed at all", "Still the best tool we use!!", "No complaints here, it just works.",
     "It was broken yesterday, but your fix works now. Thanks!", "Love the new dashboard!"],
)
def test_issue_praise_is_not_flagged(text):
    assert strength(text) < THRESHOLD


def test_negation_flips_disappointment_but_not_unhappiness():
    assert strength("I am disappointed") > strength("I am not disappointed at all")
    assert strength("I am not disappointed at all") < THRESHOLD
    assert strength("I am not happy") >= THRESHOLD > strength("I am happy")


def test_case_insensitive_cues_and_capitals_count():
    assert strength("REFUND ME NOW") >= THRESHOLD and strength("refund me now") >= THRESHOLD
    assert strength("Charged Twice") == strength("charged twice")


def test_more_problems_raise_strength_but_saturate_below_one():
    ladder = [
        "the export is broken",
        "the export is still broken",
        "the export is still broken, third time I report it",
        "the export is still broken, third time I report it. I want a refund or we cancel",
    ]
    values = [strength(t) for t in ladder]
    assert values == sorted(values) and len(set(values)) == len(values)
    rant = "broken refund outage unacceptable furious worst scam charged twice " * 5
    assert 0.99 < strength(rant) < 1.0


def test_missing_text_scores_zero_and_index_is_kept():
    texts = pd.Series(["refund me now", None, np.nan, 42], index=["a", "b", "c", "d"])
    out = complaint_strength(texts)
    assert out.index.tolist() == ["a", "b", "c", "d"]
    assert out.dtype == np.float64
    assert out.loc["a"] > 0
    assert out.loc[["b", "c", "d"]].tolist() == [0.0, 0.0, 0.0]


def test_pandas_string_dtype_is_accepted():
    # plugin/ranker.py hands in dtype="string" with pd.NA for missing text.
    texts = pd.Series(["Login doesn't work", pd.NA, "thanks!"], dtype="string")
    out = complaint_strength(texts)
    assert out.iloc[0] >= THRESHOLD and out.iloc[1] == 0.0 and out.iloc[2] < THRESHOLD


def test_bounded_and_vectorized_equals_per_text():
    rng = np.random.default_rng(0)
    words = np.array(["refund", "hello", "still", "broken", "thanks", "!!!", "invoice", "again",
                      "not", "happy", "great", "down", "charged", "twice", "the", "is", "der"])
    texts = pd.Series([" ".join(rng.choice(words, rng.integers(0, 12))) for _ in range(3_000)])
    texts = pd.concat([texts, texts.iloc[:500]], ignore_index=True)  # duplicates: scored once
    out = complaint_strength(texts)
    readable = complaint_readable(texts)
    assert len(out) == 3_500 and len(readable) == 3_500
    assert out.between(0, 1).all() and out.notna().all()
    assert (out.iloc[3_000:].to_numpy() == out.iloc[:500].to_numpy()).all()
    # Row-wise equals batch-wise: no cross-row state.
    for i in range(0, 3_500, 97):
        assert strength(texts.iloc[i]) == out.iloc[i]
        assert bool(complaint_readable(pd.Series([texts.iloc[i]])).iloc[0]) == readable.iloc[i]
    assert (out[~readable] == 0.0).all()


def test_cues_are_documented_with_points():
    assert all(points > 0 and isinstance(rx, str) for points, rx in COMPLAINT_CUES)
    assert len(COMPLAINT_CUES) >= 10


def test_empty_series():
    assert complaint_strength(pd.Series([], dtype=object)).empty
    assert complaint_readable(pd.Series([], dtype=object)).empty
    assert mentions_social(pd.Series([], dtype=object)).empty


# --- complaint_readable ---------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["Ich bin sehr unzufrieden, die Rechnung wurde doppelt abgebucht.",
     "No puedo iniciar sesión desde esta mañana y nadie responde.",
     "Je ne suis pas du tout satisfait, le service est en panne.",
     "Non riesco ad accedere al mio account da due giorni.",
     "Ваш сервис снова не работает.", "ログインできません。", "你们又重复扣款了，我要退款。",
     "", "   ", None, "!!! ???"],
)
def test_unreadable_text_is_marked_and_scored_zero(text):
    assert not bool(complaint_readable(pd.Series([text])).iloc[0])
    assert strength(text) == 0.0


@pytest.mark.parametrize(
    "text",
    ["Login doesn't work", "charged twice", "Still the best tool we use!!", "Thanks!",
     "The café menu export is broken", "Merci for the quick fix, it works now"],
)
def test_english_text_is_readable(text):
    assert bool(complaint_readable(pd.Series([text])).iloc[0])


# --- the labelled evaluation set --------------------------------------------------


def test_eval_set_is_large_and_varied():
    rows = [json.loads(line) for line in EVAL_SET.read_text(encoding="utf-8").splitlines()]
    assert len(rows) >= 200
    assert {r["label"] for r in rows} == {"complaint", "praise", "neutral"}
    assert sum(r["lang"] != "en" for r in rows) >= 30
    assert len({r["text"] for r in rows}) == len(rows)


def test_eval_set_meets_the_target_on_the_held_out_split():
    scored = complaint_eval.score(complaint_eval.load())
    held = complaint_eval.metrics(scored[scored["heldout"]])
    full = complaint_eval.metrics(scored)
    assert held["f1"] >= 0.80 and held["praise_misread"] <= 0.10, held
    assert full["f1"] >= 0.80 and full["praise_misread"] <= 0.10, full
    foreign = scored[scored["lang"] != "en"]
    assert (~foreign["readable"]).mean() >= 0.9
    assert (foreign["strength"][~foreign["readable"]] == 0.0).all()


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


def test_every_social_pattern_needs_one_of_the_prefilter_words():
    """`mentions_social` only searches texts containing one of SOCIAL_WORDS: a pattern that
    could match without any of them would be skipped silently."""
    for pattern in SOCIAL_PATTERNS:
        assert any(word in pattern for word in SOCIAL_WORDS), pattern


def test_mentions_social_is_boolean_series_with_same_index():
    texts = pd.Series(["tweeted it", None, "hello"], index=[10, 20, 30])
    out = mentions_social(texts)
    assert out.dtype == bool
    assert out.index.tolist() == [10, 20, 30]
    assert out.tolist() == [True, False, False]
