"""The RQ queue Clout's jobs travel on, and how a job is put on it.

Jobs are referenced by dotted path and carry only JSON (RQ's JSONSerializer),
so a worker on another host or another version can read them and nothing
executable ever sits in Redis. Jobs carry ids, never events' contents beyond
what the ledger needs, and they are not retried by RQ: the store's ledger and
outbox re-drive whatever a failed or lost job leaves behind (`plugin.reconcile`),
which keeps working when RQ's own scheduler is gone with a dead worker.
"""

from __future__ import annotations

from typing import Any, Sequence

import redis
from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer

from .settings import Settings

PROCESS_EVENTS = "plugin.jobs.process_events"
DRAIN_INBOX = "plugin.jobs.drain_inbox"
FLUSH_WRITES = "plugin.jobs.flush_writes"
RECONCILE = "plugin.jobs.reconcile"

FAILURE_TTL = 7 * 24 * 3600  # failed jobs stay a week for inspection


def get_queue(connection: redis.Redis, settings: Settings) -> Queue:
    q = settings.config.queue
    return Queue(q.name, connection=connection, serializer=JSONSerializer,
                 default_timeout=q.job_timeout)


def job_options(settings: Settings) -> dict[str, Any]:
    """What every Clout job is enqueued with: how long results and failures are kept."""
    return {"result_ttl": settings.config.queue.result_ttl, "failure_ttl": FAILURE_TTL}


def enqueue_events(queue: Queue, settings: Settings, keys: Sequence[Sequence[str]],
                   *, pipeline: Any = None, description: str | None = None) -> Job:
    """One job that decides the ledger events `keys` ([source, event_id] pairs) together."""
    return queue.enqueue_call(
        PROCESS_EVENTS,
        args=([list(k) for k in keys],),
        description=description or f"process {len(keys)} ticket event(s)",
        pipeline=pipeline,
        **job_options(settings),
    )


def enqueue_batches(connection: redis.Redis, queue: Queue, settings: Settings,
                    batches: Sequence[Sequence[Sequence[str]]], why: str) -> None:
    """One `process_events` job per batch of keys, all queued in one round trip."""
    with connection.pipeline() as pipe:
        for batch in batches:
            enqueue_events(queue, settings, batch, pipeline=pipe,
                           description=f"process {len(batch)} event(s) ({why})")
        pipe.execute()
