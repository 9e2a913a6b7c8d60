"""Telling outages from bugs, and describing errors without leaking data.

An outage (the store, Redis or a desk unreachable) must leave work waiting
for as long as it lasts; a bug or bad data should count towards parking the
work for an operator. Error texts end up in the store and in logs, so they
name the kind of failure, never the SQL parameters or payload behind it.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import redis
import requests
import sqlalchemy.exc as sa_exc

from connectors.crm.base import DeskUnavailable

from .logs import redact

_OUTAGES: tuple[type[BaseException], ...] = (
    sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError,
    redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
    requests.ConnectionError, requests.Timeout, DeskUnavailable,
    ConnectionError, TimeoutError,
)


def is_outage(exc: BaseException) -> bool:
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, _OUTAGES)


_URL = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*://)([^/\s?#@]*@)?([^/\s?#]*)[^\s]*")


def scrub(text: str) -> str:
    """URLs reduced to scheme and host: paths and query strings carry ids, e-mail
    addresses and sometimes keys."""
    return _URL.sub(lambda m: f"{m.group(1)}{m.group(3)}/…", text)


_DB_DRIVERS = frozenset({"sqlite3", "psycopg", "psycopg2", "asyncpg", "pymysql", "MySQLdb"})
_FIELD_NAME = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*")


def describe_error(exc: BaseException, limit: int = 300) -> str:
    """A short, data-free description: the error class, for database errors the driver's
    error class only (their messages carry SQL and parameters), for HTTP errors the status
    and host, for a KeyError the key only when it is a field name, and otherwise the first
    line with URLs cut to their host and anything `plugin.logs.redact` recognises
    (e-mail addresses, handles, secrets, pydantic input values) replaced."""
    if isinstance(exc, sa_exc.StatementError):
        orig = getattr(exc, "orig", None)
        return f"{type(exc).__name__}" + (f" ({type(orig).__name__})" if orig is not None else "")
    if type(exc).__module__.split(".")[0] in _DB_DRIVERS:  # a driver error SQLAlchemy didn't wrap
        return type(exc).__name__
    if isinstance(exc, KeyError):  # str() is the repr of the key, which may be a customer's value
        key = exc.args[0] if len(exc.args) == 1 else None
        shown = isinstance(key, str) and _FIELD_NAME.fullmatch(key) and len(key) <= 64
        return f"{type(exc).__name__}: {key!r}" if shown else type(exc).__name__
    if isinstance(exc, requests.RequestException):
        response = getattr(exc, "response", None)
        request = getattr(exc, "request", None) or getattr(response, "request", None)
        host = urlsplit(getattr(request, "url", "") or "").hostname
        status = f" {response.status_code}" if response is not None else ""
        return f"{type(exc).__name__}{status}" + (f" from {host}" if host else "")
    try:
        message = str(exc)
    except Exception:  # a broken __str__ must not break error handling
        message = ""
    text = message.splitlines()[0] if message else ""
    return redact(scrub(f"{type(exc).__name__}: {text}" if text else type(exc).__name__))[:limit]
