"""The six live clients against local servers over real HTTP (tests/social_servers.py).

Per network: batching and request counts, 429 + Retry-After waited or given up
on, 5xx retried, timeouts, malformed JSON, unknown users, invalid handles at no
cost; the 1,000-handle Bluesky burst; and the snapshot source, which is the
same clients over another transport, giving the numbers the old one gave.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
import requests

from connectors import social
from connectors.social import PARSERS
from connectors.social.base import NETWORKS, LookupFailure, NetworkMetrics
from connectors.social.http import guarded_session
from connectors.social.live import LiveSource, build_clients
from connectors.social.snapshot import SnapshotSource
from social_servers import QUOTA_EXCEEDED, FakeAPI, endpoints, secrets, start_all

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOT = ROOT / "config" / "demo" / "social_snapshot.json"
DOC = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
NOT_FOUND = LookupFailure("not found", retryable=False)


@pytest.fixture
def servers():
    running = start_all()
    yield running
    for server in running.values():
        server.close()


def live(servers: dict[str, FakeAPI], **options) -> LiveSource:
    opts = dict(session=requests.Session(), endpoints=endpoints(servers), secrets=secrets(),
                timeouts=(1.0, 1.0), max_retries=2, max_wait_seconds=2.0, backoff_seconds=0.01,
                mastodon_allowlist=("localhost",), sample_budget=0)
    opts.update(options)
    source = social.build("live", **opts)
    assert isinstance(source, LiveSource)
    return source


NAMES = ["alice", "bob_b", "carol", "dave", "erin"]


def handle(network: str, name: str) -> str:
    return {"bluesky": f"{name.replace('_', '-')}.bsky.social", "mastodon": f"{name}@localhost",
            "youtube": f"@{name}"}.get(network, name.replace("_", "-") if network == "github"
                                       else name)


def seed(servers: dict[str, FakeAPI], network: str, count: int = 3) -> list[str]:
    server = servers[network]
    handles = []
    for i, name in enumerate(NAMES[:count]):
        h = handle(network, name)
        server.add(h.split("@")[0] if network == "mastodon" else h, 10 * (i + 1))
        handles.append(h)
    return handles


def total_calls(servers: dict[str, FakeAPI]) -> int:
    return sum(len(s.calls) for s in servers.values())


# ---------------------------------------------------------------- batching and counts


def test_batching_request_counts(servers):
    source = live(servers)
    x_names = [f"user_{i}" for i in range(250)]
    for name in x_names:
        servers["x"].add(name, 5)
    found = source.fetch_metrics("x", x_names)
    assert all(isinstance(m, NetworkMetrics) and m.followers == 5 for m in found.values())
    assert len(found) == 250 and servers["x"].count("/2/users/by") == 3  # 100 + 100 + 50

    sky = servers["bluesky"].add_many(60)
    assert all(isinstance(m, NetworkMetrics) for m in source.fetch_metrics("bluesky", sky).values())
    assert servers["bluesky"].count() == 3  # 25 + 25 + 10

    for network in ("mastodon", "github", "reddit", "youtube"):  # one account per call
        handles = seed(servers, network, 5)
        found = source.fetch_metrics(network, handles)
        assert [m.followers if network != "reddit" else m.likes for m in found.values()] == [
            10, 20, 30, 40, 50], network
        assert len(servers[network].calls) == 5, network
    assert source.requests_sent == {"x": 3, "bluesky": 3, "mastodon": 5, "github": 5,
                                    "reddit": 5, "youtube": 5}


def test_bluesky_burst_of_1000_distinct_handles_costs_40_requests(servers):
    source = live(servers)
    handles = servers["bluesky"].add_many(1000)
    started = time.monotonic()
    found = source.fetch_metrics("bluesky", handles)
    assert len(found) == 1000 and all(isinstance(m, NetworkMetrics) for m in found.values())
    assert found["user999.bsky.social"].followers == 999
    assert servers["bluesky"].count() == 40 == source.requests_sent["bluesky"]
    assert all(len(c.query["actors"]) == 25 for c in servers["bluesky"].calls)
    print(f"1,000 Bluesky handles: {servers['bluesky'].count()} requests, "
          f"{time.monotonic() - started:.2f} s")


def test_spellings_of_one_account_cost_one_lookup_and_are_keyed_as_given(servers):
    source = live(servers)
    servers["x"].add("Alice", 7)
    asked = ["Alice", "@alice", "https://x.com/ALICE", "alice", "alice"]
    found = source.fetch_metrics("x", asked)
    assert list(found) == ["Alice", "@alice", "https://x.com/ALICE", "alice"]
    assert {m.followers for m in found.values()} == {7}
    assert servers["x"].calls[0].query["usernames"] == ["alice"]


def test_engagement_samples_only_within_the_budget(servers):
    tweets = [{"id": str(i), "text": "hi", "created_at": "2099-01-01T00:00:00.000Z",
               "public_metrics": {"retweet_count": 1, "reply_count": 1, "like_count": 5,
                                  "quote_count": 0}} for i in range(3)]
    for name in NAMES:
        servers["x"].add(name, 100, tweets=tweets)
    source = live(servers, sample_budget=2)
    found = source.fetch_metrics("x", NAMES)
    assert servers["x"].count("/2/users/by") == 1 and servers["x"].count("/tweets") == 2
    assert [m.sample_posts for m in found.values()] == [3, 3, 0, 0, 0]
    assert found["alice"].likes == 15 and found["carol"].likes is None  # audience alone

    statuses = [{"id": "1", "created_at": "2099-01-01T00:00:00.000Z", "reblog": None,
                 "reblogs_count": 2, "replies_count": 1, "favourites_count": 4}]
    servers["mastodon"].add("alice", 50, statuses=statuses)
    servers["bluesky"].add("alice.bsky.social", 50)
    assert source.fetch_metrics("mastodon", ["alice@localhost"])["alice@localhost"].likes == 4
    assert source.fetch_metrics("bluesky", ["alice.bsky.social"])["alice.bsky.social"]
    assert servers["mastodon"].count("/statuses") == 1
    assert servers["bluesky"].count("getAuthorFeed") == 1


# ---------------------------------------------------------------- rate limits


@pytest.mark.parametrize("network", NETWORKS)
def test_429_with_short_retry_after_is_waited_then_succeeds(servers, network):
    source = live(servers)
    handles = seed(servers, network, 1)
    servers[network].fault("429", retry_after=1)
    started = time.monotonic()
    found = source.fetch_metrics(network, handles)
    assert isinstance(found[handles[0]], NetworkMetrics)
    assert time.monotonic() - started >= 0.9
    assert len(servers[network].calls) == 2


@pytest.mark.parametrize("network", NETWORKS)
def test_429_with_long_retry_after_skips_the_network(servers, network):
    source = live(servers)
    handles = seed(servers, network, 3)
    servers[network].fault("429", retry_after=3600, times=None)
    found = source.fetch_metrics(network, handles)
    assert set(found) == set(handles)
    assert all(f == LookupFailure("rate limited for 3600 s", retryable=True)
               for f in found.values())
    assert len(servers[network].calls) == 1
    again = source.fetch_metrics(network, handles)  # still blocked: not asked again
    assert all(isinstance(f, LookupFailure) and f.retryable for f in again.values())
    assert len(servers[network].calls) == 1
    other = "github" if network != "github" else "reddit"
    assert all(isinstance(m, NetworkMetrics)
               for m in source.fetch_metrics(other, seed(servers, other, 1)).values())


def test_x_rate_limit_reset_header_without_retry_after(servers):
    source = live(servers)
    servers["x"].add("alice")
    servers["x"].fault("429", headers={"x-rate-limit-remaining": "0",
                                       "x-rate-limit-reset": str(int(time.time()) + 1)})
    assert isinstance(source.fetch_metrics("x", ["alice"])["alice"], NetworkMetrics)
    assert len(servers["x"].calls) == 2
    servers["x"].fault("429", headers={"x-rate-limit-reset": str(int(time.time()) + 900)})
    failure = source.fetch_metrics("x", ["alice"])["alice"]
    assert failure.retryable and failure.reason.startswith("rate limited for")
    assert 890 <= int(failure.reason.split()[3]) <= 901


def test_github_403_with_no_requests_left_is_a_rate_limit(servers):
    source = live(servers)
    handles = seed(servers, "github", 3)
    servers["github"].fault("403", times=None, body={"message": "API rate limit exceeded"},
                            headers={"x-ratelimit-remaining": "0",
                                     "x-ratelimit-reset": str(int(time.time()) + 3000)})
    found = source.fetch_metrics("github", handles)
    assert all(f.reason.startswith("rate limited for") and f.retryable for f in found.values())
    assert len(servers["github"].calls) == 1


def test_budget_reported_exhausted_is_not_hammered(servers):
    """Reddit says 0 requests left (seconds-to-reset header): the rest wait or are skipped."""
    source = live(servers)
    handles = seed(servers, "reddit", 3)
    servers["reddit"].fault("ok", headers={"x-ratelimit-remaining": "0.0",
                                           "x-ratelimit-reset": "600"})
    found = source.fetch_metrics("reddit", handles)
    assert isinstance(found[handles[0]], NetworkMetrics)
    assert found[handles[1]] == found[handles[2]] == LookupFailure("rate limited for 600 s")
    assert len(servers["reddit"].calls) == 1


def test_budget_reset_soon_is_waited_for(servers):
    source = live(servers)
    handles = seed(servers, "mastodon", 2)
    reset = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() + 2))
    servers["mastodon"].fault("ok", headers={"X-RateLimit-Remaining": "0",
                                             "X-RateLimit-Reset": reset})
    started = time.monotonic()
    found = source.fetch_metrics("mastodon", handles)
    assert all(isinstance(m, NetworkMetrics) for m in found.values())
    assert time.monotonic() - started >= 0.5 and len(servers["mastodon"].calls) == 2


def test_youtube_quota_exceeded_skips_youtube(servers):
    source = live(servers)
    handles = seed(servers, "youtube", 3)
    servers["youtube"].fault("403", times=None, body=QUOTA_EXCEEDED)
    found = source.fetch_metrics("youtube", handles)
    assert all(f.reason.startswith("rate limited for") and f.retryable for f in found.values())
    assert len(servers["youtube"].calls) == 1


# ---------------------------------------------------------------- server errors, timeouts


@pytest.mark.parametrize("network", NETWORKS)
def test_5xx_is_retried_then_reported(servers, network):
    source = live(servers)
    handles = seed(servers, network, 3)
    servers[network].fault("503", times=1)
    assert all(isinstance(m, NetworkMetrics)
               for m in source.fetch_metrics(network, handles[:1]).values())
    assert len(servers[network].calls) == 2  # the 503, then the retry

    servers[network].calls.clear()
    servers[network].fault("503", times=None)
    found = source.fetch_metrics(network, handles)
    assert set(found) == set(handles)
    failure = found[handles[0]]
    assert failure == LookupFailure(f"{network} error (HTTP 503)", retryable=True)
    assert len(servers[network].calls) == 3  # 1 + max_retries, then the network is skipped


@pytest.mark.parametrize("network", NETWORKS)
def test_timeout_fails_that_network_only(servers, network):
    source = live(servers, timeouts=(1.0, 0.3), max_retries=1)
    handles = seed(servers, network, 2)
    servers[network].fault("hang", seconds=5, times=None)
    other = "reddit" if network != "reddit" else "github"
    other_handles = seed(servers, other, 2)
    started = time.monotonic()
    found = source.fetch_metrics(network, handles)
    assert time.monotonic() - started < 3
    assert all(f == LookupFailure(f"{network} timed out", retryable=True) for f in found.values())
    assert len(servers[network].calls) == 2  # one try, one retry; the second handle is skipped
    assert all(isinstance(m, NetworkMetrics)
               for m in source.fetch_metrics(other, other_handles).values())


def test_unreachable_network_fails_alone(servers):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
    source = live(servers, endpoints={**endpoints(servers), "github": dead, "youtube": dead})
    found = source.fetch_metrics("github", ["alice", "bob"])
    assert set(found.values()) == {LookupFailure("github unreachable", retryable=True)}
    yt = source.fetch_metrics("youtube", ["@alice"])["@alice"]
    assert yt == LookupFailure("youtube unreachable", retryable=True)
    assert secrets()["youtube_api_key"] not in repr(yt) and "http" not in yt.reason
    sky = seed(servers, "bluesky", 2)
    assert all(isinstance(m, NetworkMetrics) for m in source.fetch_metrics("bluesky", sky).values())
    assert source.requests_sent["github"] == 3  # 1 + 2 retries, then GitHub is skipped


@pytest.mark.parametrize("network", NETWORKS)
def test_malformed_json_is_a_failure(servers, network):
    source = live(servers)
    handles = seed(servers, network, 2)
    servers[network].fault("malformed")
    found = source.fetch_metrics(network, handles)
    assert found[handles[0]] == LookupFailure(f"malformed JSON from {network}", retryable=True)
    if network in ("x", "bluesky"):  # one batch: both handles share its fate
        assert found[handles[1]] == found[handles[0]]
    else:
        assert isinstance(found[handles[1]], NetworkMetrics)


def test_wrong_credentials_are_reported_without_the_secret(servers):
    source = live(servers, secrets={"x_bearer_token": "wrong", "youtube_api_key": "wrong"})
    x = source.fetch_metrics("x", ["alice"])["alice"]
    assert x == LookupFailure("x refused the request (HTTP 401); check credentials")
    yt = source.fetch_metrics("youtube", ["@alice"])["@alice"]
    assert yt.reason == "youtube rejected the request (HTTP 400)" and "wrong" not in yt.reason
    assert servers["youtube"].calls[0].headers["x-goog-api-key"] == "wrong"
    assert "key" not in servers["youtube"].calls[0].query  # never in the URL


# ---------------------------------------------------------------- unknown users, invalid handles


def test_unknown_and_suspended_users(servers):
    source = live(servers)
    servers["x"].add("alice", 10)
    servers["x"].suspended.add("badguy")
    found = source.fetch_metrics("x", ["alice", "nobody", "badguy"])
    assert found["alice"].followers == 10
    assert found["nobody"] == NOT_FOUND
    assert found["badguy"] == LookupFailure("suspended", retryable=False)
    assert len(servers["x"].calls) == 1  # X answers unknown names inside the 200

    for network in ("bluesky", "mastodon", "github", "reddit", "youtube"):
        known = seed(servers, network, 1)
        ghost = handle(network, "ghost")
        found = source.fetch_metrics(network, [*known, ghost])
        assert isinstance(found[known[0]], NetworkMetrics), network
        assert found[ghost] == NOT_FOUND, network

    servers["reddit"].add("banned_one", suspended=True)  # Reddit: 200, is_suspended
    banned = source.fetch_metrics("reddit", ["banned_one"])["banned_one"]
    assert isinstance(banned, NetworkMetrics) and banned.likes is None


INVALID = {
    "x": ["", "   ", "this_name_is_far_too_long", "bad-dash", "https://x.com/i/flow"],
    "bluesky": ["alice", "alice..bsky.social", "-a.bsky.social", "alice.bsky.123",
                "alice.local", "https://bsky.app/search"],
    "mastodon": ["alice", "alice@", "@alice@bad_host", "a-b@host.example", "alice@127.0.0.1",
                 "alice@2130706433"],
    "github": ["-alice", "alice-", "al--ice", "a" * 40, "https://gitlab.com/alice"],
    "reddit": ["ab", "a" * 21, "u/a b", "reddit.com/r/python"],
    "youtube": ["@ab", "@" + "a" * 31, "@bad!", "https://youtube.com/channel/UC123"],
}


@pytest.mark.parametrize("network", NETWORKS)
def test_invalid_handles_cost_nothing(servers, network):
    source = live(servers)
    found = source.fetch_metrics(network, INVALID[network])
    assert list(found) == INVALID[network]
    for failure in found.values():
        assert isinstance(failure, LookupFailure) and not failure.retryable
        assert failure.reason.startswith("invalid handle: ")
    assert total_calls(servers) == 0 and source.requests_sent[network] == 0


def test_unknown_network_is_a_caller_error(servers):
    with pytest.raises(ValueError, match="unknown social network 'myspace'"):
        live(servers).fetch_metrics("myspace", ["tom"])


# ---------------------------------------------------------------- composite and snapshot


def test_networks_without_credentials_come_from_the_snapshot(servers):
    source = live(servers, secrets={}, snapshot_path=SNAPSHOT)
    assert source.live_networks == ("bluesky", "mastodon", "github", "reddit")
    assert source.networks() == NETWORKS
    found = source.fetch_metrics("x", ["adaq", "nobody_here"])
    assert found["adaq"].followers == 48210 and found["nobody_here"] == NOT_FOUND
    assert isinstance(source.fetch_metrics("youtube", ["@farahtech"])["@farahtech"],
                      NetworkMetrics)
    assert len(servers["x"].calls) == len(servers["youtube"].calls) == 0
    no_snapshot = live(servers, secrets={})
    assert "x" not in no_snapshot.networks()
    assert no_snapshot.fetch_metrics("x", ["adaq"])["adaq"] == LookupFailure(
        "no credentials for x and no snapshot", retryable=False)


def test_build_passes_every_option_to_every_factory():
    session = requests.Session()
    options = dict(snapshot_path=SNAPSHOT, session=session, endpoints={}, secrets={},
                   timeouts=(3.05, 10.0), max_retries=2, max_wait_seconds=30,
                   mastodon_allowlist=(), sample_budget=0)
    assert isinstance(social.build("snapshot", **options), SnapshotSource)
    assert isinstance(social.build("live", **options), LiveSource)
    assert {"live", "snapshot"} <= set(social.available())


def _old_snapshot_metrics(network: str, key: str):
    """What the snapshot source returned before it went through the clients: parse(bundle)."""
    return PARSERS[network](DOC["networks"][network][key], now=SnapshotSource(SNAPSHOT).captured_at)


def test_snapshot_source_returns_what_it_did_before():
    source = SnapshotSource(SNAPSHOT)
    for network, bundles in DOC["networks"].items():
        found = source.fetch_metrics(network, list(bundles))
        for key in bundles:
            if key == "@nosuchchannel":  # an empty channel list is "not found" now
                assert found[key] == NOT_FOUND
            else:
                assert found[key] == _old_snapshot_metrics(network, key), (network, key)
    # the transport answered in the APIs' batch shapes: one users/by, one getProfiles
    x_before = source.requests_sent["x"]
    source.fetch_metrics("x", list(DOC["networks"]["x"]))
    assert source.requests_sent["x"] - x_before == 1 + len(DOC["networks"]["x"])  # + samples


def test_demo_customers_resolve_through_the_snapshot():
    customers = json.loads((ROOT / "config" / "demo" / "customers.json").read_text())
    source = social.build("snapshot", snapshot_path=SNAPSHOT, sample_budget=0)
    for customer in customers:
        for network, h in customer["handles"].items():
            metrics = source.fetch_metrics(network, [h])[h]
            assert isinstance(metrics, NetworkMetrics), (network, h)
            key = next(k for k in DOC["networks"][network] if k.lower() == h.lower())
            assert metrics == _old_snapshot_metrics(network, key)


def test_live_clients_over_http_match_the_snapshot_transport(servers):
    """Same clients, two transports: real HTTP to fakes seeded with the snapshot's bundles
    gives the same metrics as the snapshot source."""
    captured = SnapshotSource(SNAPSHOT).captured_at
    for network, bundles in DOC["networks"].items():
        if network == "mastodon":
            servers[network].seed({k.split("@")[0]: v for k, v in bundles.items()})
        else:
            servers[network].seed(bundles)
    session = requests.Session()
    urls = {**endpoints(servers), "mastodon": servers["mastodon"].url}
    clients = build_clients(
        session, endpoints=urls, secrets=secrets(), sample_budget=None, now=lambda: captured,
        mastodon_session=guarded_session(session, allowlist=["127.0.0.1"]),
        backoff_seconds=0.01)
    snapshot = SnapshotSource(SNAPSHOT)
    for network, bundles in DOC["networks"].items():
        over_http = clients[network].fetch(list(bundles))
        assert over_http == snapshot.fetch_metrics(network, list(bundles)), network
    assert servers["x"].count("/2/users/by") == 1
    assert servers["bluesky"].count("getProfiles") == 1


def test_samples_go_to_the_largest_audiences_first_within_the_budget(servers):
    """A large audience without engagement evidence is damped, so the budget's few
    samples go where they matter: the biggest accounts above the threshold."""
    api = servers["bluesky"]
    sizes = {"tiny.bsky.social": 10, "mid.bsky.social": 5_000, "edge.bsky.social": 999,
             "big.bsky.social": 50_000, "large.bsky.social": 2_000}
    for name, followers in sizes.items():
        api.add(name, followers=followers)
    source = live(servers, sample_budget=2, sample_min_followers=1_000)
    found = source.fetch_metrics("bluesky", list(sizes))
    assert all(isinstance(m, NetworkMetrics) for m in found.values())
    feeds = [c.query["actor"][0] for c in api.calls if c.path.endswith("getAuthorFeed")]
    ids = {h: {h, api.bundles[h]["profile"]["did"]} for h in sizes}
    sampled = {h for h in sizes if ids[h] & set(feeds)}
    assert sampled == {"big.bsky.social", "mid.bsky.social"}
    assert api.count() == 1 + 2  # one getProfiles call, two samples
