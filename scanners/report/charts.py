"""Inline SVG charts for the HTML report, drawn in Python: no script, no library, no network.

Markup is only ever built from literal templates with ``Markup.format``, which escapes every
argument: a host or control name cannot inject markup into a chart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from markupsafe import Markup

SEVERITY_COLOURS = {
    "critical": "#7f1d1d",
    "high": "#dc2626",
    "medium": "#f59e0b",
    "low": "#3b82f6",
    "info": "#9ca3af",
}
STATUS_COLOURS = {
    "pass": "#16a34a",
    "fail": "#dc2626",
    "error": "#9333ea",
    "waived": "#f59e0b",
    "not_applicable": "#cbd5e1",
    "not_assessed": "#e5e7eb",
    "manual": "#94a3b8",
}
_DEFAULT_COLOUR = "#64748b"
_OPEN = Markup(
    '<svg class="chart" role="img" aria-label="{title}" width="{w}" height="{h}" viewBox="0 0 {w} {h}">'
    '<text x="0" y="14" font-family="system-ui, sans-serif" font-size="12" font-weight="bold">{title}</text>'
)
_TEXT = Markup('<text x="{x}" y="{y}" font-family="system-ui, sans-serif" font-size="12">{text}</text>')
_TEXT_ANCHORED = Markup(
    '<text x="{x}" y="{y}" font-family="system-ui, sans-serif" font-size="12" text-anchor="{anchor}">{text}</text>'
)
_RECT = Markup('<rect x="{x}" y="{y}" width="{w}" height="{h}" fill="{fill}"/>')
_RECT_TITLED = Markup('<rect x="{x}" y="{y}" width="{w}" height="{h}" fill="{fill}"><title>{title}</title></rect>')
_LINE = Markup('<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="#94a3b8"/>')
_POLYLINE = Markup('<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}"/>')
_POINT = Markup('<circle cx="{x}" cy="{y}" r="3" fill="{colour}"><title>{title}</title></circle>')
_CLOSE = Markup("</svg>")


def _legend(parts: list[Markup], keys: Sequence[str], colours: Mapping[str, str], x: int, y: int) -> None:
    for key in keys:
        parts.append(_RECT.format(x=x, y=y, w=10, h=10, fill=colours.get(key, _DEFAULT_COLOUR)))
        parts.append(_TEXT.format(x=x + 14, y=y + 9, text=key.replace("_", " ")))
        x += 14 + 8 * len(key) + 14


def bar_chart(title: str, values: Mapping[str, int], colours: Mapping[str, str], *, width: int = 420) -> Markup:
    """Horizontal bars, one per key, with the count at the end of each bar."""
    rows = list(values.items())
    bar_h, gap, label_w, top = 20, 8, 110, 24
    height = top + len(rows) * (bar_h + gap) + 4
    biggest = max([v for _, v in rows] + [1])
    span = width - label_w - 50
    parts = [_OPEN.format(title=title, w=width, h=height)]
    for i, (label, value) in enumerate(rows):
        y = top + i * (bar_h + gap)
        w = round(span * value / biggest) if value else 0
        parts.append(_TEXT.format(x=0, y=y + 14, text=label))
        parts.append(_RECT.format(x=label_w, y=y, w=w, h=bar_h, fill=colours.get(label, _DEFAULT_COLOUR)))
        parts.append(_TEXT.format(x=label_w + w + 6, y=y + 14, text=value))
    parts.append(_CLOSE)
    return Markup("").join(parts)


@dataclass(frozen=True, slots=True)
class StackRow:
    label: str
    segments: Mapping[str, int]  # key -> count, drawn in the order of the colours mapping


def stacked_bars(title: str, rows: Sequence[StackRow], colours: Mapping[str, str], *, width: int = 640) -> Markup:
    """One full-width bar per row, split by key, with a legend: e.g. requirement statuses per framework."""
    bar_h, gap, label_w, top = 22, 10, 130, 24
    legend_y = top + len(rows) * (bar_h + gap) + 6
    height = legend_y + 22
    span = width - label_w - 10
    parts = [_OPEN.format(title=title, w=width, h=height)]
    for i, row in enumerate(rows):
        y = top + i * (bar_h + gap)
        total = sum(row.segments.values()) or 1
        parts.append(_TEXT.format(x=0, y=y + 15, text=row.label))
        x = float(label_w)
        for key, colour in colours.items():
            count = row.segments.get(key, 0)
            if not count:
                continue
            w = span * count / total
            parts.append(
                _RECT_TITLED.format(x=f"{x:.1f}", y=y, w=f"{w:.1f}", h=bar_h, fill=colour, title=f"{key}: {count}")
            )
            x += w
    _legend(parts, list(colours), colours, 0, legend_y)
    parts.append(_CLOSE)
    return Markup("").join(parts)


def line_chart(
    title: str,
    labels: Sequence[str],
    series: Mapping[str, Sequence[int]],
    colours: Mapping[str, str],
    *,
    width: int = 640,
) -> Markup:
    """One polyline per series over the labels (e.g. failing findings per severity per scan)."""
    height, left, right, top, bottom = 240, 40, 40, 26, 46  # right: room for the last centred label
    plot_w, plot_h = width - left - right, height - top - bottom
    biggest = max([max(v, default=0) for v in series.values()] + [1])
    n = max(len(labels), 1)

    def x_at(i: int) -> str:
        return f"{left + (plot_w * i / (n - 1) if n > 1 else plot_w / 2):.1f}"

    def y_at(v: int) -> str:
        return f"{top + plot_h - plot_h * v / biggest:.1f}"

    parts = [
        _OPEN.format(title=title, w=width, h=height),
        _LINE.format(x1=left, y1=top + plot_h, x2=left + plot_w, y2=top + plot_h),
        _LINE.format(x1=left, y1=top, x2=left, y2=top + plot_h),
        _TEXT_ANCHORED.format(x=left - 6, y=top + 4, anchor="end", text=biggest),
        _TEXT_ANCHORED.format(x=left - 6, y=top + plot_h, anchor="end", text=0),
    ]
    step = max(n // 6, 1)
    for i, label in enumerate(labels):
        if n <= 8 or i in (0, n - 1) or i % step == 0:
            parts.append(_TEXT_ANCHORED.format(x=x_at(i), y=top + plot_h + 16, anchor="middle", text=label))
    for name, values in series.items():
        colour = colours.get(name, _DEFAULT_COLOUR)
        points = " ".join(f"{x_at(i)},{y_at(v)}" for i, v in enumerate(values))
        parts.append(_POLYLINE.format(colour=colour, points=points))
        for i, v in enumerate(values):
            label = labels[i] if i < len(labels) else ""
            parts.append(_POINT.format(x=x_at(i), y=y_at(v), colour=colour, title=f"{name} {label}: {v}"))
    _legend(parts, list(series), colours, left, height - 14)
    parts.append(_CLOSE)
    return Markup("").join(parts)
