"""The RQ queue Clout's jobs travel on, and how a job is put on it.

Jobs are referenced by dotted path and carry only JSON (RQ's JSONSerializer),
so a worker on another host or another version can read them and nothing
executable ever sits in Redis.
"""

from __future__ import annotations

from typing import Any, Sequence

import redis
from rq import Queue, Retry
from rq.job import Job
from rq.serializers import JSONSerializer

from .settings import Settings

PROCESS_EVENTS = "plugin.jobs.process_events"
DRAIN_INBOX = "plugin.jobs.drain_inbox"


def get_queue(connection: redis.Redis, settings: Settings) -> Queue:
    q = settings.config.queue
    return Queue(q.name, connection=connection, serializer=JSONSerializer,
                 default_timeout=q.job_timeout)


def retry_policy(settings: Settings) -> Retry | None:
    q = settings.config.queue
    if q.retry_max < 1:
        return None
    return Retry(max=q.retry_max, interval=list(q.retry_intervals) or 0)


FAILURE_TTL = 7 * 24 * 3600  # failed jobs stay a week for inspection and replay


def job_options(settings: Settings) -> dict[str, Any]:
    """What every Clout job is enqueued with: retries and how long results are kept."""
    return {"retry": retry_policy(settings), "result_ttl": settings.config.queue.result_ttl,
            "failure_ttl": FAILURE_TTL}


def enqueue_events(queue: Queue, settings: Settings, events: Sequence[dict[str, Any]],
                   *, pipeline: Any = None, description: str | None = None) -> Job:
    """One job that ranks `events` together."""
    return queue.enqueue_call(
        PROCESS_EVENTS,
        args=(list(events),),
        description=description or f"process {len(events)} ticket event(s)",
        pipeline=pipeline,
        **job_options(settings),
    )
