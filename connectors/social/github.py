"""GitHub -> `NetworkMetrics`.

Bundle per handle: `{"user": <GET /users/{username} body>}`. GitHub has no
per-post reactions in that body, so engagement and activity stay None (the
model then scores reach only, and never damps for missing engagement);
`public_repos` stands in for the post count. Organisations use the same
endpoint and fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from connectors.social import as_count, as_mapping
from connectors.social.base import NetworkMetrics

NETWORK = "github"


def parse(raw: Mapping[str, Any], now: datetime | None = None) -> NetworkMetrics:
    """Turn one handle's bundle into metrics; `now` is unused (no post dates)."""
    user = as_mapping(as_mapping(raw).get("user"))
    login = user.get("login")
    return NetworkMetrics(
        network=NETWORK,
        handle=login if isinstance(login, str) else "",
        followers=as_count(user.get("followers")),
        following=as_count(user.get("following")),
        posts_total=as_count(user.get("public_repos")),
    )
