"""Analytical mode: the functional pass's event counts estimated from statistics of the data.

For fast sweeps the bit-true pass is replaced by statistics of each layer's real integer input
vectors, taken once per workload (from a few samples) and independent of the architecture:

- a histogram of the input values, from which the share of non-zero DAC steps ``rho_p`` of
  any input format and DAC width follows exactly (DAC pulses and cell reads);
- the non-zero bit-planes of (a seeded subset of) the input vectors, packed 64 rows to a
  word. For any design point they give, per (vector, step), which row groups have a driven
  row, for any DAC width, row-group height (crossbar or fragment) and crossbar height: the
  same activity the bit-true pass sees, with the rows' real correlation (rows of one
  receptive field are zero together; a whole vector may be zero). From it come the ADC
  conversions done and skipped under zero-skip and the :class:`StepActivity` the schedule
  needs.

The counts then follow the same formulas as :meth:`sim.macros.CrossbarLayer.matmul`. On the
vectors the statistics were taken from, every count is exact; on other vectors of the same
workload the error is the sampling error of the statistics (see ``docs/analytical.md``).
Derived quantities are cached on the statistics by the design parameters they depend on, so
a sweep over ADC, cell or energy parameters reuses them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sim.config.schema import Arch
from sim.engine.placement import geometry
from sim.kernels import activity as activity_k
from sim.kernels.inputs import step_weights
from sim.macros import Events
from sim.macros.activity import StepActivity

#: Input vectors per layer whose bit-planes are kept (a seeded random subset beyond): bounds
#: the memory and the per-design-point cost of the activity. The subset's standard error on
#: the share of active (step, group) cycles is at most ``0.5 / sqrt(MAX_PLANE_VECTORS)``
#: (0.004 absolute) when vectors are independent.
MAX_PLANE_VECTORS = 16384


@dataclass(frozen=True, kw_only=True)
class InputHistogram:
    """Statistics of one layer's integer input vectors ``(vectors, K)`` (see module doc).

    ``counts`` counts each input value (values ``offset ...``) over all vectors; ``planes``
    holds the packed non-zero bit-planes ``(V, plane_bits, ceil(K / 64))`` of ``V`` of them
    (all of them up to ``max_vectors``).
    """

    offset: int
    counts: np.ndarray
    k: int
    vectors: int
    planes: np.ndarray
    plane_bits: int
    #: Derived figures already computed, by the design parameters they depend on: a sweep
    #: over ADC or cell parameters reuses them.
    _densities: dict = field(default_factory=dict, compare=False, repr=False)
    _activity: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, x: np.ndarray, *, max_vectors: int = MAX_PLANE_VECTORS,
           seed: int = 0) -> InputHistogram:
        """The statistics of integer input vectors ``x`` ``(vectors, K)``.

        With more than ``max_vectors`` vectors, the bit-planes of a random subset of
        ``max_vectors`` of them (drawn from ``seed``) are kept; the value histogram counts all.
        """
        x = np.asarray(x, dtype=np.int64)
        if x.ndim != 2:
            raise ValueError(f"input statistics need a (vectors, K) matrix, got shape "
                             f"{x.shape}")
        flat = x.ravel()
        lo = int(flat.min()) if flat.size else 0
        hi = int(flat.max()) if flat.size else 0
        m = x.shape[0]
        if m > max_vectors:
            rows = np.sort(np.random.default_rng(seed).choice(m, max_vectors, replace=False))
            sample = x[rows]
        else:
            sample = x
        # Planes as wide as the whole data's range needs (a subset may lack its sign).
        nb = activity_k.plane_bits(lo, hi)
        return cls(offset=lo, counts=np.bincount(flat - lo), k=x.shape[1], vectors=m,
                   planes=activity_k.pack_planes(sample, nb), plane_bits=nb)

    @property
    def total(self) -> int:
        """Number of inputs counted."""
        return int(self.counts.sum())

    @property
    def plane_vectors(self) -> int:
        """Vectors whose bit-planes are kept."""
        return int(self.planes.shape[0])


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


def step_planes(hist: InputHistogram, bits: int, dac_bits: int, signed: bool) -> np.ndarray:
    """Which stored bit-planes feed each DAC step: bool ``(P, plane_bits)``.

    Step ``p`` of a ``bits``-bit input carries bits ``dac_bits p ..`` of the magnitude (the
    low ``bits - 1`` bits of the two's complement when signed), and a signed input has one
    more step for the sign bit (see :mod:`sim.kernels.inputs`). Bits above the stored planes
    repeat the top plane (sign extension) when the inputs have negative values, else are 0.
    """
    hi = hist.offset + hist.counts.shape[0] - 1
    lo_ok, hi_ok = ((-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed
                    else (0, (1 << bits) - 1))
    if hist.offset < lo_ok or hi > hi_ok:
        raise ValueError(f"inputs outside the {'signed' if signed else 'unsigned'} {bits}-bit "
                         f"range [{lo_ok}, {hi_ok}]: found [{hist.offset}, {hi}]")
    nb = hist.plane_bits
    negative = hist.offset < 0
    mag = bits - 1 if signed else bits
    n_mag = -(-mag // dac_bits)
    out = np.zeros((n_mag + (1 if signed else 0), nb), dtype=np.bool_)
    for p in range(n_mag):
        for b in range(dac_bits * p, min(dac_bits * (p + 1), mag)):
            if b < nb:
                out[p, b] = True
            elif negative:
                out[p, nb - 1] = True
    if signed and negative:
        out[n_mag, nb - 1] = True
    return out


def layer_activity(hist: InputHistogram, arch: Arch) -> StepActivity:
    """The :class:`StepActivity` of the stored vectors on ``arch``'s crossbars with
    zero-skip: active row groups per (vector, step), from the packed bit-planes (cached)."""
    xb, inp = arch.crossbar, arch.inputs
    gpc = xb.rows // xb.group_rows
    key = (inp.bits, xb.dac.bits, inp.signed, xb.group_rows, gpc)
    if key not in hist._activity:
        planes = step_planes(hist, inp.bits, xb.dac.bits, inp.signed)
        counts = activity_k.planes_tile_counts(hist.planes, planes, hist.k, xb.group_rows,
                                               gpc)
        hist_max, hist_tile = activity_k.tile_histograms(counts, gpc)
        hist._activity[key] = StepActivity(
            steps=planes.shape[0], row_tiles=counts.shape[0], groups_per_crossbar=gpc,
            vectors=hist.plane_vectors, hist_max=hist_max, hist_tile=hist_tile)
    return hist._activity[key]


def estimate_events(arch: Arch, k: int, n: int, vectors: int, hist: InputHistogram) -> Events:
    """Events of ``vectors`` input vectors through a ``K x N`` layer, from ``hist``.

    ``Events.activity`` is the per-step activity of the stored vectors scaled to ``vectors``.
    """
    if hist.k != k:
        raise ValueError(f"input statistics of {hist.k} rows used for a layer of K = {k}")
    g = geometry(arch, k, n)
    r = arch.crossbar.group_rows
    gpc = arch.crossbar.rows // r
    rho = step_density(hist, arch.inputs.bits, arch.crossbar.dac.bits, arch.inputs.signed)
    total = g.steps * g.row_groups * vectors
    ev = Events()
    if arch.inputs.zero_skip:
        act = layer_activity(hist, arch)
        per_vector_step = act.hist_tile @ np.arange(gpc + 1)  # active groups, per row tile
        share = per_vector_step.sum() / max(act.vectors * g.steps * g.row_groups, 1)
        done = share * total
        ev.activity = act.scaled(vectors)
    else:
        done = total
        ev.activity = StepActivity.dense(g.steps, g.row_groups, gpc, vectors)
    ev.adc_conversions = round(done * g.columns_total)
    ev.adc_conversions_skipped = round(total * g.columns_total) - ev.adc_conversions
    driven = vectors * k * rho.sum()
    ev.dac_pulses = round(driven * g.col_tiles)
    ev.cell_reads = round(driven * g.columns_total)
    ev.set_fixed(arch, vectors, k, n, g.col_tiles, g.row_groups * r, g.columns_total, g.steps)
    return ev
