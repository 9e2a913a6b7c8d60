"""HTTP for the social watch: the mention webhook and the JSON endpoints.

- `POST /webhooks/social`: a mention from a listening tool (Standard Webhooks
  signature, `CLOUT_WEBHOOK_SECRET_SOCIAL`; body in `webhooks.social`). The
  case is stored (delivery ids and repeats merged in one transaction) and its
  job queued; 202 `{mention_id, status: "queued"}`, 200 `status: "duplicate"`
  (a retried delivery), `"merged"` (a repeat of a known post or thread: its
  counts move, nothing is escalated twice) or `"ignored"` (an event type not
  acted on); 400/401/413/503 as for desks. This static route wins over the
  desks' `/webhooks/<desk>`.
- `GET /api/mentions[?complaints=1&limit=&offset=]`: the complaint feed's data.
- `GET /api/prospects`: authors who aren't customers, by influence.
- `POST /api/suggestions/<id>` `{"used": true|false, "note"?: "..."}`: did the agent use it.
- The ticket's JSON (`GET /api/tickets/<id>`) carries `social` (`ticket_social`).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Blueprint, Flask, current_app, jsonify, request

from .api import MAX_ID, int_arg, require_token

log = logging.getLogger(__name__)
bp = Blueprint("clout_social", __name__)


def _error(status: int, error: str, message: str, **extra: Any):
    return jsonify({"error": error, "message": message, **extra}), status


def _state() -> Any:
    return current_app.extensions["clout"]


@bp.post("/webhooks/social")
def receive_mention():
    from webhooks.base import PayloadError, SignatureError, WebhookRequest
    from webhooks.blueprint import UnreadableBody, read_body
    from webhooks.social import parse_mention, verify

    from .mention_jobs import enqueue_mention
    from .mentions import mention_store

    clout = _state()
    settings = clout.settings
    if not settings.config.social.enabled:
        return _error(404, "unknown_source", "no enabled webhook source named 'social'")
    limit = settings.config.webhooks.max_body_bytes
    try:
        body = read_body(limit)
    except UnreadableBody:
        return _error(400, "unreadable_body", "the request body could not be read (malformed "
                      "chunked encoding, or shorter than its Content-Length)")
    if body is None:
        return _error(413, "body_too_large", f"request body is over {limit} bytes")
    secret = settings.secrets.webhook_secret("social")
    if not secret:
        log.error("webhook secret for social is not set (CLOUT_WEBHOOK_SECRET_SOCIAL)")
        return _error(503, "not_configured", "webhook source 'social' has no signing secret configured")
    wreq = WebhookRequest(method=request.method, url=request.url, headers=request.headers,
                          body=body, query=request.args.to_dict())
    try:
        verify(wreq, secret, now=time.time(),
               tolerance=settings.config.webhooks.timestamp_tolerance_seconds)
    except SignatureError as exc:
        return _error(401, "bad_signature", exc.message)
    except ValueError:
        return _error(503, "not_configured", "webhook source 'social' has no usable signing secret")
    try:
        parsed = parse_mention(wreq)
    except PayloadError as exc:
        return _error(400, "bad_payload", exc.message, details=exc.details)
    if parsed.mention is None:
        return jsonify({"status": "ignored", "reason": parsed.ignored}), 200
    ahead = _seconds_ahead(parsed.mention.posted_at)
    tolerance = settings.config.webhooks.timestamp_tolerance_seconds
    if ahead > tolerance:
        problem = f"is {int(ahead)} s in the future; at most {tolerance} s ahead is accepted"
        return _error(400, "bad_payload", f"invalid mention: data.posted_at: {problem}",
                      details=[{"field": "data.posted_at", "problem": problem}])
    mention_id, status = mention_store(clout.runtime).record(
        parsed.mention.to_dict(), f"webhook:{parsed.delivery_id}", "webhook")
    if status == "duplicate":
        return jsonify({"mention_id": mention_id, "status": "duplicate"}), 200
    if status == "repeat":
        return jsonify({"mention_id": mention_id, "status": "merged"}), 200
    job_id = None
    try:
        job_id = enqueue_mention(clout.runtime, mention_id).id
    except Exception as exc:  # stored: reconcile queues it when Redis is back
        log.warning("social mention %d stored but not queued (reconcile will): %s", mention_id,
                    type(exc).__name__)
    return jsonify({"mention_id": mention_id, "job_id": job_id, "status": "queued"}), 202


def _seconds_ahead(posted_at: str | None) -> float:
    import datetime as dt

    if not posted_at:
        return 0.0
    moment = dt.datetime.fromisoformat(posted_at.replace("Z", "+00:00"))
    return moment.timestamp() - time.time()


@bp.get("/api/mentions")
@require_token
def feed():
    from .mentions import mention_store

    try:
        limit = int_arg("limit", 50, 1, 500)
        offset = int_arg("offset", 0, 0, 10_000_000)
    except ValueError as exc:
        return _error(400, "bad_request", str(exc))
    only = request.args.get("complaints", "").lower() in ("1", "true", "yes")
    items = mention_store(_state().runtime).feed(limit=limit, offset=offset, complaints_only=only)
    return jsonify({"mentions": items, "limit": limit, "offset": offset})


@bp.get("/api/prospects")
@require_token
def prospects():
    from .mentions import mention_store

    try:
        limit = int_arg("limit", 100, 1, 1000)
    except ValueError as exc:
        return _error(400, "bad_request", str(exc))
    return jsonify({"prospects": mention_store(_state().runtime).prospects(limit=limit)})


MAX_NOTE = 2000


def record_use(suggestion_id: int, used: bool, note: str | None) -> dict[str, Any] | None:
    """Record whether the agent used suggestion `suggestion_id` (the API and the feed page)."""
    from .mentions import mention_store

    return mention_store(_state().runtime).set_used(suggestion_id, used, note)


@bp.post("/api/suggestions/<int:suggestion_id>")
@require_token
def suggestion_used(suggestion_id: int):
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("used"), bool):
        return _error(400, "bad_request", 'send a JSON body {"used": true} or {"used": false}, '
                      'optionally with "note"')
    note = body.get("note")
    if note is not None and (not isinstance(note, str) or len(note) > MAX_NOTE or "\x00" in note):
        return _error(400, "bad_request", f"note must be a string of at most {MAX_NOTE} characters")
    if suggestion_id > 2**31 - 1:
        return _error(404, "not_found", f"no goodwill suggestion {suggestion_id}")
    found = record_use(suggestion_id, body["used"], note)
    if found is None:
        return _error(404, "not_found", f"no goodwill suggestion {suggestion_id}")
    return jsonify(found)


def ticket_social(source: str, ticket_id: str) -> dict[str, Any]:
    """`{"social": {"mentions": [...], "goodwill": [...]}}` for a ticket with any, else {}."""
    from .mentions import mention_store

    if len(ticket_id) > MAX_ID:
        return {}
    found = mention_store(_state().runtime).for_ticket(source, ticket_id)
    return {"social": found} if found["mentions"] or found["goodwill"] else {}


def init_app(app: Flask) -> None:
    """Register the blueprint with the same JSON error handling as Clout's others."""
    from werkzeug.exceptions import HTTPException

    from .extension import crash, http_error

    if not bp.error_handler_spec.get(None):
        bp.register_error_handler(HTTPException, http_error)
        bp.register_error_handler(Exception, crash)
    app.register_blueprint(bp)
