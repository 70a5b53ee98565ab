"""Analytical mode: the functional pass's event counts estimated from statistics of the data.

For fast sweeps the bit-true pass is replaced by a histogram of each layer's integer inputs
(taken once, from a few samples). For any design point the share of non-zero DAC steps
``rho_p`` follows exactly from the histogram; the share of (row group, step) cycles with at
least one driven row follows from ``rho_p`` assuming rows are independent,
``1 - (1 - rho_p)**rows``. The counts then follow the same formulas as
:meth:`sim.macros.CrossbarLayer.matmul`. Everything except zero-skipping is exact given the
histogram; ``tests/test_analytical.py`` holds both modes together on the same data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sim.config.schema import Arch
from sim.engine.placement import geometry
from sim.kernels.inputs import step_weights
from sim.macros import Events


@dataclass(frozen=True, kw_only=True)
class InputHistogram:
    """Counts of each integer input value of one layer (values ``offset ...``)."""

    offset: int
    counts: np.ndarray
    #: Step densities already computed, by (bits, dac_bits, signed): a sweep over ADC or
    #: crossbar parameters reuses them.
    _densities: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, x: np.ndarray) -> InputHistogram:
        """The histogram of integer array ``x``."""
        x = np.asarray(x, dtype=np.int64).ravel()
        lo = int(x.min()) if x.size else 0
        return cls(offset=lo, counts=np.bincount(x - lo))

    @property
    def total(self) -> int:
        """Number of inputs counted."""
        return int(self.counts.sum())


def step_density(hist: InputHistogram, bits: int, dac_bits: int, signed: bool) -> np.ndarray:
    """Share of inputs whose DAC step ``p`` is non-zero, for every step ``p``."""
    key = (bits, dac_bits, signed)
    if key not in hist._densities:
        hist._densities[key] = _step_density(hist, bits, dac_bits, signed)
    return hist._densities[key]


def _step_density(hist: InputHistogram, bits: int, dac_bits: int, signed: bool) -> np.ndarray:
    values = np.arange(hist.counts.shape[0], dtype=np.int64) + hist.offset
    n = len(step_weights(bits, dac_bits, signed))
    mag = bits - 1 if signed else bits
    low = values & ((1 << mag) - 1)
    mask = (1 << dac_bits) - 1
    n_mag = n - 1 if signed else n
    dens = np.empty(n)
    total = max(hist.total, 1)
    for p in range(n_mag):
        dens[p] = hist.counts[((low >> (dac_bits * p)) & mask) != 0].sum() / total
    if signed:
        dens[n_mag] = hist.counts[values < 0].sum() / total
    return dens


def estimate_events(arch: Arch, k: int, n: int, vectors: int, hist: InputHistogram) -> Events:
    """Events of ``vectors`` input vectors through a ``K x N`` layer, from ``hist``."""
    g = geometry(arch, k, n)
    rho = step_density(hist, arch.inputs.bits, arch.crossbar.dac.bits, arch.inputs.signed)
    r = arch.crossbar.group_rows
    rows = np.full(g.row_groups, r)
    rows[-1] = k - r * (g.row_groups - 1)
    # (steps, groups): share of cycles with at least one driven row, rows independent
    active = 1.0 - (1.0 - rho[:, None]) ** rows[None, :]
    total = g.steps * g.row_groups * vectors
    done = active.sum() * vectors if arch.inputs.zero_skip else total
    ev = Events()
    ev.adc_conversions = round(done * g.columns_total)
    ev.adc_conversions_skipped = round((total - done) * g.columns_total)
    driven = vectors * k * rho.sum()
    ev.dac_pulses = round(driven * g.col_tiles)
    ev.cell_reads = round(driven * g.columns_total)
    ev.set_fixed(arch, vectors, k, n, g.col_tiles, g.row_groups * r, g.columns_total, g.steps)
    return ev
