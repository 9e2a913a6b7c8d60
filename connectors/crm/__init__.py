"""CRM / desk connectors, registered by name (`[crm] connector` in config).

A factory receives keyword arguments only: `store` (Clout's store, for
connectors that keep state there) plus the connector's own options. Adding a
desk means adding a module and one `register` line, nothing else.
"""

from __future__ import annotations

from typing import Any, Callable

from .base import CRMConnector, Customer, Decision, WriteResult

Factory = Callable[..., CRMConnector]
_REGISTRY: dict[str, Factory] = {}


def register(name: str) -> Callable[[Factory], Factory]:
    def deco(factory: Factory) -> Factory:
        _REGISTRY[name] = factory
        return factory

    return deco


def _load_builtin() -> None:
    # Importing registers; done on first use so importing this package stays cheap.
    from . import local  # noqa: F401


def available() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def build(name: str, **kwargs: Any) -> CRMConnector:
    """The connector called `name`; a clear error lists the known ones."""
    _load_builtin()
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"crm.connector: unknown connector {name!r}; available: {', '.join(available())}"
        ) from None
    return factory(**kwargs)


__all__ = ["CRMConnector", "Customer", "Decision", "WriteResult", "available", "build", "register"]
