"""What every network's client does the same way, and a source made of clients.

A client's `fetch(handles)`:

1. normalises each handle (`handles.normalise`); an invalid one gets
   `LookupFailure("invalid handle: <why>", retryable=False)` and costs no
   request; spellings of the same account share one lookup;
2. looks the accounts up (`lookup`, batched where the API allows);
3. fetches an engagement sample (recent posts) for as many found accounts as
   the per-call `sample_budget` allows (None = all): one request each, so the
   default budget of 0 keeps a burst to its batch calls. An account without a
   sample is scored on audience alone;
4. parses each account's bundle with the network's own `parse`, measuring
   recent activity against `now()` (the clock, or a snapshot's capture time).

Every handle asked for gets an entry, keyed as given. Subclasses (one per
network, next to its parser) implement `lookup` and, if the API has one,
`sample`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar

from connectors.social.base import NETWORKS, NOT_FOUND, LookupFailure, NetworkMetrics
from connectors.social.handles import InvalidHandle, normalise
from connectors.social.http import Call, Http, Reply

Bundle = dict[str, Any]
Result = NetworkMetrics | LookupFailure


def chunks(items: Sequence[str], size: int) -> list[Sequence[str]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def unexpected(reply: Reply, network: str) -> LookupFailure:
    """A failure for a reply the client can't use (after 404s and 429s were handled)."""
    status = reply.status
    if status == 404 or status == 410:
        return NOT_FOUND
    if status in (401, 403):
        return LookupFailure(f"{network} refused the request (HTTP {status}); check credentials",
                             retryable=True)
    if 400 <= status < 500:
        return LookupFailure(f"{network} rejected the request (HTTP {status})", retryable=False)
    if 200 <= status < 300:
        return LookupFailure(f"unexpected response shape from {network}", retryable=True)
    return LookupFailure(f"{network} answered HTTP {status}", retryable=True)


class NetworkClient:
    """One network's live lookups; see the module docstring for the steps."""

    network: ClassVar[str]
    default_base_url: ClassVar[str]
    parse: ClassVar[Callable[..., NetworkMetrics]]

    def __init__(
        self,
        http: Http,
        *,
        base_url: str | None = None,
        now: Callable[[], datetime | None] = lambda: None,
        sample_budget: int | None = 0,
        sample_min_followers: float = 0,
    ) -> None:
        self.http = http
        self.base_url = (base_url or self.default_base_url).rstrip("/")
        self.now = now
        self.sample_budget = sample_budget
        self.sample_min_followers = sample_min_followers

    @property
    def requests_sent(self) -> int:
        return self.http.requests_sent

    def _worth_sampling(self, bundles: Mapping[str, Any], keys: Iterable[str]) -> list[str]:
        """Which profiles get a post sample, largest audience first.

        The influence model damps a large audience it has no engagement evidence for
        (a bought audience looks just like that), so a sample is worth most where the
        audience is large; below `sample_min_followers` it changes little, and a burst
        of ordinary accounts costs only its batch calls.
        """
        found = [(k, _followers(type(self).parse, bundles[k])) for k in keys
                 if isinstance(bundles.get(k), dict)]
        found = [(k, f) for k, f in found if f >= self.sample_min_followers]
        return [k for k, _ in sorted(found, key=lambda kf: -kf[1])]

    # -- overridden per network -------------------------------------------

    def lookup(self, keys: Sequence[str], call: Call) -> dict[str, Bundle | LookupFailure]:
        raise NotImplementedError

    def sample(self, key: str, bundle: Bundle, call: Call) -> bool:
        """Add recent posts to `bundle`; True if a request was spent. Default: no sample API."""
        return False

    has_sample: ClassVar[bool] = False

    # -- the shared steps --------------------------------------------------

    def fetch(self, handles: Sequence[str]) -> dict[str, Result]:
        out: dict[Any, Result] = {}
        by_key: dict[str, list[Any]] = {}
        seen: set[Any] = set()
        for given in handles:
            if not _hashable(given):
                continue  # can't be a dict key, so it can't be answered either
            if given in seen:
                continue
            seen.add(given)
            try:
                key = normalise(self.network, given)
            except InvalidHandle as exc:
                out[given] = LookupFailure(f"invalid handle: {exc.reason}", retryable=False)
                continue
            by_key.setdefault(key, []).append(given)
        if not by_key:
            return out
        call = Call()
        try:
            bundles = self.lookup(list(by_key), call)
        except Exception as exc:  # a bug in one client must not fail the batch
            failure = LookupFailure(f"{self.network} lookup failed ({type(exc).__name__})")
            bundles = dict.fromkeys(by_key, failure)
        if self.has_sample:
            left = self.sample_budget
            for key in self._worth_sampling(bundles, by_key):
                bundle = bundles[key]
                if left is not None and left <= 0:
                    break
                try:
                    spent = self.sample(key, bundle, call)
                except Exception:  # audience alone, rather than nothing
                    spent = True
                if spent and left is not None:
                    left -= 1
        now = self.now()
        for key, givens in by_key.items():
            found = bundles.get(key, NOT_FOUND)
            if isinstance(found, dict):
                result: Result = type(self).parse(found, now=now)
            else:
                result = found
            for given in givens:
                out[given] = result
        return {given: out[given] for given in handles if given in out}


def _followers(parse: Callable[..., NetworkMetrics], bundle: dict) -> float:
    try:
        return float(parse(bundle).followers or 0)
    except Exception:  # a profile that won't parse is not worth a sample
        return -1.0


class ClientSource:
    """An `InfluenceSource` answering each network through its client."""

    name = "clients"

    def __init__(self, clients: Mapping[str, NetworkClient]) -> None:
        self.clients = dict(clients)
        self._lock = threading.Lock()

    def networks(self) -> tuple[str, ...]:
        return tuple(n for n in NETWORKS if n in self.clients)

    @property
    def requests_sent(self) -> dict[str, int]:
        return {n: c.requests_sent for n, c in self.clients.items()}

    def fetch_metrics(self, network: str, handles: Sequence[str]) -> dict[str, Result]:
        check_network(network)
        client = self.clients.get(network)
        if client is None:
            failure = LookupFailure(f"{network} is not available from this source",
                                    retryable=False)
            return {h: failure for h in handles if _hashable(h)}
        return client.fetch(handles)


def check_network(network: str) -> None:
    if network not in NETWORKS:
        raise ValueError(
            f"unknown social network {network!r}; expected one of {', '.join(NETWORKS)}"
        )


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True
