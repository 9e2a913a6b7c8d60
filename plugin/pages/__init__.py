"""The pages people read: agent queue, ticket, customer, admin weights (and the complaint feed).

Server-rendered Jinja under `/pages`, with self-hosted CSS and one small optional
script; every page works without JavaScript and on a phone. A page needs a
login: the API token gives the agent role, the admin token the admin role, and
either becomes a signed session cookie (see `auth`).

A fresh `Blueprint` is built per app (`blueprint()`), because each page module
adds its routes through `register(bp)` and a blueprint can't take new routes
once an app uses it; tests and host apps may build several apps.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Flask

log = logging.getLogger(__name__)

NAME = "clout_pages"
URL_PREFIX = "/pages"


def blueprint() -> Blueprint:
    """The pages' blueprint with every page module's routes on it."""
    from . import auth, customer, errors, feed, links, queue, ticket, weights

    bp = Blueprint(NAME, __name__, url_prefix=URL_PREFIX, template_folder="templates",
                   static_folder="static", static_url_path="/static")
    errors.register(bp)
    auth.register(bp)
    links.register(bp)
    queue.register(bp)
    ticket.register(bp)
    customer.register(bp)
    weights.register(bp)
    feed.register(bp)
    return bp


def register(app: Flask) -> None:
    """Add the pages to `app` (called by the Clout extension), unless `[pages] enabled = false`."""
    from ..logs import register_secrets
    from . import auth

    state = app.extensions["clout"]
    if not state.settings.config.pages.enabled:
        return
    if not app.secret_key:
        # Every process (gunicorn workers too) derives the same key; a host app's own wins.
        app.secret_key = auth.session_key(state.settings)
        register_secrets([app.secret_key])
    if app.config.get("SESSION_COOKIE_SAMESITE") is None:
        app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    auth.install_session_interface(app, state.settings.config.pages.cookie_secure)
    app.register_blueprint(blueprint())
