"""The reconcile pass: whatever a crash, an outage or the clock left undone, done again.

Run as an RQ job every `delivery.reconcile_interval_seconds` (see
`plugin.ticker`). Each step is idempotent and works under leases, so two
reconciles running at once (one outlived its queued-marker) only repeat each
other's reads; there is no lock a dead worker could hold. Steps, in order:

1. the Redis inbox: queue a drain if events wait (its drain job may have died);
2. the ledger: events nobody holds (never picked up, or a dead worker's lease
   ran out) go into fresh batch jobs; ones that already failed go alone;
3. the outbox: a `flush_writes` job for every enabled desk with due writes
   (parked transient ones every `delivery.parked_retry_seconds`);
4. every `delivery.rerank_interval_seconds`: open tickets are ranked again and
   those whose tier moved (waiting time, renewal distance) are written;
5. desks that can be polled (`desks.<desk>.poll_interval_seconds`) get a catch-up poll
   job once per interval (see `plugin.polling`);
6. every `influence.refresh_interval_seconds`: a job that looks up again the influence
   of customers with open tickets whose score is older than `refresh_after_seconds`;
7. hourly, settled ledger rows older than the dedupe window are forgotten.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from .delivery import flush
from .errors import describe_error, is_outage
from .inbox import ensure_drain
from .polling import queue_polls
from .queues import enqueue_batches
from .store import utcnow
from .ticker import pending_key

log = logging.getLogger(__name__)

RERANK_PAGE = 2000
PRUNE_INTERVAL = 3600


def run(rt: Any) -> dict[str, Any]:
    settings = rt.settings
    cfg = settings.config.delivery
    out: dict[str, Any] = {}
    try:
        out["drain_job"] = ensure_drain(rt.redis, settings, force=True)
        out["redriven"] = redrive(rt)
        out["flush_jobs"] = queue_flushes(rt)
        if cfg.rerank_interval_seconds and rt.redis.set(
                settings.redis_key("rerank-due"), "1", nx=True, ex=cfg.rerank_interval_seconds):
            out["reranked"] = rerank(rt)
        out["polls"] = queue_polls(rt)
        from .mention_jobs import schedule as social  # brand-term polls, stranded mentions

        out["social"] = social(rt)
        icfg = settings.config.influence
        if icfg.refresh_interval_seconds and icfg.refresh_after_seconds and rt.redis.set(
                settings.redis_key("influence-refresh-due"), "1", nx=True,
                ex=icfg.refresh_interval_seconds):
            from .queues import job_options

            rt.queue.enqueue_call("plugin.jobs.refresh_influence", description="refresh stale "
                                  "influence of customers with open tickets", **job_options(settings))
            out["influence_refresh"] = True
        if rt.redis.set(settings.redis_key("prune-due"), "1", nx=True, ex=PRUNE_INTERVAL):
            out["pruned"] = rt.store.prune(
                utcnow() - dt.timedelta(seconds=settings.config.webhooks.dedupe_ttl_seconds))
    except Exception as exc:
        if not is_outage(exc):
            raise
        log.warning("reconcile stopped by an outage: %s", describe_error(exc))
        out["error"] = describe_error(exc)
    finally:
        try:
            rt.redis.delete(pending_key(settings))  # the next tick may queue another
        except Exception:  # Redis away: the key expires by itself
            pass
    return out


def redrive(rt: Any) -> int:
    """Queue fresh batch jobs for ledger events nobody is working on.

    Events whose lease ran out always go; events never picked up only when the queue
    is empty, since in a backlog they are most likely in a job that simply waits its turn.
    """
    cfg = rt.settings.config.delivery
    size = rt.settings.config.queue.batch_size
    waiting = rt.store.claimable_events(cfg.stale_after_seconds, limit=size * 20,
                                        expired_only=rt.queue.count > 0)
    if not waiting:
        return 0
    # Events already tried (a killed batch, or a real error) go in ever smaller batches:
    # a quarter the size per attempt, so an event that kills its work-horse ends up alone
    # within a few attempts, before it can take its neighbours to `max_event_attempts`.
    by_attempts: dict[int, list[list[str]]] = {}
    for e in waiting:
        by_attempts.setdefault(e["attempts"], []).append([e["source"], e["event_id"]])
    batches = []
    for attempts, keys in sorted(by_attempts.items()):
        step = max(1, size // (4 ** attempts))
        batches += [keys[i:i + step] for i in range(0, len(keys), step)]
    enqueue_batches(rt.redis, rt.queue, rt.settings, batches, "re-driven: stranded")
    # Queued now: not again before their job had a fair chance to run.
    rt.store.mark_requeued([(k[0], k[1]) for b in batches for k in b],
                           utcnow() + dt.timedelta(seconds=cfg.stale_after_seconds))
    log.info("re-queued %d stranded event(s) in %d job(s)", len(waiting), len(batches))
    return len(waiting)


def queue_flushes(rt: Any) -> list[str]:
    """A `flush_writes` job per desk with due writes (parked ones included when their slow
    retry is due); separate jobs, so a slow desk never holds up reconcile or other desks."""
    from .queues import FLUSH_WRITES, job_options

    parked_before = utcnow() - dt.timedelta(seconds=rt.settings.config.delivery.parked_retry_seconds)
    enabled = set(rt.settings.enabled_desks)
    desks = [d for d in rt.store.desks_with_due_writes(parked_before) if d in enabled]
    for desk in desks:
        # One queued flush per desk at a time; the key lapses if its worker dies.
        if rt.redis.set(rt.settings.redis_key("flush-queued", desk), "1", nx=True,
                        ex=rt.settings.config.delivery.lease_seconds):
            rt.queue.enqueue_call(FLUSH_WRITES, args=(desk, True), at_front=True,
                                  description=f"write due {desk} decisions", **job_options(rt.settings))
    return desks


def _drop_closed(rt: Any, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ask each desk which of these open tickets it has closed meanwhile (a desk may close
    a ticket without telling us); those leave the queue instead of being ranked."""
    from connectors.crm.base import CLOSED

    closed: set[tuple[str, str]] = set()
    for source in sorted({r["source"] for r in rows}):
        desk = rt.desk(source)
        ids = [r["id"] for r in rows if r["source"] == source]
        for i in range(0, len(ids), desk.max_batch):
            try:
                seen = desk.read_tickets(ids[i:i + desk.max_batch])
            except Exception as exc:  # the desk is away: rank what we know, ask next time
                log.warning("desk %s: reading open tickets failed: %s", source, describe_error(exc))
                break
            gone = [tid for tid, t in seen.items() if t.status == CLOSED]
            if gone:
                rt.store.mark_closed(source, gone)
                closed.update((source, tid) for tid in gone)
    return [r for r in rows if (r["source"], r["id"]) not in closed]


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
        rows = [{**t, "event_id": t["last_event_id"]} for t in page
                if t["source"] in rt.settings.enabled_desks]
        rows = _drop_closed(rt, rows)
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
