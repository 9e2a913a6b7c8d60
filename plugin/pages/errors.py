"""Errors and response headers for the pages: HTML, never JSON, never a traceback.

Bad input is a 4xx page that says what was wrong; an outage (store or Redis
down) is a 503 page; anything else is a 500 page and one logged traceback.
Every page response gets a strict Content-Security-Policy (our own scripts and
styles only) and is not cached, since it shows customer data.
"""

from __future__ import annotations

import logging

from flask import Blueprint, g, render_template
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
       "object-src 'none'")


def _page(status: int, title: str, message: str):
    g.setdefault("role", None)
    return render_template("pages/error.html", status=status, error_title=title,
                           message=message), status


def http_error(exc: HTTPException):
    return _page(exc.code or 500, exc.name or "Error", exc.description or "")


def crash(exc: Exception):
    from ..errors import describe_error, is_outage

    if is_outage(exc):
        log.warning("page answered 503, a backing service is unavailable: %s", describe_error(exc))
        response = _page(503, "Unavailable", "The store or queue is unavailable; try again "
                                             "in a moment.")
        return response[0], 503, {"Retry-After": "5"}
    log.exception("unhandled error on a page")
    return _page(500, "Internal error", "Something went wrong on our side; the server log "
                                        "has the details.")


def _headers(response):
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if response.mimetype == "text/html":
        response.headers["Cache-Control"] = "no-store"
    return response


def register(bp: Blueprint) -> None:
    bp.register_error_handler(HTTPException, http_error)
    bp.register_error_handler(Exception, crash)
    bp.after_request(_headers)
