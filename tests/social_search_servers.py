"""The local Bluesky and Mastodon stand-ins (tests/social_servers.py) with their search endpoints.

- Bluesky `GET /xrpc/app.bsky.feed.searchPosts?q=&sort=latest&limit=&since=&cursor=`
  -> `{"posts": [postView], "cursor"?, "hitsTotal"}` (newest first, `since` inclusive,
  paged by an opaque cursor);
- Mastodon `GET /api/v1/timelines/tag/<hashtag>?limit=&min_id=` -> `[Status]` (newest
  first; only statuses newer than `min_id`), the hashtag matched case-insensitively.

Faults (429 with Retry-After, ...) are the base servers'.
"""

from __future__ import annotations

from typing import Any

from social_servers import Answer, BlueskyServer, MastodonServer


class BlueskySearchServer(BlueskyServer):
    def __init__(self) -> None:
        super().__init__()
        self.posts: list[dict[str, Any]] = []  # postViews, oldest first

    def post(self, handle: str, rkey: str, text: str, created_at: str, *,
             reply_root: str | None = None, did: str | None = None) -> dict[str, Any]:
        did = did or f"did:plc:{handle.split('.')[0]:a<24}"[:32]
        record: dict[str, Any] = {"$type": "app.bsky.feed.post", "text": text, "createdAt": created_at}
        if reply_root:
            record["reply"] = {"root": {"uri": reply_root, "cid": "bafyroot"},
                               "parent": {"uri": reply_root, "cid": "bafyroot"}}
        view = {"uri": f"at://{did}/app.bsky.feed.post/{rkey}", "cid": f"bafy{rkey}",
                "author": {"did": did, "handle": handle, "displayName": handle.split(".")[0].title()},
                "record": record, "replyCount": 0, "repostCount": 0, "likeCount": 1,
                "quoteCount": 0, "indexedAt": created_at, "labels": []}
        self.posts.append(view)
        return view

    def route(self, path: str, query: dict[str, list[str]], headers: dict[str, str]) -> Answer:
        if path != "/xrpc/app.bsky.feed.searchPosts":
            return super().route(path, query, headers)
        limits = {"ratelimit-limit": "3000", "ratelimit-remaining": "2999",
                  "ratelimit-reset": "9999999999", "ratelimit-policy": "3000;w=300"}
        q = (query.get("q") or [""])[0].lower()
        if not q:
            return 400, {}, {"error": "BadQueryString", "message": "q is required"}
        limit = int((query.get("limit") or ["25"])[0])
        if not 1 <= limit <= 100:
            return 400, {}, {"error": "InvalidRequest", "message": "limit must be 1 to 100"}
        since = (query.get("since") or [None])[0]
        found = [p for p in reversed(self.posts) if q in p["record"]["text"].lower()
                 and (since is None or p["record"]["createdAt"] >= since)]
        start = int((query.get("cursor") or ["0"])[0])
        page = found[start:start + limit]
        body: dict[str, Any] = {"posts": page, "hitsTotal": len(found)}
        if start + limit < len(found):
            body["cursor"] = str(start + limit)
        return 200, limits, body


class MastodonSearchServer(MastodonServer):
    def __init__(self) -> None:
        super().__init__()
        self.statuses: list[dict[str, Any]] = []  # oldest first
        self._next_id = 110_000_000_000_000_000

    def status(self, user: str, html: str, tags: list[str], created_at: str, *,
               reply_to: dict[str, Any] | None = None, reblog: bool = False) -> dict[str, Any]:
        self._next_id += 1
        sid = str(self._next_id)
        account = {"id": str(abs(hash(user)) % 10**9), "username": user, "acct": user,
                   "display_name": user.title(), "url": f"https://{self.host}/@{user}"}
        status = {"id": sid, "uri": f"https://{self.host}/users/{user}/statuses/{sid}",
                  "url": f"https://{self.host}/@{user}/{sid}", "created_at": created_at,
                  "content": html, "account": account, "visibility": "public",
                  "in_reply_to_id": reply_to["id"] if reply_to else None,
                  "in_reply_to_account_id": reply_to["account"]["id"] if reply_to else None,
                  "reblog": {"id": "1"} if reblog else None, "replies_count": 0,
                  "reblogs_count": 0, "favourites_count": 0,
                  "tags": [{"name": t.lower(), "url": f"https://{self.host}/tags/{t.lower()}"}
                           for t in tags]}
        self.statuses.append(status)
        return status

    host = "social.example"

    def route(self, path: str, query: dict[str, list[str]], headers: dict[str, str]) -> Answer:
        if not path.startswith("/api/v1/timelines/tag/"):
            return super().route(path, query, headers)
        limits = {"X-RateLimit-Limit": "300", "X-RateLimit-Remaining": "299",
                  "X-RateLimit-Reset": "2099-01-01T00:00:00.000Z"}
        tag = path.rsplit("/", 1)[1].lower()
        limit = min(int((query.get("limit") or ["20"])[0]), 40)
        min_id = (query.get("min_id") or [None])[0]
        found = [s for s in self.statuses if any(t["name"] == tag for t in s["tags"])
                 and (min_id is None or int(s["id"]) > int(min_id))]
        # min_id: the statuses immediately newer than it, returned newest first.
        page = found[:limit] if min_id else found[-limit:]
        return 200, limits, list(reversed(page))
