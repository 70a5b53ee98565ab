"""Normal draws made inside compiled kernels, from a counter: same key and index, same bits.

The read noise of a partial sum (:func:`add_read_noise`) and the comparator noise of a
conversion (drawn by the ADC kernel, :func:`sim.kernels.adc.adc_accumulate`; defined and
tested through :func:`comparator_noise`) are drawn in compiled code, a step's rows at a time.
Each draw is a pure function of a 64-bit stream ``key`` and its index: it does not depend on
which other draws are made, on the thread count or on how the samples are chunked (numba's
own ``np.random`` would depend on thread scheduling: per-thread state).

The sampler is Box-Muller on one 64-bit word per pair of draws. Draw number ``i`` of stream
``key`` is the cosine (``i`` even) or sine (``i`` odd) part of pair ``i // 2``, whose word is
``mix64(key + (i // 2 + 1) x GOLDEN)`` (SplitMix64's output function on a Weyl sequence).
The word's high 32 bits, with the lowest set to one, give ``u = k / 2**32`` in ``(0, 1)`` and
the radius ``sqrt(-2 ln u)``; its low 32 bits (the top 24 of them) the angle. The conversions
of step ``p`` and sample ``s`` (its index in the whole call) of an ``n``-column row take the
draws from ``(p x 2**40 + s) x n2`` on (``n2``: ``n`` rounded up to even), so the rows of
consecutive samples of one step are one flat run of the stream, drawn by one vectorized loop
however narrow the rows (most are 20-64 conversions).

``ln``, ``sin`` and ``cos`` are polynomials in float32 (the logarithm's from ``atanh`` on
``[sqrt(1/2), sqrt(2))``, the angle reduced to an octant), so the loop vectorizes: about 1 ns
per draw against 2.5 for a scalar 256-layer ziggurat, 3.3 for numpy's generator drawn from
numba and 8.6 for numpy's own ``standard_normal(dtype=float32)`` (docs/kernels.md). Each draw
is the exact Box-Muller transform of its uniforms to within a few float32 roundings (``1e-6 x
max(1, |z|)``, ``tests/test_noise.py``); the largest radius is ``sqrt(64 ln 2) = 6.66``, so
no draw lies beyond 6.66 sigma (probability 2.7e-11 for a true normal).
"""

from __future__ import annotations

import math

import numpy as np
from numba.cpython.unsafe.numbers import leading_zeros

from sim.kernels._jit import jit, jit_vector, jit_vector_inline

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S32 = np.uint64(32)
_LOW32 = np.uint64(0xFFFFFFFF)
_ONE = np.uint64(1)
_F = np.float32
_U32 = np.uint32
_LN2 = np.float32(math.log(2.0))
_SQRT2 = np.float32(math.sqrt(2.0))
_SQRT_HALF = np.float32(math.sqrt(0.5))
_HALF_PI = np.float32(math.pi / 2.0)
# Coefficients as float32 constants: 2 / (2i + 1) of atanh's series, 1 / (k (k + 1)) of the
# sine's and cosine's nested Taylor forms (multiplications: a division per term would not
# be folded without fastmath).
_A1, _A3, _A5, _A7, _A9 = (np.float32(2.0 / d) for d in (1, 3, 5, 7, 9))
_S6, _S20, _S42, _S72 = (np.float32(1.0 / d) for d in (6, 20, 42, 72))
_C2, _C12, _C30, _C56, _C90 = (np.float32(1.0 / d) for d in (2, 12, 30, 56, 90))
_4_POW_M24 = np.float32(4.0 / 2.0**24)


@jit_vector_inline
def mix64(z):
    """SplitMix64's output function: a bijective 64-bit mix (``z`` and result ``uint64``)."""
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@jit_vector_inline
def _ln_unit(k):
    """``ln(k / 2**32)`` in float32 for a ``uint32`` ``k >= 1``: ``k / 2**32 = 2**e x m``
    with ``m`` in ``[sqrt(1/2), sqrt(2))``, ``ln m = 2 atanh(s)`` for ``s = (m - 1) / (m +
    1)`` (``|s| < 0.172``, the series to ``s**9``: error below 1e-8), plus ``e ln 2`` (``e``
    from -32 to 0: no cancellation near ``u = 1``)."""
    lz = leading_zeros(k)
    big = _U32(k << lz) >= _U32(3037000500)  # m = K / 2**31 >= sqrt(2): m / 2 instead
    e = _F(np.int32(big) - 1 - np.int32(lz))
    # s from the integer K: numerator and denominator are exact integers, each rounded once
    # to float32 before the division, so s (and ln u near u = 1) keeps its relative precision.
    kk = np.int64(_U32(k << lz))
    d = np.int64(1 << 32) if big else np.int64(1 << 31)
    s = _F(kk - d) / _F(kk + d)  # kk + d >= 2**31: never a division by zero
    s2 = s * s
    return s * (_A1 + s2 * (_A3 + s2 * (_A5 + s2 * (_A7 + s2 * _A9)))) + e * _LN2


@jit_vector_inline
def _pair(w):
    """The two standard normal draws (float32) of the 64-bit word ``w``: ``r cos t`` and
    ``r sin t`` with ``r = sqrt(-2 ln u)``, ``u`` from the high 32 bits (lowest set: ``u`` in
    ``(0, 1)``), ``t = 2 pi a`` with ``a`` the top 24 of the low 32 bits over ``2**24``."""
    k = _U32(_U32(w >> _S32) | _U32(1))
    r = math.sqrt(_F(-2.0) * _ln_unit(k))
    a = _F(_U32(w & _LOW32) >> _U32(8)) * _4_POW_M24  # [0, 4): quadrant + fraction
    q = np.int32(a)
    f = (a - _F(q) - _F(0.5)) * _HALF_PI  # [-pi/4, pi/4): the angle past the octant centre
    f2 = f * f
    sn = f * (_F(1.0) - f2 * _S6 * (_F(1.0) - f2 * _S20 * (_F(1.0) - f2 * _S42 * (
        _F(1.0) - f2 * _S72))))
    cs = _F(1.0) - f2 * _C2 * (_F(1.0) - f2 * _C12 * (_F(1.0) - f2 * _C30 * (
        _F(1.0) - f2 * _C56 * (_F(1.0) - f2 * _C90))))
    # t = q pi/2 + pi/4 + f: rotate (cos f, sin f) by pi/4, then by q quarter turns.
    c0 = (cs - sn) * _SQRT_HALF
    s0 = (cs + sn) * _SQRT_HALF
    odd = (q & 1) == 1
    c1 = s0 if odd else c0
    s1 = c0 if odd else s0
    c1 = -c1 if (q == 1) | (q == 2) else c1
    s1 = -s1 if q >= 2 else s1
    return r * c1, r * s1


@jit_vector
def fill(key, start, z, n, scale):
    """``z[e] = scale x`` draw number ``start + e`` of stream ``key`` (``uint64``) for ``e <
    n``, float32; ``start`` even. Draw ``i`` is the cosine (``i`` even) or sine (odd) part of
    pair ``i // 2``, whose word is ``mix64(key + (i // 2 + 1) x GOLDEN)``."""
    h = n // 2
    base = key + (np.uint64(start // 2) + _ONE) * _GOLDEN
    for j in range(h):
        zc, zs = _pair(mix64(base + np.uint64(j) * _GOLDEN))
        z[2 * j] = scale * zc
        z[2 * j + 1] = scale * zs
    if n > 2 * h:
        z[n - 1] = scale * _pair(mix64(base + np.uint64(h) * _GOLDEN))[0]


#: A row's index: ``step x 2**40 + sample`` (samples of one call below 2**40).
_STEP_ROWS = np.int64(1) << np.int64(40)


#: ``steps x (columns + 1)`` must stay below this for :func:`row_start` to fit in int64
#: (checked where a layer with noise is made).
MAX_STEP_COLUMNS = 1 << 23


@jit
def row_start(step, sample, n_cols):
    """The number of the first draw of the row of ``step`` and ``sample`` (its index in the
    whole call, below ``2**40``), ``n_cols`` conversions: ``(step x 2**40 + sample) x n2``,
    ``n2`` the column count rounded up to even (each row starts a pair); below ``2**63`` while
    ``step x n2`` is below :data:`MAX_STEP_COLUMNS`."""
    return (step * _STEP_ROWS + sample) * (n_cols + (n_cols & 1))


@jit
def draw_rows(key, step, m0, n_rows, n_cols, z, scale):
    """The draws of the rows of ``step`` for samples ``m0 .. m0 + n_rows - 1``, ``n_cols``
    each, times ``scale``, into ``z[:n_rows x n_cols]`` row after row: one flat run of the
    stream when the rows are even (:func:`row_start`), one run per row when they are odd (a
    row starts a pair). The one way every kernel draws noise."""
    if n_cols % 2 == 0:
        fill(key, row_start(step, m0, n_cols), z, n_rows * n_cols, scale)
    else:
        for r in range(n_rows):
            fill(key, row_start(step, m0 + r, n_cols), z[r * n_cols:], n_cols, scale)


@jit
def _rows(key, step, m0, n_rows, n_cols):
    z = np.empty(n_rows * n_cols, np.float32)
    draw_rows(key, step, m0, n_rows, n_cols, z, np.float32(1.0))
    return z.reshape((n_rows, n_cols))


def draws(key: int, step: int, m0: int, n_rows: int, n_cols: int) -> np.ndarray:
    """The draws of the rows of ``step`` for samples ``m0 .. m0 + n_rows - 1`` of stream
    ``key``, ``n_cols`` columns each: ``(n_rows, n_cols)`` float32 (for tests)."""
    return _rows(np.uint64(key), int(step), int(m0), int(n_rows), int(n_cols))


def stream_key(*words: int) -> np.uint64:
    """A 64-bit stream key from integer words (through ``numpy.random.SeedSequence``)."""
    return np.random.SeedSequence([int(w) for w in words]).generate_state(1, np.uint64)[0]


@jit
def _add_read_noise(src, a0, power, b0, out, sigma, key, row_of, n_samples, m0):
    n_rows = row_of.shape[0] if row_of.shape[0] > 0 else out.shape[0]
    if n_samples == 0:
        return
    n_cols = out.shape[1]
    z = np.empty(n_samples * n_cols, np.float32)
    for p in range(n_rows // n_samples):
        draw_rows(key, p, m0, n_samples, n_cols, z, np.float32(1.0))
        for m in range(n_samples):
            lrow = p * n_samples + m
            r = lrow
            if row_of.shape[0] > 0:
                r = row_of[lrow]
                if r < 0:
                    continue
            for c in range(n_cols):
                out[r, c] = np.float32(src[r, a0 + c]
                                       + sigma * z[m * n_cols + c] * math.sqrt(power[r, b0 + c]))


def add_read_noise(out: np.ndarray, src: np.ndarray, power: np.ndarray, sigma: float,
                   key: np.uint64, row_of: np.ndarray, n_samples: int, m0: int,
                   src_col: int = 0, power_col: int = 0) -> np.ndarray:
    """Partial sums with read noise: ``out = src + sigma z sqrt(power)``, rounded once to
    float32, with ``z`` standard normal; returns ``out`` (``(rows, columns)`` float32).

    ``src`` and ``power`` hold the noiseless partial sums and ``sum x^2 g^2`` (the variance
    over ``sigma^2``: each cell read's noise has sigma ``sigma x g`` times its input, so a
    column sum's noise is normal with that variance; one draw per conversion, not per cell,
    is exact in distribution) in their columns from ``src_col`` and ``power_col`` on: one
    GEMM by ``[g | g^2]`` gives both. ``out`` may be ``src`` (in place). The block of step
    ``p`` and sample ``m`` of the chunk is at row ``p x n_samples + m``, or at
    ``row_of[p x n_samples + m]`` when ``row_of`` is not empty (``-1``: not computed, no
    draw kept). Its draws are those from :func:`row_start` ``(p, m0 + m, columns)`` of stream
    ``key``: a function of the sample's index in the whole call ``m0 + m``, so neither chunking
    nor dropped blocks change a bit.
    """
    _add_read_noise(src, int(src_col), power, int(power_col), out, float(sigma),
                    np.uint64(key), row_of, int(n_samples), int(m0))
    return out


# ---------------------------------------------------------------- comparator noise
@jit
def fill_comparator(key, sigma, row_of, n_rows, n_samples, p0, m0, out):
    """:func:`comparator_noise`'s draws (the compiled part; ``out`` holds the kept rows)."""
    n_cols = out.shape[1]
    s = np.float32(sigma)
    if row_of.shape[0] == 0:
        # Every row kept: a step's rows are drawn straight into the buffer.
        flat = out.reshape(-1)
        for p in range(n_rows // n_samples):
            draw_rows(key, p0 + p, m0, n_samples, n_cols, flat[p * n_samples * n_cols:], s)
        return
    z = np.empty(n_samples * n_cols, np.float32)
    for p in range(n_rows // n_samples):
        draw_rows(key, p0 + p, m0, n_samples, n_cols, z, s)
        for m in range(n_samples):
            dst = row_of[p * n_samples + m]
            if dst < 0:  # a dropped conversion row: drawn, not kept
                continue
            for c in range(n_cols):
                out[dst, c] = z[m * n_cols + c]


def comparator_noise(key: np.uint64, sigma: float, n_rows: int, row_of: np.ndarray,
                     n_samples: int, m0: int, out: np.ndarray, p0: int = 0) -> np.ndarray:
    """Comparator noise of ``n_rows`` conversion rows: ``sigma x z`` in float32 (``sigma``
    rounded to float32), ``z`` standard normal, written into the reused buffer ``out`` (its
    columns: the conversions of a row).

    The rows are ordered as :func:`add_read_noise`'s: row ``p x n_samples + m`` is step ``p`` of
    sample ``m`` of the chunk, and its draws are those from :func:`row_start` ``(p0 + p, m0 +
    m, columns)`` of stream ``key`` (a function of the step and of the sample's index in the
    whole call, so chunking does not change a bit). The ADC kernel draws the same values
    itself (:func:`sim.kernels.adc.adc_accumulate`); this is their definition and test
    handle. With ``row_of`` not empty (one entry per row, ``-1``:
    dropped) only the kept rows are written, into ``out[row_of[row]]``. Returns the filled
    rows of ``out``.
    """
    if row_of.shape[0] and row_of.shape[0] != n_rows:
        raise ValueError("row_of must have one entry per row")
    kept = n_rows if row_of.shape[0] == 0 else int((row_of >= 0).sum())
    if out.shape[0] < kept or out.ndim != 2:
        raise ValueError(f"out holds {out.shape[0]} rows; {kept} are drawn")
    dst = out[:kept]
    if n_rows and n_samples:
        fill_comparator(np.uint64(key), float(sigma), row_of, int(n_rows), int(n_samples),
                        int(p0), int(m0), dst)
    return dst
