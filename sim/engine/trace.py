"""Per-cycle trace of one layer, driven by its real integer inputs.

Each row is one crossbar step of one input vector on one copy of the layer's weights: when it
starts (digital cycle), how many rows it drives, how many row groups are active, and how many
conversions it makes or skips. Vectors are dealt round-robin to the copies, and each copy runs
its vectors back to back. A step lasts what the schedule says a step of that activity lasts
(:func:`sim.engine.timing.step_cycles`: the crossbar read, or the conversions of every active
row group by the crossbar's ADCs); with ``inputs.zero_skip`` a step in which every row group
is idle is skipped and takes no time (``shared_step``), or each row tile skips its own idle
steps (``per_crossbar``). The schedule reads the same activity as histograms, so the two
agree on the cycles a layer takes (``tests/test_schedule.py``).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from sim.config.schema import Arch
from sim.engine.placement import geometry
from sim.engine.timing import crossbar_columns, groups_per_crossbar, step_cycles_by_groups
from sim.fileio import atomic_write
from sim.kernels.inputs import group_activity, split_inputs

COLUMNS = ("cycle", "vector", "copy", "step", "rows_driven", "active_groups", "conversions",
           "conversions_skipped")


def layer_trace(arch: Arch, x: np.ndarray, n: int, duplicates: int = 1,
                start_cycle: int = 0) -> list[tuple[int, ...]]:
    """Trace rows (see :data:`COLUMNS`) of integer inputs ``x`` (vectors, K) on a K x N layer."""
    return _trace(arch, x, n, duplicates, start_cycle)[0]


def trace_end_cycle(arch: Arch, x: np.ndarray, n: int, duplicates: int = 1,
                    start_cycle: int = 0) -> int:
    """The cycle at which the last copy of the layer finishes its last step."""
    return _trace(arch, x, n, duplicates, start_cycle)[1]


def _trace(arch: Arch, x: np.ndarray, n: int, duplicates: int, start_cycle: int):
    """Rows and end cycle. A step lasts :func:`~sim.engine.timing.step_cycles` of the active
    groups of its busiest row tile (``shared_step``: one step clock per copy, a step skipped
    only when every row group of it is idle), or each row tile keeps its own clock and skips
    its own idle steps (``inputs.zero_skip_timing: per_crossbar``; the row's cycle is then
    when the first of its active row tiles starts it)."""
    x = np.asarray(x)
    k = x.shape[1]
    g = geometry(arch, k, n)
    xb = arch.crossbar
    r = xb.group_rows
    gpc = groups_per_crossbar(arch)
    steps = split_inputs(x, arch.inputs.bits, xb.dac.bits, arch.inputs.signed,
                         g.row_groups * r)
    active, nnz = group_activity(steps, r)  # (G, P, M)
    skip = arch.inputs.zero_skip
    per_crossbar = arch.inputs.zero_skip_timing == "per_crossbar"
    sc = step_cycles_by_groups(arch, crossbar_columns(arch, g), gpc)
    # Active groups per (row tile, step, vector); without zero-skip every group converts.
    groups_in_tile = np.array([min(gpc, g.row_groups - t * gpc) for t in range(g.row_tiles)])
    tile_of = np.arange(g.row_groups) // gpc
    per_tile = np.zeros((g.row_tiles,) + active.shape[1:], np.int64)
    np.add.at(per_tile, tile_of, active.astype(np.int64))
    converting = per_tile if skip else np.broadcast_to(
        groups_in_tile[:, None, None], per_tile.shape)
    busiest = converting.max(axis=0)  # (P, M)
    active_groups = active.sum(0)  # (P, M): row groups with a driven row
    driven_rows = nnz.sum(0)
    clock = np.full((duplicates, g.row_tiles), start_cycle, dtype=np.int64)
    rows = []
    for v in range(x.shape[0]):
        copy = v % duplicates
        for p in range(g.steps):
            conv = int(converting[:, p, v].sum())
            if per_crossbar:
                on = converting[:, p, v] > 0
                cycle = int(clock[copy, on].min()) if on.any() else int(clock[copy].max())
                clock[copy] += sc[converting[:, p, v]]
            else:
                cycle = int(clock[copy, 0])
                clock[copy] += sc[busiest[p, v]]
            rows.append((cycle, v, copy, p, int(driven_rows[p, v]), int(active_groups[p, v]),
                         conv * g.columns_total, (g.row_groups - conv) * g.columns_total))
    rows.sort(key=lambda row: (row[0], row[2], row[1], row[3]))
    return rows, int(clock.max()) if x.shape[0] else start_cycle


def write_trace(path: str | Path, rows: list[tuple[int, ...]]) -> Path:
    """Write trace rows as CSV with a header."""
    def write(fh) -> None:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        w.writerows(rows)

    return atomic_write(path, write, text=True)  # a full disk never leaves half a trace
