"""Calibrated component models: every figure at the config's own parameters (issue 8).

A figure a YAML states is a calibration point of its component model; a config departing from
that point gets the figure times the model's ratio between the two points. Each test changes
one cause (ADC bits, ADC rate, crossbar size, node) and checks the direction AND the size of
every change against the model; the rollup tests charge synthetic counts of every event.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

from sim.components.converters import (
    LOW_ENOB_LIMIT,
    survey_adc_area_um2,
    survey_adc_energy_pj,
)
from sim.components.memory import ReramCrossbar
from sim.components.scaling import area_factor, energy_factor
from sim.config import schema
from sim.config.loader import arch_from_dict, read_yaml
from sim.engine import rollup
from sim.errors import ConfigError, InvariantError
from sim.macros import CrossbarLayer
from tests.conftest import ISAAC_YAML, apply_overrides

REL = 1e-12


@pytest.fixture(scope="module")
def isaac_dict():
    return read_yaml(ISAAC_YAML)


def variant(base: dict, **overrides):
    """ISAAC with ``overrides`` (dotted YAML paths) applied, loaded."""
    return arch_from_dict(apply_overrides(copy.deepcopy(base), overrides))


def rows(arch):
    return {c.name: c for c in arch.components}


def total_area(arch):
    return sum(rollup.area_by_component_um2(arch).values())


# ----------------------------------------------------------------------------- the ISAAC point
def test_isaac_runs_at_its_stated_point(isaac_arch, isaac_dict):
    # Every row is used as stated: no ratio other than 1, and four notes only (the NoC link,
    # which Table I has no row for, and the optional scale multiply of unified layers, gate
    # multiply of recurrent cells and neuron update of spiking networks, all priced by their
    # models).
    for c in isaac_arch.components:
        assert (c.count, c.power_mw, c.area_um2) == (c.stated_count, c.stated_power_mw,
                                                     c.stated_area_um2), c.name
    assert [n.split(":")[0] for n in isaac_arch.notes] == ["noc_bit_hops", "scale_multiplies",
                                                             "gate_multiplies", "neuron_updates"]
    # 16 mW / (8 ADCs x 1.28 GS/s): the adc row's power at its stated rate
    assert isaac_arch.energy.pj("adc_conversions") == pytest.approx(16e9 / (8 * 1.28e9), rel=REL)


# ----------------------------------------------------------------------------- one cause at a time
@pytest.mark.parametrize("bits", [4, 6, 10])
def test_adc_bits_follow_the_survey_model(isaac_arch, isaac_dict, bits):
    arch = variant(isaac_dict, **{"crossbar.adc.bits": bits, "crossbar.adc.clip": True})
    e0 = survey_adc_energy_pj(8, 1.28e9, 32.0)
    e1 = survey_adc_energy_pj(bits, 1.28e9, 32.0)
    a_ratio = survey_adc_area_um2(1.28e9, 32.0, e1) / survey_adc_area_um2(1.28e9, 32.0, e0)
    ratio = e1 / e0
    assert (ratio < 1) == (bits < 8)  # direction
    assert arch.energy.pj("adc_conversions") == pytest.approx(
        isaac_arch.energy.pj("adc_conversions") * ratio, rel=REL)
    adc0, adc1 = rows(isaac_arch)["adc"], rows(arch)["adc"]
    assert adc1.power_mw == pytest.approx(adc0.power_mw * ratio, rel=REL)
    assert adc1.area_um2 == pytest.approx(adc0.area_um2 * a_ratio, rel=REL)
    # nothing else moves: the chip area changes by exactly the ADCs' change
    ima = isaac_arch.organization.tiles * isaac_arch.organization.imas_per_tile
    assert total_area(arch) - total_area(isaac_arch) == pytest.approx(
        ima * (adc1.area_um2 - adc0.area_um2), rel=1e-9)
    for name in ("dac", "crossbar", "edram_buffer", "router"):
        assert rows(arch)[name] == rows(isaac_arch)[name]
    assert any(n.startswith(f"adc (sar_adc) stated at bits=8, 32 nm, this config has "
                            f"bits={bits}") for n in arch.notes)


def test_adc_rate_follows_the_survey_model(isaac_arch, isaac_dict):
    arch = variant(isaac_dict, **{"crossbar.adc.rate": "2.5GS/s"})
    ratio = survey_adc_energy_pj(8, 2.5e9, 32.0) / survey_adc_energy_pj(8, 1.28e9, 32.0)
    assert ratio > 1  # a faster converter costs more per conversion (speed bound)
    assert arch.energy.pj("adc_conversions") == pytest.approx(
        isaac_arch.energy.pj("adc_conversions") * ratio, rel=REL)
    # power = energy per conversion x conversions per second
    assert rows(arch)["adc"].power_mw == pytest.approx(
        rows(isaac_arch)["adc"].power_mw * ratio * 2.5 / 1.28, rel=REL)
    assert rows(arch)["adc"].area_um2 > rows(isaac_arch)["adc"].area_um2


def test_adc_rate_unstated_is_what_keeps_the_crossbar_cycle(isaac_arch, isaac_dict):
    # Without a rate the ADC converts its 129 columns in one 100 ns cycle: 1.29 GS/s.
    data = copy.deepcopy(isaac_dict)
    del data["crossbar"]["adc"]["rate"]
    arch = arch_from_dict(data)
    ratio = survey_adc_energy_pj(8, 1.29e9, 32.0) / survey_adc_energy_pj(8, 1.28e9, 32.0)
    assert arch.energy.pj("adc_conversions") == pytest.approx(
        isaac_arch.energy.pj("adc_conversions") * ratio, rel=1e-9)


#: Digital cycles (1.2 GHz) of one ISAAC-like step: the 100 ns read (120 cycles), or the one
#: ADC at 1.28 GS/s converting columns + the unit column, whichever is longer.
STEP_CYCLES = {64: 120, 128: 121, 256: 241}   # 65 -> 61 (read-bound), 129 -> 121, 257 -> 241


@pytest.mark.parametrize("size", [64, 256])
def test_crossbar_size_scales_arrays_dacs_and_sample_holds(isaac_arch, isaac_dict, size):
    arch = variant(isaac_dict, **{"crossbar.rows": size, "crossbar.columns": size,
                                  "crossbar.adc.clip": True})
    r0, r1 = rows(isaac_arch), rows(arch)
    k = size / 128
    # steps per second of one crossbar, this config over ISAAC's (the schedule's step time)
    step = STEP_CYCLES[128] / STEP_CYCLES[size]
    # one DAC per row and one S+H per column of each crossbar: counts and area x k; each
    # acts once per step, so power x k x the step-rate ratio
    for name in ("dac", "sample_hold"):
        assert r1[name].count == round(r0[name].count * k)
        assert r1[name].power_mw == pytest.approx(r0[name].power_mw * k * step, rel=REL)
        assert r1[name].area_um2 == pytest.approx(r0[name].area_um2 * k, rel=REL)
    # the array reads k^2 the cells per step: power x k^2 x step rate (256: about x2)
    assert r1["crossbar"].power_mw == pytest.approx(r0["crossbar"].power_mw * k * k * step,
                                                    rel=REL)
    # the input register is written once per step
    assert r1["input_register"].power_mw == pytest.approx(r0["input_register"].power_mw * step,
                                                          rel=REL)
    # the array's cells: x k^2 area (reram_crossbar model: rows x columns x 4 F^2)
    model = ReramCrossbar(technology_nm=32.0, rows=size, columns=size, bits=2).area_um2 / \
        ReramCrossbar(technology_nm=32.0, rows=128, columns=128, bits=2).area_um2
    assert model == pytest.approx(k * k, rel=REL)
    assert r1["crossbar"].area_um2 == pytest.approx(r0["crossbar"].area_um2 * k * k, rel=REL)
    # per-event energies of a row, a cell and a conversion do not change with the size
    for event in ("dac_pulses", "cell_reads", "sample_holds", "adc_conversions"):
        assert arch.energy.pj(event) == isaac_arch.energy.pj(event)
    assert (total_area(arch) > total_area(isaac_arch)) == (size > 128)
    # the peak efficiency moves (k^2 the MACs per crossbar step, a longer ADC-bound step, and
    # the chip power of the scaled DACs and S+Hs)
    assert rollup.peak(arch).gops_per_w != pytest.approx(rollup.peak(isaac_arch).gops_per_w,
                                                         rel=1e-3)


def test_cell_bits_move_the_cell_read_energy_by_the_cell_model(isaac_arch, isaac_dict):
    arch = variant(isaac_dict, **{"crossbar.cell.bits": 4, "crossbar.adc.clip": True,
                                  "crossbar.adc.bits": 12})
    m = ReramCrossbar(technology_nm=32.0, bits=4).energy_pj("read") / \
        ReramCrossbar(technology_nm=32.0, bits=2).energy_pj("read")
    assert arch.energy.pj("cell_reads") == pytest.approx(
        isaac_arch.energy.pj("cell_reads") * m, rel=REL)


def test_technology_node_scales_every_row(isaac_arch, isaac_dict):
    arch = variant(isaac_dict, technology="65nm")
    ef, af = energy_factor(65.0, 32.0), area_factor(65.0, 32.0)
    assert ef > 1 and af > 1
    r0, r1 = rows(isaac_arch), rows(arch)
    survey = survey_adc_energy_pj(8, 1.28e9, 65.0) / survey_adc_energy_pj(8, 1.28e9, 32.0)
    for name, c in r1.items():
        if name == "adc":
            e, a = survey, None
        elif name == "crossbar":  # Ohm's-law cell read (device-set); area 4 F^2
            e, a = 1.0, (65 / 32) ** 2
        elif name == "hypertransport":  # channel-bound I/O: not scaled
            e, a = 1.0, 1.0
        else:
            e, a = ef, af
        assert c.power_mw == pytest.approx(r0[name].power_mw * e, rel=REL), name
        if a is not None:
            assert c.area_um2 == pytest.approx(r0[name].area_um2 * a, rel=REL), name
    assert r1["adc"].area_um2 > r0["adc"].area_um2
    assert arch.energy.pj("adc_conversions") == pytest.approx(
        isaac_arch.energy.pj("adc_conversions") * survey, rel=REL)
    assert arch.energy.pj("dac_pulses") == pytest.approx(
        isaac_arch.energy.pj("dac_pulses") * ef, rel=REL)
    assert total_area(arch) > 2 * total_area(isaac_arch)
    assert rollup.peak(arch).gops_per_w < rollup.peak(isaac_arch).gops_per_w
    assert any("65 nm" in n for n in arch.notes)


# ----------------------------------------------------------------------------- new-user check
@pytest.mark.slow
def test_new_user_copy_gets_different_explained_figures(isaac_dict, tmp_path):
    """The issue's check: a 4-bit-ADC copy and a 65 nm copy of ISAAC each move energy per
    inference, area and GOPS/W, by what the models say, with notes explaining it."""
    pytest.importorskip("sklearn")
    from analysis.run import simulate

    base = variant(isaac_dict)
    four = variant(isaac_dict, **{"crossbar.adc.bits": 4, "crossbar.adc.clip": True})
    node = variant(isaac_dict, technology="65nm")
    workload = ISAAC_YAML.parent.parent / "workloads" / "digits_cnn.yaml"
    runs = {name: simulate(a, workload, samples=8, seed=1, progress=False)
            for name, a in (("base", base), ("four", four), ("node", node))}
    r0 = runs["base"]
    for name in ("four", "node"):
        r = runs[name]
        assert r.energy_per_inference_nj != pytest.approx(r0.energy_per_inference_nj, rel=1e-3)
        assert r.area_mm2 != pytest.approx(r0.area_mm2, rel=1e-3)
        assert r.tops_per_w != pytest.approx(r0.tops_per_w, rel=1e-3)
        assert r.peak_gops_per_w != pytest.approx(r0.peak_gops_per_w, rel=1e-3)
        # one total: energy per inference and TOPS/W use the same number
        per_inf_pj = sum(r.energy_by_component_pj.values())
        assert r.energy_per_inference_nj * 1e3 == pytest.approx(per_inf_pj, rel=1e-12)
        assert r.tops_per_w == pytest.approx(2 * r.events_total["macs"] / r.samples
                                             / (per_inf_pj * 1e-12) / 1e12, rel=1e-12)
    # 4-bit ADC: the same conversions, each cheaper by the survey ratio (the other
    # components move only with their data-dependent counts: coarser outputs change the
    # next layer's input bits, so its DAC pulses and cell reads)
    r4 = runs["four"]
    assert r4.events_total["adc_conversions"] == r0.events_total["adc_conversions"]
    conv = r0.events_total["adc_conversions"] / r0.samples
    ratio = survey_adc_energy_pj(4, 1.28e9, 32.0) / survey_adc_energy_pj(8, 1.28e9, 32.0)
    assert r0.energy_by_component_pj["adc"] == pytest.approx(
        conv * base.energy.pj("adc_conversions"), rel=1e-12)
    assert r4.energy_by_component_pj["adc"] == pytest.approx(
        r0.energy_by_component_pj["adc"] * ratio, rel=1e-12)
    for name in ("sample_hold", "ima_shift_add", "edram_buffer", "input_register"):
        assert r4.energy_by_component_pj[name] == r0.energy_by_component_pj[name]
    assert r4.energy_per_inference_nj < r0.energy_per_inference_nj
    assert any("adc (sar_adc) stated at bits=8" in n for n in r4.notes)
    assert runs["node"].energy_per_inference_nj > r0.energy_per_inference_nj
    assert any("65 nm" in n for n in runs["node"].notes)


# ----------------------------------------------------------------------------- nothing silent
def test_empty_energy_section_derives_every_figure(isaac_arch, isaac_dict):
    from sim.macros.family import family_of

    arch = variant(isaac_dict, energy={})
    for event, kind in schema.EVENTS.items():
        if kind is None or event in family_of(arch).never_counts:
            continue  # FORMS's sign reads: never counted on ISAAC, so not priced
        assert arch.energy.pj(event) > 0, event
    # with rows stating power and rate, the row gives it; others come from their models
    assert arch.energy.pj("adc_conversions") == isaac_arch.energy.pj("adc_conversions")
    model_events = {n.split(":")[0] for n in arch.notes}
    assert {"dac_pulses", "cell_reads", "input_buffer_read_bits"} <= model_events


def test_underivable_figure_is_an_error_naming_its_path(make_arch):
    # An SRAM array with no stated cell-read energy: its model needs the capacitance.
    problems = make_arch.problems(**{
        "crossbar.cell.technology": "sram", "crossbar.cell.bits": 1,
        "energy.cell_read": make_arch.DELETE, "components[1].class": "sram_array"})
    assert any(p == "energy.cell_read" and "sram_array model cannot derive" in m
               and "capacitance" in m for p, m in problems), problems


def test_stated_figure_must_record_its_point(make_arch):
    problems = make_arch.problems(**{"components[0].at": {"rate": "90MS/s"}})
    assert any(p == "components[0].at" and "bits" in m and "per_crossbar" in m
               for p, m in problems), problems
    problems = make_arch.problems(**{"stated_at": make_arch.DELETE,
                                     "components[0].at.technology": "32nm"})
    assert any(p == "stated_at.technology" for p, _ in problems), problems


def test_event_without_a_row_records_its_own_point(make_arch):
    # With no components table at all, the stated figures record their own point: the base
    # arch states dac_pulse as {energy: 0.4pJ, at: {bits: 1}}: a 2-bit DAC costs
    # 0.4 pJ x (2^2 - 1) / (2^1 - 1) by the DAC model
    no_table = {"components": make_arch.DELETE,
                "energy.adc_conversion": {"energy": "1.5pJ",
                                          "at": {"bits": 6, "rate": "90MS/s"}},
                "energy.cell_read": {"energy": "0.002pJ", "at": {"bits": 2}}}
    arch = make_arch(**no_table, **{"crossbar.dac.bits": 2, "crossbar.adc.clip": True})
    assert arch.energy.pj("dac_pulses") == pytest.approx(0.4 * 3, rel=REL)
    assert arch.components == ()
    assert any("no components table" in n for n in arch.notes)
    problems = make_arch.problems(**no_table, **{"energy.dac_pulse": "0.4pJ"})
    assert any(p == "energy.dac_pulse" and "at: {bits: ...}" in m for p, m in problems)


def test_explicit_events_must_fit_the_row_class(make_arch):
    problems = make_arch.problems(**{"components[1].events": ["adc_conversions"]})
    assert any(p == "components[1].events" and "sar_adc" in m for p, m in problems)
    problems = make_arch.problems(**{"components[1].events": ["flux_capacitor"]})
    assert any(p == "components[1].events[0]" and "unknown event" in m for p, m in problems)


# ----------------------------------------------------------------------------- model ranges
def test_adc_model_below_the_fitted_range_is_the_comparator_count_model():
    energies = [survey_adc_energy_pj(b, 1.28e9, 32.0) for b in range(1, 9)]
    assert all(a < b for a, b in zip(energies, energies[1:], strict=False))  # monotone
    e4 = survey_adc_energy_pj(LOW_ENOB_LIMIT, 1.28e9, 32.0)
    for b in (1, 2, 3):
        assert survey_adc_energy_pj(b, 1.28e9, 32.0) == pytest.approx(
            e4 * (2**b - 1) / 15, rel=REL)


def test_adc_outside_the_survey_range_is_refused(isaac_dict):
    with pytest.raises(ConfigError) as info:
        variant(isaac_dict, **{"crossbar.adc.rate": "200GS/s"})
    assert any("outside the ADC survey model's range" in m for _, m in info.value.problems)


# ----------------------------------------------------------------------------- every event charged
def test_every_event_is_charged_to_its_component(isaac_arch):
    expected = {
        "adc_conversions": "adc", "dac_pulses": "dac", "cell_reads": "crossbar",
        "sample_holds": "sample_hold", "shift_adds": "ima_shift_add",
        "input_buffer_read_bits": "edram_buffer", "output_buffer_write_bits": "edram_buffer",
        "input_register_write_bits": "input_register",
        "output_register_write_bits": "ima_output_register",
        "bus_transfer_bits": "edram_ima_bus", "noc_bit_hops": "noc_link",
        "router_bits": "router", "activation_ops": "sigmoid", "pooling_ops": "maxpool",
        "add_ops": "tile_shift_add", "offchip_bits": "hypertransport",
        # optional (unified layers only): no Table I row, priced by the multiplier model
        "scale_multiplies": "multiplier (model)",
        # optional (recurrent cells only): the same multiplier model
        "gate_multiplies": "multiplier (model)",
        # optional (spiking networks only): priced by the lif_neuron model
        "neuron_updates": "lif_neuron (model)",
    }
    from sim.macros.family import family_of

    never = family_of(isaac_arch).never_counts  # FORMS's sign reads: not an ISAAC event
    assert set(expected) == {e for e, k in schema.EVENTS.items()
                             if k is not None and e not in never}
    rng = np.random.default_rng(0)
    counts = {e: int(rng.integers(1, 10**6)) for e in schema.EVENTS if e not in never}
    by = rollup.energy_by_component_pj(isaac_arch, counts, latency_s=1e-6)
    for event, comp in expected.items():
        alone = rollup.energy_by_component_pj(isaac_arch, {event: counts[event]}, 0.0)
        assert alone == {comp: pytest.approx(counts[event] * isaac_arch.energy.pj(event),
                                             rel=REL)}
    assert sum(by.values()) == pytest.approx(sum(
        counts[e] * isaac_arch.energy.pj(e) for e in expected), rel=1e-12)
    # per-event figures of the new events (Table I powers at their stated rates; cited)
    assert isaac_arch.energy.pj("offchip_bits") == pytest.approx(10.4e12 / (4 * 51.2e9),
                                                                 rel=REL)
    assert isaac_arch.energy.pj("pooling_ops") == pytest.approx(0.4e9 / 1.2e9, rel=REL)
    assert isaac_arch.energy.pj("activation_ops") == pytest.approx(0.52e9 / 2.4e9, rel=REL)
    assert isaac_arch.energy.pj("add_ops") == pytest.approx(0.05e9 / 1.2e9, rel=REL)


def test_unknown_event_name_raises(isaac_arch):
    with pytest.raises(InvariantError, match="adc_conversion_typo"):
        rollup.energy_by_component_pj(isaac_arch, {"adc_conversion_typo": 3}, 0.0)


def test_leakage_is_charged_and_the_parts_sum_to_the_total(isaac_dict):
    arch = variant(isaac_dict, **{"components[6].leakage": "1mW"})  # tile output register
    counts = {"adc_conversions": 1000, "macs": 5}
    by = rollup.energy_by_component_pj(arch, counts, latency_s=2e-6)
    leak = 1e-3 * arch.organization.tiles * 2e-6 * 1e12
    assert by["tile_output_register"] == pytest.approx(leak, rel=REL)
    assert sum(by.values()) == pytest.approx(1000 * arch.energy.pj("adc_conversions") + leak,
                                             rel=REL)


def test_crossbar_counts_output_register_and_bus_bits(make_arch):
    arch = make_arch()
    rng = np.random.default_rng(1)
    k, n, m = 40, 3, 5  # 40 rows over 16-row crossbars: 3 row tiles
    w = rng.integers(-100, 100, size=(k, n))
    x = rng.integers(-100, 100, size=(m, k))
    _, ev = CrossbarLayer(arch, w).matmul(x)
    row_tiles = math.ceil(k / arch.crossbar.rows)
    assert ev.output_register_write_bits == m * n * arch.outputs.bits * row_tiles
    assert ev.bus_transfer_bits == ev.input_register_write_bits + ev.output_register_write_bits
    assert ev.output_register_write_bits > 0


# ----------------------------------------------------------------------------- review fixes
def test_cell_technology_must_match_the_array_rows_class(make_arch, isaac_dict):
    # SRAM cells with the ReRAM array row: ReRAM cell reads and area would price SRAM cells
    sram = {"crossbar.cell.technology": "sram", "crossbar.cell.bits": 1}
    problems = make_arch.problems(**sram)
    assert any(p == "components[1].class" and "reram_crossbar" in m and "sram" in m
               and "sram_array" in m for p, m in problems), problems
    with pytest.raises(ConfigError) as info:
        variant(isaac_dict, **sram)
    assert any(p == "components[10].class" for p, _ in info.value.problems)
    # a row of the matching class loads and is the one charged with the cell reads
    arch = make_arch(**sram, **{"components[1].class": "sram_array"})
    assert rows(arch)["crossbar"].component_class == "sram_array"
    assert arch.energy.component_of("cell_reads") == "crossbar"


def test_clock_moves_the_power_of_rows_acting_per_step_or_per_cycle(isaac_arch, isaac_dict):
    r0 = rows(isaac_arch)
    per_step = ("crossbar", "dac", "sample_hold", "input_register")
    digital = ("sigmoid", "maxpool", "tile_shift_add", "ima_shift_add",
               "tile_output_register", "ima_output_register")
    # a 200 ns read: the step is read-bound, 240 cycles instead of 121 (ADC-bound)
    slow = rows(variant(isaac_dict, **{"clock.crossbar_cycle": "200ns"}))
    for name, c in slow.items():
        k = STEP_CYCLES[128] / 240 if name in per_step else 1.0
        assert c.power_mw == pytest.approx(r0[name].power_mw * k, rel=REL), name
    # a 2.4 GHz digital clock: the digital units act twice as often; the step (242 cycles at
    # 2.4 GHz) lasts as long as before, so per-step rows keep their power
    fast = rows(variant(isaac_dict, **{"clock.digital": "2.4GHz"}))
    for name, c in fast.items():
        k = 2.0 if name in digital else 1.0
        assert c.power_mw == pytest.approx(r0[name].power_mw * k, rel=1e-9), name
    # the stated point must record the clock those powers held at
    data = copy.deepcopy(isaac_dict)
    del data["stated_at"]["crossbar_cycle"]
    with pytest.raises(ConfigError) as info:
        arch_from_dict(data)
    assert any(p == "components[8].at" and "crossbar_cycle" in m
               for p, m in info.value.problems), info.value.problems


def test_peak_power_follows_the_step_rate(isaac_arch, isaac_dict):
    slow = variant(isaac_dict, **{"clock.crossbar_cycle": "200ns"})
    p0, p1 = rollup.peak(isaac_arch), rollup.peak(slow)
    # the per-step rows' chip power x 121/240, everything else unchanged
    pw0 = rollup.power_by_component_mw(isaac_arch)
    moved = sum(pw0[n] for n in ("crossbar", "dac", "sample_hold", "input_register"))
    assert p1.power_w == pytest.approx(
        p0.power_w - moved * (1 - STEP_CYCLES[128] / 240) / 1e3, rel=REL)
    assert p1.power_w < p0.power_w


def test_a_counted_event_needs_a_performing_row(isaac_dict, make_arch):
    data = copy.deepcopy(isaac_dict)
    assert data["components"][7]["name"] == "adc"
    del data["components"][7]
    with pytest.raises(ConfigError) as info:
        arch_from_dict(data)
    assert any(p == "components" and "no components row performs adc_conversions" in m
               and "sar_adc" in m for p, m in info.value.problems), info.value.problems
    base = make_arch.dict()
    no_router = [r for r in base["components"] if r["class"] != "router"]
    problems = make_arch.problems(components=no_router)
    assert [m for p, m in problems if p == "components"] == [
        "no components row performs router_bits: its area and power would be unknown; add a "
        "row of class router (or list router_bits in the events: of a router row)"]


def test_leakage_follows_the_node_and_the_instances_only(isaac_dict):
    leaky = {"components[7].leakage": "1mW"}  # the adc row
    base = rows(variant(isaac_dict, **leaky))["adc"].leakage_mw
    assert base == pytest.approx(1.0, rel=REL)
    # ADC bits and rate move the energy per conversion, not the static power
    other = variant(isaac_dict, **leaky, **{"crossbar.adc.bits": 6, "crossbar.adc.clip": True,
                                            "crossbar.adc.rate": "1GS/s"})
    assert rows(other)["adc"].power_mw != pytest.approx(rows(variant(isaac_dict))["adc"].power_mw)
    assert rows(other)["adc"].leakage_mw == pytest.approx(1.0, rel=REL)
    # twice the crossbars per IMA: twice the ADCs
    more = variant(isaac_dict, **leaky, **{"organization.crossbars_per_ima": 16})
    assert rows(more)["adc"].leakage_mw == pytest.approx(2.0, rel=REL)
    # the node: the ADC model's node law
    node = variant(isaac_dict, **leaky, technology="65nm")
    survey = survey_adc_energy_pj(8, 1.28e9, 65.0) / survey_adc_energy_pj(8, 1.28e9, 32.0)
    assert rows(node)["adc"].leakage_mw == pytest.approx(survey, rel=REL)


def test_an_unreadable_at_value_is_one_problem(make_arch):
    problems = make_arch.problems(**{"components[0].at.rate": "fast"})
    assert [p for p, _ in problems] == ["components[0].at.rate"], problems
