"""`POST /webhooks/<source>`: verify, parse, enqueue, answer. Nothing slower.

Every refusal is a 4xx with a JSON body naming the problem, and happens before
anything is queued. The intake (`app.extensions["clout"].intake`) owns dedupe
and enqueueing so this module never touches Redis itself.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from . import get_source
from .base import PayloadError, SignatureError, WebhookRequest

log = logging.getLogger(__name__)

bp = Blueprint("clout_webhooks", __name__)
_dumps = json.dumps


def _error(status: int, error: str, message: str, **extra: Any):
    body = {"error": error, "message": message, **extra}
    return jsonify(body), status


class UnreadableBody(Exception):
    """The client sent a body that can't be read (bad chunking, cut short, gone)."""


def read_body(limit: int) -> bytes | None:
    """The raw body, or None when it is over `limit` (read at most limit+1 bytes).

    Raises `UnreadableBody` for a body the server can't decode: each server reports
    bad chunking or a vanished client its own way (OSError, ValueError, werkzeug's
    ClientDisconnected, gunicorn's parse errors), and none of it is our bug.
    """
    req = request._get_current_object()  # type: ignore[attr-defined]  # one proxy lookup
    length = req.content_length
    if length is not None and length > limit:
        return None
    try:
        body = req.stream.read(limit + 1)
    except RequestEntityTooLarge:
        return None
    except Exception as exc:  # the client's malformed or abandoned body, not a bug
        raise UnreadableBody(type(exc).__name__) from None
    if length is not None and len(body) < length:
        raise UnreadableBody("body shorter than its Content-Length")  # the client went away
    return None if len(body) > limit else body


_modules: dict[str, Any] = {}


def _source(name: str) -> Any:
    """`get_source(name)`, looked up once per process (an import-machinery walk otherwise)."""
    try:
        return _modules[name]
    except KeyError:
        module = _modules[name] = get_source(name)
        return module


@bp.post("/<source>")
def receive(source: str):
    clout = current_app.extensions["clout"]
    settings = clout.settings
    webhook = clout.webhooks.get(source)  # enabled desk -> its webhook module name
    module = _source(webhook) if webhook else None
    if module is None:
        return _error(404, "unknown_source", f"no enabled webhook source named {source!r}")

    limit = settings.config.webhooks.max_body_bytes
    try:
        body = read_body(limit)
    except UnreadableBody as exc:
        log.info("unreadable %s webhook body from %s (%s): answered 400", source,
                 request.remote_addr, exc)
        return _error(400, "unreadable_body", "the request body could not be read (malformed "
                      "chunked encoding, or shorter than its Content-Length)")
    if body is None:
        return _error(413, "body_too_large", f"request body is over {limit} bytes")

    secret = settings.secrets.webhook_secret(source)
    if not secret:
        # A deployment problem, not the sender's: 503 so the desk keeps retrying.
        log.error("webhook secret for %s is not set (CLOUT_WEBHOOK_SECRET_%s)", source, source.upper())
        return _error(503, "not_configured", f"webhook source {source!r} has no signing secret configured")

    req = request._get_current_object()  # type: ignore[attr-defined]
    # URL and query string are built only if the source asks (see WebhookRequest).
    wreq = WebhookRequest(method=req.method, url=lambda: req.url, headers=req.headers, body=body,
                          query=lambda: req.args.to_dict())
    desk = settings.desk(source)
    now = time.time()
    tolerance = settings.config.webhooks.timestamp_tolerance_seconds
    try:
        module.verify(wreq, secret, now=now, tolerance=tolerance, desk=desk)
    except SignatureError as exc:
        return _error(401, "bad_signature", exc.message)
    except PayloadError as exc:  # a source that must read the body to check it (an org id)
        return _error(400, "bad_payload", exc.message, details=exc.details)
    except ValueError:  # a secret start-up checks would have refused (settings built by hand)
        log.error("the signing secret for %s is not usable; see CLOUT_WEBHOOK_SECRET_%s",
                  source, source.upper())
        return _error(503, "not_configured", f"webhook source {source!r} has no usable signing secret")
    try:
        parsed = module.parse(wreq, desk=desk)
    except PayloadError as exc:
        return _error(400, "bad_payload", exc.message, details=exc.details)
    names = getattr(module, "EVENT_FIELDS", {})  # TicketEvent field -> what this desk calls it
    ahead = [(names.get(field, field), secs)
             for e in parsed.events for field, secs in e.ahead_of(now, tolerance).items()]
    if ahead:
        details = [{"field": field, "problem": f"is {secs} s in the future; at most {tolerance} s "
                    "ahead of the server clock is accepted"} for field, secs in ahead]
        return _error(400, "bad_payload", "invalid event: " + "; ".join(
            f"{d['field']}: {d['problem']}" for d in details), details=details)

    if not parsed.events:
        return _answer(module, 200, {"status": "ignored",
                                     "reason": parsed.ignored or "no ticket events"}, wreq)
    if any(e.source != source for e in parsed.events):  # a desk reusing another's format
        parsed = replace(parsed, events=tuple(replace(e, source=source) for e in parsed.events))

    outcome = clout.intake.accept(source, parsed)
    if outcome.unavailable:
        return _error(503, "queue_unavailable", "the queue is unavailable; retry later")
    body_out: dict[str, Any] = {"event_id": outcome.event_id or parsed.events[0].event_id,
                                "job_id": outcome.job_id}
    if len(parsed.events) > 1:
        body_out["event_ids"] = [e.event_id for e in parsed.events]
    if outcome.duplicate:
        body_out["status"] = "duplicate"
        return _answer(module, 200, body_out, wreq)
    body_out["status"] = "queued"
    return _answer(module, 202, body_out, wreq)


def _answer(module: Any, status: int, body: dict[str, Any], wreq: WebhookRequest):
    """JSON, unless the desk expects an acknowledgement of its own (Salesforce's SOAP Ack)."""
    respond = getattr(module, "respond", None)
    custom = respond(status, body, request=wreq) if respond is not None else None
    if custom is None:
        # What jsonify() answers (compact, sorted keys, trailing newline), minus its
        # provider lookups: this is the answer to every accepted webhook.
        return current_app.response_class(
            _dumps(body, sort_keys=True, separators=(",", ":")) + "\n", status=status,
            mimetype="application/json")
    code, content_type, payload = custom
    return Response(payload, status=code, content_type=content_type)
