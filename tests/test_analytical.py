"""Analytical mode against the bit-true pass, and the engine's invariants.

On the vectors its statistics were taken from, the analytical estimate is exact (every count
and the per-step activity); on real data with zero-skip on, statistics from training samples
predict the bit-true conversions and energy of other (test) samples within 2 %.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from sim.engine.analytical import InputHistogram, estimate_events
from sim.engine.placement import LayerShape, geometry, place
from sim.engine.timing import schedule
from sim.errors import MappingError
from sim.macros import CrossbarLayer, Events
from sim.macros.activity import StepActivity

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _relu_like(rng, m, k, bits, correlated=True):
    x = rng.integers(0, 2 ** (bits - 1), size=(m, k))
    x[rng.random((m, k)) < 0.6] = 0  # post-ReLU sparsity
    if correlated:  # feature maps: some vectors all zero, some rows zero in a whole vector
        x[rng.random(m) < 0.3] = 0
        x[(rng.random((m, 1)) < 0.5) & (np.arange(k) % 8 < 4)] = 0
    return x


ARCHS = [
    {"crossbar.dac.bits": 1},
    {"crossbar.dac.bits": 2},
    {"crossbar.dac.bits": 3, "inputs.signed": False},
    {"weights.encoding": "polarized", "weights.bits": 7, "crossbar.fragment_rows": 4},
]


@pytest.mark.parametrize("zero_skip", [False, True])
@pytest.mark.parametrize("over", ARCHS)
def test_analytical_counts_equal_bit_true_on_the_same_data(make_arch, zero_skip, over):
    arch = make_arch(**{"inputs.zero_skip": zero_skip, "crossbar.adc.clip": True, **over})
    rng = np.random.default_rng(0)
    k, n, m = 37, 5, 64
    hi = 2 ** (arch.weights.bits - 1)
    lo = 0 if arch.weights.encoding == "polarized" else 1 - hi
    w = rng.integers(lo, hi, size=(k, n))
    x = _relu_like(rng, m, k, arch.inputs.bits)
    _, exact = CrossbarLayer(arch, w).matmul(x)
    est = estimate_events(arch, k, n, m, InputHistogram.of(x))
    assert est.counts() == exact.counts()
    for name in ("hist_max", "hist_tile"):
        np.testing.assert_array_equal(getattr(est.activity, name),
                                      getattr(exact.activity, name))
    assert est.activity.vectors == m
    assert (exact.adc_conversions_skipped > 0) == zero_skip


def test_correlation_moves_the_estimate_as_it_moves_bit_true(make_arch):
    """Same value histogram, rows correlated or not: the conversions follow the bit-true ones,
    which an estimate from the value histogram alone could not."""
    arch = make_arch(**{"inputs.zero_skip": True, "crossbar.adc.clip": True})
    rng = np.random.default_rng(2)
    k, n, m = 64, 3, 200
    w = rng.integers(-127, 128, size=(k, n))
    layer = CrossbarLayer(arch, w)
    x = _relu_like(rng, m, k, 8, correlated=False)
    # The same values moved so that zeros cluster in whole row groups of whole vectors.
    clustered = np.sort(x.ravel()).reshape(-1, 16)[rng.permutation(m * k // 16)].reshape(m, k)
    np.testing.assert_array_equal(np.bincount(clustered.ravel()), np.bincount(x.ravel()))
    conv = {}
    for label, data in (("independent", x), ("clustered", clustered)):
        _, exact = layer.matmul(data)
        est = estimate_events(arch, k, n, m, InputHistogram.of(data))
        assert est.adc_conversions == exact.adc_conversions
        conv[label] = est.adc_conversions
    assert conv["clustered"] < 0.8 * conv["independent"]


def test_plane_subset_and_scaling(make_arch):
    """Beyond ``max_vectors`` a seeded subset's planes stand for all vectors: activity scaled
    to the vectors asked for, conversions within the subset's sampling error."""
    arch = make_arch(**{"inputs.zero_skip": True, "crossbar.adc.clip": True})
    rng = np.random.default_rng(3)
    k, n, m = 40, 2, 4000
    x = _relu_like(rng, m, k, 8)
    _, exact = CrossbarLayer(arch, rng.integers(-127, 128, size=(k, n))).matmul(x)
    hist = InputHistogram.of(x, max_vectors=1000, seed=1)
    assert hist.plane_vectors == 1000 and hist.vectors == m
    assert InputHistogram.of(x, max_vectors=1000, seed=1).planes.tobytes() == hist.planes.tobytes()
    est = estimate_events(arch, k, n, m, hist)
    assert est.adc_conversions == pytest.approx(exact.adc_conversions, rel=0.03)
    assert est.dac_pulses == exact.dac_pulses  # from the histogram of all vectors
    assert est.activity.vectors == m
    assert est.activity.hist_max.sum() == pytest.approx(m * est.activity.steps, abs=3)
    half = estimate_events(arch, k, n, m // 2, hist)
    assert half.adc_conversions == pytest.approx(est.adc_conversions / 2, abs=1)


def test_statistics_refuse_a_wrong_shape_or_format(make_arch):
    arch = make_arch(**{"inputs.zero_skip": True, "inputs.signed": False})
    hist = InputHistogram.of(np.array([[1, -2, 3]]))
    with pytest.raises(ValueError, match="K = 4"):
        estimate_events(arch, 4, 1, 1, hist)
    with pytest.raises(ValueError, match="unsigned 8-bit range"):
        estimate_events(arch, 3, 1, 1, hist)
    with pytest.raises(ValueError, match="vectors, K"):
        InputHistogram.of(np.zeros((2, 3, 4), int))


def _skip_arch():
    """ISAAC with ``inputs.zero_skip: true`` (validated as a YAML would be)."""
    from sim.config.loader import arch_from_dict, read_yaml

    d = read_yaml(Path(__file__).resolve().parents[1] / "arch_configs" / "isaac_32nm.yaml")
    d["inputs"]["zero_skip"] = True
    return arch_from_dict(d, "isaac_zero_skip")


def _real_data_check(workload: str, n_test: int, stats_slice: slice | None, tol: float):
    """Bit-true events of each layer of ``workload`` on ISAAC with zero-skip, for the first
    ``n_test`` test samples, against analytical events from the statistics of the float
    model's inputs on the test samples ``stats_slice`` (``None``: the same samples)."""
    from analysis.run import _hardware_layers, input_statistics
    from mappers import QuantRecipe, map_model
    from sim.errors import UserError
    from sim.stats import energy_by_event_pj, total_pj
    from workloads.spec import load_workload

    wl = load_workload(workload)
    data_dir = SHARED_DATA if SHARED_DATA.is_dir() else None
    try:
        x_test, _ = wl.load_data("test", data_dir)
        calib, _ = wl.load_data("train", data_dir)
    except UserError as exc:
        pytest.skip(f"{wl.dataset} data set not found: {str(exc).splitlines()[0]}")
    arch = _skip_arch()
    model = wl.load_model()
    recipe = QuantRecipe(weight_bits=wl.bits.weights, activation_bits=wl.bits.activations)
    mapped = map_model(model, arch, recipe, calib[:wl.calibration_samples], seed=0)
    mapped.reset_events()
    mapped(x_test[:n_test])
    stats = input_statistics(model, mapped,
                             x_test[stats_slice if stats_slice is not None else slice(n_test)])
    layers = _hardware_layers(mapped)
    totals = np.zeros((2, 2))
    for rec in mapped.layers:
        exact = rec.events
        est = Events()
        for xb, hist in zip(layers[rec.name].crossbar_layers, stats[rec.name], strict=True):
            est.add(estimate_events(arch, xb.k, xb.n, rec.vectors_per_sample * n_test, hist))
        e_est, e_exact = (total_pj(energy_by_event_pj(ev.counts(), arch.energy))
                          for ev in (est, exact))
        assert est.adc_conversions_skipped > 0, rec.name
        assert est.adc_conversions == pytest.approx(exact.adc_conversions, rel=tol), rec.name
        assert e_est == pytest.approx(e_exact, rel=tol), rec.name
        assert est.activity.vectors == exact.activity.vectors
        totals += [[est.adc_conversions, exact.adc_conversions], [e_est, e_exact]]
    assert totals[0, 0] == pytest.approx(totals[0, 1], rel=tol)
    assert totals[1, 0] == pytest.approx(totals[1, 1], rel=tol)


@pytest.mark.parametrize(("workload", "n_test"), [("lenet5_mnist", 4), ("cifar_cnn_cifar10", 2)])
def test_real_data_same_samples_with_zero_skip(workload, n_test):
    """Statistics and bit-true pass on the SAME test samples (as ``imcsim sweep`` in
    analytical mode does): each layer's conversions and event energy within 2 % (measured:
    0.25 % at most). The estimate is exact on its own vectors; what remains is that the
    bit-true layers see the hardware's activations and the estimate the float model's."""
    _real_data_check(workload, n_test, None, 0.02)


def test_real_data_disjoint_samples_with_zero_skip():
    """Statistics from 300 digits test samples predict each layer's bit-true conversions and
    energy on 60 OTHER test samples within 2 % (measured: 1.0 % at most). MNIST and CIFAR-10
    are measured the same way by ``bench/bench_analytical_accuracy.py`` (docs/analytical.md):
    a fast test cannot run enough of their samples to hold the sampling error below 2 %."""
    _real_data_check("digits_cnn", 60, slice(60, 360), 0.02)


def test_estimate_end_to_end_with_zero_skip_and_statistics_reused():
    """``analysis.run.estimate`` against ``simulate`` on the same 12 digits test samples with
    zero-skip on; the input statistics are taken once and reused by a second design point."""
    import dataclasses

    from analysis import run
    from workloads.spec import builtin_workloads

    arch = _skip_arch()
    digits = builtin_workloads()["digits_cnn"]
    run._ANALYTICAL.clear()
    est = run.estimate(arch, digits, samples=12)
    exact = run.simulate(arch, digits, samples=12, progress=False)
    assert [a.name for a in est.layers] == [b.name for b in exact.layers]
    for a, b in zip(est.layers, exact.layers, strict=True):
        if not b.crossbars:  # a digital node of the layer graph: same counts in both modes
            assert a.events == b.events, a.name
            continue
        assert a.events["adc_conversions"] == pytest.approx(b.events["adc_conversions"],
                                                            rel=0.02), a.name
        assert a.events["adc_conversions_skipped"] > 0
    assert est.energy_per_inference_nj == pytest.approx(exact.energy_per_inference_nj, rel=0.02)
    (wl,) = run._ANALYTICAL.values()
    stats_before, passes = dict(wl.hists), wl.float_passes
    adc = dataclasses.replace(arch.crossbar.adc, bits=7, clip=True)
    other = dataclasses.replace(arch, crossbar=dataclasses.replace(arch.crossbar, adc=adc))
    run.estimate(other, digits, samples=12)
    assert wl.float_passes == passes  # no float pass for a point that changes the ADC only
    assert all(wl.hists[k] is v for k, v in stats_before.items())


def _events(result):
    return [(lr.name, lr.events) for lr in result.layers]


def test_estimate_cache_recomputes_when_a_cause_changes(make_arch):
    """A design point that changes what the cached input statistics depend on gets fresh
    statistics, and its result equals a cold-cache result and moves with the cause: the input
    format's signedness (the activation quantizer of a layer with negative inputs) and the
    crossbar rows of a packed layer (its sub-layers' rows)."""
    import torch
    from torch import nn

    from analysis import run
    from analysis.run import LoadedWorkload
    from workloads.spec import Bits

    g = torch.Generator().manual_seed(3)
    model = nn.Sequential(nn.Linear(40, 12), nn.ReLU(), nn.Linear(12, 4)).eval()
    with torch.no_grad():  # half the first layer's weights zero: packing drops cells
        model[0].weight.mul_((torch.rand(model[0].weight.shape, generator=g) < 0.5).float())
    x = torch.randn(16, 40, generator=g)  # the first layer's inputs go negative
    lw = LoadedWorkload(name="t", model=model, test_inputs=x, test_labels=torch.zeros(16).long(),
                        calibration=x, bits=Bits(weights=8, activations=7), mapping="packed")
    base = {"organization.tiles": 64, "inputs.signed": False}
    cases = [({**base, "inputs.signed": True}, "signed"), ({**base, "crossbar.rows": 8}, "rows")]
    for change, label in cases:
        a, b = make_arch(**base), make_arch(**change)
        run._ANALYTICAL.clear()
        first = run.estimate(a, lw, samples=16)
        (wl,) = run._ANALYTICAL.values()
        passes = wl.float_passes
        warm = run.estimate(b, lw, samples=16)
        assert wl.float_passes == passes + 1, label  # the changed layers' statistics
        run._ANALYTICAL.clear()
        cold = run.estimate(b, lw, samples=16)
        assert _events(warm) == _events(cold), label
        assert _events(warm) != _events(first), label


def test_estimate_cache_sees_an_edited_workload_file(tmp_path):
    """Editing the workload file (4-bit instead of 8-bit activations), then its checkpoint,
    between points of one process makes a new cache entry each time: each point equals a
    cold-cache run and moves."""
    import os
    import shutil

    import torch

    from analysis import run
    from workloads.spec import builtin_workloads

    def bump(path):  # a coarse clock: make the edit newer anyway
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))

    arch = _skip_arch()
    digits = Path(builtin_workloads()["digits_cnn"])
    text = digits.read_text()
    ckpt = tmp_path / "digits_cnn.pt"
    shutil.copy(digits.parent / "checkpoints" / "digits_cnn.pt", ckpt)
    assert "checkpoint: checkpoints/digits_cnn.pt" in text and "activations: 8" in text
    wl = tmp_path / "digits.yaml"
    wl.write_text(text.replace("checkpoint: checkpoints/digits_cnn.pt", f"checkpoint: {ckpt}"))
    run._ANALYTICAL.clear()
    eight = run.estimate(arch, wl, samples=8)
    wl.write_text(wl.read_text().replace("activations: 8", "activations: 4"))
    bump(wl)
    four = run.estimate(arch, wl, samples=8)
    run._ANALYTICAL.clear()
    cold = run.estimate(arch, wl, samples=8)
    assert _events(four) == _events(cold)
    assert (four.events_total["adc_conversions_skipped"]
            != eight.events_total["adc_conversions_skipped"])
    state = torch.load(ckpt)
    first = next(k for k, v in state.items() if k.endswith("weight") and v.dim() == 4)
    state[first] = state[first] * 0.25  # smaller activations downstream
    torch.save(state, ckpt)
    bump(ckpt)
    edited = run.estimate(arch, wl, samples=8)
    run._ANALYTICAL.clear()
    cold = run.estimate(arch, wl, samples=8)
    assert _events(edited) == _events(cold)
    assert _events(edited) != _events(four)


def test_geometry_matches_programmed_layer(isaac_arch, make_arch):
    rng = np.random.default_rng(1)
    for arch in (isaac_arch, make_arch(**{"weights.encoding": "differential",
                                          "weights.bits": 7})):
        for k, n in ((5, 3), (300, 40), (129, 17)):
            lo = -(2 ** (arch.weights.bits - 1)) + 1
            layer = CrossbarLayer(arch, rng.integers(lo, -lo, size=(k, n)))
            g = geometry(arch, k, n)
            assert (g.crossbars, g.columns_total) == (layer.crossbars, layer.columns_total)


def _chain():
    return [LayerShape(name="c1", k=27, n=16, vectors=64, out_width=8, kernel_height=3),
            LayerShape(name="c2", k=144, n=32, vectors=16, out_width=4, kernel_height=3,
                       source="c1"),
            LayerShape(name="fc", k=512, n=10, vectors=1, source="c2")]


def test_schedule_invariants_and_modes(isaac_arch):
    placements = place(isaac_arch, _chain(), duplicate=False)
    pipe = schedule(isaac_arch, placements, {}, pipelined=True)
    seq = schedule(isaac_arch, placements, {}, pipelined=False)
    for t in (pipe, seq):
        assert t.latency_cycles > 0
        for lt in t.layers:
            assert lt.busy_cycles > 0 and lt.end_cycle >= lt.start_cycle >= 0
            assert all(isinstance(v, int) for v in (lt.busy_cycles, lt.end_cycle))
    assert pipe.latency_cycles < seq.latency_cycles  # overlapping layers saves time
    by = {lt.name: lt for lt in seq.layers}
    assert by["c2"].start_cycle >= by["c1"].end_cycle - by["c1"].step_cycles
    # zero-skip: a layer whose every row tile skips half its steps computes for less time
    skip_arch = dataclasses.replace(
        isaac_arch, inputs=dataclasses.replace(isaac_arch.inputs, zero_skip=True))
    g = placements[0].geometry
    act = StepActivity.dense(g.steps, g.row_groups, isaac_arch.crossbar.rows
                             // isaac_arch.crossbar.group_rows, placements[0].layer.vectors)
    top = int(np.nonzero(act.hist_max)[0][-1])
    for hist in (act.hist_max, *act.hist_tile):  # every tile idle in the same half
        n_top = int(np.nonzero(hist)[0][-1]) if hist is not act.hist_max else top
        hist[0] = hist[n_top] // 2
        hist[n_top] -= hist[0]
    half = schedule(skip_arch, placements, {"c1": act}, pipelined=True)
    assert half.layers[0].busy_cycles < pipe.layers[0].busy_cycles


def test_duplication_balances_and_model_too_big_is_reported(isaac_arch, make_arch):
    placements = place(isaac_arch, _chain())
    assert placements[0].duplicates > placements[2].duplicates
    small = make_arch(**{"organization.tiles": 1, "organization.imas_per_tile": 1,
                         "organization.crossbars_per_ima": 2})
    with pytest.raises(MappingError, match=r"needs \d+ crossbars .* has 2 \(short by"):
        place(small, _chain())
    ok = make_arch(**{"organization.tiles": 1, "organization.imas_per_tile": 1,
                      "organization.crossbars_per_ima": 2, "organization.reprogram": True})
    assert len(place(ok, _chain())) == 3


def _greedy_copies(layers, crossbars, spare):
    """The duplication rule written plainly (the oracle): each round, sort all layers by
    vectors per copy (stable) and give one copy to the first that has vectors to spare and
    fits; stop when none does or the busiest layer has at most one vector per copy."""
    dup = [1] * len(layers)
    while True:
        order = sorted(range(len(layers)), key=lambda i: -layers[i].vectors / dup[i])
        for i in order:
            if dup[i] < layers[i].vectors and crossbars[i] <= spare:
                dup[i] += 1
                spare -= crossbars[i]
                break
        else:
            break
        if layers[order[0]].vectors / dup[order[0]] <= 1:
            break
    return dup


def test_duplicates_heap_matches_the_plain_greedy():
    """``placement._duplicates`` (a heap) gives the copies of the plain greedy rule on random
    layer sets, ties and layers too large to copy included."""
    from sim.engine.placement import _duplicates

    rng = np.random.default_rng(0)
    for trial in range(300):
        n = int(rng.integers(1, 9))
        vectors = rng.choice([1, 2, 3, 4, 16, 64, 100, 1024], size=n)
        layers = [LayerShape(name=f"l{i}", k=8, n=8, vectors=int(v))
                  for i, v in enumerate(vectors)]
        crossbars = [int(c) for c in rng.integers(1, 40, size=n)]
        spare = int(rng.integers(0, 400))
        assert _duplicates(layers, crossbars, spare) == _greedy_copies(
            layers, crossbars, spare), trial


def _variation_arch(make_arch, **extra):
    return make_arch(**{"variation.seed": 5, "variation.cell.distribution": "lognormal",
                        "variation.cell.sigma": 0.05, "variation.cell.read_noise_sigma": 0.03,
                        "variation.cell.stuck_at_0": 0.01, "variation.adc.offset_sigma_lsb": 0.3,
                        "variation.adc.gain_sigma": 0.01,
                        "variation.adc.cap_mismatch_sigma": 0.02, **extra})


@pytest.mark.parametrize("extra", [{}, {"crossbar.adc.range": "calibrated"},
                                   {"variation.adc.noise_sigma_lsb": 0.5}])
def test_lazily_programmed_layer_equals_an_eager_one(make_arch, extra):
    """A crossbar layer programs its cells and draws its ADC instances on first use: a layer
    used straight away (first use: the bit-true product or a range calibration) gives the same
    bits as one programmed in its constructor, with variation, stuck cells, mismatched ADCs
    and noise; the seeds are spawned in the constructor, so the order of programming does not
    matter (another layer programmed in between changes nothing)."""
    arch = _variation_arch(make_arch, **extra)
    rng = np.random.default_rng(2)
    w = rng.integers(-100, 101, size=(300, 24))
    x = _relu_like(rng, 40, 300, arch.inputs.bits)
    seed = np.random.SeedSequence([7, 1])
    eager = CrossbarLayer(arch, w, seed=seed, name="eager")
    eager._program()  # what the constructor did before
    lazy = CrossbarLayer(arch, w, seed=np.random.SeedSequence([7, 1]), name="lazy")
    assert not lazy._programmed and lazy.crossbars == eager.crossbars
    CrossbarLayer(arch, w, seed=3)._program()  # another layer programmed in between

    def use(layer):
        if arch.crossbar.adc.range == "calibrated":
            layer.calibrate(x)
        return layer.matmul(x, seed=4)

    (ye, ee), (yl, el) = use(eager), use(lazy)
    assert lazy._programmed
    for attr in ("levels", "conductance", "adc_gain", "adc_offset", "adc_thresholds", "step"):
        assert np.array_equal(getattr(eager, attr), getattr(lazy, attr)), attr
    assert np.array_equal(ye, yl)
    assert ee.counts() == el.counts()
    # The cause moves the output: another chip seed draws other cells.
    other, _ = use(CrossbarLayer(arch, w, seed=np.random.SeedSequence([7, 2])))
    assert not np.array_equal(ye, other)


def test_estimate_never_programs_cells(make_arch, monkeypatch):
    """The analytical mode maps every layer but reads only its geometry: no crossbar layer is
    programmed (dense, packed, calibrated range). The bit-true pass of the same mapping
    programs them."""
    import torch
    from torch import nn

    from analysis import run
    from analysis.run import LoadedWorkload
    from workloads.spec import Bits

    g = torch.Generator().manual_seed(3)
    model = nn.Sequential(nn.Linear(40, 12), nn.ReLU(), nn.Linear(12, 4)).eval()
    x = torch.randn(16, 40, generator=g)
    programmed = []
    real = CrossbarLayer._program

    def spy(self):
        programmed.append(self.name)
        real(self)

    monkeypatch.setattr(CrossbarLayer, "_program", spy)
    arch = _variation_arch(make_arch, **{"organization.tiles": 64,
                                         "crossbar.adc.range": "calibrated"})
    for mapping in ("dense", "packed"):
        lw = LoadedWorkload(name="t", model=model, test_inputs=x,
                            test_labels=torch.zeros(16).long(), calibration=x,
                            bits=Bits(weights=8, activations=7), mapping=mapping)
        run._ANALYTICAL.clear()
        result = run.estimate(arch, lw, samples=16)
        assert result.layers and programmed == [], mapping
        run.simulate(arch, lw, samples=4, progress=False)
        assert programmed, mapping
        programmed.clear()


# ------------------------------------------------------------------ kept mappings (issue 14)
def _result_json(result) -> str:
    """Everything a result says but its wall time, as text (NaN compares equal to NaN)."""
    import json

    data = result.to_json()
    data.pop("wall_time_s")
    return json.dumps(data, sort_keys=True, default=str)


def _small_workload(mapping: str, weight_bits: int = 8):
    import torch
    from torch import nn

    from analysis.run import LoadedWorkload
    from workloads.spec import Bits

    g = torch.Generator().manual_seed(5)
    model = nn.Sequential(nn.Linear(40, 24), nn.ReLU(), nn.Linear(24, 6)).eval()
    with torch.no_grad():  # a third of the first layer's weights zero: packing drops cells
        model[0].weight.mul_((torch.rand(model[0].weight.shape, generator=g) < 0.67).float())
    x = torch.randn(16, 40, generator=g).relu()
    return LoadedWorkload(name=f"t_{mapping}", model=model, test_inputs=x,
                          test_labels=torch.zeros(16).long(), calibration=x,
                          bits=Bits(weights=weight_bits, activations=7), mapping=mapping)


def _no_kept_work(monkeypatch):
    """Turn off every per-point memo of the analytical sweep: kept mappings, placement
    copies and simpy runs."""
    from analysis import run
    from sim.engine import placement
    from sim.engine import timing as timing_mod

    monkeypatch.setattr(run._AnalyticalWorkload, "MAPPINGS_KEPT", 0)
    monkeypatch.setattr(placement, "_copies", placement._copies.__wrapped__)
    monkeypatch.setattr(timing_mod, "SIMULATIONS_KEPT", 0)
    timing_mod.clear_simulations()


@pytest.mark.parametrize("mapping,weight_bits", [("dense", 8), ("packed", 6)])
def test_kept_mappings_give_the_results_of_fresh_ones(make_arch, monkeypatch, mapping,
                                                      weight_bits):
    """A grid of ADC bits x crossbar size x cell bits estimated with mappings, placement
    copies and simpy runs kept across points gives, point by point, the results (every
    field but the wall time) of the same grid with nothing kept; the kept mappings are
    used (points differing only in ADC bits share one). Packed at 6 of the arch's 8 weight
    bits: the layers hold archs made from the point's (``storage_arch``), rebound to each
    point's."""
    from analysis import run
    from sim.engine import timing as timing_mod

    lw = _small_workload(mapping, weight_bits)
    archs = [make_arch(**{"organization.tiles": 64, "crossbar.adc.bits": adc,
                          "crossbar.adc.clip": True, "crossbar.rows": rows,
                          "crossbar.cell.bits": cell})
             for adc in (4, 6, 8) for rows in (16, 32) for cell in (1, 2)]
    run._ANALYTICAL.clear()
    timing_mod.clear_simulations()
    kept = [_result_json(run.estimate(a, lw, samples=16)) for a in archs]
    (wl,) = run._ANALYTICAL.values()
    assert wl.mapping_stats == {"hits": 8, "misses": 4}
    with monkeypatch.context() as m:
        _no_kept_work(m)
        run._ANALYTICAL.clear()
        fresh = [_result_json(run.estimate(a, lw, samples=16)) for a in archs]
        (wl,) = run._ANALYTICAL.values()
        assert wl.mapping_stats == {"hits": 0, "misses": 12}
    assert kept == fresh
    assert len(set(kept)) == len(archs)  # every point its own result


@pytest.mark.parametrize("change", [
    {"crossbar.rows": 32}, {"crossbar.columns": 16}, {"crossbar.cell.bits": 2},
    {"weights.encoding": "differential"}, {"inputs.bits": 9},
    {"weights.bits": 10}, {"crossbar.dac.bits": 2}, {"inputs.zero_skip": True},
    {"organization.crossbars_per_ima": 8}])
def test_a_kept_mapping_is_not_used_once_its_cause_changes(make_arch, change):
    """After a point whose mapping is kept, a point changing one input of the mapping (or of
    what the mapped layers' archs give the events) gets a new mapping: its result equals a
    run with nothing kept, and it moves from the first point's."""
    from analysis import run

    lw = _small_workload("dense")
    base = {"organization.tiles": 64, "crossbar.adc.clip": True, "crossbar.cell.bits": 1}
    first_arch, other = make_arch(**base), make_arch(**{**base, **change})
    run._ANALYTICAL.clear()
    first = run.estimate(first_arch, lw, samples=16)
    warm = run.estimate(other, lw, samples=16)
    (wl,) = run._ANALYTICAL.values()
    assert wl.mapping_stats == {"hits": 0, "misses": 2}
    run._ANALYTICAL.clear()
    cold = run.estimate(other, lw, samples=16)
    assert _result_json(warm) == _result_json(cold)
    assert _result_json(warm) != _result_json(first)


def test_mapping_key_names_every_arch_field_but_the_unmapped_ones(isaac_arch):
    """The kept mappings' key moves with every arch field a mapping may read: every
    top-level field and every crossbar field but the ADC (whose range is keyed), and does
    not move with the ADC's bits, energies, components, notes or source."""
    from analysis.run import _UNMAPPED_FIELDS, _mapping_key

    a = isaac_arch
    key = _mapping_key(a)
    sentinel = object()
    for f in dataclasses.fields(a):
        if f.name in _UNMAPPED_FIELDS or f.name == "crossbar":
            continue
        assert _mapping_key(dataclasses.replace(a, **{f.name: sentinel})) != key, f.name
    for f in dataclasses.fields(a.crossbar):
        if f.name == "adc":
            continue
        xb = dataclasses.replace(a.crossbar, **{f.name: sentinel})
        assert _mapping_key(dataclasses.replace(a, crossbar=xb)) != key, f.name
    ranged = dataclasses.replace(a.crossbar.adc, range="calibrated")
    assert _mapping_key(dataclasses.replace(
        a, crossbar=dataclasses.replace(a.crossbar, adc=ranged))) != key
    adc = dataclasses.replace(a.crossbar.adc, bits=a.crossbar.adc.bits - 1)
    same = dataclasses.replace(a, crossbar=dataclasses.replace(a.crossbar, adc=adc),
                               energy=sentinel, components=(), notes=("x",), source="y")
    assert _mapping_key(same) == key


def test_rebound_layer_archs_equal_those_made_from_the_point(isaac_arch):
    """A layer arch made from a template arch (its own weight bits, spike inputs, both) and
    rebound to a point of the same key equals the one made from the point; one that
    replaced an unkeyed field is refused."""
    from analysis.run import _rebound
    from sim.engine.placement import spike_arch, storage_arch
    from sim.errors import InvariantError

    t = isaac_arch
    adc = dataclasses.replace(t.crossbar.adc, bits=5)
    p = dataclasses.replace(t, crossbar=dataclasses.replace(t.crossbar, adc=adc),
                            notes=("point",), source="point")
    for make in (lambda a: a, lambda a: storage_arch(a, 6), spike_arch,
                 lambda a: spike_arch(storage_arch(a, 4))):
        got = _rebound(make(t), t, p)
        assert got == make(p)
        assert got.crossbar.adc.bits == 5
    with pytest.raises(InvariantError):
        _rebound(dataclasses.replace(t, notes=("other",)), t, p)


def test_kept_mappings_stay_within_their_byte_bound(make_arch, monkeypatch):
    """Kept mappings are sized by their layers' held bytes (weights and encoded levels):
    with room for two mappings of this workload, three points of different mapping keep the
    two most recent; a bound below one mapping keeps none. A layer's held bytes move with
    its encoded levels (1-bit cells: twice the columns of 2-bit cells)."""
    from analysis import run
    from sim.macros import CrossbarLayer

    lw = _small_workload("dense")
    archs = [make_arch(**{"organization.tiles": 64, "crossbar.adc.clip": True,
                          "crossbar.rows": rows}) for rows in (16, 32, 64)]
    run._ANALYTICAL.clear()
    run.estimate(archs[0], lw, samples=16)
    (wl,) = run._ANALYTICAL.values()
    (one,) = [e[3] for e in wl.mappings.values()]
    assert one > 0
    monkeypatch.setattr(run._AnalyticalWorkload, "MAPPING_BYTES_KEPT", 2 * one + one // 2)
    for a in archs[1:]:
        run.estimate(a, lw, samples=16)
    sizes = [e[3] for e in wl.mappings.values()]
    assert len(sizes) == 2 and sum(sizes) <= run._AnalyticalWorkload.MAPPING_BYTES_KEPT
    assert [k[0] for k in wl.mappings] == [run._mapping_key(a) for a in archs[1:]]
    monkeypatch.setattr(run._AnalyticalWorkload, "MAPPING_BYTES_KEPT", 1)
    run._ANALYTICAL.clear()
    run.estimate(archs[0], lw, samples=16)
    (wl,) = run._ANALYTICAL.values()
    assert not wl.mappings
    w = np.arange(-32, 32).reshape(16, 4)
    held = [CrossbarLayer(make_arch(**{"crossbar.cell.bits": b}), w).held_bytes()
            for b in (1, 2)]
    assert held[0] > held[1] > w.nbytes
