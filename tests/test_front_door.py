"""The front door under abuse: unreadable bodies, events from the future, backing services down.

Each test here pins a hole an adversarial review found (see issue 6): it failed
before the fix.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests
from werkzeug.serving import make_server

from conftest import TEST_SECRET, TEST_TOKEN, auth, load_fixture, standard_webhook_headers, submit, work
from plugin.runtime import Runtime
from plugin.settings import load_settings


def _event(ticket_id: str = "T-FD", **overrides) -> dict:
    payload = load_fixture("generic", "ticket_created__full")
    payload["event_id"] = f"evt_{uuid.uuid4().hex}"
    payload["ticket"]["id"] = ticket_id
    payload["occurred_at"] = dt.datetime.now(dt.timezone.utc).isoformat()
    payload.update(overrides)
    return payload


# -- bodies a server can't read --------------------------------------------------------------

def _raw_exchange(port: int, request: bytes, *, half_close: bool = False, timeout: float = 10) -> bytes:
    """Send raw bytes, optionally close our sending side, and read the whole answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            try:
                data = sock.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not data:
                break
            chunks.append(data)
            if b"\r\n\r\n" in b"".join(chunks) and _complete(b"".join(chunks)):
                break
        return b"".join(chunks)


def _complete(raw: bytes) -> bool:
    head, _, body = raw.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":", 1)[1])
    return False


def _status_and_json(raw: bytes) -> tuple[int, dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body)


BAD_CHUNK = (b"POST /webhooks/generic HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
             b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n")
SHORT_BODY = (b"POST /webhooks/generic HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: 500\r\n\r\n{\"event_id\": ")


@pytest.fixture()
def dev_server(app):
    """The app on werkzeug's server, as `--debug` serves it: it hands the app the raw stream."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_port
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("request_bytes, half_close", [(BAD_CHUNK, False), (SHORT_BODY, True)],
                         ids=["chunk-header-zz", "shorter-than-content-length"])
def test_an_unreadable_body_is_a_400_json_without_an_error_log(dev_server, runtime, caplog,
                                                                request_bytes, half_close):
    caplog.set_level(logging.INFO)
    raw = _raw_exchange(dev_server, request_bytes, half_close=half_close)
    status, body = _status_and_json(raw)
    assert status == 400 and body["error"] == "unreadable_body"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert runtime.queue.count == 0
    # and the server still serves
    assert requests.get(f"http://127.0.0.1:{dev_server}/healthz", timeout=5).status_code == 200


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_gunicorn_deployment_answers_an_unreadable_body_with_400_json(base_env, tmp_path):
    """`gunicorn 'plugin:create_app()'` (the documented production command) reads bodies
    through its own parser, which raises its own errors inside the view."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUT_")}
    env.update(base_env)
    log_path = tmp_path / "gunicorn.log"
    with log_path.open("wb") as log_fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-b", f"127.0.0.1:{port}", "-w", "1",
             "plugin:create_app()"], env=env, stdout=log_fh, stderr=subprocess.STDOUT,
            cwd=tmp_path)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
        for request_bytes in (BAD_CHUNK,):
            status, body = _status_and_json(_raw_exchange(port, request_bytes))
            assert status == 400 and body["error"] == "unreadable_body"
    finally:
        proc.terminate()
        proc.wait(10)
    text = log_path.read_text()
    assert "Traceback" not in text and "[ERROR]" not in text and "unhandled" not in text, text


# -- events from the future ------------------------------------------------------------------

def test_an_event_from_the_future_is_refused_naming_the_field(post_generic, runtime):
    resp = post_generic(_event(occurred_at="2199-01-01T00:00:00Z"))
    assert resp.status_code == 400
    body = resp.get_json()
    assert body["error"] == "bad_payload"
    assert [d["field"] for d in body["details"]] == ["occurred_at"]
    assert "in the future" in body["message"]
    assert runtime.queue.count == 0


def test_a_ticket_created_in_the_future_is_refused(post_generic):
    payload = _event()
    payload["ticket"]["created_at"] = (dt.datetime.now(dt.timezone.utc)
                                       + dt.timedelta(days=2)).isoformat()
    resp = post_generic(payload)
    assert resp.status_code == 400
    assert [d["field"] for d in resp.get_json()["details"]] == ["ticket.created_at"]


def test_clock_skew_within_the_tolerance_is_accepted(post_generic):
    ahead = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=120)  # tolerance is 300 s
    assert post_generic(_event(occurred_at=ahead.isoformat())).status_code == 202


def test_one_future_dated_event_cannot_pin_a_ticket(post_generic, drain, runtime, client):
    """Even one that got in another way (an older version, a poll): the next real event wins."""
    from webhooks.event import CustomerFacts, TicketEvent

    pinned = TicketEvent(source="generic", event_id=f"evt_{uuid.uuid4().hex}",
                         occurred_at="2199-01-01T00:00:00.000000Z", ticket_id="T-PIN",
                         customer=CustomerFacts(id="C-PIN", monthly_spend=1.0),
                         subject="from the future").to_dict()
    submit(runtime, [pinned])
    work(runtime)
    state = runtime.store.ticket_state([("generic", "T-PIN")])[("generic", "T-PIN")]
    assert state["subject"] == "from the future"

    real = _event("T-PIN")
    real["ticket"]["subject"] = "real, now"
    del real["ticket"]["priority"]  # the desk reporting a priority of its own is an agent's edit
    real["customer"] = {**real["customer"], "id": "C-PIN", "monthly_spend": 4200}
    assert post_generic(real).status_code == 202
    drain()
    state = runtime.store.ticket_state([("generic", "T-PIN")])[("generic", "T-PIN")]
    assert state["subject"] == "real, now"
    assert state["last_event_id"] == real["event_id"]
    assert runtime.store.get_customers(["C-PIN"])["C-PIN"].monthly_spend == 4200
    assert state["decided_event_id"] == real["event_id"]
    # and the desk shows the decision for the real event, not the pinned one
    view = runtime.store.local_desk_view("generic", ["T-PIN"])["T-PIN"]
    assert str(view["clout_decision"]) == str(state["decision_id"])
    assert client.get("/api/tickets/T-PIN", headers=auth()).get_json()["state"] == "written"


# -- backing services down -------------------------------------------------------------------

STORE_DOWN = {
    "postgresql": "postgresql://postgres@127.0.0.1:1/clout_down",
    "sqlite": "sqlite:////nonexistent-clout-dir/for/sure/clout.db",
}


PAGES_READING_DATA = ("/pages/queue", "/pages/feed", "/pages/tickets/", "/pages/customers/")


@pytest.mark.parametrize("store", sorted(STORE_DOWN))
def test_every_route_answers_503_json_when_the_store_and_redis_are_down(base_env, store, caplog):
    from plugin import create_app

    env = {**base_env, "DATABASE_URL": STORE_DOWN[store], "REDIS_URL": "redis://127.0.0.1:1/0",
           "CLOUT_WEBHOOK_SECRET_SOCIAL": TEST_SECRET}
    rt = Runtime(load_settings(env))
    app = create_app(runtime=rt)
    client = app.test_client()
    caplog.set_level(logging.WARNING)
    seen = []
    # The pages (HTML, behind a login) are checked as a logged-in agent: whatever needs the
    # store or Redis answers a 503 page; the login form itself needs neither.
    page = client.get("/pages/login")
    csrf = re.search(rb'name="csrf_token" value="([^"]+)"', page.data).group(1).decode()
    assert client.post("/pages/login", data={"token": TEST_TOKEN, "csrf_token": csrf}
                       ).status_code == 303
    try:
        for rule in app.url_map.iter_rules():
            if rule.endpoint == "static" or rule.endpoint.endswith(".static"):
                continue
            path = rule.rule
            for arg in rule.arguments:
                path = path.replace(f"<{arg}>", "generic" if arg == "source" else "T-1")
                path = path.replace(f"<path:{arg}>", "T-1")
                path = path.replace(f"<int:{arg}>", "1")
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                if path.startswith("/pages"):
                    resp = (client.post(path, data={"csrf_token": csrf}) if method == "POST"
                            else client.get(path))
                    seen.append((method, path))
                    assert resp.status_code != 500, (method, path)
                    if method == "GET" and path.startswith(PAGES_READING_DATA):
                        assert resp.status_code == 503, (path, resp.status_code)
                        assert b"unavailable" in resp.data.lower(), path
                    continue
                if method == "POST" and path.startswith("/webhooks/"):
                    body = json.dumps(load_fixture("social", "mention.created__complaint")
                                      if path == "/webhooks/social" else _event()).encode()
                    headers = standard_webhook_headers(TEST_SECRET, f"msg_{uuid.uuid4().hex}", body)
                    resp = client.post(path, data=body, headers=headers)
                elif method == "POST":  # the API's switches: a valid body, with the token
                    resp = client.post(path, json={"opt_out": True, "used": True}, headers=auth())
                else:
                    resp = client.open(path, method=method, headers=auth())
                seen.append((method, path))
                if path in ("/healthz", "/openapi.json"):  # need neither the store nor Redis
                    assert resp.status_code == 200
                    continue
                assert resp.status_code == 503, (method, path, resp.status_code, resp.get_data())
                assert resp.is_json and resp.get_json()["error"], (method, path)
    finally:
        rt.close()
    assert ("GET", "/api/queue") in seen and ("POST", "/webhooks/generic") in seen
    assert ("GET", "/pages/queue") in seen and ("POST", "/api/suggestions/1") in seen
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# -- weak secrets ----------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["web", "worker", "run"])
def test_the_commands_refuse_to_start_with_a_weak_secret(base_env, tmp_path, command):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUT_")}
    env.update(base_env, CLOUT_WEBHOOK_SECRET_GENERIC="whsec_AAAA", CLOUT_API_TOKEN="tok-12345")
    proc = subprocess.run([sys.executable, "-m", "plugin.cli", command], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "CLOUT_WEBHOOK_SECRET_GENERIC is too weak" in proc.stderr
    assert "CLOUT_API_TOKEN is too short" in proc.stderr
    assert "AAAA" not in proc.stderr + proc.stdout and "tok-12345" not in proc.stderr + proc.stdout
    assert not (tmp_path / "data" / "redis").exists()  # refused before anything started


def test_a_secret_that_bypassed_start_up_checks_is_503_not_500(runtime, base_env):
    """Settings built by hand (an embedding app) with a secret that isn't base64."""
    from dataclasses import replace

    from plugin import create_app
    from plugin.settings import Secrets

    runtime.settings = replace(runtime.settings, secrets=Secrets(webhook_secrets={"generic": "whsec_abc"}))
    client = create_app(runtime=runtime).test_client()
    body = json.dumps(_event()).encode()
    resp = client.post("/webhooks/generic", data=body,
                       headers=standard_webhook_headers(TEST_SECRET, "m-bypass", body))
    assert resp.status_code == 503 and resp.get_json()["error"] == "not_configured"
    assert runtime.queue.count == 0
