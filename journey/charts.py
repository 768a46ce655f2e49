"""Charts as SVG text — line, bar, stacked bar, histogram — for the report and the console.

Pure functions: data in, one ``<svg>`` element out as a string; nothing is read or fetched.
We write our own rather than use matplotlib (numpy and ~40 MB for four simple charts, text
drawn as paths unless configured, no ARIA) or pygal (its SVG links script from a CDN unless
told not to): a few hundred lines of our own give charts that are accessible and safe by
construction.

- Every text (titles, labels, series names) is escaped, and control characters that XML
  forbids are replaced, so a team called ``<script>`` is just text.
- Each chart is an image with a name and a description for screen readers (``role="img"``,
  ``<title>``, ``<desc>``), axis titles, and its numbers written on it where they fit (the
  page puts a table beside it with all of them).
- Series differ by marker shape, dash pattern and hatching as well as by colour (a palette
  safe for colour-blind readers), so colour never carries meaning alone.
- Only presentation attributes, no ``style`` attribute and no script, so a page with a strict
  Content-Security-Policy shows them as they are.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

__all__ = [
    "Series",
    "bar_chart",
    "format_number",
    "histogram",
    "line_chart",
    "stacked_bar_chart",
]

# Okabe-Ito: distinguishable with every common colour-vision deficiency.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#E69F00", "#CC79A7", "#56B4E9", "#000000")
DASHES = ("", "6 4", "2 3", "8 3 2 3", "1 2", "10 4", "4 2 1 2")
MARKERS = ("circle", "square", "triangle", "diamond", "circle", "square", "triangle")
FILLS = ("solid", "hatch", "dots", "cross", "back", "grid", "solid")
INK = "#1a1a1a"
MUTED = "#555555"
GRID = "#d8d8d8"
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif"
MAX_LABEL = 26  # characters of a category or series name drawn; the whole name is its tooltip
MAX_ITEMS = 400  # categories or points drawn per chart: bounds the size of the SVG

_CHART_ID = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff]")


@dataclass(frozen=True)
class Series:
    """One named row of values, one per label; ``None`` where there is no value."""

    name: str
    values: Sequence[float | None]
    style: int | None = None
    """Which colour, marker, dash and texture (an index into the palette); by default the
    series' place. Lets a meaning keep its look across charts (broken promises always
    vermilion and hatched)."""


_Row = tuple[str, list[float | None], int]  # name, values, style


def _rows(series: Sequence[Series]) -> list[_Row]:
    return [
        (s.name, _values(s.values), i if s.style is None else s.style)
        for i, s in enumerate(series[: len(PALETTE)])
    ]


def _text(value: object) -> str:
    """Escaped for element content and attribute values alike."""
    return escape(_FORBIDDEN.sub("\ufffd", str(value)), quote=True)


def _short(value: str, limit: int = MAX_LABEL) -> str:
    return value if len(value) <= limit else value[: limit - 1].rstrip() + "…"


def format_number(value: float | None) -> str:
    """As a person reads it: 3, 12.5, 0.25, 1 234; "—" for no value."""
    if value is None or not math.isfinite(value):
        return "—"
    if abs(value - round(value)) < 1e-9:
        return f"{round(value):,}".replace(",", "\u202f")
    digits = 0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 2
    text = f"{value:,.{digits}f}".replace(",", "\u202f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _ticks(top: float, *, integer: bool, count: int = 5) -> list[float]:
    """Round steps from 0 to at least ``top``: 1, 2, 2.5 or 5 times a power of ten."""
    top = top if math.isfinite(top) and top > 0 else 1.0
    raw = top / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = magnitude * 10
    for factor in (1, 2, 2.5, 5, 10):
        candidate = factor * magnitude
        if candidate >= raw and not (integer and candidate != int(candidate)):
            step = candidate
            break
    if integer:
        step = max(step, 1.0)
    steps = math.ceil(top / step - 1e-9)
    return [i * step for i in range(steps + 1)]


def _check_id(chart_id: str) -> str:
    if not _CHART_ID.fullmatch(chart_id):
        raise ValueError(f"chart id {chart_id!r}: a letter, then letters, digits, - or _")
    return chart_id


def _values(values: Sequence[float | None]) -> list[float | None]:
    return [
        None if v is None or not math.isfinite(float(v)) else float(v) for v in values[:MAX_ITEMS]
    ]


@dataclass(frozen=True)
class _Frame:
    """The plot area inside the SVG, in SVG units."""

    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int

    @property
    def x0(self) -> int:
        return self.left

    @property
    def x1(self) -> int:
        return self.width - self.right

    @property
    def y0(self) -> int:
        return self.height - self.bottom

    @property
    def y1(self) -> int:
        return self.top


def _open(chart_id: str, title: str, description: str, width: int, height: int) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="{chart_id}" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-labelledby="{chart_id}-title {chart_id}-desc" font-family="{_text(FONT)}" '
        f'font-size="12" fill="{INK}">',
        f'<title id="{chart_id}-title">{_text(title)}</title>',
        f'<desc id="{chart_id}-desc">{_text(description)}</desc>',
    ]


def _patterns(chart_id: str, styles: Sequence[int]) -> str:
    """Fills for bar series: colour plus a texture, so print and grey scale still tell them
    apart."""
    defs = ["<defs>"]
    for i in sorted(set(styles)):
        colour, kind = PALETTE[i % len(PALETTE)], FILLS[i % len(FILLS)]
        pid = f"{chart_id}-fill{i}"
        defs.append(
            f'<pattern id="{pid}" width="8" height="8" patternUnits="userSpaceOnUse">'
            f'<rect width="8" height="8" fill="{colour}"/>'
        )
        if kind == "hatch":
            defs.append(
                '<path d="M-2,10 L10,-2 M-2,2 L2,-2 M6,10 L10,6" stroke="#fff" stroke-width="1.6"/>'
            )
        elif kind == "back":
            defs.append(
                '<path d="M-2,-2 L10,10 M6,-2 L10,2 M-2,6 L2,10" stroke="#fff" stroke-width="1.6"/>'
            )
        elif kind == "dots":
            defs.append('<circle cx="4" cy="4" r="1.6" fill="#fff"/>')
        elif kind == "cross":
            defs.append('<path d="M0,4 H8 M4,0 V8" stroke="#fff" stroke-width="1.4"/>')
        elif kind == "grid":
            defs.append('<path d="M0,0 L8,8 M8,0 L0,8" stroke="#fff" stroke-width="1.2"/>')
        defs.append("</pattern>")
    defs.append("</defs>")
    return "".join(defs)


def _marker(kind: str, x: float, y: float, colour: str, tip: str) -> str:
    r = 4.0
    if kind == "square":
        shape = (
            f'<rect x="{x - r:.1f}" y="{y - r:.1f}" width="{2 * r:.1f}" '
            f'height="{2 * r:.1f}" fill="{colour}"/>'
        )
    elif kind == "triangle":
        shape = (
            f'<path d="M{x:.1f},{y - r - 1:.1f} L{x + r + 0.5:.1f},{y + r:.1f} '
            f'L{x - r - 0.5:.1f},{y + r:.1f} Z" fill="{colour}"/>'
        )
    elif kind == "diamond":
        shape = (
            f'<path d="M{x:.1f},{y - r - 1:.1f} L{x + r + 1:.1f},{y:.1f} '
            f'L{x:.1f},{y + r + 1:.1f} L{x - r - 1:.1f},{y:.1f} Z" fill="{colour}"/>'
        )
    else:
        shape = f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r:.1f}" fill="{colour}"/>'
    return f"<g><title>{_text(tip)}</title>{shape}</g>"


def _legend(chart_id: str, rows: Sequence[_Row], frame: _Frame, *, lines: bool) -> str:
    """Swatches above the plot, each drawn as its series is (marker and dash, or fill)."""
    if len(rows) < 2:
        return ""
    parts, x, y = ['<g class="legend">'], float(frame.x0), 14.0
    for name, _, i in rows:
        colour = PALETTE[i % len(PALETTE)]
        label = _short(name, 22)
        width = 34 + 6.6 * len(label) + 14
        if x + width > frame.width - 4 and x > frame.x0:
            x, y = float(frame.x0), y + 16
        if lines:
            dash = DASHES[i % len(DASHES)]
            dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
            parts.append(
                f'<line x1="{x:.1f}" y1="{y - 4:.1f}" x2="{x + 26:.1f}" y2="{y - 4:.1f}" '
                f'stroke="{colour}" stroke-width="2.5"{dash_attr}/>'
            )
            parts.append(_marker(MARKERS[i % len(MARKERS)], x + 13, y - 4, colour, name))
        else:
            parts.append(
                f'<rect x="{x:.1f}" y="{y - 11:.1f}" width="26" height="13" '
                f'fill="url(#{chart_id}-fill{i})" stroke="{INK}" stroke-width="0.5"/>'
            )
        parts.append(
            f'<text x="{x + 32:.1f}" y="{y:.1f}"><title>{_text(name)}</title>{_text(label)}</text>'
        )
        x += width
    parts.append("</g>")
    return "".join(parts)


def _y_axis(frame: _Frame, ticks: Sequence[float], label: str, fmt: Callable[[float], str]) -> str:
    top = ticks[-1] or 1.0
    parts = ['<g class="axis y">']
    for tick in ticks:
        y = frame.y0 - (frame.y0 - frame.y1) * tick / top
        parts.append(
            f'<line x1="{frame.x0}" y1="{y:.1f}" x2="{frame.x1}" y2="{y:.1f}" stroke="{GRID}"/>'
            f'<text x="{frame.x0 - 6}" y="{y + 4:.1f}" text-anchor="end" fill="{MUTED}">'
            f"{_text(fmt(tick))}</text>"
        )
    middle = (frame.y0 + frame.y1) / 2
    parts.append(
        f'<text x="14" y="{middle:.1f}" text-anchor="middle" transform="rotate(-90 14 '
        f'{middle:.1f})" fill="{INK}">{_text(label)}</text>'
    )
    parts.append(
        f'<line x1="{frame.x0}" y1="{frame.y0}" x2="{frame.x1}" y2="{frame.y0}" stroke="{INK}"/>'
    )
    parts.append("</g>")
    return "".join(parts)


def _x_labels(frame: _Frame, labels: Sequence[str], centres: Sequence[float], title: str) -> str:
    """Category labels under the axis, thinned so they never overlap."""
    parts = ['<g class="axis x">']
    if centres:
        slot = (frame.x1 - frame.x0) / max(len(centres), 1)
        longest = max((len(_short(label, 12)) for label in labels), default=1)
        every = max(1, math.ceil((longest * 7.4 + 8) / max(slot, 1)))
        last = len(centres) - 1
        shown = {i for i in range(0, last + 1, every)}
        if last not in shown and last - max(shown) >= every:
            shown.add(last)
        for i, (label, x) in enumerate(zip(labels, centres, strict=False)):
            if i not in shown:
                continue
            parts.append(
                f'<text x="{x:.1f}" y="{frame.y0 + 16}" text-anchor="middle" fill="{MUTED}">'
                f"<title>{_text(label)}</title>{_text(_short(label, 12))}</text>"
            )
    parts.append(
        f'<text x="{(frame.x0 + frame.x1) / 2:.1f}" y="{frame.height - 6}" '
        f'text-anchor="middle" fill="{INK}">{_text(title)}</text>'
    )
    parts.append("</g>")
    return "".join(parts)


def _empty(parts: list[str], frame: _Frame, message: str) -> str:
    parts.append(
        f'<text x="{frame.width / 2:.1f}" y="{frame.height / 2:.1f}" text-anchor="middle" '
        f'fill="{MUTED}">{_text(message)}</text></svg>'
    )
    return "".join(parts)


def line_chart(
    *,
    chart_id: str,
    title: str,
    labels: Sequence[str],
    series: Sequence[Series],
    x_label: str,
    y_label: str,
    width: int = 640,
    height: int = 300,
    integer: bool = False,
    empty: str = "No data in this period",
) -> str:
    """One line per series over the labels (e.g. weeks); a gap where a value is missing."""
    chart_id = _check_id(chart_id)
    labels = [str(label) for label in labels[:MAX_ITEMS]]
    rows = _rows(series)
    legend_rows = 1 + (len(rows) > 3)
    frame = _Frame(width, height, 60, 20, 16 + 16 * legend_rows, 44)
    description = f"{y_label} by {x_label}: " + "; ".join(
        f"{name} from {format_number(_first(v))} to {format_number(_last(v))}"
        for name, v, _ in rows
    )
    parts = _open(chart_id, title, description, width, height)
    present = [v for _, values, _ in rows for v in values if v is not None]
    if not labels or not present:
        return _empty(parts, frame, empty)
    ticks = _ticks(max(present), integer=integer)
    top = ticks[-1]
    step = (frame.x1 - frame.x0) / max(len(labels), 1)
    centres = [frame.x0 + step * (i + 0.5) for i in range(len(labels))]
    parts.append(_y_axis(frame, ticks, y_label, format_number))
    parts.append(_x_labels(frame, labels, centres, x_label))
    for name, values, i in rows:
        colour, dash = PALETTE[i % len(PALETTE)], DASHES[i % len(DASHES)]
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        points = [
            (x, frame.y0 - (frame.y0 - frame.y1) * v / top, v, label)
            for x, v, label in zip(centres, values, labels, strict=False)
            if v is not None
        ]
        runs: list[list[tuple[float, float]]] = [[]]
        for x, v in zip(centres, values, strict=False):
            if v is None:
                runs.append([])
            else:
                runs[-1].append((x, frame.y0 - (frame.y0 - frame.y1) * v / top))
        parts.append(f'<g class="series" aria-label="{_text(name)}">')
        for run in runs:
            if len(run) > 1:
                path = " ".join(f"{x:.1f},{y:.1f}" for x, y in run)
                parts.append(
                    f'<polyline points="{path}" fill="none" stroke="{colour}" '
                    f'stroke-width="2.5"{dash_attr}/>'
                )
        marker = MARKERS[i % len(MARKERS)]
        for x, y, v, label in points:
            parts.append(_marker(marker, x, y, colour, f"{name}, {label}: {format_number(v)}"))
        parts.append("</g>")
    parts.append(_legend(chart_id, rows, frame, lines=True))
    parts.append("</svg>")
    return "".join(parts)


def _first(values: Sequence[float | None]) -> float | None:
    return next((v for v in values if v is not None), None)


def _last(values: Sequence[float | None]) -> float | None:
    return next((v for v in reversed(values) if v is not None), None)


def stacked_bar_chart(
    *,
    chart_id: str,
    title: str,
    labels: Sequence[str],
    series: Sequence[Series],
    x_label: str,
    y_label: str,
    horizontal: bool = False,
    width: int = 640,
    height: int | None = None,
    integer: bool = True,
    empty: str = "No data in this period",
) -> str:
    """Bars per label, each split into its series (e.g. promises kept, kept late, broken).

    ``horizontal`` puts the labels down the left side — for team and channel names, which
    are longer than weeks. Segment values are written inside the bar where they fit, the
    total at its end.
    """
    chart_id = _check_id(chart_id)
    labels = [str(label) for label in labels[:MAX_ITEMS]]
    rows = _rows(series)
    totals = [
        sum((values[i] or 0.0) for _, values, _ in rows if i < len(values))
        for i in range(len(labels))
    ]
    legend_rows = 0 if len(rows) < 2 else 1 + (len(rows) > 3)
    top_margin = 14 + 16 * legend_rows
    if height is None:
        height = max(140, top_margin + 52 + 26 * len(labels)) if horizontal else 300
    left = (
        14 + int(7.4 * min(MAX_LABEL, max((len(_short(x)) for x in labels), default=4)))
        if horizontal
        else 60
    )
    frame = _Frame(width, height, max(left, 60), 44 if horizontal else 20, top_margin, 44)
    description = (
        f"{y_label} by {x_label}: "
        + "; ".join(
            f"{label}: "
            + ", ".join(
                f"{name} {format_number(values[i] if i < len(values) else None)}"
                for name, values, _ in rows
            )
            for i, label in enumerate(labels[:40])
        )
        + ("; …" if len(labels) > 40 else "")
    )
    parts = _open(chart_id, title, description, width, height)
    if not labels or not any(totals):
        return _empty(parts, frame, empty)
    parts.append(_patterns(chart_id, [style for _, _, style in rows]))
    inside = len(rows) > 1  # one series: its total says it; a second label is noise
    ticks = _ticks(max(totals), integer=integer)
    top = ticks[-1]
    if horizontal:
        parts.append(_x_axis_values(frame, ticks, y_label))
        slot = (frame.y0 - frame.y1) / len(labels)
        thick = min(22.0, slot * 0.7)
        span = frame.x1 - frame.x0
        for j, label in enumerate(labels):
            y = frame.y1 + slot * j + (slot - thick) / 2
            parts.append(
                f'<text x="{frame.x0 - 6}" y="{y + thick / 2 + 4:.1f}" text-anchor="end">'
                f"<title>{_text(label)}</title>{_text(_short(label))}</text>"
            )
            x = float(frame.x0)
            for name, values, i in rows:
                v = values[j] if j < len(values) else None
                if not v:
                    continue
                w = span * v / top
                parts.append(
                    _segment(
                        chart_id,
                        i,
                        x=x,
                        y=y,
                        w=w,
                        h=thick,
                        tip=f"{label}, {name}: {format_number(v)}",
                        value=format_number(v) if inside else "",
                    )
                )
                x += w
            known = any(j < len(values) and values[j] is not None for _, values, _ in rows)
            parts.append(
                f'<text x="{x + 4:.1f}" y="{y + thick / 2 + 4:.1f}" fill="{INK}" '
                f'font-weight="600">{_text(format_number(totals[j]) if known else "no data")}'
                "</text>"
            )
    else:
        parts.append(_y_axis(frame, ticks, y_label, format_number))
        slot = (frame.x1 - frame.x0) / len(labels)
        thick = min(48.0, slot * 0.72)
        centres = [frame.x0 + slot * (j + 0.5) for j in range(len(labels))]
        parts.append(_x_labels(frame, labels, centres, x_label))
        span = frame.y0 - frame.y1
        for j, label in enumerate(labels):
            x, y = centres[j] - thick / 2, float(frame.y0)
            for name, values, i in rows:
                v = values[j] if j < len(values) else None
                if not v:
                    continue
                h = span * v / top
                y -= h
                parts.append(
                    _segment(
                        chart_id,
                        i,
                        x=x,
                        y=y,
                        w=thick,
                        h=h,
                        tip=f"{label}, {name}: {format_number(v)}",
                        value=format_number(v) if inside else "",
                    )
                )
            if totals[j] and thick >= 14:
                parts.append(
                    f'<text x="{centres[j]:.1f}" y="{y - 4:.1f}" text-anchor="middle" '
                    f'font-weight="600">{_text(format_number(totals[j]))}</text>'
                )
    parts.append(_legend(chart_id, rows, frame, lines=False))
    parts.append("</svg>")
    return "".join(parts)


def _segment(
    chart_id: str, i: int, *, x: float, y: float, w: float, h: float, tip: str, value: str
) -> str:
    """One bar segment; its value inside, on a white tag so it reads on any fill."""
    rect = (
        f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(w, 0.5):.1f}" height="{max(h, 0.5):.1f}" '
        f'fill="url(#{chart_id}-fill{i})" stroke="#fff" stroke-width="1"/>'
    )
    label = ""
    tag_w = 7 * len(value) + 6
    if value and w >= tag_w + 8 and h >= 16:
        cx, cy = x + w / 2, y + h / 2
        label = (
            f'<rect x="{cx - tag_w / 2:.1f}" y="{cy - 8:.1f}" width="{tag_w}" height="15" '
            f'rx="3" fill="#fff" fill-opacity="0.9"/>'
            f'<text x="{cx:.1f}" y="{cy + 4:.1f}" text-anchor="middle">{_text(value)}</text>'
        )
    return f"<g><title>{_text(tip)}</title>{rect}{label}</g>"


def _x_axis_values(frame: _Frame, ticks: Sequence[float], label: str) -> str:
    """The value axis along the bottom, for horizontal bars."""
    top = ticks[-1] or 1.0
    parts = ['<g class="axis x">']
    for tick in ticks:
        x = frame.x0 + (frame.x1 - frame.x0) * tick / top
        parts.append(
            f'<line x1="{x:.1f}" y1="{frame.y1}" x2="{x:.1f}" y2="{frame.y0}" stroke="{GRID}"/>'
            f'<text x="{x:.1f}" y="{frame.y0 + 16}" text-anchor="middle" fill="{MUTED}">'
            f"{_text(format_number(tick))}</text>"
        )
    parts.append(
        f'<line x1="{frame.x0}" y1="{frame.y1}" x2="{frame.x0}" y2="{frame.y0}" stroke="{INK}"/>'
        f'<text x="{(frame.x0 + frame.x1) / 2:.1f}" y="{frame.height - 6}" '
        f'text-anchor="middle">{_text(label)}</text></g>'
    )
    return "".join(parts)


def bar_chart(
    *,
    chart_id: str,
    title: str,
    labels: Sequence[str],
    values: Sequence[float | None],
    x_label: str,
    y_label: str,
    horizontal: bool = False,
    width: int = 640,
    height: int | None = None,
    integer: bool = True,
    empty: str = "No data in this period",
) -> str:
    """One bar per label, its value written on it."""
    return stacked_bar_chart(
        chart_id=chart_id,
        title=title,
        labels=labels,
        series=[Series(y_label, values)],
        x_label=x_label,
        y_label=y_label,
        horizontal=horizontal,
        width=width,
        height=height,
        integer=integer,
        empty=empty,
    )


def histogram(
    *,
    chart_id: str,
    title: str,
    edges: Sequence[float],
    counts: Sequence[int],
    x_label: str,
    y_label: str = "count",
    unit: str = "",
    width: int = 640,
    height: int = 300,
    empty: str = "No data in this period",
) -> str:
    """Adjacent bars, one per bin ``[edges[i], edges[i+1])``; a last edge of ``inf`` is an
    open bin ("72+ h"). ``len(edges) == len(counts) + 1``."""
    chart_id = _check_id(chart_id)
    if len(edges) != len(counts) + 1:
        raise ValueError(
            f"a histogram needs one edge more than bins: {len(edges)} edges, {len(counts)} counts"
        )
    counts = list(counts[:MAX_ITEMS])
    bins = [_bin_label(edges[i], edges[i + 1], unit) for i in range(len(counts))]
    frame = _Frame(width, height, 60, 20, 20, 44)
    description = f"{y_label} by {x_label}: " + "; ".join(
        f"{b}: {format_number(c)}" for b, c in zip(bins, counts, strict=True)
    )
    parts = _open(chart_id, title, description, width, height)
    if not any(counts):
        return _empty(parts, frame, empty)
    parts.append(_patterns(chart_id, [0]))
    ticks = _ticks(max(counts), integer=True)
    top = ticks[-1]
    parts.append(_y_axis(frame, ticks, y_label, format_number))
    slot = (frame.x1 - frame.x0) / len(counts)
    centres = [frame.x0 + slot * (i + 0.5) for i in range(len(counts))]
    parts.append(_x_labels(frame, bins, centres, x_label))
    for i, count in enumerate(counts):
        h = (frame.y0 - frame.y1) * count / top
        x = frame.x0 + slot * i
        parts.append(
            f"<g><title>{_text(bins[i])}: {_text(format_number(count))}</title>"
            f'<rect x="{x + 1:.1f}" y="{frame.y0 - h:.1f}" width="{max(slot - 2, 1):.1f}" '
            f'height="{h:.1f}" fill="url(#{chart_id}-fill0)"/></g>'
        )
        if count and slot >= 7 * len(format_number(count)):
            parts.append(
                f'<text x="{centres[i]:.1f}" y="{frame.y0 - h - 4:.1f}" text-anchor="middle" '
                f'font-weight="600">{_text(format_number(count))}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def _bin_label(low: float, high: float, unit: str) -> str:
    suffix = f" {unit}" if unit else ""
    if not math.isfinite(high):
        return f"{format_number(low)}+{suffix}"
    return f"{format_number(low)}–{format_number(high)}{suffix}"
