"""The Salesforce sandbox, driven by the real simple-salesforce client over real TLS."""

from __future__ import annotations

import os
import threading
from datetime import datetime, timezone

import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (SalesforceAuthenticationFailed, SalesforceExpiredSession,
                                          SalesforceMalformedRequest, SalesforceRefusedRequest,
                                          SalesforceResourceNotFound)

from connectors.crm.salesforce_sandbox import Call, SalesforceSandbox

SOAPENV = "{http://schemas.xmlsoap.org/soap/envelope/}"
OUTBOUND = "{http://soap.sforce.com/2005/09/outbound}"
SF = "{urn:sobject.enterprise.soap.sforce.com}"
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"
XSI_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"


@pytest.fixture
def sb():
    sandbox = SalesforceSandbox(page_size=2).start()
    yield sandbox
    sandbox.stop()


@pytest.fixture
def org(sb: SalesforceSandbox) -> dict[str, str]:
    acct = sb.add_account("Acme Corp", monthly_spend=1250.5, currency="EUR")
    ada = sb.add_contact("Ada Lovelace", "ada@example.com", acct, {"x": "ada", "github": "adal"})
    lone = sb.add_contact("Solo", None, None)
    sb.add_contract(acct, "2027-03-31")
    sb.add_contract(acct, "2026-01-31", status="Draft")
    cases = [sb.add_case(f"Case {i}", description="printer on fire", contact_id=ada,
                         account_id=acct) for i in range(5)]
    return {"acct": acct, "ada": ada, "lone": lone, **{f"case{i}": c for i, c in enumerate(cases)}}


def direct(sb: SalesforceSandbox) -> Salesforce:
    return Salesforce(instance_url=sb.url, session_id=sb.issue_session(), session=sb.session(),
                      version="59.0")


def _case(case_id: str, **fields) -> dict:
    return {"attributes": {"type": "Case"}, "id": case_id, **fields}


def test_query_all_follows_next_records_url_over_three_pages(sb, org):
    sf = direct(sb)
    result = sf.query_all("SELECT Id, Subject FROM Case ORDER BY CreatedDate")
    assert result["totalSize"] == 5 and result["done"] is True
    assert [r["Subject"] for r in result["records"]] == [f"Case {i}" for i in range(5)]
    assert result["records"][0]["attributes"] == {
        "type": "Case", "url": f"/services/data/v59.0/sobjects/Case/{org['case0']}"}
    assert [(c.method, c.path) for c in sb.calls] == [
        ("GET", "/services/data/v59.0/query/"),
        ("GET", "/services/data/v59.0/query/01gSANDBOX1-2"),
        ("GET", "/services/data/v59.0/query/01gSANDBOX1-4")]
    first = sf.query("SELECT Id FROM Case")
    assert first["done"] is False and first["totalSize"] == 5 and len(first["records"]) == 2
    assert first["nextRecordsUrl"] == "/services/data/v59.0/query/01gSANDBOX2-2"


def test_record_shapes_relationships_dates_and_filters(sb, org):
    sf = direct(sb)
    sb.update_case(org["case1"], Status="Closed",
                   LastModifiedDate=datetime(2001, 11, 30, 10, 0, tzinfo=timezone.utc))
    rec = sf.query(f"SELECT Id, IsClosed, Status, LastModifiedDate, Account.Name FROM Case "
                   f"WHERE Id = '{org['case1'][:15]}'")["records"][0]
    assert rec["IsClosed"] is True and rec["LastModifiedDate"] == "2001-11-30T10:00:00.000+0000"
    assert rec["Account"]["Name"] == "Acme Corp"
    assert rec["Account"]["attributes"]["type"] == "Account"

    contacts = sf.query(
        "SELECT Id, Name, Email, Clout_X_Handle__c, Account.Clout_Monthly_Spend__c, Account.Name, "
        f"Account.CurrencyIsoCode FROM Contact WHERE Id IN ('{org['ada']}', '{org['lone']}') "
        "ORDER BY Name DESC")["records"]
    assert [c["Name"] for c in contacts] == ["Solo", "Ada Lovelace"]
    assert contacts[0]["Account"] is None
    assert contacts[1]["Account"]["Clout_Monthly_Spend__c"] == 1250.5
    assert list(contacts[1]["Account"]) == ["attributes", "Clout_Monthly_Spend__c", "Name",
                                            "CurrencyIsoCode"]

    soql = ("SELECT AccountId, EndDate FROM Contract "
            f"WHERE AccountId IN ('{org['acct']}') AND Status = 'Activated'")
    contracts = sf.query(soql)["records"]
    assert [c["EndDate"] for c in contracts] == ["2027-03-31"]

    assert sf.query("SELECT Id FROM Case WHERE IsClosed = false")["totalSize"] == 4
    newer = sf.query("SELECT Id FROM Case WHERE LastModifiedDate > 2001-11-30T10:00:00Z "
                     "AND LastModifiedDate >= 2001-11-30T11:00:00.000+01:00 LIMIT 3")
    assert newer["totalSize"] == 3
    old = sf.query("SELECT Id FROM Case WHERE LastModifiedDate <= 2001-11-30T10:00:00Z")["records"]
    assert [r["Id"] for r in old] == [org["case1"]]


@pytest.mark.parametrize("soql, code", [
    ("SELECT Id, Nope__c FROM Case", "INVALID_FIELD"),
    ("SELECT Id, Owner.Name FROM Case", "INVALID_FIELD"),
    ("SELECT Id FROM Case WHERE Description = 'x'", "INVALID_FIELD"),
    ("SELECT Id FROM Widget", "INVALID_TYPE"),
    ("SELECT Id FROM Case WHERE", "MALFORMED_QUERY"),
    ("SELECT Id FROM Case WHERE Subject = 'x' OR Subject = 'y'", "MALFORMED_QUERY"),
    ("SELECT Id FROM Case WHERE Id IN ()", "MALFORMED_QUERY"),
    # REST's own datetime form is not a SOQL literal; quoted datetimes are strings
    ("SELECT Id FROM Case WHERE LastModifiedDate > 2026-11-30T10:00:00.000+0000",
     "MALFORMED_QUERY"),
    ("SELECT Id FROM Case WHERE LastModifiedDate > '2026-11-30T10:00:00Z'",
     "INVALID_QUERY_FILTER_OPERATOR"),
    ("SELECT Id FROM Case WHERE Id = 'not-an-id'", "INVALID_QUERY_FILTER_OPERATOR"),
])
def test_soql_errors(sb, soql, code):
    with pytest.raises(SalesforceMalformedRequest) as err:
        direct(sb).query(soql)
    assert err.value.status == 400
    assert err.value.content[0]["errorCode"] == code
    assert "message" in err.value.content[0]


def test_invalid_field_message_points_at_the_field(sb):
    with pytest.raises(SalesforceMalformedRequest) as err:
        direct(sb).query("SELECT Id, Nope__c FROM Case")
    assert err.value.content[0]["message"].startswith(
        "\nSELECT Id, Nope__c FROM Case\n           ^\nERROR at Row:1:Column:12\n"
        "No such column 'Nope__c'")


def test_composite_sobjects_mixed_results(sb, org):
    sf = direct(sb)
    before = sb.case(org["case0"])["LastModifiedDate"]
    sb.fail_record(org["case2"], "UNABLE_TO_LOCK_ROW",
                   "unable to obtain exclusive access to this record")
    body = {"allOrNone": False, "records": [
        _case(org["case0"], Priority="High", Clout_Score__c=87.5, Clout_Tier__c="urgent",
              Clout_Priority__c="High", Clout_Decision_Id__c="d-1"),
        _case("5005g00000ZZZZZ", Priority="High"),
        _case(org["case1"], Nope__c="x"),
        _case(org["case2"], Priority="Low"),
        _case(org["case3"], Priority="Urgent"),
        _case("garbage", Priority="Low"),
    ]}
    results = sf.restful("composite/sobjects", method="PATCH", json=body)
    assert [r["success"] for r in results] == [True, False, False, False, False, False]
    assert results[0] == {"id": org["case0"], "success": True, "errors": []}
    codes = [r["errors"][0]["statusCode"] for r in results[1:]]
    assert codes == ["ENTITY_IS_DELETED", "INVALID_FIELD", "UNABLE_TO_LOCK_ROW",
                     "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", "MALFORMED_ID"]
    assert results[2]["errors"][0] == {
        "statusCode": "INVALID_FIELD", "fields": ["Nope__c"],
        "message": "No such column 'Nope__c' on sobject of type Case"}
    after = sb.case(org["case0"])
    assert after["Priority"] == "High" and after["Clout_Score__c"] == 87.5
    assert after["Clout_Decision_Id__c"] == "d-1" and after["LastModifiedDate"] > before
    assert sb.case(org["case2"])["Priority"] == "Medium"
    # the injected failure was used up
    again = sf.restful("composite/sobjects", method="PATCH",
                       json={"allOrNone": False, "records": [_case(org["case2"], Priority="Low")]})
    assert again[0]["success"] is True and sb.case(org["case2"])["Priority"] == "Low"
    assert sb.calls[0].body == body and sb.calls[0].method == "PATCH"


def test_composite_all_or_none_and_200_record_limit(sb, org):
    sf = direct(sb)
    results = sf.restful("composite/sobjects", method="PATCH", json={"allOrNone": True, "records": [
        _case(org["case0"], Priority="Low"), _case(org["case1"], IsClosed=True)]})
    assert results[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert results[1]["errors"][0]["statusCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"
    assert sb.case(org["case0"])["Priority"] == "Medium"
    with pytest.raises(SalesforceMalformedRequest) as err:
        sf.restful("composite/sobjects", method="PATCH", json={
            "allOrNone": False, "records": [_case(org["case0"], Priority="Low")] * 201})
    assert err.value.content[0]["errorCode"] == "EXCEEDED_ID_LIMIT"


def test_single_record_get_and_patch(sb, org):
    sf = direct(sb)
    case = sf.Case
    assert case.update(org["case0"], {"Priority": "Low", "Clout_Flags__c": "VIP;INFLUENCER"}) == 204
    got = case.get(org["case0"])
    assert got["Priority"] == "Low" and got["Clout_Flags__c"] == "VIP;INFLUENCER"
    assert got["attributes"]["type"] == "Case" and got["IsClosed"] is False
    assert case.api_usage["api-usage"].used == sb.api_used
    with pytest.raises(SalesforceResourceNotFound):
        case.get("5005g00000ZZZZZ")
    with pytest.raises(SalesforceMalformedRequest) as err:
        case.update(org["case0"], {"Clout_Tier__c": "x" * 21})
    assert err.value.content[0]["errorCode"] == "STRING_TOO_LONG"
    assert sf.limits()["DailyApiRequests"]["Max"] == 15000


def test_expired_session_in_direct_mode(sb, org):
    sf = direct(sb)
    sf.query("SELECT Id FROM Account")
    sb.expire_sessions()
    with pytest.raises(SalesforceExpiredSession) as err:
        sf.query("SELECT Id FROM Account")
    assert err.value.content == [{"message": "Session expired or invalid",
                                  "errorCode": "INVALID_SESSION_ID"}]
    assert sb.calls[-1].status == 401


def test_fail_next_request_limit_exceeded(sb, org):
    sf = direct(sb)
    sb.fail_next(2, 403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
    for _ in range(2):
        with pytest.raises(SalesforceRefusedRequest) as err:
            sf.query("SELECT Id FROM Account")
        assert err.value.content[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"
    assert sf.query("SELECT Id FROM Account")["totalSize"] == 1
    assert [c.status for c in sb.calls] == [403, 403, 200]


def test_api_usage_tracks_the_header_and_the_limit(org):
    with SalesforceSandbox(api_total=3) as sb:
        sf = direct(sb)
        sf.query("SELECT Id FROM Account")
        sf.query("SELECT Id FROM Account")
        assert sf.api_usage["api-usage"].used == 2 == sb.api_used
        assert sf.api_usage["api-usage"].total == 3
        sf.query("SELECT Id FROM Account")
        with pytest.raises(SalesforceRefusedRequest) as err:
            sf.query("SELECT Id FROM Account")
        assert err.value.content[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"


def test_password_login(sb, org):
    sf = Salesforce(username=sb.username, password=sb.password, security_token=sb.security_token,
                    session=sb.session())
    assert sf.sf_instance == sb.url.removeprefix("https://")
    assert sf.query("SELECT Id FROM Case")["totalSize"] == 5
    login = sb.calls[0]
    assert (login.method, login.path, login.status) == ("POST", "/services/Soap/u/59.0", 200)
    assert sb.password not in login.body
    # an expired session makes simple-salesforce log in again on its own
    sb.expire_sessions()
    assert sf.query("SELECT Id FROM Account")["totalSize"] == 1
    assert [c.status for c in sb.calls[-3:]] == [401, 200, 200]
    with pytest.raises(SalesforceAuthenticationFailed) as err:
        Salesforce(username=sb.username, password="wrong", security_token=sb.security_token,
                   session=sb.session(), domain="test")
    assert err.value.code == "INVALID_LOGIN"


def test_jwt_login(sb, org):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    sf = Salesforce(username=sb.username, consumer_key=sb.consumer_key, privatekey=pem,
                    session=sb.session())
    assert sf.sf_instance == sb.url.removeprefix("https://")
    assert sf.query("SELECT Id FROM Contract")["totalSize"] == 2
    assert sb.calls[0].path == "/services/oauth2/token"
    assert sb.calls[0].body["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    # simple-salesforce warns about self-authorising on this (real) error text
    with pytest.raises(SalesforceAuthenticationFailed), pytest.warns(UserWarning):
        Salesforce(username="someone@else.example", consumer_key=sb.consumer_key, privatekey=pem,
                   session=sb.session())


def test_outbound_message_shape(sb, org):
    defused = pytest.importorskip("defusedxml.ElementTree")
    sb.update_case(org["case0"], Subject="Fire <&> \"smoke\"", Clout_Priority__c="High",
                   CreatedDate="2026-11-30T10:00:00Z", LastModifiedDate="2026-11-30T10:05:00.123Z")
    body = sb.outbound_message([org["case0"], org["case1"]], notification_ids=["04l5g00000NOTE1AAA",
                                                                              "04l5g00000NOTE2AAA"])
    root = defused.fromstring(body)
    assert root.tag == f"{SOAPENV}Envelope"
    notes = root.find(f"{SOAPENV}Body/{OUTBOUND}notifications")
    assert [child.tag.removeprefix(OUTBOUND) for child in notes] == [
        "OrganizationId", "ActionId", "SessionId", "EnterpriseUrl", "PartnerUrl",
        "Notification", "Notification"]
    assert notes.find(OUTBOUND + "OrganizationId").text == sb.org_id
    assert notes.find(OUTBOUND + "SessionId").get(XSI_NIL) == "true"
    partner = notes.find(OUTBOUND + "PartnerUrl").text
    assert partner == f"{sb.url}/services/Soap/u/59.0/00D5g00000CLOUT"
    first = notes.findall(OUTBOUND + "Notification")[0]
    assert first.find(OUTBOUND + "Id").text == "04l5g00000NOTE1AAA"
    sobj = first.find(OUTBOUND + "sObject")
    assert sobj.get(XSI_TYPE) == "sf:Case"
    fields = {child.tag.removeprefix(SF): child.text for child in sobj}
    assert fields["Id"] == org["case0"] and len(fields["Id"]) == 18
    assert fields["Subject"] == 'Fire <&> "smoke"'
    assert fields["IsClosed"] == "false" and fields["Clout_Priority__c"] == "High"
    assert fields["CreatedDate"] == "2026-11-30T10:00:00.000Z"
    assert fields["LastModifiedDate"] == "2026-11-30T10:05:00.123Z"
    assert "Clout_Decision_Id__c" not in fields  # empty fields are left out
    assert list(fields)[:4] == ["Id", "CaseNumber", "Subject", "Description"]
    generated = defused.fromstring(sb.outbound_message([org["case0"]]))
    note_id = generated.find(f".//{OUTBOUND}Notification/{OUTBOUND}Id").text
    assert len(note_id) == 18 and note_id.startswith("04l")
    with pytest.raises(ValueError):
        sb.outbound_message([org["case0"]] * 101)


def test_call_log_auth_and_unknown_paths(sb, org):
    s = sb.session()
    base = f"{sb.url}/services/data/v58.0"
    r = s.get(f"{base}/query", params={"q": "SELECT Id FROM Account"})
    assert r.status_code == 401 and r.json()[0]["errorCode"] == "INVALID_SESSION_ID"
    assert r.headers["Sforce-Limit-Info"] == "api-usage=1/15000"
    auth = {"Authorization": f"Bearer {sb.issue_session()}"}
    r = s.get(f"{base}/nothing/here", headers=auth)
    assert r.status_code == 404
    assert r.json() == [{"message": "The requested resource does not exist",
                         "errorCode": "NOT_FOUND"}]
    r = s.get(f"{base}/query", params={"q": "SELECT Id FROM Account"}, headers=auth)
    assert r.status_code == 200
    assert r.json()["records"][0]["attributes"]["url"].startswith("/services/data/v58.0/")
    assert sb.calls == [
        Call("GET", "/services/data/v58.0/query", {"q": "SELECT Id FROM Account"}, None, 401),
        Call("GET", "/services/data/v58.0/nothing/here", {}, None, 404),
        Call("GET", "/services/data/v58.0/query", {"q": "SELECT Id FROM Account"}, None, 200)]
    sb.reset_calls()
    assert sb.calls == []


def test_concurrent_calls_are_all_counted_and_logged(sb, org):
    sf = direct(sb)

    def work() -> None:
        for _ in range(5):
            sf.restful("composite/sobjects", method="PATCH",
                       json={"allOrNone": False, "records": [_case(org["case0"], Priority="High")]})

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sb.api_used == 30 and len(sb.calls) == 30 and {c.status for c in sb.calls} == {200}


def test_quiet_tls_and_stop_removes_the_ca(capfd):
    sb = SalesforceSandbox().start()
    ca_path = sb.ca_path
    assert os.path.exists(ca_path)
    plain = requests.Session()
    plain.trust_env = False
    with pytest.raises(requests.exceptions.SSLError):
        plain.get(f"{sb.url}/services/data/v59.0/limits/")  # not trusted without the sandbox CA
    sb.session().get(f"{sb.url}/elsewhere")
    sb.stop()
    sb.stop()
    assert not os.path.exists(ca_path)
    assert capfd.readouterr().err == ""
