"""YouTube Data API v3 -> `NetworkMetrics`.

Bundle per handle: `{"channels": <channels.list body>}` (part=statistics,
optionally snippet). Counts are 64-bit integers serialised as strings.

- No channel (`items` absent or empty) -> metrics with nothing set.
- `hiddenSubscriberCount: true` -> followers None: the owner chose not to
  publish it, and the "0"/absent value the API then returns is not data.
- `videoCount` stands in for the post count. channels.list has no per-video
  reactions or dates, so engagement and activity stay None.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import requests

from connectors.social import as_count, as_flag, as_list, as_mapping
from connectors.social.base import NOT_FOUND, LookupFailure, NetworkMetrics
from connectors.social.client import Bundle, NetworkClient, unexpected
from connectors.social.http import Call, Http, default_rate_limit

NETWORK = "youtube"


def parse(raw: Mapping[str, Any], now: datetime | None = None) -> NetworkMetrics:
    """Turn one handle's bundle into metrics; `now` is unused (no post dates)."""
    body = as_mapping(as_mapping(raw).get("channels"))
    items = [as_mapping(i) for i in as_list(body.get("items")) if isinstance(i, Mapping)]
    if not items:
        return NetworkMetrics(network=NETWORK, handle="")
    channel = items[0]
    stats = as_mapping(channel.get("statistics"))
    custom_url = as_mapping(channel.get("snippet")).get("customUrl")
    handle = next((v for v in (custom_url, channel.get("id")) if isinstance(v, str)), "")
    hidden = as_flag(stats.get("hiddenSubscriberCount"))
    return NetworkMetrics(
        network=NETWORK,
        handle=handle,
        followers=None if hidden else as_count(stats.get("subscriberCount")),
        posts_total=as_count(stats.get("videoCount")),
    )


# --------------------------------------------------------------------------
# Live client: channels.list?forHandle=, one handle per call
# --------------------------------------------------------------------------

QUOTA_REASONS = {"quotaExceeded", "dailyLimitExceeded"}
RATE_REASONS = {"rateLimitExceeded", "userRateLimitExceeded"}


def _seconds_to_pacific_midnight() -> float:
    """The daily quota resets at midnight Pacific time."""
    try:
        from zoneinfo import ZoneInfo

        now = datetime.now(ZoneInfo("America/Los_Angeles"))
    except Exception:  # no tz database: an hour is a safe guess
        return 3600.0
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max((midnight - now).total_seconds(), 60.0)


def rate_limit(resp: requests.Response, body: Any) -> float | None:
    """Google reports quota and rate limits as 403 with a reason, not as 429."""
    if resp.status_code in (403, 429):
        reasons = {as_mapping(e).get("reason")
                   for e in as_list(as_mapping(as_mapping(body).get("error")).get("errors"))}
        if reasons & QUOTA_REASONS:
            return _seconds_to_pacific_midnight()
        if reasons & RATE_REASONS:
            return default_rate_limit(resp, body) or 60.0
    return default_rate_limit(resp, body)


class Client(NetworkClient):
    """YouTube Data API v3 with an API key, sent in the `x-goog-api-key` header rather
    than the `key=` query parameter, so it never appears in a URL or a log line.
    `forHandle` takes a single handle, so each handle costs one call (1 quota unit)."""

    network = NETWORK
    default_base_url = "https://www.googleapis.com"
    parse = staticmethod(parse)

    def __init__(self, http: Http, *, api_key: str, **options: Any) -> None:
        super().__init__(http, **options)
        self._headers = {"x-goog-api-key": api_key}

    def lookup(self, keys: Sequence[str], call: Call) -> dict[str, Bundle | LookupFailure]:
        out: dict[str, Bundle | LookupFailure] = {}
        for key in keys:
            reply = self.http.get_json(
                f"{self.base_url}/youtube/v3/channels",
                params={"part": "snippet,statistics", "forHandle": key},
                headers=self._headers,
                call=call,
            )
            if isinstance(reply, LookupFailure):
                out[key] = reply
            elif reply.status == 200 and isinstance(reply.body, Mapping):
                items = as_list(reply.body.get("items"))
                out[key] = {"channels": reply.body} if items else NOT_FOUND
            else:
                out[key] = unexpected(reply, self.network)
        return out
