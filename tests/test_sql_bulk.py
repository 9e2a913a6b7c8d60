"""Long key lists and whole batches bound as one value (`plugin.sql_lists`), on the real
database (SQLite, or PostgreSQL with DATABASE_URL): same rows as the per-value forms,
values that read back exactly as SQLAlchemy writes them, and the store's one-statement
paths giving what the row-by-row statements gave."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from connectors.crm.base import Decision
from plugin.sql_lists import in_values, rows_relation
from plugin.store import decisions, tickets

NOW = dt.datetime(2026, 11, 30, 12, 0, 0, 123456, tzinfo=dt.timezone.utc)


def _tickets(store, n: int, source: str = "generic") -> None:
    with store.engine.begin() as conn:
        conn.execute(tickets.insert(), [
            {"source": source, "id": f"T-{i}", "customer_id": f"C-{i % 7}", "subject": "s",
             "description": "", "status": "open", "updated_at": NOW, "decision_id": i,
             "last_event_id": f"e-{i}"} for i in range(n)])


def test_in_values_finds_what_in_finds(runtime):
    store = runtime.store
    _tickets(store, 3000)
    wanted = [f"T-{i}" for i in range(0, 3000, 3)] + ["T-missing", "it's \"quoted\""]
    numbers = list(range(5, 2500, 7))
    with store.engine.connect() as conn:
        def ids(clause):
            return sorted(conn.execute(sa.select(tickets.c.id).where(clause)).scalars())

        assert ids(in_values(tickets.c.id, wanted)) == ids(tickets.c.id.in_(wanted))
        assert len(ids(in_values(tickets.c.id, wanted))) == 1000
        assert ids(in_values(tickets.c.decision_id, numbers)) == ids(tickets.c.decision_id.in_(numbers))
        assert ids(in_values(tickets.c.id, [])) == []
        assert len(ids(~in_values(tickets.c.id, ["T-1", "T-2"]))) == 2998
        # Composed with other conditions and under OR, as the store uses it.
        either = sa.or_(sa.and_(tickets.c.source == "generic", in_values(tickets.c.id, ["T-1"])),
                        sa.and_(tickets.c.source == "other", in_values(tickets.c.id, ["T-2"])))
        assert ids(either) == ["T-1"]


def test_in_values_matches_awkward_keys_exactly(runtime):
    """Keys with quotes, backslashes, braces, commas, control characters and other scripts
    match themselves only; a key longer than the column matches nothing (never a prefix)."""
    store = runtime.store
    awkward = ['it\'s "quoted"', "back\\slash", "{a,b}", "NULL", "new\nline\ttab", "ü-ñ-✓-中",
               "x" * 128, " padded ", "comma,separated"]
    with store.engine.begin() as conn:
        conn.execute(tickets.insert(), [
            {"source": "generic", "id": k, "customer_id": "C-1", "subject": "s", "description": "",
             "status": "open", "updated_at": NOW, "decision_id": 10 + i}
            for i, k in enumerate(awkward)])
    with store.engine.connect() as conn:
        def ids(values):
            return sorted(conn.execute(sa.select(tickets.c.id)
                                       .where(in_values(tickets.c.id, values))).scalars())

        assert ids(awkward) == sorted(awkward)
        for k in awkward:
            assert ids([k]) == [k]
        assert ids(["x" * 129, "padded", "{a", "new", "NULL ", "null"]) == []
        assert sorted(conn.execute(sa.select(tickets.c.decision_id).where(
            in_values(tickets.c.decision_id, [10, 12, 99]))).scalars()) == [10, 12]


def test_in_values_keeps_the_primary_key_lookup(runtime):
    store = runtime.store
    _tickets(store, 2000)
    seen: list = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        seen.append((statement, parameters))

    sa.event.listen(store.engine, "before_cursor_execute", capture)
    try:
        with store.engine.connect() as conn:
            conn.execute(sa.select(tickets.c.id).where(tickets.c.source == "generic",
                                                       in_values(tickets.c.id, ["T-1", "T-2"])))
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", capture)
    statement, parameters = seen[-1]
    with store.engine.connect() as conn:
        if store.engine.dialect.name == "postgresql":
            # The array must be one value the index scan uses, not an expression a scan
            # re-evaluates for every row (a cast of text to VARCHAR[] is: 2 s for 20k rows).
            conn.exec_driver_sql("ANALYZE tickets")
            plan = " | ".join(r[0] for r in conn.exec_driver_sql("EXPLAIN " + statement, parameters))
            assert "tickets_pkey" in plan and "ANY" in plan and "Seq Scan" not in plan, plan
            return
        plan = " | ".join(r[-1] for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement,
                                                                parameters))
    assert "SEARCH tickets USING" in plan and "id=?" in plan, plan
    assert "SCAN tickets" not in plan, plan


def test_rows_relation_values_read_back_as_sqlalchemy_writes_them(runtime):
    store = runtime.store
    _tickets(store, 10)
    later = NOW + dt.timedelta(minutes=5)
    with store.engine.begin() as conn:
        v = rows_relation(conn, [("id", sa.String), ("score", sa.Float), ("flags", sa.JSON),
                                 ("at", sa.DateTime(timezone=True)), ("reason", sa.Text),
                                 ("rank", sa.Integer)],
                          [["T-1", 0.25, ["VIP", "RENEWAL_SOON"], later, "it's \"urgent\"\n", 0],
                           ["T-2", 1.0, [], None, None, None]])
        changed = conn.execute(tickets.update()
                               .where(tickets.c.source == "generic", tickets.c.id == v.c.id)
                               .values(score=v.c.score, desk_flags=v.c.flags,
                                       clout_written_at=v.c.at, desk_reason=v.c.reason,
                                       tier_rank=v.c.rank)).rowcount
    assert changed == 2
    with store.engine.connect() as conn:
        one, two = conn.execute(sa.select(tickets).where(tickets.c.id.in_(["T-1", "T-2"]))
                                .order_by(tickets.c.id)).all()
        # A time bound through SQLAlchemy compares equal to the one written through JSON.
        assert conn.execute(sa.select(sa.func.count()).select_from(tickets)
                            .where(tickets.c.clout_written_at == later)).scalar() == 1
        assert conn.execute(sa.select(sa.func.count()).select_from(tickets)
                            .where(tickets.c.clout_written_at > NOW)).scalar() == 1
    assert one.score == 0.25 and one.desk_flags == ["VIP", "RENEWAL_SOON"]
    assert one.desk_reason == "it's \"urgent\"\n" and one.tier_rank == 0
    written = one.clout_written_at
    assert (written if written.tzinfo else written.replace(tzinfo=dt.timezone.utc)) == later
    assert two.desk_flags == [] and two.clout_written_at is None and two.desk_reason is None


def test_rows_relation_times_in_any_zone_are_the_same_instant(runtime):
    """Aware times in other zones, a fold, naive times (taken as UTC), a pandas Timestamp and
    a column without a time zone (UTC wall time) all read back as the instant they name."""
    import pandas as pd

    store = runtime.store
    _tickets(store, 7)
    india = dt.timezone(dt.timedelta(hours=5, minutes=30))
    pacific = dt.timezone(dt.timedelta(hours=-8))
    base = dt.datetime(2026, 11, 1, 8, 30, 15, 123456, tzinfo=dt.timezone.utc)
    values = {"T-1": base, "T-2": base.astimezone(india), "T-3": base.astimezone(pacific),
              "T-4": base.replace(tzinfo=None), "T-5": pd.Timestamp(base.astimezone(india)),
              "T-6": base.astimezone(pacific).replace(fold=1)}
    plain = sa.Table("plain_times", sa.MetaData(), sa.Column("id", sa.String(8), primary_key=True),
                     sa.Column("at", sa.DateTime(timezone=False)))
    plain.create(store.engine)
    try:
        with store.engine.begin() as conn:
            v = rows_relation(conn, [("id", sa.String), ("at", sa.DateTime(timezone=True))],
                              sorted(values.items()))
            assert conn.execute(tickets.update()
                                .where(tickets.c.source == "generic", tickets.c.id == v.c.id)
                                .values(clout_written_at=v.c.at)).rowcount == 6
            w = rows_relation(conn, [("id", sa.String), ("at", sa.DateTime(timezone=False))],
                              sorted(values.items()))
            conn.execute(plain.insert().from_select(["id", "at"], sa.select(w.c.id, w.c.at)))
        with store.engine.connect() as conn:
            got = dict(conn.execute(sa.select(tickets.c.id, tickets.c.clout_written_at)
                                    .where(tickets.c.id.in_(list(values)))).all())
            wall = dict(conn.execute(sa.select(plain.c.id, plain.c.at)).all())
    finally:
        plain.drop(store.engine)
    for ticket, at in got.items():
        assert (at if at.tzinfo else at.replace(tzinfo=dt.timezone.utc)) == base, ticket
    assert set(wall.values()) == {base.replace(tzinfo=None)}, wall


def _decision(ticket: str, decision_id: str = "", event: str = "e", priority: str = "High") -> Decision:
    return Decision(source="generic", ticket_id=ticket, customer_id="C-1", tier="high",
                    priority=priority, score=0.5, flags=("VIP",), reason="why", components={},
                    weights_version="w1", decided_at="2026-11-30T12:00:00Z", event_id=event,
                    id=decision_id)


def test_local_desk_write_of_one_batch_keeps_the_newest_decision_per_ticket(runtime):
    store = runtime.store
    _tickets(store, 3)
    written = store.write_local_desk("generic", [
        _decision("T-1", "7", priority="Urgent"), _decision("T-1", "5", priority="Low"),
        _decision("T-2", "9")])
    assert sorted(written) == ["T-1", "T-2"]  # T-1's 5 is older than its 7: not shown
    view = store.local_desk_view("generic", ["T-1", "T-2"])
    assert view["T-1"]["clout_decision"] == "7" and view["T-1"]["priority"] == "Urgent"
    assert view["T-2"]["clout_decision"] == "9"
    # An older decision later is refused by the same statement (the desk shows a newer one).
    assert store.write_local_desk("generic", [_decision("T-1", "6")]) == []


def test_recording_two_decisions_for_one_ticket_and_event_keeps_both(runtime):
    store = runtime.store
    store.upsert_tickets([{"source": "generic", "id": "T-9", "customer_id": "C-1", "subject": "s",
                           "description": "", "created_at": "2026-11-30T10:00:00Z",
                           "last_event_id": "e-9", "last_event_at": "2026-11-30T11:00:00Z"}])
    first, second = _decision("T-9", event="e-9"), _decision("T-9", event="e-9", priority="Low")
    out = store.record_decisions([first, second])
    assert out is not None and len({d.id for d in out}) == 2
    assert [d.priority for d in out] == ["High", "Low"]  # ids follow the input order
    with store.engine.connect() as conn:
        stored = dict(conn.execute(sa.select(decisions.c.id, decisions.c.priority)).all())
        current = conn.execute(sa.select(tickets.c.decision_id)
                               .where(tickets.c.id == "T-9")).scalar_one()
    assert {str(k): v for k, v in stored.items()} == {d.id: d.priority for d in out}
    assert str(current) == out[1].id  # as before: the later of the two answers the event last


def test_insert_many_writes_what_sqlalchemy_writes_row_by_row(runtime):
    """The batch INSERT (SQLite: parameter tuples built per column; PostgreSQL: one
    INSERT ... SELECT) stores the same values as SQLAlchemy's own row-by-row insert:
    times in two zones, dates, JSON, NULLs, and an ON CONFLICT guard carrying its own value."""
    from plugin.store import _future_limit, _insert_many, customers

    store = runtime.store
    paris = dt.timezone(dt.timedelta(hours=1))
    same_instant = NOW.astimezone(paris)  # equal to NOW: must still be stored as itself
    rows = [{"id": f"C-{i}", "name": "Zo\u00eb \u2603" if i % 2 else None,
             "email": None, "handles": {"x": f"h{i}", "github": "g"} if i % 3 else {},
             "monthly_spend": 10.5 * i, "currency": "EUR",
             "contract_end": dt.date(2027, 1, 1 + i % 28) if i % 4 else None,
             "facts_at": (NOW, same_instant, None)[i % 3], "updated_at": NOW}
            for i in range(40)]
    with store.engine.begin() as conn:
        _insert_many(conn, customers, rows[:20])
        conn.execute(customers.insert(), rows[20:])  # SQLAlchemy's own, for comparison
        # An upsert whose WHERE carries a bound time of its own.
        newer = [{**r, "name": "updated", "facts_at": NOW + dt.timedelta(days=1)} for r in rows[:3]]

        def upsert(stmt):
            return stmt.on_conflict_do_update(
                index_elements=["id"], set_={"name": stmt.excluded.name},
                where=customers.c.updated_at < _future_limit())
        _insert_many(conn, customers, newer, finish=upsert)
    with store.engine.connect() as conn:
        got = {r.id: r for r in conn.execute(sa.select(customers))}
        raw = {r[0]: r[1] for r in conn.execute(
            sa.select(customers.c.id, sa.cast(customers.c.facts_at, sa.String)))}
    assert [got[f"C-{i}"].name for i in range(3)] == ["updated"] * 3
    for i in range(3, 40):
        r, want = got[f"C-{i}"], rows[i]
        assert (r.name, r.handles, r.monthly_spend, r.contract_end) == \
            (want["name"], want["handles"], want["monthly_spend"], want["contract_end"])
    # Each batch path stored the times exactly as SQLAlchemy's own insert did.
    for i in range(3, 19):  # row i + 21 has the same time as row i
        assert raw[f"C-{i}"] == raw[f"C-{i + 21}"]
    if store.engine.dialect.name == "sqlite":  # wall times: equal instants were not merged
        assert raw["C-3"] != raw["C-4"] and raw["C-5"] is None


def test_json_text_round_trips_and_falls_back_for_what_orjson_refuses():
    import json

    from plugin import jsontext

    value = {"b": [1, 2.5, None, "Zo\u00eb \U0001F600"], "a": {"nested": True}}
    assert json.loads(jsontext.dumps(value)) == value
    assert list(json.loads(jsontext.dumps(value))) == ["b", "a"]  # insertion order kept
    assert jsontext.loads(jsontext.dumps(value)) == value
    big = {"id": 2 ** 70}  # beyond 64 bits: the standard library writes it
    assert jsontext.loads(jsontext.dumps(big)) == big
    assert jsontext.dumps({"x": float("nan")}) == '{"x":null}'  # valid JSON, unlike json's NaN
    # Text written before (the standard library's NaN, a lone surrogate) still reads.
    assert jsontext.loads('{"x": NaN}')["x"] != jsontext.loads('{"x": NaN}')["x"]
    assert jsontext.loads('{"x": "\\ud800"}') == {"x": "\ud800"}
    assert jsontext.loads(b'[1, 2]') == [1, 2]


def test_time_text_is_what_the_bind_processors_write(runtime):
    """`format_times` (each distinct value formatted once) writes what SQLAlchemy's own processor
    writes, value by value: no microseconds, naive and aware values, equal instants in
    two zones, early years, dates."""
    from sqlalchemy.dialects import sqlite

    import sqlalchemy as sa
    import pandas as pd

    from plugin.sql_lists import format_times
    from plugin.store import _time_text

    dialect = sqlite.dialect()
    stamp = sqlite.DATETIME().bind_processor(dialect)
    day = sqlite.DATE().bind_processor(dialect)
    fast = _time_text(sa.DateTime(timezone=True), dialect, stamp)
    assert fast is not stamp  # the positional format is in use for Clout's columns
    moments = [NOW, NOW.replace(microsecond=0), NOW.replace(tzinfo=None), None, NOW,
               NOW.astimezone(dt.timezone(dt.timedelta(hours=-7, minutes=-30))),
               dt.datetime(5, 1, 2, 3, 4, 5), dt.datetime(9999, 12, 31, 23, 59, 59, 999999),
               dt.date(2027, 2, 3), pd.Timestamp("2027-02-03 04:05:06.789", tz="UTC")]
    want = [None if v is None else stamp(v) for v in moments]
    assert format_times(moments, stamp) == want
    assert format_times(moments, fast) == want
    days = [dt.date(2027, 2, 3), None, dt.date(9, 12, 31), dt.date(2027, 2, 3)]
    assert format_times(days, day) == [None if v is None else day(v) for v in days]
    # A type stored in another format keeps SQLAlchemy's own processor.
    other = sqlite.DATETIME(truncate_microseconds=True)
    assert _time_text(other, dialect, stamp) is stamp
    # Equal values in distinct objects, and one object many times, format alike.
    same = [NOW.replace(microsecond=7) for _ in range(3)] + [NOW] * 3
    assert format_times(same, stamp) == [stamp(v) for v in same]


def test_naive_times_read_back_as_utc_like_replace():
    """`_as_utc` builds its datetime with `combine` for speed; it must equal what
    `replace(tzinfo=utc)` gives, fold and microseconds included, and leave aware or
    missing values alone."""
    from plugin.store import _as_utc

    for naive in (NOW.replace(tzinfo=None), dt.datetime(5, 1, 2, 3, 4, 5, 6),
                  dt.datetime(2026, 11, 1, 1, 30, fold=1), dt.datetime(9999, 12, 31, 23, 59, 59)):
        got, want = _as_utc(naive), naive.replace(tzinfo=dt.timezone.utc)
        assert (got, got.tzinfo, got.fold, type(got)) == (want, want.tzinfo, want.fold, type(want))
    other = NOW.astimezone(dt.timezone(dt.timedelta(hours=5)))
    assert _as_utc(other) is other and _as_utc(None) is None


def test_hand_built_copies_match_dataclasses_replace():
    """`_with_id` and `merge_customer` spell their copies out for speed; a field added to
    Decision or Customer must not be dropped by them."""
    from dataclasses import fields, replace

    from connectors.crm.base import Customer
    from plugin.jobs import merge_customer
    from plugin.store import _with_id

    d = Decision(**{f.name: f"v-{f.name}" for f in fields(Decision)})
    assert _with_id(d, "42") == replace(d, id="42")
    stored = Customer(**{f.name: ({"x": "old", "github": "g"} if f.name == "handles" else
                                  f"stored-{f.name}") for f in fields(Customer)})
    said = Customer(id=stored.id, name="New", handles={"x": "new", "mastodon": ""})
    merged = merge_customer(said, stored)
    assert merged == replace(stored, name="New", handles={"x": "new", "github": "g"})
    assert merge_customer(said, None) == Customer(id=stored.id, name="New", handles={"x": "new"})


def test_sqlite_connections_commit_durably_with_a_larger_cache(tmp_path):
    """Every SQLite connection the store opens is in WAL mode with fsynced commits (the
    inbox is trimmed once the ledger has committed), a 32 MiB page cache and a ~40 MiB
    checkpoint interval; read back from SQLite itself, on a fresh file."""
    from plugin.store import make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'p.db'}")
    try:
        with engine.connect() as conn:
            got = {name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                   for name in ("journal_mode", "synchronous", "cache_size",
                                "wal_autocheckpoint", "busy_timeout")}
    finally:
        engine.dispose()
    # synchronous: 2 is FULL
    assert got == {"journal_mode": "wal", "synchronous": 2, "cache_size": -32768,
                   "wal_autocheckpoint": 10000, "busy_timeout": 30000}
