"""The `clout` command as a user runs it: real processes, real HTTP, embedded Redis."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import requests

from conftest import TEST_SECRET, TEST_TOKEN, pid_running, standard_webhook_headers

ROOT = Path(__file__).resolve().parent.parent


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUT_")}
    # These tests are about the embedded defaults (and a shared database would hand the
    # demo whatever other tests left in it).
    env.pop("REDIS_URL", None)
    env.pop("DATABASE_URL", None)
    env.update({"CLOUT_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(ROOT), **extra})
    return env


def _clout(*args: str) -> list[str]:
    return [sys.executable, "-m", "plugin.cli", *args]


def _embedded_pid(data_dir: Path) -> int | None:
    """The embedded redis-server's pid, from the record Clout keeps while it runs."""
    record = data_dir / "redis" / "server.json"
    try:
        return int(json.loads(record.read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return None


def _gone(pid: int | None, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while pid and time.monotonic() < deadline:
        if not pid_running(pid):
            return True
        time.sleep(0.05)
    return pid is None


def test_demo_prints_the_ranked_queue_and_exits_0(tmp_path: Path):
    env = _env(tmp_path)
    proc = subprocess.run(_clout("demo", "--port", "0"), env=env, capture_output=True, text=True,
                          timeout=240, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "Posted 12 signed webhooks" in out
    assert "Decided 12/12" in out
    for header in ("Priority", "Customer", "Flags", "Reason"):
        assert header in out
    first, _, second = out.partition("An agent sets")
    rows = [line for line in first.splitlines() if re.match(r"^\s*\d+\s+(Urgent|High|Normal|Low)\b", line)]
    assert len(rows) == 12, out
    # Act two: the agent's priority stands and the solved ticket left the queue.
    assert "the agent's Urgent stands (state: agent_override; not overwritten)" in second
    assert "T-2006: solved, left the queue (11 open tickets now)" in second
    rows = [line for line in second.splitlines() if re.match(r"^\s*\d+\s+(Urgent|High|Normal|Low)\b", line)]
    assert len(rows) == 11 and "(agent)" in second, out
    # Act three: three social mentions; the loud wifi complaint raises its ticket and gets a
    # suggestion; then the pages' address and a one-time login link (not served: no terminal).
    assert "Posted 3 social mentions to /webhooks/social (all 202)." in out
    assert re.search(r"Loudest complaint: Ada Quinlan on bluesky .*-> ticket T-2001 raised", out), out
    assert "Suggested gesture on its ticket: Credit the disputed charge" in out
    assert re.search(r"One-time admin login \(works once, for 15 min\): http://127\.0\.0\.1:\d+"
                     r"/pages/login/once\?t=\S+", out), out
    assert "the demo server stops now" in out
    # Throwaway secrets are never printed.
    assert "whsec_" not in out + proc.stderr
    # The embedded Redis stopped with the demo.
    assert _gone(_embedded_pid(tmp_path / "data"))
    # Running it again works (same data dir, fresh delivery ids).
    again = subprocess.run(_clout("demo", "--port", "0"), env=env, capture_output=True, text=True,
                           timeout=240, cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr


def test_demo_serve_keeps_the_pages_up_for_the_login_link(tmp_path: Path):
    """`clout demo --serve`: the printed link opens the pages until Ctrl-C."""
    import signal

    import requests

    proc = subprocess.Popen(_clout("demo", "--port", "0", "--serve"), env=_env(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        link = None
        for line in proc.stdout:
            found = re.search(r"One-time admin login \(works once, for \d+ min\): (\S+)", line)
            if found:
                link = found.group(1)
            if line.startswith("Serving the pages"):
                break
        assert link, "no login link printed"
        session = requests.Session()
        page = session.get(link, timeout=10)
        assert page.status_code == 200 and "Log in" in page.text
        form = re.search(r'<form[^>]*action="([^"]+)"', page.text)
        fields = dict(re.findall(r'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"', page.text))
        base = link.split("/pages/")[0]
        action = form.group(1).replace("&amp;", "&") if form else link
        done = session.post(action if action.startswith("http") else base + action, data=fields,
                            timeout=10)
        assert done.status_code == 200 and "Agent queue" in done.text, done.text[:500]
        assert "T-2001" in done.text
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, out + err
    assert "Stopped." in out


def test_run_serves_webhooks_until_sigterm(tmp_path: Path):
    env = _env(tmp_path, CLOUT_WEBHOOK_SECRET_GENERIC=TEST_SECRET, CLOUT_API_TOKEN=TEST_TOKEN)
    proc = subprocess.Popen(_clout("run", "--port", "0"), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, cwd=tmp_path)
    try:
        line = proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        assert match, line
        base = f"http://127.0.0.1:{match.group(1)}"
        session = requests.Session()
        session.trust_env = False
        assert session.get(f"{base}/healthz", timeout=5).status_code == 200
        body = json.dumps({
            "event_id": "evt-run-1", "occurred_at": "2026-11-25T10:00:00Z",
            "ticket": {"id": "T-RUN-1", "subject": "Refund please, charged twice"},
            "customer": {"id": "C-RUN", "monthly_spend": 120, "handles": {"x": "farahtech"}},
        }).encode()
        msg = f"msg_{uuid.uuid4().hex}"
        resp = session.post(f"{base}/webhooks/generic", data=body,
                            headers=standard_webhook_headers(TEST_SECRET, msg, body), timeout=5)
        assert resp.status_code == 202, resp.text
        decided = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            r = session.get(f"{base}/api/tickets/T-RUN-1",
                            headers={"Authorization": f"Bearer {TEST_TOKEN}"}, timeout=5)
            if r.status_code == 200:
                decided = r.json()
                break
            time.sleep(0.2)
        assert decided is not None, "worker process never decided the ticket"
        assert decided["ticket_id"] == "T-RUN-1" and decided["reason"]
        pid = _embedded_pid(tmp_path / "data")
        assert pid
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
    assert code == 0
    assert _gone(pid), "embedded Redis must stop when clout run stops"


def test_bad_setting_stops_startup_with_a_clear_message(tmp_path: Path):
    env = _env(tmp_path, CLOUT_RANKING__WEIGHTS__SPEND="-2")
    proc = subprocess.run(_clout("worker", "--burst"), env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "ranking.weights.spend" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unknown_desk_stops_startup(tmp_path: Path):
    env = _env(tmp_path, CLOUT_DESKS__NOSUCHDESK__ENABLED="true")
    proc = subprocess.run(_clout("worker", "--burst"), env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "desks.nosuchdesk: unknown desk" in proc.stderr and "generic" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_failed_lists_parked_work_and_retry_puts_it_back(tmp_path: Path):
    """`clout failed` from a shell: what is parked, then --retry."""
    from plugin.settings import load_settings
    from plugin.store import Store, events

    env = _env(tmp_path)
    env.pop("DATABASE_URL", None)  # its own SQLite store: a shared database has other tests' rows
    quiet = subprocess.run(_clout("failed"), env=env, capture_output=True, text=True, timeout=60)
    assert quiet.returncode == 0, quiet.stderr
    assert "Nothing is parked" in quiet.stdout
    store = Store.from_url(load_settings(env).database_url)
    store.add_events([{"source": "generic", "event_id": "evt-parked", "ticket_id": "T-P",
                       "payload": {}, "occurred_at": None}])
    with store.engine.begin() as conn:
        conn.execute(events.update().where(events.c.event_id == "evt-parked")
                     .values(state="failed", attempts=5, last_error="KeyError: 'customer'"))
    listed = subprocess.run(_clout("failed"), env=env, capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert "Events parked: 1" in listed.stdout and "evt-parked" in listed.stdout
    assert "KeyError" in listed.stdout and "--retry" in listed.stdout
    again = subprocess.run(_clout("failed", "--retry"), env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr
    assert "Put back to work: 0 write(s), 1 event(s)" in again.stdout
    assert store.event_states(["evt-parked"]) == {"evt-parked": "pending"}
    store.dispose()
    assert _embedded_pid(tmp_path / "data") is None or _gone(_embedded_pid(tmp_path / "data")), \
        "clout failed must not leave the embedded Redis running"


def test_port_in_use_is_a_clear_error(tmp_path: Path):
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    port = sock.getsockname()[1]
    try:
        proc = subprocess.run(_clout("web", "--port", str(port)), env=_env(tmp_path), capture_output=True,
                              text=True, timeout=60)
    finally:
        sock.close()
    assert proc.returncode != 0
    assert f"127.0.0.1:{port}" in proc.stderr and "--port" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_worker_burst_alone_does_not_orphan_redis(tmp_path: Path):
    env = _env(tmp_path)
    proc = subprocess.run(_clout("worker", "--burst"), env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert _gone(_embedded_pid(tmp_path / "data"))
    assert not (tmp_path / "data" / "redis" / "server.json").exists()


def test_second_sigterm_during_shutdown_still_stops_redis(tmp_path: Path):
    env = _env(tmp_path, CLOUT_WEBHOOK_SECRET_GENERIC=TEST_SECRET, CLOUT_API_TOKEN=TEST_TOKEN)
    proc = subprocess.Popen(_clout("run", "--port", "0"), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, cwd=tmp_path)
    try:
        assert "Clout is up" in proc.stdout.readline()
        pid = _embedded_pid(tmp_path / "data")
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert _gone(pid)


def test_separate_web_and_worker_share_one_embedded_redis(tmp_path: Path):
    """`clout web` starts the embedded server, `clout worker` joins it; the last to stop stops it."""
    env = _env(tmp_path, CLOUT_WEBHOOK_SECRET_GENERIC=TEST_SECRET, CLOUT_API_TOKEN=TEST_TOKEN)
    web = subprocess.Popen(_clout("web", "--port", "0"), env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True, cwd=tmp_path)
    worker = None
    try:
        match = re.search(r"http://127\.0\.0\.1:(\d+)", web.stdout.readline())
        assert match
        base = f"http://127.0.0.1:{match.group(1)}"
        pid = _embedded_pid(tmp_path / "data")
        assert pid
        worker = subprocess.Popen(_clout("worker"), env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, cwd=tmp_path)
        session = requests.Session()
        session.trust_env = False
        body = json.dumps({"event_id": "evt-split", "occurred_at": "2026-11-25T10:00:00Z",
                           "ticket": {"id": "T-SPLIT"}, "customer": {"id": "C-SPLIT"}}).encode()
        resp = session.post(f"{base}/webhooks/generic", data=body, timeout=5,
                            headers=standard_webhook_headers(TEST_SECRET, "msg_split", body))
        assert resp.status_code == 202
        deadline = time.monotonic() + 60
        status = None
        while time.monotonic() < deadline:
            status = session.get(f"{base}/api/tickets/T-SPLIT", timeout=5,
                                 headers={"Authorization": f"Bearer {TEST_TOKEN}"}).status_code
            if status == 200:
                break
            time.sleep(0.2)
        assert status == 200
        assert _embedded_pid(tmp_path / "data") == pid  # the worker joined, it didn't start another

        web.send_signal(signal.SIGTERM)
        assert web.wait(timeout=30) == 0
        time.sleep(0.5)
        assert not _gone(pid, timeout=0.5), "the worker still uses the server"
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
        assert _gone(pid), "the last process out stops the server"
    finally:
        for proc in (web, worker):
            if proc is not None and proc.poll() is None:
                proc.kill()
