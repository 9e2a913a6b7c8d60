"""`create_app()`: a standalone Clout web app (for `clout web`, gunicorn, tests)."""

from __future__ import annotations

from flask import Flask

from werkzeug.exceptions import HTTPException

from .extension import Clout, crash, http_error
from .logs import ensure_redacted_logging
from .runtime import Runtime
from .settings import Settings


def create_app(settings: Settings | None = None, *, runtime: Runtime | None = None) -> Flask:
    app = Flask("clout")
    Clout(app, settings=settings, runtime=runtime)
    # Standalone (gunicorn, `clout web`): our logs go through redacting handlers even when
    # the server configured none (Python's last-resort handler filters nothing).
    ensure_redacted_logging(app.extensions["clout"].settings.config.service.log_level)
    # Standalone: every response is JSON, including unknown routes and wrong methods.
    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(Exception, crash)
    return app
