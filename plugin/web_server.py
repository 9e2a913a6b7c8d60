"""The HTTP server of `clout run` and `clout web`: waitress, in a thread of this process.

Waitress reads every request (headers and body) in full on its event loop
before a thread runs the app, so a slow or stalled client holds a socket, never
one of the `web.threads` app threads. `clout run` runs the web server as a
thread of its supervisor, next to worker processes and an embedded Redis, which
is why this is waitress and not gunicorn (gunicorn wants a process of its own;
it remains the choice for `gunicorn 'plugin:create_app()'` behind a proxy).

What waitress gets from the settings:

- `channel_timeout` = `web.request_timeout_seconds`: an idle connection (and a
  request that stops sending) is closed after it;
- `max_request_body_size` = `webhooks.max_body_bytes` + 1: a larger body is
  refused (413) before the app or a thread sees it;
- `threads`, `connection_limit` from `[web]`; `ident` "clout" (the Server header);
- proxy headers are not trusted, and waitress's default of stripping untrusted
  `X-Forwarded-*`/`Forwarded` headers stays on.

`_Server`/`_Channel`/`_JsonErrorTask` below add two things waitress lacks: a
total deadline per request and JSON error bodies. Both are small adapters over
waitress internals (not its public API), pinned to waitress 3.0 by
tests/test_web_server.py.

`DevServer` is werkzeug's development server with the same interface, used
only by `--debug`.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.server import TcpWSGIServer
from waitress.task import ErrorTask
from waitress.utilities import (BadRequest, InternalServerError, RequestEntityTooLarge,
                                RequestHeaderFieldsTooLarge, ServerNotImplemented)

log = logging.getLogger(__name__)

LISTEN_BACKLOG = 1024


@dataclass(frozen=True)
class WebOptions:
    """The server knobs, from `[web]` and `webhooks.max_body_bytes`."""

    request_timeout: int = 30
    threads: int = 8
    connection_limit: int = 256
    max_body_bytes: int = 1_048_576

    @classmethod
    def from_settings(cls, settings: Any) -> "WebOptions":
        web = settings.config.web
        return cls(request_timeout=web.request_timeout_seconds, threads=web.threads,
                   connection_limit=web.connection_limit,
                   max_body_bytes=settings.config.webhooks.max_body_bytes)

    @property
    def cleanup_interval(self) -> int:
        # How often waitress looks for channels to close: a quarter of the timeout
        # (at least 1 s), so cut-offs land within about 25 % of it.
        return max(1, min(self.request_timeout, 30) // 4)


def bind_listener(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (0: any free port). Raises OSError."""
    family, kind, proto, _, addr = socket.getaddrinfo(
        host, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    try:
        # Lets a restarted server take its port back from TIME_WAIT; on Linux it does
        # not let two sockets listen on one port, so a busy port still fails here.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(LISTEN_BACKLOG)
    except BaseException:
        sock.close()
        raise
    return sock


# -- waitress adapters ---------------------------------------------------------------------

# waitress error class -> (our error slug, message or None for waitress's own text)
_ERRORS: dict[type, tuple[str, str | None]] = {
    RequestEntityTooLarge: ("body_too_large", None),
    RequestHeaderFieldsTooLarge: ("headers_too_large", "request headers are too large"),
    BadRequest: ("bad_request", None),
    # waitress raises it only for a Transfer-Encoding it can't decode; HTTP says 501, but a
    # 5xx makes a desk retry forever what will never work: the sender must change, so 400.
    ServerNotImplemented: ("unsupported_transfer_encoding", None),
    InternalServerError: ("internal_error", "internal error; see server logs"),
}


class _JsonErrorTask(ErrorTask):
    """Errors waitress answers itself (bad framing, over-size body...) as the app's JSON.

    Replaces `ErrorTask.execute`, which writes `error.to_response()` as text/plain.
    """

    def execute(self) -> None:
        error = self.request.error
        slug, message = _ERRORS.get(type(error), (None, None))
        if slug is None:
            slug = error.reason.lower().replace(" ", "_")
        if type(error) is RequestEntityTooLarge:
            limit = self.channel.server.adj.max_request_body_size - 1
            message = f"request body is over {limit} bytes"
        body = json.dumps({"error": slug, "message": message or str(error.body)}).encode()
        self.status = ("400 Bad Request" if type(error) is ServerNotImplemented
                       else f"{error.code} {error.reason}")
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class _Channel(HTTPChannel):
    """Remembers when the request being received got its first byte.

    `HTTPChannel.received()` feeds bytes to `self.request` (the parser of the
    request not yet complete) and sets it back to None once it is complete.
    """

    error_task_class = _JsonErrorTask
    request_started: float | None = None

    def received(self, data: bytes) -> bool:
        partial = self.request
        result = super().received(data)
        if self.request is None:
            self.request_started = None
        elif self.request is not partial or self.request_started is None:
            self.request_started = time.time()  # waitress's clock (last_activity)
        return result


class _Server(TcpWSGIServer):
    """waitress's server with a total deadline per request.

    waitress's `channel_timeout` only closes channels *inactive* that long, so a
    client trickling a byte every few seconds keeps a connection (and its buffers)
    forever. `maintenance()`, which waitress's loop calls every `cleanup_interval`
    seconds, also closes a channel whose current request has not fully arrived
    within `channel_timeout` of its first byte. Channels running a request in the
    app (`channel.requests`) are left alone; `will_close` makes the loop close the
    connection, the way waitress's own idle timeout does.
    """

    channel_class = _Channel

    def maintenance(self, now: float) -> None:
        super().maintenance(now)
        cutoff = now - self.adj.channel_timeout
        for channel in self.active_channels.values():
            started = getattr(channel, "request_started", None)
            if started is not None and started < cutoff and not channel.requests \
                    and not channel.will_close:
                channel.will_close = True
                log.info("closing the connection from %s: request still incomplete after %d s",
                         channel.addr[0] if channel.addr else "?", self.adj.channel_timeout)


class WebServer:
    """A waitress server for `app` on an already listening socket, run by `start()`."""

    def __init__(self, app: Any, sock: socket.socket, options: WebOptions | None = None) -> None:
        options = options or WebOptions()
        waitress_log = logging.getLogger("waitress")
        if waitress_log.level == logging.NOTSET:
            # Its INFO lines are about single clients; a full queue or connection limit
            # still shows (WARNING).
            waitress_log.setLevel(logging.WARNING)
        adj = Adjustments(
            sockets=[sock],
            ident="clout",
            threads=options.threads,
            connection_limit=options.connection_limit,
            channel_timeout=options.request_timeout,
            cleanup_interval=options.cleanup_interval,
            max_request_body_size=options.max_body_bytes + 1,
            log_socket_errors=False,  # resets and broken pipes are the client's business
        )
        sockinfo = (sock.family, sock.type, sock.proto, sock.getsockname())
        self.options = options
        self.host, self.port = sock.getsockname()[:2]
        self._server = _Server(app, map={}, _sock=sock, adj=adj, sockinfo=sockinfo,
                               bind_socket=False)
        self.thread: threading.Thread | None = None
        self._closed = False

    def start(self) -> "WebServer":
        self.thread = threading.Thread(target=self._server.run, name="clout-web", daemon=True)
        self.thread.start()
        return self

    def stop(self, grace: float = 5.0) -> None:
        """Stop accepting, give requests in progress `grace` seconds, close everything."""
        if self._closed:
            return
        self._closed = True
        srv = self._server
        running = self.thread is not None and self.thread.is_alive()

        def close_listener() -> None:
            srv.accepting = False
            wasyncore.dispatcher.close(srv)  # the listening socket only (not the trigger)

        def close_all() -> None:
            for obj in list(srv._map.values()):
                try:
                    # A channel's handle_close also wakes a task waiting to flush output.
                    (obj.handle_close if isinstance(obj, HTTPChannel) else obj.close)()
                except OSError:
                    pass
            srv._map.clear()
            srv.trigger.close()

        if running:
            srv.trigger.pull_trigger(close_listener)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and self._busy():
                time.sleep(0.05)
            srv.trigger.pull_trigger(close_all)  # runs on the loop, which then ends
            self.thread.join(5)
        else:
            close_listener()
            close_all()
        srv.task_dispatcher.shutdown(cancel_pending=True, timeout=max(grace, 0.1))

    close = stop

    def _busy(self) -> bool:
        try:
            channels = list(self._server.active_channels.values())
        except RuntimeError:  # changed while copied
            return True
        return any(c.requests or c.total_outbufs_len for c in channels)


class DevServer:
    """werkzeug's development server (`--debug`), with `WebServer`'s interface."""

    def __init__(self, app: Any, sock: socket.socket) -> None:
        from werkzeug.serving import make_server

        self.host, self.port = sock.getsockname()[:2]
        # werkzeug takes a listening socket by descriptor and keeps a duplicate.
        self._server = make_server(self.host, self.port, app, threaded=True, fd=sock.fileno())
        sock.close()
        self.thread: threading.Thread | None = None
        self._closed = False

    def start(self) -> "DevServer":
        self.thread = threading.Thread(target=self._server.serve_forever, name="clout-web",
                                       daemon=True)
        self.thread.start()
        return self

    def stop(self, grace: float = 5.0) -> None:
        if self._closed:
            return
        self._closed = True
        if self.thread is not None and self.thread.is_alive():
            self._server.shutdown()
        self._server.server_close()

    close = stop
