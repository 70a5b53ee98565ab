"""Per-step activity of one layer's crossbars: what the schedule needs to time zero-skipping.

The functional pass (bit-true) and the analytical mode both produce a :class:`StepActivity`
per layer; the schedule (:mod:`sim.engine.timing`) consumes it. It is the contract between
the two sides, so it lives in one place.

Vocabulary. A layer's ``K`` rows are cut into row groups of ``crossbar.group_rows`` rows (a
whole crossbar, or one fragment); a crossbar holds ``groups_per_crossbar`` of them, and the
layer needs ``row_tiles`` crossbars along ``K`` (per column tile; every column tile sees the
same inputs, so the same activity). For one input vector and one DAC step, a row group is
*active* when at least one of its rows gets a non-zero DAC input; an inactive group is
skipped under ``inputs.zero_skip`` (no rows driven, no conversions).

Two histograms over the ``vectors x steps`` (vector, step) pairs the layer ran:

- ``hist_max[g]``: pairs in which the busiest row tile had ``g`` active row groups. With one
  step clock shared by all row tiles (the step ends when its slowest crossbar ends), the
  step's time is a function of this ``g``; ``g = 0`` means every row tile skipped the step.
- ``hist_tile[r, g]``: pairs in which row tile ``r`` had ``g`` active row groups, for designs
  whose crossbars skip independently (per-crossbar shift control).

Without zero-skip every pair counts as fully active (``g`` = the groups of the tile).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class StepActivity:
    """Histograms of active row groups per (vector, step), accumulated over calls."""

    steps: int
    row_tiles: int
    groups_per_crossbar: int
    vectors: int
    #: ``(groups_per_crossbar + 1,)`` int64: (vector, step) pairs by the busiest tile's count.
    hist_max: np.ndarray
    #: ``(row_tiles, groups_per_crossbar + 1)`` int64: (vector, step) pairs by each tile's count.
    hist_tile: np.ndarray

    @classmethod
    def empty(cls, steps: int, row_tiles: int, groups_per_crossbar: int) -> StepActivity:
        """No vectors yet."""
        g = groups_per_crossbar
        return cls(steps=steps, row_tiles=row_tiles, groups_per_crossbar=g, vectors=0,
                   hist_max=np.zeros(g + 1, np.int64),
                   hist_tile=np.zeros((row_tiles, g + 1), np.int64))

    @classmethod
    def dense(cls, steps: int, groups: int, groups_per_crossbar: int,
              vectors: int) -> StepActivity:
        """Every row group active at every step (no zero-skip), for ``groups`` row groups."""
        g = groups_per_crossbar
        row_tiles = -(-groups // g)
        act = cls.empty(steps, row_tiles, g)
        act.vectors = vectors
        per_tile = [min(g, groups - r * g) for r in range(row_tiles)]
        act.hist_max[max(per_tile)] = vectors * steps
        for r, n in enumerate(per_tile):
            act.hist_tile[r, n] = vectors * steps
        return act

    @classmethod
    def from_active(cls, active: np.ndarray, groups_per_crossbar: int) -> StepActivity:
        """Reference construction from a boolean ``(vectors, steps, groups)`` activity array.

        Slow and obvious: the oracle for faster producers.
        """
        active = np.asarray(active, dtype=bool)
        m, steps, groups = active.shape
        g = groups_per_crossbar
        row_tiles = -(-groups // g)
        act = cls.empty(steps, row_tiles, g)
        act.vectors = m
        per_tile = np.zeros((m, steps, row_tiles), np.int64)
        for r in range(row_tiles):
            per_tile[:, :, r] = active[:, :, r * g:(r + 1) * g].sum(axis=2)
            act.hist_tile[r] = np.bincount(per_tile[:, :, r].ravel(), minlength=g + 1)
        act.hist_max[:] = np.bincount(per_tile.max(axis=2).ravel(), minlength=g + 1)
        return act

    def add(self, other: StepActivity) -> None:
        """Accumulate ``other`` (same layer geometry) into this record."""
        if (other.steps, other.row_tiles, other.groups_per_crossbar) != (
                self.steps, self.row_tiles, self.groups_per_crossbar):
            raise ValueError("StepActivity.add: different layer geometry")
        self.vectors += other.vectors
        self.hist_max += other.hist_max
        self.hist_tile += other.hist_tile

    def scaled(self, vectors: int) -> StepActivity:
        """The same distribution for ``vectors`` vectors (e.g. per inference from a batch)."""
        f = vectors / self.vectors if self.vectors else 0.0
        out = StepActivity.empty(self.steps, self.row_tiles, self.groups_per_crossbar)
        out.vectors = vectors
        out.hist_max = np.rint(self.hist_max * f).astype(np.int64)
        out.hist_tile = np.rint(self.hist_tile * f).astype(np.int64)
        return out

    @property
    def executed_fraction(self) -> float:
        """Share of (vector, step) pairs in which at least one row tile ran (all tiles share
        the step clock)."""
        total = int(self.hist_max.sum())
        return 1.0 - int(self.hist_max[0]) / total if total else 1.0

    def to_json(self) -> dict:
        """Plain-JSON form (for ``result.json``)."""
        return {"steps": self.steps, "row_tiles": self.row_tiles,
                "groups_per_crossbar": self.groups_per_crossbar, "vectors": self.vectors,
                "hist_max": self.hist_max.tolist(), "hist_tile": self.hist_tile.tolist()}
