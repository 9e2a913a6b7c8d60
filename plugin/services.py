"""Running the parts: the web server, RQ workers, and both together (`run`, `demo`).

The parent process owns the embedded Redis (when `REDIS_URL` is unset) and the
web server thread; workers are separate processes started with this same
Python (`python -m plugin.cli worker`) and the same environment, so they load
the same settings and join the same Redis instead of starting another.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Mapping

import requests
from werkzeug.serving import BaseWSGIServer, make_server

from .runtime import Runtime

log = logging.getLogger(__name__)


class PortInUse(RuntimeError):
    pass


def serve_in_thread(app, host: str, port: int) -> tuple[BaseWSGIServer, threading.Thread]:
    try:
        server = make_server(host, port, app, threaded=True)
    except (OSError, SystemExit) as exc:
        # werkzeug reports a busy port by printing and calling sys.exit(1).
        why = getattr(exc, "strerror", None) or "address already in use"
        raise PortInUse(f"cannot listen on {host}:{port}: {why}; pass --port to use another") from None
    thread = threading.Thread(target=server.serve_forever, name="clout-web", daemon=True)
    thread.start()
    return server, thread


def wait_healthy(base_url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    session = requests.Session()
    session.trust_env = False  # a local probe must not go through a proxy
    while True:
        try:
            if session.get(f"{base_url}/healthz", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{base_url}/healthz did not answer within {timeout:.0f} s")
        time.sleep(0.1)


class LocalStack:
    """Web (thread) + N workers (processes) + embedded Redis, started and stopped as one."""

    def __init__(self, runtime: Runtime, *, host: str, port: int, workers: int = 1,
                 env: Mapping[str, str] | None = None, worker_log: Path | None = None) -> None:
        self.runtime = runtime
        self.host = host
        self.port = port
        self.workers = workers
        self.env = dict(os.environ if env is None else env)
        self.worker_log = worker_log
        self._server: BaseWSGIServer | None = None
        self._procs: list[subprocess.Popen] = []
        self._log_fh = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        from .app import create_app

        rt = self.runtime
        rt.validate()
        rt.warm()  # starts (or joins) the embedded server before any worker looks for it
        self._server, _ = serve_in_thread(create_app(runtime=rt), self.host, self.port)
        self.port = self._server.server_port
        env = {**self.env, "CLOUT_DATA_DIR": str(rt.settings.data_dir)}
        if self.worker_log:
            self.worker_log.parent.mkdir(parents=True, exist_ok=True)
            self._log_fh = self.worker_log.open("ab")
        for _ in range(self.workers):
            self._procs.append(subprocess.Popen(
                [sys.executable, "-m", "plugin.cli", "worker"], env=env,
                stdout=self._log_fh, stderr=subprocess.STDOUT if self._log_fh else None,
            ))
        wait_healthy(self.base_url)

    def workers_alive(self) -> bool:
        return all(p.poll() is None for p in self._procs)

    def stop(self, timeout: float = 15.0) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)  # RQ: warm shutdown, finishes the current job
        deadline = time.monotonic() + timeout
        for proc in self._procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._procs.clear()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._log_fh:
            self._log_fh.close()
            self._log_fh = None
        self.runtime.close(grace=5.0)  # last one out stops the embedded Redis
