"""`generic`: any system that can POST Clout's own JSON event, signed per Standard Webhooks.

Signature (https://www.standardwebhooks.com/): headers `webhook-id`,
`webhook-timestamp` (unix seconds) and `webhook-signature`, a space-separated
list of `v1,<base64 HMAC-SHA256>` over `"{id}.{timestamp}.{raw body}"`, keyed
with the base64 part of a `whsec_...` secret. Several signatures may be sent
during key rotation; any match passes.

Written by hand rather than with the `standardwebhooks` package because Clout
needs a configurable tolerance and a distinct, safe error for each failure
(missing header, stale timestamp, no matching signature) to return as JSON.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import hashlib
import hmac
import re
from typing import Annotated, Any

from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StrictFloat,
                      StrictInt, StrictStr, ValidationError)

from .base import Parsed, PayloadError, SignatureError, WebhookRequest, json_object
from .event import CLOSED, OPEN, SOCIAL_NETWORKS, CustomerFacts, TicketEvent

NAME = "generic"
# Where TicketEvent fields come from in this payload, for error messages.
EVENT_FIELDS = {"occurred_at": "occurred_at", "ticket_created_at": "ticket.created_at"}
SECRET_PREFIX = "whsec_"


MIN_KEY_BYTES = 24


@functools.lru_cache(maxsize=16)
def _secret_key(secret: str) -> bytes:
    # Cached: the same few secrets are decoded on every webhook otherwise.
    raw = secret[len(SECRET_PREFIX):] if secret.startswith(SECRET_PREFIX) else secret
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the signing secret is not base64") from None


def secret_problem(secret: str) -> str | None:
    """Why `secret` is too weak to sign with, or None.

    Checked at start-up (see plugin.settings): an empty or short key makes every
    webhook forgeable, and text that isn't base64 is a copy-paste slip, not a key.
    The answer never contains the secret itself.
    """
    try:
        key = _secret_key(secret)
    except ValueError:
        return (f"must be {SECRET_PREFIX}<base64>, as Standard Webhooks senders issue it "
                "(the part after the prefix is not valid base64)")
    if len(key) < MIN_KEY_BYTES:
        return (f"is too weak: its key decodes to {len(key)} byte(s); at least {MIN_KEY_BYTES} "
                f"random bytes are required (e.g. {SECRET_PREFIX} + base64 of 32 random bytes)")
    return None


_TIMESTAMP = re.compile(r"^[0-9]{1,12}$")


def sign(secret: str, msg_id: str, timestamp: int | str, body: bytes) -> str:
    """The `webhook-signature` value a sender computes (used by the demo and tests)."""
    return "v1," + base64.b64encode(_digest(secret, msg_id, timestamp, body)).decode()


def _digest(secret: str, msg_id: str, timestamp: int | str, body: bytes) -> bytes:
    # The prefix and the body are fed separately: no copy of the body per request.
    mac = hmac.new(_secret_key(secret), f"{msg_id}.{timestamp}.".encode(), hashlib.sha256)
    mac.update(body)
    return mac.digest()


def verify(request: WebhookRequest, secret: str, *, now: float, tolerance: int,
           desk: Any = None) -> None:
    headers = request.headers
    msg_id = headers.get("webhook-id")
    timestamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    missing = [name for name, value in (("webhook-id", msg_id), ("webhook-timestamp", timestamp),
                                        ("webhook-signature", signatures)) if not value]
    if missing:
        raise SignatureError(f"missing header(s): {', '.join(missing)}")
    assert msg_id and timestamp and signatures
    if not _TIMESTAMP.match(timestamp):
        raise SignatureError("webhook-timestamp must be unix seconds (digits only)")
    ts = int(timestamp)
    if abs(now - ts) > tolerance:
        raise SignatureError(
            f"webhook-timestamp is {int(now - ts)} s off the server clock; "
            f"allowed: {tolerance} s either way"
        )
    # Signed over the header exactly as sent, per the spec.
    expected = base64.b64encode(_digest(secret, msg_id, timestamp, request.body))
    matched = False
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode(), expected):
            matched = True  # keep looping: time must not depend on which one matched
    if not matched:
        raise SignatureError("no webhook-signature matches the body (wrong secret, or body changed)")


# -- payload ------------------------------------------------------------------

MAX_ID_LENGTH = 128  # matches the store's id columns


def _no_nul(value: str) -> str:
    # PostgreSQL text cannot hold NUL, and no desk means one: refuse it here, not in the job.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


Text = Annotated[StrictStr, AfterValidator(_no_nul)]


def _timestamp_text(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError("must be an ISO 8601 string, e.g. 2026-11-25T09:15:00Z")
    return value


def _utc(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    try:
        value = value.astimezone(dt.timezone.utc)
    except OverflowError:
        raise ValueError("is outside the supported range of dates") from None
    if not 1900 <= value.year <= 2200:
        raise ValueError("year must be between 1900 and 2200")
    return value


Timestamp = Annotated[dt.datetime, BeforeValidator(_timestamp_text), AfterValidator(_utc)]


def _date_text(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError("must be an ISO date string, e.g. 2027-01-10")
    return value


Date = Annotated[dt.date, BeforeValidator(_date_text)]


def _id_text(value: str | int) -> str | int:
    text = str(value)
    if "\x00" in text:
        raise ValueError("must not contain NUL characters")
    if not text:
        raise ValueError("must not be empty")
    if len(text) > MAX_ID_LENGTH:
        raise ValueError(f"must be at most {MAX_ID_LENGTH} characters")
    return value


# Desks use numeric or string ids; both become strings in a TicketEvent.
Id = Annotated[StrictStr | StrictInt, AfterValidator(_id_text)]
Money = Annotated[StrictFloat | StrictInt, Field(ge=0, le=1e12)]
Handle = Annotated[Text, Field(max_length=256)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True, allow_inf_nan=False)


class _Handles(_Model):
    x: Handle | None = None
    bluesky: Handle | None = None
    mastodon: Handle | None = None
    github: Handle | None = None
    reddit: Handle | None = None
    youtube: Handle | None = None


class _Customer(_Model):
    id: Id
    name: Annotated[Text, Field(max_length=256)] | None = None
    email: Annotated[Text, Field(max_length=320)] | None = None
    handles: _Handles | None = None
    monthly_spend: Money | None = None
    currency: Annotated[StrictStr, Field(pattern=r"^[A-Za-z]{3}$")] | None = None
    contract_end: Date | None = None


# What a sender may call a ticket's state; Clout only needs open or closed.
STATUSES = {"new": OPEN, "open": OPEN, "pending": OPEN, "on_hold": OPEN, "hold": OPEN,
            "solved": CLOSED, "resolved": CLOSED, "closed": CLOSED}


def _status(value: str) -> str:
    key = value.strip().lower().replace("-", "_").replace(" ", "_")
    if key not in STATUSES:
        raise ValueError(f"must be one of {', '.join(sorted(STATUSES))}")
    return STATUSES[key]


class _Ticket(_Model):
    id: Id
    subject: Text = ""
    description: Text = ""
    priority: Annotated[Text, Field(max_length=64)] | None = None
    status: Annotated[StrictStr, Field(max_length=32), AfterValidator(_status)] | None = None
    created_at: Timestamp | None = None


class _Event(_Model):
    event_id: Annotated[Text, Field(min_length=1, max_length=256)]
    occurred_at: Timestamp
    ticket: _Ticket
    customer: _Customer


def _iso_utc(value: dt.datetime | None) -> str | None:
    """Already UTC (see `_utc`); one spelling everywhere so strings compare in time order."""
    if value is None:
        return None
    # == strftime("%Y-%m-%dT%H:%M:%S.%fZ") for the years `_utc` allows, at a fraction of its cost.
    return value.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _details(exc: ValidationError) -> list[dict[str, str]]:
    out = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith(("str", "int", "float")))
        out.append({"field": loc or "(body)", "problem": err["msg"]})
    return out


def parse(request: WebhookRequest, *, desk: Any = None) -> Parsed:
    delivery_id = request.headers.get("webhook-id", "")
    data = json_object(request.body, "(one event)")
    try:
        event = _Event.model_validate(data)
    except ValidationError as exc:
        details = _details(exc)
        summary = "; ".join(f"{d['field']}: {d['problem']}" for d in details[:5])
        raise PayloadError(f"invalid event: {summary}", details) from None

    sent = event.customer.handles
    handles = {k: v for k in SOCIAL_NETWORKS if (v := getattr(sent, k))} if sent else {}
    customer = CustomerFacts(
        id=str(event.customer.id),
        name=event.customer.name,
        email=event.customer.email,
        handles=handles,
        monthly_spend=None if event.customer.monthly_spend is None else float(event.customer.monthly_spend),
        currency=event.customer.currency.upper() if event.customer.currency else None,
        contract_end=event.customer.contract_end.isoformat() if event.customer.contract_end else None,
    )
    ticket_event = TicketEvent(
        source=NAME,
        event_id=event.event_id,
        occurred_at=_iso_utc(event.occurred_at) or "",
        ticket_id=str(event.ticket.id),
        customer=customer,
        subject=event.ticket.subject,
        description=event.ticket.description,
        desk_priority=event.ticket.priority,
        ticket_created_at=_iso_utc(event.ticket.created_at),
        status=event.ticket.status,
    )
    return Parsed(delivery_id=delivery_id, events=(ticket_event,))
