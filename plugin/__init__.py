"""Clout's glue: the Flask extension, app factory, settings, queue, jobs and CLI.

Imports are lazy so `import plugin` builds nothing and pulls in no Flask app.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Clout", "create_app", "load_settings"]


def __getattr__(name: str) -> Any:
    if name == "Clout":
        from .extension import Clout

        return Clout
    if name == "create_app":
        from .app import create_app

        return create_app
    if name == "load_settings":
        from .settings import load_settings

        return load_settings
    raise AttributeError(name)
