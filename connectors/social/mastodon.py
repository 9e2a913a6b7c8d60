"""Mastodon -> `NetworkMetrics`.

Bundle per handle: `{"account": <GET /api/v1/accounts/lookup body>,
"statuses": [<Status>, ...]}` (GET /api/v1/accounts/:id/statuses).

Boosts (`reblog` non-null) are someone else's post, so they are dropped even
if the statuses were fetched without `exclude_reblogs`. Counts use the API's
British `favourites_count`; `quotes_count` (newer servers) joins boosts as
amplification when present. The statuses list arrives without its `Link`
header, so a list of a full default page (20) is taken to have more pages.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from connectors.social import (
    as_count,
    as_mapping,
    as_time,
    recent_activity,
    reference_time,
    sum_counts,
)
from connectors.social.base import NOT_FOUND, LookupFailure, NetworkMetrics
from connectors.social.client import Bundle, NetworkClient, unexpected
from connectors.social.http import Call, Reply

NETWORK = "mastodon"
DEFAULT_PAGE = 20  # statuses per page unless `limit` is given


def parse(raw: Mapping[str, Any], now: datetime | None = None) -> NetworkMetrics:
    """Turn one handle's bundle into metrics; missing parts become None."""
    bundle = as_mapping(raw)
    account = as_mapping(bundle.get("account"))
    handle = next(
        (v for v in (account.get("acct"), account.get("username")) if isinstance(v, str)), ""
    )

    metrics: dict[str, Any] = {
        "followers": as_count(account.get("followers_count")),
        "following": as_count(account.get("following_count")),
        "posts_total": as_count(account.get("statuses_count")),
    }

    statuses = bundle.get("statuses")
    if isinstance(statuses, list):
        own = [
            as_mapping(s) for s in statuses if isinstance(s, Mapping) and s.get("reblog") is None
        ]
        metrics["sample_posts"] = len(own)
        metrics["recent_posts_90d"] = recent_activity(
            (as_time(s.get("created_at")) for s in own),
            reference_time(now),
            len(statuses) >= DEFAULT_PAGE,
        )
        if own:
            metrics["reposts"] = sum_counts(
                sum_counts([as_count(s.get("reblogs_count")), as_count(s.get("quotes_count"))])
                for s in own
            )
            metrics["replies"] = sum_counts(as_count(s.get("replies_count")) for s in own)
            metrics["likes"] = sum_counts(as_count(s.get("favourites_count")) for s in own)

    return NetworkMetrics(network=NETWORK, handle=handle, **metrics)


# --------------------------------------------------------------------------
# Live client: the account's own instance, /api/v1/accounts/lookup (one per call)
# --------------------------------------------------------------------------

_ACCOUNT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


class Client(NetworkClient):
    """Public lookup on the instance named by the handle (`user@instance`), no token.

    The instance comes from a handle, i.e. from outside: `handles.normalise`
    has already refused IP literals and odd names, and the session this
    client is given (`http.guarded_session`) resolves every instance, refuses
    non-public addresses unless allowlisted, and connects only to the address
    it checked. Redirects are never followed (`Http`).

    `base_url` is a template with `{instance}` (default `https://{instance}`);
    rate limits and failures are tracked per instance, so one slow instance
    doesn't cost the others.
    """

    network = NETWORK
    default_base_url = "https://{instance}"
    parse = staticmethod(parse)
    has_sample = True

    def _base(self, instance: str) -> str:
        if "{instance}" in self.base_url:
            return self.base_url.replace("{instance}", instance)
        return self.base_url

    def lookup(self, keys: Sequence[str], call: Call) -> dict[str, Bundle | LookupFailure]:
        out: dict[str, Bundle | LookupFailure] = {}
        for key in keys:
            user, _, instance = key.partition("@")
            base = self._base(instance)
            reply = self.http.get_json(f"{base}/api/v1/accounts/lookup", params={"acct": user},
                                       call=call)
            if isinstance(reply, LookupFailure):
                out[key] = reply
            elif reply.status == 200 and isinstance(reply.body, Mapping):
                out[key] = {"account": reply.body}
            elif reply.status in (404, 410):
                out[key] = NOT_FOUND
            else:
                out[key] = unexpected(reply, self.network)
        return out

    def sample(self, key: str, bundle: Bundle, call: Call) -> bool:
        account_id = str(as_mapping(bundle.get("account")).get("id", ""))
        if not _ACCOUNT_ID.fullmatch(account_id):
            return False
        reply = self.http.get_json(
            f"{self._base(key.partition('@')[2])}/api/v1/accounts/{account_id}/statuses",
            params={"limit": DEFAULT_PAGE, "exclude_reblogs": "true", "exclude_replies": "true"},
            call=call,
        )
        if isinstance(reply, Reply) and reply.status == 200 and isinstance(reply.body, list):
            bundle["statuses"] = reply.body
        return True
