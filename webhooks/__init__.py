"""Inbound webhooks: one module per desk, each `verify` + `parse` -> `TicketEvent`.

Sources are registered by name; `POST /webhooks/<name>` dispatches to the
module. Fixtures for each live in `tests/fixtures/<name>/<event>__<variant>.json`.
"""

from __future__ import annotations

from types import ModuleType

from .base import Parsed, PayloadError, SignatureError, WebhookError, WebhookRequest
from .event import CustomerFacts, TicketEvent

# name -> module path; modules are imported on first use.
_SOURCES: dict[str, str] = {
    "generic": "webhooks.generic",
}


def available() -> list[str]:
    return sorted(_SOURCES)


def get_source(name: str) -> ModuleType | None:
    """The module for `name`, or None when Clout has no such source."""
    path = _SOURCES.get(name)
    if path is None:
        return None
    import importlib

    return importlib.import_module(path)


__all__ = [
    "CustomerFacts", "Parsed", "PayloadError", "SignatureError", "TicketEvent",
    "WebhookError", "WebhookRequest", "available", "get_source",
]
