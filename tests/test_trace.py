"""Regression golden: the per-cycle trace of one small layer.

``tests/golden/trace_small.csv`` was produced by this file's ``_small_trace()`` (run
``python tests/test_trace.py`` to rewrite it) on the commit that added it; it is a regression
golden (our own output, checked by hand once: 3 vectors x 4 steps on 2 copies of a 20 x 3 layer
of the test arch, zero-skip on), not a published number.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from sim.engine.trace import COLUMNS, layer_trace, write_trace

GOLDEN = Path(__file__).parent / "golden" / "trace_small.csv"


def _small_trace():
    from conftest import ArchFactory

    arch = ArchFactory()(**{"inputs.zero_skip": True, "inputs.bits": 4,
                            "inputs.signed": False})
    x = np.array([[0] * 20, list(range(4)) * 5, [1, 0] * 10])  # all-zero, dense, sparse
    return layer_trace(arch, x, n=3, duplicates=2)


def test_small_layer_trace_matches_golden():
    rows = _small_trace()
    with GOLDEN.open() as fh:
        reader = csv.reader(fh)
        assert tuple(next(reader)) == COLUMNS
        golden = [tuple(int(v) for v in row) for row in reader]
    assert rows == golden


def test_trace_skips_zero_steps():
    rows = _small_trace()
    zero = [r for r in rows if r[1] == 0]
    assert all(r[5] == 0 and r[6] == 0 for r in zero)  # nothing active, nothing converted
    assert len({r[0] for r in zero}) == 1  # skipped steps take no time


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    write_trace(GOLDEN, _small_trace())
    print(f"wrote {GOLDEN}")
