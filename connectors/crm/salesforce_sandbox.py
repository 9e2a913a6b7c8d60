"""A local HTTPS stand-in for a Salesforce org: for tests and `clout demo --desk salesforce`.

This is NOT a Salesforce implementation. It is a small, strict, in-memory org
(Cases, Contacts, Accounts, Contracts) behind real TLS on 127.0.0.1, so the
real simple-salesforce client can talk to it unchanged and the desk connector
and webhook can be exercised end to end without the internet. It ships in the
package because the demo uses it.

Documented behaviours it reproduces (docs/shared reference INTEGRATIONS.md
sections 0, A2, B1):

* Login flows, reached through `session()` (a `requests.Session` whose adapter
  sends https://login.salesforce.com and https://test.salesforce.com here):
  SOAP `login` at POST /services/Soap/u/{v} (answers `sessionId` and a
  `serverUrl` on this server; a bad password is the `INVALID_LOGIN` SOAP fault,
  HTTP 500) and OAuth 2.0 at POST /services/oauth2/token (JWT bearer: any
  well-formed JWT with iss == consumer_key and sub == username, signature not
  checked; also the username-password grant). OAuth answers
  `instance_url = self.url`.
* REST under /services/data/vNN.N (any version): `Authorization: Bearer` is
  checked on every call (401 `INVALID_SESSION_ID` otherwise); every response
  carries `Sforce-Limit-Info: api-usage=<used>/<total>`; errors are always the
  JSON array `[{"message", "errorCode", ...}]`; past `api_total` calls the org
  answers 403 `REQUEST_LIMIT_EXCEEDED`.
* SOQL subset: SELECT fields (incl. one-level relationship paths such as
  `Account.Name`, returned nested) FROM Case|Contact|Account|Contract
  [WHERE cond [AND cond]*] [ORDER BY f [ASC|DESC] [NULLS FIRST|LAST], ...]
  [LIMIT n]; conditions `F = | != | <> | < | <= | > | >= literal`,
  `F [NOT] IN (literal, ...)`; literals 'strings', true/false, null, numbers,
  dates YYYY-MM-DD and datetimes YYYY-MM-DDThh:mm:ss[.fff](Z|+hh:mm|-hh:mm)
  (the documented forms; "+0000" is rejected). Unknown fields -> 400
  INVALID_FIELD, unknown objects -> 400 INVALID_TYPE, bad syntax -> 400
  MALFORMED_QUERY, a literal of the wrong type or a malformed id ->
  400 INVALID_QUERY_FILTER_OPERATOR, all with the caret-style message.
  Records carry `attributes: {type, url}`; datetimes come back as
  `2026-11-30T10:00:00.000+0000`, dates as `YYYY-MM-DD`; Case.IsClosed is
  derived from Status == "Closed". Results are paged by `page_size` with
  `done`, `totalSize` and `nextRecordsUrl`
  (/services/data/v59.0/query/01gSANDBOX<n>-<offset>).
* sObject Collections PATCH /composite/sobjects (<= 200 records, results in
  request order with `statusCode`/`message`/`fields` errors, allOrNone), plus
  GET/PATCH /sobjects/<Type>/<id>, GET /sobjects/<Type>/describe, GET /limits/.
* Outbound Messages: `outbound_message()` builds the SOAP 1.1 notifications
  envelope (A2) Salesforce would POST to Clout's webhook.

Knobs for tests: `fail_next` (next n REST calls answer an error), `fail_record`
(a record fails inside composite/sobjects), `expire_sessions`, and `calls`
(every request, in order). All org data and the call log are guarded by one
lock; the server runs in a daemon thread and logs nothing.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import os
import re
import secrets
import socket
import ssl
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Mapping
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape as _xml_escape

import requests
from requests.adapters import HTTPAdapter

__all__ = ["Call", "SalesforceSandbox"]

LOGIN_HOSTS = ("login.salesforce.com", "test.salesforce.com")
OUTBOUND_NS = "http://soap.sforce.com/2005/09/outbound"
SOBJECT_NS = "urn:sobject.enterprise.soap.sforce.com"
SOAPENV_NS = "http://schemas.xmlsoap.org/soap/envelope/"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
PARTNER_NS = "urn:partner.soap.sforce.com"

# Spec's Contact handle fields, by network.
HANDLE_FIELDS: dict[str, str] = {
    "x": "Clout_X_Handle__c",
    "bluesky": "Clout_Bluesky_Handle__c",
    "mastodon": "Clout_Mastodon_Handle__c",
    "github": "Clout_GitHub_Handle__c",
    "reddit": "Clout_Reddit_Handle__c",
    "youtube": "Clout_YouTube_Handle__c",
}
# The Case fields Clout reads, in the order an Outbound Message carries them.
OUTBOUND_CASE_FIELDS = ("CaseNumber", "Subject", "Description", "Priority", "Status", "IsClosed",
                        "CreatedDate", "LastModifiedDate", "ContactId", "AccountId",
                        "Clout_Priority__c", "Clout_Decision_Id__c")
MAX_COLLECTION_RECORDS = 200
MAX_NOTIFICATIONS = 100


@dataclass(frozen=True)
class Call:
    """One request the sandbox answered. `body` is the parsed JSON (or form) body,
    the text of any other body, or None; passwords in login bodies are masked."""
    method: str
    path: str
    query: dict[str, str]
    body: Any
    status: int


# --------------------------------------------------------------------------- ids, times

_ID_RE = re.compile(r"[a-zA-Z0-9]{15}(?:[a-zA-Z0-9]{3})?")
_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


def _to18(id15: str) -> str:
    """The 18-char, case-insensitive form of a 15-char id (Salesforce's checksum suffix)."""
    suffix = ""
    for chunk in range(3):
        flags = 0
        for j, ch in enumerate(id15[chunk * 5:chunk * 5 + 5]):
            if "A" <= ch <= "Z":
                flags |= 1 << j
        suffix += _SUFFIX[flags]
    return id15 + suffix


def _norm_id(value: Any) -> str | None:
    """An id normalised to 18 chars, or None when it is not a well-formed id."""
    if not isinstance(value, str) or not _ID_RE.fullmatch(value):
        return None
    return _to18(value[:15])


def _fmt_rest(value: datetime) -> str:
    """REST's datetime form: 2026-11-30T10:00:00.000+0000."""
    v = value.astimezone(timezone.utc)
    return v.strftime("%Y-%m-%dT%H:%M:%S.") + f"{v.microsecond // 1000:03d}+0000"


def _fmt_soap(value: datetime) -> str:
    """SOAP's datetime form: 2026-11-30T10:00:00.000Z."""
    v = value.astimezone(timezone.utc)
    return v.strftime("%Y-%m-%dT%H:%M:%S.") + f"{v.microsecond // 1000:03d}Z"


def _parse_datetime(text: str) -> datetime:
    """ISO 8601 with a zone (Z, +hh:mm, +hhmm), fractional seconds allowed; returns UTC."""
    t = text.strip()
    if t.endswith(("Z", "z")):
        t = t[:-1] + "+00:00"
    m = re.fullmatch(r"(.*T[0-9:]+)(\.\d+)?([+-]\d{2}):?(\d{2})", t)
    if not m:
        raise ValueError(f"not an ISO 8601 datetime with a zone: {text!r}")
    frac = (m.group(2) or "")[:7]
    value = datetime.fromisoformat(f"{m.group(1)}{frac}{m.group(3)}:{m.group(4)}")
    return value.astimezone(timezone.utc)


def _coerce_datetime(value: datetime | str) -> datetime:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("datetimes must be timezone-aware")
        v = value.astimezone(timezone.utc)
    else:
        v = _parse_datetime(value)
    return v.replace(microsecond=v.microsecond // 1000 * 1000)


# --------------------------------------------------------------------------- schema

@dataclass(frozen=True)
class _Field:
    name: str
    # id | reference | string | textarea | email | picklist | boolean | datetime | date | double
    # | currency
    type: str
    length: int = 0
    updateable: bool = True
    filterable: bool = True
    max_abs: float = 0.0  # numbers: exclusive bound on |value|
    scale: int = 2
    reference_to: str | None = None
    relationship: str | None = None
    label: str = ""

    @property
    def label_text(self) -> str:
        return self.label or self.name.removesuffix("__c").replace("_", " ")


def _ro(name: str, type_: str, **kw: Any) -> _Field:
    return _Field(name, type_, updateable=False, **kw)


_AUDIT = (_ro("CreatedDate", "datetime"), _ro("LastModifiedDate", "datetime"))
_SCHEMA: dict[str, tuple[_Field, ...]] = {
    "Case": (
        _ro("Id", "id"),
        _ro("CaseNumber", "string", length=30),
        _Field("Subject", "string", length=255),
        _Field("Description", "textarea", length=32000, filterable=False),
        _Field("Priority", "picklist", length=40),
        _Field("Status", "picklist", length=40),
        _ro("IsClosed", "boolean"),
        *_AUDIT,
        _Field("ContactId", "reference", reference_to="Contact", relationship="Contact"),
        _Field("AccountId", "reference", reference_to="Account", relationship="Account"),
        _Field("Clout_Score__c", "double", max_abs=1000.0, scale=2),
        _Field("Clout_Tier__c", "string", length=20),
        _Field("Clout_Flags__c", "string", length=255),
        _Field("Clout_Reason__c", "string", length=255),
        _Field("Clout_Priority__c", "string", length=40),
        _Field("Clout_Decision_Id__c", "string", length=40),
    ),
    "Contact": (
        _ro("Id", "id"),
        _ro("Name", "string", length=121),
        _Field("FirstName", "string", length=40),
        _Field("LastName", "string", length=80),
        _Field("Email", "email", length=80),
        _Field("AccountId", "reference", reference_to="Account", relationship="Account"),
        *_AUDIT,
        *(_Field(f, "string", length=255) for f in HANDLE_FIELDS.values()),
    ),
    "Account": (
        _ro("Id", "id"),
        _Field("Name", "string", length=255),
        _Field("Clout_Monthly_Spend__c", "currency", max_abs=1e14, scale=2),
        _Field("CurrencyIsoCode", "picklist", length=3),
        *_AUDIT,
    ),
    "Contract": (
        _ro("Id", "id"),
        _ro("ContractNumber", "string", length=30),
        _Field("AccountId", "reference", reference_to="Account", relationship="Account"),
        _Field("Status", "picklist", length=40),
        _Field("StartDate", "date"),
        _Field("EndDate", "date"),
        *_AUDIT,
    ),
}
_FIELDS: dict[str, dict[str, _Field]] = {
    t: {f.name.lower(): f for f in fs} for t, fs in _SCHEMA.items()}
_RELATIONSHIPS: dict[str, dict[str, _Field]] = {
    t: {f.relationship.lower(): f for f in fs if f.relationship} for t, fs in _SCHEMA.items()}
_TYPES: dict[str, str] = {t.lower(): t for t in _SCHEMA}
_PREFIX = {"Account": "001", "Contact": "003", "Case": "500", "Contract": "800"}
_TYPE_BY_PREFIX = {p: t for t, p in _PREFIX.items()}


# --------------------------------------------------------------------------- errors

_RecordError = dict[str, Any]  # {"statusCode", "message", "fields"}
_Plan = tuple[str | None, str | None, dict[str, Any], list[_RecordError]]


class _ApiError(Exception):
    """A whole-call REST error: HTTP status plus the documented JSON array."""

    def __init__(self, status: int, error_code: str, message: str,
                 fields: list[str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body: list[dict[str, Any]] = [{"message": message, "errorCode": error_code}]
        if fields is not None:
            self.body[0]["fields"] = fields


def _soql_error(query: str, pos: int, code: str, text: str) -> _ApiError:
    """400 with Salesforce's caret-style SOQL message."""
    pos = max(0, min(pos, len(query)))
    row = query.count("\n", 0, pos) + 1
    line_start = query.rfind("\n", 0, pos) + 1
    col = pos - line_start + 1
    line_end = query.find("\n", pos)
    line = query[line_start:] if line_end < 0 else query[line_start:line_end]
    caret = " " * (col - 1) + "^"
    return _ApiError(400, code, f"\n{line}\n{caret}\nERROR at Row:{row}:Column:{col}\n{text}")


# --------------------------------------------------------------------------- SOQL

_TOKEN_RE = re.compile(r"""
    (?P<ws>\s+)
  | (?P<string>'(?:[^'\\]|\\.)*')
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2}))
  | (?P<baddatetime>\d{4}-\d{2}-\d{2}T[^\s,()]*)
  | (?P<date>\d{4}-\d{2}-\d{2}(?![\dT]))
  | (?P<number>-?\d+(?:\.\d+)?(?![\w.-]))
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<op><=|>=|!=|<>|=|<|>)
  | (?P<punct>[,()])
""", re.VERBOSE)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f"}


@dataclass
class _Tok:
    kind: str
    text: str
    pos: int
    value: Any = None


@dataclass
class _Path:
    text: str
    pos: int
    field: _Field
    relationship: _Field | None = None  # the lookup field (e.g. AccountId) for Account.X

    @property
    def owner(self) -> str:
        """The relationship name ("Account" for Account.Name), or "" for a plain field."""
        return (self.relationship.relationship or "") if self.relationship else ""


@dataclass
class _Cond:
    path: _Path
    op: str
    values: list[Any]


@dataclass
class _Query:
    sobject: str
    select: list[_Path]
    where: list[_Cond] = field(default_factory=list)
    order: list[tuple[_Path, bool, bool]] = field(default_factory=list)  # (path, desc, nulls_first)
    limit: int | None = None


_LITERAL_KIND = {"id": "string", "reference": "string", "string": "string", "textarea": "string",
                 "email": "string", "picklist": "string", "boolean": "bool", "datetime": "datetime",
                 "date": "date", "double": "number", "currency": "number"}
_SF_TYPE_NAME = {"id": "id", "reference": "reference", "string": "string", "textarea": "textarea",
                 "email": "email", "picklist": "picklist", "boolean": "boolean",
                 "datetime": "dateTime", "date": "date", "double": "double", "currency": "currency"}


class _Parser:
    def __init__(self, query: str) -> None:
        self.q = query
        self.toks = self._tokenize(query)
        self.i = 0

    def _tokenize(self, q: str) -> list[_Tok]:
        toks: list[_Tok] = []
        pos = 0
        while pos < len(q):
            m = _TOKEN_RE.match(q, pos)
            if not m:
                bad = q[pos:].split(None, 1)[0] if q[pos:].strip() else q[pos]
                raise _soql_error(q, pos, "MALFORMED_QUERY", f"unexpected token: '{bad}'")
            kind = m.lastgroup or ""
            text = m.group()
            if kind != "ws":
                tok = _Tok(kind, text, pos)
                if kind == "baddatetime":
                    raise _soql_error(q, pos, "MALFORMED_QUERY",
                                      f"invalid datetime literal: {text} (use YYYY-MM-DDThh:mm:ssZ "
                                      "or YYYY-MM-DDThh:mm:ss+hh:mm)")
                if kind == "string":
                    tok.value = re.sub(r"\\(.)", lambda e: _ESCAPES.get(e.group(1), e.group(1)),
                                       text[1:-1])
                elif kind == "datetime":
                    tok.value = _parse_datetime(text)
                elif kind == "date":
                    try:
                        tok.value = date.fromisoformat(text)
                    except ValueError:
                        raise _soql_error(q, pos, "MALFORMED_QUERY",
                                          f"invalid date: {text}") from None
                elif kind == "number":
                    tok.value = float(text) if "." in text else int(text)
                toks.append(tok)
            pos = m.end()
        return toks

    # token helpers
    def _peek(self) -> _Tok | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def _unexpected(self, tok: _Tok | None) -> _ApiError:
        if tok is None:
            return _soql_error(self.q, len(self.q), "MALFORMED_QUERY", "unexpected token: <EOF>")
        return _soql_error(self.q, tok.pos, "MALFORMED_QUERY", f"unexpected token: '{tok.text}'")

    def _next(self) -> _Tok:
        tok = self._peek()
        if tok is None:
            raise self._unexpected(None)
        self.i += 1
        return tok

    def _is_kw(self, *words: str) -> bool:
        tok = self._peek()
        return tok is not None and tok.kind == "ident" and tok.text.upper() in words

    def _kw(self, word: str) -> _Tok:
        tok = self._peek()
        if tok is None or tok.kind != "ident" or tok.text.upper() != word:
            raise self._unexpected(tok)
        return self._next()

    def _ident(self) -> _Tok:
        tok = self._next()
        if tok.kind != "ident" or tok.text.upper() in ("SELECT", "FROM", "WHERE", "AND", "OR",
                                                        "ORDER", "BY", "LIMIT", "IN", "NOT"):
            raise self._unexpected(tok)
        return tok

    # grammar
    def parse(self) -> _Query:
        self._kw("SELECT")
        raw_fields = [self._ident()]
        while (t := self._peek()) is not None and t.text == ",":
            self._next()
            raw_fields.append(self._ident())
        self._kw("FROM")
        obj_tok = self._ident()
        sobject = _TYPES.get(obj_tok.text.lower())
        if sobject is None:
            raise _soql_error(
                self.q, obj_tok.pos, "INVALID_TYPE",
                f"sObject type '{obj_tok.text}' is not supported. If you are attempting to use "
                "a custom object, be sure to append the '__c' after the entity name. Please "
                "reference your WSDL or the describe call for the appropriate names.")
        query = _Query(sobject, [])
        seen: set[str] = set()
        for tok in raw_fields:
            path = self._resolve(sobject, tok)
            key = (path.owner + "." + path.field.name).lower()
            if key in seen:
                raise _soql_error(self.q, tok.pos, "MALFORMED_QUERY",
                                  f"duplicate field selected: {tok.text}")
            seen.add(key)
            query.select.append(path)
        if self._is_kw("WHERE"):
            self._next()
            query.where.append(self._cond(sobject))
            while self._is_kw("AND"):
                self._next()
                query.where.append(self._cond(sobject))
        if self._is_kw("ORDER"):
            self._next()
            self._kw("BY")
            while True:
                path = self._resolve(sobject, self._ident())
                if path.field.type == "textarea":
                    raise _soql_error(
                        self.q, path.pos, "INVALID_FIELD",
                        f"field '{path.field.name}' can not be sorted in a query call")
                desc = False
                if self._is_kw("ASC", "DESC"):
                    desc = self._next().text.upper() == "DESC"
                nulls_first = not desc
                if self._is_kw("NULLS"):
                    self._next()
                    if not self._is_kw("FIRST", "LAST"):
                        raise self._unexpected(self._peek())
                    nulls_first = self._next().text.upper() == "FIRST"
                query.order.append((path, desc, nulls_first))
                if (t := self._peek()) is not None and t.text == ",":
                    self._next()
                    continue
                break
        if self._is_kw("LIMIT"):
            self._next()
            tok = self._next()
            if tok.kind != "number" or not isinstance(tok.value, int) or tok.value < 0:
                raise self._unexpected(tok)
            query.limit = tok.value
        if self._peek() is not None:
            raise self._unexpected(self._peek())
        return query

    def _resolve(self, sobject: str, tok: _Tok) -> _Path:
        parts = tok.text.split(".")
        if len(parts) == 1:
            f = _FIELDS[sobject].get(parts[0].lower())
            if f is None:
                raise self._no_column(tok, parts[0], sobject)
            return _Path(tok.text, tok.pos, f)
        rel = _RELATIONSHIPS[sobject].get(parts[0].lower()) if len(parts) == 2 else None
        if rel is None:
            raise _soql_error(
                self.q, tok.pos, "INVALID_FIELD",
                f"Didn't understand relationship '{'.'.join(parts[:-1])}' in field path. "
                "If you are attempting to use a custom relationship, be sure to append the '__r' "
                "after the custom relationship name. Please reference your WSDL or the describe "
                "call for the appropriate names.")
        f = _FIELDS[rel.reference_to or ""].get(parts[1].lower())
        if f is None:
            raise self._no_column(tok, tok.text, rel.reference_to or "")
        return _Path(tok.text, tok.pos, f, rel)

    def _no_column(self, tok: _Tok, name: str, sobject: str) -> _ApiError:
        return _soql_error(
            self.q, tok.pos, "INVALID_FIELD",
            f"No such column '{name}' on entity '{sobject}'. If you are attempting to use a custom "
            "field, be sure to append the '__c' after the custom field name. Please reference your "
            "WSDL or the describe call for the appropriate names.")

    def _cond(self, sobject: str) -> _Cond:
        path = self._resolve(sobject, self._ident())
        f = path.field
        if not f.filterable:
            raise _soql_error(self.q, path.pos, "INVALID_FIELD",
                              f"field '{f.name}' can not be filtered in a query call")
        op_tok = self._next()
        if op_tok.kind == "ident" and op_tok.text.upper() in ("IN", "NOT"):
            op = "IN"
            if op_tok.text.upper() == "NOT":
                self._kw("IN")
                op = "NOT IN"
            tok = self._next()
            if tok.text != "(":
                raise self._unexpected(tok)
            values = [self._literal(path)]
            while (t := self._peek()) is not None and t.text == ",":
                self._next()
                values.append(self._literal(path))
            tok = self._next()
            if tok.text != ")":
                raise self._unexpected(tok)
            if f.type == "boolean":
                raise _soql_error(self.q, op_tok.pos, "INVALID_QUERY_FILTER_OPERATOR",
                                  f"invalid operator on boolean field: {f.name}")
            return _Cond(path, op, values)
        if op_tok.kind != "op":
            raise self._unexpected(op_tok)
        op = "!=" if op_tok.text == "<>" else op_tok.text
        value = self._literal(path)
        if op not in ("=", "!=") and (value is None or f.type in ("boolean", "id", "reference")):
            raise _soql_error(self.q, op_tok.pos, "INVALID_QUERY_FILTER_OPERATOR",
                              f"invalid operator on {_SF_TYPE_NAME[f.type]} field: {f.name}")
        return _Cond(path, op, [value])

    def _literal(self, path: _Path) -> Any:
        tok = self._next()
        f = path.field
        if tok.kind == "ident" and tok.text.lower() in ("true", "false", "null"):
            kind = {"true": "bool", "false": "bool", "null": "null"}[tok.text.lower()]
            value: Any = {"true": True, "false": False, "null": None}[tok.text.lower()]
        elif tok.kind in ("string", "datetime", "date", "number"):
            kind, value = tok.kind, tok.value
        elif tok.kind == "ident":
            raise _soql_error(self.q, tok.pos, "MALFORMED_QUERY",
                              f"unexpected token: '{tok.text}' (date literals and bind variables "
                              "are not supported by the sandbox)")
        else:
            raise self._unexpected(tok)
        if kind == "null":
            return None
        want = _LITERAL_KIND[f.type]
        if kind != want:
            quoted = "be enclosed in quotes" if want == "string" else "not be enclosed in quotes"
            raise _soql_error(self.q, tok.pos, "INVALID_QUERY_FILTER_OPERATOR",
                              f"value of filter criterion for field '{f.name}' must be of type "
                              f"{_SF_TYPE_NAME[f.type]} and should {quoted}")
        if f.type in ("id", "reference"):
            norm = _norm_id(value)
            if norm is None:
                raise _soql_error(self.q, tok.pos, "INVALID_QUERY_FILTER_OPERATOR",
                                  f"invalid ID field: {value}")
            return norm
        return value


def _key(f: _Field, value: Any) -> Any:
    if isinstance(value, str) and f.type not in ("id", "reference"):
        return value.casefold()
    return value


def _matches(f: _Field, actual: Any, op: str, values: list[Any]) -> bool:
    if op in ("IN", "NOT IN"):
        hit = any((actual is None and v is None) or
                  (actual is not None and v is not None and _key(f, actual) == _key(f, v))
                  for v in values)
        return hit if op == "IN" else not hit
    v = values[0]
    if op in ("=", "!="):
        eq = (actual is None and v is None) or (
            actual is not None and v is not None and _key(f, actual) == _key(f, v))
        return eq if op == "=" else not eq
    if actual is None or v is None:
        return False
    a, b = _key(f, actual), _key(f, v)
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


# --------------------------------------------------------------------------- HTTP plumbing

@dataclass
class _Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json;charset=UTF-8"
    headers: dict[str, str] = field(default_factory=dict)


def _json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> _Response:
    return _Response(status, json.dumps(body).encode(), headers=dict(headers or {}))


class _RouteToSandbox(HTTPAdapter):
    """Sends https://login.salesforce.com/... (and test.) to the sandbox instead."""

    def __init__(self, target: str) -> None:
        super().__init__()
        self._target = target

    def send(  # type: ignore[override]
            self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        parts = urlsplit(request.url or "")
        query = f"?{parts.query}" if parts.query else ""
        request.url = self._target + (parts.path or "/") + query
        return super().send(request, **kwargs)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, sandbox: "SalesforceSandbox", context: ssl.SSLContext) -> None:
        self.sandbox = sandbox
        self._context = context
        self._open: set[ssl.SSLSocket] = set()
        self._open_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake runs here, in the request's own thread, so a slow or
        # broken client never stalls the accept loop.
        request.settimeout(30)
        try:
            tls = self._context.wrap_socket(request, server_side=True)
        except OSError:
            return
        with self._open_lock:
            self._open.add(tls)
        try:
            self.RequestHandlerClass(tls, client_address, self)
        finally:
            with self._open_lock:
                self._open.discard(tls)
            tls.close()

    def close_connections(self) -> None:
        with self._open_lock:
            conns = list(self._open)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # quiet: a client that hangs up mid-request is not news


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    server_version = "SalesforceSandbox/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # the stdlib's signature
        pass

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        resp = self.server.sandbox._dispatch(self.command, self.path, self.headers, body)
        self.send_response(resp.status)
        self.send_header("Content-Type", resp.content_type)
        for name, value in resp.headers.items():
            self.send_header(name, value)
        if resp.status != 204:
            self.send_header("Content-Length", str(len(resp.body)))
        self.end_headers()
        if resp.status != 204 and self.command != "HEAD":
            self.wfile.write(resp.body)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = do_HEAD = _handle


# --------------------------------------------------------------------------- the sandbox

class SalesforceSandbox:
    """An in-memory org served over HTTPS on 127.0.0.1 (see the module docstring)."""

    def __init__(self, *, org_id: str = "00D5g00000CLOUTAAA", api_version: str = "59.0",
                 page_size: int = 200, api_total: int = 15000) -> None:
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        self.org_id = org_id
        self.api_version = api_version
        self.page_size = page_size
        self.api_total = api_total
        self.api_used = 0
        # credentials the org accepts
        self.username = "clout@sandbox.example.com"
        self.password = "sandbox-password"
        self.security_token = "SANDBOXTOKEN0123456789"
        self.consumer_key = "3MVG9SANDBOX.clout.consumer.key"
        self.consumer_secret = "sandbox-consumer-secret"
        self.user_id = _to18("0055g00000CLOUT")
        # Case.Priority is a restricted picklist with these values (None: any value).
        self.case_priorities: tuple[str, ...] | None = ("High", "Medium", "Low")
        # the org's clock (replace to control time); timestamps never repeat
        self.clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)

        self.calls: list[Call] = []
        self.url = ""
        self.ca_path = ""
        self._lock = threading.RLock()
        self._records: dict[str, dict[str, dict[str, Any]]] = {t: {} for t in _SCHEMA}
        self._serial = itertools.count(1)
        self._case_numbers = itertools.count(1001)
        self._contract_numbers = itertools.count(100)
        self._cursor_serial = itertools.count(1)
        self._cursors: dict[str, list[dict[str, Any]]] = {}
        self._sessions: set[str] = set()
        self._fail_queue: list[tuple[int, str, str]] = []
        self._fail_records: dict[str, list[tuple[str, str]]] = {}
        self._last_stamp: datetime | None = None
        self._action_id = self._new_id("04k")
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle
    def start(self) -> "SalesforceSandbox":
        """Serve HTTPS on 127.0.0.1:<free port> from a daemon thread."""
        import trustme  # only the sandbox needs it

        if self._server is not None:
            raise RuntimeError("the sandbox is already started")
        ca = trustme.CA(organization_name="Clout Salesforce sandbox")
        cert = ca.issue_cert("127.0.0.1", "localhost", *LOGIN_HOSTS)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cert.configure_cert(context)
        fd, path = tempfile.mkstemp(prefix="clout-sf-sandbox-ca-", suffix=".pem")
        with os.fdopen(fd, "wb") as fh:
            fh.write(ca.cert_pem.bytes())
        self.ca_path = path
        self._server = _Server(self, context)
        self.url = f"https://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name="salesforce-sandbox", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, drop open connections and remove the CA file. Safe to call twice."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.close_connections()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self.ca_path:
            try:
                os.unlink(self.ca_path)
            except FileNotFoundError:
                pass

    def __enter__(self) -> "SalesforceSandbox":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def session(self) -> requests.Session:
        """A Session that trusts only the sandbox CA and sends the login hosts here."""
        if not self.url:
            raise RuntimeError("start() the sandbox first")
        s = requests.Session()
        s.trust_env = False
        s.verify = self.ca_path
        for host in LOGIN_HOSTS:
            s.mount(f"https://{host}/", _RouteToSandbox(self.url))
        return s

    def reset_calls(self) -> None:
        with self._lock:
            self.calls.clear()

    # ---- ids and time
    def _new_id(self, prefix: str) -> str:
        return _to18(f"{prefix}5g000{next(self._serial):07d}")

    def _stamp(self) -> datetime:
        """Now, to the millisecond, strictly after every stamp handed out before."""
        now = _coerce_datetime(self.clock())
        with self._lock:
            if self._last_stamp is not None and now <= self._last_stamp:
                now = self._last_stamp + timedelta(milliseconds=1)
            self._last_stamp = now
        return now

    @staticmethod
    def _check_ref(value: str | None, sobject: str, what: str) -> str | None:
        if value is None:
            return None
        norm = _norm_id(value)
        if norm is None or not norm.startswith(_PREFIX[sobject]):
            raise ValueError(f"{what} is not a {sobject} id: {value!r}")
        return norm

    # ---- org data
    def add_account(self, name: str, monthly_spend: float | None = None,
                    currency: str | None = None) -> str:
        with self._lock:
            rid = self._new_id(_PREFIX["Account"])
            now = self._stamp()
            self._records["Account"][rid] = {
                "Id": rid, "Name": name,
                "Clout_Monthly_Spend__c":
                    None if monthly_spend is None else round(float(monthly_spend), 2),
                "CurrencyIsoCode": currency, "CreatedDate": now, "LastModifiedDate": now}
            return rid

    def add_contact(self, name: str, email: str | None, account_id: str | None,
                    handles: dict[str, str] | None = None) -> str:
        fields: dict[str, Any] = {f: None for f in HANDLE_FIELDS.values()}
        for network, handle in (handles or {}).items():
            try:
                fields[HANDLE_FIELDS[network.lower()]] = handle
            except KeyError:
                raise ValueError(f"unknown network {network!r}; "
                                 f"known: {', '.join(HANDLE_FIELDS)}") from None
        first, _, last = name.rpartition(" ")
        with self._lock:
            rid = self._new_id(_PREFIX["Contact"])
            now = self._stamp()
            self._records["Contact"][rid] = {
                "Id": rid, "FirstName": first or None, "LastName": last, "Email": email,
                "AccountId": self._check_ref(account_id, "Account", "account_id"),
                "CreatedDate": now, "LastModifiedDate": now, **fields}
            return rid

    def add_contract(self, account_id: str, end_date: str, status: str = "Activated") -> str:
        end = date.fromisoformat(end_date)
        with self._lock:
            rid = self._new_id(_PREFIX["Contract"])
            now = self._stamp()
            self._records["Contract"][rid] = {
                "Id": rid, "ContractNumber": f"{next(self._contract_numbers):08d}",
                "AccountId": self._check_ref(account_id, "Account", "account_id"),
                "Status": status, "StartDate": None, "EndDate": end,
                "CreatedDate": now, "LastModifiedDate": now}
            return rid

    def add_case(self, subject: str, description: str = "", priority: str = "Medium",
                 status: str = "New", contact_id: str | None = None,
                 account_id: str | None = None) -> str:
        with self._lock:
            rid = self._new_id(_PREFIX["Case"])
            now = self._stamp()
            rec: dict[str, Any] = {f.name: None for f in _SCHEMA["Case"]}
            rec.update({
                "Id": rid, "CaseNumber": f"{next(self._case_numbers):08d}", "Subject": subject,
                "Description": description or None, "Priority": priority, "Status": status,
                "CreatedDate": now, "LastModifiedDate": now,
                "ContactId": self._check_ref(contact_id, "Contact", "contact_id"),
                "AccountId": self._check_ref(account_id, "Account", "account_id")})
            rec.pop("IsClosed", None)  # derived from Status
            self._records["Case"][rid] = rec
            return rid

    def update_case(self, case_id: str, **fields: Any) -> None:
        """Change a Case as an agent or admin would (no API call is logged or counted).

        Any Case field but Id/IsClosed; bumps LastModifiedDate unless it is given.
        CreatedDate/LastModifiedDate take aware datetimes or ISO 8601 strings."""
        with self._lock:
            rec = self._case_record(case_id)
            changes: dict[str, Any] = {}
            for name, value in fields.items():
                f = _FIELDS["Case"].get(name.lower())
                if f is None or f.name != name:
                    raise ValueError(f"no such Case field: {name!r}")
                if f.name in ("Id", "IsClosed"):
                    raise ValueError(f"{f.name} cannot be set (IsClosed follows Status)")
                if f.type == "datetime":
                    value = _coerce_datetime(value)
                elif f.type == "reference" and value is not None:
                    value = self._check_ref(value, f.reference_to or "", f.name)
                changes[f.name] = value
            if "LastModifiedDate" not in changes:
                changes["LastModifiedDate"] = self._stamp()
            rec.update(changes)

    def case(self, case_id: str) -> dict[str, Any]:
        """The Case's current fields, as REST renders them (dates as strings, IsClosed bool)."""
        with self._lock:
            rec = self._case_record(case_id)
            return {f.name: self._json_value(f, self._value("Case", rec, f))
                    for f in _SCHEMA["Case"]}

    def _case_record(self, case_id: str) -> dict[str, Any]:
        rid = _norm_id(case_id)
        rec = self._records["Case"].get(rid or "")
        if rec is None:
            raise KeyError(f"no such Case: {case_id!r}")
        return rec

    # ---- outbound messages (A2)
    def outbound_message(self, case_ids: list[str], *, notification_ids: list[str] | None = None,
                         org_id: str | None = None) -> bytes:
        """The SOAP 1.1 body Salesforce's Outbound Message would POST for these Cases."""
        if not case_ids:
            raise ValueError("an outbound message carries 1 to 100 notifications")
        if len(case_ids) > MAX_NOTIFICATIONS:
            raise ValueError(f"an outbound message carries at most {MAX_NOTIFICATIONS} "
                             f"notifications, not {len(case_ids)}")
        if notification_ids is not None and len(notification_ids) != len(case_ids):
            raise ValueError("notification_ids must match case_ids one to one")
        org = self.org_id if org_id is None else org_id
        soap_base = _text(self.url or "https://127.0.0.1") + "/services/Soap"
        org15 = _text(org[:15])
        with self._lock:
            cases = [self._case_record(cid) for cid in case_ids]
            note_ids = list(notification_ids) if notification_ids is not None else [
                self._new_id("04l") for _ in case_ids]
            out = ['<?xml version="1.0" encoding="UTF-8"?>',
                   f'<soapenv:Envelope xmlns:soapenv="{SOAPENV_NS}" xmlns:xsi="{XSI_NS}">',
                   " <soapenv:Body>",
                   f'  <notifications xmlns="{OUTBOUND_NS}">',
                   f"   <OrganizationId>{_text(org)}</OrganizationId>",
                   f"   <ActionId>{self._action_id}</ActionId>",
                   '   <SessionId xsi:nil="true"/>',
                   f"   <EnterpriseUrl>{soap_base}/c/{self.api_version}/{org15}</EnterpriseUrl>",
                   f"   <PartnerUrl>{soap_base}/u/{self.api_version}/{org15}</PartnerUrl>"]
            for note_id, rec in zip(note_ids, cases, strict=True):
                out += ["   <Notification>",
                        f"    <Id>{_text(note_id)}</Id>",
                        f'    <sObject xsi:type="sf:Case" xmlns:sf="{SOBJECT_NS}">',
                        f"     <sf:Id>{rec['Id']}</sf:Id>"]
                for name in OUTBOUND_CASE_FIELDS:
                    value = self._value("Case", rec, _FIELDS["Case"][name.lower()])
                    if value is None or value == "":
                        continue
                    if isinstance(value, bool):
                        text = "true" if value else "false"
                    elif isinstance(value, datetime):
                        text = _fmt_soap(value)
                    else:
                        text = str(value)
                    out.append(f"     <sf:{name}>{_text(text)}</sf:{name}>")
                out += ["    </sObject>", "   </Notification>"]
            out += ["  </notifications>", " </soapenv:Body>", "</soapenv:Envelope>", ""]
        return "\n".join(out).encode("utf-8")

    # ---- auth
    def issue_session(self) -> str:
        sid = f"{self.org_id[:15]}!{secrets.token_urlsafe(48)}"
        with self._lock:
            self._sessions.add(sid)
        return sid

    def expire_sessions(self) -> None:
        with self._lock:
            self._sessions.clear()

    # ---- fault injection
    def fail_next(self, n: int, status: int, error_code: str, message: str) -> None:
        """The next n /services/data calls answer `status` with [{"message", "errorCode"}]."""
        with self._lock:
            self._fail_queue.extend([(status, error_code, message)] * n)

    def fail_record(self, case_id: str, status_code: str, message: str, times: int = 1) -> None:
        """The record fails (statusCode/message) in the next `times` composite/sobjects writes."""
        rid = _norm_id(case_id)
        if rid is None:
            raise ValueError(f"not a Salesforce id: {case_id!r}")
        with self._lock:
            self._fail_records.setdefault(rid, []).extend([(status_code, message)] * times)

    # ---- field values
    def _value(self, sobject: str, rec: Mapping[str, Any], f: _Field) -> Any:
        if sobject == "Case" and f.name == "IsClosed":
            return rec.get("Status") == "Closed"
        if sobject == "Contact" and f.name == "Name":
            return " ".join(p for p in (rec.get("FirstName"), rec.get("LastName")) if p) or None
        return rec.get(f.name)

    @staticmethod
    def _json_value(f: _Field, value: Any) -> Any:
        if value is None:
            return None
        if f.type == "datetime":
            return _fmt_rest(value)
        if f.type == "date":
            return value.isoformat()
        return value

    def _path_value(self, sobject: str, rec: Mapping[str, Any], path: _Path) -> Any:
        if path.relationship is None:
            return self._value(sobject, rec, path.field)
        target_type = path.relationship.reference_to or ""
        target = self._records[target_type].get(rec.get(path.relationship.name) or "")
        return None if target is None else self._value(target_type, target, path.field)

    def _attributes(self, sobject: str, rid: str, ver: str) -> dict[str, str]:
        return {"type": sobject, "url": f"/services/data/v{ver}/sobjects/{sobject}/{rid}"}

    def _render(self, query: _Query, rec: Mapping[str, Any], ver: str) -> dict[str, Any]:
        out: dict[str, Any] = {"attributes": self._attributes(query.sobject, rec["Id"], ver)}
        for path in query.select:
            if path.relationship is None:
                value = self._value(query.sobject, rec, path.field)
                out[path.field.name] = self._json_value(path.field, value)
                continue
            rel_name = path.owner
            target_type = path.relationship.reference_to or ""
            target = self._records[target_type].get(rec.get(path.relationship.name) or "")
            if target is None:
                out[rel_name] = None
                continue
            nested = out.get(rel_name)
            if nested is None:
                nested = out[rel_name] = {
                    "attributes": self._attributes(target_type, target["Id"], ver)}
            value = self._value(target_type, target, path.field)
            nested[path.field.name] = self._json_value(path.field, value)
        return out

    # ---- dispatch (runs in the server's request threads)
    def _dispatch(self, method: str, raw_path: str, headers: Mapping[str, str],
                  body: bytes) -> _Response:
        split = urlsplit(raw_path)
        path = split.path
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        ctype = (headers.get("Content-Type") or "").lower()
        with self._lock:
            try:
                if path == "/services/data" or path.startswith("/services/data/"):
                    resp = self._rest(method, path, query, headers, body)
                elif re.fullmatch(r"/services/Soap/u/\d+\.\d+/?", path):
                    resp = self._soap_login(method, body)
                elif path.rstrip("/") == "/services/oauth2/token":
                    resp = self._oauth_token(method, body)
                else:
                    raise _ApiError(404, "NOT_FOUND", "The requested resource does not exist")
            except _ApiError as e:
                resp = _json_response(e.status, e.body)
            except Exception as e:  # a sandbox bug: answer like an org's 500, never hang up
                resp = _json_response(500, _unexpected(e))
            logged = _logged_body(path, ctype, body)
            self.calls.append(Call(method, path, query, logged, resp.status))
        return resp

    def _rest(self, method: str, path: str, query: dict[str, str], headers: Mapping[str, str],
              body: bytes) -> _Response:
        self.api_used += 1
        limit = {"Sforce-Limit-Info": f"api-usage={self.api_used}/{self.api_total}"}
        try:
            resp = self._rest_inner(method, path, query, headers, body)
        except _ApiError as e:
            resp = _json_response(e.status, e.body)
        except Exception as e:  # a sandbox bug: answer like an org's 500, never hang up
            resp = _json_response(500, _unexpected(e))
        resp.headers.update(limit)
        return resp

    def _rest_inner(self, method: str, path: str, query: dict[str, str], headers: Mapping[str, str],
                    body: bytes) -> _Response:
        if self._fail_queue:
            status, code, message = self._fail_queue.pop(0)
            raise _ApiError(status, code, message)
        auth = headers.get("Authorization") or ""
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        if token not in self._sessions:
            raise _ApiError(401, "INVALID_SESSION_ID", "Session expired or invalid")
        if self.api_used > self.api_total:
            raise _ApiError(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
        m = re.fullmatch(r"/services/data/v(\d+\.\d+)(/.*)?", path)
        if not m:
            raise _ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        ver, sub = m.group(1), (m.group(2) or "/").rstrip("/") or "/"
        parts = sub.strip("/").split("/")

        if parts[0] in ("query", "queryAll") and len(parts) <= 2:
            self._allow(method, "GET")
            if len(parts) == 2:
                return self._query_more(parts[1], ver)
            if "q" not in query:
                raise _ApiError(400, "MALFORMED_QUERY", "A query string has to be specified")
            return self._query(query["q"], ver)
        if parts == ["composite", "sobjects"]:
            self._allow(method, "PATCH")
            return self._collections_update(_json_body(body))
        if parts[0] == "sobjects" and len(parts) == 3:
            sobject = _TYPES.get(parts[1].lower())
            if sobject is None:
                raise _ApiError(404, "NOT_FOUND", "The requested resource does not exist")
            if parts[2] == "describe":
                self._allow(method, "GET")
                return _json_response(200, self._describe(sobject, ver))
            self._allow(method, "GET", "PATCH")
            if method == "GET":
                return self._get_record(sobject, parts[2], query, ver)
            return self._patch_record(sobject, parts[2], _json_body(body))
        if parts == ["limits"]:
            self._allow(method, "GET")
            return _json_response(200, {
                "DailyApiRequests": {"Max": self.api_total,
                                     "Remaining": max(0, self.api_total - self.api_used)},
                "DailyBulkV2QueryJobs": {"Max": 10000, "Remaining": 10000},
                "DailyAsyncApexExecutions": {"Max": 250000, "Remaining": 250000}})
        raise _ApiError(404, "NOT_FOUND", "The requested resource does not exist")

    @staticmethod
    def _allow(method: str, *allowed: str) -> None:
        if method not in allowed:
            raise _ApiError(405, "METHOD_NOT_ALLOWED",
                            f"HTTP Method '{method}' not allowed. Allowed are {','.join(allowed)}")

    # ---- SOQL
    def _query(self, soql: str, ver: str) -> _Response:
        q = _Parser(soql).parse()
        def value(rec: Mapping[str, Any], path: _Path) -> Any:
            return self._path_value(q.sobject, rec, path)

        rows = [r for r in self._records[q.sobject].values()
                if all(_matches(c.path.field, value(r, c.path), c.op, c.values) for c in q.where)]
        for path, desc, nulls_first in reversed(q.order):
            nulls = [r for r in rows if value(r, path) is None]
            rest = [r for r in rows if value(r, path) is not None]
            rest.sort(key=lambda r, p=path: _key(p.field, value(r, p)), reverse=desc)
            rows = nulls + rest if nulls_first else rest + nulls
        if q.limit is not None:
            rows = rows[:q.limit]
        records = [self._render(q, r, ver) for r in rows]
        if len(records) <= self.page_size:
            return _json_response(200, {"totalSize": len(records), "done": True,
                                        "records": records})
        locator = f"01gSANDBOX{next(self._cursor_serial)}"
        self._cursors[locator] = records
        while len(self._cursors) > 100:  # keep the newest cursors only, as an org limits open ones
            self._cursors.pop(next(iter(self._cursors)))
        return self._page(locator, 0, ver)

    def _page(self, locator: str, offset: int, ver: str) -> _Response:
        records = self._cursors[locator]
        end = offset + self.page_size
        body: dict[str, Any] = {"totalSize": len(records), "done": end >= len(records)}
        if end < len(records):
            body["nextRecordsUrl"] = f"/services/data/v{ver}/query/{locator}-{end}"
        body["records"] = records[offset:end]
        return _json_response(200, body)

    def _query_more(self, cursor: str, ver: str) -> _Response:
        m = re.fullmatch(r"(01gSANDBOX\d+)-(\d+)", cursor)
        if (not m or m.group(1) not in self._cursors
                or int(m.group(2)) > len(self._cursors[m.group(1)])):
            raise _ApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        return self._page(m.group(1), int(m.group(2)), ver)

    # ---- writes
    def _validate_fields(self, sobject: str,
                         fields: Mapping[str, Any]) -> tuple[dict[str, Any], list[_RecordError]]:
        """(changes, errors) for a record's fields; errors use the collection shape."""
        changes: dict[str, Any] = {}
        errors: list[_RecordError] = []

        def fail(code: str, message: str, name: str) -> None:
            errors.append({"statusCode": code, "message": message, "fields": [name]})

        for name, value in fields.items():
            f = _FIELDS[sobject].get(name.lower())
            if f is None:
                fail("INVALID_FIELD", f"No such column '{name}' on sobject of type {sobject}", name)
                continue
            if not f.updateable:
                fail("INVALID_FIELD_FOR_INSERT_UPDATE",
                     f"Unable to create/update fields: {f.name}. Please check the security "
                     "settings of this field and verify that it is read/write for your profile "
                     "or permission set.", f.name)
                continue
            if value is None or value == "":
                changes[f.name] = None
                continue
            label = f.label_text
            if f.type in ("string", "textarea", "email", "picklist"):
                if not isinstance(value, str):
                    value = json.dumps(value) if isinstance(value, bool) else str(value)
                if len(value) > f.length:
                    fail("STRING_TOO_LONG", f"{label}: data value too large: {value[:40]} "
                         f"(max length={f.length})", f.name)
                    continue
                if sobject == "Case" and f.name == "Priority" and self.case_priorities is not None \
                        and value not in self.case_priorities:
                    fail("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                         f"{label}: bad value for restricted picklist field: {value}", f.name)
                    continue
            elif f.type in ("double", "currency"):
                try:
                    number = None if isinstance(value, bool) else round(float(value), f.scale)
                except (TypeError, ValueError):
                    number = None
                if number is None:
                    fail("INVALID_TYPE_ON_FIELD_IN_RECORD",
                         f"{label}: value not of required type: {value}", f.name)
                    continue
                value = number
                if abs(value) >= f.max_abs:
                    fail("NUMBER_OUTSIDE_VALID_RANGE",
                         f"{label}: value outside of valid range on numeric field: {value}", f.name)
                    continue
            elif f.type == "reference":
                norm = _norm_id(value)
                if norm is None or not norm.startswith(_PREFIX[f.reference_to or ""]):
                    fail("MALFORMED_ID", f"{label}: id value of incorrect type: {value}", f.name)
                    continue
                value = norm
            elif f.type == "date":
                try:
                    value = date.fromisoformat(str(value))
                except ValueError:
                    fail("INVALID_TYPE_ON_FIELD_IN_RECORD",
                         f"{label}: value not of required type: {value}", f.name)
                    continue
            changes[f.name] = value
        return changes, errors

    def _collections_update(self, body: Any) -> _Response:
        if not isinstance(body, dict) or not isinstance(body.get("records"), list):
            raise _ApiError(400, "JSON_PARSER_ERROR", "Cannot deserialize the request: expected "
                            "an object with a 'records' array")
        all_or_none = body.get("allOrNone", False)
        if not isinstance(all_or_none, bool):
            raise _ApiError(400, "JSON_PARSER_ERROR", "allOrNone must be true or false")
        records = body["records"]
        if len(records) > MAX_COLLECTION_RECORDS:
            raise _ApiError(400, "EXCEEDED_ID_LIMIT", "record limit reached. cannot submit more "
                            "than 200 records into this call", fields=[])
        plans = [self._plan_update(rec) for rec in records]
        failed = any(errs for *_, errs in plans)
        results: list[dict[str, Any]] = []
        for sobject, rid, changes, errs in plans:
            if errs:
                results.append({"id": rid, "success": False, "errors": errs})
            elif all_or_none and failed:
                results.append({"id": rid, "success": False, "errors": [{
                    "statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                    "message": "Record rolled back because not all records were valid and the "
                               "request was using AllOrNone header", "fields": []}]})
            else:
                self._apply(sobject or "", rid or "", changes)
                results.append({"id": rid, "success": True, "errors": []})
        return _json_response(200, results)

    def _plan_update(self, rec: Any) -> _Plan:
        """(sobject, id, changes, errors) for one record of a collection update."""
        def err(code: str, message: str, fields: list[str] | None = None,
                rid: str | None = None) -> _Plan:
            return None, rid, {}, [{"statusCode": code, "message": message, "fields": fields or []}]

        if not isinstance(rec, dict):
            return err("JSON_PARSER_ERROR", "each record must be a JSON object")
        attrs = rec.get("attributes")
        raw_id = rec.get("id", rec.get("Id"))
        shown_id = raw_id if isinstance(raw_id, str) else None
        type_name = attrs.get("type") if isinstance(attrs, dict) else None
        sobject = _TYPES.get(type_name.lower()) if isinstance(type_name, str) else None
        if sobject is None:
            return err("INVALID_TYPE", "Must specify a supported sObject type in attributes.type",
                       rid=shown_id)
        if raw_id is None:
            return err("MISSING_ARGUMENT", "Id not specified in an update call")
        rid = _norm_id(raw_id)
        if rid is None or not rid.startswith(_PREFIX[sobject]):
            return err("MALFORMED_ID", f"{sobject} ID: id value of incorrect type: {raw_id}",
                       ["Id"], shown_id)
        if rid not in self._records[sobject]:
            return err("ENTITY_IS_DELETED", "entity is deleted", [], rid)
        injected = self._fail_records.get(rid)
        if injected:
            code, message = injected.pop(0)
            if not injected:
                del self._fail_records[rid]
            return err(code, message, [], rid)
        fields = {k: v for k, v in rec.items() if k not in ("attributes", "id", "Id")}
        changes, errors = self._validate_fields(sobject, fields)
        return sobject, rid, changes, errors

    def _apply(self, sobject: str, rid: str, changes: Mapping[str, Any]) -> None:
        rec = self._records[sobject][rid]
        rec.update(changes)
        rec["LastModifiedDate"] = self._stamp()

    def _record_for_url(self, sobject: str, raw_id: str) -> str:
        rid = _norm_id(raw_id)
        if rid is None or not rid.startswith(_PREFIX[sobject]):
            raise _ApiError(400, "MALFORMED_ID",
                            f"{sobject} ID: id value of incorrect type: {raw_id}", fields=["Id"])
        if rid not in self._records[sobject]:
            raise _ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        return rid

    def _get_record(self, sobject: str, raw_id: str, query: Mapping[str, str],
                    ver: str) -> _Response:
        rid = self._record_for_url(sobject, raw_id)
        rec = self._records[sobject][rid]
        wanted = list(_SCHEMA[sobject])
        if query.get("fields"):
            wanted = []
            for name in query["fields"].split(","):
                f = _FIELDS[sobject].get(name.strip().lower())
                if f is None:
                    raise _ApiError(400, "INVALID_FIELD",
                                    f"No such column '{name.strip()}' on sobject of type {sobject}")
                wanted.append(f)
        out: dict[str, Any] = {"attributes": self._attributes(sobject, rid, ver)}
        for f in wanted:
            out[f.name] = self._json_value(f, self._value(sobject, rec, f))
        return _json_response(200, out)

    def _patch_record(self, sobject: str, raw_id: str, body: Any) -> _Response:
        rid = self._record_for_url(sobject, raw_id)
        if not isinstance(body, dict):
            raise _ApiError(400, "JSON_PARSER_ERROR", "The request body must be a JSON object")
        fields = {k: v for k, v in body.items() if k != "attributes"}
        changes, errors = self._validate_fields(sobject, fields)
        if errors:
            first = errors[0]
            raise _ApiError(400, first["statusCode"], first["message"], fields=first["fields"])
        self._apply(sobject, rid, changes)
        return _Response(204, content_type="application/json;charset=UTF-8")

    def _describe(self, sobject: str, ver: str) -> dict[str, Any]:
        fields = []
        for f in _SCHEMA[sobject]:
            entry: dict[str, Any] = {
                "name": f.name, "label": f.label_text, "type": _SF_TYPE_NAME[f.type],
                "length": f.length, "updateable": f.updateable, "filterable": f.filterable,
                "nillable": f.name not in ("Id", "IsClosed", "CreatedDate", "LastModifiedDate"),
                "referenceTo": [f.reference_to] if f.reference_to else [],
                "relationshipName": f.relationship, "picklistValues": []}
            if sobject == "Case" and f.name == "Priority" and self.case_priorities:
                entry["restrictedPicklist"] = True
                entry["picklistValues"] = [
                    {"value": v, "label": v, "active": True, "defaultValue": v == "Medium"}
                    for v in self.case_priorities]
            fields.append(entry)
        return {"name": sobject, "keyPrefix": _PREFIX[sobject], "updateable": True,
                "queryable": True,
                "urls": {"sobject": f"/services/data/v{ver}/sobjects/{sobject}"}, "fields": fields}

    # ---- login flows
    def _login_ok(self, session_id: str) -> None:
        self._sessions.add(session_id)

    def _soap_login(self, method: str, body: bytes) -> _Response:
        if method != "POST":
            return _soap_fault("soapenv:Client", "UNKNOWN_EXCEPTION", "login must be a POST",
                               status=405)
        text = body.decode("utf-8", "replace")
        if "<!DOCTYPE" in text.upper() or "<!ENTITY" in text.upper():
            return _soap_fault("soapenv:Client", "INVALID_SOAP_HEADER", "DTDs are not allowed")
        try:
            root = ET.fromstring(body)
        except ET.ParseError:
            return _soap_fault("soapenv:Client", "UNKNOWN_EXCEPTION",
                               "Unable to parse the login request")

        def find(local: str) -> str | None:
            for el in root.iter():
                if el.tag in (local, f"{{{PARTNER_NS}}}{local}"):
                    return el.text or ""
            return None

        username, password, org = find("username"), find("password"), find("organizationId")
        ok = username == self.username and (
            password == self.password + self.security_token
            or (org is not None and org[:15] == self.org_id[:15] and password == self.password))
        if not ok:
            return _soap_fault("sf:INVALID_LOGIN", "INVALID_LOGIN",
                               "Invalid username, password, security token; or user locked out.")
        sid = self.issue_session()
        soap = f"{self.url}/services/Soap"
        org15, user = _text(self.org_id[:15]), _text(self.username)
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            f'<soapenv:Envelope xmlns:soapenv="{SOAPENV_NS}" xmlns="{PARTNER_NS}" '
            f'xmlns:xsi="{XSI_NS}"><soapenv:Body><loginResponse><result>'
            f"<metadataServerUrl>{soap}/m/{self.api_version}/{org15}</metadataServerUrl>"
            "<passwordExpired>false</passwordExpired><sandbox>false</sandbox>"
            f"<serverUrl>{soap}/u/{self.api_version}/{org15}</serverUrl>"
            f"<sessionId>{sid}</sessionId><userId>{self.user_id}</userId>"
            "<userInfo>"
            f"<organizationId>{_text(self.org_id)}</organizationId>"
            "<organizationName>Clout Sandbox Org</organizationName>"
            f"<userEmail>{user}</userEmail><userFullName>Clout Integration</userFullName>"
            f"<userId>{self.user_id}</userId><userName>{user}</userName>"
            "</userInfo></result></loginResponse></soapenv:Body></soapenv:Envelope>")
        return _Response(200, xml.encode(), content_type="text/xml;charset=UTF-8")

    def _oauth_token(self, method: str, body: bytes) -> _Response:
        def oauth_error(error: str, description: str, status: int = 400) -> _Response:
            return _json_response(status, {"error": error, "error_description": description})

        if method != "POST":
            return oauth_error("invalid_request", "must use HTTP POST", 405)
        form = _form(body.decode("utf-8", "replace"))
        grant = form.get("grant_type")
        if grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            claims = _jwt_claims(form.get("assertion", ""))
            if claims is None:
                return oauth_error("invalid_grant", "invalid assertion")
            if claims.get("iss") != self.consumer_key:
                return oauth_error("invalid_client_id", "client identifier invalid")
            if claims.get("aud") not in (*(f"https://{h}" for h in LOGIN_HOSTS), self.url):
                return oauth_error("invalid_grant", "audience is invalid")
            try:
                if "exp" in claims and float(claims["exp"]) < time.time():
                    return oauth_error("invalid_grant", "expired authorization code")
            except (TypeError, ValueError):
                return oauth_error("invalid_grant", "invalid assertion")
            if claims.get("sub") != self.username:
                return oauth_error("invalid_grant", "user hasn't approved this consumer")
        elif grant == "password":
            if (form.get("client_id") != self.consumer_key
                    or form.get("client_secret") != self.consumer_secret):
                return oauth_error("invalid_client_id", "client identifier invalid")
            if form.get("username") != self.username or form.get("password") not in (
                    self.password + self.security_token, self.password):
                return oauth_error("invalid_grant", "authentication failure")
        else:
            return oauth_error("unsupported_grant_type", "grant type not supported")
        sid = self.issue_session()
        return _json_response(200, {
            "access_token": sid, "scope": "api", "instance_url": self.url,
            "id": f"https://login.salesforce.com/id/{self.org_id}/{self.user_id}",
            "token_type": "Bearer", "issued_at": str(int(time.time() * 1000))})


# --------------------------------------------------------------------------- helpers

_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _text(value: str) -> str:
    """XML-escaped text, without the characters XML 1.0 cannot carry."""
    return _xml_escape(_XML_INVALID.sub("", value), {'"': "&quot;"})


def _soap_fault(faultcode: str, exception_code: str, message: str, status: int = 500) -> _Response:
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<soapenv:Envelope xmlns:soapenv="{SOAPENV_NS}" '
        f'xmlns:sf="urn:fault.partner.soap.sforce.com" xmlns:xsi="{XSI_NS}">'
        "<soapenv:Body><soapenv:Fault>"
        f"<faultcode>{faultcode}</faultcode>"
        f"<faultstring>{exception_code}: {_text(message)}</faultstring>"
        '<detail><sf:LoginFault xsi:type="sf:LoginFault">'
        f"<sf:exceptionCode>{exception_code}</sf:exceptionCode>"
        f"<sf:exceptionMessage>{_text(message)}</sf:exceptionMessage>"
        "</sf:LoginFault></detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>")
    return _Response(status, xml.encode(), content_type="text/xml;charset=UTF-8")


def _jwt_claims(assertion: str) -> dict[str, Any] | None:
    """The payload of a well-formed JWT (header names an alg; signature present, not checked)."""
    parts = assertion.split(".")
    if len(parts) != 3 or not all(parts):
        return None
    try:
        header, payload = (json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))
                           for p in parts[:2])
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(header, dict) or not header.get("alg") or not isinstance(payload, dict):
        return None
    return payload


def _unexpected(exc: Exception) -> list[dict[str, Any]]:
    message = f"An unexpected error occurred in the sandbox: {type(exc).__name__}: {exc}"
    return [{"errorCode": "UNKNOWN_EXCEPTION", "message": message}]


def _form(text: str) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(text, keep_blank_values=True).items()}


def _json_body(body: bytes) -> Any:
    if not body:
        raise _ApiError(400, "JSON_PARSER_ERROR", "The request body is empty")
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise _ApiError(400, "JSON_PARSER_ERROR",
                        f"Unexpected character in the request body: {e}") from None


def _logged_body(path: str, ctype: str, body: bytes) -> Any:
    """The body as the call log keeps it: JSON/form parsed, login secrets masked."""
    if not body:
        return None
    text = body.decode("utf-8", "replace")
    if "json" in ctype:
        try:
            return json.loads(text)
        except ValueError:
            return text
    if "x-www-form-urlencoded" in ctype:
        form = _form(text)
        for secret in ("password", "client_secret"):
            if secret in form:
                form[secret] = "***"
        return form
    if path.startswith("/services/Soap/"):
        return re.sub(r"(<(?:\w+:)?password>).*?(</(?:\w+:)?password>)", r"\1***\2", text,
                      flags=re.DOTALL)
    return text
