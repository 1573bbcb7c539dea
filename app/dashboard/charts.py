"""Server-rendered SVG charts: printable, no JavaScript, nothing to install.

Each function returns markup (``markupsafe.Markup``) with every label escaped. Colours come
from CSS classes (app/static/css/dashboard.css) so print styles can change them.
"""
from __future__ import annotations

from typing import Sequence

from markupsafe import Markup, escape

WIDTH = 640


def _text(x: float, y: float, value: object, css: str = "", anchor: str = "start") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" class="{css}" text-anchor="{anchor}">{escape(str(value))}</text>'


def hbar(items: Sequence[tuple[str, float | None]], *, title: str, unit: str = "%", maximum: float | None = None) -> Markup:
    """Horizontal bars, one per (label, value); None is drawn as "—" without a bar."""
    row, left, right = 22, 170, 60
    height = row * max(len(items), 1) + 30
    top = max([v for _, v in items if v is not None] + [maximum or 0, 1e-9])
    span = WIDTH - left - right
    parts = [f'<svg class="chart chart-hbar" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{escape(title)}">',
             f"<title>{escape(title)}</title>"]
    for index, (label, value) in enumerate(items):
        y = 10 + index * row
        parts.append(_text(left - 6, y + 14, label[:18], "label", "end"))
        if value is None:
            parts.append(_text(left + 4, y + 14, "—", "value"))
            continue
        width = span * (value / top) if top else 0
        parts.append(f'<rect x="{left}" y="{y + 3}" width="{max(width, 1):.1f}" height="{row - 8}" class="bar"/>')
        shown = f"{value:.1f}{unit}" if unit else f"{value:g}"
        parts.append(_text(left + width + 4, y + 14, shown, "value"))
    if not items:
        parts.append(_text(WIDTH / 2, 24, "—", "value", "middle"))
    parts.append("</svg>")
    return Markup("".join(parts))


def stacked(rows: Sequence[tuple[str, Sequence[float]]], series: Sequence[str], *, title: str) -> Markup:
    """Vertical stacked bars: rows of (label, values per series), with a legend."""
    height, bottom, left = 220, 40, 36
    count = max(len(rows), 1)
    slot = (WIDTH - left - 10) / count
    top = max([sum(values) for _, values in rows] + [1])
    scale = (height - bottom - 20) / top
    parts = [f'<svg class="chart chart-stacked" viewBox="0 0 {WIDTH} {height + 20}" role="img" aria-label="{escape(title)}">',
             f"<title>{escape(title)}</title>",
             f'<line x1="{left}" y1="{height - bottom}" x2="{WIDTH - 10}" y2="{height - bottom}" class="axis"/>',
             _text(left - 4, 24, f"{top:g}", "tick", "end")]
    for index, (label, values) in enumerate(rows):
        x = left + index * slot + slot * 0.2
        y = height - bottom
        for series_index, value in enumerate(values):
            h = value * scale
            if h > 0:
                y -= h
                parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{slot * 0.6:.1f}" height="{h:.1f}" '
                             f'class="series-{series_index}"><title>{escape(series[series_index])}: {value:g}</title></rect>')
        parts.append(_text(x + slot * 0.3, y - 4, f"{sum(values):g}", "value", "middle"))
        parts.append(_text(x + slot * 0.3, height - bottom + 16, label[:10], "label", "middle"))
    for series_index, name in enumerate(series):
        x = left + series_index * 90
        parts.append(f'<rect x="{x}" y="{height}" width="10" height="10" class="series-{series_index}"/>')
        parts.append(_text(x + 14, height + 9, name, "legend"))
    parts.append("</svg>")
    return Markup("".join(parts))


def line(labels: Sequence[str], series: Sequence[tuple[str, Sequence[float | None]]], *, title: str) -> Markup:
    """Lines over the same x labels (months); None leaves a gap. Each series scaled to its own maximum
    would mislead, so all share one axis."""
    height, bottom, left = 200, 30, 40
    count = max(len(labels), 1)
    step = (WIDTH - left - 20) / max(count - 1, 1)
    top = max([v for _, values in series for v in values if v is not None] + [1])
    scale = (height - bottom - 20) / top
    parts = [f'<svg class="chart chart-line" viewBox="0 0 {WIDTH} {height + 20}" role="img" aria-label="{escape(title)}">',
             f"<title>{escape(title)}</title>",
             f'<line x1="{left}" y1="{height - bottom}" x2="{WIDTH - 10}" y2="{height - bottom}" class="axis"/>',
             _text(left - 4, 24, f"{top:g}", "tick", "end")]
    for index, label in enumerate(labels):
        parts.append(_text(left + index * step, height - bottom + 16, label, "label", "middle"))
    for series_index, (name, values) in enumerate(series):
        points = [(left + i * step, height - bottom - v * scale) for i, v in enumerate(values) if v is not None]
        if len(points) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            parts.append(f'<polyline points="{path}" class="line series-{series_index}"/>')
        for (x, y), value in zip(points, [v for v in values if v is not None]):
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" class="dot series-{series_index}">'
                         f"<title>{escape(name)}: {value:g}</title></circle>")
        legend_x = left + series_index * 120
        parts.append(f'<rect x="{legend_x}" y="{height}" width="10" height="10" class="series-{series_index}"/>')
        parts.append(_text(legend_x + 14, height + 9, name, "legend"))
    parts.append("</svg>")
    return Markup("".join(parts))
