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

from collections.abc import Mapping, Sequence
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
from connectors.social.base import NOT_FOUND, LookupFailure, NetworkMetrics
from connectors.social.client import Bundle, NetworkClient, chunks, unexpected
from connectors.social.http import Call, Reply

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


# --------------------------------------------------------------------------
# Live client: app.bsky.actor.getProfiles (25 actors a call), getAuthorFeed (sample)
# --------------------------------------------------------------------------

BATCH = 25
FEED_LIMIT = 50


class Client(NetworkClient):
    """The public AppView, no credentials. Actors it can't find are left out of the
    `profiles` list (they become "not found"); handles and DIDs are both accepted."""

    network = NETWORK
    default_base_url = "https://public.api.bsky.app"
    parse = staticmethod(parse)
    has_sample = True

    def lookup(self, keys: Sequence[str], call: Call) -> dict[str, Bundle | LookupFailure]:
        out: dict[str, Bundle | LookupFailure] = {}
        for batch in chunks(keys, BATCH):
            reply = self.http.get_json(
                f"{self.base_url}/xrpc/app.bsky.actor.getProfiles",
                params=[("actors", actor) for actor in batch],
                call=call,
            )
            if isinstance(reply, LookupFailure):
                out.update(dict.fromkeys(batch, reply))
                continue
            if reply.status != 200 or not isinstance(reply.body, Mapping):
                out.update(dict.fromkeys(batch, unexpected(reply, self.network)))
                continue
            found: dict[str, Bundle] = {}
            for profile in as_list(reply.body.get("profiles")):
                profile = as_mapping(profile)
                for ident in (profile.get("handle"), profile.get("did")):
                    if isinstance(ident, str):
                        found[ident.lower()] = {"profile": profile}
            for key in batch:
                out[key] = found.get(key, NOT_FOUND)
        return out

    def sample(self, key: str, bundle: Bundle, call: Call) -> bool:
        profile = as_mapping(bundle.get("profile"))
        actor = profile.get("did") if isinstance(profile.get("did"), str) else key
        reply = self.http.get_json(
            f"{self.base_url}/xrpc/app.bsky.feed.getAuthorFeed",
            params={"actor": actor, "limit": FEED_LIMIT, "filter": "posts_no_replies"},
            call=call,
        )
        if isinstance(reply, Reply) and reply.status == 200 and isinstance(reply.body, Mapping):
            bundle["feed"] = reply.body
        return True
