"""`salesforce`: Case changes from Salesforce, as Outbound Messages (SOAP) or Clout's JSON event.

The Content-Type decides the format (a body starting with `<` counts as XML too):

* **Outbound Message** (text/xml, SOAP 1.1; INTEGRATIONS.md A2). Salesforce signs
  nothing, so the message is authenticated twice: the endpoint URL carries the
  signing secret (`/webhooks/salesforce?token=<URL-encoded CLOUT_WEBHOOK_SECRET_SALESFORCE>`,
  compared in constant time), and its `OrganizationId` must be the desk's
  `organization_id` (first 15 characters, case-sensitive: 15- and 18-character
  spellings of one org match). XML is read only through defusedxml with DTDs,
  entities and external references forbidden. Each `Notification` (1..100)
  becomes one `TicketEvent` whose event id is the notification's `Id`; the
  delivery id is the SHA-256 of the sorted notification ids, so a redelivery of
  the same message is a duplicate even when its sObject data changed since.
  A success (queued, duplicate or ignored) is answered with the SOAP Ack Salesforce
  waits for (`respond`); errors stay JSON 4xx, so Salesforce retries them.
* **JSON** (application/json): Clout's generic event signed per Standard Webhooks
  with the same secret (a Flow HTTP Callout or Apex callout); see `webhooks.generic`.

`case_event` turns one Case (API field names -> values, from XML text or REST
JSON) into a `TicketEvent`; the connector uses it for polled Cases too.

Error details name fields by their path in the message, with 1-based positions
as in XPath: `Notification[3].sObject.Id` is the third notification's Case Id.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
from dataclasses import replace
from typing import Any, Mapping
from xml.etree.ElementTree import Element, ParseError

import defusedxml
import defusedxml.ElementTree as safe_xml

from . import generic
from .base import Parsed, PayloadError, SignatureError, WebhookRequest
from .event import CLOSED, OPEN, CustomerFacts, TicketEvent
from .generic import MAX_ID_LENGTH, _iso_utc, _utc

NAME = "salesforce"
# Where TicketEvent fields come from in a Case, for error messages.
EVENT_FIELDS = {"occurred_at": "LastModifiedDate", "ticket_created_at": "CreatedDate"}

# The same whsec_ secret signs the JSON flavour and is the Outbound Message URL token.
secret_problem = generic.secret_problem

SOAP11_NS = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12_NS = "http://www.w3.org/2003/05/soap-envelope"
OUTBOUND_NS = "http://soap.sforce.com/2005/09/outbound"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
_XSI_TYPE = f"{{{XSI_NS}}}type"
_XSI_NIL = f"{{{XSI_NS}}}nil"

MAX_NOTIFICATIONS = 100  # per message, as Salesforce documents
MAX_EVENT_ID_LENGTH = 256  # as generic's event_id
MAX_PRIORITY_LENGTH = 64
_SF_ID = re.compile(r"^[A-Za-z0-9]{15,18}$")
_TYPE_NAME = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_.-]{0,40}:)?[A-Za-z][A-Za-z0-9_]{0,80}$")
_DATETIME = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}")
_DATETIME_EXAMPLE = "e.g. 2026-11-30T10:00:00.000Z or 2026-11-30T10:00:00.000+0000"

XML_CONTENT_TYPES = {"text/xml", "application/xml", "application/soap+xml"}

ACK = (b'<?xml version="1.0" encoding="UTF-8"?>\n'
       b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
       b"<soapenv:Body>"
       b'<notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound">'
       b"<Ack>true</Ack>"
       b"</notificationsResponse>"
       b"</soapenv:Body>"
       b"</soapenv:Envelope>")
ACK_CONTENT_TYPE = "text/xml; charset=utf-8"
_ACKED = ("queued", "duplicate", "ignored")


# -- which format -------------------------------------------------------------------


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if value is None:  # a plain dict built by hand rather than a case-insensitive mapping
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    return value or ""


def is_outbound_message(request: WebhookRequest) -> bool:
    """True for an Outbound Message (XML), False for the JSON flavour."""
    media = _header(request.headers, "content-type").split(";", 1)[0].strip().lower()
    if media in XML_CONTENT_TYPES or media.endswith("+xml"):
        return True
    body = request.body[3:] if request.body.startswith(b"\xef\xbb\xbf") else request.body
    return body.lstrip()[:1] == b"<"


# -- the Outbound Message document --------------------------------------------------


def _document(body: bytes) -> Element:
    """The parsed XML; PayloadError for anything unsafe or not well-formed.

    The messages never quote the body: an external entity's target or an
    expanded entity has no business in an answer or a log.
    """
    try:
        return safe_xml.fromstring(body, forbid_dtd=True, forbid_entities=True,
                                   forbid_external=True)
    except defusedxml.DTDForbidden:
        raise PayloadError("body has a DTD (<!DOCTYPE ...>); Outbound Messages carry none, and "
                           "DTDs are refused (entity expansion, external entities)") from None
    except defusedxml.EntitiesForbidden:
        raise PayloadError("body declares XML entities; they are refused") from None
    except defusedxml.ExternalReferenceForbidden:
        raise PayloadError("body refers to an external resource; it is refused") from None
    except ParseError as exc:
        # expat's text: what went wrong and where, never the content
        raise PayloadError(f"body is not well-formed XML ({exc})") from None
    except (ValueError, LookupError, UnicodeError, RecursionError):  # e.g. an unknown encoding
        raise PayloadError("body is not well-formed XML") from None


def _notifications(body: bytes) -> Element:
    """The `notifications` element of an Outbound Message body."""
    root = _document(body)
    for soap in (SOAP11_NS, SOAP12_NS):
        if root.tag == f"{{{soap}}}Envelope":
            found = root.find(f"{{{soap}}}Body/{{{OUTBOUND_NS}}}notifications")
            if found is not None:
                return found
    raise PayloadError(
        "body is not a Salesforce Outbound Message: expected soapenv:Envelope/soapenv:Body/"
        f"notifications in namespace {OUTBOUND_NS}",
        [{"field": "notifications", "problem": "missing"}])


def _child_text(parent: Element, name: str) -> str | None:
    child = parent.find(f"{{{OUTBOUND_NS}}}{name}")
    if child is None or child.get(_XSI_NIL) in ("true", "1"):
        return None
    return (child.text or "").strip()


# -- verify -------------------------------------------------------------------------


def _verify_token(request: WebhookRequest, secret: str) -> None:
    token = request.query.get("token") or ""
    expected = secret.encode()
    matches = hmac.compare_digest(token.encode(), expected)
    # A '+' of a base64 secret that wasn't URL-encoded arrives as a space: say so.
    unencoded = hmac.compare_digest(token.replace(" ", "+").encode(), expected)
    if matches:
        return
    if token and unencoded:
        raise SignatureError("the token in the endpoint URL is not URL-encoded: its '+' arrived "
                             "as spaces; put the secret in the URL with '+' as %2B, '/' as %2F "
                             "and '=' as %3D")
    raise SignatureError("missing or wrong token in the endpoint URL (the Outbound Message's "
                         "endpoint must be .../webhooks/salesforce?token=<URL-encoded "
                         "CLOUT_WEBHOOK_SECRET_SALESFORCE>)")


def _configured_org(desk: Any) -> str:
    org = getattr(desk, "organization_id", None) if desk is not None else None
    org = org.strip() if isinstance(org, str) else ""
    if not _SF_ID.match(org):
        raise SignatureError("the Salesforce organization id is not configured (desk setting "
                             "organization_id, 15 or 18 characters), so no Outbound Message can "
                             "be accepted")
    return org


def verify(request: WebhookRequest, secret: str, *, now: float, tolerance: int,
           desk: Any = None) -> None:
    """SignatureError unless the request is authentic.

    JSON: the Standard Webhooks signature. Outbound Message: the URL token, then
    the OrganizationId against `desk.organization_id`. A body that can't be read
    safely passes here once the token matched, and `parse` refuses it with a 400
    (the same body, parsed the same way): verify only ever says "not authentic".
    """
    if not is_outbound_message(request):
        generic.verify(request, secret, now=now, tolerance=tolerance)
        return
    _verify_token(request, secret)
    configured = _configured_org(desk)
    try:
        notifications = _notifications(request.body)
    except PayloadError:
        return  # unreadable: parse answers 400 and nothing is queued
    sent = _child_text(notifications, "OrganizationId")
    if not sent:
        raise SignatureError("the Outbound Message carries no OrganizationId")
    if not _SF_ID.match(sent):
        raise SignatureError("the Outbound Message's OrganizationId is not a Salesforce id "
                             "(15 or 18 letters and digits)")
    if not hmac.compare_digest(sent[:15].encode(), configured[:15].encode()):
        raise SignatureError("the Outbound Message's OrganizationId is not this desk's "
                             "organization_id (compared on the first 15 characters, "
                             "case-sensitive)")


# -- one Case -----------------------------------------------------------------------


class _Bad(ValueError):
    """A field's value is unusable; the text is the problem, without the value."""


def _text(value: Any, max_length: int | None = None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Bad("must be text")
    if "\x00" in value:
        raise _Bad("must not contain NUL characters")
    value = value.strip()
    if max_length is not None and len(value) > max_length:
        raise _Bad(f"must be at most {max_length} characters")
    return value


def _id(value: Any) -> str | None:
    text = _text(value, MAX_ID_LENGTH)
    return text or None


def _bool(value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        key = value.strip().lower()
        if key in ("true", "1"):
            return True
        if key in ("false", "0"):
            return False
        if not key:
            return None
    raise _Bad("must be true or false")


def _timestamp(value: Any) -> str | None:
    """ISO 8601 with any offset (Z, +0000, +00:00; none = UTC) -> generic's UTC spelling."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _Bad(f"must be an ISO 8601 date-time string, {_DATETIME_EXAMPLE}")
    value = value.strip()
    if not _DATETIME.match(value):
        raise _Bad(f"must be an ISO 8601 date-time, {_DATETIME_EXAMPLE}")
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise _Bad(f"must be an ISO 8601 date-time, {_DATETIME_EXAMPLE}") from None
    try:
        return _iso_utc(_utc(parsed))
    except ValueError as exc:
        raise _Bad(str(exc)) from None


def case_event(case: Mapping[str, Any], *, event_id: str, received_at: str,
               source: str = NAME) -> TicketEvent:
    """One Case as a TicketEvent.

    `case` maps Salesforce API names (Id, Subject, Description, Priority, Status,
    IsClosed, CreatedDate, LastModifiedDate, ContactId, AccountId) to strings
    from XML ("true") or JSON values from REST (True, None). Status is "closed"
    when IsClosed is true or Status is "Closed", "open" when IsClosed is false or
    another Status is given, None when neither is sent. The customer is the
    ContactId, or the AccountId when there is none. Raises PayloadError naming
    every unusable field (details: [{"field", "problem"}]); never quotes values.
    """
    problems: list[dict[str, str]] = []

    def field(name: str, convert, value: Any) -> Any:
        try:
            return convert(value)
        except _Bad as exc:
            problems.append({"field": name, "problem": str(exc)})
            return None

    def event_text(value: Any) -> str | None:
        text = _text(value, MAX_EVENT_ID_LENGTH)
        if not text:
            raise _Bad("must not be empty")
        return text

    def required_timestamp(value: Any) -> str | None:
        when = _timestamp(value)
        if when is None:
            raise _Bad(f"is required, {_DATETIME_EXAMPLE}")
        return when

    eid = field("event_id", event_text, event_id)
    received = field("received_at", required_timestamp, received_at)
    ticket_id = field("Id", _id, case.get("Id"))
    if ticket_id is None and not any(p["field"] == "Id" for p in problems):
        problems.append({"field": "Id", "problem": "missing: a Case needs its Id"})
    subject = field("Subject", _text, case.get("Subject"))
    description = field("Description", _text, case.get("Description"))
    priority = field("Priority", lambda v: _text(v, MAX_PRIORITY_LENGTH), case.get("Priority"))
    status_text = field("Status", lambda v: _text(v, MAX_PRIORITY_LENGTH), case.get("Status"))
    is_closed = field("IsClosed", _bool, case.get("IsClosed"))
    modified = field("LastModifiedDate", _timestamp, case.get("LastModifiedDate"))
    created = field("CreatedDate", _timestamp, case.get("CreatedDate"))
    contact = field("ContactId", _id, case.get("ContactId"))
    account = field("AccountId", _id, case.get("AccountId"))
    if contact is None and account is None and not any(
            p["field"] in ("ContactId", "AccountId") for p in problems):
        problems.append({"field": "ContactId", "problem": "missing: a Case needs a ContactId "
                         "or, failing that, an AccountId (the customer)"})
    if problems:
        summary = "; ".join(f"{p['field']}: {p['problem']}" for p in problems[:5])
        raise PayloadError(f"invalid Case: {summary}", problems)

    if is_closed is True or (status_text or "").lower() == "closed":
        status: str | None = CLOSED
    elif is_closed is False or status_text:
        status = OPEN
    else:
        status = None
    return TicketEvent(
        source=source,
        event_id=eid or "",
        occurred_at=modified or received or "",
        ticket_id=ticket_id or "",
        customer=CustomerFacts(id=contact or account or ""),
        subject=subject or "",
        description=description or "",
        desk_priority=priority or None,
        ticket_created_at=created,
        status=status,
    )


# -- parse --------------------------------------------------------------------------


def _sobject_fields(sobject: Element, where: str,
                    problems: list[dict[str, str]]) -> dict[str, str | None]:
    """The sObject's fields by local name: text, or None for xsi:nil."""
    fields: dict[str, str | None] = {}
    for child in sobject:
        if not isinstance(child.tag, str):
            continue
        name = child.tag.rpartition("}")[2]
        if name in fields:
            problems.append({"field": f"{where}.{name}", "problem": "appears more than once"})
            continue
        if len(child):
            problems.append({"field": f"{where}.{name}",
                             "problem": "must be a single value, not nested elements"})
            continue
        fields[name] = None if child.get(_XSI_NIL) in ("true", "1") else (child.text or "")
    return fields


def _parse_outbound(request: WebhookRequest) -> Parsed:
    notifications = _notifications(request.body)
    items = notifications.findall(f"{{{OUTBOUND_NS}}}Notification")
    if not items:
        raise PayloadError("the Outbound Message has no Notification",
                           [{"field": "Notification", "problem": "missing: 1 to 100 expected"}])
    if len(items) > MAX_NOTIFICATIONS:
        raise PayloadError(
            f"the Outbound Message has {len(items)} Notifications; at most {MAX_NOTIFICATIONS}",
            [{"field": "Notification",
              "problem": f"{len(items)} sent; at most {MAX_NOTIFICATIONS} per message"}])

    problems: list[dict[str, str]] = []
    seen: dict[str, int] = {}
    cases: list[tuple[int, str, str, Element | None]] = []  # (position, id, type, sObject)
    for pos, item in enumerate(items, start=1):
        where = f"Notification[{pos}]"
        nid = _child_text(item, "Id")
        if not nid:
            problems.append({"field": f"{where}.Id", "problem": "missing"})
        elif not _SF_ID.match(nid):
            problems.append({"field": f"{where}.Id",
                             "problem": "must be a Salesforce id: 15 to 18 letters and digits"})
        elif nid in seen:
            problems.append({"field": f"{where}.Id",
                             "problem": f"repeats Notification[{seen[nid]}].Id"})
        else:
            seen[nid] = pos
        sobject = item.find(f"{{{OUTBOUND_NS}}}sObject")
        sotype = ""
        if sobject is None:
            problems.append({"field": f"{where}.sObject", "problem": "missing"})
        else:
            sotype = (sobject.get(_XSI_TYPE) or "").strip()
            if not sotype:
                problems.append({"field": f"{where}.sObject",
                                 "problem": "missing xsi:type (e.g. sf:Case)"})
        cases.append((pos, nid or "", sotype, sobject))

    types = {sotype.rpartition(":")[2] for _, _, sotype, _ in cases if sotype}
    if not problems and "Case" not in types:
        names = sorted(t for _, _, t, _ in cases if _TYPE_NAME.match(t))
        shown = ", ".join(dict.fromkeys(names)) or "another object type"
        return Parsed(delivery_id=_delivery_id(seen),
                      ignored=f"Outbound Message for {shown}, not sf:Case: nothing to rank")
    if "Case" in types and len(types) > 1:
        first = next(pos for pos, _, t, _ in cases if t.rpartition(":")[2] == "Case")
        for pos, _, sotype, _ in cases:
            if sotype and sotype.rpartition(":")[2] != "Case":
                problems.append({"field": f"Notification[{pos}].sObject",
                                 "problem": f"is not a Case but Notification[{first}] is; one "
                                            "message carries one object type"})

    received_at = _iso_utc(dt.datetime.now(dt.timezone.utc)) or ""
    events: list[TicketEvent] = []
    for pos, nid, sotype, sobject in cases:
        if sobject is None or sotype.rpartition(":")[2] != "Case":
            continue
        where = f"Notification[{pos}].sObject"
        fields = _sobject_fields(sobject, where, problems)
        try:
            event = case_event(fields, event_id=nid or "-", received_at=received_at)
        except PayloadError as exc:
            problems.extend({"field": f"{where}.{d['field']}", "problem": d["problem"]}
                            for d in exc.details)
            continue
        events.append(event)
    if problems:
        summary = "; ".join(f"{p['field']}: {p['problem']}" for p in problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise PayloadError(f"invalid Outbound Message: {summary}{more}", problems)
    return Parsed(delivery_id=_delivery_id(seen), events=tuple(events))


def _delivery_id(notification_ids: Mapping[str, int] | list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(notification_ids)).encode()).hexdigest()


def parse(request: WebhookRequest, *, desk: Any = None) -> Parsed:
    """The events of a verified request (PayloadError: 400, nothing queued)."""
    if is_outbound_message(request):
        return _parse_outbound(request)
    parsed = generic.parse(request)
    return replace(parsed, events=tuple(replace(e, source=NAME) for e in parsed.events))


# -- answer -------------------------------------------------------------------------


def respond(status: int, body: dict[str, Any], *,
            request: WebhookRequest | None = None) -> tuple[int, str, bytes] | None:
    """The SOAP Ack for a successful Outbound Message; None (JSON as usual) otherwise.

    Salesforce retries until it gets HTTP 200 with `<Ack>true</Ack>`, so queued,
    duplicate and ignored messages are all acknowledged with 200. Without the
    request the format is unknown, and JSON is the answer.
    """
    if request is None or not is_outbound_message(request):
        return None
    if not 200 <= status < 300 or body.get("status") not in _ACKED:
        return None
    return 200, ACK_CONTENT_TYPE, ACK
