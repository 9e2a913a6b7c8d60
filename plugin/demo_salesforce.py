"""`clout demo --desk salesforce`: the demo against a local stand-in for a Salesforce org.

The sandbox (`connectors.crm.salesforce_sandbox`, HTTPS with a throwaway test CA)
holds the demo customers as Contacts, Accounts and Contracts and the demo tickets
as Cases. The org sends one Outbound Message for them, as a record-triggered flow
would; Clout looks the customers up with SOQL, ranks, and writes Priority and the
Clout fields back through sObject Collections. Then an agent sets a Priority by
hand and a Case is closed. The sandbox's call log is printed so the traffic is
visible: the same calls a real org would receive.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import secrets as pysecrets
import time
import uuid
from collections import Counter
from typing import Any, Callable
from urllib.parse import quote

import click
import requests

from .demo import (DemoFailed, _queue_table, demo_dir, demo_stack, load_customers, start_stack,
                   wait_for_decisions)
from .settings import Settings

# The demo tickets' desk priorities, in a default Case.Priority picklist.
SF_PRIORITY = {"Urgent": "High", "High": "High", "Normal": "Medium", "Low": "Low"}
SOLVED_TICKET = "T-2006"


def _notification_id() -> str:
    return "04l" + uuid.uuid4().hex[:15].upper()


def _traffic(calls: list[Any]) -> str:
    """The sandbox's call log, grouped the way an admin reads API usage."""
    kinds: Counter[str] = Counter()
    records = 0
    for c in calls:
        path = c.path
        if "/composite/sobjects" in path:
            kinds["PATCH composite/sobjects (sObject Collections update)"] += 1
            body = c.body if isinstance(c.body, dict) else {}
            records += len(body.get("records") or [])
        elif "/query" in path:
            kinds["GET query (SOQL)"] += 1
        elif "/Soap/u/" in path or "/oauth2/" in path:
            kinds["login"] += 1
        else:
            kinds[f"{c.method} {path.split('/services/data/')[-1]}"] += 1
    lines = [f"  {n:3d}  {kind}" for kind, n in sorted(kinds.items())]
    if records:
        lines.append(f"       ({records} Case record(s) updated in those collection calls)")
    return "\n".join(lines)


def run_salesforce_demo(*, host: str, port: int, timeout: float, load: Callable[..., Settings],
                        make_runtime: Callable[[Settings], Any], setup_logging: Callable[..., None],
                        on_shutdown: Callable[[], None], port_fallback: bool = False) -> None:
    from connectors.crm.salesforce_sandbox import SalesforceSandbox

    started = time.monotonic()
    sandbox = SalesforceSandbox().start()
    env = dict(os.environ)
    env.setdefault("CLOUT_API_TOKEN", pysecrets.token_urlsafe(32))
    env.setdefault("CLOUT_WEBHOOK_SECRET_GENERIC",
                   "whsec_" + base64.b64encode(pysecrets.token_bytes(32)).decode())
    secret = "whsec_" + base64.b64encode(pysecrets.token_bytes(32)).decode()
    env.update({
        "CLOUT_WEBHOOK_SECRET_SALESFORCE": secret,
        "CLOUT_DESKS__SALESFORCE__ENABLED": "true",
        "CLOUT_DESKS__SALESFORCE__ORGANIZATION_ID": sandbox.org_id,
        "CLOUT_DESKS__SALESFORCE__INSTANCE_URL": sandbox.url,
        "CLOUT_SALESFORCE_SESSION_ID": sandbox.issue_session(),
        # The workers talk HTTPS to the sandbox, whose certificate comes from a test CA.
        "REQUESTS_CA_BUNDLE": sandbox.ca_path,
    })
    for name in ("CLOUT_SALESFORCE_USERNAME", "CLOUT_SALESFORCE_PASSWORD",
                 "CLOUT_SALESFORCE_SECURITY_TOKEN", "CLOUT_SALESFORCE_CONSUMER_KEY",
                 "CLOUT_SALESFORCE_PRIVATE_KEY_FILE"):
        env.pop(name, None)  # the sandbox session only, whatever the shell holds
    base = load(env)
    if not env.get("DATABASE_URL"):
        # Its own store, fresh each run: the stand-in org hands out the same Case ids
        # every time, and yesterday's decisions for them are not today's story.
        env["CLOUT_DATA_DIR"] = str(base.data_dir / "demo-salesforce")
        (base.data_dir / "demo-salesforce" / "clout.db").unlink(missing_ok=True)
    settings = load(env)
    rt, stack, worker_log = demo_stack(settings, env, host, port, make_runtime, setup_logging,
                                       port_fallback)
    click.echo(f"Salesforce sandbox (local stand-in, test CA): {sandbox.url}  org {sandbox.org_id}")

    def wait(event_ids: list[str], case_ids: list[str]) -> None:
        """Until the notifications are settled and every Case's decision is through with
        the org (written, an agent's priority kept, or closed): writes wait for the flush
        window, and a catch-up poll may have decided a Case first."""
        done, error = wait_for_decisions(rt.store, rt.redis, rt.queue, event_ids, timeout,
                                         lambda d, t: None)
        settled: list[str] = []
        deadline = time.monotonic() + timeout
        while not error and time.monotonic() < deadline:
            views = [rt.store.ticket_decisions(c, "salesforce") for c in case_ids]
            settled = [c for c, v in zip(case_ids, views)
                       if v and v[0]["state"] in ("written", "agent_override", "closed")]
            if len(settled) == len(case_ids):
                break
            time.sleep(0.1)
        click.echo(f"Decided and written {len(settled)}/{len(case_ids)}")
        if len(done) < len(event_ids) or len(settled) < len(case_ids):
            why = f"a job failed: {error}" if error else f"still pending after {timeout:.0f} s"
            raise DemoFailed(f"{len(case_ids) - len(settled)} of {len(case_ids)} Cases not written, "
                             f"{why}. Worker log: {worker_log}")

    session = requests.Session()
    session.trust_env = False

    def notify(case_ids: list[str]) -> list[str]:
        ids = [_notification_id() for _ in case_ids]
        body = sandbox.outbound_message(case_ids, notification_ids=ids)
        resp = session.post(f"{stack.base_url}/webhooks/salesforce?token={quote(secret, safe='')}",
                            data=body, headers={"Content-Type": "text/xml; charset=utf-8",
                                                "SOAPAction": '""'}, timeout=30)
        if resp.status_code != 200 or b"<Ack>true</Ack>" not in resp.content:
            raise DemoFailed(f"the Outbound Message was answered {resp.status_code}: {resp.text[:300]}")
        return ids

    try:
        start_stack(rt, stack, host, port)
        today = dt.date.today()
        now = dt.datetime.now(dt.timezone.utc)
        ddir = demo_dir(settings)
        contact_of: dict[str, str] = {}
        for c in load_customers(ddir / "customers.json", today):
            account = sandbox.add_account(c.name or c.id, monthly_spend=c.monthly_spend,
                                          currency=c.currency)
            if c.contract_end:
                sandbox.add_contract(account, c.contract_end)
            contact_of[c.id] = sandbox.add_contact(c.name or c.id, c.email, account, dict(c.handles))
        case_of: dict[str, str] = {}
        for t in json.loads((ddir / "tickets.json").read_text()):
            case = sandbox.add_case(t["subject"], t["description"],
                                    priority=SF_PRIORITY.get(t.get("priority") or "", "Medium"),
                                    contact_id=contact_of[t["customer_id"]])
            sandbox.update_case(case, CreatedDate=now - dt.timedelta(hours=float(t.get("age_hours", 0))))
            case_of[t["ticket_id"]] = case
        click.echo(f"Org holds {len(contact_of)} Contacts with Accounts and Contracts, and "
                   f"{len(case_of)} new Cases.")
        sandbox.reset_calls()

        first = notify(list(case_of.values()))
        click.echo(f"The org sent one Outbound Message with {len(first)} notifications "
                   "(answered with the SOAP Ack).")
        wait(first, list(case_of.values()))

        def ours() -> list[dict[str, Any]]:
            rows = rt.store.open_queue(limit=500)
            return [r for r in rows if r["source"] == "salesforce" and r["ticket_id"] in case_of.values()]

        rows = ours()
        click.echo("")
        click.echo(_queue_table(rows))
        click.echo("")
        click.echo("What the org received:")
        click.echo(_traffic(sandbox.calls))
        top = sandbox.case(rows[0]["ticket_id"])
        click.echo(f"  Case {top.get('CaseNumber')} now shows Priority={top.get('Priority')}, "
                   f"Clout_Tier__c={top.get('Clout_Tier__c')}, "
                   f"Clout_Score__c={top.get('Clout_Score__c')}, "
                   f"Clout_Reason__c={(top.get('Clout_Reason__c') or '')[:60]!r}")

        # Act two: an agent's own Priority, and a closed Case.
        target = next((r for r in rows if r["priority"] != "High"), rows[-1])
        sandbox.update_case(target["ticket_id"], Priority="High")
        sandbox.update_case(case_of[SOLVED_TICKET], Status="Closed")
        click.echo("")
        click.echo(f"An agent sets Case {sandbox.case(target['ticket_id']).get('CaseNumber')} to High "
                   f"by hand, and the Case for {SOLVED_TICKET} is closed; the org notifies both.")
        sandbox.reset_calls()
        pair = [target["ticket_id"], case_of[SOLVED_TICKET]]
        wait(notify(pair), pair)
        rows = ours()
        kept = next((r for r in rows if r["ticket_id"] == target["ticket_id"]), None)
        if kept is None or kept["state"] != "agent_override":
            raise DemoFailed(f"the agent's Priority was not kept ({kept and kept['state']})")
        if sandbox.case(target["ticket_id"]).get("Priority") != "High":
            raise DemoFailed("the agent's Priority was overwritten")
        if any(r["ticket_id"] == case_of[SOLVED_TICKET] for r in rows):
            raise DemoFailed("a closed Case is still in the queue")
        click.echo(f"  Clout would say {kept['priority']}; the agent's High stands "
                   "(state: agent_override; not overwritten).")
        click.echo(f"  The closed Case left the queue ({len(rows)} open now).")
        click.echo("What the org received for that:")
        click.echo(_traffic(sandbox.calls) or "  nothing")
        click.echo("")
        click.echo(f"Done in {time.monotonic() - started:.1f} s. Setup for a real org: "
                   "docs/salesforce.md")
    finally:
        on_shutdown()
        stack.stop()
        sandbox.stop()
