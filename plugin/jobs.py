"""Worker jobs. They take plain JSON values and find their clients via `runtime.current()`.

`process_events` is the whole pipeline for a batch of ticket events:
customers (event facts completed from the CRM) -> influence (cache or source,
batched per network) -> `ranking.prioritize` over one DataFrame -> write back
through the CRM connector -> record every decision. Any exception fails the
job and RQ's `Retry` schedules it again; every step is idempotent (upserts,
and events already decided are skipped), so a retry is safe.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import replace
from typing import Any, Sequence

import pandas as pd
from rq import get_current_job

from connectors.crm.base import Customer, Decision
from ranking import complaint_strength, map_tiers, mentions_social, prioritize
from webhooks.event import TicketEvent

from . import runtime as runtime_mod
from .book import spend_book
from .queues import enqueue_events
from .influence import NO_INFLUENCE, lookup_influence

log = logging.getLogger(__name__)

COMPONENTS = ("influence", "spend", "renewal", "complaint", "waiting")


def merge_customer(event_facts: Any, known: Customer | None) -> Customer:
    """What the event says wins; the CRM fills the gaps (handles are merged)."""
    base = known or Customer(id=event_facts.id)
    handles = {**base.handles, **{k: v for k, v in event_facts.handles.items() if v}}
    updates = {
        name: getattr(event_facts, name)
        for name in ("name", "email", "monthly_spend", "currency", "contract_end")
        if getattr(event_facts, name) is not None
    }
    return replace(base, handles=handles, **updates)


def _when(value: str) -> dt.datetime:
    """An event's ISO time as an aware datetime (strings alone misorder fractional seconds)."""
    moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


def _latest_per_ticket(events: Sequence[TicketEvent]) -> list[TicketEvent]:
    latest: dict[tuple[str, str], TicketEvent] = {}
    for event in events:
        key = (event.source, event.ticket_id)
        if key not in latest or _when(event.occurred_at) >= _when(latest[key].occurred_at):
            latest[key] = event
    return list(latest.values())


def drain_inbox() -> dict[str, int]:
    """Turn the events gathered in the inbox into `process_events` batch jobs."""
    from .inbox import drain

    rt = runtime_mod.current()
    return drain(rt.redis, rt.settings)


def _split(events: list[dict[str, Any]], why: str) -> dict[str, Any]:
    rt = runtime_mod.current()
    half = len(events) // 2
    with rt.redis.pipeline() as pipe:  # both halves or neither
        for part in (events[:half], events[half:]):
            enqueue_events(rt.queue, rt.settings, part, pipeline=pipe,
                           description=f"process {len(part)} ticket event(s) (split after {why})")
        pipe.execute()
    log.warning("batch of %d split into %d + %d after %s", len(events), half, len(events) - half, why)
    return {"decided": 0, "split": [half, len(events) - half]}


def process_events(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Rank and write back every ticket in `events` (dicts from `TicketEvent.to_dict`).

    A batch that runs a second time (it raised, or its work-horse died, and RQ
    retried it) is not run whole again: it is split in two and both halves are
    queued as fresh jobs. One event that can never succeed thus ends up
    failing alone instead of holding back the up to `batch_size - 1` good ones
    beside it, while a short outage costs one retry back-off and a single
    split, not a burst of single-event jobs. The first attempt is marked in the
    job's meta before any work, so even a killed work-horse counts.
    """
    job = get_current_job()
    if len(events) > 1 and job is not None:
        if job.meta.get("clout_attempted"):
            return _split(events, "a failed attempt")
        job.meta["clout_attempted"] = True
        job.save_meta()
    try:
        return _process_events(events)
    except Exception:
        if len(events) > 1 and (job is None or job.retries_left is None):
            # No RQ retry will come (queue.retry_max = 0): split now instead.
            log.exception("batch of %d failed", len(events))
            return _split(events, "a failure with retries off")
        raise


def _process_events(events: list[dict[str, Any]]) -> dict[str, Any]:
    rt = runtime_mod.current()
    settings = rt.settings
    parsed = _latest_per_ticket([TicketEvent.from_dict(e) for e in events])
    if not parsed:
        return {"decided": 0, "tickets": []}
    now = dt.datetime.now(dt.timezone.utc)

    # 1. Customers: event facts completed from the CRM, kept in the store as the book.
    ids = sorted({e.customer.id for e in parsed})
    known = rt.crm.fetch_customers(ids)
    newest: dict[str, TicketEvent] = {}
    for e in sorted(parsed, key=lambda e: _when(e.occurred_at)):
        newest[e.customer.id] = e  # the newest event's facts win for each customer
    merged = {cid: merge_customer(newest[cid].customer, known.get(cid)) for cid in ids}
    rt.store.upsert_customers(merged.values(), facts_at={cid: newest[cid].occurred_at for cid in ids})
    rt.store.upsert_tickets(
        {
            "source": e.source, "id": e.ticket_id, "customer_id": e.customer.id,
            "subject": e.subject, "description": e.description,
            # A ticket can't have been created after the event about it happened.
            "created_at": min(_when(e.ticket_created_at), _when(e.occurred_at))
            if e.ticket_created_at else e.occurred_at,
            "last_event_id": e.event_id, "last_event_at": e.occurred_at,
        }
        for e in parsed
    )
    # A desk retry of an event older than what is stored changed nothing, and an event
    # already decided (delivered again under a new id, or a re-run job) needs no new decision.
    state = rt.store.ticket_state([(e.source, e.ticket_id) for e in parsed])
    current = [e for e in parsed
               if state[(e.source, e.ticket_id)]["last_event_id"] == e.event_id
               and state[(e.source, e.ticket_id)]["decided_event_id"] != e.event_id]
    stale = len(parsed) - len(current)
    if stale:
        log.info("skipping %d event(s): superseded by newer state or already decided", stale)
    parsed = current
    if not parsed:
        return {"decided": 0, "stale": stale, "tickets": []}
    # Rank on what is stored: the newest facts, and the earliest known creation time.
    customers = rt.store.get_customers(ids)
    for cid in ids:
        customers.setdefault(cid, merged[cid])
    created = {(e.source, e.ticket_id): state[(e.source, e.ticket_id)]["created_at"] for e in parsed}

    # 2. Influence, batched per network, cached in Redis.
    influence = lookup_influence(
        list(customers.values()), source=rt.influence, cache=rt.redis, store=rt.store,
        ttl=settings.config.influence.cache_ttl_seconds,
        prefix=settings.redis_key("influence"),
    )

    # 3. Rank the whole batch at once.
    text = pd.Series([f"{e.subject}\n{e.description}" for e in parsed], dtype="string")
    frame = pd.DataFrame({
        "ticket_id": [e.ticket_id for e in parsed],
        "influence": [influence.get(e.customer.id, {}).get("score", NO_INFLUENCE) for e in parsed],
        "monthly_spend": [customers[e.customer.id].monthly_spend for e in parsed],
        "contract_end": [customers[e.customer.id].contract_end for e in parsed],
        "ticket_created_at": [created[(e.source, e.ticket_id)] for e in parsed],
        "desk_priority": [e.desk_priority for e in parsed],
    })
    frame["monthly_spend"] = pd.to_numeric(frame["monthly_spend"], errors="coerce").astype(float)
    frame["complaint"] = complaint_strength(text).to_numpy(dtype=float)
    frame["social_mention"] = mentions_social(text).to_numpy(dtype=bool)
    weights = settings.weights
    book = spend_book(rt.redis, rt.store, key=settings.redis_key("spend-book"),
                      ttl=settings.config.ranking.book_refresh_seconds)
    ranked = prioritize(frame, weights, now=pd.Timestamp(now), spend_book=book)
    desk_values = map_tiers(ranked["tier"], settings.desk_priorities(rt.crm.name))

    # 4. Decisions: write to the desk, then record (history keeps what the desk was told).
    version = weights.version()
    decided_at = now.isoformat().replace("+00:00", "Z")
    decisions = [
        Decision(
            source=event.source,
            ticket_id=event.ticket_id,
            customer_id=event.customer.id,
            tier=str(ranked["tier"].iat[i]),
            priority=str(desk_values.iat[i]),
            score=float(ranked["score"].iat[i]),
            flags=tuple(ranked["flags"].iat[i]),
            reason=str(ranked["reason"].iat[i]),
            components={
                **{name: round(float(ranked[f"c_{name}"].iat[i]), 4) for name in COMPONENTS},
                "influence_score": float(frame["influence"].iat[i]),
            },
            weights_version=version,
            decided_at=decided_at,
            event_id=event.event_id,
        )
        for i, event in enumerate(parsed)
    ]
    written = rt.crm.write_decisions(decisions)
    if written.failed:
        log.warning("writeback failed for %d ticket(s): %s", len(written.failed),
                    ", ".join(f"{k}: {v}" for k, v in sorted(written.failed.items())[:10]))
    rt.store.record_decisions(decisions)
    log.info("decided %d ticket(s) with weights %s", len(decisions), version)
    return {
        "decided": len(decisions),
        "stale": stale,
        "weights_version": version,
        "writeback_failed": dict(written.failed),
        "tickets": [
            {"ticket_id": d.ticket_id, "tier": d.tier, "priority": d.priority,
             "score": round(d.score, 4), "flags": list(d.flags)}
            for d in decisions
        ],
    }
