"""`clout demo`: the whole path once, the way a desk would drive it.

Demo customers go into the local CRM (the store); demo tickets are then POSTed
over HTTP as signed Standard Webhooks to the running web server, a real RQ
worker process ranks them, and the ranked queue is printed. Dates in the demo
files are relative ("+12d", "age_hours") so the story reads the same any day.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import requests
from rq.job import Job
from rq.serializers import JSONSerializer

from connectors.crm.base import Customer
from webhooks.generic import sign

from .settings import Settings

DEMO_DIR_NAME = "demo"


def resolve_relative_date(value: str | None, today: dt.date) -> str | None:
    """'+12d' -> today + 12 days (ISO); ISO dates pass through; None stays None."""
    if value is None:
        return None
    if value.startswith(("+", "-")) and value.endswith("d"):
        return (today + dt.timedelta(days=int(value[:-1]))).isoformat()
    return dt.date.fromisoformat(value).isoformat()


def load_customers(path: Path, today: dt.date) -> list[Customer]:
    rows = json.loads(path.read_text())
    return [
        Customer(
            id=r["id"], name=r.get("name"), email=r.get("email"), handles=dict(r.get("handles") or {}),
            monthly_spend=r.get("monthly_spend"), currency=r.get("currency"),
            contract_end=resolve_relative_date(r.get("contract_end"), today),
        )
        for r in rows
    ]


def build_events(tickets_path: Path, customers: dict[str, Customer],
                 now: dt.datetime, run_id: str) -> list[tuple[str, bytes]]:
    """(delivery id, body) per demo ticket, in the generic webhook's JSON shape."""
    out = []
    for t in json.loads(tickets_path.read_text()):
        customer = customers[t["customer_id"]]
        created = now - dt.timedelta(hours=float(t.get("age_hours", 0)))
        body = {
            "event_id": f"demo-{run_id}-{t['ticket_id']}",
            "occurred_at": now.isoformat(),
            "ticket": {
                "id": t["ticket_id"], "subject": t["subject"], "description": t["description"],
                "priority": t.get("priority"), "created_at": created.isoformat(),
            },
            # Only who the customer is: spend, contract and handles come from the CRM.
            "customer": {"id": customer.id, "name": customer.name, "email": customer.email},
        }
        out.append((f"msg_{run_id}_{t['ticket_id']}", json.dumps(body).encode()))
    return out


def post_signed(session: requests.Session, url: str, secret: str, delivery_id: str,
                body: bytes) -> requests.Response:
    ts = int(time.time())
    headers = {
        "content-type": "application/json",
        "webhook-id": delivery_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": sign(secret, delivery_id, ts, body),
    }
    return session.post(url, data=body, headers=headers, timeout=10)


def wait_for_decisions(store: Any, connection: Any, queue: Any, event_ids: list[str], timeout: float,
                       progress: Callable[[int, int], None]) -> tuple[set[str], str | None]:
    """Poll until every event is decided; returns (decided ids, first job error if any).

    A job that failed, even one waiting for its retry, ends the wait at once:
    a demo should say what broke now, not after the retry back-off.
    """
    from rq.registry import FailedJobRegistry, ScheduledJobRegistry

    deadline = time.monotonic() + timeout
    last = -1
    failed_before = set(FailedJobRegistry(queue=queue).get_job_ids())
    scheduled_before = set(ScheduledJobRegistry(queue=queue).get_job_ids())  # e.g. an old run's retry
    while True:
        done = store.decided_events(event_ids)
        if len(done) != last:
            last = len(done)
            progress(len(done), len(event_ids))
        if len(done) == len(event_ids):
            return done, None
        broken = (set(FailedJobRegistry(queue=queue).get_job_ids()) - failed_before) | (
            set(ScheduledJobRegistry(queue=queue).get_job_ids()) - scheduled_before)
        if broken or time.monotonic() > deadline:
            return done, job_error(connection, next(iter(broken))) if broken else None
        time.sleep(0.1)


def demo_dir(settings: Settings) -> Path:
    return settings.config_dir / DEMO_DIR_NAME if (settings.config_dir / DEMO_DIR_NAME).is_dir() \
        else Path(__file__).resolve().parent.parent / "config" / DEMO_DIR_NAME


def new_run_id() -> str:
    return uuid.uuid4().hex[:8]


def job_error(connection: Any, job_id: str) -> str:
    """The last line of a failed job's traceback, for a one-line report."""
    job = Job.fetch(job_id, connection=connection, serializer=JSONSerializer)
    result = job.latest_result()
    text = (getattr(result, "exc_string", None) or "").strip()
    return text.splitlines()[-1] if text else "unknown error"
