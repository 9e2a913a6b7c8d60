"""The HTML pages through Flask's test client: login, CSRF, filters, bad input, escaping, saving weights.

Tickets are decided by the real pipeline (signed webhook -> real RQ worker on
the real Redis -> store); the browser tests (tests/test_browser.py) drive the
same pages in headless Chromium.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import tomllib
import uuid
from pathlib import Path

import pytest

from conftest import TEST_SECRET, TEST_TOKEN, standard_webhook_headers, work
from connectors.crm.base import Customer
from plugin.settings import SettingsError, load_settings

ADMIN_TOKEN = "test-admin-token-9c1d-0123456789abcdef"
HOSTILE = "<script>alert('x')</script>"


# -- helpers -------------------------------------------------------------------------------

def _csrf(client, path: str = "/pages/login") -> str:
    page = client.get(path)
    found = re.search(rb'name="csrf_token" value="([^"]+)"', page.data)
    assert found, page.data[:500]
    return found.group(1).decode()


def login(client, token: str = TEST_TOKEN):
    resp = client.post("/pages/login", data={"token": token, "csrf_token": _csrf(client),
                                             "next": "/pages/queue"})
    assert resp.status_code == 303, resp.data[:500]
    return resp


def _event(ticket_id: str, customer: dict, *, subject: str = "Help", description: str = "",
           age_hours: float = 1.0) -> dict:
    now = dt.datetime.now(dt.timezone.utc)
    return {"event_id": f"evt_{uuid.uuid4().hex}", "occurred_at": now.isoformat(),
            "ticket": {"id": ticket_id, "subject": subject, "description": description,
                       "priority": "Normal",
                       "created_at": (now - dt.timedelta(hours=age_hours)).isoformat()},
            "customer": customer}


def post_events(client, rt, events: list[dict]) -> None:
    """Signed webhooks through `client`'s app, then a real RQ worker over `rt`'s queue."""
    for e in events:
        raw = json.dumps(e).encode()
        resp = client.post("/webhooks/generic", data=raw, headers=standard_webhook_headers(
            TEST_SECRET, f"msg_{uuid.uuid4().hex}", raw))
        assert resp.status_code == 202, resp.data
    work(rt)


def decide_some(rt, client, extra: int = 0) -> None:
    """A small book, a loud social complaint from a big customer, a hostile subject, and fillers."""
    rt.store.upsert_customers(
        [Customer(id=f"BOOK-{i}", monthly_spend=float(20 + i * 10)) for i in range(30)]
        + [Customer(id="C-HOTEL", name="Grand Hotel Guest", handles={"x": "adaq"},
                    monthly_spend=9000.0,
                    contract_end=(dt.date.today() + dt.timedelta(days=10)).isoformat()),
           Customer(id="C-EVIL", name=f"Mallory {HOSTILE}", monthly_spend=30.0)])
    post_events(client, rt, [
        _event("T-WIFI", {"id": "C-HOTEL"}, subject="Charged twice for wifi",
               description="This is outrageous and unacceptable, I am posting this on Twitter "
                           "right now."),
        _event("T-EVIL", {"id": "C-EVIL"}, subject=HOSTILE, description=HOSTILE),
        _event("T-OLD", {"id": "BOOK-1"}, subject="Export waits", age_hours=60),
    ] + [_event(f"T-FILL-{i}", {"id": f"BOOK-{i}"}, subject=f"Question {i}") for i in range(extra)])


def _config_file(path: Path, spend: float = 0.25) -> None:
    path.write_text("# admins edit this file; comments must survive a save from the page\n"
                    "[ranking.weights]\n"
                    f"spend = {spend}  # share of the score from spend\n")


# -- login, sessions, CSRF ---------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/pages/queue", "/pages/customers/C-1", "/pages/tickets/generic/T-1",
                                  "/pages/admin/weights", "/pages/feed", "/pages/queue?flag=VIP"])
def test_pages_need_a_login_and_send_people_to_the_form(client, path):
    resp = client.get(path)
    assert resp.status_code == 303
    assert resp.headers["Location"].startswith("/pages/login?next=")
    form = client.get(resp.headers["Location"])
    assert form.status_code == 200 and form.mimetype == "text/html"
    assert b'name="token"' in form.data and b"csrf_token" in form.data


def test_the_api_token_logs_in_as_an_agent_who_cannot_open_the_admin_page(client):
    resp = login(client)
    assert resp.headers["Location"] == "/pages/queue"
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    assert client.get("/pages/queue").status_code == 200
    denied = client.get("/pages/admin/weights")
    assert denied.status_code == 403 and b"admin" in denied.data and denied.mimetype == "text/html"
    # Logging out needs the form token too; afterwards the pages ask for a login again.
    assert client.post("/pages/logout").status_code == 400
    out = client.post("/pages/logout", data={"csrf_token": _csrf(client, "/pages/queue")})
    assert out.status_code == 303
    assert client.get("/pages/queue").status_code == 303


def test_a_wrong_token_or_a_missing_or_wrong_csrf_token_is_refused(client):
    csrf = _csrf(client)
    wrong = client.post("/pages/login", data={"token": "not-the-token", "csrf_token": csrf})
    assert wrong.status_code == 401 and b"not valid" in wrong.data
    no_csrf = client.post("/pages/login", data={"token": TEST_TOKEN})
    assert no_csrf.status_code == 400 and b"CSRF" in no_csrf.data
    assert no_csrf.mimetype == "text/html"
    bad_csrf = client.post("/pages/login", data={"token": TEST_TOKEN, "csrf_token": "x" * 43})
    assert bad_csrf.status_code == 400 and b"does not match" in bad_csrf.data
    assert client.get("/pages/queue").status_code == 303  # none of them logged in
    huge = client.post("/pages/login", data={"token": "x" * 5000, "csrf_token": csrf})
    assert huge.status_code == 400


def test_login_never_redirects_to_another_site(client):
    csrf = _csrf(client)
    for target in ("https://evil.example/", "//evil.example/pages/", "/pages/\\evil", "/api/queue"):
        resp = client.post("/pages/login", data={"token": TEST_TOKEN, "csrf_token": csrf,
                                                 "next": target})
        assert resp.headers["Location"] == "/pages/queue", target
        csrf = _csrf(client, "/pages/queue")


def test_the_session_cookie_is_secure_over_https(app):
    client = app.test_client()
    page = client.get("/pages/login", base_url="https://localhost")
    csrf = re.search(rb'name="csrf_token" value="([^"]+)"', page.data).group(1).decode()
    assert "Secure" in page.headers["Set-Cookie"]
    resp = client.post("/pages/login", data={"token": TEST_TOKEN, "csrf_token": csrf},
                       base_url="https://localhost")
    assert resp.status_code == 303 and "Secure" in resp.headers["Set-Cookie"]


def test_admin_token_gives_the_admin_role(runtime_with):
    from plugin import create_app

    rt = runtime_with({"CLOUT_ADMIN_TOKEN": ADMIN_TOKEN})
    client = create_app(runtime=rt).test_client()
    login(client, ADMIN_TOKEN)
    page = client.get("/pages/admin/weights")
    assert page.status_code == 200 and b'name="weights.spend"' in page.data


def test_a_new_token_ends_the_sessions_of_the_old_one(runtime_with, redis_session):
    from plugin import create_app

    secret = {"CLOUT_SESSION_SECRET": "s" * 40}
    old = create_app(runtime=runtime_with(secret)).test_client()
    login(old)
    cookie = old.get_cookie("session")
    assert cookie is not None and old.get("/pages/queue").status_code == 200
    new = create_app(runtime=runtime_with(
        {**secret, "CLOUT_API_TOKEN": "another-api-token-0123456789abcdef00"})).test_client()
    new.set_cookie("session", cookie.value)
    assert new.get("/pages/queue").status_code == 303


def test_a_one_time_login_link_works_once(runtime_with):
    from plugin import create_app
    from plugin.pages.auth import login_link

    rt = runtime_with({"CLOUT_ADMIN_TOKEN": ADMIN_TOKEN})
    client = create_app(runtime=rt).test_client()
    link = login_link(rt.settings, "http://localhost")
    path = link.removeprefix("http://localhost")
    token = path.split("t=", 1)[1]
    shown = client.get(path)  # a confirmation button: link previewers don't use it up
    assert shown.status_code == 200 and b"admin" in shown.data
    csrf = re.search(rb'name="csrf_token" value="([^"]+)"', shown.data).group(1).decode()
    used = client.post("/pages/login/once", data={"t": token, "csrf_token": csrf})
    assert used.status_code == 303
    assert client.get("/pages/admin/weights").status_code == 200

    other = create_app(runtime=rt).test_client()  # another browser (and process) alike
    assert other.get(path).status_code == 400
    csrf = _csrf(other)
    again = other.post("/pages/login/once", data={"t": token, "csrf_token": csrf})
    assert again.status_code == 400 and b"already used" in again.data
    assert other.get("/pages/queue").status_code == 303
    tampered = other.get(path[:-3] + ("AAA" if not path.endswith("AAA") else "BBB"))
    assert tampered.status_code == 400 and b"not valid" in tampered.data
    with pytest.raises(ValueError, match="CLOUT_ADMIN_TOKEN"):
        login_link(runtime_with({}).settings, "http://localhost")


def test_an_expired_login_link_is_refused(runtime_with, monkeypatch):
    import time as time_mod

    from plugin import create_app
    from plugin.pages.auth import login_link

    rt = runtime_with({"CLOUT_ADMIN_TOKEN": ADMIN_TOKEN, "CLOUT_PAGES__LOGIN_LINK_MINUTES": "1"})
    real = time_mod.time
    monkeypatch.setattr(time_mod, "time", lambda: real() - 120)  # signed two minutes ago
    link = login_link(rt.settings, "http://localhost")
    monkeypatch.setattr(time_mod, "time", real)
    resp = create_app(runtime=rt).test_client().get(link.removeprefix("http://localhost"))
    assert resp.status_code == 400 and b"expired" in resp.data


# -- settings ---------------------------------------------------------------------------------------

def test_admin_token_and_session_secret_are_checked_like_the_api_token(base_env):
    with pytest.raises(SettingsError, match="CLOUT_ADMIN_TOKEN is too short"):
        load_settings({**base_env, "CLOUT_ADMIN_TOKEN": "short"})
    with pytest.raises(SettingsError, match="CLOUT_SESSION_SECRET is too short"):
        load_settings({**base_env, "CLOUT_SESSION_SECRET": "short"})
    with pytest.raises(SettingsError, match="must differ from CLOUT_API_TOKEN"):
        load_settings({**base_env, "CLOUT_ADMIN_TOKEN": TEST_TOKEN})
    s = load_settings({**base_env, "CLOUT_ADMIN_TOKEN": ADMIN_TOKEN})
    assert ADMIN_TOKEN not in repr(s.secrets) and "admin_token=set" in repr(s.secrets)
    from plugin.logs import settings_secrets

    assert ADMIN_TOKEN in settings_secrets(s)
    with pytest.raises(SettingsError, match="pages.page_size"):
        load_settings({**base_env, "CLOUT_PAGES__PAGE_SIZE": "0"})


def test_desk_links_fill_the_desks_own_settings(base_env):
    from plugin.pages.links import desk_link

    s = load_settings({**base_env, "CLOUT_DESKS__SALESFORCE__INSTANCE_URL":
                       "https://acme.my.salesforce.com"})
    assert desk_link(s, "salesforce", "500XX0001") == \
        "https://acme.my.salesforce.com/lightning/r/Case/500XX0001/view"
    assert desk_link(s, "salesforce", "a/b?c") == \
        "https://acme.my.salesforce.com/lightning/r/Case/a%2Fb%3Fc/view"
    assert desk_link(load_settings(base_env), "salesforce", "1") is None  # no instance_url
    assert desk_link(s, "generic", "T-1") is None  # the local desk: our own ticket page
    bad = load_settings({**base_env, "CLOUT_PAGES__DESK_LINKS": '{generic = "javascript:alert({id})"}'})
    assert desk_link(bad, "generic", "1") is None


# -- the queue ---------------------------------------------------------------------------------------

def test_the_queue_shows_decided_tickets_and_filters_them(runtime, client):
    decide_some(runtime, client)
    login(client)
    page = client.get("/pages/queue")
    assert page.status_code == 200
    text = page.data.decode()
    assert text.count('<tr data-ticket="') == 3
    assert "Grand Hotel Guest" in text and 'href="/pages/customers/C-HOTEL"' in text
    assert 'href="/pages/tickets/generic/T-WIFI"' in text
    assert "flag-SOCIAL_COMPLAINT" in text and "flag-AGED" in text
    assert 'name="viewport"' in text and "pages.css" in text
    assert "Content-Security-Policy" in page.headers and page.headers["Cache-Control"] == "no-store"
    # The loud complaint from the big customer is first.
    assert text.index('data-ticket="T-WIFI"') < text.index('data-ticket="T-EVIL"')

    social = client.get("/pages/queue?flag=SOCIAL_COMPLAINT").data.decode()
    assert re.findall(r'data-ticket="([^"]+)"', social) == ["T-WIFI"]
    aged = client.get("/pages/queue?flag=AGED").data.decode()
    assert re.findall(r'data-ticket="([^"]+)"', aged) == ["T-OLD"]
    wifi_tier = runtime.store.ticket_decisions("T-WIFI")[0]["tier"]
    by_tier = client.get(f"/pages/queue?tier={wifi_tier}").data.decode()
    assert "T-WIFI" in by_tier and all(
        t in ("urgent", "high", "normal", "low") for t in re.findall(r'class="tier tier-(\w+)"', by_tier))
    assert set(re.findall(r'class="tier tier-(\w+)"', by_tier)) == {wifi_tier}
    desk = client.get("/pages/queue?desk=generic&flag=SOCIAL_COMPLAINT").data.decode()
    assert re.findall(r'data-ticket="([^"]+)"', desk) == ["T-WIFI"]
    none = client.get("/pages/queue?desk=salesforce")
    assert none.status_code == 200 and b"No open tickets match" in none.data


@pytest.mark.parametrize("query,says", [
    ("flag=VIPP", b"flag must be one of"), ("tier=hot", b"tier must be one of"),
    ("desk=nowhere", b"desk must be one of"), ("desk=%3Cb%3E", b"desk must be a desk name"),
    ("page=0", b"page must be"), ("page=abc", b"page must be"), ("page=-1", b"page must be"),
])
def test_bad_queue_filters_are_a_400_page_saying_what_is_wrong(client, query, says):
    login(client)
    resp = client.get(f"/pages/queue?{query}")
    assert resp.status_code == 400 and says in resp.data and resp.mimetype == "text/html"


def test_the_queue_is_paged(runtime_with):
    from plugin import create_app

    rt = runtime_with({"CLOUT_PAGES__PAGE_SIZE": "5"})
    client = create_app(runtime=rt).test_client()
    rt.store.upsert_customers([Customer(id=f"P-{i}", monthly_spend=float(10 * i)) for i in range(7)])
    post_events(client, rt, [_event(f"T-P{i}", {"id": f"P-{i}"}) for i in range(7)])
    login(client)
    first = client.get("/pages/queue").data.decode()
    second = client.get("/pages/queue?page=2").data.decode()
    ids = re.findall(r'data-ticket="([^"]+)"', first) + re.findall(r'data-ticket="([^"]+)"', second)
    assert len(re.findall(r'data-ticket="', first)) == 5 and sorted(ids) == sorted(
        f"T-P{i}" for i in range(7))
    assert 'rel="next" href="/pages/queue?page=2"' in first and "page 2 of 2" in second
    assert client.get("/pages/queue?page=3").status_code == 404


def test_hostile_text_is_escaped_everywhere(runtime, client):
    decide_some(runtime, client)
    login(client)
    for path in ("/pages/queue", "/pages/tickets/generic/T-EVIL", "/pages/customers/C-EVIL",
                 "/pages/queue?flag=", "/pages/customers/%3Cscript%3E"):
        body = client.get(path).data
        assert b"<script>alert" not in body, path
    assert b"&lt;script&gt;alert(" in client.get("/pages/tickets/generic/T-EVIL").data
    assert b"Mallory &lt;script&gt;" in client.get("/pages/queue").data


# -- ticket and customer ------------------------------------------------------------------------------

def test_the_ticket_page_shows_the_decision_and_its_reason(runtime, client):
    decide_some(runtime, client)
    login(client)
    page = client.get("/pages/tickets/generic/T-WIFI")
    decision = runtime.store.ticket_decisions("T-WIFI")[0]
    text = page.data.decode()
    assert page.status_code == 200 and "Charged twice for wifi" in text
    assert decision["reason"] in text.replace("&#43;", "+") and "SOCIAL_COMPLAINT" in text
    missing = client.get("/pages/tickets/generic/T-NOPE")
    assert missing.status_code == 404 and missing.mimetype == "text/html"
    assert client.get("/pages/tickets/generic/" + "x" * 300).status_code == 404


def test_the_customer_page_charts_influence_and_lists_every_decision(runtime, client):
    decide_some(runtime, client)
    now = dt.datetime.now(dt.timezone.utc)
    with runtime.store.engine.begin() as conn:
        from plugin.store import influence_history

        conn.execute(influence_history.delete().where(influence_history.c.customer_id == "C-HOTEL"))
    runtime.store.record_influence([
        {"customer_id": "C-HOTEL", "score": 17.2, "model_version": "t",
         "computed_at": now - dt.timedelta(days=2)},
        {"customer_id": "C-HOTEL", "score": 24, "model_version": "t",
         "computed_at": now - dt.timedelta(days=1)},
        {"customer_id": "C-HOTEL", "score": 38.4, "model_version": "t", "computed_at": now}])
    post_events(client, runtime, [_event("T-WIFI", {"id": "C-HOTEL"}, subject="Charged twice for wifi",
                                         description="Still not credited. Unacceptable.")])
    login(client)
    page = client.get("/pages/customers/C-HOTEL")
    text = page.data.decode()
    assert page.status_code == 200
    assert "17 two days ago, 38 today" in text
    assert "<svg" in text and "<polyline" in text and text.count("<circle") == 3
    reasons = [d.reason for d in _decisions_of(runtime, "C-HOTEL")]
    assert len(reasons) == 2 and all(r.replace("+", "&#43;") in text or r in text for r in reasons)
    assert client.get("/pages/customers/NOBODY").status_code == 404


def _decisions_of(runtime, customer_id: str):
    from plugin.store import decisions

    with runtime.store.engine.connect() as conn:
        return conn.execute(decisions.select().where(decisions.c.customer_id == customer_id)).all()


# -- the admin weights page ---------------------------------------------------------------------------

@pytest.fixture()
def admin_app(tmp_path, runtime_with, base_env, monkeypatch):
    """An app watching a writable config file, logged in as admin."""
    from plugin import create_app

    cfg = tmp_path / "conf" / "clout.toml"
    cfg.parent.mkdir()
    _config_file(cfg)
    env = {"CLOUT_CONFIG": str(cfg), "CLOUT_ADMIN_TOKEN": ADMIN_TOKEN}
    for k, v in {**base_env, **env}.items():
        monkeypatch.setenv(k, v)  # the app's settings watcher reads the process environment
    rt = runtime_with(env)
    app = create_app(runtime=rt)
    client = app.test_client()
    login(client, ADMIN_TOKEN)
    return rt, client, cfg


def _form(client, **values) -> dict:
    page = client.get("/pages/admin/weights").data.decode()
    fields = dict(re.findall(r'name="((?:weights|tiers|timing|flags)\.\w+|book_refresh_seconds)" '
                             r'value="([^"]*)"', page))
    fields["tiers.mode"] = "fixed"
    fields["csrf_token"] = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    fields.update(values)
    return fields


def test_preview_shows_the_comparison_and_writes_nothing(admin_app):
    rt, client, cfg = admin_app
    decide_some(rt, client, extra=4)
    before = cfg.read_text()
    resp = client.post("/pages/admin/weights", data=_form(
        client, action="preview", **{"tiers.urgent": "0.3", "tiers.high": "0.03", "tiers.normal": "0.02"}))
    text = resp.data.decode()
    assert resp.status_code == 200 and 'id="preview-result"' in text
    assert re.search(r"7 open tickets; weights \w+ &rarr; \w+;", text)
    changed = int(re.search(r"<strong>(\d+) change tier</strong>", text).group(1))
    assert changed >= 1 and "Tickets that move most" in text and "proposed:" in text
    assert text.count("<rect") == 8  # 4 tiers x (today, proposed)
    assert cfg.read_text() == before and rt.store.weights_changes() == []


def test_save_writes_the_file_atomically_audits_and_reloads(admin_app):
    rt, client, cfg = admin_app
    version = rt.settings.weights.version()
    resp = client.post("/pages/admin/weights", data=_form(
        client, action="save", **{"weights.spend": "0.4", "flags.aged_hours": "36"}))
    assert resp.status_code == 303, resp.data[:800]
    text = cfg.read_text()
    assert text.startswith("# admins edit this file") and "# share of the score from spend" in text
    data = tomllib.loads(text)
    assert data["ranking"]["weights"]["spend"] == 0.4 and data["ranking"]["flags"]["aged_hours"] == 36
    assert not [p for p in cfg.parent.iterdir() if p.name != "clout.toml"]  # no temp file left
    assert rt.settings.config.ranking.weights.spend == 0.4  # in force, no restart
    assert rt.settings.weights.version() != version
    audit = {a["key"]: a for a in rt.store.weights_changes()}
    assert set(audit) == {"ranking.weights.spend", "ranking.flags.aged_hours"}
    assert audit["ranking.weights.spend"]["old"] == "0.25" and audit["ranking.weights.spend"]["new"] == "0.4"
    page = client.get(resp.headers["Location"]).data.decode()
    assert 'id="saved"' in page and "ranking.weights.spend" in page
    assert f'<code id="weights-version">{rt.settings.weights.version()}</code>' in page


@pytest.mark.parametrize("values,says", [
    ({"weights.spend": "-1"}, "ranking.weights.spend"),
    ({"weights.spend": "abc"}, "ranking.weights.spend: must be a number"),
    ({"weights.spend": "nan"}, "ranking.weights.spend: must be a finite number"),
    ({"tiers.urgent": "0.1"}, "urgent &gt;= high &gt;= normal"),
    ({"tiers.mode": "loud"}, "ranking.tiers.mode: allowed: fixed, share"),
    ({"tiers.share_refresh_seconds": "1.5"}, "must be a whole number"),
    ({"action": "delete"}, "action must be preview or save"),
])
def test_invalid_weights_are_a_400_naming_the_key_and_change_nothing(admin_app, values, says):
    rt, client, cfg = admin_app
    before, version = cfg.read_text(), rt.settings.weights.version()
    resp = client.post("/pages/admin/weights", data=_form(client, **{"action": "save", **values}))
    assert resp.status_code == 400 and says in resp.data.decode()
    assert cfg.read_text() == before and rt.settings.weights.version() == version
    assert rt.store.weights_changes() == []


def test_saving_needs_the_csrf_token_and_the_admin_role(admin_app):
    rt, client, cfg = admin_app
    before = cfg.read_text()
    form = _form(client, action="save", **{"weights.spend": "0.5"})
    del form["csrf_token"]
    resp = client.post("/pages/admin/weights", data=form)
    assert resp.status_code == 400 and b"CSRF" in resp.data and cfg.read_text() == before
    agent = rt  # same runtime, an agent's session
    from plugin import create_app

    agent_client = create_app(runtime=agent).test_client()
    login(agent_client)
    csrf = _csrf(agent_client, "/pages/queue")
    resp = agent_client.post("/pages/admin/weights", data={"csrf_token": csrf, "action": "save",
                                                            "weights.spend": "0.5"})
    assert resp.status_code == 403 and cfg.read_text() == before


def test_without_a_config_file_saving_is_refused_with_a_clear_message(runtime_with, monkeypatch):
    from plugin import create_app

    monkeypatch.delenv("CLOUT_CONFIG", raising=False)
    rt = runtime_with({"CLOUT_ADMIN_TOKEN": ADMIN_TOKEN})
    client = create_app(runtime=rt).test_client()
    login(client, ADMIN_TOKEN)
    page = client.get("/pages/admin/weights")
    assert b"No config file to save to" in page.data and b"CLOUT_CONFIG" in page.data
    resp = client.post("/pages/admin/weights", data=_form(client, action="save",
                                                          **{"weights.spend": "0.5"}))
    assert resp.status_code == 409 and b"No config file to save to" in resp.data
    assert rt.settings.config.ranking.weights.spend == 0.25


def test_webhooks_and_the_api_open_no_session_but_the_pages_do(app):
    """The signed-cookie session costs a fifth of a webhook's time: machine routes skip it."""
    from flask.sessions import NullSession

    iface = app.session_interface
    for path in ("/webhooks/generic", "/api/queue", "/healthz"):
        with app.test_request_context(path, method="POST"):
            from flask import request

            assert isinstance(iface.open_session(app, request), NullSession), path
    with app.test_request_context("/pages/queue"):
        from flask import request

        assert not isinstance(iface.open_session(app, request), NullSession)


def test_clout_login_link_prints_a_link_the_running_app_accepts_once(runtime_with, monkeypatch):
    """`clout login-link` is made from the same settings as the server's, in another process."""
    from click.testing import CliRunner

    from plugin.cli import cli
    from plugin import create_app

    admin = "A" * 40
    rt = runtime_with({"CLOUT_ADMIN_TOKEN": admin})
    app = create_app(runtime=rt)
    env = {"CLOUT_ADMIN_TOKEN": admin, "CLOUT_API_TOKEN": TEST_TOKEN, "CLOUT_SESSION_SECRET": None}
    result = CliRunner().invoke(cli, ["login-link", "--url", "http://localhost"], env=env)
    assert result.exit_code == 0, result.output
    link = result.output.strip().splitlines()[0]
    assert link.startswith("http://localhost/pages/login/once?t=")
    client = app.test_client()
    page = client.get(link.removeprefix("http://localhost"))
    assert page.status_code == 200
    csrf = re.search(rb'name="csrf_token" value="([^"]+)"', page.data).group(1).decode()
    token = re.search(rb'name="t" value="([^"]+)"', page.data).group(1).decode()
    assert client.post("/pages/login/once", data={"csrf_token": csrf, "t": token}).status_code == 303
    assert client.get("/pages/admin/weights").status_code == 200
    no_admin = CliRunner().invoke(cli, ["login-link"], env={**env, "CLOUT_ADMIN_TOKEN": None})
    assert no_admin.exit_code == 1 and "CLOUT_ADMIN_TOKEN is not set" in no_admin.output
