"""Normal draws made inside compiled kernels, from a counter: same key and index, same bits.

The read noise of a partial sum is drawn where it is added (:func:`add_read_noise`), with no
array of draws in between. Each draw is a pure function of a 64-bit stream ``key`` and the
draw's ``index``: the 64-bit word ``mix64(key + (index + 1) x GOLDEN)`` (SplitMix64's output
function on a Weyl sequence) feeds a ziggurat sampler of the standard normal distribution
(Marsaglia and Tsang 2000, 256 layers, written from the paper's description). A draw whose
ziggurat step rejects continues with ``mix64`` of the previous word, so the draw stays a
function of ``(key, index)`` alone: it does not depend on which other draws are made, on the
thread count or on how the samples are chunked. numba's own ``np.random`` would depend on
thread scheduling (per-thread state), which is why the earlier draws were made in numpy.

The sampler is exact in distribution (up to the 53-bit uniforms): a point uniform under the
density's ziggurat of 256 equal-area layers is accepted where it lies under the curve, the
base layer's tail beyond ``r`` is sampled by Marsaglia's exponential rejection.
"""

from __future__ import annotations

import math

import numpy as np

from sim.kernels._jit import jit

_LAYERS = 256
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_S8 = np.uint64(8)
_LOW8 = np.uint64(255)
_ONE = np.uint64(1)
_U53 = 1.0 / 9007199254740992.0  # 2**-53


def _density(x: float) -> float:
    return math.exp(-0.5 * x * x)


def _layers(r: float) -> tuple[float, list[float]]:
    """Common layer area ``v`` and the layer edges ``x[1..]`` for a base-tail edge ``r``;
    the edges stop early (list shorter than 256) when the layers overflow the peak."""
    v = r * _density(r) + math.sqrt(math.pi / 2) * math.erfc(r / math.sqrt(2))
    xs = [r]
    for _ in range(_LAYERS - 2):
        y = _density(xs[-1]) + v / xs[-1]
        if y >= 1.0:
            break
        xs.append(math.sqrt(-2.0 * math.log(y)))
    return v, xs


def _ziggurat_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Edges ``x`` (257: ``x[0] = v / f(r)``, ``x[1] = r``, ..., ``x[256] = 0``), the accept
    ratios ``x[i+1] / x[i]``, the densities ``f(x[i])`` and ``r``.

    ``r`` is found by bisection so that the top layer closes at the peak: 256 layers of area
    ``v`` each (the base one includes the tail beyond ``r``) cover the half-normal exactly.
    """
    lo, hi = 3.0, 4.5
    for _ in range(200):
        r = 0.5 * (lo + hi)
        v, xs = _layers(r)
        # Too small an r: the layers are too thick and overflow the peak before the last one.
        if len(xs) < _LAYERS - 1 or _density(xs[-1]) + v / xs[-1] > 1.0:
            lo = r
        else:
            hi = r
    r = hi
    v, xs = _layers(r)
    x = np.array([v / _density(r), *xs, 0.0], dtype=np.float64)
    assert x.shape[0] == _LAYERS + 1
    ratio = x[1:] / x[:-1]
    fx = np.exp(-0.5 * x * x)
    return x, ratio, fx, r


ZIG_X, ZIG_RATIO, ZIG_F, ZIG_R = _ziggurat_tables()


@jit
def mix64(z):
    """SplitMix64's output function: a bijective 64-bit mix (``z`` and result ``uint64``)."""
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@jit
def _unit(h):
    """A uniform in ``[0, 1)`` from the top 53 bits of ``h``."""
    return float(np.int64(h >> _S11)) * _U53


@jit
def normal_at(key, index, zx, zratio, zf, zr):
    """The standard normal draw number ``index`` (``uint64``) of stream ``key`` (``uint64``)."""
    h = mix64(key + (index + _ONE) * _GOLDEN)
    i = int(h & _LOW8)
    u = _unit(h)
    if u < zratio[i]:
        z = u * zx[i]
        return -z if (h >> _S8) & _ONE else z
    return _rejected(h, zx, zratio, zf, zr)


@jit
def _rejected(h, zx, zratio, zf, zr):
    """The draw whose first ziggurat step, from word ``h``, did not accept (about 1.2 %):
    the wedge test of its layer, the tail beyond ``r`` for the base layer, then further steps
    from ``mix64`` of the previous word."""
    while True:
        i = int(h & _LOW8)
        neg = (h >> _S8) & _ONE
        u = _unit(h)
        if u < zratio[i]:
            z = u * zx[i]
            return -z if neg else z
        h = mix64(h ^ _GOLDEN)
        if i == 0:
            # The tail beyond r (Marsaglia): a = -ln(u1)/r, accepted when -2 ln(u2) > a^2.
            while True:
                a = -math.log(1.0 - _unit(h)) / zr
                h = mix64(h ^ _GOLDEN)
                b = -math.log(1.0 - _unit(h))
                h = mix64(h ^ _GOLDEN)
                if 2.0 * b > a * a:
                    z = zr + a
                    return -z if neg else z
        z = u * zx[i]
        # Wedge of layer i: a uniform height between f(x[i]) and f(x[i+1]).
        if zf[i] + _unit(h) * (zf[i + 1] - zf[i]) < math.exp(-0.5 * z * z):
            return -z if neg else z
        h = mix64(h ^ _GOLDEN)


@jit
def normals(key, start, n, zx, zratio, zf, zr):
    """Draws ``start .. start + n - 1`` of stream ``key`` (float64 array; for tests)."""
    out = np.empty(n, np.float64)
    for j in range(n):
        out[j] = normal_at(key, np.uint64(start + j), zx, zratio, zf, zr)
    return out


def draws(key: int, start: int, n: int) -> np.ndarray:
    """``n`` standard normal draws of stream ``key`` from index ``start`` (float64)."""
    return normals(np.uint64(key), start, n, ZIG_X, ZIG_RATIO, ZIG_F, ZIG_R)


def stream_key(*words: int) -> np.uint64:
    """A 64-bit stream key from integer words (through ``numpy.random.SeedSequence``)."""
    return np.random.SeedSequence([int(w) for w in words]).generate_state(1, np.uint64)[0]


@jit
def _fill_normals(key, base, z, zx, zratio, zf, zr):
    """``z[j]`` = draw ``base + j`` of stream ``key``, as :func:`normal_at` gives it: first
    every draw's ziggurat step in a loop without branches (it vectorizes), then
    :func:`normal_at` again for the few (about 1.2 %) that the step did not accept."""
    n = z.shape[0]
    for j in range(n):
        h = mix64(key + (base + np.uint64(j) + _ONE) * _GOLDEN)
        i = np.int64(h & _LOW8)
        u = _unit(h)
        sign = 1.0 - 2.0 * float(np.int64((h >> _S8) & _ONE))
        t = u * zx[i]
        z[j] = sign * t if u < zratio[i] else np.nan
    for j in range(n):
        if np.isnan(z[j]):
            z[j] = normal_at(key, base + np.uint64(j), zx, zratio, zf, zr)


@jit
def _add_read_noise(src, a0, power, b0, out, sigma, key, row_of, n_samples, m0, n_steps, zx,
                    zratio, zf, zr):
    n_rows = row_of.shape[0] if row_of.shape[0] > 0 else out.shape[0]
    n_cols = out.shape[1]
    z = np.empty(n_cols, np.float64)
    for lrow in range(n_rows):
        r = lrow
        if row_of.shape[0] > 0:
            r = row_of[lrow]
            if r < 0:
                continue
        p = lrow // n_samples
        m = lrow - p * n_samples
        _fill_normals(key, np.uint64(((m0 + m) * n_steps + p) * n_cols), z, zx, zratio, zf,
                      zr)
        for c in range(n_cols):
            out[r, c] = np.float32(src[r, a0 + c] + sigma * z[c] * math.sqrt(power[r, b0 + c]))


def add_read_noise(out: np.ndarray, src: np.ndarray, power: np.ndarray, sigma: float,
                   key: np.uint64, row_of: np.ndarray, n_samples: int, m0: int, n_steps: int,
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
    draw made). Its draw for column ``c`` is number ``((m0 + m) x n_steps + p) x columns + c``
    of stream ``key``: a function of the sample's index in the whole call ``m0 + m``, so
    neither chunking nor dropped blocks change a bit.
    """
    _add_read_noise(src, int(src_col), power, int(power_col), out, float(sigma),
                    np.uint64(key), row_of, int(n_samples), int(m0), int(n_steps), ZIG_X,
                    ZIG_RATIO, ZIG_F, ZIG_R)
    return out


# ---------------------------------------------------------------- comparator noise
@jit
def _fill_comparator(key, sigma, row_of, n_rows, n_samples, m0, n_steps, out, zx, zratio, zf,
                     zr):
    n_cols = out.shape[1]
    for lrow in range(n_rows):
        dst = lrow
        if row_of.shape[0] > 0:
            dst = row_of[lrow]
            if dst < 0:  # a dropped conversion row: nothing drawn (the others do not move)
                continue
        p = lrow // n_samples
        m = lrow - p * n_samples
        # normal_at(key, base + c), its first ziggurat step inlined (one pass, no float64 row)
        base = key + np.uint64(((m0 + m) * n_steps + p) * n_cols + 1) * _GOLDEN
        for c in range(n_cols):
            h = mix64(base + np.uint64(c) * _GOLDEN)
            i = h & _LOW8
            u = _unit(h)
            if u < zratio[i]:
                z = u * zx[i]
                if (h >> _S8) & _ONE:
                    z = -z
            else:
                z = _rejected(h, zx, zratio, zf, zr)
            out[dst, c] = np.float32(sigma * z)


def comparator_noise(key: np.uint64, sigma: float, n_rows: int, row_of: np.ndarray,
                     n_samples: int, m0: int, n_steps: int, out: np.ndarray) -> np.ndarray:
    """Comparator noise of ``n_rows`` conversion rows: ``float32(sigma x z)``, ``z`` standard
    normal, written into the reused buffer ``out`` (its columns: the conversions of a row).

    The rows are ordered as :func:`add_read_noise`'s: row ``p x n_samples + m`` is step ``p`` of
    sample ``m`` of the chunk, and its draw for column ``c`` is number ``((m0 + m) x n_steps +
    p) x columns + c`` of stream ``key`` (a function of the sample's index in the whole call,
    so chunking does not change a bit). With ``row_of`` not empty (one entry per row, ``-1``:
    dropped) only the kept rows are drawn, into ``out[row_of[row]]``. Returns the filled rows
    of ``out``.
    """
    if row_of.shape[0] and row_of.shape[0] != n_rows:
        raise ValueError("row_of must have one entry per row")
    kept = n_rows if row_of.shape[0] == 0 else int((row_of >= 0).sum())
    dst = out[:kept]
    if n_rows:
        _fill_comparator(np.uint64(key), float(sigma), row_of, int(n_rows), int(n_samples),
                         int(m0), int(n_steps), dst, ZIG_X, ZIG_RATIO, ZIG_F, ZIG_R)
    return dst
