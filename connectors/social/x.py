"""X (Twitter) API v2 -> `NetworkMetrics`.

Bundle per handle: `{"user": <one item of data[] from GET /2/users/by
?user.fields=public_metrics>, "tweets": <body of GET /2/users/:id/tweets
?tweet.fields=public_metrics,created_at>}`.

Retweets are dropped from the sample: in v2 a retweet's `public_metrics`
are the original tweet's counts, so keeping them would credit the account
with someone else's reach. Quotes count as amplification with retweets,
as in Klout's "reshares".
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from connectors.social import (
    as_count,
    as_list,
    as_mapping,
    as_time,
    recent_activity,
    reference_time,
    sum_counts,
)
from connectors.social.base import NOT_FOUND, LookupFailure, NetworkMetrics
from connectors.social.client import Bundle, NetworkClient, chunks, unexpected
from connectors.social.http import Call, Http, Reply, default_rate_limit, reset_wait

NETWORK = "x"


def _is_retweet(tweet: Mapping[str, Any]) -> bool:
    for ref in as_list(tweet.get("referenced_tweets")):
        if as_mapping(ref).get("type") == "retweeted":
            return True
    text = tweet.get("text")
    return isinstance(text, str) and text.startswith("RT @")


def parse(raw: Mapping[str, Any], now: datetime | None = None) -> NetworkMetrics:
    """Turn one handle's bundle into metrics; missing parts become None."""
    bundle = as_mapping(raw)
    user = as_mapping(bundle.get("user"))
    public = as_mapping(user.get("public_metrics"))
    handle = user.get("username") if isinstance(user.get("username"), str) else ""

    metrics: dict[str, Any] = {
        "followers": as_count(public.get("followers_count")),
        "following": as_count(public.get("following_count")),
        "posts_total": as_count(public.get("tweet_count")),
    }

    timeline = bundle.get("tweets")
    if isinstance(timeline, Mapping):
        own = [
            as_mapping(t)
            for t in as_list(timeline.get("data"))
            if isinstance(t, Mapping) and not _is_retweet(t)
        ]
        counts = [as_mapping(t.get("public_metrics")) for t in own]
        more_pages = bool(as_mapping(timeline.get("meta")).get("next_token"))
        metrics["sample_posts"] = len(own)
        metrics["recent_posts_90d"] = recent_activity(
            (as_time(t.get("created_at")) for t in own), reference_time(now), more_pages
        )
        if own:
            metrics["reposts"] = sum_counts(
                sum_counts([as_count(c.get("retweet_count")), as_count(c.get("quote_count"))])
                for c in counts
            )
            metrics["replies"] = sum_counts(as_count(c.get("reply_count")) for c in counts)
            metrics["likes"] = sum_counts(as_count(c.get("like_count")) for c in counts)

    return NetworkMetrics(network=NETWORK, handle=handle, **metrics)


# --------------------------------------------------------------------------
# Live client: GET /2/users/by (100 names a call), GET /2/users/:id/tweets (sample)
# --------------------------------------------------------------------------

BATCH = 100
_USER_ID = re.compile(r"[0-9]{1,20}")


def rate_limit(resp: Any, body: Any) -> float | None:
    """429 as usual; a 403 `usage-capped` (the plan's monthly cap) waits for its reset."""
    if resp.status_code == 403 and "usage-capped" in str(as_mapping(body).get("type", "")):
        return reset_wait(resp.headers) or 86_400.0
    return default_rate_limit(resp, body)


class Client(NetworkClient):
    """X API v2 with an app bearer token. Unknown and suspended names come back in the
    200 body's `errors` list (not as an HTTP error) and become per-handle failures."""

    network = NETWORK
    default_base_url = "https://api.x.com"
    parse = staticmethod(parse)
    has_sample = True

    def __init__(self, http: Http, *, bearer_token: str, **options: Any) -> None:
        super().__init__(http, **options)
        self._auth = {"Authorization": f"Bearer {bearer_token}"}

    def lookup(self, keys: Sequence[str], call: Call) -> dict[str, Bundle | LookupFailure]:
        out: dict[str, Bundle | LookupFailure] = {}
        for batch in chunks(keys, BATCH):
            reply = self.http.get_json(
                f"{self.base_url}/2/users/by",
                params={"usernames": ",".join(batch), "user.fields": "public_metrics,created_at"},
                headers=self._auth,
                call=call,
            )
            if isinstance(reply, LookupFailure):
                out.update(dict.fromkeys(batch, reply))
            elif reply.status != 200 or not isinstance(reply.body, Mapping):
                out.update(dict.fromkeys(batch, unexpected(reply, self.network)))
            else:
                out.update(_users_by(reply, batch))
        return out

    def sample(self, key: str, bundle: Bundle, call: Call) -> bool:
        user_id = str(as_mapping(bundle.get("user")).get("id", ""))
        if not _USER_ID.fullmatch(user_id):
            return False
        reply = self.http.get_json(
            f"{self.base_url}/2/users/{user_id}/tweets",
            params={"tweet.fields": "public_metrics,created_at,referenced_tweets"},
            headers=self._auth,
            call=call,
        )
        if isinstance(reply, Reply) and reply.status == 200 and isinstance(reply.body, Mapping):
            bundle["tweets"] = reply.body
        return True


def _users_by(reply: Reply, batch: Sequence[str]) -> dict[str, Bundle | LookupFailure]:
    found: dict[str, Bundle | LookupFailure] = {}
    for user in as_list(reply.body.get("data")):
        name = as_mapping(user).get("username")
        if isinstance(name, str):
            found[name.lower()] = {"user": user}
    for error in as_list(reply.body.get("errors")):
        error = as_mapping(error)
        name = next((v for v in (error.get("value"), error.get("resource_id"))
                     if isinstance(v, str)), None)
        if name is None or name.lower() in found:
            continue
        detail = str(error.get("detail", "")).lower()
        found[name.lower()] = (LookupFailure("suspended", retryable=False)
                               if "suspended" in detail else NOT_FOUND)
    return {key: found.get(key, NOT_FOUND) for key in batch}
