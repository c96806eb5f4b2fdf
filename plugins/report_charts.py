"""Charts for the quality report as inline SVG: no JavaScript, no external files, and the same
numbers always give the same bytes. Every label is escaped here; callers pass plain text."""

from __future__ import annotations

from html import escape

import numpy as np

WIDTH = 720
LABEL_WIDTH = 250
ROW_HEIGHT = 22
PLOT_HEIGHT, BASE = 170, 200
"""Column charts: the tallest column's height, and the y of their baseline."""
FONT = 'font-family="system-ui, sans-serif" font-size="12"'
LENGTH_EDGES = (0, 1, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000,
                100_000)
"""Bin edges for text lengths in characters: empty texts, then steps of 1, 2, 5."""


def bar_chart(title: str, rows: list[tuple[str, list[int | None]]],
              series: list[tuple[str, str]]) -> str:
    """Horizontal bars, one per row, its segments stacked in the order of `series`
    ((name, colour) pairs) and labelled with their counts; None leaves a segment out."""
    largest = max([sum(v or 0 for v in values) for _, values in rows] + [1])
    parts = [_legend(series)]
    for number, (label, values) in enumerate(rows):
        present = [(name, colour, value) for (name, colour), value in zip(series, values)
                   if value is not None]
        parts.append(_bar(28 + number * ROW_HEIGHT, label, present, largest))
    return _svg(title, 36 + len(rows) * ROW_HEIGHT, parts)


def _bar(y: int, label: str, segments: list[tuple[str, str, int]], largest: int) -> str:
    parts = [_text(LABEL_WIDTH - 8, y + 15, label, anchor="end")]
    x = float(LABEL_WIDTH)
    for name, colour, value in segments:
        width = (WIDTH - LABEL_WIDTH - 210) * value / largest
        parts.append(_rect(x, y + 3, width, ROW_HEIGHT - 6, colour, f"{label}: {value:,} {name}"))
        x += width
    counts = " · ".join(f"{value:,} {name}" for name, _, value in segments)
    return "".join(parts) + _text(x + 6, y + 15, counts)


def column_chart(title: str, labels: list[str], series: list[tuple[str, str, list[int]]],
                 share: bool = True) -> str:
    """Vertical columns, grouped per label (a histogram's bins), one per series
    ((name, colour, counts)). With `share`, heights are each series' share of its own total,
    so a small series stays as readable as a large one."""
    heights = [_shares(counts) if share else [float(c) for c in counts] for _, _, counts in series]
    top = max([max(h, default=0.0) for h in heights] + [1e-9])
    slot = min(64.0, (WIDTH - 60) / max(len(labels), 1))
    width = max(2.0, (slot - 6) / max(len(series), 1))
    parts = [_legend([(name, colour) for name, colour, _ in series])]
    for index, label in enumerate(labels):
        x = 50 + index * slot
        parts.append(_text(x + slot / 2, BASE + 16, label, anchor="middle", size=10))
        for offset, ((name, colour, counts), values) in enumerate(zip(series, heights)):
            tip = f"{name}, {label}: {counts[index]:,}" + (
                f" ({100 * values[index]:.1f}%)" if share else "")
            height = PLOT_HEIGHT * values[index] / top
            parts.append(_rect(x + 3 + offset * width, BASE - height, width, height, colour, tip))
    return _svg(title, BASE + 26, parts + _axis(f"{100 * top:.0f}%" if share else f"{top:,.0f}"))


def _axis(top_label: str) -> list[str]:
    return [_text(44, BASE - PLOT_HEIGHT + 4, top_label, anchor="end", size=10),
            _text(44, BASE, "0", anchor="end", size=10),
            f'<line x1="48" y1="{BASE}" x2="{WIDTH - 8}" y2="{BASE}" stroke="#888"/>']


def length_bins(groups: list[np.ndarray]) -> tuple[list[str], list[list[int]]]:
    """Bin labels (each bin's lowest length) and per-group counts over LENGTH_EDGES, without
    empty bins at either end."""
    edges = np.array(LENGTH_EDGES)
    counts = [np.bincount(np.searchsorted(edges, values, side="right") - 1,
                          minlength=len(edges)).tolist() for values in groups]
    used = [i for i in range(len(edges)) if any(c[i] for c in counts)] or [0]
    first, last = used[0], used[-1]
    return ([_bin_label(i) for i in range(first, last + 1)],
            [c[first:last + 1] for c in counts])


def _bin_label(index: int) -> str:
    if index == 0:
        return "empty"
    return _short(LENGTH_EDGES[index]) + ("+" if index == len(LENGTH_EDGES) - 1 else "")


def _short(number: int) -> str:
    return f"{number // 1000}k" if number >= 1000 and number % 1000 == 0 else str(number)


def _shares(counts: list[int]) -> list[float]:
    total = sum(counts)
    return [count / total if total else 0.0 for count in counts]


def _svg(title: str, height: int, parts: list[str]) -> str:
    return (f'<svg viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" role="img"'
            f' aria-label="{escape(title)}" {FONT}><title>{escape(title)}</title>'
            + "".join(parts) + "</svg>")


def _legend(series: list[tuple[str, str]]) -> str:
    parts, x = [], float(LABEL_WIDTH)
    for name, colour in series:
        parts.append(f'<rect x="{x:.1f}" y="6" width="10" height="10" fill="{colour}"/>')
        parts.append(_text(x + 14, 15, name))
        x += 24 + 7 * len(name)
    return "".join(parts)


def _rect(x: float, y: float, width: float, height: float, colour: str, tip: str) -> str:
    return (f'<rect x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" height="{height:.1f}"'
            f' fill="{colour}"><title>{escape(tip)}</title></rect>')


def _text(x: float, y: float, text: str, anchor: str = "start", size: int = 12) -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}">'
            f'{escape(text)}</text>')


def line_chart(title: str, series: list[tuple[str, str, list[tuple[float, float]]]]) -> str:
    """Lines through (x, y) points, one per series ((name, colour, points)), on shared axes
    from 0 (or the lowest x) to the largest x and from the lowest to the highest y."""
    points = [point for _, _, line in series for point in line] or [(0.0, 0.0)]
    low_x, high_x = min(x for x, _ in points), max(x for x, _ in points)
    low_y, high_y = min(y for _, y in points), max(y for _, y in points)
    span_x, span_y = (high_x - low_x) or 1.0, (high_y - low_y) or 1.0

    def at(x: float, y: float) -> str:
        return (f"{50 + (WIDTH - 70) * (x - low_x) / span_x:.1f},"
                f"{BASE - PLOT_HEIGHT * (y - low_y) / span_y:.1f}")

    parts = [_legend([(name, colour) for name, colour, _ in series])]
    for name, colour, line in series:
        if len(line) > 1:
            parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="'
                         + " ".join(at(x, y) for x, y in line) + '"/>')
        for x, y in line:
            x_at, y_at = at(x, y).split(",")
            parts.append(f'<circle cx="{x_at}" cy="{y_at}" r="2.5" fill="{colour}">'
                         f'<title>{escape(f"{name}, step {x:g}: {y:.4g}")}</title></circle>')
    axis = _axis(f"{high_y:.3g}")
    axis[1] = _text(44, BASE, f"{low_y:.3g}", anchor="end", size=10)
    axis += [_text(50, BASE + 16, f"{low_x:g}", size=10),
             _text(WIDTH - 20, BASE + 16, f"step {high_x:g}", anchor="end", size=10)]
    return _svg(title, BASE + 26, parts + axis)
