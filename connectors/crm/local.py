"""The `local` desk: customers and tickets live in Clout's own store.

It is the default so the demo and the tests need no outside system, and it is
the reference for what a real connector must do: answer `fetch_customers` in
one round trip and write every decision of a batch in one transaction.
"""

from __future__ import annotations

from typing import Any, Sequence

from . import register
from .base import Customer, Decision, WriteResult


class LocalCRM:
    name = "local"

    def __init__(self, store: Any) -> None:
        self._store = store

    def fetch_customers(self, ids: Sequence[str]) -> dict[str, Customer]:
        return self._store.get_customers(list(ids))

    def write_decisions(self, decisions: Sequence[Decision]) -> WriteResult:
        written = set(self._store.write_desk_fields(list(decisions)))
        failed = {d.ticket_id: "ticket not found, or a newer event superseded this decision"
                  for d in decisions if d.ticket_id not in written}
        return WriteResult(written=tuple(sorted(written)), failed=failed)


@register("local")
def _factory(*, store: Any, **_options: Any) -> LocalCRM:
    return LocalCRM(store)
