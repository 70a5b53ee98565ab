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


def test_ziggurat_tables_close_at_the_peak():
    x, f = noise_k.ZIG_X, noise_k.ZIG_F
    assert x.shape == (257,) and x[-1] == 0.0 and np.all(np.diff(x) < 0)
    areas = x[1:-1] * (f[2:] - f[1:-1])  # layers 1..255
    base = noise_k.ZIG_R * math.exp(-0.5 * noise_k.ZIG_R**2) + math.sqrt(math.pi / 2) * \
        math.erfc(noise_k.ZIG_R / math.sqrt(2))
    assert np.allclose(areas, base, rtol=1e-9)
    assert abs(x[0] * f[1] - base) < 1e-12  # the base strip, tail included


def test_draws_are_standard_normal():
    z = noise_k.draws(noise_k.stream_key(11), 0, N)
    assert abs(z.mean()) < Z / math.sqrt(N)
    assert abs(z.var() - 1) < Z * math.sqrt(2 / N)
    assert abs((z**3).mean()) < Z * math.sqrt(15 / N)
    assert abs((z**4).mean() - 3) < Z * math.sqrt(96 / N)
    # Kolmogorov-Smirnov distance to the normal CDF
    s = np.sort(z[:200_000])
    cdf = _normal_cdf(s)
    n = s.shape[0]
    d = max((np.arange(1, n + 1) / n - cdf).max(), (cdf - np.arange(n) / n).max())
    assert d < 1.95 / math.sqrt(n)  # about p = 0.001
    # Every branch is used and right: the tail beyond r (base layer), the wedges.
    for t in (1.0, 2.5, 3.0, noise_k.ZIG_R, 4.0):
        p = math.erfc(t / math.sqrt(2))
        got = float((np.abs(z) > t).mean())
        assert abs(got - p) < Z * math.sqrt(p * (1 - p) / N), t
    assert abs(float((z > 0).mean()) - 0.5) < Z * 0.5 / math.sqrt(N)


def test_draws_are_a_function_of_key_and_index():
    key = noise_k.stream_key(1, 2, 3)
    a = noise_k.draws(key, 0, 5000)
    assert a.tobytes() == noise_k.draws(key, 0, 5000).tobytes()
    assert a[1234:1300].tobytes() == noise_k.draws(key, 1234, 66).tobytes()
    assert not np.array_equal(a, noise_k.draws(noise_k.stream_key(1, 2, 4), 0, 5000))
    # the vectorized row fill (accept step, then the rejected draws again) equals normal_at
    z = np.empty(5000)
    noise_k._fill_normals(np.uint64(key), np.uint64(0), z, noise_k.ZIG_X, noise_k.ZIG_RATIO,
                          noise_k.ZIG_F, noise_k.ZIG_R)
    assert z.tobytes() == a.tobytes()


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


def test_read_noise_does_not_depend_on_chunking(make_arch, monkeypatch):
    arch = make_arch(**{"variation.cell.read_noise_sigma": 0.1, "crossbar.adc.clip": True})
    rng = np.random.default_rng(1)
    w = rng.integers(-127, 128, size=(37, 5))
    x = rng.integers(-128, 128, size=(90, 37))
    layer = CrossbarLayer(arch, w, seed=4)
    whole = layer.matmul(x, seed=3)[0]
    monkeypatch.setattr(crossbar_mod, "PSUM_CHUNK_BYTES", 4 * 1024)
    assert len(layer._chunks(x.shape[0])) > 3
    assert layer.matmul(x, seed=3)[0].tobytes() == whole.tobytes()
    # the first samples' outputs do not depend on the samples after them
    assert layer.matmul(x[:17], seed=3)[0].tobytes() == whole[:17].tobytes()
    assert not np.array_equal(layer.matmul(x, seed=4)[0], whole)


def test_comparator_noise_does_not_depend_on_chunking(make_arch, monkeypatch):
    arch = make_arch(**{"variation.adc.noise_sigma_lsb": 0.4, "crossbar.adc.clip": True})
    rng = np.random.default_rng(2)
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
    """Comparator noise is ``float32(sigma x z)`` with ``z`` the counter stream's draw number
    ``((m0 + m) x steps + p) x cols + c`` for step ``p``, sample ``m``, column ``c``; only the
    rows ``row_of`` keeps are drawn, in order, and a chunk starting at sample ``m0`` draws what
    the whole call draws for its samples."""
    sigma, key, rows = 0.37, noise_k.stream_key(4, 5, 6), samples * steps
    p, m = np.divmod(np.arange(rows), max(samples, 1))
    index = (m * steps + p)[:, None] * cols + np.arange(cols)
    want = (sigma * noise_k.draws(key, 0, samples * steps * cols)[index]).astype(np.float32)
    row_of = np.zeros(0, np.int32)
    if dropped:
        keep = np.random.default_rng(1).random(rows) >= dropped
        row_of = np.full(rows, -1, np.int32)
        row_of[keep] = np.arange(int(keep.sum()))
        want = want[keep]
    got = noise_k.comparator_noise(key, sigma, rows, row_of, samples, 0, steps,
                                   np.full((rows, cols), np.nan, np.float32))
    assert got.dtype == np.float32 and got.shape == want.shape
    assert got.tobytes() == want.tobytes()
    if samples > 3:  # a chunk of the last samples draws the whole call's rows for them
        m0 = samples - 3
        part = noise_k.comparator_noise(key, sigma, 3 * steps, np.zeros(0, np.int32), 3, m0,
                                        steps, np.empty((3 * steps, cols), np.float32))
        whole = noise_k.comparator_noise(key, sigma, rows, np.zeros(0, np.int32), samples, 0,
                                         steps, np.empty((rows, cols), np.float32))
        mine = whole.reshape(steps, samples, cols)[:, m0:].reshape(3 * steps, cols)
        assert part.tobytes() == mine.tobytes()
    if rows * cols:  # another key, other draws
        other = noise_k.comparator_noise(noise_k.stream_key(4, 5, 7), sigma, rows,
                                         np.zeros(0, np.int32), samples, 0, steps,
                                         np.empty((rows, cols), np.float32))
        assert other.tobytes() != (sigma * noise_k.draws(key, 0, rows * cols)[index]).astype(
            np.float32).tobytes()
