"""A worker batch's keys and rows as ONE bound value, on PostgreSQL and on SQLite.

`in_values` is `column IN (a long list)`; `rows_relation` is a batch of rows to join in
(`UPDATE ... FROM`, `INSERT ... SELECT`), below.

SQLAlchemy's `column.in_(values)` renders one placeholder per value. A worker batch
asks for thousands of keys in each of ~20 statements, and profiling a 5,000-event
backlog on PostgreSQL found a third of the worker's time in that: SQLAlchemy rendering
the placeholders (with a `::VARCHAR` cast each), and psycopg parsing the new, long
statement text every time (texts that long skip its statement cache, so it can never
prepare them either). On SQLite the rendering cost ~8% of a batch.

`in_values(column, values)` binds the whole list as one value instead:
PostgreSQL: `column = ANY(%(p)s::VARCHAR[])` (psycopg sends a Python list as an array);
SQLite:     `column IN (SELECT value FROM json_each(?))` (the list sent as JSON text).
Both keep the index lookup by key, and the statement text no longer depends on the
number of values, so it is compiled once and cached by SQLAlchemy and by psycopg.
Only for lists of strings or integers (keys): JSON would not keep other types apart.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Callable, Iterable, Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal

from . import jsontext


class _KeyList(sa.types.TypeDecorator):
    """A list of keys: an array on PostgreSQL, JSON text elsewhere."""

    impl = sa.Text
    cache_ok = True

    def __init__(self, item_type: Any) -> None:
        super().__init__()
        self.item_type = item_type

    def load_dialect_impl(self, dialect: Any) -> Any:
        if dialect.name == "postgresql":
            item = self.item_type
            if isinstance(item, sa.String) and item.length:
                # `::VARCHAR(128)[]` would cut a longer key to 128 characters, and the cut
                # key could then match another row: compare the whole key.
                item = sa.String()
            return dialect.type_descriptor(postgresql.ARRAY(item))
        return dialect.type_descriptor(sa.Text())

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        if dialect.name == "postgresql":
            return list(value)
        return jsontext.dumps(list(value))


class InValues(ColumnElement[bool]):
    """`column IN values` with the values bound as one parameter (see the module docstring)."""

    __visit_name__ = "clout_in_values"
    inherit_cache = True
    _traverse_internals = [("column", InternalTraversal.dp_clauseelement),
                           ("values", InternalTraversal.dp_clauseelement)]
    type = sa.Boolean()
    _is_implicitly_boolean = True  # a predicate: SQLite must not get `(...) = 1` (no index use)

    def __init__(self, column: Any, values: Iterable[Any]) -> None:
        self.column = column
        self.values = sa.bindparam(None, list(values), type_=_KeyList(column.type))


def in_values(column: Any, values: Iterable[Any]) -> InValues:
    return InValues(column, values)


@compiles(InValues)
def _json_each(element: InValues, compiler: Any, **kw: Any) -> str:
    return (f"{compiler.process(element.column, **kw)} IN "
            f"(SELECT value FROM json_each({compiler.process(element.values, **kw)}))")


@compiles(InValues, "postgresql")
def _any_array(element: InValues, compiler: Any, **kw: Any) -> str:
    column, values = compiler.process(element.column, **kw), compiler.process(element.values, **kw)
    return f"{column} = ANY({values})"


# -- many rows as one bound value ------------------------------------------------------------

def sqlite_time(value: dt.datetime) -> str:
    """A datetime's wall time as SQLAlchemy stores a DateTime on SQLite (text that sorts in
    time order). Values bound by hand must look the same as the ones it wrote, or
    comparisons break; a positional format is half the cost of SQLAlchemy's named one."""
    return "%04d-%02d-%02d %02d:%02d:%02d.%06d" % (
        value.year, value.month, value.day, value.hour, value.minute, value.second,
        value.microsecond)


def _plain(value: Any, postgres: bool) -> Any:
    """A value as JSON carries it to the database (times as the dialect's text)."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        if postgres:
            return value.isoformat() + "+00:00"
        return sqlite_time(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def format_times(values: list[Any], process: Callable[[Any], Any]) -> list[Any]:
    """A time column's values through its bind processor, each distinct value formatted
    once (the rows of a batch share their `now`, and many events their times). The zone
    is part of the key: equal instants in two zones are written as each one's own wall
    time. An object seen before is found by identity first (`values` keeps it alive):
    hashing an aware datetime costs about a seventh of formatting it (callgrind).
    (`isoformat` was tried instead of the processor: callgrind counted more
    instructions, as CPython formats its fields through the C library's printf.)"""
    memo: dict[Any, Any] = {}
    seen: dict[int, Any] = {}
    out = []
    for value in values:
        if value is None:
            out.append(None)
            continue
        got = seen.get(id(value))
        if got is None:
            key = (value, getattr(value, "tzinfo", None))
            got = memo.get(key)
            if got is None:
                got = memo[key] = process(value)
            seen[id(value)] = got
        out.append(got)
    return out


def _time_converter(type_: Any, postgres: bool) -> Callable[[Any], Any]:
    """How one time column's values go into the JSON. For a PostgreSQL `timestamptz` column,
    an aware datetime's own ISO text (any offset) is what the server parses and stores as
    UTC, so it skips `_plain`'s conversion to UTC first: about half the cost, on ~15 time
    values an event. A column without a time zone still gets UTC wall time (`_plain`)."""
    if not (postgres and getattr(type_, "timezone", False) is True):
        return lambda value: _plain(value, postgres)

    def text(value: Any) -> Any:
        if type(value) is dt.datetime and value.utcoffset() is not None:
            return value.isoformat()
        return _plain(value, True)

    return text


def rows_relation(conn: Any, columns: Sequence[tuple[str, Any]], rows: Iterable[Sequence[Any]],
                  name: str = "v") -> Any:
    """Rows as a relation to join against in one statement, bound as ONE JSON value.

    `columns`: (name, SQLAlchemy type) pairs; each row gives its values in that order.
    For `UPDATE ... FROM` and `INSERT ... SELECT` over a whole batch: the statement is
    compiled once and the database walks the rows itself, where an executemany costs a
    round of SQLAlchemy parameter processing per row (and, on PostgreSQL, a pipelined
    statement per row). Profiled on a 2,000-event batch, that per-row processing was
    the largest single cost left in the worker. Values: strings, numbers, None, lists
    and dicts (for JSON columns), dates and aware datetimes (stored in UTC).
    """
    postgres = conn.dialect.name == "postgresql"
    # Only time columns need converting: the rest go to JSON as they are.
    times = [(i, _time_converter(type_, postgres)) for i, (_, type_) in enumerate(columns)
             if isinstance(type_, (sa.DateTime, sa.Date))
             or (isinstance(type_, type) and issubclass(type_, (sa.DateTime, sa.Date)))]
    if times:
        rows = [list(row) for row in rows]
        for i, convert in times:  # a column at a time, each distinct value converted once
            for row, text in zip(rows, format_times([row[i] for row in rows], convert)):
                row[i] = text
    payload = jsontext.dumps(rows if isinstance(rows, list) else list(rows))
    if postgres:
        src = sa.func.jsonb_array_elements(
            sa.cast(sa.bindparam(None, payload, type_=sa.Text), postgresql.JSONB)
        ).table_valued("value").alias(f"{name}_src")

        def pick(i: int, type_: Any) -> Any:
            if isinstance(type_, sa.String) and type_.length:
                type_ = type(type_)()  # a cast to VARCHAR(n) would cut a long value silently
            index = sa.literal_column(str(i))
            if isinstance(type_, sa.JSON):
                return sa.cast(src.c.value.op("->", return_type=postgresql.JSONB)(index), type_)
            return sa.cast(src.c.value.op("->>", return_type=sa.Text)(index), type_)
    else:
        src = sa.func.json_each(sa.bindparam(None, payload, type_=sa.Text)).table_valued(
            "value").alias(f"{name}_src")

        def pick(i: int, type_: Any) -> Any:
            path = sa.literal_column(f"'$[{i}]'")
            return sa.type_coerce(sa.func.json_extract(src.c.value, path), type_)
    return sa.select(*[pick(i, type_).label(col) for i, (col, type_) in enumerate(columns)]
                     ).select_from(src).subquery(name)
