"""Coalescing accepted events into batches, without ever holding one outside Redis.

Webhooks arrive one event at a time, but the worker ranks many at once far
faster (one pandas pass, one store round trip per step, one CRM call per
batch). So an accepted event goes onto a Redis list, the *inbox*, and at most
one small `drain_inbox` job is kept queued. When a worker runs it, the drain
moves whatever has gathered into `process_events` jobs of up to
`queue.batch_size` events. Under light load a batch holds one event; under a
burst, batches fill up by themselves.

Every move is one MULTI/EXEC (the RQ job is written and the list trimmed
together, WATCHing the list), so an event is always either in the inbox or
inside a queued RQ job, where RQ's Retry and failed-job registry take over.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import redis

from .queues import DRAIN_INBOX, enqueue_events, get_queue, retry_policy
from .settings import Settings

log = logging.getLogger(__name__)

# Safety valve only: if a drain job were lost, the next webhook queues a new one
# after this long. An extra drain is harmless (it finds the inbox empty).
DRAIN_FLAG_TTL = 60
MAX_WATCH_RETRIES = 100


def inbox_key(settings: Settings) -> str:
    return f"clout:{settings.config.queue.name}:inbox"


def drain_flag_key(settings: Settings) -> str:
    return f"clout:{settings.config.queue.name}:drain-job"


def schedule_drain(pipe: Any, settings: Settings, queue: Any, pending_drain: bytes | None) -> str:
    """Inside a MULTI: make sure a drain job is queued; returns its id."""
    if pending_drain:
        return pending_drain.decode()
    job = queue.enqueue_call(
        DRAIN_INBOX, retry=retry_policy(settings), result_ttl=settings.config.queue.result_ttl,
        failure_ttl=7 * 24 * 3600, description="drain the inbox into batches", pipeline=pipe,
    )
    pipe.set(drain_flag_key(settings), job.id, ex=DRAIN_FLAG_TTL)
    return job.id


def drain(connection: redis.Redis, settings: Settings) -> dict[str, int]:
    """Move everything in the inbox into `process_events` jobs; returns counts."""
    queue = get_queue(connection, settings)
    key = inbox_key(settings)
    size = settings.config.queue.batch_size
    # Clear the flag first: an event pushed from now on schedules a new drain itself.
    connection.delete(drain_flag_key(settings))
    batches = events = 0
    with connection.pipeline() as pipe:
        attempts = 0
        while True:
            try:
                pipe.watch(key)
                items = pipe.lrange(key, 0, size - 1)
                if not items:
                    pipe.unwatch()
                    break
                pipe.multi()
                enqueue_events(queue, settings, [json.loads(i) for i in items], pipeline=pipe,
                               description=f"process {len(items)} ticket event(s)")
                pipe.ltrim(key, len(items), -1)
                pipe.execute()
                batches += 1
                events += len(items)
                attempts = 0
            except redis.WatchError:
                attempts += 1  # a webhook pushed meanwhile; read again
                if attempts > MAX_WATCH_RETRIES:
                    raise
    if events:
        log.info("drained %d event(s) into %d batch(es)", events, batches)
    return {"batches": batches, "events": events}
