"""Desks, registered by name: one line per desk in `DESKS`.

A desk module (`connectors/crm/<module>.py`) exposes `DESK`, a `DeskSpec`
naming its webhook module, its settings class and its connector factory.
Adding a desk means adding its modules, fixtures and one line below; nothing
in `plugin/` changes.
"""

from __future__ import annotations

import importlib

from .base import (CLOSED, OPEN, CRMConnector, Customer, Decision, DeskConnector, DeskSettings,
                   DeskSpec, DeskTicket, DeskUnavailable, WriteFailure, WriteResult)

# desk name -> module that defines DESK. The desk name is also the webhook path
# (/webhooks/<name>) and the `source` of every event it sends.
DESKS: dict[str, str] = {
    "generic": "connectors.crm.local",
    "salesforce": "connectors.crm.salesforce",
}


def available() -> list[str]:
    return sorted(DESKS)


def spec(name: str) -> DeskSpec:
    """The registered desk `name`; a clear error lists the known ones."""
    try:
        module = DESKS[name]
    except KeyError:
        raise ValueError(f"unknown desk {name!r}; known desks: {', '.join(available())}") from None
    desk: DeskSpec = importlib.import_module(module).DESK
    return desk


__all__ = [
    "CLOSED", "CRMConnector", "Customer", "DESKS", "Decision", "DeskConnector", "DeskSettings",
    "DeskSpec", "DeskTicket", "DeskUnavailable", "OPEN", "WriteFailure", "WriteResult", "available",
    "spec",
]
