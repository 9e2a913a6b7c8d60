"""Pure, vectorized ranking: influence score model and ticket priority model.

Nothing in this package does I/O; callers hand in DataFrames and plain
`Weights`, so the same code runs in workers, in `clout rank` and in the
benchmarks.
"""

from __future__ import annotations

from .priority import map_tiers, prioritize
from .sentiment import complaint_strength, mentions_social
from .weights import TIERS, Weights
from .influence import MODEL_VERSION, metrics_frame, score_influence

__all__ = [
    "MODEL_VERSION",
    "TIERS",
    "Weights",
    "complaint_strength",
    "map_tiers",
    "mentions_social",
    "metrics_frame",
    "prioritize",
    "score_influence",
]
