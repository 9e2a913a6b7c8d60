"""The embedded Redis: real server under the data dir, shared by processes, stopped by the last."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import pid_running
from plugin.redis_conn import connect


JOINER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from plugin.redis_conn import connect
    h = connect(None, Path(sys.argv[1]))
    print(h.client.info("server")["run_id"], flush=True)
    sys.stdin.readline()  # hold the connection until told to leave
    h.close()
""")


def test_embedded_server_persists_under_data_dir(tmp_path: Path):
    handle = connect(None, tmp_path)
    try:
        assert handle.is_embedded
        assert handle.client.config_get("appendonly")["appendonly"] == "yes"
        handle.client.set("clout:test:persist", "kept")
        pid = handle.client.info("server")["process_id"]
    finally:
        handle.close()
    deadline = time.monotonic() + 10
    while pid_running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_running(pid), "last process out must stop the server"
    assert any((tmp_path / "redis").iterdir())

    again = connect(None, tmp_path)
    try:
        assert again.client.get("clout:test:persist") == b"kept"
        assert again.client.info("server")["process_id"] != pid
    finally:
        again.close()


def test_second_process_joins_and_server_outlives_the_first(tmp_path: Path):
    first = connect(None, tmp_path)
    run_id = first.client.info("server")["run_id"]
    pid = first.client.info("server")["process_id"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    joiner = subprocess.Popen([sys.executable, "-c", JOINER, str(tmp_path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert joiner.stdout.readline().strip() == run_id  # same server, not a new one
        first.close()  # the starter leaves while the joiner is still connected
        time.sleep(0.3)
        assert pid_running(pid), "server must stay up while another process uses it"
        joiner.stdin.write("bye\n")
        joiner.stdin.flush()
        assert joiner.wait(timeout=20) == 0
    finally:
        if joiner.poll() is None:
            joiner.kill()
    deadline = time.monotonic() + 10
    while pid_running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_running(pid), "the last process out stops the server"


def test_redis_url_wins_over_embedded(tmp_path: Path):
    url = os.environ.get("REDIS_URL")
    if not url:
        pytest.skip("REDIS_URL not set")
    handle = connect(url, tmp_path)
    try:
        assert not handle.is_embedded
        assert handle.client.ping()
        assert not (tmp_path / "redis").exists()
    finally:
        handle.close()


@pytest.mark.parametrize("url", ["redis://:hunter2@127.0.0.1:1/0", "redis://u:hunter2@127.0.0.1:1/0",
                                 "redis://127.0.0.1:1/0?password=hunter2"])
def test_password_is_not_in_description(tmp_path: Path, url: str):
    handle = connect(url, tmp_path)
    assert "hunter2" not in handle.description
    assert "127.0.0.1:1" in handle.description
    handle.close()


def test_own_leftover_connections_do_not_keep_the_server_alive(tmp_path: Path):
    """RQ's scheduler opens its own pool from our settings; closing must still stop the server."""
    import redis as redis_lib

    handle = connect(None, tmp_path)
    pid = handle.client.info("server")["process_id"]
    pool = handle.client.connection_pool
    extra = redis_lib.Redis(connection_pool=redis_lib.ConnectionPool(
        connection_class=pool.connection_class, **pool.connection_kwargs))
    extra.ping()  # stays connected, like a library's private pool
    handle.close()
    deadline = time.monotonic() + 10
    while pid_running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_running(pid)


def test_processes_leaving_together_stop_the_server(tmp_path: Path):
    first = connect(None, tmp_path)
    pid = first.client.info("server")["process_id"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    joiners = [subprocess.Popen([sys.executable, "-c", JOINER, str(tmp_path)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True, env=env) for _ in range(3)]
    try:
        for j in joiners:
            j.stdout.readline()
        for j in joiners:
            j.stdin.write("bye\n")
            j.stdin.flush()
        first.close()
        for j in joiners:
            assert j.wait(timeout=20) == 0
    finally:
        for j in joiners:
            if j.poll() is None:
                j.kill()
    deadline = time.monotonic() + 10
    while pid_running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_running(pid), "whoever leaves last must stop the server"


# --- restartable server: stable socket, recorded pid, fsync policy ---------------------------

RESTARTER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from plugin.redis_conn import connect
    h = connect(None, Path(sys.argv[1]))
    print("ready", flush=True)
    sys.stdin.readline()  # "go": the server has been killed meanwhile
    print(h.ensure_server(), h.server_pid, flush=True)
    sys.stdin.readline()
    h.close()
""")


def _record(data_dir: Path) -> dict:
    import json

    return json.loads((data_dir / "redis" / "server.json").read_text())


def _kill_and_wait(pid: int) -> None:
    import signal

    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while pid_running(pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not pid_running(pid)


def test_restarted_server_keeps_the_socket_path_and_the_data(tmp_path: Path):
    handle = connect(None, tmp_path)
    try:
        socket = handle.client.connection_pool.connection_kwargs["path"]
        assert socket == str(tmp_path / "redis" / "redis.sock")
        pid = handle.server_pid
        record = _record(tmp_path)
        assert (record["pid"], record["socket"], record["fsync"]) == (pid, socket, "always")
        assert handle.ensure_server() is False  # running: nothing to do
        handle.client.rpush("clout:test:inbox", *[f"e{i}" for i in range(100)])

        _kill_and_wait(pid)
        assert handle.server_pid is None
        assert handle.ensure_server() is True
        new_pid = handle.server_pid
        assert new_pid and new_pid != pid
        assert _record(tmp_path)["pid"] == new_pid and _record(tmp_path)["socket"] == socket
        # The same client object simply reconnects: same path, data replayed from the AOF.
        assert handle.client.llen("clout:test:inbox") == 100
        assert handle.client.client_getname() in (f"clout-{os.getpid()}", f"clout-{os.getpid()}".encode())
    finally:
        handle.close()
    assert not (tmp_path / "redis" / "server.json").exists()


def test_server_runs_in_its_own_session(tmp_path: Path):
    """A Ctrl-C in the terminal goes to the foreground process group; it must not reach redis."""
    handle = connect(None, tmp_path)
    try:
        pid = handle.server_pid
        assert os.getsid(pid) != os.getsid(0)
        assert os.getpgid(pid) != os.getpgid(0)
    finally:
        handle.close()


def test_long_data_dir_gets_a_stable_short_socket(tmp_path: Path):
    data_dir = tmp_path / ("d" * 120)
    handle = connect(None, data_dir)
    try:
        socket = handle.server.socket
        assert len(socket) < 100 and not socket.startswith(str(data_dir))
        assert handle.client.ping()
        _kill_and_wait(handle.server_pid)
        assert handle.ensure_server()
        assert handle.server.socket == socket and handle.client.ping()
        from plugin.redis_conn import embedded_paths

        assert str(embedded_paths(data_dir).socket) == socket  # any process computes the same path
        assert oct(os.stat(Path(socket).parent).st_mode & 0o777) == oct(0o700)
    finally:
        handle.close()


def test_processes_racing_to_restart_start_one_server(tmp_path: Path):
    first = connect(None, tmp_path)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    procs = [subprocess.Popen([sys.executable, "-c", RESTARTER, str(tmp_path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=env) for _ in range(3)]
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "ready"
        _kill_and_wait(first.server_pid)
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        answers = [p.stdout.readline().split() for p in procs]
        assert sorted(a[0] for a in answers) == ["False", "False", "True"], answers
        assert len({a[1] for a in answers}) == 1  # everyone sees the one new server
        assert first.ensure_server() is False
        assert str(first.server_pid) == answers[0][1]
        for p in procs:
            p.stdin.write("bye\n")
            p.stdin.flush()
            assert p.wait(timeout=20) == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        first.close()


def test_fsync_policy_is_applied_and_checked(tmp_path: Path):
    default = connect(None, tmp_path / "a")
    try:
        assert default.client.config_get("appendfsync")["appendfsync"] == "always"
    finally:
        default.close()
    relaxed = connect(None, tmp_path / "b", fsync="everysec")
    try:
        assert relaxed.client.config_get("appendfsync")["appendfsync"] == "everysec"
        pid = relaxed.server_pid
        _kill_and_wait(pid)
        relaxed.ensure_server()  # a restart keeps the policy it was started with
        assert relaxed.client.config_get("appendfsync")["appendfsync"] == "everysec"
    finally:
        relaxed.close()
    with pytest.raises(ValueError, match="embedded_redis_fsync"):
        connect(None, tmp_path / "c", fsync="no")


def test_acknowledged_pushes_survive_sigkill_mid_burst(tmp_path: Path):
    """What a 202 promises: every push Redis acknowledged is there after a SIGKILL and restart."""
    import threading

    import redis as redis_lib

    handle = connect(None, tmp_path)
    acked: list[list[str]] = [[] for _ in range(4)]

    def push(c: int) -> None:
        conn = handle.new_client()
        try:
            for k in range(1_000_000):
                with conn.pipeline(transaction=True) as pipe:
                    pipe.set(f"clout:test:seen:{c}:{k}", "1", nx=True, ex=3600)
                    pipe.rpush("clout:test:inbox", f"{c}:{k}")
                    try:
                        pipe.execute()
                    except redis_lib.RedisError:
                        return
                acked[c].append(f"{c}:{k}")
        finally:
            conn.close()

    try:
        threads = [threading.Thread(target=push, args=(c,)) for c in range(4)]
        for t in threads:
            t.start()
        time.sleep(0.7)
        _kill_and_wait(handle.server_pid)
        for t in threads:
            t.join(20)
        assert handle.ensure_server()
        present = {v.decode() for v in handle.client.lrange("clout:test:inbox", 0, -1)}
        acknowledged = {v for per in acked for v in per}
        assert len(acknowledged) > 100
        assert acknowledged - present == set()
    finally:
        handle.close()


def test_a_running_but_silent_server_is_never_doubled(tmp_path: Path):
    """A stopped (SIGSTOP) server still owns the files: starting another on them must fail."""
    import signal

    from plugin.redis_conn import EmbeddedRedisError, EmbeddedServer

    handle = connect(None, tmp_path)
    pid = handle.server_pid
    os.kill(pid, signal.SIGSTOP)
    try:
        with pytest.raises(EmbeddedRedisError, match=str(pid)):
            EmbeddedServer(tmp_path).ensure_running(timeout=1)
        assert handle.server_pid == pid
    finally:
        os.kill(pid, signal.SIGCONT)
    assert handle.client.ping()
    handle.close()
