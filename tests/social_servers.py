"""Local stand-ins for the six social APIs, over real HTTP (stdlib, 127.0.0.1, plain HTTP).

Each server answers its API's documented endpoints in their documented shapes
(../shared/reference/INTEGRATIONS.md, section C) from bundles in the
snapshot's per-handle format, records every call, and can be told to
misbehave for the next requests:

    server.fault("429", retry_after=1)          # 429 + Retry-After: 1
    server.fault("429", headers={...}, times=None)  # forever
    server.fault("503", times=3)
    server.fault("hang", seconds=3)             # answer late (client read timeout)
    server.fault("malformed")                   # 200 with a truncated JSON body
    server.fault("redirect", location=...)      # 302 elsewhere
    server.fault("ok", headers={...})           # a normal answer with extra headers

Unknown accounts: X answers 200 with an `errors` list, Bluesky leaves them out
of `profiles`, YouTube returns no `items`, Mastodon, GitHub and Reddit 404.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

Answer = tuple[int, dict[str, str], Any]


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]


@dataclass
class Fault:
    kind: str
    times: int | None = 1  # None: every request from now on
    path: str | None = None  # only requests whose path contains this
    params: dict[str, Any] = field(default_factory=dict)


class FakeAPI:
    """A ThreadingHTTPServer on 127.0.0.1 with call recording and injectable faults."""

    network = ""

    def __init__(self) -> None:
        self.bundles: dict[str, dict[str, Any]] = {}
        self.calls: list[Recorded] = []
        self.faults: list[Fault] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                api._serve(self)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.02,),
                                        daemon=True)
        self._thread.start()

    # -- test controls -------------------------------------------------------

    def fault(self, kind: str, *, times: int | None = 1, path: str | None = None,
              **params: Any) -> None:
        with self._lock:
            self.faults.append(Fault(kind, times, path, params))

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()

    def seed(self, bundles: dict[str, dict[str, Any]]) -> None:
        """Accounts in the snapshot's bundle format, keyed by lower-case handle."""
        self.bundles.update({k.lower(): v for k, v in bundles.items()})

    def count(self, path_part: str = "") -> int:
        return sum(1 for c in self.calls if path_part in c.path)

    def close(self) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()

    # -- serving ---------------------------------------------------------------

    def _next_fault(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.path is None or fault.path in path:
                    if fault.times is not None:
                        fault.times -= 1
                        if fault.times <= 0:
                            self.faults.remove(fault)
                    return fault
        return None

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        path = unquote(parts.path)
        query = parse_qs(parts.query, keep_blank_values=True)
        headers = {k.lower(): v for k, v in handler.headers.items()}
        with self._lock:
            self.calls.append(Recorded("GET", path, query, headers))
        fault = self._next_fault(path)
        extra: dict[str, str] = {}
        if fault is not None:
            p = fault.params
            if fault.kind == "hang":
                self._stop.wait(p.get("seconds", 5))
            elif fault.kind == "429":
                extra = {**({"Retry-After": str(p["retry_after"])} if "retry_after" in p else {}),
                         **p.get("headers", {})}
                body = p.get("body", {"title": "Too Many Requests", "detail": "Too Many Requests",
                                      "type": "about:blank", "status": 429})
                return self._write(handler, p.get("status", 429), extra, body)
            elif fault.kind.isdigit():
                return self._write(handler, int(fault.kind), p.get("headers", {}),
                                   p.get("body", {"error": "server error"}))
            elif fault.kind == "malformed":
                return self._write(handler, 200, {}, b'{"data": [{"id": "1", "usern')
            elif fault.kind == "redirect":
                return self._write(handler, p.get("status", 302), {"Location": p["location"]},
                                   b"")
            elif fault.kind == "ok":
                extra = dict(p.get("headers", {}))
        try:
            status, headers_out, body = self.route(path, query, headers)
        except Exception as exc:  # a bug in a fake must show up, not hang the client
            status, headers_out, body = 500, {}, {"error": f"fake crashed: {exc!r}"}
        self._write(handler, status, {**headers_out, **extra}, body)

    def _write(self, handler: BaseHTTPRequestHandler, status: int, headers: dict[str, str],
               body: Any) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json; charset=utf-8")
            handler.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                handler.send_header(name, str(value))
            handler.end_headers()
            handler.wfile.write(data)
        except OSError:
            pass  # the client gave up (timeout): nothing to do

    def route(self, path: str, query: dict[str, list[str]], headers: dict[str, str]) -> Answer:
        raise NotImplementedError


# ---------------------------------------------------------------------------- X


class XServer(FakeAPI):
    network = "x"
    token = "test-bearer-token"

    def __init__(self) -> None:
        super().__init__()
        self.suspended: set[str] = set()

    def add(self, name: str, followers: int = 100, *, user_id: str | None = None,
            tweets: list[dict[str, Any]] | None = None) -> None:
        user_id = user_id or str(1_000_000 + len(self.bundles))
        bundle: dict[str, Any] = {"user": {
            "id": user_id, "name": name.title(), "username": name,
            "public_metrics": {"followers_count": followers, "following_count": 10,
                               "tweet_count": 50, "listed_count": 1}}}
        if tweets is not None:
            bundle["tweets"] = {"data": tweets, "meta": {"result_count": len(tweets)}}
        self.bundles[name.lower()] = bundle

    def route(self, path: str, query: dict[str, list[str]], headers: dict[str, str]) -> Answer:
        if headers.get("authorization") != f"Bearer {self.token}":
            return 401, {}, {"title": "Unauthorized", "type": "about:blank", "status": 401,
                             "detail": "Unauthorized"}
        limits = {"x-rate-limit-limit": "300", "x-rate-limit-remaining": "299",
                  "x-rate-limit-reset": "9999999999"}
        if path == "/2/users/by":
            names = [n for n in ",".join(query.get("usernames", [])).split(",") if n]
            if not names or len(names) > 100:
                return 400, {}, {"title": "Invalid Request", "status": 400,
                                 "detail": "usernames: 1 to 100 names"}
            data, errors = [], []
            for name in names:
                bundle = self.bundles.get(name.lower())
                if name.lower() in self.suspended:
                    errors.append({"value": name, "detail": f"User has been suspended: [{name}].",
                                   "title": "Forbidden", "resource_type": "user",
                                   "parameter": "usernames", "resource_id": name,
                                   "type": "https://api.twitter.com/2/problems/resource-not-found"})
                elif bundle is None:
                    errors.append({"value": name,
                                   "detail": f"Could not find user with usernames: [{name}].",
                                   "title": "Not Found Error", "resource_type": "user",
                                   "parameter": "usernames", "resource_id": name,
                                   "type": "https://api.twitter.com/2/problems/resource-not-found"})
                else:
                    data.append(bundle["user"])
            body: dict[str, Any] = {}
            if data:
                body["data"] = data
            if errors:
                body["errors"] = errors
            return 200, limits, body
        match = re.fullmatch(r"/2/users/([0-9]+)/tweets", path)
        if match:
            for bundle in self.bundles.values():
                if bundle["user"].get("id") == match.group(1):
                    return 200, limits, bundle.get("tweets", {"meta": {"result_count": 0}})
            return 200, limits, {"errors": [{"title": "Not Found Error", "value": match.group(1)}]}
        return 404, {}, {"title": "Not Found", "status": 404}


# ---------------------------------------------------------------------- Bluesky


class BlueskyServer(FakeAPI):
    network = "bluesky"

    def add(self, handle: str, followers: int = 100) -> None:
        did = "did:plc:" + f"{len(self.bundles):024d}".translate(str.maketrans("0189", "abcd"))
        self.bundles[handle.lower()] = {"profile": {
            "did": did, "handle": handle, "displayName": handle.split(".")[0],
            "followersCount": followers, "followsCount": 10, "postsCount": 20,
            "indexedAt": "2026-01-01T00:00:00.000Z", "labels": []}}

    def add_many(self, count: int) -> list[str]:
        handles = [f"user{i}.bsky.social" for i in range(count)]
        for i, handle in enumerate(handles):
            self.add(handle, followers=i)
        return handles

    def _find(self, actor: str) -> dict[str, Any] | None:
        actor = actor.lower()
        if actor in self.bundles:
            return self.bundles[actor]
        return next((b for b in self.bundles.values() if b["profile"].get("did") == actor), None)

    def route(self, path: str, query: dict[str, list[str]], headers: dict[str, str]) -> Answer:
        limits = {"ratelimit-limit": "3000", "ratelimit-remaining": "2999",
                  "ratelimit-reset": "9999999999", "ratelimit-policy": "3000;w=300"}
        if path == "/xrpc/app.bsky.actor.getProfiles":
            actors = query.get("actors", [])
            if not actors or len(actors) > 25:
                return 400, {}, {"error": "InvalidRequest",
                                 "message": "actors must have 1 to 25 elements"}
            profiles = [b["profile"] for a in actors if (b := self._find(a)) is not None]
            return 200, limits, {"profiles": profiles}
        if path == "/xrpc/app.bsky.feed.getAuthorFeed":
            bundle = self._find((query.get("actor") or [""])[0])
            if bundle is None:
                return 400, {}, {"error": "InvalidRequest", "message": "Profile not found"}
            return 200, limits, bundle.get("feed", {"feed": []})
        return 501, {}, {"error": "MethodNotImplemented", "message": "Method Not Implemented"}


# --------------------------------------------------------------------- Mastodon


class MastodonServer(FakeAPI):
    """One instance. Bundles are keyed by the local username (what `acct=` carries)."""

    network = "mastodon"

    def add(self, user: str, followers: int = 100, statuses: list[dict[str, Any]] | None = None
            ) -> None:
        bundle: dict[str, Any] = {"account": {
            "id": str(109_000_000 + len(self.bundles)), "username": user, "acct": user,
            "followers_count": followers, "following_count": 10, "statuses_count": 30,
            "bot": False, "created_at": "2022-11-06T00:00:00.000Z"}}
        if statuses is not None:
            bundle["statuses"] = statuses
        self.bundles[user.lower()] = bundle

    def route(self, path: str, query: dict[str, list[str]], headers: dict[str, str]) -> Answer:
        limits = {"X-RateLimit-Limit": "300", "X-RateLimit-Remaining": "299",
                  "X-RateLimit-Reset": "2099-01-01T00:00:00.000Z"}
        if path == "/api/v1/accounts/lookup":
            acct = (query.get("acct") or [""])[0].split("@")[0].lower()
            bundle = self.bundles.get(acct)
            if bundle is None:
                return 404, {}, {"error": "Record not found"}
            return 200, limits, bundle["account"]
        match = re.fullmatch(r"/api/v1/accounts/([^/]+)/statuses", path)
        if match:
            for bundle in self.bundles.values():
                if bundle["account"]["id"] == match.group(1):
                    return 200, limits, bundle.get("statuses", [])
            return 404, {}, {"error": "Record not found"}
        return 404, {}, {"error": "Record not found"}


# ----------------------------------------------------------------------- GitHub


class GitHubServer(FakeAPI):
    network = "github"

    def add(self, login: str, followers: int = 100) -> None:
        self.bundles[login.lower()] = {"user": {
            "login": login, "id": 1000 + len(self.bundles), "type": "User",
            "public_repos": 12, "followers": followers, "following": 3,
            "created_at": "2015-01-01T00:00:00Z"}}

    def route(self, path: str, query: dict[str, list[str]], headers: dict[str, str]) -> Answer:
        limits = {"x-ratelimit-limit": "60", "x-ratelimit-remaining": "59",
                  "x-ratelimit-used": "1", "x-ratelimit-reset": "9999999999",
                  "x-ratelimit-resource": "core"}
        match = re.fullmatch(r"/users/([^/]+)", path)
        if match:
            bundle = self.bundles.get(match.group(1).lower())
            if bundle is None:
                return 404, limits, {"message": "Not Found", "documentation_url":
                                     "https://docs.github.com/rest/users/users#get-a-user",
                                     "status": "404"}
            return 200, limits, bundle["user"]
        return 404, {}, {"message": "Not Found"}


# ----------------------------------------------------------------------- Reddit


class RedditServer(FakeAPI):
    network = "reddit"

    def add(self, name: str, karma: int = 100, suspended: bool = False) -> None:
        data: dict[str, Any] = {"name": name, "is_suspended": True} if suspended else {
            "name": name, "id": f"t{len(self.bundles)}", "created_utc": 1.6e9,
            "link_karma": karma // 2, "comment_karma": karma - karma // 2, "total_karma": karma}
        self.bundles[name.lower()] = {"about": {"kind": "t2", "data": data}}

    def route(self, path: str, query: dict[str, list[str]], headers: dict[str, str]) -> Answer:
        limits = {"x-ratelimit-used": "1", "x-ratelimit-remaining": "9.0",
                  "x-ratelimit-reset": "60"}
        match = re.fullmatch(r"/user/([^/]+)/about\.json", path)
        if match:
            bundle = self.bundles.get(match.group(1).lower())
            if bundle is None:
                return 404, limits, {"message": "Not Found", "error": 404}
            return 200, limits, bundle["about"]
        return 404, {}, {"message": "Not Found", "error": 404}


# ---------------------------------------------------------------------- YouTube


class YouTubeServer(FakeAPI):
    network = "youtube"
    key = "test-api-key"

    def add(self, handle: str, subscribers: int = 100) -> None:
        handle = handle if handle.startswith("@") else "@" + handle
        self.bundles[handle.lower()] = {"channels": {
            "kind": "youtube#channelListResponse", "etag": "e",
            "pageInfo": {"totalResults": 1, "resultsPerPage": 5},
            "items": [{"kind": "youtube#channel", "id": f"UC{len(self.bundles):022d}",
                       "snippet": {"title": handle[1:], "customUrl": handle.lower()},
                       "statistics": {"viewCount": "1000", "subscriberCount": str(subscribers),
                                      "hiddenSubscriberCount": False, "videoCount": "10"}}]}}

    def route(self, path: str, query: dict[str, list[str]], headers: dict[str, str]) -> Answer:
        key = (query.get("key") or [headers.get("x-goog-api-key", "")])[0]
        if key != self.key:
            return 400, {}, {"error": {"code": 400, "message": "API key not valid.",
                                       "errors": [{"reason": "badRequest",
                                                   "domain": "global"}]}}
        if path == "/youtube/v3/channels":
            handle = (query.get("forHandle") or [""])[0].lower()
            handle = handle if handle.startswith("@") else "@" + handle
            bundle = self.bundles.get(handle)
            if bundle is None:
                return 200, {}, {"kind": "youtube#channelListResponse", "etag": "e",
                                 "pageInfo": {"totalResults": 0, "resultsPerPage": 5}}
            return 200, {}, bundle["channels"]
        return 404, {}, {"error": {"code": 404, "message": "Not Found"}}


QUOTA_EXCEEDED = {"error": {"code": 403, "message": "The request cannot be completed because you "
                            "have exceeded your quota.",
                            "errors": [{"message": "quota", "domain": "youtube.quota",
                                        "reason": "quotaExceeded"}]}}

SERVERS = {"x": XServer, "bluesky": BlueskyServer, "mastodon": MastodonServer,
           "github": GitHubServer, "reddit": RedditServer, "youtube": YouTubeServer}


def start_all() -> dict[str, FakeAPI]:
    return {network: cls() for network, cls in SERVERS.items()}


def endpoints(servers: dict[str, FakeAPI]) -> dict[str, str]:
    """`endpoints` for `build("live", ...)`: Mastodon's is a template on the server's port."""
    out = {n: s.url for n, s in servers.items() if n != "mastodon"}
    if "mastodon" in servers:
        out["mastodon"] = f"http://{{instance}}:{servers['mastodon'].port}"
    return out


def secrets() -> dict[str, str]:
    return {"x_bearer_token": XServer.token, "youtube_api_key": YouTubeServer.key}
