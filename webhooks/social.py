"""`social`: mentions from a social listening tool, signed per Standard Webhooks.

`POST /webhooks/social` carries one mention of the brand: which network, who
posted (the author's handle), the post's URL, its text and when it was
posted. The signature is exactly the generic desk's (headers `webhook-id`,
`webhook-timestamp`, `webhook-signature`; a `whsec_` secret), so `verify` and
`secret_problem` are the generic module's; the secret lives in
`CLOUT_WEBHOOK_SECRET_SOCIAL`.

Body (the Standard Webhooks envelope: `type`, `timestamp`, `data`):

    {"type": "mention.created", "timestamp": "2026-11-25T09:15:00Z",
     "data": {"network": "bluesky", "author": {"handle": "adaq.bsky.social", "name": "Ada"},
              "url": "https://bsky.app/profile/adaq.bsky.social/post/3kabc",
              "text": "...", "posted_at": "2026-11-25T09:14:00Z",
              "thread_url": null, "in_reply_to_url": null}}

Only `mention.created` and `mention.updated` are acted on; any other type is
answered 200 "ignored" so the tool stops retrying. This module only checks
the shape: handles are normalised and matched to customers in `plugin.mentions`
(webhooks/ imports neither connectors/ nor ranking/).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictStr, ValidationError

from .base import PayloadError, WebhookRequest, json_object
from .event import SOCIAL_NETWORKS
from .generic import Text, Timestamp, _details, _iso_utc, secret_problem, sign, verify

NAME = "social"
TYPES = ("mention.created", "mention.updated")
MAX_TEXT = 10_000
MAX_URL = 2048

__all__ = ["NAME", "TYPES", "Mention", "parse_mention", "secret_problem", "sign", "verify"]


@dataclass(frozen=True)
class Mention:
    """One post that mentions the brand, as plain values (it travels as JSON)."""

    network: str
    author_handle: str
    url: str
    text: str
    posted_at: str | None = None  # ISO 8601 UTC
    author_name: str | None = None
    thread_url: str | None = None  # the thread's first post, when the tool knows it
    in_reply_to_url: str | None = None
    brand_term: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _web_url(value: str) -> str:
    if len(value) > MAX_URL:
        raise ValueError(f"must be at most {MAX_URL} characters")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an http(s) URL")
    return value


def _network(value: str) -> str:
    key = value.strip().lower()
    if key == "twitter":
        key = "x"
    if key not in SOCIAL_NETWORKS:
        raise ValueError(f"must be one of {', '.join(SOCIAL_NETWORKS)}")
    return key


Url = Annotated[Text, AfterValidator(_web_url)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True, allow_inf_nan=False)


class _Author(_Model):
    handle: Annotated[Text, Field(min_length=1, max_length=256)]
    name: Annotated[Text, Field(max_length=256)] | None = None


class _Data(_Model):
    network: Annotated[StrictStr, AfterValidator(_network)]
    author: _Author
    url: Url
    text: Annotated[Text, Field(max_length=MAX_TEXT)]
    posted_at: Timestamp | None = None
    thread_url: Url | None = None
    in_reply_to_url: Url | None = None
    brand_term: Annotated[Text, Field(max_length=100)] | None = None


class _Envelope(_Model):
    type: Annotated[StrictStr, Field(min_length=1, max_length=100)]
    timestamp: Timestamp | None = None
    data: dict[str, Any] | None = None


@dataclass(frozen=True)
class ParsedMention:
    delivery_id: str
    mention: Mention | None = None
    ignored: str | None = None  # why nothing is recorded (an event type we don't act on)


def parse_mention(request: WebhookRequest) -> ParsedMention:
    """The mention in a verified request; `PayloadError` (400) names each bad field."""
    delivery_id = request.headers.get("webhook-id", "")
    raw = json_object(request.body, "{type, timestamp, data}")
    try:
        envelope = _Envelope.model_validate(raw)
    except ValidationError as exc:
        raise _invalid(exc) from None
    if envelope.type not in TYPES:
        return ParsedMention(delivery_id, ignored=f"event type {envelope.type!r} is not acted on "
                             f"(only {', '.join(TYPES)})")
    if envelope.data is None:
        raise PayloadError("invalid mention: data: Field required",
                           [{"field": "data", "problem": "Field required"}])
    try:
        data = _Data.model_validate(envelope.data)
    except ValidationError as exc:
        raise _invalid(exc, prefix="data.") from None
    if not data.text and not data.url:
        raise PayloadError("invalid mention: data.text: must not be empty")
    mention = Mention(
        network=data.network, author_handle=data.author.handle, author_name=data.author.name,
        url=data.url, text=data.text, posted_at=_iso_utc(data.posted_at), thread_url=data.thread_url,
        in_reply_to_url=data.in_reply_to_url, brand_term=data.brand_term)
    return ParsedMention(delivery_id, mention=mention)


def _invalid(exc: ValidationError, prefix: str = "") -> PayloadError:
    details = [{"field": prefix + d["field"], "problem": d["problem"]} for d in _details(exc)]
    summary = "; ".join(f"{d['field']}: {d['problem']}" for d in details[:5])
    return PayloadError(f"invalid mention: {summary}", details)
