"""Normal draws inside compiled kernels (``sim.kernels.noise``) and the read noise they make.

Statistical checks use fixed keys (deterministic) and tolerances of ``Z`` standard errors, as
in ``tests/test_adc_variation.py``; each would fail for a sampler or a variance off by a few
percent.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from sim.kernels import noise as noise_k
from sim.macros import crossbar as crossbar_mod
from sim.macros.crossbar import CrossbarLayer

Z = 6.0
N = 2_000_000


def _normal_cdf(x):
    return 0.5 * np.vectorize(math.erfc)(-np.asarray(x) / math.sqrt(2.0))


def _box_muller(key, start, n):
    """Draws ``start .. start + n - 1`` of stream ``key`` (``start`` even) by the textbook
    Box-Muller transform in float64 of the same words (``sim.kernels.noise`` docstring):
    ``u = (high 32 bits | 1) / 2**32``, angle ``2 pi (low 32 bits >> 8) / 2**24``."""
    mask, golden = (1 << 64) - 1, 0x9E3779B97F4A7C15
    z = np.empty(n + 1)
    for j in range((n + 1) // 2):
        w = (int(key) + (start // 2 + j + 1) * golden) & mask
        w = ((w ^ (w >> 30)) * 0xBF58476D1CE4E5B9) & mask
        w = ((w ^ (w >> 27)) * 0x94D049BB133111EB) & mask
        w ^= w >> 31
        u = ((w >> 32) | 1) / 2.0**32
        t = 2.0 * math.pi * ((w & 0xFFFFFFFF) >> 8) / 2.0**24
        r = math.sqrt(-2.0 * math.log(u))
        z[2 * j], z[2 * j + 1] = r * math.cos(t), r * math.sin(t)
    return z[:n]


@pytest.mark.parametrize("n", [1, 2, 7, 128, 129])
def test_draws_are_box_muller_of_their_words(n):
    """Each draw is the exact Box-Muller transform of its word to within float32 rounding of
    the polynomials (the docstring's ``1e-6 x max(1, |z|)``), for even and odd rows."""
    key = noise_k.stream_key(3, 1)
    n2 = n + n % 2
    for step, m0, rows in ((0, 0, 4000 // n + 2), (3, 12345678901, 2)):
        got = noise_k.draws(key, step, m0, rows, n).astype(np.float64)
        for m in range(rows):
            want = _box_muller(key, ((step << 40) + m0 + m) * n2, n)
            err = np.abs(got[m] - want)
            assert np.all(err <= 1e-6 * np.maximum(np.abs(want), 1.0)), (step, m)


def test_draws_are_standard_normal():
    z2 = noise_k.draws(noise_k.stream_key(11), 0, 0, N // 100, 100).astype(np.float64)
    z = z2.reshape(-1)
    for part in (z, z2[:, 0::2].reshape(-1), z2[:, 1::2].reshape(-1)):  # cosine, sine parts
        n = part.shape[0]
        assert abs(part.mean()) < Z / math.sqrt(n)
        assert abs(part.var() - 1) < Z * math.sqrt(2 / n)
        assert abs((part**3).mean()) < Z * math.sqrt(15 / n)
        assert abs((part**4).mean() - 3) < Z * math.sqrt(96 / n)
    # the two parts of a pair are uncorrelated (independent for Box-Muller)
    c = float((z2[:, 0::2] * z2[:, 1::2]).mean())
    assert abs(c) < Z / math.sqrt(z.shape[0] / 2)
    # Kolmogorov-Smirnov distance to the normal CDF
    s = np.sort(z[:200_000])
    cdf = _normal_cdf(s)
    n = s.shape[0]
    d = max((np.arange(1, n + 1) / n - cdf).max(), (cdf - np.arange(n) / n).max())
    assert d < 1.95 / math.sqrt(n)  # about p = 0.001
    for t in (1.0, 2.5, 3.0, 4.0):
        p = math.erfc(t / math.sqrt(2))
        got = float((np.abs(z) > t).mean())
        assert abs(got - p) < Z * math.sqrt(p * (1 - p) / N), t
    assert abs(float((z > 0).mean()) - 0.5) < Z * 0.5 / math.sqrt(N)
    assert np.abs(z).max() <= math.sqrt(64 * math.log(2))  # the largest radius


def test_draws_are_a_function_of_key_and_index():
    key = noise_k.stream_key(1, 2, 3)
    a = noise_k.draws(key, 2, 0, 50, 100)
    assert a.tobytes() == noise_k.draws(key, 2, 0, 50, 100).tobytes()
    assert a[12:20].tobytes() == noise_k.draws(key, 2, 12, 8, 100).tobytes()
    assert not np.array_equal(a, noise_k.draws(noise_k.stream_key(1, 2, 4), 2, 0, 50, 100))
    assert not np.array_equal(a, noise_k.draws(key, 3, 0, 50, 100))  # another step
    assert not np.array_equal(a[0], a[1])
    # an odd row of 2h + 1 columns is the first 2h + 1 draws of the even row of 2h + 2
    odd, even = noise_k.draws(key, 5, 7, 3, 9), noise_k.draws(key, 5, 7, 3, 10)
    assert odd.tobytes() == even[:, :9].copy().tobytes()


def _psums(layer, x, noise_seed):
    return [psum.copy() for _, psum, _ in layer._group_psums(x, 0, noise_seed)]


@pytest.mark.parametrize("dac_bits", [1, 2])
@pytest.mark.parametrize("sigma", [0.05, 0.2])
def test_layer_read_noise_has_the_cells_variance(make_arch, dac_bits, sigma):
    """Partial sums with read noise minus those without, over ``sqrt(sum x^2 g^2)``, are
    N(0, sigma^2): one GEMM by [g | g^2] with 1-bit DACs, a GEMM of x^2 otherwise."""
    arch = make_arch(**{"variation.cell.read_noise_sigma": sigma,
                        "variation.cell.sigma": 0.1, "crossbar.dac.bits": dac_bits,
                        "crossbar.adc.clip": True})
    rng = np.random.default_rng(0)
    w = rng.integers(-127, 128, size=(30, 6))
    x = rng.integers(-128, 128, size=(400, 30))
    layer = CrossbarLayer(arch, w, seed=2)
    noisy = _psums(layer, x, (1, 2, 3))
    clean = _psums(layer, x, None)
    steps = crossbar_mod.inputs_k.split_inputs(x, 8, dac_bits, True)
    n_rows = steps.shape[0] * x.shape[0]
    zs = []
    for gi, (a, b) in enumerate(layer._span):
        sx = steps[:, :, a:b].reshape(n_rows, b - a).astype(np.float64)
        power = (sx * sx) @ layer.conductance[a:b].astype(np.float64) ** 2
        on = power > 0
        assert np.array_equal(noisy[gi][~on], clean[gi][~on])  # no driven cell, no noise
        zs.append((noisy[gi][on].astype(np.float64) - clean[gi][on]) / np.sqrt(power[on]))
    z = np.concatenate(zs)
    n = z.shape[0]
    assert n > 50_000
    assert abs(z.mean()) < Z * sigma / math.sqrt(n) + 1e-6
    # float32 rounding of the sums adds a little; well under the tolerance here
    assert abs(z.var() / sigma**2 - 1) < Z * math.sqrt(2 / n) + 0.01


@pytest.mark.parametrize("noise", ["variation.cell.read_noise_sigma",
                                   "variation.adc.noise_sigma_lsb"])
def test_noise_does_not_depend_on_chunking(make_arch, monkeypatch, noise):
    """Read noise and comparator noise: the same outputs however the samples are chunked,
    and the first samples' outputs do not depend on the samples after them."""
    arch = make_arch(**{noise: 0.4, "crossbar.adc.clip": True})
    rng = np.random.default_rng(1)
    w = rng.integers(-127, 128, size=(37, 5))
    x = rng.integers(-128, 128, size=(90, 37))
    layer = CrossbarLayer(arch, w, seed=4)
    whole = layer.matmul(x, seed=3)[0]
    monkeypatch.setattr(crossbar_mod, "PSUM_CHUNK_BYTES", 4 * 1024)
    assert len(layer._chunks(x.shape[0])) > 3
    assert layer.matmul(x, seed=3)[0].tobytes() == whole.tobytes()
    assert layer.matmul(x[:17], seed=3)[0].tobytes() == whole[:17].tobytes()
    # the noise moves the outputs: another call seed, other outputs
    assert not np.array_equal(layer.matmul(x, seed=4)[0], whole)


@pytest.mark.parametrize("samples,steps,cols,dropped", [(125, 8, 24, 0.0), (60, 5, 7, 0.4),
                                                         (0, 3, 5, 0.0), (10, 5, 1, 1.0)])
def test_comparator_noise_is_the_counter_stream(samples, steps, cols, dropped):
    """Comparator noise is ``sigma x z`` in float32 with ``z`` the counter stream's row of
    step ``p`` and sample ``m0 + m`` (``noise.draws``); only the
    rows ``row_of`` keeps are drawn, in order, and a chunk starting at sample ``m0`` draws what
    the whole call draws for its samples."""
    sigma, key, rows = 0.37, noise_k.stream_key(4, 5, 6), samples * steps
    table = np.concatenate([noise_k.draws(key, p, 0, samples, cols) for p in range(steps)])
    want = np.float32(sigma) * table
    row_of = np.zeros(0, np.int32)
    if dropped:
        keep = np.random.default_rng(1).random(rows) >= dropped
        row_of = np.full(rows, -1, np.int32)
        row_of[keep] = np.arange(int(keep.sum()))
        want = want[keep]
    got = noise_k.comparator_noise(key, sigma, rows, row_of, samples, 0,
                                   np.full((rows, cols), np.nan, np.float32))
    assert got.dtype == np.float32 and got.shape == want.shape
    assert got.tobytes() == want.tobytes()
    if samples > 3:  # a chunk of the last samples draws the whole call's rows for them
        m0 = samples - 3
        part = noise_k.comparator_noise(key, sigma, 3 * steps, np.zeros(0, np.int32), 3, m0,
                                        np.empty((3 * steps, cols), np.float32))
        whole = noise_k.comparator_noise(key, sigma, rows, np.zeros(0, np.int32), samples, 0,
                                         np.empty((rows, cols), np.float32))
        mine = whole.reshape(steps, samples, cols)[:, m0:].reshape(3 * steps, cols)
        assert part.tobytes() == mine.tobytes()
    if rows * cols:  # another key, other draws
        other = noise_k.comparator_noise(noise_k.stream_key(4, 5, 7), sigma, rows,
                                         np.zeros(0, np.int32), samples, 0,
                                         np.empty((rows, cols), np.float32))
        assert other.tobytes() != (np.float32(sigma) * table).tobytes()


@pytest.mark.parametrize("ct", [1, 5, 8, 9, 24, 300])
@pytest.mark.parametrize("blocks", [False, True])
def test_adc_kernel_draws_the_defined_comparator_noise(make_arch, ct, blocks):
    """The ADC kernel's comparator noise is ``comparator_noise``'s, at its size and for the
    step and sample offsets given (``noise_p0``, ``noise_m0``), on the row path and on the
    block path, for even and odd row widths: an ideal ADC with unit gain converting constant
    partial sums of 20 gives ``floor(20 + noise)`` per conversion, shift-added by step
    weights 1, 100, 10,000 (a wrong sigma, key, offset or draw order moves the outputs)."""
    from sim.kernels import adc as adc_k

    layer = CrossbarLayer(make_arch(**{"crossbar.adc.clip": True,
                                       "variation.adc.noise_sigma_lsb": 0.4}),
                          np.ones((4, 2), int), seed=1, exact_fast_path=False)
    assert layer.adc_thresholds.shape[0] == 0
    steps, m, p0, m0, sigma = 3, 37, 2, 11, 3.0
    psum = np.full((steps * m, ct), 20.0, np.float32)
    out = np.zeros((m, ct))
    key = noise_k.stream_key(9, 9)
    codes = layer.arch.crossbar.adc.codes
    adc_k.adc_accumulate(
        psum, np.zeros(0, np.int32), m, np.ones((steps, m), np.bool_), False, np.ones(ct),
        np.zeros(ct), layer.adc_thresholds, layer.adc_lut, np.zeros((0, 0)),
        np.zeros(ct, layer.col_inst[0].dtype), codes, 0.0, key, sigma, p0, m0,
        np.empty((steps * m, ct), np.float32), np.ones(ct), np.ones(ct),
        np.zeros((ct, 1), np.int32), np.zeros((ct, 1)), np.array([1.0, 100.0, 10000.0]), out,
        True, layer._walk(), blocks)
    noise = noise_k.comparator_noise(key, sigma, steps * m, np.zeros(0, np.int32), m, m0,
                                     np.empty((steps * m, ct), np.float32), p0=p0)
    q = np.clip(np.floor(20.0 + noise.astype(np.float64)), 0, codes - 1).reshape(steps, m, ct)
    assert np.abs(noise).max() > 1.0  # the noise moves codes here
    assert out.tobytes() == (q[0] + 100.0 * q[1] + 10000.0 * q[2]).tobytes()


def test_noise_buffers_too_small_are_refused():
    key = noise_k.stream_key(1)
    with pytest.raises(ValueError, match="rows"):
        noise_k.comparator_noise(key, 0.5, 10, np.zeros(0, np.int32), 5, 0,
                                 np.empty((4, 3), np.float32))


def test_kernel_cache_dropped_when_a_kernel_source_changes(tmp_path):
    """numba's cache checks only a function's own file; ``_jit`` drops the kernels' cache
    when any kernel source changed (a kernel compiles in the kernels it calls)."""
    from sim.kernels import _jit

    (tmp_path / "a.py").write_text("x = 1\n")
    cache = tmp_path / "__pycache__"
    cache.mkdir()
    (cache / "a.f-1.py311.nbi").write_text("index")
    _jit._drop_stale_cache(tmp_path)  # first sight: no stamp, so dropped
    assert not (cache / "a.f-1.py311.nbi").exists()
    (cache / "a.f-1.py311.nbi").write_text("index")
    _jit._drop_stale_cache(tmp_path)  # unchanged sources: kept
    assert (cache / "a.f-1.py311.nbi").exists()
    (tmp_path / "b.py").write_text("y = 2\n")  # another kernel module changed
    _jit._drop_stale_cache(tmp_path)
    assert not (cache / "a.f-1.py311.nbi").exists()

