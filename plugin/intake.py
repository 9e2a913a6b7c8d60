"""Accepting a verified webhook: remember its delivery id, then queue it.

The delivery id is claimed with `SET NX EX` before enqueueing, so a retry that
races the first delivery is answered as a duplicate. If enqueueing fails the
claim is released, so the desk's next retry is accepted: nothing the desk
believes delivered is lost, and nothing is processed twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis

from webhooks.base import Parsed

from .queues import enqueue_events, get_queue
from .settings import Settings

log = logging.getLogger(__name__)
PENDING = "pending"


@dataclass(frozen=True)
class Outcome:
    job_id: str | None = None
    duplicate: bool = False
    unavailable: bool = False


def seen_key(source: str, delivery_id: str) -> str:
    return f"clout:seen:{source}:{delivery_id}"


class Intake:
    def __init__(self, connection: redis.Redis, settings: Settings) -> None:
        self._redis = connection
        self._settings = settings

    def accept(self, source: str, parsed: Parsed) -> Outcome:
        ttl = self._settings.config.webhooks.dedupe_ttl_seconds
        key = seen_key(source, parsed.delivery_id)
        try:
            claimed = self._redis.set(key, PENDING, nx=True, ex=ttl)
            if not claimed:
                previous = self._redis.get(key)
                job_id = previous.decode() if previous and previous != PENDING.encode() else None
                return Outcome(job_id=job_id, duplicate=True)
            try:
                job = enqueue_events(
                    get_queue(self._redis, self._settings), self._settings,
                    [e.to_dict() for e in parsed.events],
                    description=f"{source} delivery {parsed.delivery_id}",
                )
            except BaseException:
                self._redis.delete(key)
                raise
            self._redis.set(key, job.id, ex=ttl, xx=True)
            return Outcome(job_id=job.id)
        except redis.RedisError:
            log.exception("could not queue %s delivery", source)
            return Outcome(unavailable=True)
