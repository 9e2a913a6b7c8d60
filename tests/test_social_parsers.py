"""Social parsers, the source registry and the snapshot source, on real shapes.

The bundles come from config/demo/social_snapshot.json (the documented API
bodies) plus hand-made broken variants: APIs send strings for numbers, nulls
and missing keys, and none of that may crash a parser.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from connectors import social
from connectors.social import PARSERS, bluesky, github, mastodon, reddit, x, youtube
from connectors.social.base import InfluenceSource, LookupFailure, NetworkMetrics
from connectors.social.snapshot import SnapshotSource, normalise_handle
from webhooks.event import SOCIAL_NETWORKS

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOT = ROOT / "config" / "demo" / "social_snapshot.json"
CUSTOMERS = ROOT / "config" / "demo" / "customers.json"
DOC = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
NOW = datetime.fromisoformat(DOC["captured_at"])


def bundle(network: str, handle: str) -> dict:
    return copy.deepcopy(DOC["networks"][network][handle])


def iso(days_ago: float) -> str:
    return (NOW - timedelta(days=days_ago)).isoformat().replace("+00:00", "Z")


# ---------------------------------------------------------------- registry


def test_parsers_cover_every_social_network():
    assert set(PARSERS) == set(SOCIAL_NETWORKS)
    for network, parse in PARSERS.items():
        assert parse({}).network == network


@pytest.mark.parametrize("network", SOCIAL_NETWORKS)
@pytest.mark.parametrize("garbage", [{}, None, [], "text", 3, {"user": [], "profile": "x"}])
def test_parsers_never_crash_on_garbage(network, garbage):
    metrics = PARSERS[network](garbage, now=NOW)
    assert isinstance(metrics, NetworkMetrics)
    assert metrics.network == network
    assert metrics.followers is None and metrics.sample_posts == 0


def test_registry_lists_and_builds_snapshot_source():
    assert "snapshot" in social.available()
    source = social.build("snapshot", snapshot_path=SNAPSHOT, store=object())
    assert isinstance(source, SnapshotSource) and isinstance(source, InfluenceSource)
    assert source.name == "snapshot"
    assert social.build("snapshot", path=str(SNAPSHOT)).fetch_metrics("x", ["adaq"])
    with pytest.raises(ValueError, match="needs snapshot_path"):
        social.build("snapshot")
    with pytest.raises(ValueError, match="unknown influence source 'nope'"):
        social.build("nope")


def test_register_decorator_adds_a_factory():
    @social.register("test-only-source")
    class Dummy:
        name = "test-only-source"

        def networks(self):
            return ("x",)

        def fetch_metrics(self, network, handles):
            return {}

    try:
        assert "test-only-source" in social.available()
        assert isinstance(social.build("test-only-source"), Dummy)
    finally:
        social.SOURCES.pop("test-only-source")


# ---------------------------------------------------------------- X


def test_x_reads_public_metrics_and_sums_own_tweets():
    raw = bundle("x", "adaq")
    m = x.parse(raw, now=NOW)
    assert (m.network, m.handle) == ("x", "adaq")
    assert (m.followers, m.following, m.posts_total) == (48210, 310, 9120)
    own = [t for t in raw["tweets"]["data"] if not t["text"].startswith("RT @")]
    assert m.sample_posts == len(own) == len(raw["tweets"]["data"]) - 1
    pm = [t["public_metrics"] for t in own]
    assert m.likes == sum(p["like_count"] for p in pm)
    assert m.replies == sum(p["reply_count"] for p in pm)
    assert m.reposts == sum(p["retweet_count"] + p["quote_count"] for p in pm)
    assert m.likes < 91000  # the retweeted brand post's likes are not Ada's


def test_x_retweet_detected_by_referenced_tweets_too():
    raw = {
        "user": {"username": "a", "public_metrics": {"followers_count": 10}},
        "tweets": {
            "data": [
                {
                    "id": "1",
                    "text": "mine",
                    "created_at": iso(1),
                    "public_metrics": {
                        "like_count": 3,
                        "retweet_count": 1,
                        "reply_count": 0,
                        "quote_count": 0,
                    },
                },
                {
                    "id": "2",
                    "text": "someone's words",
                    "created_at": iso(1),
                    "referenced_tweets": [{"type": "retweeted", "id": "9"}],
                    "public_metrics": {
                        "like_count": 5000,
                        "retweet_count": 900,
                        "reply_count": 40,
                        "quote_count": 3,
                    },
                },
            ],
            "meta": {"result_count": 2},
        },
    }
    m = x.parse(raw, now=NOW)
    assert (m.sample_posts, m.likes, m.reposts, m.recent_posts_90d) == (1, 3, 1, 1)


def test_x_activity_window_and_extrapolation():
    quiet = x.parse(bundle("x", "halvorsengrp"), now=NOW)  # 6 tweets, 2 older than 90 days
    assert quiet.sample_posts == 6 and quiet.recent_posts_90d == 4
    # ten tweets within a day and another page offered: far more than ten a quarter
    spam = x.parse(bundle("x", "jonahpike_promo"), now=NOW)
    assert spam.recent_posts_90d > 500
    # the same page without next_token is the whole story: count, don't guess
    raw = bundle("x", "jonahpike_promo")
    raw["tweets"]["meta"].pop("next_token")
    assert x.parse(raw, now=NOW).recent_posts_90d == 10
    # measured against `now`: a year later nothing is recent
    assert x.parse(bundle("x", "adaq"), now=NOW + timedelta(days=365)).recent_posts_90d == 0


def test_x_tolerates_strings_nulls_and_missing_parts():
    raw = {
        "user": {
            "username": "odd",
            "public_metrics": {
                "followers_count": "1,234",
                "following_count": None,
                "tweet_count": True,
            },
        },
        "tweets": {
            "data": [
                {"text": "a", "created_at": "not a date", "public_metrics": {"like_count": "7"}},
                {"text": "b", "public_metrics": None},
                "not a tweet",
            ]
        },
    }
    m = x.parse(raw, now=NOW)
    assert (m.followers, m.following, m.posts_total) == (1234, None, None)
    assert (m.sample_posts, m.likes, m.replies, m.reposts) == (2, 7, None, None)
    assert m.recent_posts_90d == 0


def test_x_without_timeline_says_nothing_about_engagement():
    m = x.parse({"user": bundle("x", "adaq")["user"]}, now=NOW)
    assert m.followers == 48210
    assert (m.sample_posts, m.likes, m.recent_posts_90d) == (0, None, None)
    empty = x.parse(bundle("x", "quiet_lurker"), now=NOW)  # {"meta": {"result_count": 0}}
    assert (empty.sample_posts, empty.likes, empty.recent_posts_90d) == (0, None, 0)


# ---------------------------------------------------------------- Bluesky


def test_bluesky_excludes_reposts_keeps_pins():
    raw = bundle("bluesky", "farah.bsky.social")
    m = bluesky.parse(raw, now=NOW)
    assert (m.handle, m.followers, m.following, m.posts_total) == (
        "farah.bsky.social",
        64300,
        610,
        5900,
    )
    feed = raw["feed"]["feed"]
    own = [
        i["post"]
        for i in feed
        if i.get("reason", {}).get("$type") != "app.bsky.feed.defs#reasonRepost"
    ]
    assert len(own) < len(feed)
    assert any(i.get("reason", {}).get("$type") == "app.bsky.feed.defs#reasonPin" for i in feed)
    assert m.sample_posts == len(own)
    assert m.likes == sum(p["likeCount"] for p in own)
    assert m.reposts == sum(p["repostCount"] + p["quoteCount"] for p in own)
    assert m.replies == sum(p["replyCount"] for p in own)
    assert m.recent_posts_90d == len(own) - 1  # the pinned post is 140 days old


def test_bluesky_reposter_has_one_own_post():
    m = bluesky.parse(bundle("bluesky", "reposter.bsky.social"), now=NOW)
    assert (m.sample_posts, m.likes, m.reposts) == (1, 0, 0)


def test_bluesky_drops_other_authors_and_falls_back_to_indexed_at():
    raw = bundle("bluesky", "ines.bsky.social")
    raw["feed"].pop("cursor")  # the whole feed: count, don't extrapolate
    posts = raw["feed"]["feed"]
    del posts[0]["post"]["record"]["createdAt"]  # indexedAt still dates it
    posts[1]["post"]["author"] = {"did": "did:plc:someoneelse", "handle": "b.bsky.social"}
    posts[2]["post"]["likeCount"] = None
    posts[3]["post"].pop("quoteCount")
    m = bluesky.parse(raw, now=NOW)
    assert m.sample_posts == len(posts) - 1
    assert m.recent_posts_90d == len(posts) - 1
    assert m.likes == sum(i["post"]["likeCount"] or 0 for i in posts[:1] + posts[2:])


# ---------------------------------------------------------------- Mastodon


def test_mastodon_excludes_boosts_and_reads_favourites():
    raw = bundle("mastodon", "chenwei@fosstodon.example")
    m = mastodon.parse(raw, now=NOW)
    own = [s for s in raw["statuses"] if s["reblog"] is None]
    assert len(own) < len(raw["statuses"])
    assert (m.handle, m.followers, m.following, m.posts_total) == ("chenwei", 2140, 410, 5420)
    assert m.sample_posts == len(own)
    assert m.likes == sum(s["favourites_count"] for s in own)
    assert m.reposts == sum(s["reblogs_count"] for s in own)
    assert m.replies == sum(s["replies_count"] for s in own)
    # a full page (20) covering only a month: activity is extrapolated
    assert m.recent_posts_90d > len(own)


def test_mastodon_booster_and_missing_statuses():
    m = mastodon.parse(bundle("mastodon", "booster@mastodon.example"), now=NOW)
    assert (m.sample_posts, m.recent_posts_90d) == (1, 1)
    account_only = mastodon.parse(
        {"account": {"acct": "a@b.example", "followers_count": "12"}}, now=NOW
    )
    assert (account_only.handle, account_only.followers) == ("a@b.example", 12)
    assert (account_only.sample_posts, account_only.likes, account_only.recent_posts_90d) == (
        0,
        None,
        None,
    )


# ---------------------------------------------------------------- GitHub


def test_github_user_and_org():
    m = github.parse(bundle("github", "chenwei-dev"))
    assert (m.handle, m.followers, m.following, m.posts_total) == ("chenwei-dev", 1340, 85, 64)
    assert (m.sample_posts, m.likes, m.reposts, m.replies, m.recent_posts_90d) == (
        0,
        None,
        None,
        None,
        None,
    )
    org = github.parse(bundle("github", "kestrel-labs"))
    assert (org.handle, org.followers, org.following) == ("kestrel-labs", 3120, 0)
    assert github.parse({"user": {"message": "Not Found"}}).followers is None


# ---------------------------------------------------------------- Reddit


def test_reddit_karma_becomes_lifetime_likes():
    raw = bundle("reddit", "gus_lima")
    m = reddit.parse(raw)
    assert m.handle == "gus_lima"
    assert m.likes == raw["about"]["data"]["total_karma"]
    assert (m.followers, m.sample_posts, m.recent_posts_90d) == (None, 0, None)


def test_reddit_suspended_and_odd_bodies_have_no_influence():
    suspended = reddit.parse(bundle("reddit", "banned_spammer_42"))
    assert suspended.handle == "banned_spammer_42"
    assert (suspended.followers, suspended.likes, suspended.posts_total) == (None, None, None)
    assert reddit.parse({"about": {"message": "Not Found", "error": 404}}).likes is None
    assert reddit.parse({"about": {"kind": "t5", "data": {"total_karma": 50}}}).likes is None


def test_reddit_without_total_karma_sums_parts_and_floors_at_zero():
    data = {"name": "n", "link_karma": "120", "comment_karma": 30}
    assert reddit.parse({"about": {"kind": "t2", "data": data}}).likes == 150
    data = {"name": "n", "link_karma": 1, "comment_karma": -40}
    assert reddit.parse({"about": {"kind": "t2", "data": data}}).likes == 0


# ---------------------------------------------------------------- YouTube


def test_youtube_string_counts():
    m = youtube.parse(bundle("youtube", "@farahtech"))
    assert (m.handle, m.followers, m.posts_total) == ("@farahtech", 156000, 412)
    assert isinstance(m.followers, float)
    assert (m.sample_posts, m.likes) == (0, None)


def test_youtube_hidden_subscribers_are_unknown_not_zero():
    assert youtube.parse(bundle("youtube", "@quietchannel")).followers is None
    raw = bundle("youtube", "@farahtech")
    raw["channels"]["items"][0]["statistics"]["hiddenSubscriberCount"] = True
    assert youtube.parse(raw).followers is None


def test_youtube_without_items():
    absent = youtube.parse(bundle("youtube", "@nosuchchannel"))
    assert (absent.handle, absent.followers, absent.posts_total) == ("", None, None)
    empty = youtube.parse({"channels": {"kind": "youtube#channelListResponse", "items": []}})
    assert empty.followers is None
    no_snippet = youtube.parse(
        {"channels": {"items": [{"id": "UCabc", "statistics": {"subscriberCount": "12"}}]}}
    )
    assert (no_snippet.handle, no_snippet.followers) == ("UCabc", 12)


# ---------------------------------------------------------------- helpers


def test_recent_activity_rules():
    times = [NOW - timedelta(days=d) for d in (1, 2, 3, 4, 5)]
    assert social.recent_activity(times, NOW, truncated=False) == 5
    assert social.recent_activity(times, NOW, truncated=True) == 90  # 5 posts / 5 days
    older = times + [NOW - timedelta(days=120)]
    assert social.recent_activity(older, NOW, truncated=True) == 5  # window fully covered
    assert social.recent_activity([None], NOW, truncated=True) == 0


def test_as_count_rules():
    assert [social.as_count(v) for v in (3, "4", " 5.5 ", "1,000", "1_000")] == [
        3,
        4,
        5.5,
        1000,
        1000,
    ]
    assert [social.as_count(v) for v in (None, True, -1, "", "abc", float("nan"), [], {})] == [
        None
    ] * 8


# ---------------------------------------------------------------- snapshot source


def test_snapshot_resolves_every_demo_handle():
    source = SnapshotSource(SNAPSHOT)
    customers = json.loads(CUSTOMERS.read_text(encoding="utf-8"))
    wanted: dict[str, list[str]] = {}
    for customer in customers:
        for network, handle in customer["handles"].items():
            wanted.setdefault(network, []).append(handle)
    assert wanted, "customers.json names no handles"
    for network, handles in wanted.items():
        found = source.fetch_metrics(network, handles)
        assert set(found) == set(handles), network
        assert all(m.network == network for m in found.values())


def test_snapshot_lookup_is_forgiving_and_keyed_as_given():
    source = SnapshotSource(SNAPSHOT)
    found = source.fetch_metrics("x", ["@FarahTech", "ADAQ", "nobody_here"])
    assert set(found) == {"@FarahTech", "ADAQ", "nobody_here"}  # every handle gets an answer
    assert found["nobody_here"] == LookupFailure("not found", retryable=False)
    assert found["@FarahTech"].handle == "farahtech"
    yt = source.fetch_metrics("youtube", ["farahtech", "@FARAHTECH"])
    assert yt["farahtech"] == yt["@FARAHTECH"]
    assert source.fetch_metrics("reddit", ["u/Gus_Lima"])["u/Gus_Lima"].likes > 0
    assert source.fetch_metrics("mastodon", ["@chenwei@fosstodon.example"])
    assert source.fetch_metrics("x", []) == {}
    assert normalise_handle("x", " @Ada ") == "ada"


def test_snapshot_networks_and_unknown_network():
    source = SnapshotSource(SNAPSHOT)
    assert source.networks() == SOCIAL_NETWORKS
    with pytest.raises(ValueError, match="unknown social network 'myspace'"):
        source.fetch_metrics("myspace", ["tom"])


def test_snapshot_measures_activity_at_capture_time_unless_told(tmp_path):
    assert SnapshotSource(SNAPSHOT).captured_at == NOW
    at_capture = SnapshotSource(SNAPSHOT).fetch_metrics("x", ["elmstdental"])["elmstdental"]
    assert at_capture.recent_posts_90d == 8
    later = SnapshotSource(SNAPSHOT, now=NOW + timedelta(days=400))
    assert later.fetch_metrics("x", ["elmstdental"])["elmstdental"].recent_posts_90d == 0


def test_snapshot_loads_lazily_and_once(tmp_path):
    path = tmp_path / "snap.json"
    source = SnapshotSource(path)  # nothing read yet, so no error yet
    doc = {
        "version": 1,
        "captured_at": DOC["captured_at"],
        "networks": {
            "github": {"Kestrel-Labs": bundle("github", "kestrel-labs")},
            "friendster": {"a": {}},
        },
    }
    path.write_text(json.dumps(doc), encoding="utf-8")
    assert source.networks() == ("github",)
    path.write_text("not json any more", encoding="utf-8")
    assert source.fetch_metrics("github", ["kestrel-labs"])["kestrel-labs"].followers == 3120
    # known network, not in this file
    assert source.fetch_metrics("x", ["adaq"]) == {"adaq": LookupFailure("not found", False)}


def test_snapshot_rejects_other_versions(tmp_path):
    path = tmp_path / "snap.json"
    path.write_text(json.dumps({"version": 2, "networks": {}}), encoding="utf-8")
    with pytest.raises(ValueError, match="not a version 1 influence snapshot"):
        SnapshotSource(path).networks()


def test_snapshot_broken_json_names_the_file(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="broken.json: not valid JSON"):
        SnapshotSource(path).fetch_metrics("x", ["adaq"])


def test_snapshot_missing_file_fails_on_use(tmp_path):
    source = SnapshotSource(tmp_path / "absent.json")
    with pytest.raises(FileNotFoundError):
        source.fetch_metrics("x", ["adaq"])


def test_snapshot_dates_are_in_the_window_before_capture():
    """Demo bundles carry post dates no later than capture (relative-safe)."""
    captured = NOW.astimezone(UTC)
    for tweet in DOC["networks"]["x"]["farahtech"]["tweets"]["data"]:
        moment = datetime.fromisoformat(tweet["created_at"])
        assert captured - timedelta(days=90) < moment <= captured
