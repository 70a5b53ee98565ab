"""The calibrated ADC range: exact where the range fits, bounded error where it does not.

A regression test for a bug found by the first ADC sweep: calibrated steps finer than one
level made the offset encoding's bias term (2**15 x the unit column) amplify sub-level
rounding into garbage, and the digits CNN fell to chance.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ISAAC_YAML, REPO

from analysis.run import simulate
from sim.config.loader import arch_from_dict, read_yaml
from sim.kernels import backend as backend_k
from sim.macros.crossbar import CrossbarLayer


@pytest.fixture(autouse=True, scope="module",
                params=[v for v in backend_k.test_variants() if not v[1]],
                ids=lambda v: f"{v[0]}-{'fast' if v[1] else 'loop'}")
def array_backend(request):
    """Every test here runs on each array backend of this machine (a calibrated range is
    never on the exact fast path)."""
    with backend_k.forced(*request.param):
        yield request.param


def _layer(make_arch, bits: int, percentile: float = 100.0, **extra):
    arch = make_arch(**{"crossbar.adc.range": "calibrated", "crossbar.adc.clip": True,
                        "crossbar.adc.bits": bits,
                        "crossbar.adc.calibration_percentile": percentile, **extra})
    rng = np.random.default_rng(1)
    w = rng.integers(-128, 128, (40, 6))
    x = rng.integers(-128, 128, (25, 40))
    layer = CrossbarLayer(arch, w, seed=0)
    layer.calibrate(x)
    return layer, x, w


def test_calibrated_range_is_exact_when_the_partial_sums_fit(make_arch):
    layer, x, w = _layer(make_arch, bits=6)
    out, _ = layer.matmul(x)
    np.testing.assert_array_equal(out, x @ w)
    assert np.all(layer.step == 1.0)


def test_calibrated_steps_are_powers_of_two(make_arch):
    layer, x, w = _layer(make_arch, bits=3)
    steps = np.unique(layer.step)
    assert np.all(steps >= 1.0)
    np.testing.assert_array_equal(np.log2(steps), np.round(np.log2(steps)))
    out, _ = layer.matmul(x)
    exact = x @ w
    assert not np.array_equal(out, exact)  # 3 bits cannot hold sums up to 48 exactly
    assert np.corrcoef(out.ravel(), exact.ravel())[0, 1] > 0.5  # degraded, not garbage


@pytest.mark.parametrize("changes", [
    {},  # ISAAC as published: 16-bit offset weights, column flipping, 16-bit inputs
    {"weights": {"bits": 9, "encoding": "differential", "column_flip": False}},
])
def test_calibrated_isaac_keeps_digits_accuracy(changes):
    data = read_yaml(ISAAC_YAML)
    data["crossbar"]["adc"]["range"] = "calibrated"
    data["crossbar"]["adc"]["clip"] = True  # a range set from data clips what lies above it
    data.update(changes)
    result = simulate(arch_from_dict(data), REPO / "workloads" / "digits_cnn.yaml", samples=100,
                      progress=False)
    assert result.hardware_accuracy >= 0.95
