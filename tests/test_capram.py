"""CAP-RAM macro family: schema, encodings, placement, timing, and each non-ideality.

Every non-ideality is switched on alone in physical units; turning it up must move the output
error, and the same seed must give the same bits (a different seed, different ones).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from sim.config.loader import arch_from_dict, read_yaml
from sim.engine.placement import LayerShape, layer_geometry, place
from sim.engine.timing import cycles_per_vector, schedule, step_cycles
from sim.errors import ConfigError, MappingError
from sim.macros.activity import StepActivity
from sim.macros.cap_ram import ENCODINGS, WEIGHT_BITS
from sim.macros.family import family_of, make_layer
from tests.conftest import REPO

CAPRAM_YAML = REPO / "arch_configs" / "cap_ram_65nm.yaml"
BASE = read_yaml(CAPRAM_YAML)


def capram(**changes):
    """The shipped CAP-RAM config with dotted-path changes (``a.b.c``: value)."""
    d = copy.deepcopy(BASE)
    for path, value in changes.items():
        node = d
        *head, last = path.split(".")
        for key in head:
            node = node.setdefault(key, {})
        node[last] = value
    return arch_from_dict(d, "cap_ram_test")


def capram_problems(**changes):
    with pytest.raises(ConfigError) as info:
        capram(**changes)
    return info.value.problems


def _data(seed=3, k=60, n=16, m=48, wbits=4):
    rng = np.random.default_rng(seed)
    hi = (1 << (wbits - 1)) - 1
    w = rng.integers(-hi, hi + 1, (k, n))
    x = rng.integers(0, 256, (m, k))
    return w, x


def _error(arch, seed=11, call=0):
    w, x = _data()
    layer = make_layer(arch, w, seed=seed)
    y, _ = layer.matmul(x, seed=call)
    return float(np.abs(y - x @ w).mean()), y


IDEAL = {"crossbar.mac.ktc_noise": False, "weights.bits": 4}


def test_shipped_config_loads_as_cap_ram():
    arch = capram()
    assert arch.macro_class == "cap_ram" and family_of(arch).class_name == "cap_ram"
    assert (arch.crossbar.rows, arch.crossbar.columns) == (64, 128)  # 512 / 8 MAC rows
    assert arch.organization.crossbars == 8                           # weight groups
    assert arch.crossbar.adc.per_crossbar == 32 and arch.crossbar.adc.bits == 7


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("bits", WEIGHT_BITS)
def test_every_width_and_encoding_is_exact_when_ideal(bits, encoding):
    arch = capram(**{**IDEAL, "weights.bits": bits, "weights.encoding": encoding})
    rng = np.random.default_rng(bits)
    hi = (1 << (bits - 1)) - 1
    w = rng.integers(-hi, hi + 1, (50, 6))        # 50 rows: partial sums stay below 63.5
    x = rng.integers(0, 256, (9, 50))
    y, ev = make_layer(arch, w, seed=0).matmul(x)
    assert np.array_equal(y, x @ w)
    assert ev.sample_holds == 0 and ev.adc_conversions > 0


def test_schema_reports_every_problem_with_paths():
    probs = dict(capram_problems(**{
        "weights.encoding": "offset", "inputs.signed": True, "crossbar.cells_per_mac": 7,
        "crossbar.mac.capacitance": "1.2", "crossbar.adc.count": 200,
        "variation.adc.offset": "-1mV", "crossbar.colour": 1}))
    assert set(probs) >= {"weights.encoding", "inputs.signed", "crossbar.cells_per_mac",
                          "crossbar.mac.capacitance", "crossbar.adc.count",
                          "variation.adc.offset", "crossbar.colour"}
    assert "twos_complement" in probs["weights.encoding"]


def test_unknown_family_is_one_problem():
    probs = capram_problems(**{"crossbar.class": "memristor_magic"})
    assert probs[0][0] == "crossbar.class" and "cap_ram" in probs[0][1]


def test_unsupported_weight_width():
    probs = dict(capram_problems(**{"weights.bits": 7}))
    assert "2, 3, 4, 5, 6, 8" in probs["weights.bits"]


def test_model_that_does_not_fit_names_what_is_missing():
    arch = capram()
    # 8-bit two's complement: 8 columns per weight. 144 rows x 32 outputs: 3 x 2 groups;
    # 512 x 10: 8 x 1 groups; 9 x 16: 1 group -> 15 of 8.
    layers = [LayerShape(name="c1", k=9, n=16, vectors=64),
              LayerShape(name="c2", k=144, n=32, vectors=64),
              LayerShape(name="fc", k=512, n=10, vectors=1)]
    assert [layer_geometry(arch, ly).crossbars for ly in layers] == [1, 6, 8]
    with pytest.raises(MappingError, match=r"needs 15 weight groups .* has 8 \(short by 7"):
        place(arch, layers)
    # Two macros hold it, without duplicates (one group computes at a time).
    two = capram(**{"organization.macros": 2})
    assert [p.duplicates for p in place(two, layers)] == [1, 1, 1]


def test_groups_of_a_layer_compute_one_after_another():
    arch = capram()
    ly = LayerShape(name="c2", k=144, n=32, vectors=10)
    g = layer_geometry(arch, ly)
    act = StepActivity.dense(g.steps, g.row_groups, 1, 10)
    per_vector, _ = cycles_per_vector(arch, g, act)
    one_op = step_cycles(arch, 128)
    assert one_op == 8                                    # 4 conversions per ADC at 140 MS/s
    assert per_vector == g.crossbars * g.steps * one_op   # 6 groups x 8 input bits x 8 cycles
    timing = schedule(arch, place(arch, [ly]))
    assert not timing.pipelined and any("layer by layer" in n for n in timing.notes)
    # One group busy at a time: busy group-cycles are the layer's compute cycles.
    assert timing.busy_crossbar_cycles == timing.layers[0].busy_cycles
    assert 0 < timing.utilization <= 1 / g.crossbars + 1e-9


def test_all_layers_of_a_chip_share_its_mac_circuits_and_adcs():
    arch = capram(**{"variation.mac.capacitance_mismatch": 0.05,
                     "variation.adc.offset": "3mV"})
    root = np.random.SeedSequence([0, 5])
    s1, s2 = root.spawn(2)
    w1, w2 = -np.ones((70, 3), np.int64), -np.ones((64, 5), np.int64)  # every cell a 1
    a, b = make_layer(arch, w1, seed=s1), make_layer(arch, w2, seed=s2)
    # Row 64 of the first layer (second group) runs on MAC row 0, as row 0 of the second.
    assert np.array_equal(a.conductance[64, :24], b.conductance[0, :24])
    assert len(np.unique(a.conductance[:64, :24])) > 100    # every circuit its own draw
    assert np.array_equal(a.adc_offset, b.adc_offset) and a.adc_offset.shape == (32,)
    # Columns 0-3 share slice 0's ADC, column 4 is on slice 1.
    assert list(a.col_inst[0, :5]) == [0, 0, 0, 0, 1]
    other = make_layer(arch, w2, seed=np.random.SeedSequence([0, 6]).spawn(2)[1])
    assert not np.array_equal(other.adc_offset, b.adc_offset)


# Each non-ideality in physical units: (path, small, large, drawn from the seed).
NONIDEAL = [
    ("variation.mac.capacitance_mismatch", 0.02, 0.2, True),
    ("crossbar.mac.parasitic_capacitance", "8fF", "40fF", False),  # deterministic
    ("variation.adc.unit_cap_mismatch", 0.05, 0.3, True),
    ("variation.adc.offset", "3mV", "15mV", True),
    ("variation.adc.noise", "3mV", "15mV", True),
]


@pytest.mark.parametrize(("path", "small", "large", "drawn"), NONIDEAL,
                         ids=[p.split(".", 1)[1] for p, *_ in NONIDEAL])
def test_nonideality_moves_the_error_and_is_seeded(path, small, large, drawn):
    e0, _ = _error(capram(**IDEAL))
    e1, y1 = _error(capram(**{**IDEAL, path: small}))
    e2, _ = _error(capram(**{**IDEAL, path: large}))
    assert e0 == 0.0 and 0.0 < e1 < e2
    _, again = _error(capram(**{**IDEAL, path: small}))
    assert np.array_equal(y1, again)                       # same seed, same bits
    _, other = _error(capram(**{**IDEAL, path: small}), seed=12, call=1)
    assert np.array_equal(y1, other) != drawn


def test_ktc_noise_follows_capacitance_and_temperature():
    cold = capram(**{"crossbar.mac.capacitance": "0.05fF", "crossbar.mac.temperature": "100K"})
    hot = capram(**{"crossbar.mac.capacitance": "0.05fF", "crossbar.mac.temperature": "400K"})
    assert hot.variation.adc.noise_sigma_lsb == pytest.approx(
        2 * cold.variation.adc.noise_sigma_lsb)             # sqrt(kT/C)
    big = capram(**{"crossbar.mac.capacitance": "0.2fF", "crossbar.mac.temperature": "400K"})
    assert big.variation.adc.noise_sigma_lsb == pytest.approx(
        hot.variation.adc.noise_sigma_lsb / 2)
    e_off, _ = _error(capram(**{**IDEAL, "crossbar.mac.capacitance": "0.01fF"}))
    e_on, y = _error(capram(**{"weights.bits": 4, "crossbar.mac.capacitance": "0.01fF"}))
    e_hot, _ = _error(capram(**{"weights.bits": 4, "crossbar.mac.capacitance": "0.01fF",
                                "crossbar.mac.temperature": "600K"}))
    assert e_off == 0.0 and 0.0 < e_on < e_hot
    _, again = _error(capram(**{"weights.bits": 4, "crossbar.mac.capacitance": "0.01fF"}))
    assert np.array_equal(y, again)


def test_attenuation_is_charge_sharing():
    arch = capram(**{"crossbar.mac.parasitic_capacitance": "76.8fF"})  # = 64 x 1.2 fF
    assert arch.macro.attenuation == pytest.approx(0.5)
    w = np.ones((64, 1), np.int64)
    y, _ = make_layer(arch, w, seed=0).matmul(np.ones((1, 64), np.int64))
    assert y[0, 0] == pytest.approx(32.0)                   # half the charge-shared voltage


def test_end_to_end_digits_on_two_macros():
    """``imcsim run`` path on CAP-RAM: the 8-bit digits CNN needs 15 weight groups (one
    macro has 8: a MappingError naming the shortfall); two macros run it bit-true."""
    imcsim = pytest.importorskip("imcsim")
    from analysis.run import simulate

    workload = imcsim.load_workload("digits_cnn")
    if not workload.checkpoint_path.is_file():
        pytest.skip(f"{workload.checkpoint_path} not trained")
    with pytest.raises(MappingError, match="short by 7"):
        simulate(capram(), workload.source, samples=2, progress=False)
    res = simulate(capram(**{"organization.macros": 2}), workload.source, samples=8,
                   progress=False)
    assert res.hardware_accuracy >= res.float_accuracy - 0.25
    assert res.energy_total_pj > 0 and res.latency_per_inference_s > 0
    assert res.events_total["sample_holds"] == 0 and res.events_total["adc_conversions"] > 0
    assert any("layer by layer" in n for n in res.notes)


def test_each_adc_has_its_own_transfer_curve():
    arch = capram(**{**IDEAL, "variation.adc.unit_cap_mismatch": 0.1})
    layer = make_layer(arch, _data()[0], seed=4)
    thr = layer.adc_thresholds
    assert thr.shape == (32, 127)                       # 32 ciSARs, 7 bits
    ideal = np.arange(1, 128) - 0.5
    inl = np.abs(thr - ideal).max(axis=1)
    assert (inl > 0).all() and len(np.unique(np.round(inl, 9))) == 32


def test_multi_level_inputs_take_fewer_operations():
    """``dac.bits: 2`` applies two input bits per operation as four charge levels: half the
    operations of bit-serial inputs, and a coarser ADC step (64 x 3 levels over 128 codes)."""
    serial = capram(**IDEAL)
    multi = capram(**{**IDEAL, "crossbar.dac.bits": 2})
    w, x = _data()
    y1, ev1 = make_layer(serial, w, seed=0).matmul(x)
    y2, ev2 = make_layer(multi, w, seed=0).matmul(x)
    assert ev2.adc_conversions * 2 == ev1.adc_conversions
    step = multi.crossbar.adc.full_scale / 127
    assert step == pytest.approx(64 * 3 / 128)
    assert np.array_equal(y1, x @ w) and 0 < np.abs(y2 - x @ w).mean()


def test_components_follow_the_macro_not_the_groups():
    """Four cells per MAC circuit: twice the MAC circuits and row drivers (their counts and
    power double), the same 512 x 128 array and 32 ADCs; twice the MACs per operation."""
    from sim.engine.rollup import peak, power_by_component_mw

    base, four = capram(), capram(**{"crossbar.cells_per_mac": 4})
    assert (four.crossbar.rows, four.organization.crossbars) == (128, 4)
    a = {c.name: c for c in base.components}
    b = {c.name: c for c in four.components}
    for name in ("cisar_adc", "sram_array", "shift_add"):
        assert (b[name].count, b[name].area_um2) == (a[name].count, a[name].area_um2), name
    for name in ("mac_circuits", "input_drivers"):
        assert b[name].count == 2 * a[name].count, name
        assert b[name].area_um2 == pytest.approx(2 * a[name].area_um2), name
        assert power_by_component_mw(four)[name] == pytest.approx(
            2 * power_by_component_mw(base)[name]), name
    assert peak(four, per_cell=True).ops_per_s == pytest.approx(
        2 * peak(base, per_cell=True).ops_per_s)
    assert any("mac_circuits" in n for n in four.notes)     # the scaling is said


def test_conversion_time_from_the_sar_clock():
    arch = capram()
    assert arch.crossbar.adc.rate_hz == pytest.approx(140e6)    # 1.12 GHz / 8 cycles
    slow = capram(**{"crossbar.adc.cycles_per_conversion": 16})
    assert step_cycles(slow, 128) == 2 * step_cycles(arch, 128)
    probs = dict(capram_problems(**{"crossbar.adc.rate": "140MS/s"}))
    assert "not both" in probs["crossbar.adc.rate"]
