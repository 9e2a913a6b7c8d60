"""The Flask extension: `Clout(app)` or `clout.init_app(app)`.

It registers the webhook and API blueprints and keeps its state in
`app.extensions["clout"]`. Nothing connects until a request needs it.
"""

from __future__ import annotations

import logging

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from .logs import register_secrets, settings_secrets
from .runtime import Runtime
from .settings import Settings, load_settings

log = logging.getLogger(__name__)


class CloutState:
    """What views reach through `current_app.extensions["clout"]`."""

    def __init__(self, runtime: Runtime) -> None:
        from connectors import crm

        from .reload import CHECK_SECONDS, SettingsWatcher

        self.runtime = runtime
        # New ranking settings in the config file are put in force without a restart
        # (looked at, at most every CHECK_SECONDS, before a request).
        self._watcher = SettingsWatcher(runtime)
        self._check_every = CHECK_SECONDS
        self._next_check = 0.0
        # /webhooks/<desk> is served for enabled desks only, each by its own webhook module.
        self.webhooks: dict[str, str] = {
            name: crm.spec(name).webhook for name in runtime.settings.enabled_desks}

    @property
    def settings(self) -> Settings:
        return self.runtime.settings

    def maybe_reload(self) -> None:
        import time

        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + self._check_every
        try:
            self._watcher.check()
        except Exception:  # never fail a request over the config watcher
            log.exception("checking the config file failed")

    @property
    def store(self):
        return self.runtime.store

    @property
    def intake(self):
        return self.runtime.intake


class Clout:
    def __init__(self, app: Flask | None = None, *, settings: Settings | None = None,
                 runtime: Runtime | None = None) -> None:
        self._settings = settings
        self._runtime = runtime
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask, *, settings: Settings | None = None,
                 runtime: Runtime | None = None) -> None:
        from webhooks.blueprint import bp as webhooks_bp

        from .api import bp as api_bp

        runtime = runtime or self._runtime
        if runtime is None:
            runtime = Runtime(settings or self._settings or load_settings())
        app.extensions["clout"] = CloutState(runtime)
        # A host app's handlers are its own: it adds plugin.logs.RedactingFilter to them
        # (see README); the secrets it must mask are registered here.
        register_secrets(settings_secrets(runtime.settings))
        for bp in (webhooks_bp, api_bp):
            # Scoped to our blueprints: a host app keeps its own error pages.
            if not bp.error_handler_spec.get(None):
                bp.register_error_handler(HTTPException, http_error)
                bp.register_error_handler(Exception, crash)
        app.register_blueprint(webhooks_bp, url_prefix="/webhooks")
        app.register_blueprint(api_bp)
        from .mention_api import init_app as init_social  # /webhooks/social, /api/mentions, ...

        init_social(app)
        from . import pages

        pages.register(app)  # the HTML pages under /pages
        state = app.extensions["clout"]
        app.before_request(state.maybe_reload)


def http_error(exc: HTTPException):
    return jsonify({"error": (exc.name or "error").lower().replace(" ", "_"),
                    "message": exc.description}), exc.code


OUTAGE_RETRY_AFTER = 5  # seconds; what an answer during an outage suggests to the caller


def crash(exc: Exception):
    """An outage (store or Redis unreachable) is 503 and one log line; anything else is
    a bug, logged with its traceback and never shown to the caller."""
    from .errors import describe_error, is_outage

    if is_outage(exc):
        log.warning("answered 503, a backing service is unavailable: %s", describe_error(exc))
        response = jsonify({"error": "unavailable", "message": "the store or queue is unavailable; "
                            "retry later"})
        response.headers["Retry-After"] = str(OUTAGE_RETRY_AFTER)
        return response, 503
    log.exception("unhandled error")
    return jsonify({"error": "internal_error", "message": "internal error; see server logs"}), 500
