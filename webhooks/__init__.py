"""Inbound webhooks: one module per desk, each `verify` + `parse` -> `TicketEvent`.

A desk names its webhook module (see `connectors.crm`); `POST /webhooks/<desk>`
dispatches to it when that desk is enabled. Fixtures for each live in `tests/fixtures/<name>/<event>__<variant>.json`.
"""

from __future__ import annotations

import importlib
import re
from types import ModuleType

from .base import Parsed, PayloadError, SignatureError, WebhookError, WebhookRequest
from .event import CustomerFacts, TicketEvent

_MODULE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_NOT_SOURCES = {"base", "blueprint", "event"}


def get_source(name: str) -> ModuleType | None:
    """The webhook module `webhooks/<name>.py`, or None when there is no such source.

    Which sources are served is decided by the app (the enabled desks), so this only
    turns a checked name into its module; it never imports anything else.
    """
    if not _MODULE_NAME.match(name) or name in _NOT_SOURCES:
        return None
    try:
        module = importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"{__name__}.{name}":
            return None
        raise
    return module if hasattr(module, "verify") and hasattr(module, "parse") else None


MIN_SECRET_LENGTH = 24


def secret_problem(name: str, secret: str) -> str | None:
    """Why `secret` is too weak for webhook source `name`, or None when it will do.

    A source with its own secret format says so with `secret_problem(secret)`;
    any other secret must at least be 24 characters. The answer never quotes it.
    """
    module = get_source(name)
    check = getattr(module, "secret_problem", None)
    if check is not None:
        return check(secret)
    if len(secret) < MIN_SECRET_LENGTH:
        return f"is too short: at least {MIN_SECRET_LENGTH} characters are required"
    return None


__all__ = [
    "CustomerFacts", "Parsed", "PayloadError", "SignatureError", "TicketEvent",
    "WebhookError", "WebhookRequest", "get_source", "secret_problem",
]
