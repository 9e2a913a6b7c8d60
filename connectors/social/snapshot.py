"""Influence from a bundled JSON snapshot, through the live clients: only the transport differs.

The embedded default needs no credentials and no network: `config/demo/
social_snapshot.json` holds, per network and handle, the same response
bodies the live APIs return. `SnapshotSource` is the six live clients
(`connectors.social.<network>.Client`) over a `requests` session whose only
adapter is `SnapshotTransport`: it answers each API's requests from the file
in that API's documented shape (X's `users/by` batch with its `errors` list
for unknown names, Bluesky's `getProfiles` batch, Mastodon's lookup on the
account's instance, GitHub's and Reddit's 404s, YouTube's empty
`channelListResponse`). So the demo and the tests run exactly the code
production runs: handle normalisation, batching, failure mapping, parsing.

Differences from live use, all in how the source is built: the snapshot
never rate-limits or times out, so nothing is retried or waited for; every
found account gets its engagement sample (a sample costs nothing here); and
Mastodon instances are not resolved (nothing is connected to).

File layout::

    {"version": 1, "captured_at": "<ISO 8601>",
     "networks": {"x": {"<handle>": <bundle>}, "bluesky": {...}, ...}}

with each network's bundle as its parser documents it.

Recent activity is measured relative to `captured_at` unless the caller
passes `now`: a snapshot is a picture of one moment, and measuring its
post dates against today's clock would let the demo decay to "inactive"
as the calendar moves on.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from connectors.social import as_mapping, as_time, register
from connectors.social.base import NETWORKS, LookupFailure, NetworkMetrics
from connectors.social.client import ClientSource, check_network
from connectors.social.handles import InvalidHandle, normalise
from connectors.social.live import build_clients

log = logging.getLogger(__name__)

SUPPORTED_VERSION = 1


def normalise_handle(network: str, handle: str) -> str:
    """The lookup key for a handle (see `handles.normalise`); lenient: never raises.

    A handle `handles.normalise` refuses comes back case-folded and without a
    leading "@", which can match nothing in a snapshot.
    """
    try:
        return normalise(network, handle)
    except InvalidHandle:
        return str(handle).strip().casefold().lstrip("@")


# --------------------------------------------------------------------------
# The file, indexed the ways the APIs are asked
# --------------------------------------------------------------------------


@dataclass
class Snapshot:
    captured_at: datetime | None
    bundles: dict[str, dict[str, Mapping[str, Any]]]
    x_by_id: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    bluesky_by_did: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    mastodon_by_id: dict[tuple[str, str], Mapping[str, Any]] = field(default_factory=dict)

    @classmethod
    def from_document(cls, document: Any, path: Path) -> Snapshot:
        if not isinstance(document, Mapping) or document.get("version") != SUPPORTED_VERSION:
            raise ValueError(
                f"{path}: not a version {SUPPORTED_VERSION} influence snapshot "
                '(expected {"version": 1, "networks": {...}})'
            )
        snap = cls(captured_at=as_time(document.get("captured_at")), bundles={})
        for network, bundles in as_mapping(document.get("networks")).items():
            if network not in NETWORKS:
                continue  # a newer file may carry networks this version can't parse
            index: dict[str, Mapping[str, Any]] = {}
            for handle, bundle in as_mapping(bundles).items():
                if not isinstance(handle, str) or not isinstance(bundle, Mapping):
                    continue
                try:
                    index[normalise(network, handle)] = bundle
                except InvalidHandle as exc:
                    log.warning("%s: %s handle %r skipped: %s", path, network, handle, exc)
            snap.bundles[network] = index
        for bundle in snap.bundles.get("x", {}).values():
            user_id = as_mapping(bundle.get("user")).get("id")
            if isinstance(user_id, str):
                snap.x_by_id[user_id] = bundle
        for bundle in snap.bundles.get("bluesky", {}).values():
            did = as_mapping(bundle.get("profile")).get("did")
            if isinstance(did, str):
                snap.bluesky_by_did[did.lower()] = bundle
        for key, bundle in snap.bundles.get("mastodon", {}).items():
            account_id = as_mapping(bundle.get("account")).get("id")
            if isinstance(account_id, str):
                snap.mastodon_by_id[(key.partition("@")[2], account_id)] = bundle
        return snap

    def find(self, network: str, handle: str) -> Mapping[str, Any] | None:
        try:
            return self.bundles.get(network, {}).get(normalise(network, handle))
        except InvalidHandle:
            return None


# --------------------------------------------------------------------------
# The transport: each API's endpoints, answered from the file
# --------------------------------------------------------------------------

Answer = tuple[int, Any]


def _x_users_by(snap: Snapshot, host: str, query: dict[str, list[str]], _m: Any) -> Answer:
    names = [n for n in ",".join(query.get("usernames", [])).split(",") if n]
    data, errors = [], []
    for name in names:
        bundle = snap.find("x", name)
        if bundle is not None and isinstance(bundle.get("user"), Mapping):
            data.append(bundle["user"])
        else:
            errors.append({
                "value": name,
                "detail": f"Could not find user with usernames: [{name}].",
                "title": "Not Found Error",
                "resource_type": "user",
                "parameter": "usernames",
                "resource_id": name,
                "type": "https://api.twitter.com/2/problems/resource-not-found",
            })
    body: dict[str, Any] = {}
    if data:
        body["data"] = data
    if errors:
        body["errors"] = errors
    return 200, body


def _x_tweets(snap: Snapshot, host: str, query: dict[str, list[str]], match: Any) -> Answer:
    bundle = snap.x_by_id.get(match.group(1))
    if bundle is None or not isinstance(bundle.get("tweets"), Mapping):
        return 404, {"title": "Not Found Error", "type": "about:blank", "status": 404}
    return 200, bundle["tweets"]


def _bluesky_profiles(snap: Snapshot, host: str, query: dict[str, list[str]], _m: Any) -> Answer:
    profiles = []
    for actor in query.get("actors", []):
        bundle = snap.bluesky_by_did.get(actor.lower()) or snap.find("bluesky", actor)
        if bundle is not None and isinstance(bundle.get("profile"), Mapping):
            profiles.append(bundle["profile"])
    return 200, {"profiles": profiles}


def _bluesky_feed(snap: Snapshot, host: str, query: dict[str, list[str]], _m: Any) -> Answer:
    actor = (query.get("actor") or [""])[0]
    bundle = snap.bluesky_by_did.get(actor.lower()) or snap.find("bluesky", actor)
    if bundle is None or not isinstance(bundle.get("feed"), Mapping):
        return 400, {"error": "InvalidRequest", "message": "Profile not found"}
    return 200, bundle["feed"]


def _mastodon_lookup(snap: Snapshot, host: str, query: dict[str, list[str]], _m: Any) -> Answer:
    acct = (query.get("acct") or [""])[0]
    bundle = snap.find("mastodon", acct if "@" in acct else f"{acct}@{host}")
    if bundle is None or not isinstance(bundle.get("account"), Mapping):
        return 404, {"error": "Record not found"}
    return 200, bundle["account"]


def _mastodon_statuses(
    snap: Snapshot, host: str, query: dict[str, list[str]], match: Any
) -> Answer:
    bundle = snap.mastodon_by_id.get((host, match.group(1)))
    if bundle is None or not isinstance(bundle.get("statuses"), list):
        return 404, {"error": "Record not found"}
    return 200, bundle["statuses"]


def _github_user(snap: Snapshot, host: str, query: dict[str, list[str]], match: Any) -> Answer:
    bundle = snap.find("github", match.group(1))
    if bundle is None or not isinstance(bundle.get("user"), Mapping):
        return 404, {"message": "Not Found",
                     "documentation_url": "https://docs.github.com/rest/users/users#get-a-user",
                     "status": "404"}
    return 200, bundle["user"]


def _reddit_about(snap: Snapshot, host: str, query: dict[str, list[str]], match: Any) -> Answer:
    bundle = snap.find("reddit", match.group(1))
    if bundle is None or not isinstance(bundle.get("about"), Mapping):
        return 404, {"message": "Not Found", "error": 404}
    return 200, bundle["about"]


def _youtube_channels(snap: Snapshot, host: str, query: dict[str, list[str]], _m: Any) -> Answer:
    handle = (query.get("forHandle") or [""])[0]
    bundle = snap.find("youtube", handle)
    if bundle is not None and isinstance(bundle.get("channels"), Mapping):
        return 200, bundle["channels"]
    return 200, {"kind": "youtube#channelListResponse", "etag": "snapshot",
                 "pageInfo": {"totalResults": 0, "resultsPerPage": 5}}


# Order matters: X's /2/users/... before GitHub's /users/<name>.
ROUTES: tuple[tuple[re.Pattern[str], Any], ...] = (
    (re.compile(r"/2/users/by$"), _x_users_by),
    (re.compile(r"/2/users/([0-9]+)/tweets$"), _x_tweets),
    (re.compile(r"/xrpc/app\.bsky\.actor\.getProfiles$"), _bluesky_profiles),
    (re.compile(r"/xrpc/app\.bsky\.feed\.getAuthorFeed$"), _bluesky_feed),
    (re.compile(r"/api/v1/accounts/lookup$"), _mastodon_lookup),
    (re.compile(r"/api/v1/accounts/([^/]+)/statuses$"), _mastodon_statuses),
    (re.compile(r"/user/([^/]+)/about\.json$"), _reddit_about),
    (re.compile(r"/youtube/v3/channels$"), _youtube_channels),
    (re.compile(r"/users/([^/]+)$"), _github_user),
)


class SnapshotTransport(BaseAdapter):
    """A `requests` adapter answering the six APIs' GETs from a snapshot, in their shapes."""

    def __init__(self, load: Any) -> None:
        super().__init__()
        self._load = load
        self.requests_served = 0
        self._lock = threading.Lock()

    def send(self, request: requests.PreparedRequest, stream: bool = False, timeout: Any = None,
             verify: Any = True, cert: Any = None, proxies: Any = None) -> requests.Response:
        with self._lock:
            self.requests_served += 1
        snap: Snapshot = self._load()
        parts = urlsplit(request.url or "")
        path = unquote(parts.path)
        query = parse_qs(parts.query, keep_blank_values=True)
        host = (parts.hostname or "").lower()
        status, body = 404, {"error": "NotFound", "message": "no such endpoint in the snapshot"}
        if request.method == "GET":
            for pattern, answer in ROUTES:
                match = pattern.search(path)
                if match:
                    status, body = answer(snap, host, query, match)
                    break
        else:
            status, body = 405, {"error": "MethodNotAllowed"}
        response = requests.Response()
        response.status_code = status
        response.reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}.get(status, "")
        response.headers = CaseInsensitiveDict({"Content-Type": "application/json; charset=utf-8"})
        response._content = json.dumps(body).encode("utf-8")
        response._content_consumed = True
        response.encoding = "utf-8"
        response.url = request.url or ""
        response.request = request
        return response

    def close(self) -> None:
        pass


# --------------------------------------------------------------------------
# The source
# --------------------------------------------------------------------------

# Credentials the snapshot's X and YouTube clients send; they never leave the process.
_SNAPSHOT_SECRETS = {"x_bearer_token": "snapshot", "youtube_api_key": "snapshot"}


class SnapshotSource(ClientSource):
    """`InfluenceSource` backed by a snapshot file, loaded once on first use."""

    name = "snapshot"

    def __init__(self, path: str | Path, now: datetime | None = None) -> None:
        self.path = Path(path)
        self._now = now
        self._file_lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self.transport = SnapshotTransport(self._load)
        session = requests.Session()
        session.trust_env = False
        session.mount("https://", self.transport)
        session.mount("http://", self.transport)
        self.session = session
        super().__init__(build_clients(
            session,
            secrets=_SNAPSHOT_SECRETS,
            max_retries=0,
            max_wait_seconds=0,
            sample_budget=None,  # free here, and the demo's story needs the samples
            now=self._reference_time,
        ))

    def networks(self) -> tuple[str, ...]:
        """Networks with at least a section in the file, in canonical order."""
        snap = self._load()
        return tuple(n for n in NETWORKS if n in snap.bundles)

    @property
    def captured_at(self) -> datetime | None:
        """When the snapshot was taken, per the file (None if it doesn't say)."""
        return self._load().captured_at

    def fetch_metrics(
        self, network: str, handles: Sequence[str]
    ) -> dict[str, NetworkMetrics | LookupFailure]:
        """An entry per handle asked for, keyed as given (see `base.InfluenceSource`)."""
        check_network(network)
        self._load()  # a missing or broken file is a configuration error: raise it
        return super().fetch_metrics(network, handles)

    def _reference_time(self) -> datetime | None:
        return self._now or self._load().captured_at

    def _load(self) -> Snapshot:
        if self._snapshot is not None:
            return self._snapshot
        with self._file_lock:
            if self._snapshot is None:
                try:
                    document = json.loads(self.path.read_text(encoding="utf-8"))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{self.path}: not valid JSON ({exc})") from None
                self._snapshot = Snapshot.from_document(document, self.path)
        return self._snapshot


@register("snapshot")
def from_options(
    *,
    snapshot_path: str | Path | None = None,
    path: str | Path | None = None,
    now: datetime | None = None,
    **_other_sources_options: Any,
) -> SnapshotSource:
    """Registry factory: the runtime hands every source the same options (live ones ignored)."""
    chosen = path if path is not None else snapshot_path
    if chosen is None:
        raise ValueError("influence source 'snapshot' needs snapshot_path (the bundled JSON file)")
    return SnapshotSource(chosen, now=now)
