"""JSON text for what Clout writes and reads back itself: the inbox, the store's JSON columns.

orjson, because a worker batch encodes and decodes every event, decision and customer
it touches: the standard library's `json` was a tenth of a batch's CPU (profiled), and
orjson does the same work in a fraction of it. The standard library stays as the
fallback for what orjson refuses: integers beyond 64 bits when writing, and, when
reading, rows written before (`NaN`, or a lone surrogate in old SQLite text).

Not used for webhook bodies: `webhooks.base.json_object` keeps `json.loads`, whose
handling of hostile input (huge integers stay integers) the 4xx answers are built on.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps(value: Any) -> str:
    """Compact JSON text (no spaces), keys in insertion order. NaN and infinities become null."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # an integer beyond 64 bits, or a type only a custom encoder knew
        return json.dumps(value)


def loads(text: str | bytes | bytearray | memoryview) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)
