"""Coalescing accepted events into batches, without ever holding one outside Redis.

Webhooks arrive one event at a time, but the worker ranks many at once far
faster (one pandas pass, one store round trip per step, one CRM call per
batch). So an accepted event goes onto a Redis list, the *inbox*, and at most
one small `drain_inbox` job is kept queued. When a worker runs it, the drain
moves whatever has gathered into `process_events` jobs of up to
`queue.batch_size` events. Under light load a batch holds one event; under a
burst, batches fill up by themselves.

Only one drain works at a time (a short Redis lock), and webhooks only ever
append, so the head of the list is the drain's alone: each move reads up to
`batch_size` events, writes them to the store's event ledger, then queues the
batch job and trims the list in one MULTI/EXEC. An event is always in the
inbox or in the ledger (or both, briefly); from the ledger, leases and the
reconcile pass make sure it is decided. (WATCHing the list instead would let
a steady stream of webhooks abort every move.)
"""

from __future__ import annotations

import logging
from typing import Any

import redis

from . import jsontext
from .queues import DRAIN_INBOX, enqueue_events, get_queue, job_options
from .settings import Settings

log = logging.getLogger(__name__)

# Safety valve only: if a drain job were lost, the next webhook queues a new one
# after this long. An extra drain is harmless (it finds the inbox empty).
DRAIN_FLAG_TTL = 60
# A drain holds the lock for milliseconds per batch; the TTL only matters if a
# worker dies holding it. A second drain waits this long for it, then fails (and RQ retries).
LOCK_TTL_MS = 10_000
LOCK_WAIT_SECONDS = 15.0


class DrainLockLost(RuntimeError):
    """Another drain took over (ours stalled past the lock TTL): stop before touching the list."""


def inbox_key(settings: Settings) -> str:
    return settings.redis_key("inbox")


def drain_flag_key(settings: Settings) -> str:
    return settings.redis_key("drain-job")


def drain_lock_key(settings: Settings) -> str:
    return settings.redis_key("drain-lock")


def schedule_drain(pipe: Any, settings: Settings, queue: Any, pending_drain: bytes | None) -> str:
    """Inside a MULTI: make sure a drain job is queued; returns its id."""
    if pending_drain:
        return pending_drain.decode()
    job = queue.enqueue_call(
        DRAIN_INBOX, description="drain the inbox into batches", pipeline=pipe,
        at_front=True,  # cheap, and everything behind it in the inbox waits for it
        **job_options(settings),
    )
    pipe.set(drain_flag_key(settings), job.id, ex=DRAIN_FLAG_TTL)
    return job.id


def ensure_drain(connection: redis.Redis, settings: Settings, *, force: bool = False) -> str | None:
    """Queue a drain if events wait in the inbox and none is pending.

    `force` (reconcile, worker start) queues one even if the flag says a drain is
    pending: that drain may sit in a dead worker's hands. An extra drain is harmless.
    """
    if not connection.llen(inbox_key(settings)):
        return None
    flag = drain_flag_key(settings)
    with connection.pipeline() as pipe:
        try:
            pipe.watch(flag)
            pending = None if force else pipe.get(flag)
            pipe.multi()
            job_id = schedule_drain(pipe, settings, get_queue(connection, settings), pending)
            pipe.execute()
            return job_id
        except redis.WatchError:
            return None  # someone else just scheduled one


def step_back(connection: redis.Redis, settings: Settings, queue: Any) -> bool:
    """Put a drain at the back of the queue instead of draining now, when other jobs wait
    and the inbox holds less than a full batch; returns True if it did.

    The new drain job is queued and the drain flag pointed at it in one MULTI/EXEC, so
    an event pushed meanwhile is in the inbox with that drain behind it (and webhooks
    queue no other drain while the flag is set). A deferred drain never steps back again.
    """
    if not queue.count:
        return False
    if connection.llen(inbox_key(settings)) >= settings.config.queue.batch_size:
        return False
    with connection.pipeline() as pipe:
        job = queue.enqueue_call(DRAIN_INBOX, kwargs={"deferred": True}, pipeline=pipe,
                                 description="drain the inbox into batches (after the queue)",
                                 **job_options(settings))
        pipe.set(drain_flag_key(settings), job.id, ex=DRAIN_FLAG_TTL)
        pipe.execute()
    return True


# Under a backlog deeper than BACKLOG_FACTOR batches, batches are BACKLOG_GROWTH x bigger.
BACKLOG_FACTOR = 10
BACKLOG_GROWTH = 25


def batch_size_for(waiting: int, batch_size: int) -> int:
    """Events per `process_events` job when `waiting` events wait in the inbox.

    Light load: `batch_size`. A backlog deeper than `BACKLOG_FACTOR` batches: up to
    `BACKLOG_GROWTH` x bigger, so the fixed cost of a job (its RQ bookkeeping, ~10 store
    transactions, one pandas pass) is spread over more events (RQ's bookkeeping alone
    measured ~33 ms a job with the embedded Redis fsyncing every write: about a fifth of a
    200-event batch). 25 x (5,000 events at the default) rather than 10 x: measured in
    `bench/worker_profile.py` on PostgreSQL, 5,000-event batches decided a 20,000-event
    backlog ~11% faster than 2,000-event ones. Each desk still gets its own `max_batch`
    per call, and a failing batch is still split in halves.
    """
    if waiting <= batch_size * BACKLOG_FACTOR:
        return batch_size
    return min(10_000, batch_size * BACKLOG_GROWTH)


def _ledger_row(raw: bytes) -> dict[str, Any]:
    event = jsontext.loads(raw)
    return {"source": event["source"], "event_id": event["event_id"],
            "ticket_id": event["ticket_id"], "occurred_at": event.get("occurred_at"),
            "payload": event}


def drain(connection: redis.Redis, settings: Settings, store: Any) -> dict[str, int]:
    """Move everything in the inbox into the store's ledger and `process_events` jobs.

    Each move writes the events to the ledger first (a repeat is ignored there), then
    queues the job and trims the list in one MULTI/EXEC: a crash in between leaves the
    events in both places, and the next drain's insert changes nothing.
    """
    queue = get_queue(connection, settings)
    key = inbox_key(settings)
    base = settings.config.queue.batch_size
    # Clear the flag first: an event pushed from now on schedules a new drain itself.
    connection.delete(drain_flag_key(settings))
    # Wait for a drain already running rather than skip: it may have looked at the
    # inbox before our event arrived, and nobody else would move it.
    lock = connection.lock(drain_lock_key(settings), timeout=LOCK_TTL_MS / 1000,
                           blocking_timeout=LOCK_WAIT_SECONDS, thread_local=False)
    if not lock.acquire():
        raise TimeoutError("another drain held the inbox lock too long")
    batches = events = 0
    lock_key = drain_lock_key(settings)
    token = lock.local.token
    token = token if isinstance(token, bytes) else token.encode()
    try:
        # Only what is here now: events arriving meanwhile have queued the next drain, and
        # looping until empty under a steady stream would cut it into tiny batches.
        remaining = connection.llen(key)
        size = batch_size_for(remaining, base)  # a backlog is cut into bigger batches
        while remaining > 0:
            items = connection.lrange(key, 0, min(size, remaining) - 1)
            if not items:
                break
            rows = [_ledger_row(i) for i in items]
            store.add_events(rows)
            with connection.pipeline() as pipe:
                # Still ours? (WATCH the lock, not the list: webhooks never touch the lock.)
                pipe.watch(lock_key)
                if pipe.get(lock_key) != token:
                    raise DrainLockLost("the drain lock expired and another drain took over")
                pipe.multi()  # the job written and the list trimmed together
                enqueue_events(queue, settings, [[r["source"], r["event_id"]] for r in rows],
                               pipeline=pipe)
                pipe.ltrim(key, len(items), -1)
                pipe.execute()
            batches += 1
            events += len(items)
            remaining -= len(items)
            lock.extend(LOCK_TTL_MS / 1000, replace_ttl=True)
    except redis.WatchError:
        raise DrainLockLost("the drain lock changed hands mid-move") from None
    finally:
        try:
            lock.release()
        except redis.exceptions.LockError:
            log.warning("drain lock expired before release")
    if events:
        log.info("drained %d event(s) into %d batch(es)", events, batches)
    return {"batches": batches, "events": events}
