"""Read API and health endpoints.

`/api/*` needs `Authorization: Bearer <CLOUT_API_TOKEN>`, compared in
constant time. Health endpoints are open: `/healthz` says the process serves,
`/readyz` that Redis and the store answer too.
"""

from __future__ import annotations

import hmac
import logging
from functools import wraps
from typing import Any, Callable

from flask import Blueprint, current_app, jsonify, request

from .polling import desk_report

log = logging.getLogger(__name__)
bp = Blueprint("clout_api", __name__)


def _error(status: int, error: str, message: str):
    return jsonify({"error": error, "message": message}), status


def require_token(view: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any):
        expected = current_app.extensions["clout"].settings.secrets.api_token
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if not expected:
            return _error(401, "unauthorized", "the API is disabled: CLOUT_API_TOKEN is not set on the server")
        if scheme.lower() != "bearer" or not token:
            return _error(401, "unauthorized", "send Authorization: Bearer <token>")
        if not hmac.compare_digest(token.strip().encode(), str(expected).encode()):
            return _error(401, "unauthorized", "invalid token")
        return view(*args, **kwargs)

    return wrapper


MAX_ID = 128  # the store's id width; nothing longer can exist


def _plausible(value: str) -> bool:
    return 0 < len(value) <= MAX_ID and "\x00" not in value


@bp.get("/api/tickets/<path:ticket_id>")
@require_token
def ticket(ticket_id: str):
    store = current_app.extensions["clout"].store
    source = request.args.get("source") or None
    if not _plausible(ticket_id) or (source is not None and not _plausible(source)):
        return _error(404, "not_found", "no decided ticket with that id")
    found = store.ticket_decisions(ticket_id, source)
    if not found:
        return _error(404, "not_found", f"no decided ticket {ticket_id!r}"
                      + (f" from source {source!r}" if source else ""))
    if len(found) > 1:
        sources = sorted(d["source"] for d in found)
        return jsonify({"error": "ambiguous", "message": f"ticket {ticket_id!r} exists in several "
                        "sources; add ?source=", "sources": sources}), 409
    from .mention_api import ticket_social  # its social mentions and goodwill suggestions

    return jsonify({**found[0], **ticket_social(found[0]["source"], ticket_id)})


def int_arg(name: str, default: int, low: int, high: int) -> int:
    """A bounded integer query argument; ValueError says which and why."""
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer") from None
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}")
    return value


@bp.get("/api/queue")
@require_token
def queue():
    try:
        limit = int_arg("limit", 50, 1, 500)
        offset = int_arg("offset", 0, 0, 10_000_000)
    except ValueError as exc:
        return _error(400, "bad_request", str(exc))
    items = current_app.extensions["clout"].store.open_queue(limit=limit, offset=offset)
    return jsonify({"tickets": items, "limit": limit, "offset": offset})


@bp.post("/api/customers/<path:customer_id>/opt-out")
@require_token
def opt_out(customer_id: str):
    """`{"opt_out": true|false}`: stop (or allow again) profiling this customer."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("opt_out"), bool):
        return _error(400, "bad_request", 'send a JSON body {"opt_out": true} or {"opt_out": false}')
    if not _plausible(customer_id):
        return _error(400, "bad_request", f"customer id must be 1 to {MAX_ID} characters")
    current_app.extensions["clout"].store.set_opt_out(customer_id, body["opt_out"])
    return jsonify({"customer_id": customer_id, "opt_out": body["opt_out"]})


@bp.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})


@bp.get("/openapi.json")
def openapi():
    from .openapi import SPEC

    return jsonify(SPEC)


@bp.get("/readyz")
def readyz():
    clout = current_app.extensions["clout"]
    checks: dict[str, str] = {}
    for name, probe in (("redis", lambda: clout.runtime.redis.ping()),
                        ("store", lambda: clout.store.ping())):
        try:
            probe()
            checks[name] = "ok"
        except Exception as exc:  # report, don't crash: this endpoint exists to say "not ready"
            log.warning("readiness check %s failed: %s", name, type(exc).__name__)
            checks[name] = f"failing: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values())
    body: dict[str, Any] = {"status": "ready" if ready else "not_ready", "checks": checks}
    if not ready:  # the same error shape as every other refusal
        failing = ", ".join(name for name, v in checks.items() if v != "ok")
        body.update(error="unavailable", message=f"not ready: {failing} unavailable")
    if checks["store"] == "ok":
        try:  # parked work doesn't make the process unready, but an operator should see it
            body["parked"] = clout.store.count_parked()
            desks = desk_report(clout.runtime)  # API usage, last poll, pauses
            if desks:
                body["desks"] = desks
        except Exception as exc:
            log.warning("reporting parked work and desks failed: %s", type(exc).__name__)
    return jsonify(body), 200 if ready else 503
