"""The brand-term poller against local Bluesky and Mastodon servers, over real HTTP."""

from __future__ import annotations

import datetime as dt

import pytest

from conftest import auth, work
from social_search_servers import BlueskySearchServer, MastodonSearchServer
from test_mentions import make  # noqa: F401  (the fixture this file builds on)


def _ago(minutes: float) -> str:
    return (dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=minutes)).strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


@pytest.fixture()
def servers():
    bsky, masto = BlueskySearchServer(), MastodonSearchServer()
    yield bsky, masto
    bsky.close()
    masto.close()


@pytest.fixture()
def polling(make, servers):
    """`make` (tests/test_mentions.py) with the poller pointed at the local search servers."""
    bsky, masto = servers
    endpoints = {"bluesky": bsky.url, "mastodon": masto.url}

    def build(**env: str):
        return make(**{
            "CLOUT_SOCIAL__BRAND_TERMS": '["Harbour View"]',
            "CLOUT_SOCIAL__MASTODON_INSTANCES": f'["{masto.host}"]',
            "CLOUT_SOCIAL__POLL_INTERVAL_SECONDS": "60",
            "CLOUT_INFLUENCE__ENDPOINTS": "{" + ", ".join(
                f'{k} = "{v}"' for k, v in endpoints.items()) + "}",
            "CLOUT_INFLUENCE__MAX_WAIT_SECONDS": "3",
            "CLOUT_INFLUENCE__MAX_RETRIES": "1",
            **env})

    return build


def seed(bsky: BlueskySearchServer, masto: MastodonSearchServer) -> None:
    root = bsky.post("adaq.bsky.social", "3kroot", "Harbour View charged me twice for wifi. "
                     "Unacceptable, I want a refund!", _ago(30))
    bsky.post("adaq.bsky.social", "3kreply", "Harbour View front desk still not answering.",
              _ago(20), reply_root=root["uri"], did=root["author"]["did"])
    bsky.post("someone.bsky.social", "3kother", "Booked Harbour View for the spring offsite",
              _ago(10))
    bsky.post("someone.bsky.social", "3knoise", "Nothing to do with the brand", _ago(5))
    masto.status("traveller", "<p>Great pool at <a href=\"x\">#HarbourView</a> &amp; spa</p>",
                 ["HarbourView"], _ago(8))
    masto.status("booster", "<p>boost</p>", ["HarbourView"], _ago(7), reblog=True)


def test_scheduled_poll_finds_brand_mentions_and_they_are_processed(polling, servers):
    from plugin.mentions import mention_store
    from plugin.reconcile import run

    bsky, masto = servers
    seed(bsky, masto)
    rt, client = polling()
    assert run(rt)["social"] == {"poll": True}
    assert run(rt)["social"] == {}  # one poll per interval, however many reconciles
    work(rt)

    items = client.get("/api/mentions", headers=auth()).get_json()["mentions"]
    assert len(items) == 3  # Ada's thread is one case; the boost and the unrelated post aren't
    ada = items[0]
    assert ada["customer"]["id"] == "C-1001" and ada["post_count"] == 2
    assert ada["url"] == "https://bsky.app/profile/adaq.bsky.social/post/3kroot"
    assert ada["escalation"] == "opened" and ada["origin"] == "poll"
    assert ada["brand_term"] == "Harbour View"
    ticket = client.get(f"/api/tickets/{ada['ticket_id']}", headers=auth()).get_json()
    assert "SOCIAL_COMPLAINT" in ticket["flags"]
    masto_item = next(i for i in items if i["network"] == "mastodon")
    assert masto_item["text"] == "Great pool at #HarbourView & spa"
    assert masto_item["handle"] == "traveller@social.example"
    assert bsky.calls[0].query["q"] == ["Harbour View"] and "since" not in bsky.calls[0].query
    assert masto.calls[0].path == "/api/v1/timelines/tag/HarbourView"
    ms = mention_store(rt)
    assert ms.poll_cursor("bluesky", "Harbour View") is not None
    newest = max(s["id"] for s in masto.statuses)
    assert ms.poll_cursor("mastodon", f"{masto.host}#Harbour View") == newest

    # The next poll starts where this one ended and finds nothing new.
    from plugin.mention_jobs import poll

    report = poll(rt)
    assert report["new"] == 0 and report["failures"] == {}
    assert bsky.calls[-1].query["since"] == [ms.poll_cursor("bluesky", "Harbour View")]
    assert masto.calls[-1].query["min_id"] == [newest]
    masto.status("traveller", "<p>#HarbourView wifi charged twice, not happy</p>",
                 ["HarbourView"], _ago(1))
    assert poll(rt)["new"] == 1


def test_poller_waits_out_a_short_429(polling, servers):
    from plugin.mention_jobs import poll

    bsky, masto = servers
    seed(bsky, masto)
    rt, _ = polling(CLOUT_SOCIAL__NETWORKS='["bluesky"]')
    bsky.fault("429", retry_after=1, path="searchPosts")
    report = poll(rt)
    assert report["failures"] == {} and report["paused"] == {}
    assert report["new"] == 2  # Ada's thread (one case, two posts) and the offsite post
    assert bsky.count("searchPosts") == 2  # asked again only after the wait


def test_poller_pauses_a_network_that_asks_for_a_long_wait(polling, servers):
    from plugin.mention_jobs import poll

    bsky, masto = servers
    seed(bsky, masto)
    rt, _ = polling()
    bsky.fault("429", retry_after=120, path="searchPosts")
    report = poll(rt)
    assert report["paused"] == {"bluesky": 120}
    assert "rate limited" in report["failures"]["bluesky:Harbour View"]
    assert bsky.count("searchPosts") == 1  # not retried, not hammered
    assert report["new"] == 1  # Mastodon was still polled
    again = poll(rt)
    assert bsky.count("searchPosts") == 1  # the pause holds across polls (and processes)
    assert 0 < again["paused"]["bluesky"] <= 120
    assert rt.redis.ttl(rt.settings.redis_key("social-paused", "bluesky")) > 100


def test_a_server_error_leaves_the_cursor_for_the_next_poll(polling, servers):
    from plugin.mention_jobs import poll
    from plugin.mentions import mention_store

    bsky, masto = servers
    seed(bsky, masto)
    rt, _ = polling(CLOUT_SOCIAL__NETWORKS='["mastodon"]', CLOUT_INFLUENCE__MAX_RETRIES="0")
    masto.fault("503", path="timelines")
    report = poll(rt)
    assert "HTTP 503" in report["failures"][f"mastodon:{masto.host}#Harbour View"] or \
        "error" in report["failures"][f"mastodon:{masto.host}#Harbour View"]
    assert mention_store(rt).poll_cursor("mastodon", f"{masto.host}#Harbour View") is None
    assert poll(rt)["new"] == 1
