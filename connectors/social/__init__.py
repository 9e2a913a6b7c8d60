"""Social influence sources and the per-network parsers, found by name.

Registration follows Redash's query runners (and `connectors.crm`): a source
factory registers itself under a name with `@register("name")`, the runtime
asks `build(name, **options)` for an instance, and `available()` lists what
this install can use. Every factory receives the same keyword options (e.g.
`snapshot_path`) and ignores the ones it has no use for, so the runtime
needs no per-source code. Built-in sources are imported from
`BUILTIN_SOURCES`; one whose optional dependency is missing is skipped
rather than breaking the import, as Redash does.

`PARSERS` maps each network in `NETWORKS` to the pure `parse(raw, now=None)
-> NetworkMetrics` of its module. Each network module also holds its live
`Client`; the "live" source (`live.py`) uses them against the real APIs and
the "snapshot" source (`snapshot.py`) uses the same clients over a transport
that answers from a file, so both turn the same API JSON into the same
numbers through the same code. Handles are normalised and validated in
`handles.py`; the shared HTTP behaviour (timeouts, retries, rate limits,
the Mastodon address guard) is in `http.py`.

The small field helpers below are shared by every parser: API bodies arrive
with strings for numbers (YouTube), nulls, missing keys and odd timestamps,
and one tolerant reading in one place keeps the six parsers consistent. They
are defined before the parser modules are imported, because those modules
import them from this package.
"""

from __future__ import annotations

import importlib
import logging
import math
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from connectors.social.base import NETWORKS, InfluenceSource, LookupFailure, NetworkMetrics

log = logging.getLogger(__name__)

WINDOW_DAYS = 90  # Klout's activity window; see reference/INFLUENCE.md

# --------------------------------------------------------------------------
# Tolerant field readers shared by the parsers
# --------------------------------------------------------------------------


def as_mapping(value: Any) -> Mapping[str, Any]:
    """`value` if it is a JSON object, else an empty one (never raises)."""
    return value if isinstance(value, Mapping) else {}


def as_list(value: Any) -> list[Any]:
    """`value` if it is a JSON array, else an empty list (never raises)."""
    return value if isinstance(value, list) else []


def as_count(value: Any) -> float | None:
    """A non-negative count from an int, float or numeric string; else None.

    YouTube sends 64-bit counts as strings, some clients write "1,234", and a
    boolean is never a count (JSON `true` must not become 1). Negative or
    non-finite values are treated as "not said" rather than as data.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip().replace(",", "").replace("_", "")
        if not text:
            return None
        try:
            number = float(text)
        except ValueError:
            return None
    elif isinstance(value, (int, float)):
        number = float(value)
    else:
        return None
    if not math.isfinite(number) or number < 0:
        return None
    return number


def as_flag(value: Any) -> bool:
    """JSON booleans, plus the "true"/"1" strings some proxies produce."""
    if isinstance(value, str):
        return value.strip().lower() in {"true", "1", "yes"}
    return value is True or (isinstance(value, (int, float)) and value == 1)


def as_time(value: Any) -> datetime | None:
    """An aware UTC datetime from an ISO 8601 string; None if unreadable.

    Naive timestamps are taken as UTC, which is what every API here means.
    """
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def reference_time(now: datetime | None) -> datetime:
    """The moment the activity window ends: `now` if given, else the clock."""
    if now is None:
        return datetime.now(UTC)
    return now if now.tzinfo is not None else now.replace(tzinfo=UTC)


def sum_counts(values: Iterable[float | None]) -> float | None:
    """Sum of the counts that were given; None when none were."""
    known = [v for v in values if v is not None]
    return float(sum(known)) if known else None


def recent_activity(times: Iterable[datetime | None], now: datetime, truncated: bool) -> int:
    """Own posts inside the activity window, estimated from a sample.

    APIs return one page of recent posts (X 10 by default, Mastodon 20). If
    the page ended before reaching the window's start (`truncated`: the API
    offered another page and every sampled post is inside the window), a
    plain count would call a daily poster and an hourly poster equally
    active, so the count is extrapolated from the sample's time span.
    """
    start = now - timedelta(days=WINDOW_DAYS)
    known = [t for t in times if t is not None]
    inside = [t for t in known if t > start]
    if not truncated or not inside or len(inside) < len(known):
        return len(inside)
    span_days = max((now - min(inside)).total_seconds() / 86400.0, 1.0)
    if span_days >= WINDOW_DAYS:
        return len(inside)
    return round(len(inside) * WINDOW_DAYS / span_days)


# --------------------------------------------------------------------------
# Source registry (Redash-style)
# --------------------------------------------------------------------------

SourceFactory = Callable[..., InfluenceSource]
F = TypeVar("F", bound=SourceFactory)

SOURCES: dict[str, SourceFactory] = {}

# Modules imported at package import so their `@register` runs; others may
# register more sources (e.g. live API clients) from their own modules.
BUILTIN_SOURCES: tuple[str, ...] = ("connectors.social.live", "connectors.social.snapshot")


def register(name: str) -> Callable[[F], F]:
    """Decorator: make a source factory (class or function) `build(name, ...)`-able."""

    def decorator(factory: F) -> F:
        existing = SOURCES.get(name)
        if existing is not None and existing is not factory:
            log.warning("influence source %r re-registered by %r", name, factory)
        SOURCES[name] = factory
        return factory

    return decorator


def available() -> list[str]:
    """Names of the influence sources this install can create, sorted."""
    return sorted(SOURCES)


def build(name: str, /, **options: Any) -> InfluenceSource:
    """The source registered as `name`; a clear error lists the known ones."""
    try:
        factory = SOURCES[name]
    except KeyError:
        known = ", ".join(available()) or "none"
        raise ValueError(f"unknown influence source {name!r}; available: {known}") from None
    return factory(**options)


def import_sources(modules: Iterable[str]) -> None:
    """Import source modules so they register; skip ones missing a dependency."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            log.warning("influence source module %s not loaded: %s", module, exc)


def _load_parsers() -> dict[str, Callable[..., NetworkMetrics]]:
    # Imported here, after the helpers above exist, because the parser
    # modules import those helpers from this package.
    from connectors.social import bluesky, github, mastodon, reddit, x, youtube

    modules = (x, bluesky, mastodon, github, reddit, youtube)
    return {module.NETWORK: module.parse for module in modules}


PARSERS: dict[str, Callable[..., NetworkMetrics]] = _load_parsers()

import_sources(BUILTIN_SOURCES)

__all__ = [
    "BUILTIN_SOURCES",
    "NETWORKS",
    "LookupFailure",
    "PARSERS",
    "SOURCES",
    "WINDOW_DAYS",
    "as_count",
    "as_flag",
    "as_list",
    "as_mapping",
    "as_time",
    "available",
    "build",
    "import_sources",
    "recent_activity",
    "reference_time",
    "register",
    "sum_counts",
]
