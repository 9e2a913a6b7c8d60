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

from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol

from .event import TicketEvent


@dataclass(frozen=True)
class WebhookRequest:
    """The parts of an HTTP request a source needs; built once by the blueprint."""

    method: str
    url: str
    headers: Mapping[str, str]  # case-insensitive mapping
    body: bytes
    query: Mapping[str, str] = field(default_factory=dict)  # the parsed query string


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


class WebhookSource(Protocol):
    NAME: str

    def verify(self, request: WebhookRequest, secret: str, *, now: float, tolerance: int,
               desk: Any = None) -> None: ...

    def parse(self, request: WebhookRequest, *, desk: Any = None) -> Parsed: ...
