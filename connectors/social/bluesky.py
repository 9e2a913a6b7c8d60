"""Bluesky (AT Protocol AppView) -> `NetworkMetrics`.

Bundle per handle: `{"profile": <one profileViewDetailed from
app.bsky.actor.getProfiles>, "feed": <app.bsky.feed.getAuthorFeed body>}`.

An author feed mixes the author's posts with their reposts of others
(`reason.$type == app.bsky.feed.defs#reasonRepost`); those carry the other
author's counts, so they are dropped. Pinned posts (`reasonPin`) are the
author's own and stay. Post time is the record's `createdAt` (what the app
shows), falling back to the AppView's `indexedAt`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from connectors.social import (
    as_count,
    as_list,
    as_mapping,
    as_time,
    recent_activity,
    reference_time,
    sum_counts,
)
from connectors.social.base import NetworkMetrics

NETWORK = "bluesky"
REPOST_REASON = "app.bsky.feed.defs#reasonRepost"


def _own_posts(feed: list[Any], did: Any) -> list[Mapping[str, Any]]:
    posts = []
    for item in feed:
        item = as_mapping(item)
        if as_mapping(item.get("reason")).get("$type") == REPOST_REASON:
            continue
        post = as_mapping(item.get("post"))
        author_did = as_mapping(post.get("author")).get("did")
        if not post or (did and author_did and author_did != did):
            continue
        posts.append(post)
    return posts


def _posted_at(post: Mapping[str, Any]) -> datetime | None:
    created = as_time(as_mapping(post.get("record")).get("createdAt"))
    return created if created is not None else as_time(post.get("indexedAt"))


def parse(raw: Mapping[str, Any], now: datetime | None = None) -> NetworkMetrics:
    """Turn one handle's bundle into metrics; missing parts become None."""
    bundle = as_mapping(raw)
    profile = as_mapping(bundle.get("profile"))
    handle = profile.get("handle") if isinstance(profile.get("handle"), str) else ""

    metrics: dict[str, Any] = {
        "followers": as_count(profile.get("followersCount")),
        "following": as_count(profile.get("followsCount")),
        "posts_total": as_count(profile.get("postsCount")),
    }

    body = bundle.get("feed")
    if isinstance(body, Mapping):
        own = _own_posts(as_list(body.get("feed")), profile.get("did"))
        metrics["sample_posts"] = len(own)
        metrics["recent_posts_90d"] = recent_activity(
            (_posted_at(p) for p in own), reference_time(now), bool(body.get("cursor"))
        )
        if own:
            metrics["reposts"] = sum_counts(
                sum_counts([as_count(p.get("repostCount")), as_count(p.get("quoteCount"))])
                for p in own
            )
            metrics["replies"] = sum_counts(as_count(p.get("replyCount")) for p in own)
            metrics["likes"] = sum_counts(as_count(p.get("likeCount")) for p in own)

    return NetworkMetrics(network=NETWORK, handle=handle, **metrics)
