"""The Salesforce desk connector against the HTTPS stand-in org, with the real simple-salesforce.

Nothing is mocked: the sandbox (connectors/crm/salesforce_sandbox.py) is a TLS server that
speaks the REST, SOAP-login and OAuth endpoints, records every call and injects faults, and
its session routes login.salesforce.com to it, so all three login flows run for real.
"""

from __future__ import annotations

import datetime as dt
import logging
import socket
import time

import pytest
from pydantic import ValidationError

from connectors.crm import CLOSED, OPEN, Decision, DeskUnavailable
from connectors.crm.salesforce import (LIMIT_PAUSE_SECONDS, SalesforceSettings, connect,
                                       soql_datetime, soql_literal)
from connectors.crm.salesforce_sandbox import SalesforceSandbox

ORG = "00D5g00000CLOUTAAA"


@pytest.fixture()
def sb():
    sandbox = SalesforceSandbox(org_id=ORG).start()
    yield sandbox
    sandbox.stop()


def _settings(sb, **kw) -> SalesforceSettings:
    return SalesforceSettings(**{"enabled": True, "organization_id": ORG, "instance_url": sb.url,
                                 **kw})


def _password(sb) -> dict[str, str]:
    return {"username": sb.username, "password": sb.password, "security_token": sb.security_token}


def _desk(sb, secrets: dict[str, str] | None = None, **kw):
    secrets = secrets if secrets is not None else {"session_id": sb.issue_session()}
    return connect(_settings(sb, **kw), secrets, store=None, session=sb.session())


def _logins(sb) -> list:
    return [c for c in sb.calls
            if "/services/Soap/u/" in c.path or c.path.endswith("/oauth2/token")]


def _queries(sb) -> list:
    return [c for c in sb.calls if c.method == "GET" and "/query" in c.path]


def _patches(sb) -> list:
    return [c for c in sb.calls if c.method == "PATCH" and c.path.rstrip("/").endswith(
        "composite/sobjects")]


def _decision(ticket_id: str, n: int = 1, **kw) -> Decision:
    values = dict(source="salesforce", ticket_id=ticket_id, customer_id="003000000000001AAA",
                  tier="urgent", priority="High", score=0.8734, flags=("VIP", "INFLUENCER"),
                  reason="Spends $9k/month; contract ends in 12 days", components={},
                  weights_version="w1", decided_at="2026-11-30T10:00:00+00:00", id=str(n))
    values.update(kw)
    return Decision(**values)


# -- auth ----------------------------------------------------------------------------------------


def test_session_id_auth_never_logs_in(sb):
    case = sb.add_case("Printer on fire")
    desk = _desk(sb)
    assert sb.calls == []  # lazy: nothing until the first call
    assert desk.read_tickets([case])[case].status == OPEN
    assert _logins(sb) == []


def test_password_login_happens_once_on_first_use(sb):
    case = sb.add_case("Help")
    desk = _desk(sb, _password(sb))
    assert sb.calls == []
    desk.read_tickets([case])
    desk.read_tickets([case])
    logins = _logins(sb)
    assert len(logins) == 1 and "/services/Soap/u/59.0" in logins[0].path


def test_jwt_bearer_login_with_a_generated_key(sb, tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = tmp_path / "clout.key"
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    case = sb.add_case("Help")
    desk = _desk(sb, {"consumer_key": sb.consumer_key, "username": sb.username,
                      "private_key_file": str(pem)})
    assert desk.read_tickets([case])[case].priority == "Medium"
    assert [c.path for c in _logins(sb)] == ["/services/oauth2/token"]


def test_missing_credentials_name_the_variables_never_the_values(sb):
    with pytest.raises(ValueError) as err:
        _desk(sb, {"password": "hunter2-very-secret"})
    text = str(err.value)
    assert "CLOUT_SALESFORCE_SESSION_ID" in text and "CLOUT_SALESFORCE_SECURITY_TOKEN" in text
    assert "CLOUT_SALESFORCE_PRIVATE_KEY_FILE" in text and "hunter2" not in text
    with pytest.raises(ValueError, match="CLOUT_SALESFORCE_PRIVATE_KEY_FILE does not name a file"):
        _desk(sb, {"consumer_key": "k", "username": "u", "private_key_file": "/nonexistent.pem"})
    with pytest.raises(ValueError, match="instance_url"):
        connect(SalesforceSettings(), {"session_id": "00Dxx!abc"}, store=None, session=sb.session())


def test_a_wrong_password_makes_the_desk_unavailable_without_echoing_it(sb):
    desk = _desk(sb, {**_password(sb), "password": "not-the-password"})
    with pytest.raises(DeskUnavailable) as err:
        desk.read_tickets([sb.add_case("x")])
    assert "login failed" in str(err.value) and "not-the-password" not in str(err.value)


# -- customers -----------------------------------------------------------------------------------


def test_fetch_customers_contacts_and_account_only_customers(sb):
    big = sb.add_account("Big Co", monthly_spend=9000.0)
    sb.add_contract(big, "2026-12-31")
    sb.add_contract(big, "2027-06-30")  # the latest Activated one counts
    sb.add_contract(big, "2029-01-01", status="Draft")  # not activated: ignored
    small = sb.add_account("Small Co")
    ann = sb.add_contact("Ann Example", "ann@example.com", big,
                         handles={"x": "ann_x", "github": "ann-gh"})
    bob = sb.add_contact("Bob Example", None, None)
    got = _desk(sb).fetch_customers([ann, bob, big, small, ann[:15], "not-an-id'", "003ZZZ"])

    a = got[ann]
    assert (a.name, a.email, a.handles) == ("Ann Example", "ann@example.com",
                                            {"x": "ann_x", "github": "ann-gh"})
    assert (a.monthly_spend, a.currency, a.contract_end) == (9000.0, "USD", "2027-06-30")
    assert got[ann[:15]].id == ann[:15]  # the 15-char form finds the same contact
    assert got[bob].monthly_spend is None and got[bob].contract_end is None
    assert got[bob].currency is None and got[bob].handles == {}
    b = got[big]
    assert (b.name, b.email, b.monthly_spend, b.contract_end) == ("Big Co", None, 9000.0,
                                                                 "2027-06-30")
    assert got[small].monthly_spend is None and got[small].contract_end is None
    assert set(got) == {ann, ann[:15], bob, big, small}  # bad and unknown ids are simply absent


def test_fetch_customers_costs_two_queries_per_200_ids(sb):
    accounts = [sb.add_account(f"Acct {i}", monthly_spend=100.0 + i) for i in range(200)]
    for acc in accounts[:50]:
        sb.add_contract(acc, "2027-01-31")
    contacts = [sb.add_contact(f"Person {i}", f"p{i}@example.com", accounts[i % 200])
                for i in range(400)]
    desk = _desk(sb)

    sb.reset_calls()
    got = desk.fetch_customers(contacts[:200])
    assert len(got) == 200 and len(_queries(sb)) == 2  # Contacts, then their Contracts
    assert got[contacts[0]].contract_end == "2027-01-31"
    assert got[contacts[199]].monthly_spend == 100.0 + 199

    sb.reset_calls()
    assert len(desk.fetch_customers(accounts)) == 200 and len(_queries(sb)) == 2

    sb.reset_calls()
    # 400 contacts: two Contact queries; their 200 accounts: one Contract query.
    assert len(desk.fetch_customers(contacts)) == 400 and len(_queries(sb)) == 3
    for call in _queries(sb):
        in_list = call.query["q"].split(" IN (", 1)[1].split(")", 1)[0]
        assert in_list.count(",") < 200  # IN lists of at most 200 ids

    sb.reset_calls()  # a mixed batch: Contacts, Accounts, then one Contract query for both
    assert len(desk.fetch_customers(contacts[:100] + accounts[:100])) == 200
    assert len(_queries(sb)) == 3


def test_account_currency_field_and_default_currency(sb):
    eur = sb.add_account("Euro Co", monthly_spend=500.0, currency="EUR")
    plain = sb.add_account("Plain Co", monthly_spend=10.0)
    fields = {"account_currency_field": "CurrencyIsoCode", "default_currency": "GBP"}
    got = _desk(sb, fields=fields).fetch_customers([eur, plain])
    assert (got[eur].currency, got[plain].currency) == ("EUR", "GBP")


def test_soql_datetime_literals():
    when = dt.datetime(2026, 11, 30, 11, 0, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert soql_datetime(when) == "2026-11-30T10:00:00Z"
    assert soql_datetime(when.replace(microsecond=285_000)) == "2026-11-30T10:00:00.285Z"


def test_soql_literals_are_escaped():
    assert soql_literal("O'Brien \\ co") == "'O\\'Brien \\\\ co'"
    assert soql_literal("a\nb") == "'a\\nb'"


def test_invalid_ids_never_reach_soql(sb):
    desk = _desk(sb)
    assert desk.read_tickets(["x' OR Id != '", "500", ""]) == {}
    assert desk.fetch_customers(["003' OR Name != '"]) == {}
    assert _queries(sb) == []


# -- tickets and writes --------------------------------------------------------------------------


def test_read_tickets(sb):
    open_case = sb.add_case("Open", priority="Low")
    closed = sb.add_case("Done", status="Closed")
    sb.update_case(open_case, Clout_Priority__c="High", Clout_Decision_Id__c="42")
    got = _desk(sb).read_tickets([open_case, closed, "500000000000000AAA"])
    assert got[open_case].status == OPEN and got[open_case].priority == "Low"
    assert (got[open_case].clout_priority, got[open_case].clout_decision) == ("High", "42")
    assert got[closed].status == CLOSED and got[closed].clout_decision is None
    assert set(got) == {open_case, closed}


def test_a_thousand_decisions_cost_five_collection_calls(sb):
    cases = [sb.add_case(f"Case {i}") for i in range(1000)]
    desk = _desk(sb)
    assert desk.max_batch == 200
    sb.reset_calls()
    written: list[str] = []
    decisions = [_decision(c, n=i, flags=("VIP", "X" * 300), reason="r" * 400)
                 for i, c in enumerate(cases)]
    for start in range(0, len(decisions), desk.max_batch):  # as the glue calls it
        result = desk.write_decisions(decisions[start:start + desk.max_batch])
        assert result.failed == {}
        written += result.written
    assert sorted(written) == sorted(cases)
    patches = _patches(sb)
    assert len(patches) == 5 and len(sb.calls) == 5
    body = patches[0].body
    assert body["allOrNone"] is False and len(body["records"]) == 200
    assert body["records"][0]["attributes"] == {"type": "Case"}
    case = sb.case(cases[7])
    assert case["Priority"] == "High" and case["Clout_Priority__c"] == "High"
    assert case["Clout_Score__c"] == 87.34 and case["Clout_Tier__c"] == "urgent"
    assert case["Clout_Flags__c"] == "VIP"  # a flag that doesn't fit is dropped whole
    assert len(case["Clout_Reason__c"]) == 255 and case["Clout_Reason__c"].endswith("…")
    assert case["Clout_Decision_Id__c"] == "7"
    assert desk.read_tickets([cases[7]])[cases[7]].clout_decision == "7"


def test_more_than_200_in_one_call_are_split(sb):
    cases = [sb.add_case(f"Case {i}") for i in range(450)]
    desk = _desk(sb)
    sb.reset_calls()
    result = desk.write_decisions([_decision(c) for c in cases])
    assert len(result.written) == 450 and [len(c.body["records"]) for c in _patches(sb)] == [
        200, 200, 50]


def test_mixed_per_record_results(sb):
    ok1, locked, ok2 = (sb.add_case(f"Case {i}") for i in range(3))
    gone = "500" + "9" * 15  # well-formed, but no such Case (deleted)
    sb.fail_record(locked, "UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access")
    desk = _desk(sb)
    result = desk.write_decisions([
        _decision(ok1, n=1), _decision(locked, n=2), _decision(gone, n=3),
        _decision(ok2, n=4, priority="Low"), _decision(ok2, n=5, priority="Medium"),  # last wins
        _decision("not an id", n=6)])
    assert sorted(result.written) == sorted([ok1, ok2])
    assert result.failed[locked].retryable
    assert result.failed[locked].message == "Salesforce refused the update: UNABLE_TO_LOCK_ROW"
    assert not result.failed[gone].retryable
    assert result.failed[gone].message.startswith("Salesforce refused the update: ")
    assert not result.failed["not an id"].retryable
    assert sb.case(ok2)["Priority"] == "Medium" and sb.case(ok2)["Clout_Decision_Id__c"] == "5"
    assert len(_patches(sb)[0].body["records"]) == 4  # the duplicate sent once, the bad id never
    # The lock clears: the retry goes through.
    assert desk.write_decisions([_decision(locked, n=2)]).written == (locked,)


def test_a_refused_whole_call_fails_every_record_for_good(sb):
    cases = [sb.add_case("a"), sb.add_case("b")]
    desk = _desk(sb)
    desk.read_tickets(cases)
    sb.fail_next(1, 400, "MALFORMED_ID", "Case ID: id value of incorrect type: 500xx")
    result = desk.write_decisions([_decision(c) for c in cases])
    assert result.written == ()
    for why in result.failed.values():
        assert not why.retryable
        assert why.message == "Salesforce refused the update: MALFORMED_ID (HTTP 400)"


# -- sessions, limits, outages -------------------------------------------------------------------


def test_an_expired_session_costs_exactly_one_login(sb):
    case = sb.add_case("x")
    desk = _desk(sb, _password(sb))
    desk.read_tickets([case])
    sb.expire_sessions()
    assert desk.write_decisions([_decision(case)]).written == (case,)
    assert len(_logins(sb)) == 2  # the first login and one re-login
    assert [c.status for c in _patches(sb)] == [401, 200]


def test_a_401_that_persists_makes_the_desk_unavailable(sb):
    case = sb.add_case("x")
    desk = _desk(sb, _password(sb))
    desk.read_tickets([case])
    sb.fail_next(10, 401, "INVALID_SESSION_ID", "Session expired or invalid")
    with pytest.raises(DeskUnavailable, match="INVALID_SESSION_ID"):
        desk.write_decisions([_decision(case)])
    assert len(_logins(sb)) == 2 and len(_patches(sb)) == 2  # one re-login, one retry


def test_an_expired_fixed_session_id_is_unavailable_at_once(sb):
    case = sb.add_case("x")
    desk = _desk(sb)
    sb.expire_sessions()
    with pytest.raises(DeskUnavailable, match="CLOUT_SALESFORCE_SESSION_ID"):
        desk.read_tickets([case])
    assert _logins(sb) == [] and len(_queries(sb)) == 1


def test_the_api_limit_pauses_the_desk(sb):
    case = sb.add_case("x")
    desk = _desk(sb)
    sb.fail_next(1, 403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
    with pytest.raises(DeskUnavailable) as err:
        desk.write_decisions([_decision(case)])
    assert err.value.retry_after == LIMIT_PAUSE_SECONDS == 300
    assert "REQUEST_LIMIT_EXCEEDED" in str(err.value)


def test_5xx_and_unreachable_are_outages_whose_texts_carry_no_urls_or_secrets(sb):
    case = sb.add_case("x")
    session_id = sb.issue_session()
    desk = _desk(sb, {"session_id": session_id})
    sb.fail_next(1, 503, "SERVER_UNAVAILABLE", "try later")
    with pytest.raises(DeskUnavailable) as err:
        desk.read_tickets([case])
    assert "503" in str(err.value)
    texts = [str(err.value)]
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    gone = connect(_settings(sb, instance_url=f"https://127.0.0.1:{port}"),
                   {"session_id": session_id}, store=None, session=sb.session())
    for call in (lambda: gone.read_tickets([case]),
                 lambda: gone.write_decisions([_decision(case)])):
        with pytest.raises(DeskUnavailable) as err:
            call()
        texts.append(str(err.value))
    for text in texts:
        assert "://" not in text and "127.0.0.1" not in text and session_id not in text
        assert case not in text


def test_api_usage_follows_the_latest_call(sb):
    case = sb.add_case("x")
    desk = _desk(sb)
    assert desk.api_usage() is None
    desk.read_tickets([case])
    desk.write_decisions([_decision(case)])
    assert desk.api_usage() == {"used": sb.api_used, "total": 15000}
    assert sb.api_used >= 2


# -- polling -------------------------------------------------------------------------------------


def test_poll_changes_over_three_pages_then_nothing_new(sb):
    small = SalesforceSandbox(org_id=ORG, page_size=2).start()
    try:
        since = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=5)).isoformat()
        contact = small.add_contact("Ann", "ann@example.com", None)
        cases = [small.add_case(f"Case {i}", contact_id=contact) for i in range(5)]
        desk = _desk(small)
        small.reset_calls()
        events, mark = desk.poll_changes(since, limit=100)
        assert [e.ticket_id for e in events] == cases
        assert len(_queries(small)) == 3  # the query and two nextRecordsUrl pages
        q = _queries(small)[0].query["q"]
        assert "LastModifiedDate >" in q and "ORDER BY LastModifiedDate ASC LIMIT 100" in q
        first = events[0]
        assert first.source == "salesforce" and first.customer.id == contact
        assert first.event_id == f"poll:{cases[0]}:{small.case(cases[0])['LastModifiedDate']}"
        assert mark == small.case(cases[-1])["LastModifiedDate"]

        assert desk.poll_changes(mark, limit=100) == ([], mark)
        time.sleep(1.1)  # Salesforce keeps whole seconds
        small.update_case(cases[2], Priority="High")
        events, mark2 = desk.poll_changes(mark, limit=100)
        assert [(e.ticket_id, e.desk_priority) for e in events] == [(cases[2], "High")]
        assert mark2 == small.case(cases[2])["LastModifiedDate"] and mark2 != mark
    finally:
        small.stop()


def test_a_small_limit_walks_through_every_change_once(sb):
    since = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=5)).isoformat()
    account = sb.add_account("Co")
    cases = [sb.add_case(f"Case {i}", account_id=account) for i in range(5)]
    desk = _desk(sb)
    seen: list[str] = []
    for _ in range(5):
        events, since = desk.poll_changes(since, limit=2)
        seen += [e.ticket_id for e in events]
    assert seen == cases


def test_poll_skips_a_case_the_webhook_mapping_refuses(sb, caplog):
    since = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=5)).isoformat()
    orphan = sb.add_case("No customer", description="secret details")  # no contact, no account
    good = sb.add_case("Fine", account_id=sb.add_account("Co"))
    with caplog.at_level(logging.WARNING):
        events, mark = _desk(sb).poll_changes(since, limit=10)
    assert [e.ticket_id for e in events] == [good]
    assert mark == sb.case(good)["LastModifiedDate"]
    assert orphan in caplog.text and "secret details" not in caplog.text


def test_first_poll_looks_back_two_intervals(sb):
    case = sb.add_case("x", contact_id=sb.add_contact("Ann", None, None))
    events, mark = _desk(sb, poll_interval_seconds=60).poll_changes(None, limit=10)
    assert [e.ticket_id for e in events] == [case] and mark


# -- settings ------------------------------------------------------------------------------------


@pytest.mark.parametrize("values, problem", [
    ({"enabled": True}, "organization_id is required"),
    ({"organization_id": "00D5g00000CLOUT"[:14]}, "15- or 18-character"),
    ({"organization_id": "00D5g00000CLOUT-AA"}, "15- or 18-character"),
    ({"instance_url": "http://example.my.salesforce.com"}, "https"),
    ({"api_version": "v59.0"}, "59.0"),
    ({"fields": {"case_score": "Clout Score"}}, "not a Salesforce API name"),
    ({"fields": {"contact_handles": {"myspace": "X__c"}}}, "unknown network"),
    ({"unknown_key": 1}, "Extra inputs"),
])
def test_settings_validation(values, problem):
    with pytest.raises(ValidationError, match=problem):
        SalesforceSettings.model_validate(values)


def test_settings_defaults():
    s = SalesforceSettings.model_validate({"enabled": True, "organization_id": ORG[:15],
                                           "api_version": 60.0})
    assert s.api_version == "60.0" and s.flush_window_ms == 500 and s.domain == "login"
    assert s.priorities == {"urgent": "High", "high": "High", "normal": "Medium", "low": "Low"}
    assert s.fields.case_clout_decision_id == "Clout_Decision_Id__c"
    assert s.fields.contact_handles["github"] == "Clout_GitHub_Handle__c"
    assert set(SalesforceSettings.secret_env) == {"username", "password", "security_token",
                                                  "consumer_key", "private_key_file", "session_id"}
