"""Salesforce end to end: the sandbox org (HTTPS, test CA) -> Clout's webhook, worker and
delivery rules -> Priority and the Clout fields back on the Case. Real simple-salesforce,
real Redis, real store; the sandbox records every call it gets."""

from __future__ import annotations

import base64
import datetime as dt
import os
import time
import uuid
from urllib.parse import quote

import pytest

from conftest import auth, work
from plugin import runtime as runtime_mod
from plugin.redis_conn import RedisHandle
from plugin.runtime import Runtime
from plugin.settings import load_settings

SF_SECRET = "whsec_" + base64.b64encode(b"salesforce-test-secret-0123456789").decode()


@pytest.fixture()
def sf(base_env, redis_session, tmp_path):
    """(runtime, sandbox, client, notify) with the salesforce desk enabled against the sandbox."""
    from connectors.crm.salesforce_sandbox import SalesforceSandbox
    from plugin import create_app

    sandbox = SalesforceSandbox(page_size=200).start()
    built = []

    def make(**extra: str):
        env = {**base_env, "CLOUT_DESKS__SALESFORCE__ENABLED": "true",
               "CLOUT_DESKS__SALESFORCE__ORGANIZATION_ID": sandbox.org_id,
               "CLOUT_DESKS__SALESFORCE__INSTANCE_URL": sandbox.url,
               "CLOUT_DESKS__SALESFORCE__FLUSH_WINDOW_MS": "0",
               "CLOUT_WEBHOOK_SECRET_SALESFORCE": SF_SECRET,
               "CLOUT_SALESFORCE_SESSION_ID": sandbox.issue_session(),
               "CLOUT_DELIVERY__RETRY_BASE_SECONDS": "0.2", "CLOUT_DELIVERY__RETRY_MAX_SECONDS": "1",
               **extra}
        rt = Runtime(load_settings(env), redis_handle=RedisHandle(client=redis_session.new_client()),
                     http_session=sandbox.session())
        if not rt.settings.database_url.startswith("sqlite") and not built:
            from plugin.store import metadata

            metadata.drop_all(rt.store.engine)
            metadata.create_all(rt.store.engine)
        runtime_mod.install(rt)
        built.append(rt)
        client = create_app(runtime=rt).test_client()

        def notify(case_ids: list[str], token: str = SF_SECRET, **kw):
            body = sandbox.outbound_message(case_ids, **kw)
            return client.post(f"/webhooks/salesforce?token={quote(token, safe='')}", data=body,
                               headers={"Content-Type": "text/xml; charset=utf-8"})

        return rt, client, notify

    yield sandbox, make
    runtime_mod.install(None)
    for rt in built:
        rt.close()
    sandbox.stop()


def _customer(sandbox, name: str = "Ada Quinlan", spend: float = 420.0, **handles: str) -> str:
    account = sandbox.add_account(f"{name} Ltd", monthly_spend=spend)
    sandbox.add_contract(account, (dt.date.today() + dt.timedelta(days=12)).isoformat())
    return sandbox.add_contact(name, f"{uuid.uuid4().hex[:6]}@example.test", account,
                               handles or {"x": "adaq"})


def _patches(sandbox) -> list:
    return [c for c in sandbox.calls if c.method == "PATCH" and "composite/sobjects" in c.path]


def test_a_case_flows_through_an_outbound_message_to_its_priority_and_reason(sf):
    sandbox, make = sf
    rt, client, notify = make()
    contact = _customer(sandbox)
    case = sandbox.add_case("Charged twice for wifi", "I was billed twice this month.",
                            priority="Low", contact_id=contact)
    resp = notify([case])
    assert resp.status_code == 200
    assert resp.content_type.startswith("text/xml") and b"<Ack>true</Ack>" in resp.data
    work(rt)
    shown = sandbox.case(case)
    view = client.get(f"/api/tickets/{case}", headers=auth()).get_json()
    assert view["state"] == "written"
    assert shown["Priority"] == view["priority"] == rt.settings.desk_priorities("salesforce")[view["tier"]]
    assert shown["Clout_Tier__c"] == view["tier"]
    assert shown["Clout_Reason__c"] == view["reason"]
    assert shown["Clout_Flags__c"] == ";".join(view["flags"])
    assert abs(float(shown["Clout_Score__c"]) - round(view["score"] * 100, 2)) < 0.01
    assert shown["Clout_Priority__c"] == view["priority"]
    assert "RENEWAL_SOON" in view["flags"]  # the contract end came from the org's Contract
    # and the lookup used SOQL IN lists, not one call per record
    queries = [c for c in sandbox.calls if "/query" in c.path]
    assert queries and all(c.method == "GET" for c in queries)


def test_a_redelivered_notification_is_done_once(sf):
    sandbox, make = sf
    rt, client, notify = make()
    case = sandbox.add_case("Login fails", contact_id=_customer(sandbox))
    ids = ["04l5g00000REDELIV"]
    assert notify([case], notification_ids=ids).status_code == 200
    work(rt)
    before = len(_patches(sandbox))
    again = notify([case], notification_ids=ids)  # Salesforce retries the same message
    assert again.status_code == 200 and b"<Ack>true</Ack>" in again.data
    work(rt)
    assert len(_patches(sandbox)) == before
    assert rt.store.event_states(ids) == {ids[0]: "decided"}


def test_a_message_from_another_org_is_refused_and_nothing_is_queued(sf):
    sandbox, make = sf
    rt, client, notify = make()
    case = sandbox.add_case("Hello", contact_id=_customer(sandbox))
    resp = notify([case], org_id="00D5g00000OTHERAAA")
    assert resp.status_code == 401 and resp.get_json()["error"] == "bad_signature"
    assert notify([case], token="whsec_wrong").status_code == 401
    assert rt.queue.count == 0


def test_an_agents_manual_priority_survives(sf):
    sandbox, make = sf
    rt, client, notify = make()
    case = sandbox.add_case("Export broken", priority="Low", contact_id=_customer(sandbox, spend=10))
    notify([case])
    work(rt)
    ours = sandbox.case(case)["Priority"]
    manual = "Low" if ours != "Low" else "High"
    sandbox.update_case(case, Priority=manual, Subject="Export broken, customer chasing")
    notify([case])
    work(rt)
    assert sandbox.case(case)["Priority"] == manual
    view = client.get(f"/api/tickets/{case}", headers=auth()).get_json()
    assert view["state"] == "agent_override"


def test_a_case_changed_without_a_notification_is_picked_up_by_the_poll(sf):
    from plugin.polling import poll

    sandbox, make = sf
    rt, client, notify = make()
    case = sandbox.add_case("Nobody told Clout", priority="Medium", contact_id=_customer(sandbox))
    assert poll(rt, "salesforce")["polled"] >= 1
    work(rt)
    first = client.get(f"/api/tickets/{case}", headers=auth()).get_json()
    assert first["state"] == "written" and sandbox.case(case)["Clout_Tier__c"] == first["tier"]
    watermark = rt.store.desk_state("salesforce")["poll_watermark"]
    assert watermark
    # Changed again, still without a notification: the next poll takes only what changed.
    sandbox.update_case(case, Status="Closed")
    assert poll(rt, "salesforce")["polled"] >= 1
    work(rt)
    assert case not in [t["ticket_id"] for t in client.get("/api/queue", headers=auth()).get_json()["tickets"]]
    assert rt.store.desk_state("salesforce")["poll_watermark"] > watermark


def test_reconcile_queues_the_poll_once_per_interval(sf):
    from plugin.polling import queue_polls

    sandbox, make = sf
    rt, client, notify = make(CLOUT_DESKS__SALESFORCE__POLL_INTERVAL_SECONDS="60")
    assert queue_polls(rt) == ["salesforce"]
    assert queue_polls(rt) == []  # not again within the interval


def test_a_burst_of_1000_cases_costs_at_most_5_update_calls(sf):
    sandbox, make = sf
    rt, client, notify = make(CLOUT_QUEUE__BATCH_SIZE="1000",
                              CLOUT_DESKS__SALESFORCE__FLUSH_WINDOW_MS="500")
    contacts = [_customer(sandbox, name=f"Customer {i}", spend=10.0 + i) for i in range(50)]
    cases = [sandbox.add_case(f"Case {i}", contact_id=contacts[i % 50]) for i in range(1000)]
    sandbox.reset_calls()
    for i in range(0, 1000, 100):  # Salesforce sends at most 100 notifications a message
        assert notify(cases[i:i + 100]).status_code == 200
    work(rt)  # ranks every Case; the writes wait for the flush window
    time.sleep(0.6)
    from plugin.delivery import flush

    flush(rt, "salesforce")
    patches = _patches(sandbox)
    written = sum(len(c.body["records"]) for c in patches)
    assert written == 1000
    queries = [c for c in sandbox.calls if "/query" in c.path]
    print(f"\n1,000-Case burst: {len(patches)} sObject Collections update call(s) for {written} "
          f"records; {len(queries)} SOQL quer(ies); {len(sandbox.calls)} calls in all")
    assert len(patches) <= 5, len(patches)
    assert all(sandbox.case(c)["Clout_Tier__c"] for c in cases[:: 97])


def test_locked_rows_are_retried_and_a_request_limit_pauses_the_desk(sf):
    from plugin.delivery import flush

    sandbox, make = sf
    rt, client, notify = make()
    contact = _customer(sandbox)
    locked, fine = (sandbox.add_case("Locked", contact_id=contact),
                    sandbox.add_case("Fine", contact_id=contact))
    sandbox.fail_record(locked, "UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access", times=1)
    notify([locked, fine])
    work(rt)
    assert sandbox.case(fine)["Clout_Tier__c"]
    view = client.get(f"/api/tickets/{locked}", headers=auth()).get_json()
    assert view["state"] == "pending" and "UNABLE_TO_LOCK_ROW" in view["write_error"]
    time.sleep(1.2)
    flush(rt, "salesforce")
    assert client.get(f"/api/tickets/{locked}", headers=auth()).get_json()["state"] == "written"



def test_the_orgs_request_limit_pauses_the_desks_writes_without_failing_anything(sf):
    from plugin.delivery import flush

    sandbox, make = sf
    rt, client, notify = make(CLOUT_DESKS__SALESFORCE__FLUSH_WINDOW_MS="60000")
    case = sandbox.add_case("Later", contact_id=_customer(sandbox))
    notify([case])
    work(rt)  # ranked; the write waits for the flush window
    from plugin.store import utcnow, writes

    with rt.store.engine.begin() as conn:  # the flush window has passed
        conn.execute(writes.update().values(next_attempt_at=utcnow()))
    sandbox.fail_next(3, 403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
    result = flush(rt, "salesforce", ticket_ids=[case])
    assert result == {"retry": 1}
    calls = len(sandbox.calls)
    assert flush(rt, "salesforce") == {"paused": 1}  # every writer of this desk holds off
    assert len(sandbox.calls) == calls  # nothing hammered
    view = client.get(f"/api/tickets/{case}", headers=auth()).get_json()
    assert view["state"] == "pending" and "REQUEST_LIMIT_EXCEEDED" in view["write_error"]
    assert "paused_until" in rt.store.desk_state("salesforce")
    assert rt.store.parked() == {"writes": [], "events": []}


def test_a_request_limit_during_the_lookup_defers_the_events(sf):
    sandbox, make = sf
    rt, client, notify = make()
    case = sandbox.add_case("Lookup limited", contact_id=_customer(sandbox))
    sandbox.fail_next(2, 403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
    ids = ["04l5g00000LIMITED"]
    notify([case], notification_ids=ids)
    work(rt)
    assert rt.store.event_states(ids) == {ids[0]: "pending"}  # waiting, not failed


def test_an_expired_session_is_renewed_once(sf):
    """Password login: simple-salesforce logs in itself, and Clout logs in again on a 401."""
    sandbox, make = sf
    rt, client, notify = make(CLOUT_SALESFORCE_SESSION_ID=None,
                              CLOUT_SALESFORCE_USERNAME=sandbox.username,
                              CLOUT_SALESFORCE_PASSWORD=sandbox.password,
                              CLOUT_SALESFORCE_SECURITY_TOKEN=sandbox.security_token)
    case = sandbox.add_case("First", contact_id=_customer(sandbox))
    notify([case])
    work(rt)
    logins = [c for c in sandbox.calls if "/Soap/u/" in c.path]
    assert len(logins) == 1
    sandbox.expire_sessions()
    second = sandbox.add_case("Second", contact_id=_customer(sandbox, name="Bo"))
    notify([second])
    work(rt)
    assert client.get(f"/api/tickets/{second}", headers=auth()).get_json()["state"] == "written"
    assert len([c for c in sandbox.calls if "/Soap/u/" in c.path]) == 2


def test_readyz_shows_the_orgs_api_usage(sf):
    sandbox, make = sf
    rt, client, notify = make()
    notify([sandbox.add_case("Usage", contact_id=_customer(sandbox))])
    work(rt)
    body = client.get("/readyz").get_json()
    usage = body["desks"]["salesforce"]["api_usage"]
    assert usage["total"] == sandbox.api_total and 0 < usage["used"] <= sandbox.api_used


def test_a_signed_json_callout_is_accepted_on_the_salesforce_path(sf):
    """The Flow/Apex callout flavour: Clout's generic event, Standard Webhooks signature."""
    import json

    from conftest import standard_webhook_headers

    sandbox, make = sf
    rt, client, notify = make()
    contact = _customer(sandbox)
    case = sandbox.add_case("From an Apex callout", contact_id=contact)
    body = json.dumps({"event_id": f"apex-{uuid.uuid4().hex}",
                       "occurred_at": dt.datetime.now(dt.timezone.utc).isoformat(),
                       "ticket": {"id": case, "subject": "From an Apex callout"},
                       "customer": {"id": contact}}).encode()
    resp = client.post("/webhooks/salesforce", data=body,
                       headers=standard_webhook_headers(SF_SECRET, f"msg_{uuid.uuid4().hex}", body))
    assert resp.status_code == 202 and resp.get_json()["status"] == "queued"
    work(rt)
    assert sandbox.case(case)["Clout_Tier__c"]
    assert client.get(f"/api/tickets/{case}?source=salesforce", headers=auth()).get_json()["state"] == "written"


def test_no_ack_unless_every_notification_is_queued(sf, base_env):
    """Redis away: 503 and no SOAP Ack, so Salesforce keeps the message and retries."""
    from plugin import create_app

    sandbox, make = sf
    rt, client, notify = make()
    case = sandbox.add_case("Queue down", contact_id=_customer(sandbox))
    env = {**base_env, "REDIS_URL": "redis://127.0.0.1:1/0",
           "CLOUT_DESKS__SALESFORCE__ENABLED": "true",
           "CLOUT_DESKS__SALESFORCE__ORGANIZATION_ID": sandbox.org_id,
           "CLOUT_WEBHOOK_SECRET_SALESFORCE": SF_SECRET}
    down = Runtime(load_settings(env))
    try:
        resp = create_app(runtime=down).test_client().post(
            f"/webhooks/salesforce?token={quote(SF_SECRET, safe='')}",
            data=sandbox.outbound_message([case]), headers={"Content-Type": "text/xml"})
    finally:
        down.close()
    assert resp.status_code == 503 and b"<Ack>" not in resp.data
    assert resp.get_json()["error"] == "queue_unavailable"
    assert notify([case]).status_code == 200  # Salesforce's retry, once the queue is back


def test_missing_credentials_stop_start_up_with_a_clear_message(base_env, tmp_path):
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUT_")}
    env.update(base_env, CLOUT_DESKS__SALESFORCE__ENABLED="true",
               CLOUT_DESKS__SALESFORCE__ORGANIZATION_ID="00D5g00000CLOUTAAA",
               CLOUT_WEBHOOK_SECRET_SALESFORCE=SF_SECRET)
    proc = subprocess.run([sys.executable, "-m", "plugin.cli", "worker", "--burst"], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "desks.salesforce: Salesforce credentials missing" in proc.stderr
    assert "Traceback" not in proc.stderr
