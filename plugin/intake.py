"""Accepting a verified webhook: remember its delivery id and queue it, atomically.

The delivery-id key, the event (pushed to the inbox, see `plugin.inbox`) and,
when none is pending, a drain job are written in one MULTI/EXEC transaction
(WATCHing the key and the drain flag), so there is no in-between state: either
the delivery is queued and remembered, or nothing happened and the desk's
retry is accepted. The job id answered is the drain job that will batch it.
A repeat of a remembered id is answered as a duplicate with the original
event and job ids. If Redis fails, the webhook answers 503 and the desk
retries; nothing it was told was accepted can be lost here.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import redis
from rq import Queue

from webhooks.base import Parsed

from .inbox import drain_flag_key, inbox_key, schedule_drain
from .settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    job_id: str | None = None
    event_id: str | None = None
    duplicate: bool = False
    unavailable: bool = False


def seen_key(settings: Settings, source: str, delivery_id: str) -> str:
    return settings.redis_key("seen", source, delivery_id)


def _duplicate(raw: bytes) -> Outcome:
    try:
        first = json.loads(raw)
        return Outcome(job_id=first.get("job_id"), event_id=first.get("event_id"), duplicate=True)
    except (ValueError, AttributeError):
        return Outcome(duplicate=True)


class Intake:
    def __init__(self, connection: redis.Redis, settings: Settings, queue: Queue) -> None:
        self._redis = connection
        self._settings = settings
        self._queue = queue

    def accept(self, source: str, parsed: Parsed) -> Outcome:
        ttl = self._settings.config.webhooks.dedupe_ttl_seconds
        key = seen_key(self._settings, source, parsed.delivery_id)
        flag = drain_flag_key(self._settings)
        events = [json.dumps(e.to_dict()) for e in parsed.events]
        try:
            with self._redis.pipeline() as pipe:
                while True:
                    try:
                        pipe.watch(key, flag)
                        existing = pipe.get(key)
                        if existing is not None:
                            return _duplicate(existing)
                        pending_drain = pipe.get(flag)
                        pipe.multi()
                        pipe.rpush(inbox_key(self._settings), *events)
                        job_id = schedule_drain(pipe, self._settings, self._queue, pending_drain)
                        pipe.set(key, json.dumps({"job_id": job_id,
                                                  "event_id": parsed.events[0].event_id}), ex=ttl)
                        pipe.execute()
                        return Outcome(job_id=job_id, event_id=parsed.events[0].event_id)
                    except redis.WatchError:
                        # The same delivery raced us and won: loop to report it as a duplicate.
                        continue
        except redis.RedisError as exc:
            # The desk is told 503 and retries; one line per refusal, not a traceback.
            log.warning("could not queue a %s delivery (answered 503): %s", source,
                        type(exc).__name__)
            return Outcome(unavailable=True)
