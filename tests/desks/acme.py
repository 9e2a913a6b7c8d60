"""`acme`: a small REST desk, real HTTP, for testing the delivery rules on a remote desk.

API (served by `tests/desks/server.py`):
    GET   /api/tickets?ids=a,b         -> {"tickets": {id: {status, priority, clout_priority, clout_decision}}}
    GET   /api/customers?ids=a,b       -> {"customers": {id: {...}}}
    PATCH /api/tickets                 {"tickets": [{id, priority, clout_priority, clout_decision, flags, reason}]}
                                       -> {"results": [{"id", "ok", "error"?}]}
It speaks the generic webhook format (webhook = "generic"), so events arrive at
/webhooks/acme signed with CLOUT_WEBHOOK_SECRET_ACME.
"""

from __future__ import annotations

from typing import Any, ClassVar, Mapping, Sequence

import requests
from pydantic import Field

from connectors.crm.base import (CLOSED, OPEN, Customer, Decision, DeskSettings, DeskSpec,
                                 DeskTicket, DeskUnavailable, WriteFailure, WriteResult)


class AcmeSettings(DeskSettings):
    secret_env: ClassVar[Mapping[str, str]] = {"api_key": "CLOUT_ACME_API_KEY"}
    priorities: dict[str, str] = {"urgent": "P1", "high": "P2", "normal": "P3", "low": "P4"}
    base_url: str = "http://127.0.0.1:9"
    timeout_seconds: float = Field(5.0, gt=0)


def _retry_after(resp: requests.Response) -> float | None:
    raw = resp.headers.get("Retry-After")
    try:
        return float(raw) if raw is not None else None
    except ValueError:
        return None


class AcmeDesk:
    name = "acme"
    max_batch = 50

    def __init__(self, settings: AcmeSettings, api_key: str | None, session: requests.Session) -> None:
        self._s = settings
        self._session = session
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        try:
            resp = self._session.request(method, self._s.base_url + path, headers=self._headers,
                                         timeout=self._s.timeout_seconds, **kw)
        except requests.RequestException as exc:
            raise DeskUnavailable(f"acme unreachable: {type(exc).__name__}") from None
        if resp.status_code == 429 or resp.status_code >= 500:
            raise DeskUnavailable(f"acme answered {resp.status_code}", retry_after=_retry_after(resp))
        resp.raise_for_status()
        return resp.json()

    def fetch_customers(self, ids: Sequence[str]) -> dict[str, Customer]:
        data = self._call("GET", "/api/customers", params={"ids": ",".join(ids)})["customers"]
        return {cid: Customer(id=cid, **fields) for cid, fields in data.items()}

    def read_tickets(self, ticket_ids: Sequence[str]) -> dict[str, DeskTicket]:
        data = self._call("GET", "/api/tickets", params={"ids": ",".join(ticket_ids)})["tickets"]
        return {tid: DeskTicket(status=CLOSED if t.get("status") in ("closed", "solved") else OPEN,
                                priority=t.get("priority"), clout_priority=t.get("clout_priority"),
                                clout_decision=t.get("clout_decision"))
                for tid, t in data.items()}

    def write_decisions(self, decisions: Sequence[Decision]) -> WriteResult:
        body = {"tickets": [{"id": d.ticket_id, "priority": d.priority, "clout_priority": d.priority,
                             "clout_decision": d.id, "flags": list(d.flags), "reason": d.reason}
                            for d in decisions]}
        results = self._call("PATCH", "/api/tickets", json=body)["results"]
        ok = tuple(r["id"] for r in results if r["ok"])
        failed = {r["id"]: WriteFailure(r.get("error", "refused"), retryable=r.get("retryable", False))
                  for r in results if not r["ok"]}
        return WriteResult(written=ok, failed=failed)


def connect(settings: AcmeSettings, secrets: Mapping[str, str], *, store: Any,
            session: requests.Session | None = None) -> AcmeDesk:
    return AcmeDesk(settings, secrets.get("api_key"), session or requests.Session())


DESK = DeskSpec(name="acme", webhook="generic", settings=AcmeSettings, connect=connect,
                description="test-only REST desk")
