"""The `generic` desk: any system that POSTs Clout's JSON event, with tickets kept in the store.

Its webhook is `webhooks/generic.py`. There is no outside desk to write to, so
the store is the desk: decisions are written to the ticket's desk fields, and
what the sender's events report (status, priority) is the desk's state. It is
the default so the demo and the tests need no outside system, and the
reference for what a real connector must do: answer each call for a whole
batch in one round trip, and keep Clout's markers (last priority and decision
id written) so a repeated write and an agent's change can be recognised.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from .base import CLOSED, OPEN, Customer, Decision, DeskSettings, DeskSpec, DeskTicket, WriteResult


class GenericDeskSettings(DeskSettings):
    enabled: bool = True
    priorities: dict[str, str] = {"urgent": "Urgent", "high": "High", "normal": "Normal",
                                  "low": "Low"}


class LocalDesk:
    """Customers and tickets in Clout's own store."""

    # No API between Clout and this desk: a whole batch (up to 10,000 events under a backlog)
    # is read and written in one call of a few statements, not in passes of a few hundred.
    max_batch = 10_000

    def __init__(self, store: Any, name: str = "generic", conn: Any = None) -> None:
        self._store = store
        self.name = name
        self._conn = conn  # a store transaction this desk's reads and writes belong to

    def within(self, conn: Any) -> "LocalDesk":
        """This desk inside the caller's store transaction (`Store.transaction`).

        The desk and Clout's outbox are one database, so the write to the desk can
        commit together with the decision and its outbox row (`plugin.jobs` does, for
        a desk without a flush window): nothing in between can be lost, and a batch
        pays one commit instead of four. Desks reached over the network have no such
        method and are written after the commit, as before.
        """
        return LocalDesk(self._store, self.name, conn)

    def fetch_customers(self, ids: Sequence[str]) -> dict[str, Customer]:
        return self._store.get_customers(list(ids), conn=self._conn)

    def read_tickets(self, ticket_ids: Sequence[str]) -> dict[str, DeskTicket]:
        rows = self._store.local_desk_view(self.name, list(ticket_ids), conn=self._conn)
        return {
            tid: DeskTicket(status=CLOSED if r["status"] == CLOSED else OPEN,
                            priority=r["priority"], clout_priority=r["clout_priority"],
                            clout_decision=r["clout_decision"])
            for tid, r in rows.items()
        }

    def write_decisions(self, decisions: Sequence[Decision]) -> WriteResult:
        written = self._store.write_local_desk(self.name, list(decisions), conn=self._conn)
        return WriteResult(written=tuple(written))


def connect(settings: GenericDeskSettings, secrets: Mapping[str, str], *, store: Any,
            session: Any = None) -> LocalDesk:
    return LocalDesk(store, name="generic")


DESK = DeskSpec(
    name="generic",
    webhook="generic",
    settings=GenericDeskSettings,
    connect=connect,
    description="Clout's own JSON event (Standard Webhooks); tickets and customers in the store",
)
