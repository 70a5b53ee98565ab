"""Per-cycle trace of one layer, driven by its real integer inputs.

Each row is one crossbar step of one input vector on one copy of the layer's weights: when it
starts (digital cycle), how many rows it drives, how many row groups are active, and how many
conversions it makes or skips. Vectors are dealt round-robin to the copies, and each copy runs
its vectors back to back; with ``inputs.zero_skip`` a step whose groups are all inactive is
skipped and takes no time.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from sim.config.schema import Arch
from sim.engine.placement import geometry
from sim.engine.timing import step_cycles
from sim.fileio import atomic_write
from sim.kernels.inputs import group_activity, split_inputs

COLUMNS = ("cycle", "vector", "copy", "step", "rows_driven", "active_groups", "conversions",
           "conversions_skipped")


def layer_trace(arch: Arch, x: np.ndarray, n: int, duplicates: int = 1,
                start_cycle: int = 0) -> list[tuple[int, ...]]:
    """Trace rows (see :data:`COLUMNS`) of integer inputs ``x`` (vectors, K) on a K x N layer."""
    x = np.asarray(x)
    k = x.shape[1]
    g = geometry(arch, k, n)
    r = arch.crossbar.group_rows
    steps = split_inputs(x, arch.inputs.bits, arch.crossbar.dac.bits, arch.inputs.signed,
                         g.row_groups * r)
    active, nnz = group_activity(steps, r)  # (G, P, M)
    xb = arch.crossbar
    cols = min(xb.columns, g.data_columns) + (1 if xb.unit_column else 0)
    sc = step_cycles(arch, cols)
    skip = arch.inputs.zero_skip
    clock = [start_cycle] * duplicates
    active_groups = active.sum(0)  # (P, M): row groups with a driven row
    driven_rows = nnz.sum(0)
    rows = []
    for v in range(x.shape[0]):
        copy = v % duplicates
        for p in range(g.steps):
            act = int(active_groups[p, v])
            executed = act > 0 or not skip
            groups_converted = (act if skip else g.row_groups)
            rows.append((clock[copy], v, copy, p, int(driven_rows[p, v]), act,
                         groups_converted * g.columns_total,
                         (g.row_groups - groups_converted) * g.columns_total))
            if executed:
                clock[copy] += sc
    rows.sort(key=lambda row: (row[0], row[2], row[1], row[3]))
    return rows


def write_trace(path: str | Path, rows: list[tuple[int, ...]]) -> Path:
    """Write trace rows as CSV with a header."""
    def write(fh) -> None:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        w.writerows(rows)

    return atomic_write(path, write, text=True)  # a full disk never leaves half a trace
