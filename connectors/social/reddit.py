"""Reddit -> `NetworkMetrics`.

Bundle per handle: `{"about": <GET /user/{name}/about body, {"kind": "t2",
"data": {...}}>}`.

Reddit has no follower count in its documented fields, only karma: the
upvotes the account's posts and comments have earned over its lifetime. The
mapping, chosen so nothing is invented:

- `likes` = karma (`total_karma`, else `link_karma + comment_karma`, floored
  at 0) with `sample_posts = 0`, because karma is reactions received, not
  reactions to a recent sample. The model reads it as Reddit's reach, against
  Reddit's own reference distribution (`ranking.influence`), and never as
  per-post engagement.
- `followers`, `following`, `recent_posts_90d` = None: the body doesn't say.
- A suspended account (`is_suspended: true`), an error body or anything that
  is not a `t2` thing yields metrics with nothing set: no influence.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from connectors.social import as_count, as_flag, as_mapping
from connectors.social.base import NOT_FOUND, LookupFailure, NetworkMetrics
from connectors.social.client import Bundle, NetworkClient, unexpected
from connectors.social.http import Call

NETWORK = "reddit"


def _signed(value: Any) -> float | None:
    # Comment karma can go negative, which `as_count` would discard.
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _karma(data: Mapping[str, Any]) -> float | None:
    total = as_count(data.get("total_karma"))
    if total is not None:
        return total
    parts = [_signed(data.get(key)) for key in ("link_karma", "comment_karma")]
    known = [part for part in parts if part is not None]
    return max(sum(known), 0.0) if known else None


def parse(raw: Mapping[str, Any], now: datetime | None = None) -> NetworkMetrics:
    """Turn one handle's bundle into metrics; `now` is unused (no post dates)."""
    about = as_mapping(as_mapping(raw).get("about"))
    data = as_mapping(about.get("data"))
    name = data.get("name") if isinstance(data.get("name"), str) else ""
    if about.get("kind") != "t2" or as_flag(data.get("is_suspended")):
        return NetworkMetrics(network=NETWORK, handle=name)
    return NetworkMetrics(network=NETWORK, handle=name, likes=_karma(data))


# --------------------------------------------------------------------------
# Live client: GET /user/{name}/about.json, one account per call (no batch)
# --------------------------------------------------------------------------


class Client(NetworkClient):
    """The public JSON endpoint (10 requests a minute without OAuth). Reddit wants a
    descriptive User-Agent, which `Http` sends with every request."""

    network = NETWORK
    default_base_url = "https://www.reddit.com"
    parse = staticmethod(parse)

    def lookup(self, keys: Sequence[str], call: Call) -> dict[str, Bundle | LookupFailure]:
        out: dict[str, Bundle | LookupFailure] = {}
        for key in keys:
            reply = self.http.get_json(f"{self.base_url}/user/{key}/about.json",
                                       params={"raw_json": 1}, call=call)
            if isinstance(reply, LookupFailure):
                out[key] = reply
            elif reply.status == 200 and isinstance(reply.body, Mapping):
                out[key] = {"about": reply.body}
            elif reply.status == 404:
                out[key] = NOT_FOUND
            else:
                out[key] = unexpected(reply, self.network)
        return out
