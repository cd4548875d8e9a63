"""Small SVG charts drawn on the server: no chart library, nothing loaded by the browser.

Colours come from classes the stylesheet defines (``series-0``, ``series-1``, ``bar``), so the
SVG carries no inline style (the pages' Content-Security-Policy forbids inline styles). Every
label goes through :func:`theoryx.ui.markup.html`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from theoryx.ui.markup import Markup, html, join

WIDTH, HEIGHT = 760, 240
LEFT, RIGHT, TOP, BOTTOM = 84, 16, 16, 36   # margins for the axis labels
MAX_POINTS = 400
"""A series is thinned to at most this many points (its last point always kept)."""


@dataclass(frozen=True)
class Series:
    """A named line: ``(time in ms, value)`` points in time order."""

    name: str
    points: tuple[tuple[int, float], ...]


@dataclass(frozen=True)
class Bar:
    """One bar: its time span ``[start_ms, end_ms)``, its height (0 to 1) and a tooltip."""

    start_ms: int
    end_ms: int
    value: float
    tooltip: str


def when(ms: int, *, with_time: bool = True) -> str:
    """``ms`` since the epoch as local time, ``YYYY-MM-DD HH:MM`` (or the date alone)."""
    return time.strftime("%Y-%m-%d %H:%M" if with_time else "%Y-%m-%d", time.localtime(ms / 1000))


def _thin(points: Sequence[tuple[int, float]]) -> list[tuple[int, float]]:
    if len(points) <= MAX_POINTS:
        return list(points)
    step = len(points) / (MAX_POINTS - 1)
    return [points[int(i * step)] for i in range(MAX_POINTS - 1)] + [points[-1]]


def _frame(label: str, x0: int, x1: int, y_max: float, y_format: Callable[[float], str]) -> list[Markup]:
    """Gridlines with y labels, and the time axis's first and last labels."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    parts = [html('<title>{t}</title>', t=label)]
    for i in range(5):
        y = TOP + plot_h - plot_h * i / 4
        parts.append(html('<line class="grid" x1="{a}" y1="{y}" x2="{b}" y2="{y}"/>'
                          '<text class="axis" x="{lx}" y="{ty}" text-anchor="end">{v}</text>',
                          a=LEFT, b=LEFT + plot_w, y=f"{y:.1f}", lx=LEFT - 6, ty=f"{y + 4:.1f}",
                          v=y_format(y_max * i / 4)))
    with_time = (x1 - x0) < 3 * 86_400_000
    parts.append(html('<text class="axis" x="{x}" y="{y}" text-anchor="start">{t}</text>',
                      x=LEFT, y=HEIGHT - 10, t=when(x0, with_time=with_time)))
    parts.append(html('<text class="axis" x="{x}" y="{y}" text-anchor="end">{t}</text>',
                      x=LEFT + plot_w, y=HEIGHT - 10, t=when(x1, with_time=with_time)))
    return parts


def _svg(label: str, parts: list[Markup]) -> Markup:
    return html('<svg class="chart" viewBox="0 0 {w} {h}" role="img" aria-label="{label}" '
                'xmlns="http://www.w3.org/2000/svg">{body}</svg>',
                w=WIDTH, h=HEIGHT, label=label, body=join(parts))


def _empty(label: str, text: str) -> Markup:
    return _svg(label, [html('<text class="empty" x="{x}" y="{y}" text-anchor="middle">{t}</text>',
                             x=WIDTH // 2, y=HEIGHT // 2, t=text)])


def step_chart(label: str, series: Sequence[Series], y_format: Callable[[float], str],
               empty: str = "nothing recorded yet") -> Markup:
    """Cumulative values as step lines (a value holds until the next point), one class per
    series (``series-0``, ``series-1``...), with a legend."""
    points = [p for s in series for p in s.points]
    if not points:
        return _empty(label, empty)
    x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
    if x1 == x0:
        x1 = x0 + 1
    y_max = max(max(p[1] for p in points), 1e-9)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def xy(t: int, v: float) -> str:
        return f"{LEFT + plot_w * (t - x0) / (x1 - x0):.1f},{TOP + plot_h - plot_h * v / y_max:.1f}"

    parts = _frame(label, x0, x1, y_max, y_format)
    legend: list[Markup] = []
    for i, s in enumerate(series):
        pts = _thin(s.points)
        if not pts:
            continue
        coords: list[str] = [xy(pts[0][0], 0.0)]
        prev = 0.0
        for t, v in pts:
            coords += [xy(t, prev), xy(t, v)]
            prev = v
        coords.append(xy(x1, prev))
        parts.append(html('<polyline class="line series-{i}" points="{p}"><title>{n}: {last}</title></polyline>',
                          i=i, p=" ".join(coords), n=s.name, last=y_format(prev)))
        legend.append(html('<tspan class="legend series-{i}" dx="{dx}">\u25a0 {n} {last}</tspan>',
                           i=i, dx=0 if i == 0 else 18, n=s.name, last=y_format(prev)))
    parts.append(html('<text x="{x}" y="{y}">{legend}</text>', x=LEFT + 8, y=TOP + 14, legend=join(legend)))
    return _svg(label, parts)


def bar_chart(label: str, bars: Sequence[Bar], y_format: Callable[[float], str],
              empty: str = "nothing recorded yet") -> Markup:
    """Bars over time, heights 0 to 1 (a rate), each with its tooltip."""
    if not bars:
        return _empty(label, empty)
    x0, x1 = bars[0].start_ms, max(b.end_ms for b in bars)
    if x1 == x0:
        x1 = x0 + 1
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    parts = _frame(label, x0, x1, 1.0, y_format)
    for b in bars:
        left = LEFT + plot_w * (b.start_ms - x0) / (x1 - x0)
        width = max(plot_w * (b.end_ms - b.start_ms) / (x1 - x0) - 1.0, 1.0)
        height = plot_h * max(0.0, min(b.value, 1.0))
        parts.append(html('<rect class="bar" x="{x}" y="{y}" width="{w}" height="{h}"><title>{t}</title></rect>',
                          x=f"{left:.1f}", y=f"{TOP + plot_h - height:.1f}", w=f"{width:.1f}",
                          h=f"{height:.1f}", t=b.tooltip))
    return _svg(label, parts)
