"""What every webhook source module provides, and the errors it may raise.

A source module exposes two steps, each a plain function so it can be tested
without Flask:

    verify(request: WebhookRequest, secret: str, *, now: float, tolerance: int, desk=None) -> None
    parse(request: WebhookRequest, *, desk=None) -> Parsed

`desk` is the desk's settings object (e.g. the organisation id a Salesforce
message must carry); a source that needs none ignores it.

A module may also define `respond(status, body, *, request) -> (status, content_type,
bytes) | None` for
a desk that expects its own acknowledgement instead of JSON (Salesforce's SOAP
Ack), `EVENT_FIELDS` (TicketEvent field -> the name in its
payload, used in error messages) and `secret_problem(secret) -> str | None`, saying why a
configured signing secret is too weak (checked once, at start-up).

`verify` raises `SignatureError` (answered 401); `parse` raises `PayloadError`
(answered 400) or returns `Parsed` with no events and an `ignored` reason for
event types Clout doesn't act on (answered 200 so the desk stops retrying).
"""

from __future__ import annotations

import json
import re

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol

from .event import TicketEvent


class WebhookRequest:
    """The parts of an HTTP request a source needs; built once by the blueprint.

    `url` and `query` may be given as zero-argument callables: most sources never
    look at them, and rebuilding the full URL (IRI decoding) and parsing the query
    string cost more per webhook than checking its signature. They are computed on
    first use, once. Read-only after construction, like the frozen dataclass it was.
    """

    __slots__ = ("method", "headers", "body", "_url", "_query")

    method: str
    headers: Mapping[str, str]  # case-insensitive mapping
    body: bytes

    def __init__(self, method: str, url: str | Callable[[], str], headers: Mapping[str, str],
                 body: bytes, query: Mapping[str, str] | Callable[[], Mapping[str, str]] | None = None
                 ) -> None:
        set_ = object.__setattr__
        set_(self, "method", method)
        set_(self, "headers", headers)
        set_(self, "body", body)
        set_(self, "_url", url)
        set_(self, "_query", {} if query is None else query)

    @property
    def url(self) -> str:
        """The full request URL."""
        if callable(self._url):
            object.__setattr__(self, "_url", self._url())
        return self._url  # type: ignore[return-value]

    @property
    def query(self) -> Mapping[str, str]:
        """The parsed query string."""
        if callable(self._query):
            object.__setattr__(self, "_query", self._query())
        return self._query  # type: ignore[return-value]

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"WebhookRequest is read-only (tried to set {name!r})")

    def __repr__(self) -> str:
        return f"WebhookRequest(method={self.method!r}, url={self.url!r}, body={len(self.body)} bytes)"


@dataclass(frozen=True)
class Parsed:
    delivery_id: str  # the desk's id for this delivery, stable across its retries
    events: tuple[TicketEvent, ...] = ()
    ignored: str | None = None  # why nothing is queued, for event types we skip


@dataclass
class WebhookError(Exception):
    message: str
    details: list[dict[str, str]] = field(default_factory=list)

    def __str__(self) -> str:
        return self.message


class SignatureError(WebhookError):
    """Missing, malformed, stale or wrong signature."""


class PayloadError(WebhookError):
    """The body is not what this desk sends."""


def json_object(body: bytes, shape: str) -> dict[str, Any]:
    """The body as a JSON object, or `PayloadError` (400) saying why not; `shape` tells the
    sender what object was expected."""
    try:
        data: Any = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PayloadError(f"body is not valid JSON: {exc}") from None
    except (ValueError, RecursionError):  # absurd nesting or a 4,300+ digit number
        raise PayloadError("body is not valid JSON: nested too deeply or a number too long") from None
    if not isinstance(data, dict):
        raise PayloadError(f"body must be a JSON object {shape}")
    # JSON may spell half of a UTF-16 surrogate pair ("\ud800") and Python decodes it into
    # a string no database can store: refused here, not by a failing batch later. Only
    # bodies with such an escape are walked.
    if _SURROGATE_ESCAPE.search(body) and _has_lone_surrogate(data):
        raise PayloadError("body is not valid JSON text: it escapes half of a UTF-16 "
                           "surrogate pair (\\ud800-\\udfff without its partner)")
    return data


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _has_lone_surrogate(data: Any) -> bool:
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


class WebhookSource(Protocol):
    NAME: str

    def verify(self, request: WebhookRequest, secret: str, *, now: float, tolerance: int,
               desk: Any = None) -> None: ...

    def parse(self, request: WebhookRequest, *, desk: Any = None) -> Parsed: ...
