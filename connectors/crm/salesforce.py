"""The `salesforce` desk: Cases in a Salesforce org, over its REST API (simple-salesforce).

Customers are Contacts (ids 003...) or, for a Case without a contact, Accounts
(001...); spend and currency come from the Account, the contract end from the
account's latest Activated Contract. Decisions are written with sObject
Collections (one PATCH per 200 Cases, `allOrNone: false`, so one bad record
never blocks the others), and the Clout markers (Clout_Priority__c,
Clout_Decision_Id__c) let the glue recognise agent overrides and repeated writes.

Sessions: simple-salesforce logs in (SOAP password + token, or OAuth JWT
bearer), but the client then runs in direct mode so that *we* own re-login:
the library's own retry would log in up to three times per call, and through
SFType without end (INTEGRATIONS.md 0.4). Here an expired session costs exactly
one new login, and a second 401 makes the desk unavailable.

Every error text names a Salesforce error code or HTTP status, never a URL,
record content or secret: texts end up in the store, logs and the operator UI.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import os
import re
import threading
from dataclasses import replace
from typing import Any, Callable, ClassVar, Iterable, Mapping, Sequence, TypeVar
from urllib.parse import urlparse

import requests
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from simple_salesforce import Salesforce, SalesforceLogin
from simple_salesforce.exceptions import (SalesforceAuthenticationFailed, SalesforceError,
                                          SalesforceExpiredSession, SalesforceGeneralError,
                                          SalesforceRefusedRequest)

from webhooks.base import PayloadError
from webhooks.event import SOCIAL_NETWORKS, TicketEvent
from webhooks.salesforce import case_event  # the webhook's own mapping of a Case, reused

from .base import (CLOSED, OPEN, Customer, Decision, DeskSettings, DeskSpec, DeskTicket,
                   DeskUnavailable, WriteFailure, WriteResult)

log = logging.getLogger(__name__)
T = TypeVar("T")

CHUNK = 200  # most ids in one SOQL IN list, and most records in one sObject Collections call
# REQUEST_LIMIT_EXCEEDED: the org's rolling 24 h API allowance is spent. Salesforce sends no
# Retry-After, and the allowance frees up gradually, so writes pause 5 minutes at a time.
LIMIT_PAUSE_SECONDS = 300.0
TIMEOUT = (10.0, 120.0)  # connect, read: a hung org must not hold a worker forever
# Per-record codes that clear by themselves (locks, load); anything else needs a person.
TRANSIENT_CODES = frozenset({"UNABLE_TO_LOCK_ROW", "REQUEST_RUNNING_TOO_LONG",
                             "SERVER_UNAVAILABLE", "QUERY_TIMEOUT"})
TEXT_MAX = 255

_ID = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?")  # record and organization ids
_API_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_CODE = re.compile(r"[A-Z][A-Z0-9_]{0,79}")
_CONTACT, _ACCOUNT = "003", "001"


class SalesforceFields(BaseModel):
    """API names of the fields Clout reads and writes; orgs with a namespace or their own
    priority field change them here. Validated as plain API names, since they go into SOQL."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    case_number: str = "CaseNumber"
    case_subject: str = "Subject"
    case_description: str = "Description"
    case_priority: str = "Priority"
    case_status: str = "Status"
    case_is_closed: str = "IsClosed"
    case_created_date: str = "CreatedDate"
    case_last_modified_date: str = "LastModifiedDate"
    case_contact_id: str = "ContactId"
    case_account_id: str = "AccountId"
    case_clout_priority: str = "Clout_Priority__c"
    case_clout_decision_id: str = "Clout_Decision_Id__c"
    case_score: str = "Clout_Score__c"
    case_tier: str = "Clout_Tier__c"
    case_flags: str = "Clout_Flags__c"
    case_reason: str = "Clout_Reason__c"
    contact_handles: dict[str, str] = {
        "x": "Clout_X_Handle__c", "bluesky": "Clout_Bluesky_Handle__c",
        "mastodon": "Clout_Mastodon_Handle__c", "github": "Clout_GitHub_Handle__c",
        "reddit": "Clout_Reddit_Handle__c", "youtube": "Clout_YouTube_Handle__c"}
    account_spend_field: str = "Clout_Monthly_Spend__c"
    account_currency_field: str = ""  # "" = single-currency org; "CurrencyIsoCode" otherwise
    default_currency: str = Field("USD", pattern=r"^[A-Z]{3}$")
    contract_status: str = Field("Activated", min_length=1, max_length=40)

    @model_validator(mode="after")
    def _api_names(self) -> "SalesforceFields":
        names = {k: v for k, v in self
                 if k.startswith(("case_", "account_")) and isinstance(v, str)}
        names |= {f"contact_handles.{k}": v for k, v in self.contact_handles.items()}
        bad = [k for k, v in names.items()
               if not (v == "" and k == "account_currency_field") and not _API_NAME.fullmatch(v)]
        if bad:
            raise ValueError(f"not a Salesforce API name: {', '.join(sorted(bad))}")
        unknown = sorted(set(self.contact_handles) - set(SOCIAL_NETWORKS))
        if unknown:
            raise ValueError(f"contact_handles: unknown network(s) {', '.join(unknown)}; "
                             f"known: {', '.join(SOCIAL_NETWORKS)}")
        return self


class SalesforceSettings(DeskSettings):
    """`[desks.salesforce]`. Credentials come from the environment (`secret_env`)."""

    secret_env: ClassVar[Mapping[str, str]] = {
        "username": "CLOUT_SALESFORCE_USERNAME", "password": "CLOUT_SALESFORCE_PASSWORD",
        "security_token": "CLOUT_SALESFORCE_SECURITY_TOKEN",
        "consumer_key": "CLOUT_SALESFORCE_CONSUMER_KEY",
        "private_key_file": "CLOUT_SALESFORCE_PRIVATE_KEY_FILE",
        "session_id": "CLOUT_SALESFORCE_SESSION_ID"}

    enabled: bool = False
    priorities: dict[str, str] = {"urgent": "High", "high": "High", "normal": "Medium",
                                  "low": "Low"}
    flush_window_ms: int = Field(500, ge=0, le=60_000)
    organization_id: str = ""
    instance_url: str = ""
    domain: str = Field("login", pattern=r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,200}[A-Za-z0-9])?$")
    api_version: str = "59.0"
    poll_interval_seconds: int = Field(300, ge=0)
    fields: SalesforceFields = SalesforceFields()

    @field_validator("organization_id")
    @classmethod
    def _org_id(cls, value: str) -> str:
        if value and not _ID.fullmatch(value):
            raise ValueError("must be the 15- or 18-character organization id (letters and digits)")
        return value

    @field_validator("instance_url")
    @classmethod
    def _https(cls, value: str) -> str:
        if value:
            url = urlparse(value)
            if url.scheme != "https" or not url.hostname:
                raise ValueError("must be an https:// URL, "
                                 "e.g. https://yourcompany.my.salesforce.com")
        return value

    @field_validator("api_version", mode="before")
    @classmethod
    def _version(cls, value: Any) -> Any:
        # An environment override `..._API_VERSION=59.0` arrives as the float 59.0.
        if isinstance(value, float) and not isinstance(value, bool):
            value = f"{value:.1f}"
        if isinstance(value, str) and not re.fullmatch(r"\d{2,3}\.\d", value):
            raise ValueError('must look like "59.0" (no leading "v")')
        return value

    @model_validator(mode="after")
    def _org_when_enabled(self) -> "SalesforceSettings":
        if self.enabled and not self.organization_id:
            raise ValueError("organization_id is required when the desk is enabled "
                             "(Setup > Company Information > Salesforce.com Organization ID)")
        return self


class SalesforceRefused(Exception):
    """Salesforce answered a whole call with a 4xx that retrying won't fix (a bad field,
    a missing permission, a malformed id). Its text is only the code and status."""

    def __init__(self, what: str, code: str, status: int | None) -> None:
        super().__init__(f"Salesforce refused the {what}: {code}"
                         + (f" (HTTP {status})" if status else ""))
        self.code = code


def _error_code(exc: SalesforceError) -> str:
    """The errorCode of Salesforce's JSON error array; only code-shaped text is kept."""
    content = exc.content
    if isinstance(content, list) and content and isinstance(content[0], dict):
        code = str(content[0].get("errorCode") or "")
        if _CODE.fullmatch(code):
            return code
    return f"HTTP {exc.status}"


def soql_literal(value: str) -> str:
    """`value` as a quoted SOQL string literal (backslash and quote escaped)."""
    escaped = (value.replace("\\", "\\\\").replace("'", "\\'")
               .replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t"))
    return f"'{escaped}'"


def soql_datetime(when: dt.datetime) -> str:
    """A SOQL datetime literal, unquoted, UTC: 2026-11-30T10:00:00Z. Milliseconds are kept
    when there are any (SOQL accepts them), so a watermark is never rounded down to a
    second that holds more changes than one poll may fetch."""
    v = when.astimezone(dt.timezone.utc)
    ms = v.microsecond // 1000
    return v.strftime("%Y-%m-%dT%H:%M:%S") + (f".{ms:03d}" if ms else "") + "Z"


def _parse_time(value: str) -> dt.datetime:
    """ISO 8601 as Clout writes it or as Salesforce does ("...T10:00:00.000+0000")."""
    when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def _chunks(items: Sequence[T], size: int = CHUNK) -> Iterable[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _valid_ids(ids: Iterable[str]) -> dict[str, list[str]]:
    """15-char key -> the ids as the caller gave them. Salesforce answers with 18-char ids;
    their first 15 characters are the id itself, so both forms find the record. Ids that
    aren't 15/18 letters and digits are skipped: they can't exist, and never reach SOQL."""
    wanted: dict[str, list[str]] = {}
    for i in dict.fromkeys(ids):
        if isinstance(i, str) and _ID.fullmatch(i):
            wanted.setdefault(i[:15], []).append(i)
    return wanted


def _one_each(wanted: Mapping[str, list[str]], prefix: str = "") -> list[str]:
    """One id per record for an IN list (the 18-character form when the caller gave it)."""
    return [max(forms, key=len) for key, forms in wanted.items() if key.startswith(prefix)]


def _in_list(ids: Iterable[str]) -> str:
    return "(" + ", ".join(soql_literal(i) for i in ids) + ")"


def _truncate(text: str, limit: int = TEXT_MAX) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _join_flags(flags: Sequence[str]) -> str:
    """Flags joined by ";", dropping whole flags from the end rather than cutting one."""
    kept: list[str] = []
    for flag in flags:
        if len(";".join([*kept, flag])) > TEXT_MAX:
            break
        kept.append(flag)
    return ";".join(kept)


class SalesforceDesk:
    """One org. Thread-safe: the client is built (logged in) once, under a lock."""

    name = "salesforce"
    max_batch = CHUNK

    def __init__(self, settings: SalesforceSettings, login: Callable[[], Salesforce],
                 *, can_relogin: bool) -> None:
        self._s = settings
        self._f = settings.fields
        self._login = login
        self._can_relogin = can_relogin
        self._sf: Salesforce | None = None
        self._lock = threading.Lock()
        self.usage: tuple[int, int] | None = None  # (used, total) after the latest call

    # -- plumbing ------------------------------------------------------------------------------

    def _client(self, stale: Salesforce | None = None) -> Salesforce:
        """The logged-in client; with `stale`, replace that one (once, even if threads race)."""
        with self._lock:
            if self._sf is None or self._sf is stale:
                self._sf = None
                try:
                    self._sf = self._login()
                except SalesforceAuthenticationFailed as exc:
                    # SOAP sends sf:INVALID_LOGIN, OAuth invalid_grant; only code-shaped text
                    code = str(exc.code or "").removeprefix("sf:")
                    code = code if re.fullmatch(r"[A-Za-z0-9_]{1,80}", code) else "unknown"
                    raise DeskUnavailable(f"Salesforce login failed: {code}") from None
                except (requests.ConnectionError, requests.Timeout) as exc:
                    raise DeskUnavailable(f"Salesforce login unreachable: {type(exc).__name__}") \
                        from None
            return self._sf

    def _call(self, what: str, fn: Callable[[Salesforce], T]) -> T:
        """Run one API call: one re-login on an expired session, outages -> DeskUnavailable,
        other refusals -> SalesforceRefused. Records the org's API usage afterwards."""
        sf = self._client()
        for attempt in (1, 2):
            try:
                return fn(sf)
            except SalesforceExpiredSession:
                if attempt == 1 and self._can_relogin:
                    log.info("salesforce: session expired; logging in again")
                    sf = self._client(stale=sf)
                    continue
                hint = "" if self._can_relogin else "; set a fresh CLOUT_SALESFORCE_SESSION_ID"
                raise DeskUnavailable(f"Salesforce session invalid (INVALID_SESSION_ID){hint}") \
                    from None
            except SalesforceRefusedRequest as exc:
                code = _error_code(exc)
                if code == "REQUEST_LIMIT_EXCEEDED":
                    raise DeskUnavailable("Salesforce API limit reached (REQUEST_LIMIT_EXCEEDED)",
                                          retry_after=LIMIT_PAUSE_SECONDS) from None
                raise SalesforceRefused(what, code, exc.status) from None
            except SalesforceGeneralError as exc:
                if exc.status >= 500 or exc.status == 429:
                    raise DeskUnavailable(f"Salesforce answered HTTP {exc.status} "
                                          f"({_error_code(exc)})") from None
                raise SalesforceRefused(what, _error_code(exc), exc.status) from None
            except SalesforceError as exc:
                raise SalesforceRefused(what, _error_code(exc), exc.status) from None
            except (requests.ConnectionError, requests.Timeout) as exc:
                raise DeskUnavailable(f"Salesforce unreachable: {type(exc).__name__}") from None
            finally:
                usage = (getattr(sf, "api_usage", None) or {}).get("api-usage")
                if usage is not None:
                    self.usage = (usage.used, usage.total)
        raise AssertionError("unreachable")

    def _query(self, soql: str, limit: int | None = None) -> list[dict[str, Any]]:
        """All records of a query, following nextRecordsUrl pages."""
        def run(sf: Salesforce) -> list[dict[str, Any]]:
            return list(itertools.islice(sf.query_all_iter(soql, timeout=TIMEOUT), limit))
        return self._call("query", run)

    def api_usage(self) -> dict[str, int] | None:
        """The org's API calls used / allowed (Sforce-Limit-Info) as of the latest call."""
        return None if self.usage is None else {"used": self.usage[0], "total": self.usage[1]}

    # -- the DeskConnector protocol ------------------------------------------------------------

    def fetch_customers(self, ids: Sequence[str]) -> dict[str, Customer]:
        """Contacts and account-only customers: 1 query per 200 contacts, 1 per 200 accounts,
        then 1 per 200 of their accounts for the contracts (2 per 200 ids of one kind)."""
        wanted = _valid_ids(ids)
        contacts, accounts = _one_each(wanted, _CONTACT), _one_each(wanted, _ACCOUNT)
        f = self._f
        money = [f.account_spend_field] + ([f.account_currency_field]
                                           if f.account_currency_field else [])
        rows: list[tuple[str, dict[str, Any], str | None, Mapping[str, Any] | None]] = []
        for chunk in _chunks(contacts):
            select = ["Id", "Name", "Email", "AccountId", *f.contact_handles.values(),
                      "Account.Name", *(f"Account.{m}" for m in money)]
            for r in self._query(f"SELECT {', '.join(dict.fromkeys(select))} FROM Contact "
                                 f"WHERE Id IN {_in_list(chunk)}"):
                rows.append((r["Id"], r, r.get("AccountId"), r.get("Account")))
        for chunk in _chunks(accounts):
            for r in self._query(f"SELECT {', '.join(dict.fromkeys(['Id', 'Name', *money]))} "
                                 f"FROM Account WHERE Id IN {_in_list(chunk)}"):
                rows.append((r["Id"], {"Name": r.get("Name")}, r["Id"], r))
        ends = self._contract_ends({a for _, _, a, _ in rows if a})

        out: dict[str, Customer] = {}
        for record_id, person, account_id, account in rows:
            account = account or {}
            spend = account.get(f.account_spend_field)
            currency = account.get(f.account_currency_field) if f.account_currency_field else None
            customer = Customer(
                id=record_id, name=person.get("Name"), email=person.get("Email"),
                handles={net: str(v) for net, field in f.contact_handles.items()
                         if (v := person.get(field))},
                monthly_spend=float(spend) if spend is not None else None,
                currency=currency or (f.default_currency if spend is not None else None),
                contract_end=ends.get(account_id[:15]) if account_id else None)
            for asked in wanted.get(record_id[:15], ()):
                out[asked] = replace(customer, id=asked)
        return out

    def _contract_ends(self, account_ids: set[str]) -> dict[str, str]:
        """15-char account id -> the latest EndDate of its contracts in contract_status."""
        ends: dict[str, str] = {}
        valid = sorted(i for i in account_ids if _ID.fullmatch(i))
        for chunk in _chunks(valid):
            for r in self._query(
                    f"SELECT AccountId, EndDate FROM Contract WHERE AccountId IN {_in_list(chunk)} "
                    f"AND Status = {soql_literal(self._f.contract_status)}"):
                key, end = (r.get("AccountId") or "")[:15], r.get("EndDate")
                if key and end and end > ends.get(key, ""):
                    ends[key] = end  # YYYY-MM-DD compares as text
        return ends

    def read_tickets(self, ticket_ids: Sequence[str]) -> dict[str, DeskTicket]:
        wanted = _valid_ids(ticket_ids)
        f = self._f
        fields = ["Id", f.case_priority, f.case_is_closed, f.case_clout_priority,
                  f.case_clout_decision_id]
        out: dict[str, DeskTicket] = {}
        for chunk in _chunks(_one_each(wanted)):
            for r in self._query(f"SELECT {', '.join(dict.fromkeys(fields))} FROM Case "
                                 f"WHERE Id IN {_in_list(chunk)}"):
                closed = r.get(f.case_is_closed) in (True, "true")
                ticket = DeskTicket(status=CLOSED if closed else OPEN,
                                    priority=r.get(f.case_priority),
                                    clout_priority=r.get(f.case_clout_priority),
                                    clout_decision=r.get(f.case_clout_decision_id))
                out.update(dict.fromkeys(wanted.get(r["Id"][:15], ()), ticket))
        return out

    def _record(self, d: Decision) -> dict[str, Any]:
        f = self._f
        return {"attributes": {"type": "Case"}, "id": d.ticket_id,
                f.case_priority: d.priority, f.case_score: round(d.score * 100, 2),
                f.case_tier: d.tier, f.case_flags: _join_flags(d.flags),
                f.case_reason: _truncate(d.reason), f.case_clout_priority: d.priority,
                f.case_clout_decision_id: d.id}

    def write_decisions(self, decisions: Sequence[Decision]) -> WriteResult:
        """sObject Collections PATCH, 200 Cases per call, results per record.

        A whole call the desk can't take now raises DeskUnavailable when nothing was written
        yet; after a first chunk went through, the rest are reported as retryable failures
        so the written ones still count."""
        latest = {d.ticket_id: d for d in decisions}  # a ticket twice: the last one wins
        failed: dict[str, WriteFailure] = {
            t: WriteFailure("not a Salesforce record id", retryable=False)
            for t in latest if not _ID.fullmatch(t)}
        todo = [d for t, d in latest.items() if t not in failed]
        written: list[str] = []
        for n, chunk in enumerate(_chunks(todo)):
            body = {"allOrNone": False, "records": [self._record(d) for d in chunk]}
            try:
                results = self._call("update", lambda sf: sf.restful(
                    "composite/sobjects", method="PATCH", json=body, timeout=TIMEOUT)) or []
            except DeskUnavailable as exc:
                if n == 0:
                    raise
                for d in todo[n * CHUNK:]:
                    failed[d.ticket_id] = WriteFailure(str(exc), retryable=True,
                                                       retry_after=exc.retry_after)
                break
            except SalesforceRefused as exc:
                for d in chunk:
                    failed[d.ticket_id] = WriteFailure(str(exc), retryable=False)
                continue
            for i, d in enumerate(chunk):
                res = results[i] if i < len(results) and isinstance(results[i], dict) else None
                if res is None:
                    failed[d.ticket_id] = WriteFailure("Salesforce sent no result for this record")
                elif res.get("success"):
                    written.append(d.ticket_id)
                else:
                    failed[d.ticket_id] = self._record_failure(res.get("errors") or [])
        return WriteResult(written=tuple(written), failed=failed)

    @staticmethod
    def _record_failure(errors: list[Any]) -> WriteFailure:
        first = errors[0] if errors and isinstance(errors[0], dict) else {}
        code = str(first.get("statusCode") or "")
        code = code if _CODE.fullmatch(code) else "UNKNOWN_ERROR"
        names = [str(x) for x in first.get("fields") or [] if _API_NAME.fullmatch(str(x))]
        where = f" ({', '.join(names)})" if names else ""
        return WriteFailure(f"Salesforce refused the update: {code}{where}",
                            retryable=code in TRANSIENT_CODES)

    def poll_changes(self, since_iso: str | None,
                     limit: int) -> tuple[list[TicketEvent], str | None]:
        """Cases changed after `since_iso`, oldest first, as TicketEvents, and the new watermark
        (the latest LastModifiedDate seen, as Salesforce wrote it).

        A safety net for missed Outbound Messages. The first poll looks back two intervals.
        When the page is full, Cases sharing its last timestamp wait for the next poll, so
        `>` on the watermark never skips one of them."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        f = self._f
        now = dt.datetime.now(dt.timezone.utc)
        since = _parse_time(since_iso) if since_iso else (now - dt.timedelta(
            seconds=2 * (self._s.poll_interval_seconds or 300))).replace(microsecond=0)
        names = {"Id": "Id", "CaseNumber": f.case_number, "Subject": f.case_subject,
                 "Description": f.case_description, "Priority": f.case_priority,
                 "Status": f.case_status, "IsClosed": f.case_is_closed,
                 "CreatedDate": f.case_created_date, "LastModifiedDate": f.case_last_modified_date,
                 "ContactId": f.case_contact_id, "AccountId": f.case_account_id}
        modified = f.case_last_modified_date
        rows = self._query(
            f"SELECT {', '.join(dict.fromkeys(names.values()))} FROM Case "
            f"WHERE {modified} > {soql_datetime(since)} ORDER BY {modified} ASC LIMIT {int(limit)}",
            limit=limit)
        rows = [r for r in rows if r.get(modified) and _parse_time(r[modified]) > since]
        if len(rows) >= limit:
            last = _parse_time(rows[-1][modified])
            earlier = [r for r in rows if _parse_time(r[modified]) < last]
            rows = earlier or rows
        events: list[TicketEvent] = []
        watermark: str | None = None
        received = now.isoformat()
        for r in rows:
            case = {std: r.get(api) for std, api in names.items()}
            try:
                events.append(case_event(case, event_id=f"poll:{r['Id']}:{r[modified]}",
                                         received_at=received))
            except PayloadError as exc:
                problems = ", ".join(sorted({str(d.get("field")) for d in exc.details
                                             if isinstance(d, dict) and d.get("field")}))
                log.warning("salesforce: polled case %s skipped: unusable %s", r["Id"],
                            problems or "payload")
            if watermark is None or _parse_time(r[modified]) > _parse_time(watermark):
                watermark = r[modified]
        return events, watermark or since_iso or since.isoformat()


def _login_factory(settings: SalesforceSettings, secrets: Mapping[str, str],
                   session: requests.Session) -> tuple[Callable[[], Salesforce], bool]:
    """How to build a logged-in client from whichever credentials are set, and whether
    logging in again can help (not with a fixed session id)."""
    s = {k: v for k, v in secrets.items() if v}
    env = SalesforceSettings.secret_env
    version, domain = settings.api_version, settings.domain

    def direct(session_id: str, instance: str) -> Salesforce:
        return Salesforce(session_id=session_id, instance=instance, session=session,
                          domain=domain, version=version, object_pairs_hook=dict)

    if "session_id" in s:
        if not settings.instance_url:
            raise ValueError(f"{env['session_id']} is set: desks.salesforce.instance_url is "
                             "needed with it (https://yourcompany.my.salesforce.com)")
        return (lambda: Salesforce(session_id=s["session_id"], instance_url=settings.instance_url,
                                   session=session, domain=domain, version=version,
                                   object_pairs_hook=dict)), False
    if {"consumer_key", "username", "private_key_file"} <= s.keys():
        if not os.path.isfile(s["private_key_file"]):
            raise ValueError(f"{env['private_key_file']} does not name a file")
        return (lambda: direct(*SalesforceLogin(
            username=s["username"], consumer_key=s["consumer_key"],
            privatekey_file=s["private_key_file"], session=session, domain=domain,
            sf_version=version))), True
    if {"username", "password", "security_token"} <= s.keys():
        return (lambda: direct(*SalesforceLogin(
            username=s["username"], password=s["password"], security_token=s["security_token"],
            session=session, domain=domain, sf_version=version))), True
    raise ValueError(
        "Salesforce credentials missing: set " + env["session_id"] + " (with instance_url), or "
        + " + ".join(env[k] for k in ("consumer_key", "username", "private_key_file"))
        + " (OAuth JWT bearer), or "
        + " + ".join(env[k] for k in ("username", "password", "security_token"))
        + " (password login)")


def connect(settings: SalesforceSettings, secrets: Mapping[str, str], *, store: Any = None,
            session: requests.Session | None = None) -> SalesforceDesk:
    """The connector; credentials are checked now, the org is only contacted on first use."""
    login, can_relogin = _login_factory(settings, secrets, session or requests.Session())
    return SalesforceDesk(settings, login, can_relogin=can_relogin)


DESK = DeskSpec(
    name="salesforce",
    webhook="salesforce",
    settings=SalesforceSettings,
    connect=connect,
    description="Salesforce Service Cloud Cases (REST API; Outbound Messages or polling)",
)
