"""FORMS against original and optimized ISAAC: what follows from the design (issue 12).

Source: G. Yuan et al., "FORMS: Fine-grained Polarized ReRAM-based In-situ Computation for
Mixed-signal DNN Accelerator", ISCA 2021, pp. 265-278, DOI 10.1109/ISCA52012.2021.00029
(arXiv 2106.09144), as transcribed in ``../shared/reference/papers.md`` section 2: [abstract]
read in the abstract; [card] read in a full-text card (Table I, Sec. VI); [forms.py] the ADC
figures of Accelergy-Project/hwcomponents-library ``hwcomponents_library/library/forms.py``.

What each test is worth (``docs/forms.md``, reproduction table):

- the ADC figures (0.226 pJ, 284 um2) are calibration points: the tests check that the
  component table and the ADC model reproduce them and move them when the ADC moves;
- the 185.44x fewer crossbars (LeNet-5, MNIST) [card] are compared with the crossbars our
  mapping places (dense 16-bit LeNet-5 on ISAAC vs the compressed model on FORMS). Ours is
  4.67x; the factors side by side tell why (one crossbar is the floor of a small layer, 4-bit
  offset weights on ISAAC need the same cells as 4-bit polarized ones): a disagreement the
  test pins rather than hides;
- 1.50x GOPS/s/mm2 and 1.93x GOPS/W against optimized ISAAC [abstract] and 1.12-2.4x frames
  per second [card]: our figures at peak (a design property) and on LeNet-5 (the workload
  property, zero-skipping on real MNIST activations) disagree (FORMS's 2,048 fragment
  conversions per step keep its 32 ADCs per IMA busy 2.4x longer than ISAAC's step); the
  tests hold the model's figures at what the design arithmetic gives, not at the paper's.
"""

from __future__ import annotations

import copy
import math
import os
from pathlib import Path

import numpy as np
import pytest

from sim.config.loader import arch_from_dict, read_yaml
from sim.engine import rollup
from sim.engine.placement import geometry
from sim.engine.timing import cycles_per_vector, step_cycles
from sim.errors import ConfigError, MappingError
from sim.macros.activity import StepActivity
from sim.macros.family import family_of, make_layer
from sim.stats import energy_by_event_pj
from tests.conftest import REPO

FORMS = read_yaml(REPO / "arch_configs" / "forms_32nm.yaml")
ISAAC_OPT = read_yaml(REPO / "arch_configs" / "isaac_opt_32nm.yaml")
ISAAC = read_yaml(REPO / "arch_configs" / "isaac_32nm.yaml")


def _arch(base, name="t", **sets):
    d = copy.deepcopy(base)
    for path, value in sets.items():
        node = d
        keys = path.split(".")
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = value
    return arch_from_dict(d, name)


def _data_dir() -> Path | None:
    for cand in (os.environ.get("IMCSIM_TEST_DATA"), REPO.parent / "shared" / "data",
                 REPO.parents[1] / "shared" / "data"):
        if cand and (Path(cand) / "mnist").is_dir():
            return Path(cand)
    return None


# --------------------------------------------------------------------------- the design
def test_forms_is_a_registered_family():
    arch = _arch(FORMS)
    assert arch.macro_class == "forms"
    assert family_of(arch).class_name == "forms"
    assert arch.crossbar.group_rows == 8


@pytest.mark.parametrize("path,value,where", [
    ("weights.encoding", "offset", "weights.encoding"),
    ("crossbar.unit_column", True, "crossbar.unit_column"),
    ("crossbar.dac.bits", 2, "crossbar.dac.bits"),
])
def test_forms_rules_name_the_field(path, value, where):
    with pytest.raises(ConfigError) as e:
        _arch(FORMS, **{path: value})
    assert where in str(e.value)


def test_adc_calibration_points():
    """[forms.py]: 15.2 mW / (32 x 2.1 GS/s) = 0.22619 pJ and 9,100 um2 / 32 = 284.375 um2
    per 4-bit ADC at 32 nm; the ADC model moves them when the ADC bits move."""
    arch = _arch(FORMS)
    assert arch.energy.pj("adc_conversions") == pytest.approx(0.22619, rel=1e-3)
    area = rollup.area_by_component_um2(arch)["adc"]
    instances = arch.organization.tiles * arch.organization.imas_per_tile * 32
    assert area / instances == pytest.approx(284.375, rel=1e-6)
    five = _arch(FORMS, **{"crossbar.adc.bits": 5})
    assert five.energy.pj("adc_conversions") > arch.energy.pj("adc_conversions")


def test_fragment_size_moves_sample_holds_and_sign_storage():
    """One S+H and one sign bit per fragment-column: halving the fragment doubles both."""
    areas = {}
    for f in (4, 8, 16):
        arch = _arch(FORMS, **{"crossbar.fragment_rows": f})
        a = rollup.area_by_component_um2(arch)
        areas[f] = (a["sample_hold"], a["sign_indicators"])
    assert areas[4][0] == pytest.approx(2 * areas[8][0])
    assert areas[8][0] == pytest.approx(2 * areas[16][0])
    assert areas[4][1] == pytest.approx(2 * areas[8][1])
    assert areas[8][1] == pytest.approx(2 * areas[16][1])


def _polarized(rng, k, n, f, bits=4):
    top = (1 << (bits - 1)) - 1
    mag = rng.integers(0, top + 1, size=(k, n))
    sign = np.repeat(rng.choice([-1, 1], size=(-(-k // f), n)), f, axis=0)[:k]
    return mag * sign


def test_unpolarized_weights_are_refused():
    arch = _arch(FORMS)
    w = np.zeros((16, 4), np.int64)
    w[0, 0], w[1, 0] = 3, -2          # one fragment-column holding both signs
    with pytest.raises(MappingError, match="polarize"):
        make_layer(arch, w, name="fc")


def test_zero_skip_conversions_sign_reads_and_cycles():
    """FORMS's shift control: a fragment's bit-cycle whose inputs all have that bit zero is
    not converted (no sign read either) and, when every fragment of the busiest crossbar
    skips, costs no time; one code path (CrossbarLayer counts, StepActivity, the schedule)."""
    rng = np.random.default_rng(0)
    k, n, f = 128, 8, 4                   # 4-row fragments: the 4-bit ADC holds 4 x 3 = 12
    sets = {"crossbar.fragment_rows": f}
    on = _arch(FORMS, **sets)
    off = _arch(FORMS, **sets, **{"inputs.zero_skip": False})
    w = _polarized(rng, k, n, f)
    x = rng.integers(0, 16, size=(32, k))  # 4-bit activations in 16-bit inputs
    x[:, 64:] = 0                          # half the fragments see only zeros
    y_on, ev_on = make_layer(on, w, seed=1).matmul(x)
    y_off, ev_off = make_layer(off, w, seed=1).matmul(x)
    assert np.array_equal(y_on, x @ w) and np.array_equal(y_off, x @ w)
    cols = n * 4                           # 8 magnitude bits (9-bit arch) in 4 cells
    bits = (x[:, :, None] >> np.arange(16)) & 1          # (M, K, steps)
    active = bits.reshape(32, k // f, f, 16).any(axis=2)  # (M, fragments, steps)
    assert ev_on.adc_conversions == int(active.sum()) * cols
    assert ev_off.adc_conversions == 32 * (k // f) * 16 * cols
    assert ev_on.adc_conversions_skipped == ev_off.adc_conversions - ev_on.adc_conversions
    assert ev_on.sign_indicator_reads == ev_on.adc_conversions
    assert ev_off.sign_indicator_reads == ev_off.adc_conversions
    e_on = sum(energy_by_event_pj(ev_on.counts(), on.energy).values())
    e_off = sum(energy_by_event_pj(ev_off.counts(), off.energy).values())
    assert e_on < e_off
    # Time: the schedule's cycles per vector from the layer's own step activity.
    g = geometry(on, k, n)
    c_on, steps_on = cycles_per_vector(on, g, ev_on.activity)
    c_off, steps_off = cycles_per_vector(
        off, g, StepActivity.dense(g.steps, g.row_groups, on.crossbar.rows // f, 32))
    assert steps_off == 16 and steps_on == pytest.approx(active.any(axis=1).sum() / 32)
    assert c_on < c_off


def _skip_result(arch, w, x, name="fc"):
    """A ``result.json``-shaped mapping of one layer run on ``x`` (one vector per sample)."""
    _, ev = make_layer(arch, w, seed=1).matmul(x)
    return {"samples": len(x), "layers": [{"name": name, "placement": "crossbar",
                                           "events": ev.counts()}]}


def test_skip_fractions_follow_the_input_bits():
    """``analysis.report.skip_fractions`` (the per-layer table of docs/forms.md): the share
    of a layer's fragment-column bit-cycles skipped equals the (fragment, step) pairs whose
    inputs all have that bit zero; clearing input bits raises it, no zero-skip makes it 0."""
    from analysis.report import skip_fractions

    rng = np.random.default_rng(3)
    k, n, f = 64, 8, 8
    arch = _arch(FORMS)
    w = _polarized(rng, k, n, f)
    x = rng.integers(0, 256, size=(16, k))
    base = skip_fractions(_skip_result(arch, w, x))[0]
    bits = (x[:, :, None] >> np.arange(16)) & 1
    idle = ~bits.reshape(16, k // f, f, 16).any(axis=2)
    assert base["share"] == pytest.approx(idle.mean())
    assert base["made"] + base["skipped"] == 16 * (k // f) * n * 4   # per sample: 16 steps
    fewer = skip_fractions(_skip_result(arch, w, x & ~0b1111))[0]     # low 4 bits cleared
    assert fewer["share"] > base["share"]
    off = _arch(FORMS, **{"inputs.zero_skip": False})
    assert skip_fractions(_skip_result(off, w, x & ~0b1111))[0]["share"] == 0


# --------------------------------------------------------------------------- peak figures
def _peak_by_hand(arch, weights_per_row):
    xb = arch.crossbar
    step_cyc = max(math.ceil(arch.clock.crossbar_cycle_ns * 1e-9 * arch.clock.digital_hz
                             - 1e-9),
                   math.ceil((xb.rows // xb.group_rows)
                             * math.ceil((xb.columns + xb.unit_column) / xb.adc.per_crossbar)
                             * arch.clock.digital_hz / xb.adc.rate_hz - 1e-9))
    vector_s = 16 * step_cyc / arch.clock.digital_hz
    return arch.organization.crossbars * xb.rows * weights_per_row * 2 / vector_s, step_cyc


def test_peak_follows_the_adc_budget_not_the_paper_ratio():
    """[abstract] 1.50x GOPS/s/mm2 and 1.93x GOPS/W vs optimized ISAAC. At peak (every
    fragment converting, no zero to skip) FORMS's 128 x 16 fragment-columns need 2,048
    conversions per step from 4 ADCs at 2.1 GS/s: 293 digital cycles against ISAAC's 121,
    so peak efficiencies are about 0.4x. The test pins the design arithmetic; the paper's
    ratios are workload figures with zero-skipping (docs/forms.md)."""
    forms, opt = _arch(FORMS), _arch(ISAAC_OPT)
    pf, po = rollup.peak(forms), rollup.peak(opt)
    hand_f, cyc_f = _peak_by_hand(forms, 32)   # 9-bit polarized: 4 cells, 32 weights / row
    hand_o, cyc_o = _peak_by_hand(opt, 32)     # 8-bit offset: 4 cells, 32 weights / row
    assert (cyc_f, cyc_o) == (293, 121)
    assert pf.ops_per_s == pytest.approx(hand_f, rel=1e-9)
    assert po.ops_per_s == pytest.approx(hand_o, rel=1e-9)
    ce = pf.gops_per_mm2 / po.gops_per_mm2
    pe = pf.gops_per_w / po.gops_per_w
    assert ce == pytest.approx(0.39, abs=0.02)   # paper 1.50x: not reproduced at peak
    assert pe == pytest.approx(0.41, abs=0.02)   # paper 1.93x: not reproduced at peak
    # Original ISAAC (16-bit weights) has half optimized ISAAC's peak ops.
    assert rollup.peak(_arch(ISAAC)).ops_per_s == pytest.approx(po.ops_per_s / 2, rel=1e-9)


# --------------------------------------------------------------------------- LeNet-5, MNIST
@pytest.fixture(scope="module")
def lenet_runs():
    data = _data_dir()
    if data is None:
        pytest.skip("MNIST not found (../shared/data or IMCSIM_TEST_DATA)")
    from analysis.run import simulate

    comp = REPO / "workloads" / "compressed" / "lenet5_mnist_forms.yaml"
    runs = {}
    for name, arch, wl in (("forms", FORMS, comp), ("isaac_opt", ISAAC_OPT, comp),
                           ("isaac", ISAAC, REPO / "workloads" / "lenet5_mnist.yaml")):
        runs[name] = simulate(_arch(arch, name), wl, samples=16, data_dir=data,
                              progress=False)
    return runs


def _crossbars(result):
    return {lr.name: lr.crossbars for lr in result.layers if lr.placement == "crossbar"}


def test_lenet5_crossbars_against_185x(lenet_runs):
    """[card] Table I: LeNet-5 on MNIST uses 185.44x fewer crossbars (23.18x pruning x 4x
    quantization x 2x polarization). Our mapping: the dense 16-bit LeNet-5 on ISAAC takes 42
    crossbars (one copy), the compressed model (23.74x pruned, 4-bit, 8-row polarized) on
    FORMS takes 8 (fc1 co-packs its sub-layers into 3): 5.25x. The factors from the mapping,
    side by side in docs/forms.md."""
    isaac = _crossbars(lenet_runs["isaac"])
    forms = _crossbars(lenet_runs["forms"])
    # Dense ISAAC, by hand: K x N 16-bit offset weights in 8 cell columns + a unit column.
    hand = {name: -(-k // 128) * -(-(n * 8) // 128)
            for name, k, n in (("conv1", 25, 6), ("conv2", 150, 16), ("fc1", 400, 120),
                               ("fc2", 120, 84), ("fc3", 84, 10))}
    assert isaac == hand and sum(isaac.values()) == 42
    assert forms == {"conv1": 1, "conv2": 2, "fc1": 3, "fc2": 1, "fc3": 1}
    # The mapping's own decomposition on optimized ISAAC (same compressed model):
    m = {lr.name: lr.mapping for lr in lenet_runs["isaac_opt"].layers if lr.mapping}
    at_bits = sum(v["dense_at_bits_crossbars"] for v in m.values())
    packed = sum(v["crossbars"] for v in m.values())
    assert (at_bits, packed) == (14, 9)
    assert sum(isaac.values()) / sum(forms.values()) == pytest.approx(42 / 8)
    assert sum(isaac.values()) / sum(forms.values()) < 185.44 / 10   # the documented gap


def test_lenet5_frames_per_second_and_efficiency(lenet_runs):
    """[card] 1.12-2.4x frames per second and [abstract] 1.50x GOPS/s/mm2, 1.93x GOPS/W vs
    optimized ISAAC on the same model. Ours on LeNet-5 (16 MNIST images): zero-skipping runs
    about half the 16 input steps, but FORMS's steps are ADC-bound (2.4x longer at full
    activity), so the frame rate gains only ~1.1x; the energy gain comes from 4-bit
    conversions (0.23 vs 1.56 pJ) against 3x more of them, and is diluted by the shared
    off-chip and buffer energy. The test holds the measured figures (docs/forms.md)."""
    f, o = lenet_runs["forms"], lenet_runs["isaac_opt"]
    fps = f.inferences_per_s / o.inferences_per_s
    assert 1.0 < fps < 1.25                     # paper: 1.12-2.4x
    ce = f.tops_per_mm2 / o.tops_per_mm2
    pe = f.tops_per_w / o.tops_per_w
    assert 0.9 < ce < 1.2                        # paper: 1.50x
    assert 1.0 < pe < 1.3                        # paper: 1.93x
    steps = [lr.executed_input_steps for lr in f.layers if lr.placement == "crossbar"]
    assert all(s < 16 for s in steps)
    assert f.hardware_accuracy >= 0.9
    # The sweep metric (ablation of docs/forms.md): conversions made per inference; FORMS
    # converts one fragment-column at a time, about 3x optimized ISAAC's column groups.
    assert f.adc_conversions_per_inference == f.events_total["adc_conversions"] / f.samples
    assert 2 < f.adc_conversions_per_inference / o.adc_conversions_per_inference < 4


def test_step_cycles_by_active_fragments():
    """A skipped fragment saves its conversions' ADC time: a step of g active fragments
    lasts max(crossbar read, g x 128 / 4 conversions at 2.1 GS/s)."""
    arch = _arch(FORMS)
    assert step_cycles(arch, 128, 16) == 293
    assert step_cycles(arch, 128, 8) == 147
    assert step_cycles(arch, 128, 1) == 120
