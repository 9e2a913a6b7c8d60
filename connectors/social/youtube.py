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

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from connectors.social import as_count, as_flag, as_list, as_mapping
from connectors.social.base import NetworkMetrics

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
