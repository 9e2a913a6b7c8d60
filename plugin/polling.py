"""Catch-up polls and what desks report about themselves (API usage, pauses).

A desk that can list what changed since a moment (`poll_changes(since, limit)` on
its connector, e.g. Salesforce) is asked every `desks.<desk>.poll_interval_seconds`.
Whatever a lost or never-configured notification left out is then still ranked
within one interval. Polled changes go into the same event ledger as webhooks
(so a change both notified and polled is decided once per version), and the
watermark is saved only after they are safely in the ledger: a poll that dies
half-way is simply repeated.

Desks that report API usage (`api_usage()`) have it recorded in the store after
each call the glue makes, so `/readyz` can show it from the web process even
though only workers talk to the desk.
"""

from __future__ import annotations

import logging
from typing import Any

from .errors import describe_error, is_outage
from .queues import enqueue_batches, job_options

log = logging.getLogger(__name__)

POLL_DESK = "plugin.jobs.poll_desk"
POLL_LIMIT = 2000  # most changes taken per poll; the rest come with the next one


def poll_interval(rt: Any, desk: str) -> int:
    return int(getattr(rt.settings.desk(desk), "poll_interval_seconds", 0) or 0)


def queue_polls(rt: Any) -> list[str]:
    """A `poll_desk` job for every enabled desk whose poll is due (one per interval)."""
    queued = []
    for desk in rt.settings.enabled_desks:
        interval = poll_interval(rt, desk)
        if interval <= 0:
            continue
        if rt.redis.set(rt.settings.redis_key("poll-due", desk), "1", nx=True, ex=interval):
            rt.queue.enqueue_call(POLL_DESK, args=(desk,), description=f"catch-up poll of {desk}",
                                  **job_options(rt.settings))
            queued.append(desk)
    return queued


def poll(rt: Any, desk: str) -> dict[str, Any]:
    """Ask `desk` what changed since the saved watermark; ledger it; queue its processing."""
    connector = rt.desk(desk)
    poll_changes = getattr(connector, "poll_changes", None)
    if poll_changes is None:
        return {"polled": 0, "reason": "this desk cannot be polled"}
    state = rt.store.desk_state(desk)
    since = state.get("poll_watermark")
    try:
        events, watermark = poll_changes(since, POLL_LIMIT)
    except Exception as exc:
        if not is_outage(exc):
            raise
        log.warning("desk %s: catch-up poll failed, next interval tries again: %s", desk,
                    describe_error(exc))
        return {"polled": 0, "error": describe_error(exc)}
    finally:
        note_usage(rt, desk, connector)
    if events:
        rt.store.add_events([{"source": e.source, "event_id": e.event_id, "ticket_id": e.ticket_id,
                              "occurred_at": e.occurred_at, "payload": e.to_dict()} for e in events])
        size = rt.settings.config.queue.batch_size
        keys = [[e.source, e.event_id] for e in events]
        enqueue_batches(rt.redis, rt.queue, rt.settings,
                        [keys[i:i + size] for i in range(0, len(keys), size)], f"{desk} poll")
        log.info("desk %s: catch-up poll found %d change(s)", desk, len(events))
    rt.store.set_desk_state(desk, poll_watermark=watermark or since, last_poll_changes=len(events))
    return {"polled": len(events), "watermark": watermark or since}


def note_usage(rt: Any, desk: str, connector: Any) -> None:
    """Keep the desk's reported API usage in the store (best effort: never fails the caller)."""
    usage = getattr(connector, "api_usage", None)
    if usage is None:
        return
    try:
        current = usage()
        if current:
            rt.store.set_desk_state(desk, api_usage=current)
    except Exception as exc:
        log.debug("desk %s: recording API usage failed: %s", desk, describe_error(exc))


def desk_report(rt: Any) -> dict[str, Any]:
    """Per enabled desk: what it reported last (API usage, poll), for `/readyz`."""
    out: dict[str, Any] = {}
    for desk in rt.settings.enabled_desks:
        state = rt.store.desk_state(desk)
        report = {k: v for k, v in state.items() if k in (
            "api_usage", "api_usage_at", "poll_watermark", "last_poll_changes_at", "paused_until")}
        if report:
            out[desk] = report
    return out
