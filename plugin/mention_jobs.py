"""Worker jobs of the social watch, and how they are scheduled.

    process_mention(mention_id)   score, match, escalate, suggest (see `plugin.mentions`)
    poll_brand_terms()            search each configured brand term on each network

Jobs take ids and plain values and find their clients through `runtime.current()`.
`schedule(rt)` runs inside every reconcile pass (`plugin.reconcile`): once per
`social.poll_interval_seconds` (claimed with SET NX EX, so N workers queue one
poll) it queues `poll_brand_terms`, and it re-queues cases nobody is processing
(a job lost with a dead worker, or Redis away when the case was stored).

Rate limits: the HTTP client waits out a 429's `Retry-After` up to
`influence.max_wait_seconds`; a longer wait pauses that network's polling
(a Redis key living as long as the wait), so no poll asks again before the
network said it may.
"""

from __future__ import annotations

import logging
from typing import Any

from . import runtime as runtime_mod

log = logging.getLogger(__name__)

PROCESS_MENTION = "plugin.mention_jobs.process_mention"
POLL_BRAND_TERMS = "plugin.mention_jobs.poll_brand_terms"
STRANDED_AFTER_SECONDS = 30


def enqueue_mention(rt: Any, mention_id: int, *, pipeline: Any = None) -> Any:
    from .queues import job_options

    return rt.queue.enqueue_call(PROCESS_MENTION, args=(int(mention_id),), pipeline=pipeline,
                                 description=f"process social mention {mention_id}",
                                 **job_options(rt.settings))


def process_mention(mention_id: int) -> dict[str, Any]:
    """Process one case; a failure leaves it pending for reconcile (parked after
    `delivery.max_event_attempts`), an outage counts nothing."""
    from .errors import describe_error, is_outage
    from .mentions import mention_store, process

    rt = runtime_mod.current()
    try:
        return process(rt, int(mention_id))
    except Exception as exc:
        why = describe_error(exc)
        ms = mention_store(rt)
        try:
            found = ms.get(int(mention_id))
            give_up = (not is_outage(exc) and found is not None
                       and found["state"] == "working"
                       and _attempts(ms, int(mention_id)) >= rt.settings.config.delivery.max_event_attempts)
            if found is not None and found["state"] == "working":
                ms.fail(int(mention_id), why, give_up=give_up)
        except Exception as inner:  # the store is away too: the lease runs out instead
            log.warning("could not release social mention %s: %s", mention_id, describe_error(inner))
        if is_outage(exc):
            log.warning("social mention %s waits for an outage to end: %s", mention_id, why)
            return {"mention_id": mention_id, "deferred": True, "error": why}
        raise


def _attempts(ms: Any, mention_id: int) -> int:
    import sqlalchemy as sa

    from .mention_store import mentions

    with ms.engine.connect() as conn:
        return int(conn.execute(sa.select(mentions.c.attempts)
                                .where(mentions.c.id == mention_id)).scalar() or 0)


def schedule(rt: Any) -> dict[str, Any]:
    """From reconcile: queue the brand-term poll when due, and re-queue stranded cases."""
    from .mentions import mention_store
    from .queues import job_options

    settings = rt.settings
    cfg = settings.config.social
    out: dict[str, Any] = {}
    if (cfg.brand_terms and cfg.networks and cfg.poll_interval_seconds
            and rt.redis.set(settings.redis_key("social-poll-due"), "1", nx=True,
                             ex=cfg.poll_interval_seconds)):
        rt.queue.enqueue_call(POLL_BRAND_TERMS, description="search brand terms on social networks",
                              **job_options(settings))
        out["poll"] = True
    stranded = mention_store(rt).stranded(STRANDED_AFTER_SECONDS)
    if stranded:
        with rt.redis.pipeline() as pipe:
            for mention_id in stranded:
                enqueue_mention(rt, mention_id, pipeline=pipe)
            pipe.execute()
        out["mentions_requeued"] = len(stranded)
    return out


def _http(rt: Any, network: str, limits: Any) -> Any:
    import requests

    from connectors.social.http import Http
    from connectors.social.live import USER_AGENT

    cfg = rt.settings.config.influence
    return Http(requests.Session(), network,
                timeouts=(cfg.timeout_connect_seconds, cfg.timeout_read_seconds),
                max_retries=cfg.max_retries, max_wait_seconds=cfg.max_wait_seconds,
                headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
                rate_limit=limits)


def poll_brand_terms() -> dict[str, Any]:
    """Search every brand term on every configured network; new posts become cases."""
    return poll(runtime_mod.current())


def poll(rt: Any) -> dict[str, Any]:
    from connectors.social import search

    from .mention_store import post_key
    from .mentions import mention_store

    settings = rt.settings
    cfg = settings.config.social
    endpoints = settings.config.influence.endpoints
    ms = mention_store(rt)
    report: dict[str, Any] = {"new": 0, "repeats": 0, "seen": 0, "requests": 0, "failures": {},
                              "paused": {}}
    for network in cfg.networks:
        pause_key = settings.redis_key("social-paused", network)
        left = rt.redis.ttl(pause_key)
        if left and left > 0:
            report["paused"][network] = left
            continue
        limits = search.RateLimitRecorder()
        http = _http(rt, network, limits)
        for term in cfg.brand_terms:
            if network == "bluesky":
                scopes = [(term, None)]
            else:
                scopes = [(f"{instance}#{term}", instance) for instance in cfg.mastodon_instances]
            for scope, instance in scopes:
                cursor = ms.poll_cursor(network, scope)
                if network == "bluesky":
                    found = search.search_bluesky(
                        http, endpoints.get("bluesky", "https://public.api.bsky.app"), term,
                        since=cursor, max_posts=cfg.max_posts_per_poll, limits=limits)
                else:
                    found = search.search_mastodon_tag(
                        http, endpoints.get("mastodon", "https://{instance}"), instance, term,
                        min_id=cursor, max_posts=cfg.max_posts_per_poll, limits=limits)
                report["requests"] += found.requests
                # Oldest first: a thread's case starts with its first post.
                for post in sorted(found.posts, key=lambda p: p.posted_at or ""):
                    report["seen"] += 1
                    mention_id, status = ms.record(
                        post.to_mention(term), f"poll:{post_key(network, post.url)}", "poll")
                    if status == "new":
                        report["new"] += 1
                        enqueue_mention(rt, mention_id)
                    elif status == "repeat":
                        report["repeats"] += 1
                if found.cursor != cursor and found.failure is None:
                    ms.set_poll_cursor(network, scope, found.cursor)
                if found.failure:
                    report["failures"][f"{network}:{scope}"] = found.failure
                    log.warning("social poll of %s for a brand term failed: %s", network,
                                found.failure)
                if found.retry_after:
                    rt.redis.set(pause_key, "1", ex=max(1, int(found.retry_after)))
                    report["paused"][network] = int(found.retry_after)
                    break
            if network in report["paused"]:
                break
    return report
