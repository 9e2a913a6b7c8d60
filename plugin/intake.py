"""Accepting a verified webhook: remember its delivery id and queue it, atomically.

The fast path is one Lua script, so one round trip to Redis and one atomic step:
if the delivery id is remembered, answer a duplicate with the original event and
job ids; if no drain job is pending (the drain flag is unset), change nothing and
say so; otherwise push the event(s) onto the inbox (see `plugin.inbox`) and
remember the delivery id (>= 72 h) with the pending drain job's id. Redis runs a
script as a whole and writes its effects to the AOF as one MULTI/EXEC, so there
is no in-between state, and the reply (our 202) comes after that write is
durable as Redis is configured (the embedded server: `appendfsync always`).

Only when no drain is pending does a request build an RQ job: the slow path
WATCHes the delivery key and the flag and writes the event, the delivery id, a
drain job and the flag in one MULTI/EXEC, as every request did before. That
happens once per drain (the drain clears the flag when it starts), not once per
webhook. A repeat of a remembered id is answered as a duplicate with the
original ids. If Redis fails, the webhook answers 503 and the desk retries;
nothing it was told was accepted can be lost here.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass
from typing import Any

import redis
from rq import Queue

from webhooks.base import Parsed
from webhooks.event import CustomerFacts, TicketEvent, field_names

from . import jsontext
from .inbox import drain_flag_key, inbox_key, schedule_drain
from .settings import Settings

log = logging.getLogger(__name__)

# KEYS: delivery (seen) key, inbox, drain flag. ARGV: ttl seconds, first event id, event JSON...
# Replies {0, seen value} for a duplicate, {1, drain job id} when queued, {2} when no drain
# is pending (nothing written: the caller queues one on the slow path).
ACCEPT_SCRIPT = """
local first = redis.call('GET', KEYS[1])
if first then return {0, first} end
local job = redis.call('GET', KEYS[3])
if not job then return {2} end
redis.call('RPUSH', KEYS[2], unpack(ARGV, 3))
redis.call('SET', KEYS[1], cjson.encode({job_id = job, event_id = ARGV[2]}), 'EX', ARGV[1])
return {1, job}
"""
DUPLICATE, QUEUED, NO_DRAIN = 0, 1, 2


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


def event_json(event: TicketEvent) -> str:
    """`event.to_dict()` as JSON text (`plugin.jsontext`), without `dataclasses.asdict`'s
    deep copies: asdict deep-copies every value and took more time than the encoding."""
    data: dict[str, Any] = {name: getattr(event, name) for name in field_names(TicketEvent)}
    customer = event.customer
    data["customer"] = {name: getattr(customer, name)
                        for name in field_names(CustomerFacts)}
    return jsontext.dumps(data)


class _ScriptRunner:
    """Runs the accept script on a connection of this thread's own, outside the client.

    Why: redis-py's client wraps each command in pool checkout/release, retry and
    metrics hooks; for this one command per webhook that cost ~3x the command
    itself (~100-150 us of CPU against ~35 us here, measured in-process).
    Here each thread keeps one `Connection` built with the pool's own settings
    (socket, timeouts, client name, health checks every `health_check_interval`),
    and sends EVALSHA on it. A connection that fails is dropped and the command is
    tried once more on a new one (Redis restarted, an idle socket closed); a second
    failure is the caller's 503. A retried script whose first run did happen finds
    its delivery id and answers it as a duplicate of itself, with the same ids.
    Used only with plain connection pools (Sentinel and others go through the client).
    """

    def __init__(self, client: redis.Redis, script: str) -> None:
        self._client = client
        self._script = client.register_script(script)
        self._pool = client.connection_pool
        self._direct = type(self._pool) in (redis.ConnectionPool, redis.BlockingConnectionPool)
        self._local = threading.local()

    def _connection(self) -> Any:
        local = self._local
        conn = getattr(local, "conn", None)
        if conn is None or local.pid != os.getpid():  # never share a socket with a forked parent
            conn = local.conn = self._pool.connection_class(**self._pool.connection_kwargs)
            local.pid = os.getpid()
        return conn

    def __call__(self, keys: tuple[str, ...], args: tuple[Any, ...]) -> Any:
        if not self._direct:
            return self._script(keys=keys, args=args)
        sha = self._script.sha
        for attempt in (1, 2):
            conn = self._connection()
            try:
                conn.send_packed_command(conn.pack_command("EVALSHA", sha, len(keys), *keys, *args))
                return conn.read_response()
            except redis.exceptions.NoScriptError:
                conn.send_command("SCRIPT", "LOAD", self._script.script)
                conn.read_response()
                conn.send_packed_command(conn.pack_command("EVALSHA", sha, len(keys), *keys, *args))
                return conn.read_response()
            except (redis.ConnectionError, redis.TimeoutError):
                conn.disconnect()
                self._local.conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.disconnect()
            self._local.conn = None


class Intake:
    def __init__(self, connection: redis.Redis, settings: Settings, queue: Queue) -> None:
        self._redis = connection
        self._settings = settings
        self._queue = queue
        self._ttl = settings.config.webhooks.dedupe_ttl_seconds
        self._inbox = inbox_key(settings)
        self._flag = drain_flag_key(settings)
        self._script = _ScriptRunner(connection, ACCEPT_SCRIPT)

    def accept(self, source: str, parsed: Parsed) -> Outcome:
        key = seen_key(self._settings, source, parsed.delivery_id)
        event_id = parsed.events[0].event_id
        events = [event_json(e) for e in parsed.events]
        try:
            reply = self._script((key, self._inbox, self._flag), (self._ttl, event_id, *events))
            if reply[0] == DUPLICATE:
                return _duplicate(reply[1])
            if reply[0] == QUEUED:
                return Outcome(job_id=reply[1].decode(), event_id=event_id)
            return self._accept_scheduling(key, event_id, events)
        except redis.RedisError as exc:
            # The desk is told 503 and retries; one line per refusal, not a traceback.
            log.warning("could not queue a %s delivery (answered 503): %s", source,
                        type(exc).__name__)
            return Outcome(unavailable=True)

    def _accept_scheduling(self, key: str, event_id: str, events: list[str]) -> Outcome:
        """No drain pending: queue the events, remember the delivery and queue a drain, in one
        MULTI/EXEC (WATCHing the delivery key and the flag, so a race is retried or reported)."""
        with self._redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key, self._flag)
                    existing = pipe.get(key)
                    if existing is not None:
                        return _duplicate(existing)
                    pending_drain = pipe.get(self._flag)
                    pipe.multi()
                    pipe.rpush(self._inbox, *events)
                    job_id = schedule_drain(pipe, self._settings, self._queue, pending_drain)
                    pipe.set(key, json.dumps({"job_id": job_id, "event_id": event_id}), ex=self._ttl)
                    pipe.execute()
                    return Outcome(job_id=job_id, event_id=event_id)
                except redis.WatchError:
                    # The same delivery (or a drain starting) raced us: look again.
                    continue
