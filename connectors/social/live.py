"""The "live" influence source: each network's API where credentials allow, else the snapshot.

    build("live", snapshot_path=..., session=requests.Session(), endpoints={...},
          secrets={"x_bearer_token": ..., "youtube_api_key": ..., "github_token": ...},
          timeouts=(3.05, 10.0), max_retries=2, max_wait_seconds=30,
          mastodon_allowlist=(), sample_budget=0)

X needs `x_bearer_token` and YouTube `youtube_api_key`; Bluesky, Mastodon,
GitHub and Reddit are public (`github_token` only raises GitHub's limit).
A network without its credentials is answered from the snapshot file, if one
is given. `endpoints` overrides a network's base URL (a proxy or a test
server); Mastodon's is a template with `{instance}`, default
`https://{instance}`.

Mastodon requests go through their own session (`http.guarded_session`)
that only connects to checked public addresses unless the instance is in
`mastodon_allowlist`; the other networks use `session` as given.

Extra options, for tests: `backoff_seconds` (retry backoff base, default
0.5), `user_agent`, `resolver` (getaddrinfo stand-in for the Mastodon guard),
`now` (the snapshot fallback's clock).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import requests

from connectors.social import register
from connectors.social.base import NETWORKS, LookupFailure, NetworkMetrics
from connectors.social.client import NetworkClient, check_network
from connectors.social.handles import Resolver
from connectors.social.http import Http, default_rate_limit, guarded_session

log = logging.getLogger(__name__)

USER_AGENT = "python:clout.influence:0.1 (support-desk influence lookups)"


def secret_value(secrets: Mapping[str, Any] | None, name: str) -> str | None:
    """A credential as a plain str (accepts str, pydantic SecretStr and the like), or None."""
    value = (secrets or {}).get(name)
    if value is None:
        return None
    reveal = getattr(value, "get_secret_value", None)
    text = reveal() if callable(reveal) else value
    text = str(text).strip()
    return text or None


def build_clients(
    session: requests.Session,
    *,
    endpoints: Mapping[str, str] | None = None,
    secrets: Mapping[str, Any] | None = None,
    timeouts: tuple[float, float] = (3.05, 10.0),
    max_retries: int = 2,
    max_wait_seconds: float = 30.0,
    backoff_seconds: float = 0.5,
    sample_budget: int | None = 0,
    sample_min_followers: float = 0,
    now: Callable[[], datetime | None] = lambda: None,
    mastodon_session: requests.Session | None = None,
    user_agent: str = USER_AGENT,
) -> dict[str, NetworkClient]:
    """One client per network whose credentials are present, keyed by network."""
    from connectors.social import bluesky, github, mastodon, reddit, x, youtube

    endpoints = dict(endpoints or {})

    def http(network: str, rate_limit: Any = default_rate_limit,
             on: requests.Session | None = None) -> Http:
        return Http(on or session, network, timeouts=timeouts, max_retries=max_retries,
                    max_wait_seconds=max_wait_seconds, backoff_seconds=backoff_seconds,
                    headers={"User-Agent": user_agent, "Accept": "application/json"},
                    rate_limit=rate_limit)

    def common(network: str) -> dict[str, Any]:
        return {"base_url": endpoints.get(network), "now": now, "sample_budget": sample_budget,
                "sample_min_followers": sample_min_followers}

    clients: dict[str, NetworkClient] = {}
    token = secret_value(secrets, "x_bearer_token")
    if token:
        clients["x"] = x.Client(http("x", x.rate_limit), bearer_token=token, **common("x"))
    clients["bluesky"] = bluesky.Client(http("bluesky"), **common("bluesky"))
    clients["mastodon"] = mastodon.Client(http("mastodon", on=mastodon_session or session),
                                          **common("mastodon"))
    clients["github"] = github.Client(http("github"), token=secret_value(secrets, "github_token"),
                                      **common("github"))
    clients["reddit"] = reddit.Client(http("reddit"), **common("reddit"))
    key = secret_value(secrets, "youtube_api_key")
    if key:
        clients["youtube"] = youtube.Client(http("youtube", youtube.rate_limit), api_key=key,
                                            **common("youtube"))
    return {n: clients[n] for n in NETWORKS if n in clients}


class LiveSource:
    """`InfluenceSource`: live clients first, the snapshot for the networks they lack."""

    name = "live"

    def __init__(self, clients: Mapping[str, NetworkClient], fallback: Any = None) -> None:
        self.clients = dict(clients)
        self.fallback = fallback

    @property
    def live_networks(self) -> tuple[str, ...]:
        return tuple(n for n in NETWORKS if n in self.clients)

    def networks(self) -> tuple[str, ...]:
        from_snapshot = set(self.fallback.networks()) if self.fallback is not None else set()
        return tuple(n for n in NETWORKS if n in self.clients or n in from_snapshot)

    @property
    def requests_sent(self) -> dict[str, int]:
        return {n: c.requests_sent for n, c in self.clients.items()}

    def fetch_metrics(
        self, network: str, handles: Sequence[str]
    ) -> dict[str, NetworkMetrics | LookupFailure]:
        check_network(network)
        client = self.clients.get(network)
        if client is not None:
            return client.fetch(handles)
        if self.fallback is not None:
            return self.fallback.fetch_metrics(network, handles)
        failure = LookupFailure(f"no credentials for {network} and no snapshot", retryable=False)
        out: dict[str, NetworkMetrics | LookupFailure] = {}
        for handle in handles:
            try:
                out[handle] = failure
            except TypeError:
                continue
        return out


@register("live")
def from_options(
    *,
    snapshot_path: str | Path | None = None,
    session: requests.Session | None = None,
    endpoints: Mapping[str, str] | None = None,
    secrets: Mapping[str, Any] | None = None,
    timeouts: tuple[float, float] = (3.05, 10.0),
    max_retries: int = 2,
    max_wait_seconds: float = 30.0,
    mastodon_allowlist: Iterable[str] = (),
    sample_budget: int = 0,
    sample_min_followers: float = 0,
    backoff_seconds: float = 0.5,
    user_agent: str = USER_AGENT,
    resolver: Resolver | None = None,
    now: datetime | None = None,
    **_other_sources_options: Any,
) -> LiveSource:
    """Registry factory: the runtime hands every source the same options."""
    session = session if session is not None else requests.Session()
    clients = build_clients(
        session,
        endpoints=endpoints,
        secrets=secrets,
        timeouts=tuple(timeouts),  # type: ignore[arg-type]
        max_retries=max_retries,
        max_wait_seconds=max_wait_seconds,
        backoff_seconds=backoff_seconds,
        sample_budget=max(0, int(sample_budget)),
        sample_min_followers=float(sample_min_followers),
        mastodon_session=guarded_session(session, allowlist=mastodon_allowlist,
                                         resolver=resolver),
        user_agent=user_agent,
    )
    fallback = None
    missing = [n for n in NETWORKS if n not in clients]
    if missing and snapshot_path is not None:
        from connectors.social.snapshot import SnapshotSource

        fallback = SnapshotSource(snapshot_path, now=now)
    if missing:
        log.info("influence: no credentials for %s; %s", ", ".join(missing),
                 "answered from the snapshot" if fallback else "not looked up")
    return LiveSource(clients, fallback)
