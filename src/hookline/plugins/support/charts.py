"""Line charts drawn straight into a PNG with Pillow: a grid of panels, each with a title,
axes with rounded ticks (whole numbers on an axis of counts, such as epochs), a line (with a
dot per point) per series, and a legend (in a strip above the lines) when a panel holds more
than one series.  A panel's first series is drawn on top and the later ones wider beneath it,
so that series that coincide (a mean and a maximum over one sample) still show each colour.

A figure of eight panels takes about 20 milliseconds to draw (matplotlib needs about a third of a
second to import and a quarter to draw the same), which is what lets ``results.png`` be drawn
at the end of every run without making the run noticeably longer.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

#: Series colours (matplotlib's tab10, which users know from its plots).
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")
PANEL = (360, 280)  # width, height of a panel in pixels
MARGIN = {"left": 62, "right": 14, "top": 30, "bottom": 38}  # around a panel's plot area
LEGEND_ROW = 14  # pixels per legend entry
Series = tuple[str | None, Sequence[tuple[float, float]]]  # (legend label, (x, y) points)
#: A range narrower than this share of its values is drawn flat (ticks around the value).
FLAT = 1e-12


def nice_ticks(low: float, high: float, count: int = 5, *, integer: bool = False) -> list[float]:
    """About ``count`` round values (steps of 1, 2 or 5 times a power of ten) covering
    ``[low, high]``; with ``integer``, whole numbers only (steps of at least 1).  A range too
    narrow to tick at the values' precision (a mean and a maximum of the same samples, one
    rounding apart) is drawn as a flat one."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return []
    if high - low <= FLAT * max(abs(low), abs(high)):
        high = low = max(low, high)
        if integer:
            low, high = low - 1, high + 1
        else:
            low, high = low - 0.5 if low == 0 else low - abs(low) * 0.05, high + (
                0.5 if high == 0 else abs(high) * 0.05
            )
    raw = (high - low) / max(1, count - 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(factor * power for factor in (1, 2, 5, 10) if factor * power >= raw)
    if integer:
        step = max(1, round(step))
    first = math.floor(low / step) * step
    # by index, not by adding steps: a sum that stopped growing would never reach ``high``
    steps = math.ceil((high - first) / step - 1e-9)
    return [round(first + index * step, 12) for index in range(steps + 1)]


def _label(value: float) -> str:
    return f"{value:.4g}"


def draw_panels(
    panels: Sequence[tuple[str, Sequence[Series]]], x_label: str, *, integer_x: bool = False
) -> bytes:
    """A PNG of ``panels`` (title and series each), four to a row; ``integer_x``: the x axis
    counts (epochs, steps), so its ticks are whole numbers."""
    from PIL import Image, ImageDraw, ImageFont

    columns = min(4, max(1, len(panels)))
    rows = max(1, math.ceil(len(panels) / columns))
    width, height = PANEL
    image = Image.new("RGB", (width * columns, height * rows), "white")
    canvas = ImageDraw.Draw(image)
    fonts = ImageFont.load_default(size=11), ImageFont.load_default(size=13)
    for index, (title, series) in enumerate(panels):
        box = (
            (index % columns) * width + MARGIN["left"],
            (index // columns) * height + MARGIN["top"],
            (index % columns + 1) * width - MARGIN["right"],
            (index // columns + 1) * height - MARGIN["bottom"],
        )
        _panel(canvas, box, title, series, x_label, fonts, integer_x)
    buffer = io.BytesIO()
    image.save(buffer, format="png", compress_level=1)
    return buffer.getvalue()


def _panel(
    canvas: Any, box: tuple[int, int, int, int], title: str, series: Sequence[Series],
    x_label: str, fonts: tuple[Any, Any], integer_x: bool,
) -> None:
    """One panel: title, frame, grid and tick labels, the series' lines and a legend."""
    left, top, right, bottom = box
    font, title_font = fonts
    canvas.text(((left + right) / 2, top - 8), title, fill="black", font=title_font, anchor="ms")
    canvas.text(((left + right) / 2, bottom + 30), x_label, fill="black", font=font, anchor="ms")
    points = [point for _, line in series for point in line if math.isfinite(point[1])]
    if not points:
        canvas.rectangle(box, outline="#555555")
        return
    x_ticks = nice_ticks(min(x for x, _ in points), max(x for x, _ in points), integer=integer_x)
    y_ticks = nice_ticks(min(y for _, y in points), max(y for _, y in points))
    x_low, x_span = x_ticks[0], (x_ticks[-1] - x_ticks[0]) or 1.0
    y_low, y_span = y_ticks[0], (y_ticks[-1] - y_ticks[0]) or 1.0
    legend = len(series) > 1 and any(label for label, _ in series)
    # a legend gets a strip of its own at the top, so that it never hides a line
    data_top = top + 8 + LEGEND_ROW * len(series) if legend else top

    def place(x: float, y: float) -> tuple[float, float]:
        return (left + (x - x_low) / x_span * (right - left),
                bottom - (y - y_low) / y_span * (bottom - data_top))

    for tick in x_ticks:
        x = place(tick, y_low)[0]
        canvas.line((x, top, x, bottom), fill="#e6e6e6")
        canvas.text((x, bottom + 14), _label(tick), fill="#333333", font=font, anchor="ms")
    for tick in y_ticks:
        y = place(x_low, tick)[1]
        canvas.line((left, y, right, y), fill="#e6e6e6")
        canvas.text((left - 5, y), _label(tick), fill="#333333", font=font, anchor="rm")
    canvas.rectangle(box, outline="#555555")
    # the last series first and widest, the first on top: coinciding series show every colour
    for number in reversed(range(len(series))):
        colour, width = COLOURS[number % len(COLOURS)], _width(number)
        placed = [place(x, y) for x, y in series[number][1] if math.isfinite(y)]
        if len(placed) > 1:
            canvas.line(placed, fill=colour, width=width, joint="curve")
        radius = width / 2 + 1.5
        for x, y in placed:
            canvas.ellipse((x - radius, y - radius, x + radius, y + radius), fill=colour)
    if legend:
        for number, (label, _) in enumerate(series):
            if label:
                y = top + 10 + number * LEGEND_ROW
                colour, width = COLOURS[number % len(COLOURS)], _width(number)
                canvas.line((right - 58, y, right - 44, y), fill=colour, width=width)
                canvas.text((right - 40, y), label, fill="black", font=font, anchor="lm")


def _width(number: int) -> int:
    """The line width of a panel's series ``number``: the first is the thinnest (drawn on
    top), each later one wider, so that the one beneath shows around it."""
    return 2 + 3 * number
