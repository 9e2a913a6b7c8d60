"""Goodwill gestures for loud complaints from valuable or influential customers.

Rules come from `[goodwill]` in the settings and are tried in order. A rule
holds when the complaint is at least `min_complaint` and the customer is
valuable (spend percentile in the customer book at least
`min_spend_percentile`) or influential (influence at least `min_influence`);
an unset bound is not checked. The first rule that holds *and* whose
gesture still has budget this month (`gestures.<name>.monthly_budget`, in
`ranking.currency.base`, each suggestion charging its `value`) is suggested:
an exhausted budget falls through to the next rule (e.g. a personal apology
that costs nothing). The suggestion is stored with the ticket and the case,
shown on the ticket's JSON and the complaint feed, and the agent records
whether they used it (`POST /api/suggestions/<id>`).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from connectors.crm.base import Customer

from .mention_store import MentionStore, month_of
from .store import utcnow

log = logging.getLogger(__name__)


def spend_percentile(rt: Any, customer: Customer) -> float | None:
    """The customer's spend as a percentile (0..1) of the book, in the base currency."""
    import hashlib
    import json

    from ranking.currency import to_base
    from ranking.priority import spend_percentile as percentile

    from .book import spend_book

    if customer.monthly_spend is None:
        return None
    money = rt.settings.config.ranking.currency
    spend, unknown = to_base([customer.monthly_spend], [customer.currency], money.rates, money.base)
    if bool(np.asarray(unknown).any()):
        return None  # no rate for its currency: not ranked by spend, as in ranking
    rates_id = hashlib.sha1(json.dumps([money.base, sorted(money.rates.items())]).encode()
                            ).hexdigest()[:8]
    book = spend_book(rt.redis, rt.store, key=rt.settings.redis_key("spend-book", rates_id),
                      ttl=rt.settings.config.ranking.book_refresh_seconds,
                      rates=dict(money.rates), base=money.base)
    value = np.asarray(spend, dtype=float)
    if not np.isfinite(value).all() or len(book) == 0:
        return None
    return float(percentile(value, np.asarray(book, dtype=float))[0])


def _holds(rule: Any, complaint: float, spend_pct: float | None,
           influence: float | None) -> str | None:
    """Why the rule holds ("complaint 0.8, influence 65"), or None."""
    if complaint < rule.min_complaint:
        return None
    checks = []
    if rule.min_spend_percentile is not None and spend_pct is not None \
            and spend_pct >= rule.min_spend_percentile:
        checks.append(f"spend top {max(1, round((1 - spend_pct) * 100))}%")
    if rule.min_influence is not None and influence is not None and influence >= rule.min_influence:
        checks.append(f"influence {influence:.0f}")
    if rule.min_spend_percentile is None and rule.min_influence is None:
        checks.append("any customer")
    if not checks:
        return None
    return f"complaint {complaint:.2f}, " + " and ".join(checks)


def suggest(rt: Any, ms: MentionStore, *, mention_id: int, customer: Customer, complaint: float,
            influence: float | None, ticket_source: str | None, ticket_id: str | None,
            event_id: str | None) -> dict[str, Any] | None:
    """The gesture suggested for this case (stored, budget charged), or None."""
    cfg = rt.settings.config.goodwill
    if not cfg.enabled or not cfg.rules:
        return None
    spend_pct = spend_percentile(rt, customer)
    month = month_of(utcnow())
    over_budget: list[str] = []
    for rule in cfg.rules:
        why = _holds(rule, complaint, spend_pct, influence)
        if why is None:
            continue
        gesture = cfg.gestures[rule.gesture]
        row = {"mention_id": mention_id, "customer_id": customer.id, "ticket_source": ticket_source,
               "ticket_id": ticket_id, "event_id": event_id, "gesture": rule.gesture,
               "label": gesture.label, "value": float(gesture.value), "month": month,
               "reason": why}
        suggestion_id = ms.reserve_suggestion(row, gesture.monthly_budget)
        if suggestion_id is None:
            if ms.suggestion_for_mention(mention_id) is not None:
                return ms.suggestion_for_mention(mention_id)  # a re-run: the first one stands
            over_budget.append(rule.gesture)
            continue
        return {**row, "id": suggestion_id, "over_budget": over_budget}
    if over_budget:
        log.info("goodwill: %s over this month's budget; nothing suggested for case %d",
                 ", ".join(over_budget), mention_id)
        return {"gesture": None, "over_budget": over_budget}
    return None
