"""The complaint feed page: order, what each item shows, escaping, and the "used it" form."""

from __future__ import annotations

import re

from conftest import TEST_TOKEN, auth, load_fixture, work
from test_mentions import LOUD, make, mention_from, open_ticket  # noqa: F401  (fixture)
from test_social_webhook import post


def _login(client) -> None:
    page = client.get("/pages/login")
    token = re.search(rb'name="csrf_token" value="([^"]+)"', page.data).group(1).decode()
    resp = client.post("/pages/login", data={"token": TEST_TOKEN, "csrf_token": token,
                                             "next": "/pages/feed"})
    assert resp.status_code == 303


def test_feed_needs_a_login(make):
    _, client = make()
    resp = client.get("/pages/feed")
    assert resp.status_code in (302, 303) and "/pages/login" in resp.headers["Location"]


def test_feed_shows_the_loud_complaint_first_with_customer_ticket_and_suggestion(make):
    rt, client = make()
    open_ticket(rt, "T-2001", "C-1001")
    post(client, load_fixture("social", "mention.created__praise"))
    post(client, mention_from("ines.bsky.social", "Wifi was down again, annoying. <script>alert(1)</script>"))
    post(client, load_fixture("social", "mention.created__complaint"))
    work(rt)
    _login(client)
    page = client.get("/pages/feed")
    assert page.status_code == 200
    html = page.data.decode()
    articles = re.findall(r'<article class="card mention" id="m(\d+)"', html)
    assert len(articles) == 2  # complaints only by default; the praise is under "all"
    first = html[html.index('<article'):html.index('</article>')]
    assert "CHARGED ME TWICE for wifi" in first and "Ada Quinlan" in first
    assert "/pages/customers/C-1001" in first and "/pages/tickets/generic/T-2001" in first
    assert "420 USD/month" in first and "renewal 20" in first
    assert "https://bsky.app/profile/adaq.bsky.social/post/3kwifi1" in first
    assert "Credit the disputed charge" in first and 'name="csrf_token"' in first
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html
    everything = client.get("/pages/feed?all=1").data.decode()
    assert everything.count('<article class="card mention"') == 3 and "breakfast terrace" in everything

    # "Used it": CSRF-checked form, then shown on the feed and on the ticket's JSON.
    sid = re.search(r'/pages/feed/suggestions/(\d+)', first).group(1)
    token = re.search(r'name="csrf_token" value="([^"]+)"', first).group(1)
    assert client.post(f"/pages/feed/suggestions/{sid}", data={"used": "yes"}).status_code == 400
    assert client.post(f"/pages/feed/suggestions/{sid}",
                       data={"used": "maybe", "csrf_token": token}).status_code == 400
    assert client.post("/pages/feed/suggestions/987654",
                       data={"used": "yes", "csrf_token": token}).status_code == 404
    resp = client.post(f"/pages/feed/suggestions/{sid}",
                       data={"used": "yes", "note": "credited at checkout", "csrf_token": token})
    assert resp.status_code == 303 and resp.headers["Location"].endswith(f"#s{sid}")
    after = client.get(resp.headers["Location"]).data.decode()
    assert "Used, recorded" in after and "credited at checkout" in after
    shown = client.get("/api/tickets/T-2001", headers=auth()).get_json()["social"]["goodwill"][0]
    assert shown["used"] is True and shown["note"] == "credited at checkout"


def test_feed_bad_page_is_400_html(make):
    _, client = make()
    _login(client)
    resp = client.get("/pages/feed?page=abc")
    assert resp.status_code == 400 and b"page must be a whole number" in resp.data
