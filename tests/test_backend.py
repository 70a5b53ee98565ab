"""The array backends, the exact fast path and the dropping of all-zero blocks.

Each lever must leave the outputs bit for bit and the events count for count as the
per-row-group model computes them; each test changes the lever and compares.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from sim.kernels import adc as adc_k
from sim.kernels import backend as backend_k
from sim.kernels import inputs as inputs_k
from sim.macros.crossbar import CrossbarLayer

SIGNED_CASES = [(16, 1, True), (8, 1, False), (8, 3, True), (5, 5, False), (8, 8, True),
                (4, 2, True)]


def _inputs(rng, bits, signed, shape, zero_fraction=0.5):
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    x = rng.integers(lo, hi + 1, size=shape)
    x[rng.random(shape) < zero_fraction] = 0
    return x


@pytest.mark.parametrize(("bits", "dac_bits", "signed"), SIGNED_CASES)
@pytest.mark.parametrize("group_rows", [8, 16, 128])
def test_activity_from_inputs_matches_the_steps(bits, dac_bits, signed, group_rows):
    rng = np.random.default_rng(bits * 100 + dac_bits)
    x = _inputs(rng, bits, signed, (37, 70))
    groups = -(-70 // group_rows)
    steps = inputs_k.split_inputs(x, bits, dac_bits, signed, groups * group_rows)
    active, nnz = inputs_k.group_activity(steps, group_rows)
    a2, n2 = inputs_k.input_activity(x, bits, dac_bits, signed, group_rows, groups)
    s3, a3, n3 = inputs_k.split_inputs_activity(x, bits, dac_bits, signed, group_rows, groups)
    assert np.array_equal(a2, active) and np.array_equal(n2, nnz)
    assert np.array_equal(a3, active) and np.array_equal(n3, nnz)
    assert np.array_equal(s3, steps[:, :, :70])


def test_activity_from_inputs_checks_the_range():
    with pytest.raises(ValueError, match="outside"):
        inputs_k.input_activity(np.array([[300]]), 8, 1, False, 8, 1)


def _isaac_small(make_arch, **extra):
    """A small ISAAC-like arch (flipped offset weights, unit column, 1-bit DAC, signed inputs)
    whose 6-bit ADC holds every partial sum: provably exact unless ``extra`` says otherwise."""
    return make_arch(**{"weights.column_flip": True, "crossbar.adc.clip": True, **extra})


def _layer_io(seed=0, k=37, n=5, m=23, zero_fraction=0.5):
    rng = np.random.default_rng(seed)
    w = rng.integers(-128, 128, size=(k, n))
    x = _inputs(rng, 8, True, (m, k), zero_fraction)
    return w, x


@pytest.mark.parametrize("skip", [False, True])
def test_exact_fast_path_same_bits_and_events(make_arch, skip):
    arch = _isaac_small(make_arch, **{"inputs.zero_skip": skip})
    w, x = _layer_io()
    fast = CrossbarLayer(arch, w, seed=3, exact_fast_path=True)
    loop = CrossbarLayer(arch, w, seed=3, exact_fast_path=False)
    assert fast.exact and not loop.exact
    (o1, e1), (o2, e2) = fast.matmul(x), loop.matmul(x)
    assert o1.tobytes() == o2.tobytes()
    assert o1.tolist() == (x.astype(object) @ w.astype(object)).tolist()
    assert e1 == e2


@pytest.mark.parametrize("change", [
    {"variation.cell.sigma": 0.01},
    {"variation.cell.stuck_at_0": 0.01},
    {"variation.cell.read_noise_sigma": 0.01},
    {"variation.adc.offset_sigma_lsb": 0.1},
    {"variation.adc.gain_sigma": 0.01},
    {"variation.adc.cap_mismatch_sigma": 0.01},
    {"variation.adc.noise_sigma_lsb": 0.1},
    {"crossbar.adc.bits": 4},  # clips: the largest partial sum (24) exceeds 15
    {"crossbar.adc.full_scale": 126.0},  # a 2-level step
])
def test_fast_path_only_where_provably_exact(make_arch, change):
    arch = _isaac_small(make_arch, **change)
    w, x = _layer_io()
    layer = CrossbarLayer(arch, w, seed=3)
    assert not layer.exact
    # and the result is what the loop model gives, which here is not the integer product
    out, _ = layer.matmul(x)
    assert out.tobytes() == CrossbarLayer(arch, w, seed=3,
                                          exact_fast_path=False).matmul(x)[0].tobytes()


def test_fast_path_switch_by_environment(make_arch, monkeypatch):
    arch = _isaac_small(make_arch)
    w, _ = _layer_io()
    monkeypatch.setenv("IMCSIM_EXACT_FAST_PATH", "0")
    assert not CrossbarLayer(arch, w).exact
    monkeypatch.setenv("IMCSIM_EXACT_FAST_PATH", "1")
    assert CrossbarLayer(arch, w).exact


@pytest.mark.parametrize("backend", backend_k.available())
@pytest.mark.parametrize("change", [
    {},  # ideal cells, integer partial sums
    {"variation.cell.sigma": 0.05},  # float32 partial sums
    {"variation.cell.sigma": 0.05, "variation.cell.read_noise_sigma": 0.05},
    {"variation.adc.noise_sigma_lsb": 0.5, "inputs.zero_skip": True},
    {"variation.adc.cap_mismatch_sigma": 0.05, "variation.cell.sigma": 0.05},
])
def test_dropping_zero_blocks_same_bits_and_events(make_arch, backend, change):
    arch = _isaac_small(make_arch, **change)
    w, x = _layer_io(seed=5, k=40, m=31, zero_fraction=0.9)
    x[:, :16] = 0  # a whole row group idle for every sample
    runs = []
    for drop in (True, False):
        layer = CrossbarLayer(arch, w, seed=3, backend=backend, exact_fast_path=False)
        layer.drop_zero_blocks = drop
        runs.append(layer.matmul(x, seed=2))
    assert runs[0][0].tobytes() == runs[1][0].tobytes()
    assert runs[0][1] == runs[1][1]


def test_backend_names(monkeypatch):
    with pytest.raises(backend_k.BackendError, match="IMCSIM_BACKEND"):
        backend_k.resolve("tpu")
    monkeypatch.setenv("IMCSIM_BACKEND", "numpy")
    assert backend_k.resolve() == "numpy"
    monkeypatch.setenv("IMCSIM_BACKEND", "bogus")
    with pytest.raises(backend_k.BackendError, match="bogus"):
        backend_k.make()


def test_runs_without_torch(make_arch, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    backend_k._cuda_available.cache_clear()
    try:
        assert backend_k.resolve("auto") == "numpy"
        assert backend_k.available() == ["numpy"]
        with pytest.raises(backend_k.BackendError, match="torch"):
            backend_k.make("torch")
        w, x = _layer_io()
        arch = _isaac_small(make_arch, **{"variation.cell.sigma": 0.05})
        out, _ = CrossbarLayer(arch, w, backend="auto").matmul(x)
        assert out.shape == (x.shape[0], w.shape[1])
    finally:
        backend_k._cuda_available.cache_clear()


def test_sim_does_not_import_torch():
    code = ("import sys, numpy as np; from sim.macros.crossbar import CrossbarLayer; "
            "print('torch' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={"IMCSIM_BACKEND": "numpy", **_env()})
    assert res.stdout.strip() == "False"


def _env():
    import os

    return {k: v for k, v in os.environ.items() if k != "IMCSIM_BACKEND"}


@pytest.mark.skipif("torch" not in backend_k.available(), reason="torch not installed")
def test_torch_int8_only_where_exact(make_arch):
    w, _ = _layer_io()
    ideal = CrossbarLayer(_isaac_small(make_arch), w, backend="torch")
    assert all(g.fast is not None for g in ideal._gemm_w)
    varied = CrossbarLayer(_isaac_small(make_arch, **{"variation.cell.sigma": 0.05}), w,
                           backend="torch")
    assert all(g.fast is None for g in varied._gemm_w)
    # signed 8-bit inputs on an 8-bit DAC: 7 magnitude bits, step values up to 127 fit int8
    signed = _isaac_small(make_arch, **{"crossbar.dac.bits": 8, "crossbar.adc.bits": 12})
    assert all(g.fast is not None for g in CrossbarLayer(signed, w, backend="torch")._gemm_w)
    # unsigned 8-bit inputs: step values up to 255 do not
    unsigned = _isaac_small(make_arch, **{"crossbar.dac.bits": 8, "crossbar.adc.bits": 12,
                                          "inputs.signed": False})
    assert all(g.fast is None for g in CrossbarLayer(unsigned, w, backend="torch")._gemm_w)


@pytest.mark.parametrize("change", [
    {"variation.adc.cap_mismatch_sigma": 0.05},
    {"variation.adc.cap_mismatch_sigma": 0.3, "variation.adc.offset_sigma_lsb": 0.7,
     "variation.adc.gain_sigma": 0.05, "crossbar.adc.per_crossbar": 2},
    {"variation.adc.cap_mismatch_sigma": 0.05, "variation.adc.noise_sigma_lsb": 0.5,
     "variation.cell.sigma": 0.05, "inputs.zero_skip": True},
    {"variation.adc.cap_mismatch_sigma": 0.1, "crossbar.adc.calibration": "two_step",
     "variation.cell.sigma": 0.05},
    {"variation.adc.cap_mismatch_sigma": 0.05, "crossbar.adc.bits": 4,  # clipping at the top
     "crossbar.adc.rounding": "floor", "variation.cell.sigma": 0.05},
    {"variation.adc.cap_mismatch_sigma": 0.05, "crossbar.adc.bits": 8,
     "variation.adc.noise_sigma_lsb": 0.3, "variation.cell.sigma": 0.05},
    {"variation.adc.cap_mismatch_sigma": 0.05, "crossbar.adc.bits": 10,  # wider than the walk
     "variation.cell.sigma": 0.05},
])
def test_curves_converted_by_instance_runs_same_bits(make_arch, change):
    """Mismatched ADC curves converted by the vectorized SAR walk (the default), and one run
    of same-instance columns at a time through the tables, give the bits and events of the
    column-by-column conversion (the reference), for the same seeds: instances interleaved
    (two ADCs per crossbar), badly mismatched curves, comparator noise with zero-skip, a
    calibration table, clipping, an ADC wider than the walk (tables only)."""
    arch = _isaac_small(make_arch, **{"organization.tiles": 8, **change})
    w, x = _layer_io(seed=7, k=40, n=9, m=29, zero_fraction=0.3)
    runs = []
    for by_runs, walk, blocks in ((False, False, False), (True, False, False),
                                  (True, True, False), (True, True, True)):
        layer = CrossbarLayer(arch, w, seed=4, exact_fast_path=False)
        layer.adc_by_runs, layer.adc_walk, layer.adc_walk_blocks = by_runs, walk, blocks
        runs.append(layer.matmul(x, seed=2))
    assert layer.adc_thresholds.shape[0] > 0 and layer.col_inst.max() > 0
    walks = arch.crossbar.adc.bits <= adc_k.WALK_BITS
    assert (layer.adc_walk_tables[0].shape[0] > 0) == walks
    if walks:
        assert (layer.adc_walk_tables[3] < 2**32 - 1).any()  # the walk decided some codes
    elif "calibration" not in str(change):
        _, fast = adc_k._instance_runs(layer.col_inst[0], layer.adc_thresholds,
                                       layer.adc_lut[3], arch.crossbar.adc.codes)
        assert fast.any()  # the branch-free loop ran
    for out, ev in runs[1:]:
        assert out.tobytes() == runs[0][0].tobytes()
        assert ev == runs[0][1]
    # same seed, same bits; another call seed moves the comparator noise
    again = CrossbarLayer(arch, w, seed=4, exact_fast_path=False).matmul(x, seed=2)[0]
    assert again.tobytes() == runs[0][0].tobytes()


def test_curves_by_walk_same_bits_on_the_shipped_mismatch_examples():
    """The shipped ADC-mismatch configs (ISAAC with two-step calibration and comparator noise;
    CAP-RAM's 7-bit ciSARs, four columns each) convert by the SAR walk with the bits of the
    column-by-column reference."""
    from pathlib import Path

    from sim.config.loader import arch_from_dict, read_yaml
    from sim.macros.family import make_layer

    root = Path(__file__).resolve().parents[1] / "examples"
    rng = np.random.default_rng(11)
    for name in ("isaac_32nm_adc_mismatch.yaml", "cap_ram_65nm_variation.yaml"):
        arch = arch_from_dict(read_yaml(root / name), name)
        bits = arch.weights.bits
        w = rng.integers(-(1 << (bits - 1)) + 1, 1 << (bits - 1), size=(150, 12))
        lo, hi = ((-(1 << (arch.inputs.bits - 1)), 1 << (arch.inputs.bits - 1))
                  if arch.inputs.signed else (0, 1 << arch.inputs.bits))
        x = rng.integers(lo, hi, size=(9, 150))
        outs = []
        for by_runs, blocks in ((False, False), (True, False), (True, True)):
            layer = make_layer(arch, w, seed=5)
            layer.adc_by_runs, layer.adc_walk_blocks = by_runs, blocks
            outs.append(layer.matmul(x, seed=1)[0])
        assert layer.adc_walk_tables[0].shape[0] > 0, name
        assert outs[0].tobytes() == outs[1].tobytes() == outs[2].tobytes(), name




@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("curves", [0.0, 0.05])
def test_odd_width_rows_draw_the_row_paths_noise_in_blocks(make_arch, n, curves):
    """Rows of an odd number of columns (here 5 and 9; 14 for ``n`` 3) convert over blocks
    with the comparator noise drawn row by row into the block's buffer (an odd row is not a
    whole number of draw pairs): the bits and events of the row-by-row path, which draws the
    noise of the whole chunk first."""
    arch = _isaac_small(make_arch, **{"variation.adc.noise_sigma_lsb": 0.4,
                                      "variation.adc.cap_mismatch_sigma": curves})
    w, x = _layer_io(seed=2, k=30, n=n, m=50, zero_fraction=0.3)
    outs = []
    for blocks in (False, True):
        layer = CrossbarLayer(arch, w, seed=4, exact_fast_path=False)
        layer.adc_walk_blocks = blocks
        outs.append(layer.matmul(x, seed=3))
    assert (layer.columns_total % 2 == 1) == (n < 3)
    assert 2 * layer.columns_total <= adc_k.WALK_BLOCK
    assert outs[1][0].tobytes() == outs[0][0].tobytes()
    assert outs[1][1] == outs[0][1]
    moved = CrossbarLayer(arch, w, seed=4, exact_fast_path=False).matmul(x, seed=4)[0]
    assert moved.tobytes() != outs[0][0].tobytes()


@pytest.mark.parametrize("calibration", ["none", "two_step"])
@pytest.mark.parametrize("curves", [True, False])
@pytest.mark.parametrize("noise", [0.0, 0.4])
@pytest.mark.parametrize("n", [1, 5, 60])  # 8, 40 and 480 columns: 256, 51 and 4 rows a block
def test_narrow_rows_walked_in_blocks_same_bits(noise, n, curves, calibration):
    """CAP-RAM's narrow packed sub-layers (a few dozen columns) convert over blocks of whole
    rows (``_convert_blocks``), by the SAR walk of their ADC curves (with or without the
    two-step calibration's table) or (without capacitor mismatch) by an ideal ADC: the bits
    of the row-by-row conversion and of the column-by-column reference, with and without
    comparator noise, for row widths that divide the block and that do not; another call
    seed moves the outputs."""
    from pathlib import Path

    from sim.config.loader import arch_from_dict, read_yaml
    from sim.macros.family import make_layer

    path = Path(__file__).resolve().parents[1] / "examples" / "cap_ram_65nm_variation.yaml"
    raw = read_yaml(path)
    raw["variation"]["adc"]["noise"] = f"{noise * 9.4}mV"
    raw["crossbar"]["mac"]["ktc_noise"] = bool(noise)  # kT/C adds to the comparator noise
    if not curves:
        del raw["variation"]["adc"]["unit_cap_mismatch"]
    raw["crossbar"]["adc"]["calibration"] = calibration
    arch = arch_from_dict(raw, path.name)
    rng = np.random.default_rng(3)
    w = rng.integers(-127, 128, size=(50, n))
    x = rng.integers(0, 256, size=(333, 50))
    outs = []
    for by_runs, blocks in ((False, False), (True, False), (True, True)):
        layer = make_layer(arch, w, seed=5)
        layer.adc_by_runs, layer.adc_walk_blocks = by_runs, blocks
        outs.append(layer.matmul(x, seed=1))
    assert 0 < layer.columns_total < adc_k.WALK_BLOCK
    assert bool(layer.arch.variation.adc.noise_sigma_lsb) == bool(noise)
    assert (layer.adc_thresholds.shape[0] > 0) == curves
    assert (layer.adc_table.shape[0] > 0) == (calibration == "two_step")
    for out, ev in outs[1:]:
        assert out.tobytes() == outs[0][0].tobytes()
        assert ev == outs[0][1]
    if noise:
        other = make_layer(arch, w, seed=5).matmul(x, seed=2)[0]
        assert other.tobytes() != outs[0][0].tobytes()


def test_matmul_limits_blas_to_one_thread_by_a_cached_controller(make_arch, monkeypatch):
    """Each matmul runs BLAS on one thread (its workers are the parallelism) through a
    thread-pool controller made once, and made again after a new import (a BLAS loaded later)."""
    import types

    from threadpoolctl import threadpool_info, threadpool_limits

    import sim.macros.crossbar as xb_mod

    seen = []
    gemm = backend_k.NumpyBackend.gemm

    def spy(self, x, w, out):
        seen.append({i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"})
        return gemm(self, x, w, out)

    monkeypatch.setattr(backend_k.NumpyBackend, "gemm", spy)
    arch = _isaac_small(make_arch, **{"variation.cell.sigma": 0.05})
    w, x = _layer_io()
    layer = CrossbarLayer(arch, w, backend="numpy")
    with threadpool_limits(limits=2, user_api="blas"):
        layer.matmul(x)
        outside = {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}
    assert seen and all(s <= {1} for s in seen)
    assert outside <= {2}
    ctl = xb_mod._blas_controller()
    assert xb_mod._blas_controller() is ctl
    monkeypatch.setitem(sys.modules, "_imcsim_test_new_module", types.ModuleType("new"))
    assert xb_mod._blas_controller() is not ctl


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_rows_float32_is_the_cast_of_the_group_rows(dtype):
    """The numpy backend's GEMM input of a row group: ``steps[:, :, a:b]`` as float32 rows,
    written into the front of a reused buffer (a later group overwrites it)."""
    rng = np.random.default_rng(3)
    steps = rng.integers(0, 2**12 if dtype == np.uint16 else 255, size=(3, 5, 40)).astype(dtype)
    buf = np.full(3 * 5 * 32, np.nan, np.float32)
    for a, b in ((0, 32), (32, 40), (5, 6)):
        got = backend_k.rows_float32(steps, a, b, buf)
        assert got.dtype == np.float32 and got.flags.c_contiguous
        assert np.shares_memory(got, buf)
        assert np.array_equal(got, steps[:, :, a:b].astype(np.float32).reshape(15, b - a))


def _run_digits(tmp_path, name, backend):
    import json

    from analysis.cli import main

    out = tmp_path / name
    assert main(["run", "isaac_32nm", "digits_cnn", "--samples", "12", "--batch-size", "6",
                 "--workers", "1", "--out", str(out), "--quiet", "--backend", backend]) == 0
    return json.loads((out / "result.json").read_text())


@pytest.mark.skipif("torch" not in backend_k.available(), reason="torch not installed")
def test_run_option_backend_picks_the_gemm_and_keeps_the_bits(tmp_path, monkeypatch, capsys):
    # ISAAC without the exact fast path: every partial sum is an int8 GEMM on torch.
    monkeypatch.setenv("IMCSIM_EXACT_FAST_PATH", "0")
    monkeypatch.setenv("IMCSIM_BACKEND", "numpy")  # restored after the test
    fast = []
    gemm = backend_k.TorchCpuBackend.gemm

    def counted(self, x, w, out):
        fast.append(w.fast is not None)
        return gemm(self, x, w, out)

    monkeypatch.setattr(backend_k.TorchCpuBackend, "gemm", counted)
    ref = _run_digits(tmp_path, "numpy", "numpy")
    assert ref["backend"] == "numpy" and not fast
    got = _run_digits(tmp_path, "torch", "torch")
    assert got["backend"] == "torch"
    assert os.environ["IMCSIM_BACKEND"] == "numpy"  # the option held for that command only
    assert fast and all(fast)  # the option reached the layers: int8 GEMMs ran
    for r in (ref, got):
        r.pop("backend"), r.pop("wall_time_s")
    assert json_equal(ref, got)


def json_equal(a, b) -> bool:
    import json

    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def test_run_option_backend_refuses_a_missing_device_in_one_message(tmp_path, monkeypatch,
                                                                     capsys):
    from analysis.cli import main

    monkeypatch.setenv("IMCSIM_BACKEND", "numpy")
    if "cuda" in backend_k.available():
        pytest.skip("this machine has a CUDA device")
    for cmd in (["run", "isaac_32nm", "digits_cnn"], ["montecarlo", "isaac_32nm", "digits_cnn"]):
        code = main(cmd + ["--samples", "4", "--out", str(tmp_path / cmd[0]), "--quiet",
                           "--backend", "cuda"])
        err = capsys.readouterr().err
        assert code == 2, err
        assert "cuda" in err.lower() and "Traceback" not in err
        assert not (tmp_path / cmd[0]).exists()  # refused before any work
    assert main(["run", "isaac_32nm", "digits_cnn", "--backend", "gpu"]) == 2
    assert "invalid choice: 'gpu'" in capsys.readouterr().err


def test_sweep_tasks_carry_the_coordinators_backend(monkeypatch):
    from analysis import executors

    monkeypatch.setenv("IMCSIM_BACKEND", "numpy")
    seen = []

    def fake_estimate(*args, **kwargs):
        seen.append(os.environ.get("IMCSIM_BACKEND"))
        raise backend_k.BackendError("stop here")

    monkeypatch.setattr("analysis.run.estimate", fake_estimate)
    task = {"key": "k", "built": object(), "mode": "analytical", "workload": "w",
            "samples": 1, "seed": 0, "data_dir": None, "backend": "numpy"}
    os.environ["IMCSIM_BACKEND"] = "auto"  # a worker whose environment lacks the option
    out = executors.evaluate_point(task)
    assert seen == ["numpy"] and out["status"] == "failed"
    assert os.environ["IMCSIM_BACKEND"] == "auto"  # for that point only
    task["backend"] = "bogus"
    out = executors.evaluate_point(task)
    assert out["status"] == "failed" and "bogus" in out["reason"]
    assert "on the worker at" in out["reason"]


@pytest.mark.skipif("torch" not in backend_k.available(), reason="torch not installed")
def test_cuda_backend_code_on_the_cpu_device(make_arch, monkeypatch):
    # No GPU here: the cuda backend's code (float64 matmul of integer partial sums, copies to
    # the device and back, numpy for float conductances) on torch's CPU device, same bits.
    monkeypatch.setattr(backend_k, "make",
                        lambda name=None, **kw: (backend_k.CudaBackend(device="cpu")
                                                 if name == "cuda" else backend_k.NumpyBackend()))
    w, x = _layer_io(k=300, n=7, m=40)
    calls = []
    gemm = backend_k.CudaBackend.gemm

    def counted(self, xs, wg, out):
        calls.append(wg.fast is not None)
        if wg.fast is not None:
            dtypes.add(xs.dtype.name)
        return gemm(self, xs, wg, out)

    monkeypatch.setattr(backend_k.CudaBackend, "gemm", counted)
    dtypes = set()
    for extra, integer in (({"variation.adc.noise_sigma_lsb": 0.5}, True),
                           ({"variation.cell.sigma": 0.05}, False),
                           # 10-bit DAC steps: uint16 GEMM inputs, widened on the host
                           ({"variation.adc.noise_sigma_lsb": 0.5, "crossbar.dac.bits": 10,
                             "crossbar.adc.bits": 12, "inputs.bits": 16}, True)):
        arch = _isaac_small(make_arch, **extra)
        ref = CrossbarLayer(arch, w, seed=2, backend="numpy", exact_fast_path=False)
        got = CrossbarLayer(arch, w, seed=2, backend="cuda", exact_fast_path=False)
        assert got.backend.name == "cuda"
        calls.clear()
        (o1, e1), (o2, e2) = ref.matmul(x, seed=5), got.matmul(x, seed=5)
        assert o1.tobytes() == o2.tobytes() and e1 == e2
        assert calls and all(c == integer for c in calls)  # integer sums on the device only
    assert {"uint8", "uint16"} <= dtypes
