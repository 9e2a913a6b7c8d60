"""The acme desk's HTTP server: real HTTP on 127.0.0.1, in a thread, with knobs to misbehave.

`fail_next(n, status, retry_after)` makes the next n requests answer an error;
`hold_writes()` makes PATCH apply the write and then wait before answering, so
a test can kill a worker between the desk's write and Clout's record of it.
`hold_reads(path)` makes GETs (of `path`, if given) wait before answering, so a
test can kill a worker while it holds a batch mid-way (`reads_held` says one waits).
Every applied write is logged, so tests can count writes per decision.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


class AcmeServer:
    def __init__(self) -> None:
        self.tickets: dict[str, dict[str, Any]] = {}
        self.customers: dict[str, dict[str, Any]] = {}
        self.writes: list[dict[str, Any]] = []  # every ticket write applied, in order
        self.calls: list[str] = []
        self.lock = threading.Lock()
        self._fail: list[tuple[int, float | None, str | None]] = []
        self._hold = threading.Event()
        self._hold.set()
        self.held = threading.Event()
        self._hold_reads = threading.Event()
        self._hold_reads.set()
        self._hold_reads_path: str | None = None
        self.reads_held = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def start(self) -> "AcmeServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._hold.set()
        self._hold_reads.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def fail_next(self, n: int, status: int = 503, retry_after: float | None = None,
                  method: str | None = None) -> None:
        """The next n requests (of `method`, if given) answer `status`."""
        with self.lock:
            self._fail.extend([(status, retry_after, method)] * n)

    def hold_writes(self) -> None:
        self.held.clear()
        self._hold.clear()

    def release_writes(self) -> None:
        self._hold.set()

    def hold_reads(self, path: str | None = None) -> None:
        """GETs (of `path`, e.g. "/api/customers", if given) wait until `release_reads()`
        (at most 60 s) before answering; `reads_held` is set once one waits."""
        self.reads_held.clear()
        self._hold_reads_path = path
        self._hold_reads.clear()

    def release_reads(self) -> None:
        self._hold_reads.set()

    def clear_failures(self) -> None:
        """Forget the failures `fail_next` still had queued."""
        with self.lock:
            self._fail.clear()

    def writes_for(self, ticket_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return [w for w in self.writes if w["id"] == ticket_id]

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _failing(self) -> bool:
                with server.lock:
                    server.calls.append(f"{self.command} {urlsplit(self.path).path}")
                    if not server._fail or server._fail[0][2] not in (None, self.command):
                        return False
                    status, retry_after, _ = server._fail.pop(0)
                headers = {"Retry-After": str(int(retry_after))} if retry_after is not None else {}
                self._send(status, {"error": "unavailable"}, headers)
                return True

            def handle(self) -> None:
                try:
                    super().handle()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client died (tests kill workers mid-request)

            def do_GET(self) -> None:
                if self._failing():
                    return
                url = urlsplit(self.path)
                if not server._hold_reads.is_set() and server._hold_reads_path in (None, url.path):
                    server.reads_held.set()
                    server._hold_reads.wait(60)
                ids = [i for i in parse_qs(url.query).get("ids", [""])[0].split(",") if i]
                with server.lock:
                    if url.path == "/api/tickets":
                        self._send(200, {"tickets": {i: dict(server.tickets[i]) for i in ids
                                                     if i in server.tickets}})
                    elif url.path == "/api/customers":
                        self._send(200, {"customers": {i: dict(server.customers[i]) for i in ids
                                                       if i in server.customers}})
                    else:
                        self._send(404, {"error": "not found"})

            def do_PATCH(self) -> None:
                if self._failing():
                    return
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                results = []
                with server.lock:
                    for t in body["tickets"]:
                        if t["id"] not in server.tickets:
                            results.append({"id": t["id"], "ok": False, "error": "no such ticket"})
                            continue
                        server.tickets[t["id"]].update(
                            {k: t[k] for k in ("priority", "clout_priority", "clout_decision")})
                        server.writes.append(dict(t))
                        results.append({"id": t["id"], "ok": True})
                if not server._hold.is_set():
                    server.held.set()
                    server._hold.wait(60)
                self._send(200, {"results": results})

        return Handler
