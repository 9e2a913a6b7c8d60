"""Plain values the priority model is tuned with.

These come from `[ranking]` in `config/clout.toml` (validated in
`plugin.settings`); `ranking/` only needs plain numbers, so it stays free of
any config or I/O code and can be benchmarked alone.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

TIERS: tuple[str, ...] = ("urgent", "high", "normal", "low")  # best first


@dataclass(frozen=True, slots=True)
class Weights:
    # How much each 0..1 component contributes to the 0..1 priority score.
    influence: float = 0.20
    spend: float = 0.25
    renewal: float = 0.25
    complaint: float = 0.15
    waiting: float = 0.15
    # Score a ticket needs to reach each tier (anything lower is "low").
    tier_urgent: float = 0.60
    tier_high: float = 0.40
    tier_normal: float = 0.20
    # Renewal urgency rises from 0 (contract ends >= horizon away) to 1 (ends today/past).
    renewal_horizon_days: float = 90.0
    # Waiting component reaches 1.0 after this many hours (the SLA).
    sla_hours: float = 24.0
    # A ticket that has waited this many SLAs is lifted to at least "high", whatever the
    # weights (the waiting weight included); 0 turns the lift off.
    waiting_floor_slas: float = 2.0
    # After a contract's end, renewal urgency falls from 1 to 0 over this many days.
    renewal_grace_days: float = 30.0
    # Flag thresholds.
    vip_spend_percentile: float = 0.90
    influencer_score: float = 60.0
    renewal_soon_days: float = 30.0
    aged_hours: float = 48.0
    complaint_threshold: float = 0.5
    extra: dict[str, float] = field(default_factory=dict)

    def version(self) -> str:
        """Short stable hash, stored with every decision so changes are traceable."""
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]
