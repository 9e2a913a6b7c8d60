"""The reconcile pass: whatever a crash, an outage or the clock left undone, done again.

Run as an RQ job every `delivery.reconcile_interval_seconds` (see
`plugin.ticker`). Each step is idempotent and works under leases, so several
workers may run it; a Redis lock keeps it to one at a time anyway, since two
would only repeat each other's reads. Steps, in order:

1. the Redis inbox: queue a drain if events wait (its drain job may have died);
2. the ledger: events nobody holds (never picked up, or a dead worker's lease
   ran out) go into fresh batch jobs; ones that already failed go alone;
3. the outbox: every enabled desk's due writes, and parked transient ones
   every `delivery.parked_retry_seconds`;
4. every `delivery.rerank_interval_seconds`: open tickets are ranked again and
   those whose tier moved (waiting time, renewal distance) are written;
5. with it, settled ledger rows older than the dedupe window are forgotten.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from .delivery import flush
from .errors import describe_error, is_outage
from .inbox import ensure_drain
from .queues import enqueue_events
from .store import utcnow

log = logging.getLogger(__name__)

RERANK_PAGE = 2000


def run(rt: Any) -> dict[str, Any]:
    settings = rt.settings
    cfg = settings.config.delivery
    lock = rt.redis.lock(settings.redis_key("reconcile-lock"), timeout=max(60, cfg.lease_seconds * 2),
                         blocking_timeout=0, thread_local=False)
    if not lock.acquire():
        return {"skipped": "another reconcile is running"}
    out: dict[str, Any] = {}
    try:
        out["drain_job"] = ensure_drain(rt.redis, settings, force=True)
        out["redriven"] = redrive(rt)
        out["writes"] = flush_all(rt)
        if cfg.rerank_interval_seconds and rt.redis.set(
                settings.redis_key("rerank-due"), "1", nx=True, ex=cfg.rerank_interval_seconds):
            out["reranked"] = rerank(rt)
            out["pruned"] = rt.store.prune(
                utcnow() - dt.timedelta(seconds=settings.config.webhooks.dedupe_ttl_seconds))
    except Exception as exc:
        if not is_outage(exc):
            raise
        log.warning("reconcile stopped by an outage: %s", describe_error(exc))
        out["error"] = describe_error(exc)
    finally:
        try:
            lock.release()
        except Exception:  # expired, or Redis gone: it times out by itself
            pass
    return out


def redrive(rt: Any) -> int:
    """Queue fresh batch jobs for ledger events nobody is working on."""
    cfg = rt.settings.config.delivery
    size = rt.settings.config.queue.batch_size
    waiting = rt.store.claimable_events(cfg.stale_after_seconds, limit=size * 20)
    if not waiting:
        return 0
    fresh = [[e["source"], e["event_id"]] for e in waiting if e["attempts"] == 0]
    failed_before = [[e["source"], e["event_id"]] for e in waiting if e["attempts"] > 0]
    batches = [fresh[i:i + size] for i in range(0, len(fresh), size)] + [[k] for k in failed_before]
    with rt.redis.pipeline() as pipe:
        for batch in batches:
            enqueue_events(rt.queue, rt.settings, batch, pipeline=pipe,
                           description=f"re-drive {len(batch)} stranded event(s)")
        pipe.execute()
    log.info("re-queued %d stranded event(s) in %d job(s)", len(waiting), len(batches))
    return len(waiting)


def flush_all(rt: Any) -> dict[str, dict[str, int]]:
    """Due writes of every desk that has some (including parked ones due a slow retry)."""
    parked_before = utcnow() - dt.timedelta(seconds=rt.settings.config.delivery.parked_retry_seconds)
    enabled = set(rt.settings.enabled_desks)
    out = {}
    for desk in rt.store.desks_with_due_writes(parked_before):
        if desk in enabled:
            out[desk] = flush(rt, desk, parked_before=parked_before)
    return out


def rerank(rt: Any) -> int:
    """Rank open tickets again; record and write only those whose tier changed."""
    from .ranker import rank_tickets

    changed = 0
    after = None
    while True:
        page = rt.store.open_tickets(after, RERANK_PAGE)
        if not page:
            break
        after = (page[-1]["source"], page[-1]["id"])
        rows = [{**t, "event_id": t["last_event_id"]} for t in page if t["source"] in rt.settings.desks]
        fresh = rank_tickets(rt, rows)
        tier = {(t["source"], t["id"]): t["current_tier"] for t in page}
        moved = [d for d in fresh if d.tier != tier[(d.source, d.ticket_id)]]
        if moved:
            recorded = rt.store.record_decisions(moved) or []
            changed += len(recorded)
            for source in sorted({d.source for d in recorded}):
                if source in rt.settings.enabled_desks:
                    flush(rt, source, ticket_ids=[d.ticket_id for d in recorded if d.source == source])
        if len(page) < RERANK_PAGE:
            break
    if changed:
        log.info("re-ranking moved %d open ticket(s) to another tier", changed)
    return changed
