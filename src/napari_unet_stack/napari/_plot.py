"""A small live line plot painted with QPainter (no plotting library needed).

One panel per series, stacked, each with its own y range, so training loss and
validation Dice (0..1) are both readable as they grow.
"""

from __future__ import annotations

import math

from qtpy.QtCore import QPointF, QRectF, Qt
from qtpy.QtGui import QColor, QPainter, QPainterPath, QPen
from qtpy.QtWidgets import QSizePolicy, QWidget

__all__ = ["CurvePlot"]


class CurvePlot(QWidget):
    """Stacked line plots; ``append(name, x, y)`` adds a point and repaints.

    Parameters
    ----------
    series : dict
        name -> (colour, y range or None for automatic).
    """

    def __init__(self, series: dict[str, tuple[str, tuple[float, float] | None]], parent=None):
        super().__init__(parent)
        self.series = dict(series)
        self.points: dict[str, list[tuple[float, float]]] = {name: [] for name in series}
        self.x_max = 1.0
        self.setMinimumHeight(70 * len(series))
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)

    def clear(self, x_max: float = 1.0) -> None:
        for points in self.points.values():
            points.clear()
        self.x_max = max(float(x_max), 1.0)
        self.update()

    def append(self, name: str, x: float, y: float) -> None:
        if y is None or not math.isfinite(y):
            return
        self.points[name].append((float(x), float(y)))
        self.update()

    def _y_range(self, name: str) -> tuple[float, float]:
        fixed = self.series[name][1]
        if fixed is not None:
            return fixed
        ys = [y for _x, y in self.points[name]]
        if not ys:
            return 0.0, 1.0
        low, high = min(ys), max(ys)
        return (low, high) if high > low else (low - 0.5, high + 0.5)

    def paintEvent(self, _event) -> None:  # Qt's name
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        text_color = self.palette().color(self.foregroundRole())
        n = len(self.series)
        height = self.height() / n
        for i, (name, (color, _range)) in enumerate(self.series.items()):
            frame = QRectF(4, i * height + 16, self.width() - 8, height - 20)
            painter.setPen(QPen(QColor(128, 128, 128), 1))
            painter.drawRect(frame)
            points = self.points[name]
            low, high = self._y_range(name)
            last = f" {points[-1][1]:.3f}" if points else ""
            painter.setPen(text_color)
            painter.drawText(QRectF(frame.left(), i * height, frame.width(), 16), Qt.AlignmentFlag.AlignLeft,
                             f"{name}{last}")
            painter.drawText(QRectF(frame.left(), i * height, frame.width(), 16), Qt.AlignmentFlag.AlignRight,
                             f"{low:.2g} - {high:.2g}")
            if not points:
                continue
            path = QPainterPath()
            for k, (x, y) in enumerate(points):
                px = frame.left() + frame.width() * min(x / self.x_max, 1.0)
                py = frame.bottom() - frame.height() * (y - low) / (high - low)
                if k == 0:
                    path.moveTo(QPointF(px, py))
                else:
                    path.lineTo(QPointF(px, py))
            painter.setPen(QPen(QColor(color), 1.5))
            painter.drawPath(path)
            if len(points) == 1:
                painter.drawEllipse(path.currentPosition(), 2, 2)
        painter.end()
