"""Brand-term search: posts that mention the brand on Bluesky and Mastodon.

- Bluesky: `GET /xrpc/app.bsky.feed.searchPosts?q=<term>&sort=latest&limit=100[&since=..][&cursor=..]`
  -> `{"cursor"?, "hitsTotal"?, "posts": [postView]}`. A postView has `uri`
  (`at://<did>/app.bsky.feed.post/<rkey>`), `author` (`did`, `handle`,
  `displayName`), `record` (`text`, `createdAt`, `reply.root.uri`,
  `reply.parent.uri`) and `indexedAt`. The lexicon notes some AppViews want
  authentication for search; the public one is asked without.
- Mastodon: `GET https://<instance>/api/v1/timelines/tag/<hashtag>?limit=40[&min_id=..]`
  -> `[Status]` (newest first; `min_id` pages forward from the last status
  seen). A Status has `id`, `url`, `uri`, `created_at`, `content` (HTML),
  `account` (`acct`, `username`, `display_name`, `id`), `in_reply_to_id`,
  `in_reply_to_account_id` and `reblog` (boosts are skipped: someone else's post).

Both go through `connectors.social.http.Http`, the influence lookups' client:
timeouts, retries of 5xx, and rate limits (a 429's `Retry-After` or the reset
header waited out up to `max_wait_seconds`, else the host is skipped and the
wait reported as `SearchResult.retry_after`). Nothing here raises on a bad
answer: failures come back as values.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import requests

from connectors.social import as_mapping
from connectors.social.base import LookupFailure
from connectors.social.http import Call, Http, Reply, default_rate_limit

__all__ = ["FoundPost", "SearchResult", "RateLimitRecorder", "search_bluesky", "search_mastodon_tag",
           "hashtag", "html_text"]

BLUESKY_LIMIT = 100  # searchPosts' maximum page
MASTODON_LIMIT = 40  # the tag timeline's maximum page


@dataclass(frozen=True)
class FoundPost:
    network: str
    author_handle: str
    url: str
    text: str
    posted_at: str | None
    author_name: str | None = None
    thread_url: str | None = None  # the thread's root post, if this is a reply
    in_reply_to_url: str | None = None

    def to_mention(self, term: str) -> dict[str, Any]:
        return {"network": self.network, "author_handle": self.author_handle, "url": self.url,
                "text": self.text, "posted_at": self.posted_at, "author_name": self.author_name,
                "thread_url": self.thread_url, "in_reply_to_url": self.in_reply_to_url,
                "brand_term": term}


@dataclass
class SearchResult:
    posts: list[FoundPost] = field(default_factory=list)
    cursor: str | None = None  # where the next poll starts (newest seen)
    failure: str | None = None
    retry_after: float | None = None  # seconds the API asked us to stay away
    requests: int = 0


class RateLimitRecorder:
    """`Http`'s rate-limit hook that also remembers the longest wait asked for, so a
    wait too long to sleep through can be kept (in Redis) across jobs and processes."""

    def __init__(self) -> None:
        self.longest: float = 0.0

    def __call__(self, resp: requests.Response, body: Any) -> float | None:
        wait = default_rate_limit(resp, body)
        if wait is not None:
            self.longest = max(self.longest, wait)
        return wait


def _failed(result: SearchResult, failure: LookupFailure, limits: RateLimitRecorder | None) -> SearchResult:
    result.failure = failure.reason
    if limits is not None and limits.longest and "rate limited" in failure.reason:
        result.retry_after = math.ceil(limits.longest)
    return result


# ------------------------------------------------------------------ Bluesky

_AT_POST = re.compile(r"^at://([^/]+)/app\.bsky\.feed\.post/([A-Za-z0-9._:~-]+)$")


def bluesky_web_url(at_uri: str, handle: str | None = None) -> str | None:
    """`at://did/app.bsky.feed.post/rkey` -> `https://bsky.app/profile/<handle or did>/post/<rkey>`."""
    match = _AT_POST.match(at_uri or "")
    if not match:
        return None
    return f"https://bsky.app/profile/{handle or match.group(1)}/post/{match.group(2)}"


def _bluesky_post(post: Mapping[str, Any]) -> FoundPost | None:
    author = as_mapping(post.get("author"))
    record = as_mapping(post.get("record"))
    handle, did = author.get("handle"), author.get("did")
    if not isinstance(handle, str) or not handle:
        return None
    url = bluesky_web_url(str(post.get("uri", "")), handle)
    if url is None:
        return None
    reply = as_mapping(record.get("reply"))

    def ref(name: str) -> str | None:
        uri = as_mapping(reply.get(name)).get("uri")
        if not isinstance(uri, str):
            return None
        own = isinstance(did, str) and uri.startswith(f"at://{did}/")
        return bluesky_web_url(uri, handle if own else None)

    text = record.get("text")
    created = record.get("createdAt") or post.get("indexedAt")
    name = author.get("displayName")
    return FoundPost(network="bluesky", author_handle=handle, url=url,
                     text=text if isinstance(text, str) else "",
                     posted_at=created if isinstance(created, str) else None,
                     author_name=name if isinstance(name, str) and name else None,
                     thread_url=ref("root"), in_reply_to_url=ref("parent"))


def search_bluesky(http: Http, base_url: str, term: str, *, since: str | None = None,
                   max_posts: int = 100, limits: RateLimitRecorder | None = None) -> SearchResult:
    """Newest posts matching `term` (after `since`, an ISO time, when given), newest first.

    The cursor returned is the newest post time seen, for the next poll's `since`."""
    result = SearchResult(cursor=since)
    call = Call()
    cursor: str | None = None
    before = http.requests_sent
    while len(result.posts) < max_posts:
        params: dict[str, Any] = {"q": term, "sort": "latest",
                                  "limit": min(BLUESKY_LIMIT, max_posts - len(result.posts))}
        if since:
            params["since"] = since
        if cursor:
            params["cursor"] = cursor
        reply = http.get_json(f"{base_url.rstrip('/')}/xrpc/app.bsky.feed.searchPosts",
                              params=params, call=call)
        result.requests = http.requests_sent - before
        if isinstance(reply, LookupFailure):
            return _failed(result, reply, limits)
        if reply.status != 200 or not isinstance(reply.body, Mapping):
            result.failure = _http_problem(reply, "bluesky")
            return result
        page = [p for p in (_bluesky_post(as_mapping(x)) for x in reply.body.get("posts") or [])
                if p is not None]
        result.posts.extend(page)
        cursor = reply.body.get("cursor") if isinstance(reply.body.get("cursor"), str) else None
        if not page or not cursor:
            break
    times = [p.posted_at for p in result.posts if p.posted_at]
    if times:
        result.cursor = max([*times, *([since] if since else [])])
    return result


# ----------------------------------------------------------------- Mastodon

_TAG_CHARS = re.compile(r"[^0-9A-Za-z_\u00c0-\uffff]+")


def hashtag(term: str) -> str:
    """A brand term as a Mastodon hashtag: '#Acme Hotels' -> 'AcmeHotels'."""
    return _TAG_CHARS.sub("", term)


_BREAKS = re.compile(r"<br\s*/?>|</p>\s*<p[^>]*>", re.IGNORECASE)
_TAGS = re.compile(r"<[^>]+>")


def html_text(content: str) -> str:
    """A status's HTML `content` as plain text (line breaks kept, entities decoded)."""
    return html.unescape(_TAGS.sub("", _BREAKS.sub("\n", content or ""))).strip()


def _mastodon_post(status: Mapping[str, Any], instance: str) -> FoundPost | None:
    if status.get("reblog") is not None:
        return None
    account = as_mapping(status.get("account"))
    acct = account.get("acct")
    url = status.get("url") or status.get("uri")
    if not isinstance(acct, str) or not acct or not isinstance(url, str):
        return None
    handle = acct if "@" in acct else f"{acct}@{instance}"
    parent = None
    # Only a reply to the author's own post can be spelled as a URL here (same account path).
    reply_to = status.get("in_reply_to_id")
    if reply_to and status.get("in_reply_to_account_id") == account.get("id") and "/" in url:
        parent = url.rsplit("/", 1)[0] + "/" + str(reply_to)
    name = account.get("display_name")
    created = status.get("created_at")
    return FoundPost(network="mastodon", author_handle=handle, url=url,
                     text=html_text(str(status.get("content") or "")),
                     posted_at=created if isinstance(created, str) else None,
                     author_name=name if isinstance(name, str) and name else None,
                     in_reply_to_url=parent)


def search_mastodon_tag(http: Http, base_url: str, instance: str, term: str, *,
                        min_id: str | None = None, max_posts: int = 100,
                        limits: RateLimitRecorder | None = None) -> SearchResult:
    """Public statuses with `#<term>` on `instance` newer than `min_id`.

    `base_url` is a template with `{instance}` (default `https://{instance}`). The cursor
    returned is the newest status id seen, for the next poll's `min_id`."""
    tag = hashtag(term)
    result = SearchResult(cursor=min_id)
    if not tag:
        result.failure = "term has no letters or digits to make a hashtag of"
        return result
    base = base_url.replace("{instance}", instance).rstrip("/")
    call = Call()
    before = http.requests_sent
    newest = min_id
    while len(result.posts) < max_posts:
        params: dict[str, Any] = {"limit": min(MASTODON_LIMIT, max_posts - len(result.posts))}
        if newest:
            params["min_id"] = newest
        reply = http.get_json(f"{base}/api/v1/timelines/tag/{tag}", params=params, call=call)
        result.requests = http.requests_sent - before
        if isinstance(reply, LookupFailure):
            return _failed(result, reply, limits)
        if reply.status != 200 or not isinstance(reply.body, list):
            result.failure = _http_problem(reply, "mastodon")
            return result
        statuses = [as_mapping(s) for s in reply.body if isinstance(s, Mapping)]
        ids = [str(s.get("id")) for s in statuses if s.get("id") is not None]
        result.posts.extend(p for p in (_mastodon_post(s, instance) for s in statuses) if p)
        if not ids:
            break
        top = max(ids, key=lambda i: (len(i), i))  # snowflake ids: longer is newer
        if newest is not None and (len(top), top) <= (len(newest), newest):
            break
        newest = top
        if len(statuses) < params["limit"]:
            break
    result.cursor = newest
    return result


def _http_problem(reply: Reply, network: str) -> str:
    if reply.status in (401, 403):
        return f"{network} wants authentication for this search (HTTP {reply.status})"
    return f"{network} answered HTTP {reply.status}"
