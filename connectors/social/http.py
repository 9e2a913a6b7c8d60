"""The HTTP every live client shares: timeouts, retries, rate limits, and failures as values.

`Http.get_json` sends one GET through a `requests.Session` and returns a
`Reply` (status, parsed JSON, headers) or a `LookupFailure`; it never raises.

- Timeouts: `(connect, read)` on every request, plus a cap on the whole body
  read, so a server dripping bytes can't hold a worker.
- Retries: connection errors, timeouts and 5xx are retried `max_retries`
  times with exponential backoff. Redirects are never followed (a redirect
  could lead a Mastodon lookup to an internal address): a 3xx is a failure.
- Rate limits: a 429 (or GitHub's 403 with `x-ratelimit-remaining: 0`, or a
  network-specific signal such as YouTube's `quotaExceeded`) is waited out
  when the wait it asks for (`Retry-After`, else the reset header:
  `x-rate-limit-reset` for X, `x-ratelimit-reset` for GitHub, Reddit and
  Mastodon, `ratelimit-reset` for Bluesky) is at most `max_wait_seconds`;
  otherwise the host is blocked until then and every request to it fails at
  once with "rate limited for N s" (retryable), costing nothing. A success
  that reports 0 requests remaining blocks the host until its reset too, so
  an exhausted budget is waited for or skipped, never hammered.
- A host that failed after its retries is skipped for the rest of the same
  call (`Call`), so 500 GitHub handles on a dead GitHub cost one request
  plus retries, not 1,500.

Failure reasons are short and never contain a URL (API keys can travel in
query strings) or a token. `requests_sent` counts every HTTP request sent.
"""

from __future__ import annotations

import email.utils
import json
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict

from connectors.social.base import LookupFailure
from connectors.social.handles import Resolver, UnsafeHost, resolve_public

__all__ = ["Call", "GuardedAdapter", "Http", "Reply", "guarded_session", "reset_wait"]

MAX_BODY_BYTES = 4 * 1024 * 1024
DEFAULT_RATE_WAIT = 60.0  # a 429 that names no wait
MAX_RATE_WAIT = 86_400.0  # never believe a reset further away than a day
EPOCH_THRESHOLD = 1_000_000_000  # a reset above this is a Unix time, below it a delay

RETRY_AFTER = ("retry-after",)
RESET_HEADERS = ("x-rate-limit-reset", "x-ratelimit-reset", "ratelimit-reset")
REMAINING_HEADERS = ("x-rate-limit-remaining", "x-ratelimit-remaining", "ratelimit-remaining")


@dataclass(frozen=True)
class Reply:
    """A response that arrived: its status, its JSON body (None if not JSON), its headers."""

    status: int
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Call:
    """State for one `fetch_metrics` call: hosts that already failed are not asked again."""

    down: dict[str, LookupFailure] = field(default_factory=dict)


class HostRefused(requests.exceptions.InvalidURL):
    """The guard refused to connect (private address, unresolvable name)."""

    def __init__(self, reason: str, retryable: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


# --------------------------------------------------------------------------
# Rate-limit headers
# --------------------------------------------------------------------------


def _header(headers: Mapping[str, str], names: Iterable[str]) -> str | None:
    for name in names:
        value = headers.get(name)
        if value is not None and str(value).strip():
            return str(value).strip()
    return None


def _seconds_until(value: str, now_epoch: float) -> float | None:
    """A reset/Retry-After value as seconds from now: delay, Unix time, ISO or HTTP date."""
    try:
        number = float(value)
    except ValueError:
        number = None
    if number is not None and math.isfinite(number):
        return number - now_epoch if number > EPOCH_THRESHOLD else number
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        moment = None
    if moment is None:
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    if moment.tzinfo is None:
        return None
    return moment.timestamp() - now_epoch


def reset_wait(headers: Mapping[str, str], now_epoch: float | None = None) -> float | None:
    """Seconds the response asks us to wait (Retry-After first, then the reset header)."""
    now_epoch = time.time() if now_epoch is None else now_epoch
    for names in (RETRY_AFTER, RESET_HEADERS):
        value = _header(headers, names)
        if value is not None:
            wait = _seconds_until(value, now_epoch)
            if wait is not None:
                return min(max(wait, 1.0), MAX_RATE_WAIT)
    return None


def remaining(headers: Mapping[str, str]) -> float | None:
    value = _header(headers, REMAINING_HEADERS)
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def default_rate_limit(resp: requests.Response, body: Any) -> float | None:
    """Seconds to wait if `resp` says "rate limited", else None."""
    left = remaining(resp.headers)
    if resp.status_code == 429 or (
        resp.status_code == 403 and (left == 0 or _header(resp.headers, RETRY_AFTER))
    ):
        wait = reset_wait(resp.headers)
        return DEFAULT_RATE_WAIT if wait is None else wait
    return None


# --------------------------------------------------------------------------
# The client-side helper
# --------------------------------------------------------------------------


class Http:
    """GET JSON from one network's API with timeouts, retries and rate-limit waits."""

    def __init__(
        self,
        session: requests.Session,
        network: str,
        *,
        timeouts: tuple[float, float] = (3.05, 10.0),
        max_retries: int = 2,
        max_wait_seconds: float = 30.0,
        backoff_seconds: float = 0.5,
        headers: Mapping[str, str] | None = None,
        rate_limit: Callable[[requests.Response, Any], float | None] = default_rate_limit,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.session = session
        self.network = network
        connect, read = timeouts
        self.timeouts = (float(connect), float(read))
        self.max_retries = max(0, int(max_retries))
        self.max_wait_seconds = max(0.0, float(max_wait_seconds))
        self.backoff_seconds = max(0.0, float(backoff_seconds))
        self.headers = dict(headers or {})
        self.rate_limit = rate_limit
        self.sleep = sleep
        self.clock = clock
        self.requests_sent = 0
        self._blocked: dict[str, float] = {}  # host -> monotonic time it may be asked again
        self._lock = threading.Lock()

    # -- rate-limit gate ---------------------------------------------------

    def _block(self, scope: str, wait: float) -> None:
        with self._lock:
            until = self.clock() + wait
            self._blocked[scope] = max(until, self._blocked.get(scope, 0.0))

    def _gate(self, scope: str) -> LookupFailure | None:
        """Wait for a blocked host if the wait is short enough; else the failure."""
        with self._lock:
            until = self._blocked.get(scope)
        if until is None:
            return None
        wait = until - self.clock()
        if wait <= 0:
            with self._lock:
                if self._blocked.get(scope) == until:
                    del self._blocked[scope]
            return None
        if wait > self.max_wait_seconds:
            return LookupFailure(f"rate limited for {math.ceil(wait)} s", retryable=True)
        self.sleep(wait)
        return None

    # -- one GET -----------------------------------------------------------

    def get_json(
        self,
        url: str,
        *,
        call: Call,
        params: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply | LookupFailure:
        scope = urlsplit(url).netloc.lower()
        if scope in call.down:
            return call.down[scope]
        attempt = 0
        rate_waits = 0
        merged = {**self.headers, **(headers or {})}
        while True:
            gate = self._gate(scope)
            if gate is not None:
                call.down[scope] = gate
                return gate
            failure: LookupFailure
            try:
                resp = self.session.get(
                    url,
                    params=params,
                    headers=merged,
                    timeout=self.timeouts,
                    allow_redirects=False,
                    stream=True,
                )
            except HostRefused as exc:  # refused before connecting: nothing was sent
                failure = LookupFailure(exc.reason, retryable=exc.retryable)
                call.down[scope] = failure
                return failure
            except requests.RequestException as exc:
                self._count()
                failure = self._transport_failure(exc)
            else:
                self._count()
                outcome = self._read(resp)
                if isinstance(outcome, Reply):
                    wait = self.rate_limit(resp, outcome.body)
                    if wait is not None:
                        if wait <= self.max_wait_seconds and rate_waits <= self.max_retries:
                            rate_waits += 1
                            self.sleep(wait)
                            continue
                        if wait > self.max_wait_seconds:
                            self._block(scope, wait)
                            failure = LookupFailure(
                                f"rate limited for {math.ceil(wait)} s", retryable=True
                            )
                        else:
                            failure = LookupFailure("rate limited", retryable=True)
                        call.down[scope] = failure
                        return failure
                    self._note_budget(scope, resp)
                    if outcome.status >= 500:
                        failure = LookupFailure(
                            f"{self.network} error (HTTP {outcome.status})", retryable=True
                        )
                    elif 300 <= outcome.status < 400:
                        return LookupFailure(
                            f"redirected (HTTP {outcome.status}), not followed", retryable=False
                        )
                    elif 200 <= outcome.status < 300 and outcome.body is None:
                        return LookupFailure(f"malformed JSON from {self.network}", retryable=True)
                    else:
                        return outcome
                elif not outcome.retryable:
                    return outcome
                else:
                    failure = outcome
            if attempt < self.max_retries:
                self.sleep(self.backoff_seconds * (2**attempt))
                attempt += 1
                continue
            call.down[scope] = failure
            return failure

    def _count(self) -> None:
        with self._lock:
            self.requests_sent += 1

    def _transport_failure(self, exc: requests.RequestException) -> LookupFailure:
        # Only the exception's class is used: its text can carry the URL (and a key in it).
        if isinstance(exc, requests.Timeout):
            return LookupFailure(f"{self.network} timed out", retryable=True)
        if isinstance(exc, requests.exceptions.SSLError):
            return LookupFailure(f"{self.network} TLS verification failed", retryable=True)
        if isinstance(exc, requests.ConnectionError):
            return LookupFailure(f"{self.network} unreachable", retryable=True)
        return LookupFailure(f"{self.network} request failed ({type(exc).__name__})",
                             retryable=True)

    def _note_budget(self, scope: str, resp: requests.Response) -> None:
        """A response saying "0 left" blocks the host until its reset."""
        if remaining(resp.headers) == 0:
            wait = reset_wait(CaseInsensitiveDict(
                {k: v for k, v in resp.headers.items() if k.lower() in RESET_HEADERS}))
            if wait is not None:
                self._block(scope, wait)

    def _read(self, resp: requests.Response) -> Reply | LookupFailure:
        """The body, bounded in size and in total time; JSON-decoded when it is JSON."""
        deadline = self.clock() + self.timeouts[1] * 2 + 1
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in resp.iter_content(64 * 1024):
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    return LookupFailure(f"response from {self.network} too large",
                                         retryable=False)
                if self.clock() > deadline:
                    return LookupFailure(f"{self.network} timed out", retryable=True)
                chunks.append(chunk)
        except requests.RequestException as exc:
            if isinstance(exc, requests.Timeout) or "timed out" in str(exc).lower():
                return LookupFailure(f"{self.network} timed out", retryable=True)
            return LookupFailure(f"{self.network} unreachable", retryable=True)
        finally:
            resp.close()
        raw = b"".join(chunks)
        try:
            body = json.loads(raw.decode("utf-8")) if raw.strip() else None
        except (UnicodeDecodeError, ValueError):
            body = None
        return Reply(resp.status_code, body, resp.headers)


# --------------------------------------------------------------------------
# Connecting only to checked addresses (Mastodon instances come from handles)
# --------------------------------------------------------------------------


class GuardedAdapter(HTTPAdapter):
    """Resolve the host, refuse non-public addresses, connect to the address checked.

    The request goes to the checked IP with the original `Host` header; over
    HTTPS the TLS SNI and certificate check use the host name
    (`server_hostname` / `assert_hostname`), so a DNS answer that changes
    between check and connect (rebinding) is never used. Hosts in the
    allowlist are resolved and pinned the same way, only not checked.
    """

    def __init__(self, *, allowlist: Iterable[str] = (), resolver: Resolver | None = None,
                 **kwargs: Any) -> None:
        self.allowlist = tuple(allowlist)
        self.resolver = resolver
        super().__init__(**kwargs)

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        parts = urlsplit(request.url or "")
        host = parts.hostname or ""
        default_port = 443 if parts.scheme == "https" else 80
        try:
            port = parts.port or default_port
        except ValueError:
            raise HostRefused("invalid port") from None
        try:
            addresses = resolve_public(host, port, allowlist=self.allowlist,
                                       resolver=self.resolver)
        except UnsafeHost as exc:
            raise HostRefused(exc.reason, retryable="does not resolve" in exc.reason) from None
        host_header = parts.netloc.rsplit("@", 1)[-1]
        last: Exception | None = None
        for address in addresses[:3]:
            pinned = request.copy()
            netloc = f"[{address}]" if ":" in address else address
            if parts.port:
                netloc += f":{parts.port}"
            pinned.url = urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
            pinned.headers["Host"] = host_header
            pinned._clout_server_name = host  # type: ignore[attr-defined]
            try:
                return super().send(pinned, **kwargs)
            except requests.ConnectionError as exc:  # refused/unreachable: try the next one
                last = exc
                if isinstance(exc, requests.ConnectTimeout):
                    break
        assert last is not None
        raise last

    def build_connection_pool_key_attributes(  # type: ignore[override]
        self, request, verify, cert=None
    ):
        # requests >= 2.32 builds pools through this hook; older versions never call it,
        # and then TLS is checked against the IP, which fails closed.
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(
            request, verify, cert)
        name = getattr(request, "_clout_server_name", None)
        if name and host_params.get("scheme") == "https":
            pool_kwargs["server_hostname"] = name
            pool_kwargs["assert_hostname"] = name
        return host_params, pool_kwargs


def guarded_session(
    base: requests.Session | None = None,
    *,
    allowlist: Iterable[str] = (),
    resolver: Resolver | None = None,
) -> requests.Session:
    """A session that only connects to checked public addresses (and ignores proxy settings,
    which would resolve names where we can't check them). TLS trust comes from `base`."""
    session = requests.Session()
    session.trust_env = False
    if base is not None:
        session.verify = base.verify
        session.cert = base.cert
        session.headers.update(base.headers)
    adapter = GuardedAdapter(allowlist=allowlist, resolver=resolver)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
