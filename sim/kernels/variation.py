"""Device non-idealities drawn from explicit random generators.

Draws use ``numpy.random.Generator`` objects made from ``numpy.random.SeedSequence`` children
by the caller: the same seed gives the same bits whatever the thread count, which numba's
per-thread ``np.random`` state inside ``prange`` loops would not guarantee. Per-access read
noise is drawn inside a compiled kernel from a counter instead (:mod:`sim.kernels.noise`).
"""

from __future__ import annotations

import numpy as np


def cell_factors(shape: tuple[int, ...], distribution: str, sigma: float,
                 rng: np.random.Generator) -> np.ndarray:
    """Multiplicative static variation factors with mean 1 and standard deviation ``sigma``.

    ``normal``: ``1 + sigma z`` (may go negative for large sigma; clipped at 0, as a
    conductance cannot be negative). ``lognormal``: ``exp(mu + s z)`` with
    ``s**2 = ln(1 + sigma**2)`` and ``mu = -s**2 / 2``, whose mean is 1 and sigma ``sigma``.
    """
    if sigma == 0:
        return np.ones(shape, dtype=np.float32)
    z = rng.standard_normal(shape)
    if distribution == "normal":
        f = np.maximum(1.0 + sigma * z, 0.0)
    elif distribution == "lognormal":
        s2 = np.log1p(sigma**2)
        f = np.exp(-0.5 * s2 + np.sqrt(s2) * z)
    else:
        raise ValueError(f"unknown variation distribution {distribution!r}")
    return f.astype(np.float32)


def stuck_at(levels: np.ndarray, p0: float, p1: float, top: int,
             rng: np.random.Generator) -> np.ndarray:
    """Cells stuck at level 0 (probability ``p0``) or at the top level ``top`` (``p1``)."""
    if not (p0 or p1):
        return levels
    r = rng.random(levels.shape)
    out = levels.copy()
    out[r < p0] = 0
    out[(r >= p0) & (r < p0 + p1)] = top
    return out
