"""Chart geometry for inline SVG: the pages draw on the server, so charts need no script.

Functions return plain numbers and strings; the templates turn them into
`<svg>` elements (Jinja escapes every label). Sizes are in viewBox units; CSS
scales the SVG to the screen.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Mapping, Sequence

from ranking.weights import TIERS

_SMALL = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def when_words(when: dt.datetime, now: dt.datetime) -> str:
    """'today', 'yesterday', 'two days ago', '3 weeks ago': how a person says it."""
    days = (now.date() - when.date()).days
    if days <= 0:
        return "today"
    if days == 1:
        return "yesterday"
    if days < 10:
        return f"{_SMALL[days]} days ago"
    if days < 14:
        return f"{days} days ago"
    if days < 60:
        return f"{days // 7} weeks ago"
    if days < 730:
        return f"{days // 30} months ago"
    return f"{days // 365} years ago"


def influence_summary(points: Sequence[tuple[dt.datetime, float]], now: dt.datetime) -> str:
    """'17 two days ago, 38 today' from the oldest and newest score shown."""
    if not points:
        return "No influence score yet."
    (t0, v0), (t1, v1) = points[0], points[-1]
    if len(points) == 1:
        return f"{v1:.0f} {when_words(t1, now)}"
    w0, w1 = when_words(t0, now), when_words(t1, now)
    if w0 == w1:
        return f"{v0:.0f} at {t0:%H:%M}, {v1:.0f} at {t1:%H:%M} {w1}"
    return f"{v0:.0f} {w0}, {v1:.0f} {w1}"


def line_chart(points: Sequence[tuple[dt.datetime, float]], *, width: int = 600,
               height: int = 180, top: float = 100.0) -> dict[str, Any]:
    """Polyline and dots for scores 0..`top` over time (oldest left)."""
    left, right, pad_top, pad_bottom = 34, 12, 10, 26
    inner_w, inner_h = width - left - right, height - pad_top - pad_bottom
    if points:
        start, end = points[0][0], points[-1][0]
        span = (end - start).total_seconds()
    else:
        start, span = None, 0.0

    def x(when: dt.datetime) -> float:
        if not span:
            return left + inner_w / 2
        return left + inner_w * (when - start).total_seconds() / span

    def y(value: float) -> float:
        return pad_top + inner_h * (1 - max(0.0, min(top, value)) / top)

    dots = [{"x": round(x(t), 1), "y": round(y(v), 1), "label": f"{v:.0f} on {t:%Y-%m-%d %H:%M} UTC"}
            for t, v in points]
    grid = [{"y": round(y(v), 1), "label": f"{v:.0f}"} for v in (0, 25, 50, 75, 100)]
    axis = []
    if points:
        axis.append({"x": left, "anchor": "start", "label": f"{points[0][0]:%b %d}"})
        if span:
            axis.append({"x": left + inner_w, "anchor": "end", "label": f"{points[-1][0]:%b %d}"})
    return {"width": width, "height": height, "left": left, "right": width - right,
            "bottom": height - pad_bottom, "axis_y": height - 8,
            "polyline": " ".join(f"{d['x']},{d['y']}" for d in dots), "dots": dots, "grid": grid,
            "axis": axis}


def tier_bars(before: Mapping[str, int], after: Mapping[str, int], *, width: int = 600,
              height: int = 200) -> dict[str, Any]:
    """Grouped bars per tier: today's count next to the proposed one."""
    left, pad_top, pad_bottom = 10, 18, 28
    inner_h = height - pad_top - pad_bottom
    slot = (width - 2 * left) / len(TIERS)
    bar = slot * 0.34
    most = max([*before.values(), *after.values(), 1])
    groups = []
    for i, tier in enumerate(TIERS):
        x0 = left + i * slot + (slot - 2 * bar) / 2
        bars = []
        for j, (what, counts) in enumerate((("today", before), ("proposed", after))):
            n = int(counts.get(tier, 0))
            h = inner_h * n / most
            bars.append({"x": round(x0 + j * bar, 1), "y": round(pad_top + inner_h - h, 1),
                         "w": round(bar - 2, 1), "h": round(h, 1), "n": n, "what": what,
                         "label_y": round(pad_top + inner_h - h - 4, 1),
                         "cx": round(x0 + j * bar + (bar - 2) / 2, 1)})
        groups.append({"tier": tier, "bars": bars, "cx": round(left + i * slot + slot / 2, 1)})
    return {"width": width, "height": height, "groups": groups, "base": pad_top + inner_h,
            "axis_y": height - 8}
