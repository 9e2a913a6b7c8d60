"""Complaint strength and "going public" detection from ticket text.

Complaint strength combines two things:

* **VADER** (`vaderSentiment`, a maintained rule-based sentiment model made
  for short social text). It ships its lexicon inside the wheel, so there is
  no download and no network call, and it handles negation ("not happy",
  "not disappointed at all"), intensity ("very", "extremely"), capitals,
  "!!!" and common emoji. Only its *negative* side counts here: a negative
  compound score adds complaint points.
* **Support cues**: regexes for what a general sentiment model does not see
  as negative: "charged twice", "refund", "cancel my subscription",
  "switching to a competitor", "is down", "can't log in", "still broken",
  "third time", "escalate", chargebacks. Cues a negation flips ("not
  disappointed", "not a single issue") are matched negation-aware.
  A few resolution cues ("fixed it", "works now", "solved") take points away,
  so "it was broken but you fixed it, thanks" reads as praise.

Positive VADER sentiment does *not* cancel a support cue: "Great, charged
twice again. Love it." is sarcasm around a real billing fault, and "thanks,
but the login still fails" is still a complaint.

Scoring: points = cue points + VADER_POINTS * max(0, -compound) (compound
is VADER's -1..1 score); strength = 1 - exp(-points / SATURATION_POINTS).
One strong cue (1.5 points) gives 0.53, i.e. just over the default
`complaint_threshold` of 0.5; a strongly negative message with no cue
(compound -0.8) gives ~0.55; neutral and praise stay at or near 0. The curve
never reaches 1, so a long rant can't exceed 1.

Text the model can't read is not guessed: `complaint_readable` is False for
empty text and for text that is mostly not English (non-Latin script, or
more common function words from German/Spanish/French/Italian/Portuguese/
Dutch than from English), and `complaint_strength` returns 0.0 for it. A
heuristic, not `langdetect`: langdetect is non-deterministic unless seeded,
unreliable on the 3-8 word messages support desks see, costs milliseconds
per text and pulls in another dependency; a "which language is this" answer
is not needed, only "is this English enough for VADER".

Cost: the cues are vectorised pandas string passes (~10 regex passes per
batch). VADER is per text, pure Python: roughly 50-100 µs for a one-line
ticket, growing with length, i.e. ~10-20k texts/s on one core; identical
texts are scored once (bench/complaint_eval.py measures texts/s).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

__all__ = [
    "COMPLAINT_CUES",
    "RESOLUTION_CUES",
    "SATURATION_POINTS",
    "SOCIAL_PATTERNS",
    "SOCIAL_WORDS",
    "VADER_POINTS",
    "complaint_readable",
    "unscored_notes",
    "NOT_SCORED",
    "complaint_strength",
    "mentions_social",
]

# Negators that may sit up to two words before a cue ("not at all happy" is rare; "not very happy" common).
_NEG = r"(?:not|never|no|isn'?t|wasn'?t|aren'?t|weren'?t|don'?t|doesn'?t|didn'?t|hardly)"
_NEGATED = _NEG + r"\s+(?:\w+\s+){0,2}?"

# (points, regex) — lower case, matched against lower-cased text with apostrophes normalised to '.
COMPLAINT_CUES: tuple[tuple[float, str], ...] = (
    # Money: double charges, wrong amounts, refunds demanded, chargebacks.
    (1.5, r"\b(?:charged|billed|debited)\s+(?:me\s+|us\s+)?(?:twice|two times|double|again|for\b[^.!?]{0,30}\b(?:never|didn'?t|did not|don'?t))"),
    (1.5, r"\b(?:double|duplicate)[- ](?:charged?|billed|billing|payments?)\b"),
    (1.5, r"\bover-?charg(?:ed|ing|e)\b"),
    (1.5, r"\b(?:want|need|demand|requested|asked for|waiting (?:on|for)|still no|promised)\s+(?:\w+\s+){0,2}refund\b"),
    (1.5, r"\brefund (?:me|us|the)\b|\brefund i was promised\b"),
    (1.5, r"\b(?:charge ?backs?|disput(?:e|ing) the charge|rip-?off)\b"),
    (1.0, r"\b(?:wrong|incorrect) (?:amount|vat|invoice|price|currency)\b|\b(?:invoice|amount|charge|bill) (?:is|was) wrong\b"),
    # Churn: cancelling, leaving, looking elsewhere.
    (1.5, r"\b(?:(?:will|going to|gonna|we'?re|i'?m|please|to) cancel(?:l?ing)?|cancel(?:l?ing)? (?:my|our) (?:account|subscription|plan|contract)|cancell?ing today)\b"),
    (1.5, r"\b(?:switch(?:ing)?|mov(?:e|ing)) to (?:a |another )?(?:competitor|provider|vendor|alternative)|\b(?:evaluating|looking at) alternatives|\b(?:business|money) elsewhere|\blost a customer\b|\breconsider"),
    # Outages and faults.
    (1.5, r"\b(?:outages?|downtime)\b|\b(?:is|are|was|been|still|went|goes|go) down\b|\bdown (?:again|for|since)\b"),
    (1.5, r"\b(?:not|isn'?t|aren'?t|doesn'?t|don'?t|won'?t|didn'?t|stopped|never) (?:\w+ )?(?:work(?:ing|s)?|load(?:ing|s)?|open|arrives?|fire|sync(?:ing)?|let me)\b"),
    (1.5, r"\b(?:can'?t|cannot|can not|unable to|couldn'?t) (?:log ?in|login|sign in|get in|access)\b|\blocked out\b|\blogin (?:still )?fails\b"),
    (1.5, r"\b(?:broken|broke|crash(?:es|ed|ing)?|unusable|freezes|corrupted|wiped|timing out|spins forever|not fixed|none of [^.!?]{0,20}load|nothing (?:works|loads|fixes))\b"),
    (1.0, r"\b(?:fail(?:s|ed|ing|ure)?|errors?|bug|missing|disappears|deleted|lost|expired)\b"),
    (1.5, r"\b(?:is|are|was|were) (?:all )?gone\b|\bclosed without (?:a |any )?(?:reply|response|answer)|\bthanks for nothing\b"),
    (1.5, r"\b(?:charged|billed) for\b[^.!?]{0,30}\b(?:when|but|while) (?:we|i) only\b"),
    # Persistence and repetition: their own weight class (1.45, not 1.5), because cues of one
    # class are one alternation that counts non-overlapping hits, and "still broken" must add
    # to "broken", not replace it.
    (1.45, r"\bstill (?:broken|not|no\b|down|can'?t|waiting|fails|failing|nothing|there|locked|the same)|\bstill\b[^.!?]{0,25}\b(?:broken|fails|there)\b"),
    (1.0, r"\bwaiting (?:for )?(?:\d+|a|two|three|four|five|several) (?:days|weeks)\b|\bfix (?:it|this)\s*[.!]"),
    (1.45, r"\b(?:second|third|fourth|fifth|2nd|3rd|4th|5th|umpteenth|nth|hundredth) (?:time|email|ticket|month)\b|\b(?:three|four|five|ten|\d+) times\b"),
    (0.5, r"\bagain\b|\bfor (?:days|weeks|hours|months)\b|\bevery (?:single )?time\b|\b(?:no ?one|nobody) (?:\w+ )?(?:answers|responds|replied|responded|answering|reply)|\bnever (?:arrives|showed)|\bignor(?:e|ed|es|ing)\b"),
    # Dissatisfaction a negation expresses (VADER sees these too; the cue makes them count at once).
    (1.5, r"\b" + _NEGATED + r"(?:happy|satisfied|impressed|acceptable|ok|okay|pleased)\b|\bunacceptable\b|\bunhappy\b|\bwhat am i paying for\b"),
    # Escalation threats.
    (1.5, r"\b(?:speak|talk) to (?:a |your )?(?:manager|supervisor|someone senior)|\bescalat(?:e|ed|ing|ion)\b|\b(?:lawyers?|lawsuit|legal action)\b|\blast straw\b|\bfed up\b|\bif (?:nobody|no one) (?:responds|replies|answers)|\bif i don'?t hear back\b"),
    (1.0, r"\b(?:frustrat(?:ed|ing)|annoyed|furious|angry|misled|worst|useless|ridiculous|waste of)\b"),
)
# Negation-aware: "disappointed" counts unless a negator precedes it.
_NEGATABLE_CUES: tuple[tuple[float, str], ...] = (
    (1.0, r"\bdisappoint(?:ed|ing|ment)\b"),
)
# A problem that has been fixed: subtract.
RESOLUTION_CUES: tuple[tuple[float, str], ...] = (
    (2.0, r"(?<!not )(?<!n't )(?<!never )\b(?:fixed|resolved|solved|sorted)\b(?!\?)|\bworks (?:now|again|perfectly|great)\b|\bworking (?:great )?again\b|\bfix works\b"),
    (1.0, r"\b(?:thank(?:s| you)|kudos|appreciate)\b[^.!?]{0,20}\b(?:refund|fix|help)"),
)
VADER_POINTS = 2.0
SATURATION_POINTS = 2.0

# Phrases meaning "this is (or is about to be) public". "@" must start a
# handle, not sit inside an e-mail address. "thread" needs a social context
# because "this e-mail thread" is everyday support language.
SOCIAL_PATTERNS: tuple[str, ...] = (
    r"\btweet(?:s|ed|ing)?\b",
    r"\bretweet(?:s|ed)?\b",
    r"\bposted (?:this |it |about (?:this|it|you) )?(?:on|to)\b",
    r"\bpost(?:ing)? (?:this |it )?(?:on|to) (?:twitter|x|reddit|linkedin|facebook|"
    r"instagram|tiktok|youtube|bluesky|mastodon|threads|hacker ?news)\b",
    r"(?<![\w.@])@[a-z0-9_]{2,}\b(?!\.[a-z])",
    r"\b(?:my|a|the) (?:twitter |x |reddit |reply )?thread (?:on|about)\b",
    r"\b(?:twitter|reddit|x|bluesky|mastodon) thread\b",
    r"\b(?:followers|subscribers|my audience)\b",
    r"\bgo(?:ing)? public\b",
    r"\bgo(?:ne|ing)? viral\b",
    r"\b(?:review|reviewed) (?:on|at) (?:g2|capterra|trustpilot|yelp|google)\b",
    r"\b(?:my|our) (?:channel|podcast|newsletter|blog)\b",
)

# Readability: common function words. Words shared between English and the
# others ("a", "no", "me", "is", "in", "on", "die", "en") are left out of both.
_ENGLISH_WORDS = frozenset(
    "the to and of for it i you my we our your this that was with not have has be are "
    "can do does did but please thanks thank why how what where when who which will would "
    "could should there their they them us an at from by if or so as been just all any "
    "its it's i'm i've don't doesn't can't won't isn't we're you're about after again still "
    "since today yesterday every".split()
)
_FOREIGN_WORDS = frozenset(
    # de
    "der das und ist nicht ich mit ein eine zu den von für auf wir sie sehr wurde wie kann "
    "mehr schon dass wenn bis uns alles vielen dank ihr "
    # es
    "el la los las que y por con una un mi se del está este esta muy cómo puedo nadie "
    "otra vez gracias estamos ya van seguimos "
    # fr
    "le les et est pas je nous vous une des du il elle avec pour ne qui suis tout "
    "depuis merci votre notre ce c'est si rien "
    # it
    "il non che di è sono mio grazie posso riesco "
    # pt
    "não com os uma ninguém meus obrigado pelo foi fui "
    # nl
    "het een niet ik niemand werkt bedankt voor snelle hoe kan mijn".split()
) - _ENGLISH_WORDS
_MIN_LATIN_SHARE = 0.7  # of letters; below this the text is in another script (CJK, Cyrillic, ...)

_analyzer: SentimentIntensityAnalyzer | None = None


def _vader() -> SentimentIntensityAnalyzer:
    """One analyzer per process, built on first use (loading its lexicon takes ~50 ms)."""
    global _analyzer
    if _analyzer is None:
        _analyzer = SentimentIntensityAnalyzer()
    return _analyzer


def _alternation(patterns: list[str] | tuple[str, ...]) -> str:
    """One regex for many terms (an alternation counts non-overlapping hits)."""
    return "|".join(f"(?:{rx})" for rx in patterns)


_SOCIAL_RX = _alternation(SOCIAL_PATTERNS)


def _by_weight(cues: tuple[tuple[float, str], ...]) -> dict[float, str]:
    return {w: _alternation([rx for p, rx in cues if p == w]) for w in sorted({p for p, _ in cues})}


_CUE_RX = _by_weight(COMPLAINT_CUES)
_RESOLVED_RX = _by_weight(RESOLUTION_CUES)
_NEGATABLE_RX = [(w, rx, _NEGATED + rx[2:] if rx.startswith(r"\b") else _NEGATED + rx)
                 for w, rx in _NEGATABLE_CUES]


NOT_SCORED = "complaint not scored: language not read"


def complaint_readable(texts: pd.Series) -> pd.Series:
    """True where the text is English enough to score; False for empty or mostly non-English text.

    Identical texts are judged once (a per-text Python check, so batches repeat a lot).
    """
    codes, uniques = pd.factorize(_text(texts), sort=False)
    judged = np.fromiter((_readable(t) for t in uniques), dtype=bool, count=len(uniques))
    out = judged[codes] if len(codes) else np.zeros(0, dtype=bool)
    return pd.Series(out, index=texts.index, dtype=bool)


def unscored_notes(texts: pd.Series) -> list[str]:
    """NOT_SCORED where there is text the model can't read, else "": the reason says so
    instead of the score guessing."""
    present = _text(texts).str.strip().ne("").to_numpy()
    unread = present & ~complaint_readable(texts).to_numpy()
    return [NOT_SCORED if u else "" for u in unread]


def _readable(text: str) -> bool:
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return False
    latin = sum(1 for c in letters if c < "\u0250")  # ASCII + Latin-1/Extended-A/B (accents)
    if latin / len(letters) < _MIN_LATIN_SHARE:
        return False
    words = [w.strip(".,!?;:()\"'¿¡«»") for w in text.split()]
    english = sum(w in _ENGLISH_WORDS for w in words)
    foreign = sum(w in _FOREIGN_WORDS for w in words)
    ascii_share = sum(1 for c in letters if c.isascii()) / len(letters)
    if ascii_share < 0.9 and english == 0:
        return False
    return foreign <= english or foreign < 2 and english > 0 or foreign == 0


def complaint_strength(texts: pd.Series) -> pd.Series:
    """0..1 complaint strength per text; empty, missing or unreadable text -> 0.0.

    Identical texts are scored once; each row's value depends on its text only.
    """
    raw = _raw(texts)
    codes, uniques = pd.factorize(raw, sort=False)
    original = pd.Series(uniques, dtype=object)  # VADER reads case: "BROKEN" is louder than "broken"
    unique = _text(original)
    readable = complaint_readable(original).to_numpy()
    points = np.zeros(len(unique))
    for weight, pattern in _CUE_RX.items():
        points += weight * unique.str.count(pattern).to_numpy(dtype=float)
    for weight, plain, negated in _NEGATABLE_RX:
        hits = unique.str.count(plain).to_numpy(dtype=float) - unique.str.count(negated).to_numpy(dtype=float)
        points += weight * np.maximum(hits, 0.0)
    for weight, pattern in _RESOLVED_RX.items():
        points -= weight * unique.str.count(pattern).to_numpy(dtype=float)
    # VADER per text (the one part that is not vectorised), readable texts only.
    vader = _vader()
    negativity = np.zeros(len(unique))
    for i in np.flatnonzero(readable):
        negativity[i] = max(0.0, -vader.polarity_scores(original.iat[i])["compound"])
    points = np.maximum(points + VADER_POINTS * negativity, 0.0)
    strength = np.where(readable, 1.0 - np.exp(-points / SATURATION_POINTS), 0.0)
    values = strength[codes] if len(codes) else np.zeros(0)
    return pd.Series(values, index=texts.index, dtype=float)


# Every SOCIAL_PATTERNS alternative needs one of these in the (lower-cased) text. Most
# tickets contain none, and a substring test per word is far cheaper than trying the
# whole alternation at every position (profiled: that search was ~4% of a worker batch).
# Keep in step with SOCIAL_PATTERNS: a test checks each pattern names one of them.
SOCIAL_WORDS: tuple[str, ...] = ("tweet", "post", "@", "thread", "followers", "subscribers",
                                 "audience", "public", "viral", "review", "channel", "podcast",
                                 "newsletter", "blog")
_SOCIAL_RE = re.compile(_SOCIAL_RX)


def mentions_social(texts: pd.Series) -> pd.Series:
    """True where the text says the customer posted, or will post, publicly."""
    search = _SOCIAL_RE.search
    hits = [any(w in t for w in SOCIAL_WORDS) and search(t) is not None
            for t in _text(texts).tolist()]
    return pd.Series(np.array(hits, dtype=bool), index=texts.index, dtype=bool)


def _raw(texts: pd.Series) -> pd.Series:
    """Plain Python strings, object dtype; None/NaN/non-strings become ""."""
    clean = [t if isinstance(t, str) else "" for t in texts.astype(object).tolist()]
    return pd.Series(clean, index=texts.index, dtype=object)


def _text(texts: pd.Series) -> pd.Series:
    """Lower-cased plain Python strings with \u2019 as '; None/NaN/non-strings become "".

    Object dtype on purpose: the patterns use look-arounds, which Python's
    `re` supports but the RE2 engine behind pyarrow-backed strings does not.
    """
    return _raw(texts).str.lower().str.replace("\u2019", "'", regex=False)
