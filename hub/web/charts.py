"""Small server-rendered SVG charts for the steward dashboard (no JavaScript, no CDN)."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape


def bars(loaded: Sequence[int], quarantined: Sequence[int], *, width: int = 240, height: int = 48) -> str:
    """Rows loaded (green) and quarantined (red) per run, oldest on the left."""
    runs = len(loaded)
    if runs == 0:
        return ""
    top = max(max(a + b for a, b in zip(loaded, quarantined, strict=True)), 1)
    step = width / runs
    bar = max(step - 2, 1)
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img">']
    for index, (good, bad) in enumerate(zip(loaded, quarantined, strict=True)):
        x = index * step
        good_h = good / top * (height - 2)
        bad_h = bad / top * (height - 2)
        parts.append(
            f'<rect x="{x:.1f}" y="{height - good_h:.1f}" width="{bar:.1f}" height="{good_h:.1f}" class="ok">'
            f"<title>{good} / {bad}</title></rect>"
        )
        parts.append(
            f'<rect x="{x:.1f}" y="{height - good_h - bad_h:.1f}" width="{bar:.1f}" height="{bad_h:.1f}" class="bad"/>'
        )
    parts.append("</svg>")
    return "".join(parts)


def sparkline(rates: Sequence[float], *, label: str, width: int = 160, height: int = 28) -> str:
    """A pass rate (0..1) over runs; the line turns red below 95%."""
    if not rates:
        return ""
    step = width / max(len(rates) - 1, 1)
    points = " ".join(f"{i * step:.1f},{(1 - rate) * (height - 4) + 2:.1f}" for i, rate in enumerate(rates))
    css = "ok" if min(rates) >= 0.95 else "bad"
    return (
        f'<svg class="spark" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img">'
        f"<title>{escape(label)}: {rates[-1]:.1%}</title>"
        f'<polyline fill="none" class="{css}" points="{points}"/></svg>'
    )
