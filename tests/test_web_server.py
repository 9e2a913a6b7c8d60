"""The web server of `clout run`/`clout web` (waitress, plugin/web_server.py) over real sockets.

Slow and broken clients must cost a socket, never a thread, and be cut off
within about `web.request_timeout_seconds` (2 s here); errors the server layer
answers itself are JSON like the app's; client misbehaviour logs no ERROR.
These tests also pin the small adapters over waitress internals (total
deadline, JSON error task): if a waitress upgrade breaks them, it shows here.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import signal
import socket
import struct
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Iterable

import pytest
import requests

from conftest import TEST_SECRET, TEST_TOKEN, standard_webhook_headers
from test_cli import _clout, _env

TIMEOUT = 2  # web.request_timeout_seconds in these tests
# A cut-off lands within the timeout + waitress's maintenance interval (1 s here) + its
# loop's poll timeout (1 s); a little more for a loaded machine.
SLACK = 3.0
MAX_BODY = 65_536
CHUNKED_HEAD = b"POST /webhooks/generic HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"


@pytest.fixture()
def server(runtime_with):
    from plugin.app import create_app
    from plugin.services import serve_in_thread
    from plugin.web_server import WebOptions

    rt = runtime_with({"CLOUT_WEB__REQUEST_TIMEOUT_SECONDS": str(TIMEOUT),
                       "CLOUT_WEBHOOKS__MAX_BODY_BYTES": str(MAX_BODY)})
    srv = serve_in_thread(create_app(runtime=rt), "127.0.0.1", 0,
                          WebOptions.from_settings(rt.settings))
    yield srv
    srv.stop()


def _session() -> requests.Session:
    s = requests.Session()
    s.trust_env = False
    return s


def _connect(srv) -> socket.socket:
    return socket.create_connection(("127.0.0.1", srv.port), timeout=5)


def _healthz_fast(srv) -> float:
    started = time.monotonic()
    resp = _session().get(f"http://127.0.0.1:{srv.port}/healthz", timeout=5)
    assert resp.status_code == 200
    return time.monotonic() - started


def _read_all(sock: socket.socket, limit: float) -> bytes:
    """Everything the server sends until it closes (or `limit` seconds pass)."""
    sock.settimeout(limit)
    out = b""
    try:
        while chunk := sock.recv(65536):
            out += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return out


def _response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, body


def _closed_after(sock: socket.socket, limit: float) -> float | None:
    """Seconds until the server closes `sock` (we send nothing more); None if it didn't."""
    started = time.monotonic()
    sock.settimeout(limit)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return None
    except ConnectionResetError:
        pass
    return time.monotonic() - started


def _trickle(sock: socket.socket, pieces: Iterable[bytes], every: float,
             limit: float) -> tuple[float | None, bytes]:
    """Send a piece every `every` s until the server closes the connection or answers.

    Returns (seconds until then or None after `limit`, what the server sent)."""
    started = time.monotonic()
    for piece in pieces:
        try:
            sock.sendall(piece)
            sock.settimeout(every)
            got = sock.recv(65536)
            return time.monotonic() - started, got  # b"": closed; else an answer
        except TimeoutError:
            pass
        except OSError:  # reset, broken pipe: closed
            return time.monotonic() - started, b""
        if time.monotonic() - started > limit:
            return None, b""
    return None, b""


def _errors(caplog) -> list[str]:
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.ERROR]


def _thread_count() -> int:
    try:
        return len(os.listdir("/proc/self/task"))  # native threads too
    except OSError:
        return threading.active_count()


# -- the app through waitress --------------------------------------------------------------

def test_signed_webhook_is_accepted_through_waitress(server):
    body = json.dumps({"event_id": "evt-ws-1", "occurred_at": "2026-11-25T10:00:00Z",
                       "ticket": {"id": "T-WS-1", "subject": "Charged twice"},
                       "customer": {"id": "C-WS"}}).encode()
    headers = standard_webhook_headers(TEST_SECRET, f"msg_{uuid.uuid4().hex}", body)
    resp = _session().post(f"http://127.0.0.1:{server.port}/webhooks/generic", data=body,
                           headers=headers, timeout=5)
    assert resp.status_code == 202, resp.text
    assert resp.json()["status"] == "queued"
    assert resp.headers["Server"] == "clout"
    api = _session().get(f"http://127.0.0.1:{server.port}/api/queue", timeout=5,
                         headers={"Authorization": f"Bearer {TEST_TOKEN}"})
    assert api.status_code == 200


# -- errors the server answers itself --------------------------------------------------------

def test_bad_chunk_size_is_a_json_400_without_error_logs(server, caplog):
    caplog.set_level(logging.INFO)
    sock = _connect(server)
    sock.sendall(CHUNKED_HEAD + b"zz\r\nhello\r\n")
    status, headers, body = _response(_read_all(sock, 5))
    sock.close()
    assert status == 400
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {"error": "bad_request", "message": "Invalid chunk size"}
    assert _healthz_fast(server) < 1
    assert _errors(caplog) == []


def test_bad_request_line_is_a_json_400(server):
    sock = _connect(server)
    sock.sendall(b"NONSENSE\r\nHost: x\r\n\r\n")
    status, headers, body = _response(_read_all(sock, 5))
    sock.close()
    assert status == 400 and headers["content-type"] == "application/json"
    assert json.loads(body)["error"] == "bad_request"


def test_an_unsupported_transfer_encoding_is_a_json_400_not_a_5xx(server):
    """A 5xx would have the desk retry forever what can never work."""
    sock = _connect(server)
    sock.sendall(b"POST /webhooks/generic HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n"
                 b"Content-Type: application/json\r\n\r\n\x1f\x8b")
    status, headers, body = _response(_read_all(sock, 5))
    sock.close()
    assert status == 400 and headers["content-type"] == "application/json"
    assert json.loads(body)["error"] == "unsupported_transfer_encoding"


def test_over_size_body_is_a_json_413_and_the_limit_itself_passes(server):
    sock = _connect(server)
    sock.sendall(f"POST /webhooks/generic HTTP/1.1\r\nHost: x\r\nContent-Length: {MAX_BODY + 1}\r\n"
                 "Content-Type: application/json\r\n\r\n".encode())
    status, headers, body = _response(_read_all(sock, 5))
    sock.close()
    assert status == 413 and headers["content-type"] == "application/json"
    assert json.loads(body) == {"error": "body_too_large",
                                "message": f"request body is over {MAX_BODY} bytes"}
    # Exactly max_body_bytes reaches the app (which refuses the missing signature).
    resp = _session().post(f"http://127.0.0.1:{server.port}/webhooks/generic", data=b"x" * MAX_BODY,
                           headers={"content-type": "application/json"}, timeout=5)
    assert resp.status_code == 401, resp.text


# -- slow and stalled clients ------------------------------------------------------------------

def test_partial_bodies_hold_sockets_not_threads_and_are_cut_off(server, caplog):
    caplog.set_level(logging.INFO)
    _healthz_fast(server)  # app threads started and warm
    threads_before = _thread_count()
    socks = []
    for _ in range(50):
        sock = _connect(server)
        sock.sendall(b"POST /webhooks/generic HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"partial\":")
        socks.append(sock)
    opened = time.monotonic()
    try:
        assert _healthz_fast(server) < 1
        assert _thread_count() - threads_before < 5
        limit = opened + TIMEOUT + SLACK
        for sock in socks:
            assert _closed_after(sock, max(0.1, limit - time.monotonic())) is not None, \
                "a stalled partial body was kept open"
        assert time.monotonic() - opened >= TIMEOUT - 0.5  # the timeout, not sooner
    finally:
        for sock in socks:
            sock.close()
    assert _healthz_fast(server) < 1
    assert _errors(caplog) == []


def test_trickling_headers_are_cut_off_at_the_total_deadline(server):
    # One byte every 0.5 s: never idle for the timeout, so only the total deadline ends it.
    sock = _connect(server)
    header = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "
    pieces = itertools.chain((bytes([b]) for b in header), itertools.repeat(b"a"))
    try:
        elapsed, got = _trickle(sock, pieces, every=0.5, limit=TIMEOUT + SLACK)
    finally:
        sock.close()
    assert elapsed is not None, "a trickling client was kept beyond the request deadline"
    assert got == b""
    assert elapsed >= TIMEOUT - 0.5


def test_never_ending_slow_chunked_body_is_cut_off(server):
    sock = _connect(server)
    sock.sendall(CHUNKED_HEAD)
    try:
        elapsed, got = _trickle(sock, itertools.repeat(b"1\r\na\r\n"), every=0.3,
                                limit=TIMEOUT + SLACK)
    finally:
        sock.close()
    assert elapsed is not None, "a never-ending chunked body was kept beyond the request deadline"
    assert got == b""


def test_never_ending_fast_chunked_body_hits_the_size_limit(server, caplog):
    caplog.set_level(logging.INFO)
    sock = _connect(server)
    sock.sendall(CHUNKED_HEAD)
    chunk = b"4000\r\n" + b"x" * 0x4000 + b"\r\n"
    started = time.monotonic()
    sock.settimeout(1)
    sent = 0
    try:
        while time.monotonic() - started < TIMEOUT + SLACK:
            sock.sendall(chunk)
            sent += len(chunk)
    except OSError:  # reset, broken pipe, or the server stopped reading (timeout)
        pass
    raw = _read_all(sock, TIMEOUT + SLACK)
    sock.close()
    assert time.monotonic() - started < 2 * (TIMEOUT + SLACK)
    assert sent < 64 * MAX_BODY, "the server kept reading a body far over the limit"
    if raw:  # the 413 can be lost to the reset that closing with unread data causes
        status, headers, body = _response(raw)
        assert status == 413 and json.loads(body)["error"] == "body_too_large"
    assert _healthz_fast(server) < 1
    assert _errors(caplog) == []


def test_client_gone_mid_body_logs_no_error(server, caplog):
    caplog.set_level(logging.INFO)
    for reset in (False, True):
        sock = _connect(server)
        sock.sendall(b"POST /webhooks/generic HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n"
                     + b"y" * 1000)
        if reset:  # RST instead of FIN
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    time.sleep(0.3)
    assert _healthz_fast(server) < 1
    assert _errors(caplog) == []


def test_stop_closes_the_port(runtime_with):
    from plugin.app import create_app
    from plugin.services import serve_in_thread

    rt = runtime_with()
    srv = serve_in_thread(create_app(runtime=rt), "127.0.0.1", 0)
    idle = _connect(srv)  # a keep-alive client must not hold the stop up
    port = srv.port
    _healthz_fast(srv)
    started = time.monotonic()
    srv.stop()
    assert time.monotonic() - started < 3
    assert not srv.thread.is_alive()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    idle.close()


def test_local_stack_restarts_a_dead_web_thread_on_its_port(runtime_with):
    from plugin.services import LocalStack

    stack = LocalStack(runtime_with(), host="127.0.0.1", port=0, workers=0)
    try:
        stack.start()
        port = stack.port
        stack._server.stop(grace=0)  # the web thread ends as if it had died
        assert not stack._server.thread.is_alive()
        stack.check()
        assert stack.port == port and stack._server.thread.is_alive()
        assert _session().get(f"{stack.base_url}/healthz", timeout=5).status_code == 200
    finally:
        stack.stop()


# -- the CLI: a busy default port --------------------------------------------------------------

@pytest.fixture()
def port_5000_busy():
    """Hold 127.0.0.1:5000 for the whole test. If another process holds it, wait for it to
    let go: it may do so mid-test (seen when another suite or a demo ran on the machine),
    and the port would then be free after all."""
    deadline = time.monotonic() + 20
    while True:
        sock = socket.socket()
        try:
            sock.bind(("127.0.0.1", 5000))
            sock.listen()
            break
        except OSError:
            sock.close()
            if time.monotonic() > deadline:
                pytest.skip("127.0.0.1:5000 stayed held by another process")
            time.sleep(0.2)
    yield 5000
    sock.close()


def test_web_falls_back_to_a_free_port_when_5000_is_busy(tmp_path: Path, port_5000_busy):
    env = _env(tmp_path, CLOUT_WEBHOOK_SECRET_GENERIC=TEST_SECRET, CLOUT_API_TOKEN=TEST_TOKEN)
    proc = subprocess.Popen(_clout("web"), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=tmp_path)
    try:
        line = proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        assert match, line + proc.stderr.read() if proc.poll() is not None else line
        assert int(match.group(1)) != 5000
        resp = _session().get(f"http://127.0.0.1:{match.group(1)}/healthz", timeout=5)
        assert resp.status_code == 200 and resp.headers["Server"] == "clout"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "127.0.0.1:5000 is in use; serving on http://127.0.0.1:" in err
    assert "Traceback" not in err


def test_explicit_busy_port_fails_clearly(tmp_path: Path, port_5000_busy):
    proc = subprocess.run(_clout("web", "--port", "5000"), env=_env(tmp_path), capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode != 0
    assert "cannot listen on 127.0.0.1:5000" in proc.stderr and "--port" in proc.stderr
    assert "Traceback" not in proc.stderr
