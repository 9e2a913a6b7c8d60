"""Turn stored tickets into decisions: the whole batch through `ranking.prioritize` at once.

Used for fresh events (`plugin.jobs.process_events`) and for re-ranking open
tickets as the clock moves (`plugin.reconcile`); both rank from what the store
holds, so the result doesn't depend on which path asked.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from connectors.crm.base import Customer, Decision
from ranking import complaint_strength, map_tiers, mentions_social, prioritize
from ranking.currency import join_notes, no_rate_notes, to_base
from ranking.sentiment import unscored_notes

from .book import spend_book
from .influence import NO_INFLUENCE, lookup_influence
from .mentions import mention_store

COMPONENTS = ("influence", "spend", "renewal", "complaint", "waiting")


def tier_weights(rt: Any) -> Any:
    """The settings' weights, with tier thresholds from the open tickets' scores when tiers
    are set as shares (and there are enough open tickets for shares to mean something)."""
    from ranking.priority import share_weights

    from .book import score_book

    settings = rt.settings
    weights = settings.weights
    tiers = settings.config.ranking.tiers
    if tiers.mode != "share":
        return weights
    book = score_book(rt.redis, rt.store, key=settings.redis_key("score-book"),
                      ttl=tiers.share_refresh_seconds)
    return share_weights(weights, book, tiers.urgent_share, tiers.high_share, tiers.normal_share)


def rank_tickets(rt: Any, rows: Sequence[dict[str, Any]], now: dt.datetime | None = None, *,
                 customers: Mapping[str, Customer] | None = None) -> list[Decision]:
    """One decision per row. A row is a stored ticket: source, id, customer_id, subject,
    description, created_at, desk_priority and `event_id` (the event it answers).
    `customers`: the stored customers, when the caller has just read them."""
    if not rows:
        return []
    settings = rt.settings
    now = now or dt.datetime.now(dt.timezone.utc)
    wanted = sorted({r["customer_id"] for r in rows})
    if customers is None or any(cid not in customers for cid in wanted):
        customers = rt.store.get_customers(wanted)
    cfg = settings.config.influence
    influence = lookup_influence(
        [c for c in customers.values() if c.handles], source=rt.influence, cache=rt.redis,
        store=rt.store, ttl=cfg.cache_ttl_seconds, prefix=settings.redis_key("influence"),
        not_found_ttl=cfg.not_found_ttl_seconds,
    )

    def fact(row: dict[str, Any], name: str) -> Any:
        customer = customers.get(row["customer_id"])
        return getattr(customer, name) if customer is not None else None

    text = pd.Series([f"{r.get('subject') or ''}\n{r.get('description') or ''}" for r in rows],
                     dtype="string")
    frame = pd.DataFrame({
        "ticket_id": [r["id"] for r in rows],
        "influence": [influence.get(r["customer_id"], {}).get("score", NO_INFLUENCE) for r in rows],
        "monthly_spend": [fact(r, "monthly_spend") for r in rows],
        "contract_end": [fact(r, "contract_end") for r in rows],
        "ticket_created_at": [r.get("created_at") for r in rows],
        "desk_priority": [r.get("desk_priority") for r in rows],
    })
    money = settings.config.ranking.currency
    currency = [fact(r, "currency") for r in rows]
    spend, unknown = to_base(pd.to_numeric(frame["monthly_spend"], errors="coerce").tolist(),
                             currency, money.rates, money.base)
    frame["monthly_spend"] = spend
    frame["reason_note"] = join_notes(no_rate_notes(currency, unknown), unscored_notes(text))
    complaint = complaint_strength(text).to_numpy(dtype=float)
    social = mentions_social(text).to_numpy(dtype=bool)
    # A post escalated to a ticket stays on it, whatever text the desk sends later.
    public = mention_store(rt).public_complaints([(r["source"], r["id"]) for r in rows])
    if public:
        posted = np.array([public.get((r["source"], r["id"]), np.nan) for r in rows])
        linked = ~np.isnan(posted)
        complaint = np.where(linked, np.fmax(complaint, np.nan_to_num(posted)), complaint)
        social = social | linked
    frame["complaint"] = complaint
    frame["social_mention"] = social
    weights = tier_weights(rt)
    rates_id = hashlib.sha1(json.dumps([money.base, sorted(money.rates.items())]).encode()).hexdigest()[:8]
    book = spend_book(rt.redis, rt.store, key=settings.redis_key("spend-book", rates_id),
                      ttl=settings.config.ranking.book_refresh_seconds, rates=dict(money.rates),
                      base=money.base)
    ranked = prioritize(frame, weights, now=pd.Timestamp(now), spend_book=book)
    sources = pd.Series([r["source"] for r in rows])
    desk_values = pd.Series([""] * len(rows), dtype=object)
    for source in sources.unique():  # each desk's own priority values
        mask = (sources == source).to_numpy()
        desk_values[mask] = map_tiers(ranked["tier"][mask], settings.desk_priorities(source)).to_numpy()

    version = weights.version()
    decided_at = now.isoformat().replace("+00:00", "Z")
    # Plain lists first: per-row .iat lookups on a DataFrame cost more than the ranking.
    tiers = ranked["tier"].astype(str).tolist()
    scores = ranked["score"].astype(float).tolist()
    flags = ranked["flags"].tolist()
    reasons = ranked["reason"].astype(str).tolist()
    priorities = desk_values.astype(str).tolist()
    parts = {name: ranked[f"c_{name}"].astype(float).round(4).tolist() for name in COMPONENTS}
    influence_scores = frame["influence"].astype(float).tolist()
    return [
        Decision(
            source=row["source"],
            ticket_id=row["id"],
            customer_id=row["customer_id"],
            tier=tiers[i],
            priority=priorities[i],
            score=scores[i],
            flags=tuple(flags[i]),
            reason=reasons[i],
            components={**{name: parts[name][i] for name in COMPONENTS},
                        "influence_score": influence_scores[i]},
            weights_version=version,
            decided_at=decided_at,
            event_id=row.get("event_id") or "",
        )
        for i, row in enumerate(rows)
    ]
