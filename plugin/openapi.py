"""The OpenAPI 3.1 description of Clout's JSON endpoints, served at `GET /openapi.json`.

Kept as data next to the routes it describes; `tests/test_openapi.py` fails when a
JSON route is added without an entry here, so the document can't drift silently.
The HTML pages under `/pages` are for people and are not described.
"""

from __future__ import annotations

from typing import Any

_ERROR = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    words = {400: "bad input; `details` names each field when there are several",
             401: "missing or wrong credentials or signature", 404: "unknown",
             409: "ambiguous: say which desk with ?source=", 413: "body too large",
             503: "a backing service (store, Redis) is down, or a secret is not configured; "
                  "retry (see Retry-After)"}
    return {str(c): _json(_ERROR, words[c]) for c in codes}


def _page(key: str, schema: str, description: str) -> dict[str, Any]:
    """A paged list answer: `{key: [schema...], limit, offset}`."""
    return _json({"type": "object", "properties": {
        key: {"type": "array", "items": {"$ref": f"#/components/schemas/{schema}"}},
        "limit": {"type": "integer"}, "offset": {"type": "integer"}}}, description)


_BEARER = [{"bearer": []}]
_PAGING = [
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1}},
    {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0}},
]
_STANDARD_WEBHOOK_HEADERS = [
    {"name": "webhook-id", "in": "header", "required": True, "schema": {"type": "string"},
     "description": "stable across the sender's retries; remembered for at least 72 h"},
    {"name": "webhook-timestamp", "in": "header", "required": True,
     "schema": {"type": "string"}, "description": "unix seconds, within the allowed skew"},
    {"name": "webhook-signature", "in": "header", "required": True,
     "schema": {"type": "string"},
     "description": "v1,<base64 HMAC-SHA256 of '{id}.{timestamp}.{body}'>, space-separated "
                    "during key rotation"},
]

SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "Clout", "version": "0.1.0",
             "description": "Customer prioritisation for support desks: webhooks in, "
                            "decisions and the social watch out."},
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                       "description": "CLOUT_API_TOKEN"}},
        "schemas": {
            "Error": {"type": "object", "required": ["error", "message"], "properties": {
                "error": {"type": "string"}, "message": {"type": "string"},
                "details": {"type": "array", "items": {"type": "object", "properties": {
                    "field": {"type": "string"}, "problem": {"type": "string"}}}}}},
            "Accepted": {"type": "object", "properties": {
                "event_id": {"type": "string"}, "job_id": {"type": ["string", "null"]},
                "status": {"enum": ["queued", "duplicate"]}}},
            "Decision": {"type": "object", "properties": {
                "ticket_id": {"type": "string"}, "source": {"type": "string"},
                "customer_id": {"type": "string"}, "priority": {"type": "string"},
                "tier": {"enum": ["urgent", "high", "normal", "low"]},
                "score": {"type": "number"}, "flags": {"type": "array", "items": {"enum": [
                    "VIP", "INFLUENCER", "RENEWAL_SOON", "SOCIAL_COMPLAINT", "AGED"]}},
                "reason": {"type": "string"}, "weights_version": {"type": "string"},
                "decided_at": {"type": "string", "format": "date-time"},
                "state": {"enum": ["pending", "written", "agent_override", "closed", "failed"]},
                "written_at": {"type": ["string", "null"], "format": "date-time"},
                "ticket_status": {"type": ["string", "null"]},
                "desk_priority": {"type": ["string", "null"]},
                "social": {"type": "object", "description": "only when the ticket has any",
                           "properties": {"mentions": {"type": "array"},
                                          "goodwill": {"type": "array"}}}}},
            "Mention": {"type": "object", "properties": {
                "id": {"type": "integer"}, "network": {"type": "string"},
                "author": {"type": "string"}, "url": {"type": "string"},
                "text": {"type": "string"}, "complaint": {"type": ["number", "null"]},
                "influence": {"type": ["number", "null"]},
                "loudness": {"type": ["number", "null"]},
                "escalation": {"type": ["string", "null"]},
                "ticket_source": {"type": ["string", "null"]},
                "ticket_id": {"type": ["string", "null"]},
                "customer": {"type": ["object", "null"]},
                "goodwill": {"type": ["object", "null"]}}},
        },
    },
    "paths": {
        "/webhooks/{source}": {"post": {
            "summary": "A desk's ticket event (each desk its own format and signature)",
            "parameters": [{"name": "source", "in": "path", "required": True,
                            "schema": {"type": "string"},
                            "description": "an enabled desk: generic, salesforce, ..."},
                           *_STANDARD_WEBHOOK_HEADERS],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "description": "generic: see the README's 'The generic "
                "webhook'; salesforce also accepts Outbound Messages (text/xml)"}}}},
            "responses": {"202": _json({"$ref": "#/components/schemas/Accepted"}, "queued"),
                          "200": _json({"$ref": "#/components/schemas/Accepted"},
                                       "a repeated delivery id, or an event type ignored"),
                          **_errors(400, 401, 404, 413, 503)}}},
        "/webhooks/social": {"post": {
            "summary": "A social mention from a listening tool (Standard Webhooks)",
            "parameters": _STANDARD_WEBHOOK_HEADERS,
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["type", "data"], "properties": {
                    "type": {"enum": ["mention.created", "mention.updated"]},
                    "timestamp": {"type": "string"},
                    "data": {"type": "object", "required": ["network", "author", "url", "text"],
                             "properties": {
                                 "network": {"enum": ["x", "bluesky", "mastodon", "github",
                                                      "reddit", "youtube"]},
                                 "author": {"type": "object", "required": ["handle"]},
                                 "url": {"type": "string"}, "text": {"type": "string"},
                                 "posted_at": {"type": "string"},
                                 "thread_url": {"type": ["string", "null"]},
                                 "in_reply_to_url": {"type": ["string", "null"]}}}}}}}},
            "responses": {"202": _json({"type": "object"}, "queued: {mention_id, job_id, status}"),
                          "200": _json({"type": "object"}, "duplicate, merged or ignored"),
                          **_errors(400, 401, 404, 413, 503)}}},
        "/api/tickets/{ticket_id}": {"get": {
            "summary": "A ticket's current decision and delivery state",
            "security": _BEARER,
            "parameters": [{"name": "ticket_id", "in": "path", "required": True,
                            "schema": {"type": "string"}},
                           {"name": "source", "in": "query", "schema": {"type": "string"}}],
            "responses": {"200": _json({"$ref": "#/components/schemas/Decision"}, "the decision"),
                          **_errors(400, 401, 404, 409, 503)}}},
        "/api/queue": {"get": {
            "summary": "Open decided tickets, by tier then score", "security": _BEARER,
            "parameters": _PAGING,
            "responses": {"200": _page("tickets", "Decision", "one page of the queue"),
                          **_errors(400, 401, 503)}}},
        "/api/customers/{customer_id}/opt-out": {"post": {
            "summary": "Stop (or allow again) profiling a customer", "security": _BEARER,
            "parameters": [{"name": "customer_id", "in": "path", "required": True,
                            "schema": {"type": "string"}}],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["opt_out"],
                "properties": {"opt_out": {"type": "boolean"}}}}}},
            "responses": {"200": _json({"type": "object"}, "recorded"),
                          **_errors(400, 401, 503)}}},
        "/api/mentions": {"get": {
            "summary": "Social mentions, loudest (influence x complaint) first",
            "security": _BEARER,
            "parameters": [*_PAGING, {"name": "complaints", "in": "query",
                                      "schema": {"type": "string"},
                                      "description": "1: complaints only"}],
            "responses": {"200": _page("mentions", "Mention", "one page of the feed"),
                          **_errors(400, 401, 503)}}},
        "/api/prospects": {"get": {
            "summary": "Authors who are not customers, by influence", "security": _BEARER,
            "parameters": [_PAGING[0]],
            "responses": {"200": _json({"type": "object", "properties": {
                "prospects": {"type": "array", "items": {"type": "object"}}}}, "prospects"),
                          **_errors(400, 401, 503)}}},
        "/api/suggestions/{suggestion_id}": {"post": {
            "summary": "Record whether the agent used a goodwill suggestion", "security": _BEARER,
            "parameters": [{"name": "suggestion_id", "in": "path", "required": True,
                            "schema": {"type": "integer"}}],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["used"], "properties": {
                    "used": {"type": "boolean"}, "note": {"type": "string"}}}}}},
            "responses": {"200": _json({"type": "object"}, "recorded"),
                          **_errors(400, 401, 404, 503)}}},
        "/healthz": {"get": {"summary": "Liveness: the process serves",
                             "responses": {"200": _json({"type": "object"}, "alive")}}},
        "/readyz": {"get": {
            "summary": "Readiness: Redis and the store answer; parked work; desks' reports",
            "responses": {"200": _json({"type": "object"}, "ready"), **_errors(503)}}},
        "/openapi.json": {"get": {"summary": "This document",
                                  "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1")}}},
    },
}
