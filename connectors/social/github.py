"""GitHub -> `NetworkMetrics`.

Bundle per handle: `{"user": <GET /users/{username} body>}`. GitHub has no
per-post reactions in that body, so engagement and activity stay None (the
model then scores reach only, and never damps for missing engagement);
`public_repos` stands in for the post count. Organisations use the same
endpoint and fields.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from connectors.social import as_count, as_mapping
from connectors.social.base import NOT_FOUND, LookupFailure, NetworkMetrics
from connectors.social.client import Bundle, NetworkClient, unexpected
from connectors.social.http import Call, Http

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


# --------------------------------------------------------------------------
# Live client: GET /users/{name}, one account per call (the API has no batch)
# --------------------------------------------------------------------------


class Client(NetworkClient):
    """Public REST API; a token (optional) raises the limit from 60 to 5,000 an hour."""

    network = NETWORK
    default_base_url = "https://api.github.com"
    parse = staticmethod(parse)

    def __init__(self, http: Http, *, token: str | None = None, **options: Any) -> None:
        super().__init__(http, **options)
        self._headers = {"Accept": "application/vnd.github+json",
                         "X-GitHub-Api-Version": "2022-11-28"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"

    def lookup(self, keys: Sequence[str], call: Call) -> dict[str, Bundle | LookupFailure]:
        out: dict[str, Bundle | LookupFailure] = {}
        for key in keys:
            reply = self.http.get_json(f"{self.base_url}/users/{key}", headers=self._headers,
                                       call=call)
            if isinstance(reply, LookupFailure):
                out[key] = reply
            elif reply.status == 200 and isinstance(reply.body, Mapping):
                out[key] = {"user": reply.body}
            elif reply.status == 404:
                out[key] = NOT_FOUND
            else:
                out[key] = unexpected(reply, self.network)
        return out
