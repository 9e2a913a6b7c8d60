"""webhooks.salesforce on its own: Outbound Messages (URL token + OrganizationId, defused XML,
1..100 Notifications, SOAP Ack), the Standard-Webhooks JSON flavour, and case_event for REST
values."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import time
from pathlib import Path
from types import SimpleNamespace
from xml.etree import ElementTree

import pytest
from werkzeug.datastructures import Headers

from conftest import FIXTURES, TEST_SECRET, standard_webhook_headers
from webhooks import get_source, salesforce
from webhooks.base import PayloadError, SignatureError, WebhookRequest

ORG_ID = "00D5g00000CLOUTAAA"
DESK = SimpleNamespace(organization_id=ORG_ID)
TOL = 300


def fixture(name: str) -> bytes:
    return (FIXTURES / "salesforce" / name).read_bytes()


def xml_request(body: bytes, *, token: str | None = TEST_SECRET,
                content_type: str = "text/xml; charset=utf-8") -> WebhookRequest:
    query = {} if token is None else {"token": token}
    return WebhookRequest(method="POST", url="http://x/webhooks/salesforce",
                          headers=Headers({"Content-Type": content_type, "SOAPAction": '""'}),
                          body=body, query=query)


def json_request(body: bytes, msg_id: str = "msg_sf_1", ts: int | None = None) -> WebhookRequest:
    headers = standard_webhook_headers(TEST_SECRET, msg_id, body, ts)
    return WebhookRequest(method="POST", url="http://x/webhooks/salesforce",
                          headers=Headers(headers), body=body)


def verify(request: WebhookRequest, desk=DESK, secret: str = TEST_SECRET) -> None:
    salesforce.verify(request, secret, now=time.time(), tolerance=TOL, desk=desk)


def problem_fields(exc: pytest.ExceptionInfo) -> list[str]:
    return [d["field"] for d in exc.value.details]


def test_module_is_a_webhook_source():
    assert get_source("salesforce") is salesforce
    assert salesforce.NAME == "salesforce"
    assert salesforce.EVENT_FIELDS == {"occurred_at": "LastModifiedDate",
                                       "ticket_created_at": "CreatedDate"}
    assert salesforce.secret_problem(TEST_SECRET) is None
    assert salesforce.secret_problem("whsec_c2hvcnQ=") is not None  # generic's rule


# -- which format ---------------------------------------------------------------------


@pytest.mark.parametrize("content_type, body, xml", [
    ("text/xml; charset=utf-8", b"<a/>", True),
    ("application/soap+xml", b"<a/>", True),
    ("TEXT/XML", b"{}", True),
    ("", b"  \n<a/>", True),
    ("application/octet-stream", b"\xef\xbb\xbf<a/>", True),
    ("application/json", b"{}", False),
    ("", b"{}", False),
])
def test_content_type_or_first_byte_decides_the_format(content_type, body, xml):
    request = WebhookRequest(method="POST", url="", headers={"content-type": content_type},
                             body=body)
    assert salesforce.is_outbound_message(request) is xml


# -- Outbound Message: verify -----------------------------------------------------------


def test_token_and_org_id_pass():
    verify(xml_request(fixture("case_changed__single.xml")))


@pytest.mark.parametrize("token", [None, "", "whsec_wrong", TEST_SECRET + "x", TEST_SECRET[:-1]])
def test_missing_or_wrong_token_is_refused(token):
    with pytest.raises(SignatureError) as exc:
        verify(xml_request(fixture("case_changed__single.xml"), token=token))
    assert "missing or wrong token in the endpoint URL" in exc.value.message
    assert TEST_SECRET not in exc.value.message


def test_token_whose_plus_arrived_as_space_gets_a_hint():
    secret = "whsec_" + "ab+cd/ef+" + "A" * 30 + "=="
    with pytest.raises(SignatureError, match="not URL-encoded"):
        verify(xml_request(fixture("case_changed__single.xml"), token=secret.replace("+", " ")),
               secret=secret)


def test_token_is_checked_before_the_body_is_read():
    with pytest.raises(SignatureError, match="token"):
        verify(xml_request(fixture("hostile__billion_laughs.xml"), token=None))


def test_wrong_org_id_is_refused_without_echoing_it():
    with pytest.raises(SignatureError) as exc:
        verify(xml_request(fixture("case_changed__wrong_org.xml")))
    assert "OrganizationId" in exc.value.message
    assert "00D5g00000OTHER" not in exc.value.message and ORG_ID not in exc.value.message
    assert TEST_SECRET not in exc.value.message


@pytest.mark.parametrize("configured",
                         ["00D5g00000CLOUT", "00D5g00000CLOUTAAA", "00D5g00000CLOUTXYZ"])
def test_org_id_compared_on_first_15_chars(configured):
    verify(xml_request(fixture("case_changed__single.xml")),
           desk=SimpleNamespace(organization_id=configured))


def test_15_char_org_id_in_message_matches_18_char_setting():
    body = fixture("case_changed__single.xml").replace(
        b"<OrganizationId>00D5g00000CLOUTAAA<", b"<OrganizationId>00D5g00000CLOUT<")
    verify(xml_request(body))


@pytest.mark.parametrize("configured", ["00d5g00000cloutaaa", "00D5g00000CLOUS"])
def test_org_id_is_case_sensitive_and_exact(configured):
    with pytest.raises(SignatureError, match="OrganizationId"):
        verify(xml_request(fixture("case_changed__single.xml")),
               desk=SimpleNamespace(organization_id=configured))


@pytest.mark.parametrize("desk", [None, SimpleNamespace(), SimpleNamespace(organization_id=""),
                                  SimpleNamespace(organization_id="00D5g")])
def test_unconfigured_org_id_refuses_every_message(desk):
    with pytest.raises(SignatureError, match="organization id is not configured"):
        verify(xml_request(fixture("case_changed__single.xml")), desk=desk)


@pytest.mark.parametrize("replacement", [b"<OrganizationId></OrganizationId>",
                                         b'<OrganizationId xsi:nil="true"/>', b"",
                                         b"<OrganizationId>00D5g00000CLOUT!!!</OrganizationId>"])
def test_missing_or_malformed_org_id_is_refused(replacement):
    body = fixture("case_changed__single.xml").replace(
        b"<OrganizationId>00D5g00000CLOUTAAA</OrganizationId>", replacement)
    with pytest.raises(SignatureError, match="OrganizationId"):
        verify(xml_request(body))


# -- hostile XML ------------------------------------------------------------------------


@pytest.mark.parametrize("name, needle", [
    ("hostile__billion_laughs.xml", "lollol"),
    ("hostile__external_entity.xml", "root:"),
])
def test_hostile_xml_is_400_without_expansion_and_fast(name, needle):
    request = xml_request(fixture(name))
    start = time.perf_counter()
    verify(request)  # the token matched; the unreadable body is parse's to refuse
    with pytest.raises(PayloadError) as exc:
        salesforce.parse(request, desk=DESK)
    assert time.perf_counter() - start < 1.0
    assert "DTD" in exc.value.message
    text = exc.value.message + json.dumps(exc.value.details)
    assert needle not in text and "passwd" not in text


def test_internal_entity_without_doctype_name_is_refused():
    body = (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]>'
            + fixture("case_changed__single.xml").split(b"?>", 1)[1])
    with pytest.raises(PayloadError):
        salesforce.parse(xml_request(body))


@pytest.mark.parametrize("body, message", [
    (b"", "not well-formed"),
    (b"<soapenv:Envelope", "not well-formed"),
    (b"<a><b></a>", "not well-formed"),
    (b'<?xml version="1.0" encoding="no-such-codec"?><a/>', "XML"),
    (b"<a/>", "not a Salesforce Outbound Message"),
    (b'<Envelope xmlns="http://schemas.xmlsoap.org/soap/envelope/"><Body/></Envelope>',
     "not a Salesforce Outbound Message"),
])
def test_body_that_is_not_an_outbound_message_is_400(body, message):
    request = xml_request(body)
    verify(request)
    with pytest.raises(PayloadError, match=message):
        salesforce.parse(request)


# -- Outbound Message: parse ------------------------------------------------------------


def test_single_notification_becomes_one_event():
    parsed = salesforce.parse(xml_request(fixture("case_changed__single.xml")), desk=DESK)
    assert parsed.ignored is None
    assert parsed.delivery_id == hashlib.sha256(b"04l5g00000LMNOPQRS").hexdigest()
    (event,) = parsed.events
    assert event.source == "salesforce"
    assert event.event_id == "04l5g00000LMNOPQRS"
    assert event.ticket_id == "5005g00000KLMNOPQR"
    assert event.occurred_at == "2026-11-30T10:00:00.000000Z"
    assert event.ticket_created_at == "2026-11-30T09:58:12.000000Z"
    assert event.subject == "Invoices show the wrong VAT rate"
    assert "20% & we need" in event.description  # &amp; is XML, not an entity declaration
    assert event.desk_priority == "Medium"
    assert event.status == "open"
    assert event.customer.id == "0035g00000TUVWXYZA"  # the Contact, not the Account
    assert event.customer.name is None and event.customer.handles == {}


def test_hundred_notifications_become_hundred_events():
    parsed = salesforce.parse(xml_request(fixture("case_changed__hundred.xml")), desk=DESK)
    assert len(parsed.events) == 100
    ids = [f"04l5g00000N{i:07d}" for i in range(1, 101)]
    assert [e.event_id for e in parsed.events] == ids
    assert parsed.delivery_id == hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()
    for i, event in enumerate(parsed.events, start=1):
        assert event.ticket_id == f"5005g00000C{i:07d}"
        expected_customer = f"0015g00000A{i:07d}" if i % 10 == 0 else f"0035g00000P{i:07d}"
        assert event.customer.id == expected_customer
        assert event.status == ("closed" if i % 7 == 0 else "open")
        assert event.desk_priority == ["High", "Medium", "Low"][i % 3]
        assert event.occurred_at == f"2026-11-30T10:{i % 60:02d}:{i % 7:02d}.000000Z"
        assert event.subject == f"Case {i:03d}: order not delivered"
        assert event.source == "salesforce"


def _with_notifications(extra: int) -> bytes:
    body = fixture("case_changed__hundred.xml").decode()
    one = re.search(r"   <Notification>.*?</Notification>\n", body, re.S).group(0)
    more = "".join(one.replace("N0000001<", f"X{i:07d}<") for i in range(extra))
    return body.replace("  </notifications>", more + "  </notifications>").encode()


def test_101_notifications_are_refused():
    request = xml_request(_with_notifications(1))
    verify(request)
    with pytest.raises(PayloadError, match="101 Notifications; at most 100") as exc:
        salesforce.parse(request)
    assert problem_fields(exc) == ["Notification"]


def test_no_notification_is_refused():
    body = re.sub(rb"<Notification>.*</Notification>", b"", fixture("case_changed__single.xml"),
                  flags=re.S)
    with pytest.raises(PayloadError, match="no Notification"):
        salesforce.parse(xml_request(body))


def test_redelivery_has_the_same_delivery_id():
    first = salesforce.parse(xml_request(fixture("case_changed__single.xml")))
    again = salesforce.parse(xml_request(fixture("case_changed__redelivery.xml")))
    assert fixture("case_changed__single.xml") != fixture("case_changed__redelivery.xml")
    assert again.delivery_id == first.delivery_id
    assert [e.event_id for e in again.events] == [e.event_id for e in first.events]
    assert again.events[0].desk_priority == "High"  # the data at send time


def test_closed_case():
    (event,) = salesforce.parse(xml_request(fixture("case_changed__closed.xml"))).events
    assert event.status == "closed"
    assert event.occurred_at == "2026-11-30T11:20:00.000000Z"


def test_other_object_types_are_ignored():
    request = xml_request(fixture("case_changed__not_a_case.xml"))
    verify(request)
    parsed = salesforce.parse(request, desk=DESK)
    assert parsed.events == ()
    assert "sf:Account" in parsed.ignored and "not sf:Case" in parsed.ignored
    assert parsed.delivery_id == hashlib.sha256(b"04l5g00000ACCTNOTE").hexdigest()
    assert salesforce.respond(200, {"status": "ignored", "reason": parsed.ignored},
                              request=request)[0] == 200


def test_one_bad_notification_refuses_the_whole_message():
    body = fixture("case_changed__hundred.xml").replace(
        b"<sf:Id>5005g00000C0000003</sf:Id>", b"<sf:Id></sf:Id>").replace(
        b"<Id>04l5g00000N0000007</Id>", b"<Id>not-an-id</Id>").replace(
        b"<sf:LastModifiedDate>2026-11-30T10:50:01.000Z<", b"<sf:LastModifiedDate>yesterday<")
    with pytest.raises(PayloadError) as exc:
        salesforce.parse(xml_request(body))
    fields = problem_fields(exc)
    assert "Notification[3].sObject.Id" in fields
    assert "Notification[7].Id" in fields
    assert "Notification[50].sObject.LastModifiedDate" in fields
    assert "Notification[3].sObject.Id" in exc.value.message
    assert "yesterday" not in exc.value.message


def test_case_without_customer_names_contact_id():
    body = fixture("case_changed__single.xml")
    body = re.sub(rb"\s*<sf:(ContactId|AccountId)>[^<]*</sf:\1>", b"", body)
    with pytest.raises(PayloadError) as exc:
        salesforce.parse(xml_request(body))
    assert problem_fields(exc) == ["Notification[1].sObject.ContactId"]


def test_nil_contact_falls_back_to_account():
    body = fixture("case_changed__single.xml").replace(
        b"<sf:ContactId>0035g00000TUVWXYZA</sf:ContactId>", b'<sf:ContactId xsi:nil="true"/>')
    (event,) = salesforce.parse(xml_request(body)).events
    assert event.customer.id == "0015g00000ACCTAAAA"


def test_repeated_notification_id_is_refused():
    body = fixture("case_changed__single.xml")
    one = re.search(rb"<Notification>.*?</Notification>", body, re.S).group(0)
    body = body.replace(b"</notifications>", one + b"</notifications>")
    with pytest.raises(PayloadError) as exc:
        salesforce.parse(xml_request(body))
    assert exc.value.details == [{"field": "Notification[2].Id",
                                  "problem": "repeats Notification[1].Id"}]


def test_missing_sobject_type_and_mixed_types_are_refused():
    body = fixture("case_changed__hundred.xml")
    no_type = body.replace(b'<sObject xsi:type="sf:Case"', b"<sObject", 1)
    with pytest.raises(PayloadError) as exc:
        salesforce.parse(xml_request(no_type))
    assert problem_fields(exc) == ["Notification[1].sObject"]
    mixed = body.replace(b'<sObject xsi:type="sf:Case"', b'<sObject xsi:type="sf:Account"', 1)
    with pytest.raises(PayloadError) as exc:
        salesforce.parse(xml_request(mixed))
    assert problem_fields(exc) == ["Notification[1].sObject"]


def test_received_at_is_used_when_last_modified_is_not_sent():
    body = re.sub(rb"\s*<sf:LastModifiedDate>[^<]*</sf:LastModifiedDate>", b"",
                  fixture("case_changed__single.xml"))
    before = dt.datetime.now(dt.timezone.utc)
    (event,) = salesforce.parse(xml_request(body)).events
    when = dt.datetime.fromisoformat(event.occurred_at.replace("Z", "+00:00"))
    assert before - dt.timedelta(seconds=1) <= when <= dt.datetime.now(dt.timezone.utc)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", event.occurred_at)


# -- respond ----------------------------------------------------------------------------

EXPECTED_ACK = (b'<?xml version="1.0" encoding="UTF-8"?>\n'
                b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
                b"<soapenv:Body>"
                b'<notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound">'
                b"<Ack>true</Ack></notificationsResponse></soapenv:Body></soapenv:Envelope>")


@pytest.mark.parametrize("status, outcome", [(202, "queued"), (200, "duplicate"), (200, "ignored")])
def test_respond_acks_outbound_messages_with_200(status, outcome):
    request = xml_request(fixture("case_changed__single.xml"))
    answer = salesforce.respond(status, {"status": outcome, "event_id": "x"}, request=request)
    assert answer == (200, "text/xml; charset=utf-8", EXPECTED_ACK)
    root = ElementTree.fromstring(answer[2])
    ack = root.find("{http://schemas.xmlsoap.org/soap/envelope/}Body/"
                    "{http://soap.sforce.com/2005/09/outbound}notificationsResponse/"
                    "{http://soap.sforce.com/2005/09/outbound}Ack")
    assert ack is not None and ack.text == "true"


def test_respond_is_none_for_json_errors_and_unknown_format():
    body = fixture("case_changed__generic.json")
    assert salesforce.respond(202, {"status": "queued"}, request=json_request(body)) is None
    assert salesforce.respond(202, {"status": "queued"}) is None
    xml = xml_request(fixture("case_changed__single.xml"))
    assert salesforce.respond(400, {"error": "bad_payload"}, request=xml) is None


# -- JSON flavour -----------------------------------------------------------------------


def test_json_flavour_is_standard_webhooks_signed_and_sourced_salesforce():
    body = fixture("case_changed__generic.json")
    request = json_request(body, msg_id="msg_flow_1")
    verify(request, desk=None)  # no org id needed: the signature authenticates
    parsed = salesforce.parse(request, desk=DESK)
    assert parsed.delivery_id == "msg_flow_1"
    (event,) = parsed.events
    assert event.source == "salesforce"
    assert event.event_id == "evt_sf_01JA2FLOW7"
    assert event.ticket_id == "5005g00000KLMNOPQR"
    assert event.occurred_at == "2026-11-30T10:00:00.000000Z"
    assert event.customer.id == "0035g00000TUVWXYZA"
    assert event.status == "open"


def test_json_flavour_refuses_a_bad_signature_or_a_url_token():
    body = fixture("case_changed__generic.json")
    tampered = WebhookRequest(method="POST", url="", headers=json_request(body).headers,
                              body=body.replace(b"Medium", b"High"))
    with pytest.raises(SignatureError, match="no webhook-signature matches"):
        verify(tampered)
    token_only = WebhookRequest(method="POST", url="", body=body, query={"token": TEST_SECRET},
                                headers=Headers({"content-type": "application/json"}))
    with pytest.raises(SignatureError, match="missing header"):
        verify(token_only)
    stale = json_request(body, ts=int(time.time()) - 3600)
    with pytest.raises(SignatureError, match="off the server clock"):
        verify(stale)


# -- case_event (the connector's helper, REST-shaped values) ----------------------------

REST_CASE = {
    "attributes": {"type": "Case", "url": "/services/data/v59.0/sobjects/Case/5005g00000KLMNOPQR"},
    "Id": "5005g00000KLMNOPQR", "CaseNumber": "00001026", "Subject": "Refund", "Description": None,
    "Priority": "High", "Status": "Escalated", "IsClosed": False,
    "CreatedDate": "2026-11-30T09:58:12.000+0000",
    "LastModifiedDate": "2026-11-30T10:00:00.000+0000",
    "ContactId": None, "AccountId": "0015g00000ACCTAAAA",
}


def test_case_event_with_rest_values():
    poll_id = "poll:5005g00000KLMNOPQR:2026-11-30T10:00:00.000+0000"
    event = salesforce.case_event(REST_CASE, event_id=poll_id, received_at="2026-11-30T10:05:00Z")
    assert event.source == "salesforce"
    assert event.event_id == poll_id
    assert event.occurred_at == "2026-11-30T10:00:00.000000Z"
    assert event.ticket_created_at == "2026-11-30T09:58:12.000000Z"
    assert event.customer.id == "0015g00000ACCTAAAA"
    assert event.description == ""
    assert event.desk_priority == "High"
    assert event.status == "open"
    assert salesforce.case_event(REST_CASE, event_id="e", received_at="2026-11-30T10:05:00Z",
                                 source="other").source == "other"


@pytest.mark.parametrize("is_closed, status, expected", [
    (True, None, "closed"), ("true", None, "closed"), (" TRUE ", None, "closed"),
    (False, None, "open"), ("false", None, "open"),
    (None, "Closed", "closed"), (None, "New", "open"), (None, "Escalated", "open"),
    (False, "Closed", "closed"), (True, "New", "closed"),
    (None, None, None), ("", "", None),
])
def test_case_event_status(is_closed, status, expected):
    case = {**REST_CASE, "IsClosed": is_closed, "Status": status}
    event = salesforce.case_event(case, event_id="e", received_at="2026-11-30T10:05:00Z")
    assert event.status == expected


@pytest.mark.parametrize("value, expected", [
    ("2026-11-30T10:00:00.000Z", "2026-11-30T10:00:00.000000Z"),
    ("2026-11-30T10:00:00.000+0000", "2026-11-30T10:00:00.000000Z"),
    ("2026-11-30T10:00:00.000+00:00", "2026-11-30T10:00:00.000000Z"),
    ("2026-11-30T11:30:00.250+0130", "2026-11-30T10:00:00.250000Z"),
    ("2026-11-30T10:00:00", "2026-11-30T10:00:00.000000Z"),
    (None, "2026-11-30T10:05:00.000000Z"),  # not sent: the receipt time
    ("", "2026-11-30T10:05:00.000000Z"),
])
def test_case_event_occurred_at_formats(value, expected):
    case = {**REST_CASE, "LastModifiedDate": value}
    event = salesforce.case_event(case, event_id="e", received_at="2026-11-30T10:05:00+00:00")
    assert event.occurred_at == expected


@pytest.mark.parametrize("field, value", [
    ("LastModifiedDate", "30/11/2026"), ("LastModifiedDate", "2031-01-02"),
    ("LastModifiedDate", 1764496800), ("CreatedDate", "1066-10-14T10:00:00Z"),
    ("CreatedDate", "2026-13-30T10:00:00Z"), ("IsClosed", "maybe"), ("IsClosed", 2),
    ("Subject", 42), ("Subject", "a\x00b"), ("Priority", "P" * 65),
    ("Id", "5" * 129), ("Id", "500\x005g"), ("Id", None), ("Id", ""),
    ("AccountId", "0" * 129), ("AccountId", "001\x00"),
])
def test_case_event_names_the_unusable_field(field, value):
    case = {**REST_CASE, field: value}
    with pytest.raises(PayloadError) as exc:
        salesforce.case_event(case, event_id="e", received_at="2026-11-30T10:05:00Z")
    assert problem_fields(exc) == [field]
    assert field in exc.value.message
    if isinstance(value, str) and len(value) > 3:
        assert value not in exc.value.message


def test_case_event_without_contact_or_account_names_contact_id():
    case = {**REST_CASE, "ContactId": None, "AccountId": ""}
    with pytest.raises(PayloadError) as exc:
        salesforce.case_event(case, event_id="e", received_at="2026-11-30T10:05:00Z")
    assert problem_fields(exc) == ["ContactId"]


def test_case_event_collects_every_problem():
    case = {"Id": None, "IsClosed": "perhaps", "CreatedDate": "soon"}
    with pytest.raises(PayloadError) as exc:
        salesforce.case_event(case, event_id="", received_at="later")
    assert set(problem_fields(exc)) == {"event_id", "received_at", "Id", "IsClosed", "CreatedDate",
                                        "ContactId"}


def test_fixtures_are_in_the_documented_shape():
    ns = {"soapenv": "http://schemas.xmlsoap.org/soap/envelope/",
          "om": "http://soap.sforce.com/2005/09/outbound"}
    for path in sorted(Path(FIXTURES / "salesforce").glob("case_changed__*.xml")):
        root = ElementTree.fromstring(path.read_bytes())
        notifications = root.find("soapenv:Body/om:notifications", ns)
        assert notifications is not None, path.name
        children = [c.tag.rpartition("}")[2] for c in notifications]
        assert children[:5] == ["OrganizationId", "ActionId", "SessionId", "EnterpriseUrl",
                                "PartnerUrl"], path.name
        assert set(children[5:]) == {"Notification"}, path.name
    assert len(ElementTree.fromstring(fixture("case_changed__hundred.xml"))
               .findall(".//om:Notification", ns)) == 100
