"""Influence lookups: profile cache per (network, handle), single flight, opt-outs, refresh.

The source here is the real snapshot source wrapped to count and slow its calls:
what is under test is how often Clout asks, not what a network answers."""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any, Sequence

from conftest import auth
from connectors.crm.base import Customer
from plugin.influence import NO_INFLUENCE, LookupFailure, lookup_influence


class Counting:
    """An InfluenceSource around another one: counts handles asked, can be slow."""

    def __init__(self, inner: Any, delay: float = 0.0) -> None:
        self.inner = inner
        self.name = "counting"
        self.delay = delay
        self.asked: list[tuple[str, str]] = []
        self.calls = 0
        self._lock = threading.Lock()

    def networks(self) -> tuple[str, ...]:
        return self.inner.networks()

    def fetch_metrics(self, network: str, handles: Sequence[str]) -> dict[str, Any]:
        with self._lock:
            self.calls += 1
            self.asked += [(network, h) for h in handles]
        time.sleep(self.delay)
        return self.inner.fetch_metrics(network, handles)


def _lookup(rt, customers, source, **kw):
    cfg = rt.settings.config.influence
    return lookup_influence(customers, source=source, cache=rt.redis, store=rt.store,
                            ttl=kw.pop("ttl", cfg.cache_ttl_seconds),
                            prefix=rt.settings.redis_key("influence"),
                            not_found_ttl=cfg.not_found_ttl_seconds, **kw)


def test_many_customers_sharing_a_handle_cost_one_lookup_and_a_rerun_none(runtime):
    source = Counting(runtime.influence)
    people = [Customer(id=f"C-{i}", handles={"x": "@FarahTech"}) for i in range(30)]
    first = _lookup(runtime, people, source)
    assert source.asked == [("x", "farahtech")] and source.calls == 1
    assert {round(v["score"], 1) for v in first.values()} == {round(first["C-0"]["score"], 1)}
    assert first["C-0"]["score"] > 20
    # New customers with the same handle: the profile cache answers.
    more = [Customer(id=f"D-{i}", handles={"x": "farahtech"}) for i in range(5)]
    _lookup(runtime, more, source)
    _lookup(runtime, people, source)  # and the score cache answers these
    assert source.calls == 1


def test_concurrent_workers_make_one_request_between_them(runtime):
    source = Counting(runtime.influence, delay=0.3)
    results: list[dict] = []

    def worker(i: int) -> None:
        results.append(_lookup(runtime, [Customer(id=f"W-{i}", handles={"bluesky": "farah.bsky.social"})],
                               source))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert source.asked == [("bluesky", "farah.bsky.social")]
    assert all(next(iter(r.values()))["score"] > NO_INFLUENCE for r in results)


def test_opted_out_customers_cost_no_lookups_and_rank_without_influence(runtime, client):
    source = Counting(runtime.influence)
    runtime.store.set_opt_out("C-OUT", True)
    got = _lookup(runtime, [Customer(id="C-OUT", handles={"x": "farahtech"})], source)
    assert got == {} and source.calls == 0
    # the API switch, and lifting it
    resp = client.post("/api/customers/C-OUT/opt-out", json={"opt_out": False}, headers=auth())
    assert resp.status_code == 200 and resp.get_json() == {"customer_id": "C-OUT", "opt_out": False}
    assert _lookup(runtime, [Customer(id="C-OUT", handles={"x": "farahtech"})], source)
    assert client.post("/api/customers/C-OUT/opt-out", json={"opt_out": "yes"},
                       headers=auth()).status_code == 400
    assert client.post("/api/customers/C-OUT/opt-out", json={"opt_out": True}).status_code == 401


def test_unknown_and_invalid_handles_are_explained_and_not_asked_again(runtime):
    source = Counting(runtime.influence)
    who = Customer(id="C-NF", handles={"x": "nobody_here", "github": "-bad-"})
    got = _lookup(runtime, [who], source)["C-NF"]
    assert got["score"] == NO_INFLUENCE
    lookups = got["explanation"]["lookups"]
    assert lookups["github"].startswith("invalid handle")
    assert "x" in lookups
    assert ("github", "-bad-") not in source.asked  # an invalid handle costs nothing
    asked = source.calls
    _lookup(runtime, [Customer(id="C-NF2", handles={"x": "nobody_here"})], source)
    assert source.calls == asked  # "not found" is remembered for not_found_ttl_seconds


def test_a_failure_that_may_pass_is_not_remembered(runtime):
    class Flaky(Counting):
        def fetch_metrics(self, network, handles):
            super().fetch_metrics(network, [])
            return {h: LookupFailure("timeout", retryable=True) for h in handles}

    source = Flaky(runtime.influence)
    _lookup(runtime, [Customer(id="C-F1", handles={"x": "farahtech"})], source, ttl=60)
    _lookup(runtime, [Customer(id="C-F2", handles={"x": "farahtech"})], source, ttl=60)
    assert source.calls == 2


def test_the_scheduled_refresh_looks_up_customers_with_open_tickets_again(runtime, post_generic, drain):
    from plugin.influence import refresh_influence

    payload = {"event_id": "evt-refresh-1", "occurred_at": dt.datetime.now(dt.timezone.utc).isoformat(),
               "ticket": {"id": "T-REFRESH", "subject": "Help"},
               "customer": {"id": "C-REFRESH", "handles": {"x": "farahtech"}}}
    assert post_generic(payload).status_code == 202
    drain()
    assert runtime.store.stale_influence(dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)) == []
    stale = runtime.store.stale_influence(dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=1))
    assert stale == ["C-REFRESH"]
    before = runtime.store.count("influence_history")
    seen = []
    result = refresh_influence(runtime, older_than=dt.timedelta(seconds=-1), progress=seen.append)
    assert result == {"stale": 1, "refreshed": 1} and seen == [1]
    assert runtime.store.count("influence_history") == before + 1


def test_cli_score_refresh_and_optout(base_env, tmp_path):
    import json

    from click.testing import CliRunner

    from plugin.cli import cli

    runner = CliRunner()
    out = runner.invoke(cli, ["score", "bluesky:@farah.bsky.social", "x:https://x.com/FarahTech"],
                        env=base_env)
    assert out.exit_code == 0, out.output
    assert "influence" in out.output and "bluesky" in out.output and "x:" in out.output
    bad = runner.invoke(cli, ["score", "nonsense"], env=base_env)
    assert bad.exit_code == 2 and "NETWORK:HANDLE" in bad.output
    profiles = tmp_path / "profiles.json"
    profiles.write_text(json.dumps([
        {"id": "big", "network": "youtube", "handle": "@big", "followers": 10_000_000},
        {"id": "small", "network": "x", "handle": "small", "followers": 150, "following": 300}]))
    out = runner.invoke(cli, ["score", "--profiles", str(profiles)], env=base_env)
    assert out.exit_code == 0, out.output
    assert "big: influence" in out.output and "small: influence" in out.output
    out = runner.invoke(cli, ["optout", "C-9"], env=base_env)
    assert out.exit_code == 0 and "opted out" in out.output
    out = runner.invoke(cli, ["refresh"], env=base_env)
    assert out.exit_code == 0 and "Refreshed 0 customer(s)" in out.output


def test_a_live_burst_of_1000_bluesky_handles_costs_40_requests_and_a_second_none(runtime_with):
    """Through the real live clients and a local Bluesky AppView, as the worker asks."""
    from social_servers import endpoints, start_all

    servers = start_all()
    try:
        table = "{ " + ", ".join(f'{k} = "{v}"' for k, v in endpoints(servers).items()) + " }"
        rt = runtime_with({"CLOUT_INFLUENCE__SOURCE": "live", "CLOUT_INFLUENCE__ENDPOINTS": table})
        handles = servers["bluesky"].add_many(1000)
        people = [Customer(id=f"B-{i}", handles={"bluesky": h}) for i, h in enumerate(handles)]
        first = _lookup(rt, people, rt.influence)
        assert len(first) == 1000
        assert servers["bluesky"].count() == 40
        more = [Customer(id=f"B2-{i}", handles={"bluesky": h}) for i, h in enumerate(handles)]
        _lookup(rt, more, rt.influence)  # new customers, same handles: the profile cache answers
        assert servers["bluesky"].count() == 40
    finally:
        for server in servers.values():
            server.close()
