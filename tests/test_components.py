"""Component library: contract tests over every registered class, goldens, model properties.

Contract tests run over :func:`sim.components.component_classes`, so a newly registered class is
tested without touching this file: it must build from its ``EXAMPLE`` parameters, answer every
action it declares with finite non-negative numbers, reject unknown actions and keys with the
YAML path, and let stated figures override its model.

Golden tests compare with published numbers, each with its citation and tolerance:

- ISAAC (Shafiee et al., ISCA 2016, DOI 10.1109/ISCA.2016.12) Table I, as transcribed in
  ``shared/reference/papers.md`` section 3.2 (per-action derivations in section 3.5 and in
  ``arch_configs/isaac_32nm.yaml``);
- the ADC model of Andrulis et al. (arXiv:2404.06553), i.e. the Accelergy/CiMLoop ADC plug-in
  (PyPI ``hwcomponents-adc`` 1.0.21) built on B. Murmann's ADC Performance Survey.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import yaml

from sim.components import REGISTRY, ROW_KEYS, Component, build, component_classes, read
from sim.components import converters as conv
from sim.components import quantities as q
from sim.components.registry import register
from sim.components.scaling import NODES_NM, area_factor, energy_factor
from sim.config.validate import Problems
from sim.errors import ConfigError

ISAAC_YAML = Path(__file__).resolve().parent.parent / "arch_configs" / "isaac_32nm.yaml"
PATH = "components[3]"
EXPECTED_CLASSES = {
    "reram_cell", "sram_cell", "capacitor_array", "dac", "sample_hold", "sar_adc", "cisar_adc",
    "flash_adc", "shift_add", "register", "sram_buffer", "edram_buffer", "router", "noc_link",
    "offchip_link",
}
CLASSES = component_classes()


def make(class_name: str, technology_nm: float = 32.0, **params):
    """Build ``class_name`` from its EXAMPLE updated with ``params``."""
    merged = dict(REGISTRY[class_name].EXAMPLE)
    merged.update(params)
    return build(class_name, merged, path=PATH, technology_nm=technology_nm)


def problems_of(class_name, params, technology_nm=32.0):
    """The ``(path, message)`` problems of an invalid parameter set."""
    with pytest.raises(ConfigError) as info:
        build(class_name, params, path=PATH, technology_nm=technology_nm, source="arch.yaml")
    return info.value.problems


def assert_problem(problems, path, *fragments):
    """Some problem at ``path`` mentions every fragment."""
    msgs = [m for p, m in problems if p == path]
    assert msgs, f"no problem at {path!r}; problems: {problems}"
    assert any(all(f in m for f in fragments) for m in msgs), msgs


def finite_nonneg(x) -> bool:
    """A finite float >= 0."""
    return isinstance(x, float) and math.isfinite(x) and x >= 0


# ============================================================================ contract
def test_registry_holds_every_required_class():
    assert EXPECTED_CLASSES <= set(CLASSES)
    assert CLASSES == sorted(CLASSES)
    for name in CLASSES:
        assert REGISTRY[name].class_name == name


@pytest.mark.parametrize("class_name", CLASSES)
def test_class_declares_actions_docs_and_example(class_name):
    cls = REGISTRY[class_name]
    assert cls.actions and len(set(cls.actions)) == len(cls.actions)
    assert cls.__doc__ and "Model" in cls.__doc__, "the docstring must state the model"
    assert issubclass(cls, Component)


@pytest.mark.parametrize("technology_nm", [22.0, 32.0, 65.0, 130.0])
@pytest.mark.parametrize("class_name", CLASSES)
def test_example_answers_every_action(class_name, technology_nm):
    comp = make(class_name, technology_nm)
    assert comp.technology_nm == technology_nm
    for action in comp.actions:
        assert finite_nonneg(comp.energy_pj(action)), action
        assert finite_nonneg(comp.latency_ns(action)), action
        assert comp.energy_basis(action) == "model"
    assert finite_nonneg(comp.area_um2) and comp.area_um2 > 0
    assert finite_nonneg(comp.leakage_mw)
    assert comp.area_basis == "model"
    assert comp.actions_per_access >= 1


@pytest.mark.parametrize("class_name", CLASSES)
def test_unknown_action_lists_valid_ones(class_name):
    comp = make(class_name)
    for method in (comp.energy_pj, comp.latency_ns, comp.energy_basis):
        with pytest.raises(ValueError) as info:
            method("teleport")
        assert "teleport" in str(info.value)
        assert all(a in str(info.value) for a in comp.actions)


@pytest.mark.parametrize("class_name", CLASSES)
def test_component_is_frozen(class_name):
    comp = make(class_name)
    with pytest.raises(dataclasses.FrozenInstanceError):
        comp.count = 2


@pytest.mark.parametrize("class_name", CLASSES)
def test_unknown_key_is_a_problem_with_its_path(class_name):
    params = dict(REGISTRY[class_name].EXAMPLE, colour="blue")
    problems = problems_of(class_name, params)
    assert_problem(problems, f"{PATH}.colour", "unknown key", "valid keys here", "power")
    assert len(problems) == 1


@pytest.mark.parametrize("class_name", CLASSES)
def test_wrong_types_are_problems_with_their_paths(class_name):
    params = dict(REGISTRY[class_name].EXAMPLE, count="eight", power="16mJ", area=True)
    problems = problems_of(class_name, params)
    assert_problem(problems, f"{PATH}.count", "must be an integer")
    assert_problem(problems, f"{PATH}.power", "expected a quantity in W")
    assert_problem(problems, f"{PATH}.area", "boolean")


@pytest.mark.parametrize("class_name", CLASSES)
def test_each_example_key_is_optional_or_reported(class_name):
    """Dropping one model input either still builds or names that key as required."""
    example = dict(REGISTRY[class_name].EXAMPLE)
    for key in example:
        params = {k: v for k, v in example.items() if k != key}
        try:
            build(class_name, params, path=PATH, technology_nm=32.0)
        except ConfigError as exc:
            assert_problem(exc.problems, f"{PATH}.{key}", "is required")


@pytest.mark.parametrize("class_name", CLASSES)
def test_stated_per_instance_figures_override_the_model(class_name):
    """Stated figures need no model inputs and are returned exactly."""
    comp = build(class_name, {"energy_per_action": "1.5pJ", "area_per_instance": "20um2",
                              "leakage": "2uW"}, path=PATH, technology_nm=32.0)
    for action in comp.actions:
        assert comp.energy_pj(action) == 1.5
        assert comp.energy_basis(action) == "stated"
    assert comp.area_um2 == 20.0 and comp.area_basis == "stated"
    assert comp.leakage_mw == pytest.approx(0.002)


@pytest.mark.parametrize("class_name", CLASSES)
def test_stated_group_power_becomes_energy_per_action(class_name):
    """energy x count x rate x (actions per access) gives back the group power."""
    comp = build(class_name, {"power": "12mW", "count": 4, "rate": "250MHz", "area": "0.001mm2"},
                 path=PATH, technology_nm=32.0)
    for action in comp.actions:
        power_mw = comp.energy_pj(action) * 1e-9 * comp.count * 250e6 * comp.actions_per_access
        assert power_mw == pytest.approx(12.0, rel=1e-12)
        assert comp.energy_basis(action) == "power"
        assert comp.latency_ns(action) == pytest.approx(4.0)
    assert comp.area_um2 == pytest.approx(250.0)


@pytest.mark.parametrize("class_name", CLASSES)
def test_a_whole_table_row_is_accepted(class_name):
    row = dict(REGISTRY[class_name].EXAMPLE, name="x", level="ima", spec="from Table I",
               shared_by=4)
    row["class"] = class_name
    assert build(class_name, row, path=PATH, technology_nm=32.0).class_name == class_name
    assert set(ROW_KEYS) == {"name", "level", "class", "spec", "shared_by", "at", "events"}


@pytest.mark.parametrize("class_name", CLASSES)
def test_energy_mapping_with_an_unknown_action(class_name):
    problems = problems_of(class_name, dict(REGISTRY[class_name].EXAMPLE,
                                            energy_per_action={"teleport": "1pJ"}))
    assert_problem(problems, f"{PATH}.energy_per_action.teleport", "unknown action",
                   REGISTRY[class_name].actions[0])


def test_unknown_class_lists_every_valid_name():
    problems = problems_of("pipelined_adc", {"bits": 8})
    assert_problem(problems, f"{PATH}.class", "unknown component class 'pipelined_adc'",
                   *CLASSES)
    problems = problems_of("sar_ad", {})
    assert_problem(problems, f"{PATH}.class", "did you mean 'sar_adc'")
    problems = problems_of(None, {})
    assert_problem(problems, f"{PATH}.class", "unknown component class None", "sar_adc")


def test_params_must_be_a_mapping():
    assert_problem(problems_of("dac", ["bits", 1]), PATH, "must be a mapping")


def test_conflicting_and_missing_stated_figures():
    problems = problems_of("sar_adc", {"power": "16mW", "energy_per_action": "1pJ",
                                       "area": "1um2", "area_per_instance": "1um2"})
    assert_problem(problems, f"{PATH}.power", "not both")
    assert_problem(problems, f"{PATH}.area", "not both")
    problems = problems_of("sar_adc", {"power": "16mW", "count": 8})
    assert_problem(problems, f"{PATH}.rate", "is required with power")
    assert len([p for p, _ in problems if p == f"{PATH}.rate"]) == 1
    assert_problem(problems_of("dac", {"rate": "0Hz"}), f"{PATH}.rate", "must be positive")
    assert_problem(problems_of("dac", {"count": 0}), f"{PATH}.count", "must be in 1..inf")


def test_model_inputs_are_required_only_when_the_model_runs():
    assert_problem(problems_of("sar_adc", {"rate": "1GHz"}), f"{PATH}.bits", "is required")
    assert_problem(problems_of("sar_adc", {"bits": 8}), f"{PATH}.rate", "is required")
    assert_problem(problems_of("sram_buffer", {}), f"{PATH}.size", "is required")
    assert_problem(problems_of("capacitor_array", {"capacitance": "1fF",
                                                   "supply_voltage": "1V"}),
                   f"{PATH}.density", "is required")
    # energy stated, area from the survey fit: bits is no longer needed, the rate still is
    comp = build("sar_adc", {"energy_per_action": "1.6667pJ", "rate": "1.2GS/s"}, path=PATH,
                 technology_nm=32.0)
    assert comp.bits is None and comp.area_um2 > 0


def test_read_collects_into_the_callers_problems():
    problems = Problems("arch.yaml")
    ok = read("dac", {"bits": 2}, path="components[0]", technology_nm=32.0, problems=problems)
    bad = read("dac", {"bits": 0}, path="components[1]", technology_nm=32.0, problems=problems)
    missing = read("nope", {}, path="components[2]", technology_nm=32.0, problems=problems)
    assert ok is not None and bad is None and missing is None
    assert [p for p, _ in problems.items] == ["components[1].bits", "components[2].class"]


def test_register_refuses_duplicates_and_actionless_classes():
    with pytest.raises(ValueError, match="registered twice"):
        register("sar_adc")(type("Other", (conv.FlashAdc,), {}))

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class NoActions(Component):
        """A class without actions."""

    with pytest.raises(ValueError, match="no actions"):
        register("no_actions_here")(NoActions)
    assert "no_actions_here" not in REGISTRY


def test_technology_key_overrides_the_arch_node():
    comp = make("dac", technology="65nm")
    assert comp.technology_nm == 65.0
    assert comp.energy_pj("drive") == pytest.approx(
        make("dac").energy_pj("drive") * energy_factor(65, 32))


# ============================================================================ ADC goldens
def test_adc_model_8bit_32nm_1p28gsps_matches_published_model():
    """Andrulis et al. ADC model, 8 bits, 32 nm, 1.28 GS/s: 1.93 pJ/conversion, 6,469 um^2.

    Published model outputs (hwcomponents-adc 1.0.21, the Accelergy/CiMLoop ADC plug-in). The
    constants are the plug-in's published fit, so the tolerance is the rounding of the quoted
    figures (3 and 4 significant digits). Ours: 1.9295 pJ, 6,469.3 um^2.
    """
    adc = make("sar_adc", bits=8, rate="1.28GS/s")
    assert adc.energy_pj("convert") == pytest.approx(1.93, rel=0.005)
    assert adc.area_um2 == pytest.approx(6469, rel=0.001)


@pytest.mark.parametrize("rate", ["0.1GS/s", "0.5GS/s", "1GS/s", "1.28GS/s"])
def test_adc_model_7bit_65nm_matches_published_model(rate):
    """Andrulis et al. ADC model, 7 bits, 65 nm, 0.1-1.28 GS/s: 4.97 pJ per conversion.

    At 7 bits the resolution bound on FOM_S (150.85 dB) is below the speed bound over this
    whole range (160.9 dB at 0.1 GS/s, 153.6 dB at 1.28 GS/s), so the energy does not depend
    on the rate. Tolerance: rounding of the quoted 4.97. Ours: 4.9731 pJ.
    """
    adc = make("sar_adc", 65.0, bits=7, rate=rate)
    assert adc.energy_pj("convert") == pytest.approx(4.97, rel=0.005)


def test_adc_model_against_isaac_stated_adc():
    """ISAAC Table I ADC: 16 mW / (8 x 1.2 GS/s) = 1.6667 pJ; the survey model gives 1.849 pJ.

    Citation: ISCA 2016 Table I (papers.md section 3.2). Gap: the model is 10.9 % above
    ISAAC (15.7 % when evaluated at the text's 1.28 GS/s). Likely cause: the model is a
    regression over 215 survey designs (the energy bound corrected by node and ENOB at the
    fit's 20th-percentile residual), whose energies at equal parameters differ by several x,
    not ISAAC's specific 32 nm SOI SAR design point (L. Kull et al., ISSCC 2013, as cited by
    the Accelergy library). Tolerance set to what the model gives (12 %), constants
    untouched. Area is further off (6,313 vs 1,200 um^2, 5.3 x): see
    docs/components.md.
    """
    isaac = build("sar_adc", {"power": "16mW", "count": 8, "rate": "1.2GS/s"}, path=PATH,
                  technology_nm=32.0)
    model = make("sar_adc", bits=8, rate="1.2GS/s")
    assert isaac.energy_pj("convert") == pytest.approx(1.6667, rel=1e-4)
    assert model.energy_pj("convert") == pytest.approx(1.849, rel=1e-3)
    assert model.energy_pj("convert") == pytest.approx(isaac.energy_pj("convert"), rel=0.12)


def test_adc_energy_has_a_thermal_noise_knee():
    """Below the knee the bound grows 10^((6.02-3.22)/10) = 1.91 x per bit, above it 4 x.

    The survey correction ENOB^-2.83 then lowers both steps (to ~1.24 x at 6->7 bits and
    ~3.24 x at 13->14 bits, at 100 MS/s).
    """
    rate = 1e8
    e = {b: conv.survey_adc_energy_pj(b, rate, 32.0) for b in range(4, 15)}
    speed = conv.FOMS_SPEED_INTERCEPT_DB + conv.FOMS_SPEED_SLOPE_DB * math.log(rate)
    knee = next(b for b in e if conv.survey_foms_db(b, rate) == speed)
    assert 9 <= knee <= 11
    step_low = 10 ** ((20 * math.log10(2) - conv.FOMS_ENOB_CAP_STEP_DB) / 10)
    assert e[7] / e[6] == pytest.approx(step_low * (7 / 6) ** conv.ENERGY_ENOB_SLOPE)
    assert e[14] / e[13] == pytest.approx(4 * (14 / 13) ** conv.ENERGY_ENOB_SLOPE, rel=1e-3)
    assert all(e[b + 1] > e[b] for b in range(4, 14))


def test_adc_energy_and_area_grow_with_node():
    e32 = conv.survey_adc_energy_pj(8, 1e9, 32.0)
    e65 = conv.survey_adc_energy_pj(8, 1e9, 65.0)
    assert e65 / e32 == pytest.approx((65 / 32) ** conv.ENERGY_TECH_SLOPE)
    assert conv.survey_adc_area_um2(1e9, 65.0, e65) > conv.survey_adc_area_um2(1e9, 32.0, e32)


def test_enob_overrides_bits_in_the_adc_model():
    nominal = make("sar_adc", bits=8, rate="1GS/s")
    worse = make("sar_adc", bits=8, enob=7.0, rate="1GS/s")
    assert worse.energy_pj("convert") < nominal.energy_pj("convert")
    assert_problem(problems_of("sar_adc", {"bits": 6, "enob": 7.5, "rate": "1GHz"}),
                   f"{PATH}.enob", "exceed")


def test_cisar_area_is_anchored_to_capram():
    """CAP-RAM (JSSC 2021) 7-bit ciSAR ADC, 65 nm: 429 um^2 (papers.md section 1.2)."""
    adc = make("cisar_adc", 65.0, bits=7, rate="100MS/s")
    assert adc.area_um2 == pytest.approx(429.0, rel=1e-12)
    assert make("cisar_adc", 65.0, bits=8).area_um2 == pytest.approx(429 * 1200 / 845.18)
    assert conv.sar_area_ratio(12, 8) > conv.sar_area_ratio(10, 8) > 1 > conv.sar_area_ratio(3, 8)


# ============================================================================ ISAAC goldens
@pytest.fixture(scope="module")
def isaac_rows():
    """Component rows of arch_configs/isaac_32nm.yaml by name (ISAAC Table I)."""
    with ISAAC_YAML.open() as fh:
        return {row["name"]: row for row in yaml.safe_load(fh)["components"]}


def from_row(row, **extra):
    """Build a table row as the loader would hand it over, with extra keys (the rate)."""
    return build(row["class"], {**row, **extra}, path=PATH, technology_nm=32.0)


def test_isaac_adc_from_table_i(isaac_rows):
    """ISAAC Table I: ADC 8 bits x8 per IMA, 16 mW at 1.2 GS/s -> 1.6667 pJ; 9,600 um^2 / 8."""
    adc = from_row(isaac_rows["adc"], rate="1.2GS/s")
    assert adc.energy_pj("convert") == pytest.approx(1.6667, rel=1e-4)
    assert adc.area_um2 == pytest.approx(1200.0, rel=1e-9)
    assert adc.latency_ns("convert") == pytest.approx(1 / 1.2)


def test_isaac_dac_from_table_i(isaac_rows):
    """ISAAC Table I: DAC 1 bit x1,024 per IMA, 4 mW at one drive per 100 ns -> 0.3906 pJ."""
    dac = from_row(isaac_rows["dac"], rate="10MHz")
    assert dac.energy_pj("drive") == pytest.approx(0.3906, rel=1e-4)
    assert dac.area_um2 == pytest.approx(170 / 1024)
    # the model is anchored to the same figure, so at 32 nm and 1 bit they coincide
    assert make("dac", bits=1).energy_pj("drive") == pytest.approx(0.390625, rel=1e-12)


def test_isaac_memristor_array_cell_read_from_table_i():
    """ISAAC Table I: 8 arrays of 128 x 128 cells, 2.4 mW, one read per 100 ns -> 1.83 fJ.

    2.4 mW / (8 x 128 x 128 x 10 MHz) = 1.8311 fJ per cell read (papers.md section 3.5).
    """
    cell = build("reram_cell", {"power": "2.4mW", "count": 8 * 128 * 128, "rate": "10MHz",
                                "area": "0.0002mm2", "bits": 2}, path=PATH, technology_nm=32.0)
    assert cell.energy_pj("read") == pytest.approx(0.00183, rel=1e-3)
    assert cell.area_um2 == pytest.approx(200 / 131072)


def test_reram_physical_model_against_isaac():
    """Ohm's-law model with the Accelergy ISAAC cell figures: 2.87 fJ vs ISAAC's 1.83 fJ.

    Gap +57 %: the model averages uniformly used conductance levels; ISAAC's array power
    reflects real weights, mostly at low conductance. Pinned here so a change is noticed.
    """
    cell = make("reram_cell", bits=2)
    g = [1 / 3e6 + (1 / 2e3 - 1 / 3e6) * k / 3 for k in range(4)]
    g_series = [1 / (20e3 + 1 / gk) for gk in g]
    by_hand_pj = 0.3**2 * 1e-9 * sum(g_series) / 4 * 1e12
    assert cell.energy_pj("read") == pytest.approx(by_hand_pj, rel=1e-12)
    assert cell.energy_pj("read") == pytest.approx(0.00287, rel=0.01)
    assert cell.latency_ns("read") == 1.0
    assert cell.area_um2 == pytest.approx(4 * 0.032**2)


def test_isaac_sample_hold_and_shift_add_from_table_i(isaac_rows):
    """ISAAC Table I: S+H 10 uW / (1,024 x 10 MHz) = 0.977 fJ; S+A 0.2 mW / 9.6 G/s = 20.8 fJ."""
    sh = from_row(isaac_rows["sample_hold"], rate="10MHz")
    assert sh.energy_pj("sample") == pytest.approx(0.000977, rel=1e-3)
    sa = build("shift_add", {"power": "0.2mW", "count": 8, "rate": "1.2GHz"}, path=PATH,
               technology_nm=32.0)
    assert sa.energy_pj("add") == pytest.approx(0.0208, rel=2e-3)
    assert make("shift_add").energy_pj("add") == pytest.approx(sa.energy_pj("add"))


def test_isaac_hypertransport_from_table_i(isaac_rows):
    """ISAAC Table I: 4 HT links, 10.4 W, 6.4 GB/s each (32 bits at 1.6 GHz) -> 50.8 pJ/bit."""
    link = from_row(isaac_rows["hypertransport"], rate="1.6GHz", width=32)
    assert link.energy_pj("transfer") == pytest.approx(50.78, rel=1e-3)
    assert link.area_um2 == pytest.approx(22.88e6 / 4)
    assert make("offchip_link").energy_pj("transfer") == pytest.approx(50.78125)


# ============================================================================ model properties
def test_technology_scaling_factors():
    for node in NODES_NM:
        assert area_factor(node, node) == 1.0 and energy_factor(node, node) == 1.0
    assert area_factor(65, 32) == pytest.approx(0.23 / 0.072)
    assert area_factor(65, 32) * area_factor(32, 65) == pytest.approx(1.0)
    # smaller node: smaller and cheaper, monotonically, also outside the fitted range
    nodes = [180, 130, 90, 65, 45, 40, 32, 28, 22, 16, 10, 7, 5]
    areas = [area_factor(n, 32) for n in nodes]
    energies = [energy_factor(n, 32) for n in nodes]
    assert areas == sorted(areas, reverse=True)
    assert energies == sorted(energies, reverse=True)
    assert area_factor(180, 130) == pytest.approx((180 / 130) ** 2)
    with pytest.raises(ValueError):
        area_factor(0, 32)


def test_dac_energy_grows_with_unit_elements():
    one = make("dac", bits=1).energy_pj("drive")
    assert make("dac", bits=4).energy_pj("drive") == pytest.approx(15 * one)
    assert make("dac", bits=4).area_um2 == pytest.approx(15 * make("dac", bits=1).area_um2)


def test_buffers_scale_with_size_and_match_their_isaac_anchors():
    edram = make("edram_buffer", size="64KiB")
    assert edram.energy_pj("read") == pytest.approx(20.45 / 256)
    assert edram.area_um2 == pytest.approx(83000.0)
    big = make("edram_buffer", size="256KiB")
    assert big.energy_pj("read") / edram.energy_pj("read") == pytest.approx(4**0.78)
    assert big.area_um2 == pytest.approx(4 * 83000.0)
    sram = make("sram_buffer", size="2KiB")
    assert sram.energy_pj("write") == pytest.approx(0.1211, rel=1e-3)
    assert sram.area_um2 == pytest.approx(2100.0)
    assert sram.actions_per_access == 256


def test_capacitor_and_sram_cell_physics():
    cap = make("capacitor_array", capacitance="2fF", supply_voltage="1V", density="4fF/um2")
    assert cap.energy_pj("charge") == pytest.approx(0.002)
    assert cap.area_um2 == pytest.approx(0.5)
    cell = make("sram_cell", capacitance="0.5fF", supply_voltage="1.2V", swing="0.2V")
    assert cell.energy_pj("read") == pytest.approx(0.5 * 1.2 * 0.2 * 1e-3)
    assert make("sram_cell", 65.0).area_um2 == pytest.approx(0.626 * 0.179e6 / 65536)
    assert_problem(problems_of("sram_cell", {"capacitance": "1fF", "supply_voltage": "1V",
                                             "swing": "2V"}), f"{PATH}.swing", "exceeds")


def test_register_width_and_size():
    reg = make("register", width=32)
    assert reg.actions_per_access == 32
    assert make("register", size="8B").area_um2 == pytest.approx(2 * reg.area_um2)


# ============================================================================ quantities
@pytest.mark.parametrize(("parser", "text", "value"), [
    (q.voltage_v, "0.3V", 0.3), (q.voltage_v, "900mV", 0.9), (q.voltage_v, 0, 0.0),
    (q.resistance_ohm, "2kohm", 2e3), (q.resistance_ohm, "3MΩ", 3e6),
    (q.capacitance_ff, "1.5fF", 1.5), (q.capacitance_ff, "0.2pF", 200.0),
    (q.capacitance_density_ff_per_um2, "2fF/um2", 2.0),
])
def test_quantity_parsers(parser, text, value):
    assert parser(text) == pytest.approx(value)


@pytest.mark.parametrize(("parser", "text", "fragment"), [
    (q.voltage_v, "0.3A", "expected a quantity in V"), (q.voltage_v, True, "boolean"),
    (q.resistance_ohm, "-2kohm", "must not be negative"), (q.capacitance_ff, "1xF", "prefix"),
    (q.capacitance_density_ff_per_um2, "2fF/mm2", "fF/um2"), (q.voltage_v, [1], "list"),
])
def test_quantity_parser_errors(parser, text, fragment):
    with pytest.raises(ValueError, match=fragment):
        parser(text)
