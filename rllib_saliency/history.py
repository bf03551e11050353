"""The evolution image's history: bounded in memory, on disk and in rendering cost.

Each computation adds one column (a step and the features' mean |attribution|)
per ``{policy}/{target}/{method}``. Keeping every column would make each
computation slower than the last (rewriting and re-rendering all of them) and
memory grow without end; so once a series holds ``2 * max_columns`` columns,
neighbouring pairs are merged (their mean, weighted by how many computations
each stands for), back to ``max_columns``, and from then on each new column
gathers twice as many computations. A long run's image shows the whole run,
evenly spaced, at a coarser time resolution.

On disk (``saliency_history.jsonl`` in the log dir) one JSON line is appended
per computation, so a computation writes O(1) bytes; after a merge, and after
every ``2 * max_columns`` appended lines per series, the file is rewritten
with the columns alone, so it stays bounded too. Reading the file back replays it, so a
run restored into the same log dir keeps its history.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np

HISTORY_FILE = "saliency_history.jsonl"
MAX_COLUMNS = 500


@dataclass
class Series:
    """One ``{policy}/{target}/{method}``'s columns: first step, weight and values of each.

    Every column stands for ``width`` computations (the last one for up to
    ``width``, filling up), so columns stay evenly spaced in time.
    """

    steps: list[int] = field(default_factory=list)
    weights: list[int] = field(default_factory=list)
    values: list[list[float]] = field(default_factory=list)
    width: int = 1

    @property
    def computations(self) -> int:
        return sum(self.weights)

    def add(self, step: int, values: list[float], weight: int = 1) -> None:
        if self.weights and self.weights[-1] + weight <= self.width:
            # The last column is not full yet: fold this into it.
            before = self.weights[-1]
            total = before + weight
            self.values[-1] = [
                (before * a + weight * b) / total for a, b in zip(self.values[-1], values, strict=True)
            ]
            self.weights[-1] = total
            return
        self.steps.append(step)
        self.weights.append(weight)
        self.values.append(values)

    def merge_pairs(self) -> None:
        """Halve the number of columns, each pair becoming its weighted mean at the pair's first step."""
        steps, weights, values = [], [], []
        for i in range(0, len(self.steps), 2):
            pair = slice(i, i + 2)
            w = np.asarray(self.weights[pair], np.float64)
            v = np.asarray(self.values[pair], np.float64)
            steps.append(self.steps[i])
            weights.append(int(w.sum()))
            values.append([float(x) for x in (w[:, None] * v).sum(axis=0) / w.sum()])
        self.steps, self.weights, self.values = steps, weights, values
        self.width *= 2


class EvolutionHistory:
    """All series of one run, mirrored to an append-only file when ``path`` is given."""

    def __init__(self, path: str | None = None, max_columns: int = MAX_COLUMNS) -> None:
        if max_columns < 1:
            raise ValueError(f"max_columns must be a positive integer; got {max_columns!r}.")
        self.path = path
        self.max_columns = max_columns
        self.series: dict[str, Series] = {}
        self.unreadable_lines = 0  # in the file read back
        self._appended = 0  # lines appended since the file was last written whole
        if path is not None and os.path.exists(path):
            self._replay(path)

    def __contains__(self, key: str) -> bool:
        return key in self.series

    def __getitem__(self, key: str) -> Series:
        return self.series[key]

    @property
    def computations(self) -> int:
        """How many computations the longest series stands for (merged columns included)."""
        return max((s.computations for s in self.series.values()), default=0)

    def add(self, key: str, step: int, values: list[float]) -> None:
        series = self.series.setdefault(key, Series())
        series.add(step, values)
        if len(series.steps) >= 2 * self.max_columns:
            series.merge_pairs()
            self._rewrite()
        elif self._appended >= 2 * self.max_columns * len(self.series):
            # Lines folded into open columns pile up: compact the file now and then
            # (amortised O(1) per computation; the file stays bounded).
            self._rewrite()
        elif self.path is not None:
            with open(self.path, "a") as file:
                file.write(_line(key, step, 1, values, series.width))
            self._appended += 1

    def _replay(self, path: str) -> None:
        with open(path) as file:
            for line in file:
                try:
                    entry = json.loads(line)
                    key, step, weight = str(entry["key"]), int(entry["step"]), int(entry["weight"])
                    values = [float(v) for v in entry["values"]]
                    width = int(entry["width"])
                except (ValueError, KeyError, TypeError):
                    # e.g. a line cut short by a crash mid-write: the others still count.
                    self.unreadable_lines += 1
                    continue
                series = self.series.setdefault(key, Series())
                series.width = max(series.width, width)
                series.add(step, values, weight)
                if len(series.steps) >= 2 * self.max_columns:
                    series.merge_pairs()

    def attach(self, path: str) -> None:
        """Mirror to ``path`` from now on, starting with what was gathered so far."""
        self.path = path
        self._rewrite()

    def _rewrite(self) -> None:
        if self.path is None:
            return
        temporary = self.path + ".tmp"
        with open(temporary, "w") as file:
            for key, series in self.series.items():
                for step, weight, values in zip(series.steps, series.weights, series.values, strict=True):
                    file.write(_line(key, step, weight, values, series.width))
        os.replace(temporary, self.path)
        self._appended = 0


def _line(key: str, step: int, weight: int, values: list[float], width: int) -> str:
    entry = {"key": key, "step": int(step), "weight": int(weight), "width": int(width), "values": values}
    return json.dumps(entry) + "\n"
