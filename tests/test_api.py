"""Read API auth and errors, health endpoints."""

from __future__ import annotations

import pytest

from conftest import TEST_TOKEN, auth


@pytest.mark.parametrize("path", ["/api/queue", "/api/tickets/T-1"])
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TEST_TOKEN}"},
     {"Authorization": "Bearer"}, {"Authorization": TEST_TOKEN}],
)
def test_api_needs_the_right_bearer_token(client, path, headers):
    resp = client.get(path, headers=headers)
    assert resp.status_code == 401
    assert resp.get_json()["error"] == "unauthorized"
    assert TEST_TOKEN not in resp.get_data(as_text=True)


def test_unknown_ticket_is_404_json(client):
    resp = client.get("/api/tickets/nope", headers=auth())
    assert resp.status_code == 404
    assert "nope" in resp.get_json()["message"]


@pytest.mark.parametrize("query", ["limit=0", "limit=abc", "limit=501", "offset=-1"])
def test_bad_paging_is_400(client, query):
    resp = client.get(f"/api/queue?{query}", headers=auth())
    assert resp.status_code == 400
    assert resp.get_json()["error"] == "bad_request"


def test_empty_queue(client):
    resp = client.get("/api/queue", headers=auth())
    assert resp.status_code == 200
    assert resp.get_json()["tickets"] == []


def test_health_and_readiness(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json()["checks"] == {"redis": "ok", "store": "ok"}


def test_readiness_reports_a_dead_redis(runtime_with):
    import redis

    from plugin import create_app

    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    resp = create_app(runtime=runtime_with(client=dead)).test_client().get("/readyz")
    assert resp.status_code == 503
    assert resp.get_json()["checks"]["redis"].startswith("failing")


def test_unknown_route_is_json_404(client):
    resp = client.get("/nothing-here")
    assert resp.status_code == 404
    assert resp.get_json()["error"] == "not_found"


def test_extension_on_an_existing_app(runtime):
    from flask import Flask

    from plugin import Clout

    host = Flask("host")

    @host.get("/")
    def index():
        return "host page"

    ext = Clout()
    ext.init_app(host, runtime=runtime)
    c = host.test_client()
    assert c.get("/").get_data(as_text=True) == "host page"
    assert c.get("/healthz").status_code == 200
    assert host.extensions["clout"].runtime is runtime


@pytest.mark.parametrize("path", ["/api/tickets/a%00b", "/api/tickets/a?source=%00", "/api/tickets/" + "x" * 5000])
def test_impossible_ids_are_404_not_500(client, path):
    resp = client.get(path, headers=auth())
    assert resp.status_code == 404
    assert len(resp.get_data()) < 500


def test_ticket_ids_with_slashes(post_generic, drain, client):
    import datetime as dt

    now = dt.datetime.now(dt.timezone.utc).isoformat()
    post_generic({"event_id": "e-slash", "occurred_at": now, "ticket": {"id": "ACME/2026/17"},
                  "customer": {"id": "C-SL"}})
    drain()
    resp = client.get("/api/tickets/ACME/2026/17", headers=auth())
    assert resp.status_code == 200
    assert resp.get_json()["ticket_id"] == "ACME/2026/17"
