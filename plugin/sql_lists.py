"""`column IN (a long list)` as ONE bound value, on PostgreSQL and on SQLite.

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

import json
from typing import Any, Iterable

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal


class _KeyList(sa.types.TypeDecorator):
    """A list of keys: an array on PostgreSQL, JSON text elsewhere."""

    impl = sa.Text
    cache_ok = True

    def __init__(self, item_type: Any) -> None:
        super().__init__()
        self.item_type = item_type

    def load_dialect_impl(self, dialect: Any) -> Any:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.ARRAY(self.item_type))
        return dialect.type_descriptor(sa.Text())

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        if dialect.name == "postgresql":
            return list(value)
        return json.dumps(list(value))


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
    return f"{compiler.process(element.column, **kw)} = ANY({compiler.process(element.values, **kw)})"
