"""Logs never contain customer data, SQL parameters or secrets.

The end-to-end test plants canaries (a customer's name, e-mail and handle, the
webhook secret and the API token), drives them through the real parts (signed
webhooks into the Flask app, Redis, `run_worker`'s forking RQ worker, the store,
the local desk) including a database error that quotes the refused row, and then
searches every log line and traceback, every Redis value (RQ's job hashes and
result streams decompressed) and every stored error message for them.

The customer's facts legitimately live in the customers and tickets tables, the
ledger's event payloads and the local desk view: those are data, not logs.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import logging
import sys
import uuid
import zlib
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from conftest import auth
from plugin.logs import (RedactingFilter, clear_secrets, configure_logging, redact,
                         register_secrets, settings_secrets)

CANARY_NAME = "Canary Zebediah Quux"
CANARY_EMAIL = "zebediah.canary@example.test"
CANARY_HANDLE = "canaryzeb"  # the customer's x handle, "@canaryzeb"
CANARY_SECRET = "whsec_" + base64.b64encode(b"canary-webhook-secret-5e1f0c9a7d3b").decode()
CANARY_TOKEN = "canary-api-token-8d4f1b7e2c9a6035f1e8d2c7b4a9"
# Searched case-insensitively; fragments too, so a truncated or re-cased copy is found.
NEEDLES = (CANARY_NAME, "zebediah", "quux", CANARY_EMAIL, CANARY_HANDLE,
           CANARY_SECRET, CANARY_SECRET.removeprefix("whsec_"), CANARY_TOKEN, "8d4f1b7e2c9a")


def _leaks(text: str) -> list[str]:
    low = text.lower()
    return [n for n in NEEDLES if n.lower() in low]


@pytest.fixture(autouse=True)
def _forget_secrets():
    clear_secrets()
    yield
    clear_secrets()


# -- the rules ------------------------------------------------------------------


def test_normal_messages_pass_unchanged():
    for text in ("ranked 12 ticket(s) with weights 3f2a9c1e",
                 "desk generic: written 3, agent_override 1",
                 "batch of 4 failed (IntegrityError (IntegrityError)); split into 2 + 2",
                 "Worker rq:worker:9f3c: job 5d1e: exception raised while executing (x)",
                 'Traceback (most recent call last):\n  File "/x/jobs.py", line 3, in f\n    g()',
                 'POST /webhooks/generic HTTP/1.1" 202 -',
                 ""):
        assert redact(text) == text


def test_sqlalchemy_parameters_are_removed():
    text = ("(sqlite3.IntegrityError) UNIQUE constraint failed: customers.id\n"
            "[SQL: INSERT INTO customers (id, name) VALUES (?, ?)]\n"
            f"[parameters: ('C-1', '{CANARY_NAME}')]\n"
            "(Background on this error at: https://sqlalche.me/e/20/gkpj)")
    out = redact(text)
    assert not _leaks(out)
    assert "UNIQUE constraint failed: customers.id" in out  # value-free: kept
    assert "[SQL: INSERT INTO customers (id, name) VALUES (?, ?)]" in out
    assert "[parameters: <redacted>]" in out


def test_postgres_detail_lines_and_keys_are_removed():
    text = ('sqlalchemy.exc.IntegrityError: (psycopg.errors.CheckViolation) new row for relation '
            '"customers" violates check constraint "c1"\n'
            f"DETAIL:  Failing row contains (C-1, {CANARY_NAME}, {CANARY_EMAIL}, "
            f'{{"x": "{CANARY_HANDLE}"}}).\n'
            "[SQL: INSERT INTO customers ...]")
    out = redact(text)
    assert not _leaks(out)
    assert 'violates check constraint "c1"' in out and "DETAIL: <redacted>" in out
    out = redact(f"duplicate key: Key (lower(email))=({CANARY_EMAIL} (x)) already exists.")
    assert out == "duplicate key: Key (lower(email))=(<redacted>)"
    assert not _leaks(redact(f"CONTEXT:  COPY customers, line 1: \"{CANARY_NAME}\""))
    assert (redact(f"... Failing row contains ({CANARY_NAME}).")
            == "... Failing row contains (<redacted>)")


def test_driver_messages_are_withheld_unless_known_value_free():
    assert (redact(f"sqlite3.IntegrityError: refusing {CANARY_NAME}")
            == "sqlite3.IntegrityError: <redacted>")
    assert (redact("psycopg.errors.InvalidTextRepresentation: invalid input syntax for type "
                   f'date: "{CANARY_NAME}"')
            == "psycopg.errors.InvalidTextRepresentation: <redacted>")
    assert (redact("sqlalchemy.exc.StatementError: (builtins.ValueError) Invalid isoformat "
                   f"string: '{CANARY_NAME}'")
            == "sqlalchemy.exc.StatementError: (builtins.ValueError) <redacted>")
    assert redact(f"failed: (sqlite3.IntegrityError) refusing {CANARY_NAME}") == \
        "failed: (sqlite3.IntegrityError) <redacted>"
    for safe in ("sqlite3.OperationalError: database is locked",
                 "sqlalchemy.exc.IntegrityError: (sqlite3.IntegrityError) "
                 "NOT NULL constraint failed: events.ticket_id",
                 "psycopg.errors.UniqueViolation: duplicate key value violates unique "
                 'constraint "uq_writes_ticket"',
                 "sqlalchemy.exc.NoResultFound: No row was found when one was required"):
        assert redact(safe) == safe


def test_pydantic_input_values_are_removed():
    text = ("monthly_spend\n  Input should be a valid number "
            f"[type=float_type, input_value='{CANARY_NAME}', input_type=str]")
    out = redact(text)
    assert not _leaks(out)
    assert "[type=float_type, input_value=<redacted>, input_type=str]" in out


def test_emails_handles_urls_and_secrets():
    out = redact(f"mail {CANARY_EMAIL}, x @{CANARY_HANDLE}, "
                 "see https://bob:pw@desk.example.com:8443/t/1?email=x#f")
    assert out == "mail <email>, x @<handle>, see https://desk.example.com:8443/…"
    assert (redact('"GET /api/queue?limit=5&q=zeb HTTP/1.1" 200')
            == '"GET /api/queue?… HTTP/1.1" 200')
    assert redact(f"key {CANARY_SECRET}!") == "key whsec_<redacted>!"
    assert redact("Authorization: Bearer abcdefgh.ijk") == "Authorization: Bearer <redacted>"
    assert redact("retry api_key=sk_live_123 now") == "retry api_key=<redacted> now"
    assert redact('{"token": "tok_123456"}') == '{"token": "<redacted>"}'
    assert redact("redis://:p4ss@cache.internal:6379/0") == "redis://cache.internal:6379/…"


def test_registered_secrets_are_removed_wherever_they_appear(settings):
    # `settings` is built from this module's base_env: the canary token and webhook secret.
    assert set(settings_secrets(settings)) == {CANARY_TOKEN, CANARY_SECRET}
    register_secrets([CANARY_TOKEN, CANARY_SECRET, None, "", "short"])
    core = CANARY_SECRET.removeprefix("whsec_")
    assert redact(f"a{CANARY_TOKEN}b {core} x") == "a<secret>b <secret> x"
    assert redact("short stays") == "short stays"  # too short to redact safely


def test_filter_redacts_message_arguments_traceback_and_stack():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("clout.test.redaction.unit")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    register_secrets([CANARY_TOKEN])
    try:
        logger.info("customer %s wrote from %s", "C-1", CANARY_EMAIL)
        try:
            try:
                raise ValueError(f"token {CANARY_TOKEN} for {CANARY_EMAIL}")
            except ValueError as inner:
                raise RuntimeError(f"wrapped @{CANARY_HANDLE}") from inner
        except RuntimeError:
            logger.exception("job failed", stack_info=True)
        logger.warning("bad %d", "not a number")  # arguments that fail to format
    finally:
        logger.removeHandler(handler)
    out = stream.getvalue()
    assert not _leaks(out), out
    assert "customer C-1 wrote from <email>" in out
    assert "Traceback (most recent call last)" in out and "RuntimeError: wrapped @<handle>" in out
    assert "ValueError: token <secret> for <email>" in out
    assert "Stack (most recent call last)" in out
    assert "<arguments withheld" in out


def test_describe_error_carries_no_values():
    from pydantic import BaseModel, ValidationError

    from plugin.errors import describe_error

    class Model(BaseModel):
        spend: float

    try:
        Model(spend=f"{CANARY_NAME} {CANARY_EMAIL}")
    except ValidationError as exc:
        assert not _leaks(describe_error(exc))
    assert describe_error(KeyError(CANARY_NAME)) == "KeyError"
    assert describe_error(KeyError("monthly_spend")) == "KeyError: 'monthly_spend'"
    register_secrets([CANARY_TOKEN])
    text = describe_error(
        ValueError(f"{CANARY_EMAIL} @{CANARY_HANDLE} {CANARY_SECRET} {CANARY_TOKEN}"))
    assert text.startswith("ValueError: ") and not _leaks(text)
    import sqlite3

    assert describe_error(sqlite3.IntegrityError(f"refusing {CANARY_NAME}")) == "IntegrityError"


# -- end to end -------------------------------------------------------------------


@pytest.fixture()
def base_env(base_env: dict[str, str]) -> dict[str, str]:
    return {**base_env, "CLOUT_WEBHOOK_SECRET_GENERIC": CANARY_SECRET,
            "CLOUT_API_TOKEN": CANARY_TOKEN, "CLOUT_SERVICE__LOG_LEVEL": "DEBUG",
            "CLOUT_DELIVERY__MAX_EVENT_ATTEMPTS": "1"}


@pytest.fixture()
def production_logging(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Logging exactly as a Clout process configures it, its stderr a file (the worker's
    forked work-horses write to it too)."""
    path = tmp_path / "clout-stderr.log"
    stream = open(path, "a", buffering=1, encoding="utf-8")
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    rq_levels = {name: logging.getLogger(name).level
                 for name in ("rq.worker", "rq.job", "rq.scheduler")}
    root.handlers = []  # pytest's capture handlers would make basicConfig a no-op
    monkeypatch.setattr(sys, "stderr", stream)
    configure_logging("DEBUG")
    ours = root.handlers[:]
    root.handlers = ours + saved_handlers  # pytest's come back (and go when pytest says)
    yield path
    for handler in ours:
        root.removeHandler(handler)
    root.setLevel(saved_level)
    for name, level in rq_levels.items():
        logging.getLogger(name).setLevel(level)
    stream.close()


def _event(ticket_id: str, customer: dict[str, Any],
           subject: str = "Export broken") -> dict[str, Any]:
    now = dt.datetime.now(dt.timezone.utc)
    return {"event_id": f"evt_{uuid.uuid4().hex}", "occurred_at": now.isoformat(),
            "ticket": {"id": ticket_id, "subject": subject,
                       "description": "Unacceptable, we may cancel.",
                       "created_at": (now - dt.timedelta(hours=2)).isoformat()},
            "customer": customer}


def _canary_customer() -> dict[str, Any]:
    return {"id": "C-CANARY", "name": CANARY_NAME, "email": CANARY_EMAIL,
            "handles": {"x": CANARY_HANDLE}, "monthly_spend": 4200,
            "contract_end": (dt.date.today() + dt.timedelta(days=20)).isoformat()}


def _run_worker(base_env: dict[str, str], redis_session: Any) -> None:
    """`clout worker --burst` as the CLI runs it: run_worker with its own runtime."""
    from plugin.redis_conn import RedisHandle
    from plugin.runtime import Runtime
    from plugin.settings import load_settings
    from plugin.worker import run_worker

    handle = RedisHandle(client=redis_session.new_client())
    run_worker(Runtime(load_settings(base_env), redis_handle=handle), burst=True)


def _install_trap(engine: sa.Engine) -> None:
    """Make the store refuse the canary customer with an error that quotes the row.

    PostgreSQL does that itself: a CHECK violation's DETAIL line is "Failing row contains
    (C-CANARY, Canary Zebediah Quux, ...)". SQLite only names the constraint, so a trigger
    raises a message carrying the canaries, as a driver quoting the row would."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(sa.text("ALTER TABLE customers ADD CONSTRAINT canary_trap "
                                 "CHECK (name IS NULL OR name NOT LIKE '%Zebediah%') NOT VALID"))
        else:
            message = f"refusing row (C-CANARY, {CANARY_NAME}, {CANARY_EMAIL}, @{CANARY_HANDLE})"
            for when in ("INSERT", "UPDATE"):
                conn.execute(sa.text(
                    f"CREATE TRIGGER canary_trap_{when.lower()} BEFORE {when} ON customers "
                    f"WHEN NEW.name LIKE '%Zebediah%' BEGIN SELECT RAISE(ABORT, '{message}'); END"))


def _remove_trap(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(sa.text("ALTER TABLE customers DROP CONSTRAINT IF EXISTS canary_trap"))
        else:
            for when in ("insert", "update"):
                conn.execute(sa.text(f"DROP TRIGGER IF EXISTS canary_trap_{when}"))


def _decoded(blob: Any) -> list[str]:
    """A Redis value as text, and as RQ stores payloads: zlib, base64, base64 of zlib."""
    if isinstance(blob, (int, float)):
        return [str(blob)]
    raw = blob if isinstance(blob, bytes) else str(blob).encode()
    forms = [raw]
    for decode in (zlib.decompress, lambda b: base64.b64decode(b, validate=True),
                   lambda b: zlib.decompress(base64.b64decode(b, validate=True))):
        try:
            forms.append(decode(raw))
        except Exception:
            pass
    return [f.decode("utf-8", "replace") for f in forms]


def _values(client: Any, key: bytes) -> list[Any] | None:
    kind = client.type(key).decode()
    if kind == "string":
        return [client.get(key)]
    if kind == "list":
        return client.lrange(key, 0, -1)
    if kind == "hash":
        return [part for pair in client.hgetall(key).items() for part in pair]
    if kind == "set":
        return list(client.smembers(key))
    if kind == "zset":
        return [member for member, _ in client.zrange(key, 0, -1, withscores=True)]
    if kind == "stream":
        return [part for _, fields in client.xrange(key)
                for pair in fields.items() for part in pair]
    return None  # expired between SCAN and TYPE


def _redis_texts(client: Any, queue: str) -> dict[str, list[str]]:
    """Everything this test's queue left in Redis, decoded: Clout's keys (they carry the
    queue name), RQ's queue and registries, and every job, result and execution of a job
    on the queue. Other tests share the server; their keys are not ours to judge."""
    keys = [k.decode() for k in client.scan_iter(count=1000)]
    job_ids = {k.split(":", 2)[2] for k in keys
               if k.startswith("rq:job:") and client.type(k) == b"hash"
               and client.hget(k, "origin") == queue.encode()}
    for k in keys:
        if queue in k and client.type(k) in (b"zset", b"list"):
            job_ids |= {v.decode() for v in _values(client, k.encode()) or []}
    job_ids.discard("")
    ours = [k for k in keys if queue in k or any(i in k for i in job_ids)
            or (k.startswith("rq:worker:") and client.type(k) == b"hash"
                and queue.encode() in (client.hget(k, "queues") or b""))]
    out: dict[str, list[str]] = {}
    for key in ours:
        values = _values(client, key.encode())
        if values is not None:
            out[key] = [key] + [t for v in values if v is not None for t in _decoded(v)]
    return out


def test_canaries_never_reach_logs_redis_or_stored_errors(
        production_logging: Path, base_env, redis_session, runtime, client, post_generic):
    from plugin.inbox import inbox_key
    from plugin.store import decisions, events, writes
    from connectors.crm.base import Customer
    from rq.registry import FailedJobRegistry

    # As the CLI does at start-up.
    register_secrets(settings_secrets(runtime.settings))
    engine = runtime.store.engine
    log = logging.getLogger("plugin.test_redaction")

    # 1. The happy path: signed webhooks in, the worker decides and writes to the local desk.
    assert post_generic(_event("T-CANARY", _canary_customer()),
                        secret=CANARY_SECRET).status_code == 202
    assert post_generic(_event("T-OTHER", {"id": "C-OTHER", "monthly_spend": 30}),
                        secret=CANARY_SECRET).status_code == 202
    bad = _event("T-BAD", {**_canary_customer(), "monthly_spend": CANARY_NAME,
                           "currency": CANARY_EMAIL})
    refused = post_generic(bad, secret=CANARY_SECRET)
    assert refused.status_code in (400, 422) and not _leaks(refused.get_data(as_text=True))
    wrong = {"Authorization": "Bearer wrong-token-000000"}
    assert client.get("/api/queue", headers=wrong).status_code == 401
    assert client.get("/api/queue", headers=auth(CANARY_TOKEN)).status_code == 200
    _run_worker(base_env, redis_session)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(decisions)).scalar() == 2

    # 2. A database error quoting the canary customer's row, in a batch (split) and alone.
    _install_trap(engine)
    try:
        assert post_generic(_event("T-CANARY", _canary_customer(), subject="Still broken"),
                            secret=CANARY_SECRET).status_code == 202
        assert post_generic(_event("T-OTHER2", {"id": "C-OTHER2", "monthly_spend": 90}),
                            secret=CANARY_SECRET).status_code == 202
        _run_worker(base_env, redis_session)

        # 3. Logged directly: a real database error, with its traceback and as an argument,
        # and an ordinary exception quoting e-mail, handle and secrets.
        try:
            runtime.store.upsert_customers([Customer(
                id="C-CANARY", name=CANARY_NAME, email=CANARY_EMAIL, handles={"x": CANARY_HANDLE})])
        except sa.exc.DBAPIError as db_exc:
            log.exception("upsert failed")
            log.error("upsert failed: %s", db_exc)
            log.warning("upsert failed: %r", db_exc, stack_info=True)
            try:
                raise ValueError(
                    f"customer {CANARY_EMAIL} (@{CANARY_HANDLE}) token={CANARY_TOKEN} "
                    f"Bearer {CANARY_TOKEN} secret {CANARY_SECRET} "
                    f"https://u:{CANARY_TOKEN}@desk.example/x?email={CANARY_EMAIL}") from db_exc
            except ValueError:
                log.exception("lookup for %s failed", CANARY_EMAIL)
        else:
            pytest.fail("the trap did not fire")
    finally:
        _remove_trap(engine)

    # 4. Run the worker until the inbox is drained (queued events are data, not logs).
    for _ in range(3):
        _run_worker(base_env, redis_session)
        if not runtime.redis.llen(inbox_key(runtime.settings)):
            break
    assert runtime.redis.llen(inbox_key(runtime.settings)) == 0
    from plugin import runtime as runtime_mod

    runtime_mod.install(runtime)
    for handler in logging.getLogger().handlers:
        handler.flush()

    # The failure path really ran: a stored, redacted traceback and a parked event.
    failed = FailedJobRegistry(queue=runtime.queue)
    failed_jobs = [runtime.queue.fetch_job(i) for i in failed.get_job_ids()]
    stored_tracebacks = [j.latest_result().exc_string for j in failed_jobs if j is not None]
    assert any("Traceback" in t and "IntegrityError" in t for t in stored_tracebacks)
    with engine.connect() as conn:
        errors = [e for (e,) in conn.execute(sa.select(events.c.last_error)) if e]
        write_errors = [e for (e,) in conn.execute(sa.select(writes.c.last_error)) if e]
        decision_rows = [json.dumps(dict(r._mapping), default=str)
                         for r in conn.execute(decisions.select())]
    assert errors and all("IntegrityError" in e for e in errors), errors

    # 5. Search everything.
    logged = production_logging.read_text(encoding="utf-8")
    assert "exception raised while executing" in logged  # RQ's job traceback, via our handler
    assert "upsert failed" in logged and "Traceback (most recent call last)" in logged
    leaks = {f"log line: {line}": _leaks(line) for line in logged.splitlines() if _leaks(line)}
    stored = _redis_texts(runtime.redis, runtime.settings.config.queue.name)
    assert any(k.startswith("rq:results:") for k in stored)
    assert any(k.startswith("clout:") for k in stored)
    for key, texts in stored.items():
        for text in texts:
            if _leaks(text):
                leaks[f"redis {key}: {text[:300]}"] = _leaks(text)
    for where, texts in (("rq failure", stored_tracebacks),
                         ("store", errors + write_errors + decision_rows)):
        for text in texts:
            if _leaks(text):
                leaks[f"{where}: {text[:300]}"] = _leaks(text)
    parked = runtime.store.parked()
    if _leaks(json.dumps(parked, default=str)):
        leaks["clout failed"] = _leaks(json.dumps(parked, default=str))
    assert not leaks, "\n".join(f"{where}\n    -> {found}" for where, found in leaks.items())
    # ... and the search saw the redacted tracebacks: in the log, and in RQ's stored failures.
    assert "<redacted>" in logged and "<email>" in logged
    assert any("Traceback" in t and "<redacted>" in t
               for texts in stored.values() for t in texts)
