"""Shared fixtures: a real Redis, a real store, a real app.

Redis is the embedded server (started once per session under a temp dir) or
`REDIS_URL` when set; the store is a fresh SQLite file per test, or the
PostgreSQL at `DATABASE_URL` with its tables recreated per test. Every test
gets its own queue name, so tests never see each other's jobs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import pytest

from rq.serializers import JSONSerializer

from plugin import runtime as runtime_mod
from plugin.redis_conn import RedisHandle, connect
from plugin.runtime import Runtime
from plugin.settings import Settings, load_settings
from plugin.worker import CloutSimpleWorker

FIXTURES = Path(__file__).parent / "fixtures"
TEST_SECRET = "whsec_" + base64.b64encode(b"clout-test-secret-0123456789abcdef").decode()
TEST_TOKEN = "test-api-token-7f3a-0123456789abcdef"


def pid_running(pid: int) -> bool:
    """Running, not merely unreaped: where PID 1 doesn't reap orphans (some container and
    VM inits), a killed daemonised server stays a zombie and still answers signal 0."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no procfs (macOS): the signal check is all there is
    return state not in ("Z", "X")


def standard_webhook_headers(secret: str, msg_id: str, body: bytes, ts: int | None = None) -> dict[str, str]:
    """Sign like a Standard Webhooks sender; written independently of webhooks.generic."""
    ts = int(time.time()) if ts is None else ts
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": "v1," + base64.b64encode(mac).decode(),
    }


def load_fixture(source: str, name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / source / f"{name}.json").read_text())


@pytest.fixture(scope="session")
def redis_session(tmp_path_factory: pytest.TempPathFactory):
    handle = connect(os.environ.get("REDIS_URL") or None, tmp_path_factory.mktemp("redis-data"))
    handle.client.ping()
    yield handle
    handle.close()


@pytest.fixture()
def base_env(tmp_path: Path) -> dict[str, str]:
    env = {
        "CLOUT_DATA_DIR": str(tmp_path / "data"),
        "CLOUT_WEBHOOK_SECRET_GENERIC": TEST_SECRET,
        "CLOUT_API_TOKEN": TEST_TOKEN,
        "CLOUT_QUEUE__NAME": f"test-{uuid.uuid4().hex[:10]}",
    }
    for name in ("REDIS_URL", "DATABASE_URL"):
        if os.environ.get(name):
            env[name] = os.environ[name]
    return env


@pytest.fixture()
def settings(base_env: dict[str, str]) -> Settings:
    return load_settings(base_env)


@pytest.fixture()
def runtime(settings: Settings, redis_session: RedisHandle):
    # Own client on the shared server; closing it must not stop the session's Redis.
    client = redis_session.new_client()
    rt = Runtime(settings, redis_handle=RedisHandle(client=client, description="test"))
    if not settings.database_url.startswith("sqlite"):
        from plugin.store import metadata

        metadata.drop_all(rt.store.engine)
        metadata.create_all(rt.store.engine)
    runtime_mod.install(rt)
    yield rt
    runtime_mod.install(None)
    rt.close()


@pytest.fixture()
def runtime_with(base_env: dict[str, str], redis_session: RedisHandle):
    """Build (and install for jobs) a runtime with extra settings or another Redis client."""
    built: list[Runtime] = []

    def make(env: dict[str, str | None] | None = None, client: Any = None) -> Runtime:
        merged = {k: v for k, v in {**base_env, **(env or {})}.items() if v is not None}  # None: unset
        rt = Runtime(load_settings(merged),
                     redis_handle=RedisHandle(client=client or redis_session.new_client()))
        if not rt.settings.database_url.startswith("sqlite") and not built:
            from plugin.store import metadata

            metadata.drop_all(rt.store.engine)
            metadata.create_all(rt.store.engine)
        runtime_mod.install(rt)
        built.append(rt)
        return rt

    yield make
    runtime_mod.install(None)
    for rt in built:
        rt.close()


def work(rt: Runtime) -> None:
    """A real RQ worker over `rt`'s queue until it is empty."""
    CloutSimpleWorker([rt.queue], connection=rt.redis, serializer=JSONSerializer).work(
        burst=True, logging_level="WARNING")


def submit(rt: Runtime, events: list[dict[str, Any]]):
    """Put events (TicketEvent dicts) in the ledger as the drain does, and queue one batch job."""
    from plugin.queues import enqueue_events

    rt.store.add_events([{"source": e["source"], "event_id": e["event_id"],
                          "ticket_id": e["ticket_id"], "occurred_at": e.get("occurred_at"),
                          "payload": e} for e in events])
    return enqueue_events(rt.queue, rt.settings, [[e["source"], e["event_id"]] for e in events])


@pytest.fixture()
def app(runtime: Runtime):
    from plugin import create_app

    application = create_app(runtime=runtime)
    application.config["TESTING"] = True
    return application


@pytest.fixture()
def client(app):
    return app.test_client()


@pytest.fixture()
def post_generic(client) -> Callable[..., Any]:
    """POST a body to /webhooks/generic signed with the test secret."""

    def post(payload: dict[str, Any] | bytes, *, msg_id: str | None = None, ts: int | None = None,
             secret: str = TEST_SECRET, headers: dict[str, str] | None = None):
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
        signed = standard_webhook_headers(secret, msg_id, body, ts)
        signed.update(headers or {})
        return client.post("/webhooks/generic", data=body, headers=signed)

    return post


@pytest.fixture()
def drain(runtime: Runtime) -> Callable[[], None]:
    """Run a real RQ worker over the test queue until it is empty."""

    return lambda: work(runtime)


def auth(token: str = TEST_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture()
def acme(base_env: dict[str, str], redis_session: RedisHandle, monkeypatch):
    """The test-only `acme` desk (tests/desks) next to `generic`, its HTTP server running.

    Yields a factory: `make(**env)` -> (runtime, server); the runtime is installed for jobs.
    """
    from connectors import crm
    from desks.server import AcmeServer

    monkeypatch.setitem(crm.DESKS, "acme", "desks.acme")
    server = AcmeServer().start()
    built: list[Runtime] = []

    def make(**extra: str) -> tuple[Runtime, AcmeServer]:
        env = {**base_env, "CLOUT_DESKS__ACME__ENABLED": "true",
               "CLOUT_DESKS__ACME__BASE_URL": server.url,
               "CLOUT_WEBHOOK_SECRET_ACME": TEST_SECRET, "CLOUT_ACME_API_KEY": "acme-key-123",
               "CLOUT_DELIVERY__RETRY_BASE_SECONDS": "0.2", "CLOUT_DELIVERY__RETRY_MAX_SECONDS": "1",
               **extra}
        rt = Runtime(load_settings(env), redis_handle=RedisHandle(client=redis_session.new_client()))
        if not rt.settings.database_url.startswith("sqlite") and not built:
            from plugin.store import metadata

            metadata.drop_all(rt.store.engine)
            metadata.create_all(rt.store.engine)
        runtime_mod.install(rt)
        built.append(rt)
        return rt, server

    yield make
    runtime_mod.install(None)
    for rt in built:
        rt.close()
    server.stop()
