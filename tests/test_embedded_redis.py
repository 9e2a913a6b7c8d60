"""The embedded Redis: real server under the data dir, shared by processes, stopped by the last."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


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
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _pid_alive(pid), "last process out must stop the server"
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
        assert _pid_alive(pid), "server must stay up while another process uses it"
        joiner.stdin.write("bye\n")
        joiner.stdin.flush()
        assert joiner.wait(timeout=20) == 0
    finally:
        if joiner.poll() is None:
            joiner.kill()
    deadline = time.monotonic() + 10
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _pid_alive(pid), "the last process out stops the server"


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
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _pid_alive(pid)


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
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _pid_alive(pid), "whoever leaves last must stop the server"
