"""Architecture YAML loading: the ISAAC config, and every kind of user mistake.

Each mistake must come back as one :class:`~sim.errors.ConfigError` whose ``problems`` carry
the YAML path of the mistake and a message that says what is wrong (and, where it helps, what
would be right). Tier one reads keys (unknown keys, types, ranges, missing keys, units); tier
two checks contradictions between fields that are each valid on their own
(``sim.config.loader._cross_checks``). Both tiers report everything in one error.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import yaml

from sim.config import schema
from sim.config.loader import arch_from_dict, load_arch, read_yaml
from sim.errors import ConfigError, UserError

ISAAC_YAML = Path(__file__).resolve().parent.parent / "arch_configs" / "isaac_32nm.yaml"
REL = 1e-12  # unit prefixes are not exact binary fractions


def messages_at(problems, path):
    """Messages of the problems reported at ``path``."""
    return [msg for p, msg in problems if p == path]


def assert_problem(problems, path, *fragments):
    """Some problem at ``path`` mentions every fragment."""
    msgs = messages_at(problems, path)
    assert msgs, f"no problem at {path!r}; problems: {problems}"
    assert any(all(f in m for f in fragments) for m in msgs), (
        f"no message at {path!r} containing {fragments}; messages: {msgs}")


# ----------------------------------------------------------------------------- ISAAC


def test_isaac_loads(isaac_arch):
    a = isaac_arch
    assert a.name == "isaac_ce_32nm"
    assert a.technology_nm == pytest.approx(32.0, rel=REL)
    assert a.clock.crossbar_cycle_ns == pytest.approx(100.0, rel=REL)
    assert a.clock.digital_hz == pytest.approx(1.2e9, rel=REL)
    assert (a.organization.tiles, a.organization.imas_per_tile,
            a.organization.crossbars_per_ima) == (168, 12, 8)
    assert a.organization.crossbars == 168 * 12 * 8
    xb = a.crossbar
    assert (xb.rows, xb.columns, xb.unit_column, xb.fragment_rows) == (128, 128, True, None)
    assert (xb.cell.technology, xb.cell.bits, xb.cell.levels) == ("reram", 2, 4)
    assert xb.dac.bits == 1
    assert (xb.adc.bits, xb.adc.per_crossbar, xb.adc.range, xb.adc.full_scale, xb.adc.clip,
            xb.adc.rounding) == (8, 1, "fixed", None, False, "nearest")
    assert a.weights == schema.WeightFormat(bits=16, encoding="offset", column_flip=True)
    assert a.inputs == schema.InputFormat(bits=16, signed=True, zero_skip=False)
    assert a.outputs.bits == 16
    assert a.variation == schema.Variation()  # ideal devices unless stated
    # 16 mW / (8 ADCs x 1.28 GS/s), the adc row at its stated point (no energy: figure)
    assert a.energy.pj("adc_conversions") == pytest.approx(1.5625, rel=REL)
    assert a.energy.pj("cell_reads") == pytest.approx(0.00183, rel=REL)
    assert a.energy.component_of("adc_conversions") == "adc"
    assert len(a.components) == 16
    adc = next(c for c in a.components if c.name == "adc")
    assert (adc.level, adc.component_class, adc.count) == ("ima", "sar_adc", 8)
    assert adc.power_mw == pytest.approx(16.0, rel=REL)
    assert adc.area_um2 == pytest.approx(9600.0, rel=REL)
    link = next(c for c in a.components if c.name == "hypertransport")
    assert link.power_mw == pytest.approx(10400.0, rel=REL)
    router = next(c for c in a.components if c.name == "router")
    assert router.shared_by == 4
    assert a.source == str(ISAAC_YAML)
    # 128 rows x 3 levels halved by column flipping = 192 fits the 8-bit ADC (255)
    assert schema.max_partial_sum(a) == 192
    assert schema.adc_full_scale(a) == 255.0
    assert schema.columns_per_weight(a.weights, xb.cell) == 8
    assert schema.input_steps(a.inputs, xb.dac) == 16


def test_isaac_without_column_flip_needs_a_larger_adc():
    data = read_yaml(ISAAC_YAML)
    data["weights"]["column_flip"] = False
    with pytest.raises(ConfigError) as info:
        arch_from_dict(data)
    assert [p for p, _ in info.value.problems] == ["crossbar.adc"]
    assert_problem(info.value.problems, "crossbar.adc", "8-bit ADC", "255", "384")
    data["crossbar"]["adc"]["clip"] = True  # accepting clipping makes it valid again
    assert arch_from_dict(data).crossbar.adc.clip


def test_base_arch_is_valid(make_arch):
    a = make_arch()
    assert a.crossbar.rows == 16 and a.crossbar.columns == 8
    assert schema.max_partial_sum(a) == 48 <= schema.adc_full_scale(a)


def test_yaml_file_round_trip(make_arch, tmp_path):
    path = tmp_path / "arch.yaml"
    path.write_text(yaml.safe_dump(make_arch.dict()))
    loaded = load_arch(path)
    assert loaded.source == str(path)
    assert dataclasses.replace(loaded, source="<test>") == make_arch()


# ----------------------------------------------------------------------------- tier one


TOP_KEYS = ("clock", "components", "crossbar", "description", "energy", "inputs", "name",
            "noc", "organization", "outputs", "stated_at", "technology", "tile_buffer",
            "variation", "weights")


@pytest.mark.parametrize(("path", "valid"), [
    ("colour", TOP_KEYS),
    ("crossbar.adc.bitz", ("bits", "calibration", "calibration_percentile",
                           "calibration_samples", "clip", "full_scale", "per_crossbar",
                           "range", "rate", "rounding")),
    ("crossbar.cell.levels", ("bits", "technology")),
    ("crossbar.dac.levels", ("bits",)),
    ("crossbar.fragment", ("adc", "cell", "class", "columns", "dac", "fragment_rows", "rows",
                           "unit_column")),
    ("clock.digitial", ("crossbar_cycle", "digital")),
    ("organization.chips", ("crossbars_per_ima", "imas_per_tile", "reprogram", "tiles")),
    ("weights.sign", ("bits", "column_flip", "encoding")),
    ("inputs.zeroskip", ("bits", "signed", "zero_skip", "zero_skip_timing")),
    ("outputs.signed", ("bits",)),
    ("energy.adc_conversions", tuple(sorted(k.key for k in schema.EVENTS.values() if k))),
    ("variation.sed", ("adc", "cell", "seed")),
    ("variation.cell.sigmaa", ("distribution", "read_noise_sigma", "sigma", "stuck_at_0",
                               "stuck_at_1")),
    ("variation.adc.inl", ("cap_mismatch_sigma", "gain_sigma", "noise_sigma_lsb",
                           "offset_sigma_lsb")),
    ("components[1].colour", ("area", "at", "class", "count", "events", "leakage", "level",
                              "name", "power", "shared_by", "spec")),
])
def test_unknown_key(make_arch, path, valid):
    problems = make_arch.problems(**{path: 1})
    assert problems == [(path, problems[0][1])]  # exactly one problem, at the unknown key
    msg = problems[0][1]
    assert msg.startswith("unknown key; valid keys here: ")
    assert msg.removeprefix("unknown key; valid keys here: ").split(", ") == list(valid)


@pytest.mark.parametrize(("overrides", "path", "fragments"), [
    ({"crossbar.rows": "16"}, "crossbar.rows", ["must be an integer", "got string '16'"]),
    ({"crossbar.rows": 16.0}, "crossbar.rows", ["must be an integer", "got number 16.0"]),
    ({"crossbar.rows": True}, "crossbar.rows", ["int", "got boolean"]),
    ({"crossbar.rows": None}, "crossbar.rows", ["must be an integer", "got null"]),
    ({"crossbar.adc.full_scale": "48"}, "crossbar.adc.full_scale",
     ["must be a number", "got string '48'"]),
    ({"crossbar.adc.clip": "no"}, "crossbar.adc.clip", ["must be true or false", "'no'"]),
    ({"inputs.signed": "yes"}, "inputs.signed", ["must be true or false", "got string 'yes'"]),
    ({"inputs.signed": 1}, "inputs.signed", ["must be true or false", "got integer 1"]),
    ({"weights.column_flip": "on"}, "weights.column_flip", ["must be true or false"]),
    ({"weights.encoding": 5}, "weights.encoding", ["must be a string", "got integer 5"]),
    ({"name": 5}, "name", ["must be a string", "got integer 5"]),
    ({"name": ["a"]}, "name", ["must be a string", "got list"]),
    ({"variation.cell.sigma": "0.1"}, "variation.cell.sigma",
     ["must be a number", "got string '0.1'"]),
    ({"variation.seed": 1.5}, "variation.seed", ["must be an integer", "got number 1.5"]),
    ({"organization.tiles": [1]}, "organization.tiles", ["must be an integer", "got list"]),
    ({"crossbar.adc": 8}, "crossbar.adc", ["must be a mapping", "got integer"]),
    ({"clock": "fast"}, "clock", ["must be a mapping", "got string"]),
    ({"variation.cell": [0.1]}, "variation.cell", ["must be a mapping", "got list"]),
    ({"components": {"adc": 1}}, "components", ["must be a list of component rows"]),
    ({"components[0]": "adc"}, "components[0]", ["must be a mapping", "got string"]),
    ({"components[0].count": "4"}, "components[0].count", ["must be an integer"]),
])
def test_wrong_type(make_arch, overrides, path, fragments):
    assert_problem(make_arch.problems(**overrides), path, *fragments)


@pytest.mark.parametrize(("overrides", "path", "message"), [
    # the DESIGN.md example, to the letter
    ({"crossbar.adc.bits": 0}, "crossbar.adc.bits", "must be in 1..16, got 0"),
    ({"crossbar.adc.bits": 17}, "crossbar.adc.bits", "must be in 1..16, got 17"),
    ({"crossbar.cell.bits": 9}, "crossbar.cell.bits", "must be in 1..8, got 9"),
    ({"crossbar.cell.bits": 0}, "crossbar.cell.bits", "must be in 1..8, got 0"),
    ({"crossbar.dac.bits": 0}, "crossbar.dac.bits", "must be in 1..16, got 0"),
    ({"crossbar.rows": 0}, "crossbar.rows", "must be in 1..65536, got 0"),
    ({"crossbar.columns": 70000}, "crossbar.columns", "must be in 1..65536, got 70000"),
    ({"crossbar.fragment_rows": 0}, "crossbar.fragment_rows", "must be in 1..inf, got 0"),
    ({"crossbar.adc.per_crossbar": 0}, "crossbar.adc.per_crossbar", "must be in 1..inf, got 0"),
    ({"crossbar.adc.full_scale": 0}, "crossbar.adc.full_scale",
     "must be in 1e-09..inf, got 0"),
    ({"crossbar.adc.calibration_percentile": 40}, "crossbar.adc.calibration_percentile",
     "must be in 50..100, got 40"),
    ({"weights.bits": 1}, "weights.bits", "must be in 2..32, got 1"),
    ({"weights.bits": 33}, "weights.bits", "must be in 2..32, got 33"),
    ({"inputs.bits": 0}, "inputs.bits", "must be in 1..32, got 0"),
    ({"outputs.bits": 65}, "outputs.bits", "must be in 1..64, got 65"),
    ({"organization.tiles": 0}, "organization.tiles", "must be in 1..inf, got 0"),
    ({"organization.imas_per_tile": -2}, "organization.imas_per_tile",
     "must be in 1..inf, got -2"),
    ({"variation.seed": -1}, "variation.seed", "must be in 0..inf, got -1"),
    ({"variation.cell.sigma": -0.1}, "variation.cell.sigma", "must be in 0..10, got -0.1"),
    ({"variation.cell.read_noise_sigma": 11}, "variation.cell.read_noise_sigma",
     "must be in 0..10, got 11"),
    ({"variation.cell.stuck_at_0": 1.5}, "variation.cell.stuck_at_0",
     "must be in 0..1, got 1.5"),
    ({"variation.adc.gain_sigma": 2}, "variation.adc.gain_sigma", "must be in 0..1, got 2"),
    ({"variation.adc.offset_sigma_lsb": -1}, "variation.adc.offset_sigma_lsb",
     "must be in 0..inf, got -1"),
    ({"components[0].count": 0}, "components[0].count", "must be in 1..inf, got 0"),
    ({"weights.encoding": "sign_magnitude"}, "weights.encoding",
     "must be one of offset, differential, twos_complement, polarized; got 'sign_magnitude'"),
    ({"crossbar.cell.technology": "pcm"}, "crossbar.cell.technology",
     "must be one of reram, sram; got 'pcm'"),
    ({"crossbar.adc.range": "auto"}, "crossbar.adc.range",
     "must be one of fixed, calibrated; got 'auto'"),
    ({"crossbar.adc.rounding": "ceil"}, "crossbar.adc.rounding",
     "must be one of nearest, floor; got 'ceil'"),
    ({"variation.cell.distribution": "uniform"}, "variation.cell.distribution",
     "must be one of normal, lognormal; got 'uniform'"),
    ({"components[0].level": "board"}, "components[0].level",
     "must be one of chip, tile, ima; got 'board'"),
])
def test_out_of_range(make_arch, overrides, path, message):
    assert (path, message) in make_arch.problems(**overrides)


def test_unknown_component_class_lists_the_valid_ones(make_arch):
    problems = make_arch.problems(**{"components[0].class": "pipelined_adc"})
    assert_problem(problems, "components[0].class", "must be one of", "sar_adc", "cisar_adc",
                   "reram_crossbar", "got 'pipelined_adc'")


@pytest.mark.parametrize("path", [
    "name", "technology", "clock.crossbar_cycle", "clock.digital", "organization.tiles",
    "organization.imas_per_tile", "organization.crossbars_per_ima", "crossbar.rows",
    "crossbar.columns", "crossbar.cell.technology", "crossbar.cell.bits", "crossbar.dac.bits",
    "crossbar.adc.bits", "weights.bits", "weights.encoding", "inputs.bits", "inputs.signed",
    "components[0].name", "components[0].level", "components[0].class", "components[0].power",
    "components[0].area",
])
def test_missing_required_key(make_arch, path):
    problems = make_arch.problems(**{path: make_arch.DELETE})
    assert (path, "is required") in problems


@pytest.mark.parametrize("path", ["clock", "organization", "crossbar", "crossbar.cell",
                                  "crossbar.dac", "crossbar.adc", "weights", "inputs"])
def test_missing_required_section(make_arch, path):
    problems = make_arch.problems(**{path: make_arch.DELETE})
    assert (path, "is required") in problems


@pytest.mark.parametrize("path", ["description", "outputs",
                                  "crossbar.unit_column", "crossbar.adc.per_crossbar",
                                  "crossbar.adc.range", "crossbar.adc.clip",
                                  "crossbar.adc.rounding", "weights.column_flip",
                                  "inputs.zero_skip", "energy.shift_add"])
def test_optional_keys_have_defaults(make_arch, path):
    overrides = {path: make_arch.DELETE}
    if path == "crossbar.unit_column":  # offset weights need it; use differential
        overrides.update({"weights.encoding": "differential", "weights.bits": 9})
    make_arch(**overrides)


@pytest.mark.parametrize(("overrides", "path", "fragments"), [
    ({"clock.crossbar_cycle": "100Hz"}, "clock.crossbar_cycle",
     ["expected a quantity in s", "'100Hz'"]),
    ({"clock.crossbar_cycle": "fast"}, "clock.crossbar_cycle", ["cannot parse quantity 'fast'"]),
    ({"clock.crossbar_cycle": "-100ns"}, "clock.crossbar_cycle", ["must not be negative"]),
    ({"clock.crossbar_cycle": None}, "clock.crossbar_cycle", ["expected a quantity"]),
    ({"clock.digital": "1.2GB"}, "clock.digital", ["expected a quantity in Hz", "'1.2GB'"]),
    ({"clock.digital": "-1GHz"}, "clock.digital", ["must not be negative"]),
    ({"technology": "32 furlongs"}, "technology", ["expected a quantity in m"]),
    ({"technology": True}, "technology", ["boolean"]),
    ({"energy.adc_conversion": "1.6pW"}, "energy.adc_conversion",
     ["expected a quantity in J", "'1.6pW'"]),
    ({"energy.dac_pulse": "-0.4pJ"}, "energy.dac_pulse", ["must not be negative"]),
    ({"energy.cell_read": "2xJ"}, "energy.cell_read", ["unknown unit prefix 'x'"]),
    ({"components[0].power": "8mJ"}, "components[0].power", ["expected a quantity in W"]),
    ({"components[1].area": "5mm"}, "components[1].area", ["expected an area in um2 or mm2"]),
    ({"components[1].area": "-5mm2"}, "components[1].area", ["must not be negative"]),
])
def test_bad_units(make_arch, overrides, path, fragments):
    assert_problem(make_arch.problems(**overrides), path, *fragments)


# One mistake should give one problem: a value already reported invalid must not also
# produce follow-on complaints from the checks that read it (the loader's own contract:
# "a check whose inputs were already invalid ... is skipped").

@pytest.mark.parametrize("overrides", [
    {"crossbar.rows": "16"},
    {"crossbar.rows": 0},
    {"crossbar.cell.bits": 0},
    {"crossbar.dac.bits": 0},
    {"crossbar.adc.bits": 0},
    {"crossbar.adc.full_scale": "48"},
    {"crossbar.adc.range": "auto"},
    {"crossbar.adc.rounding": "ceil"},
    {"weights.bits": 1},
    {"inputs.bits": 0},
    {"inputs.signed": "yes"},
    {"variation.cell.stuck_at_0": "x"},
    {"variation.cell.sigma": -1},
    {"clock.digital": "1.2GB"},
    {"energy.adc_conversion": "1.6pW"},
    {"colour": "red"},
    {"weights.encoding": 5},
    {"weights.encoding": "sign_magnitude"},
    {"weights.encoding": None},
    {"crossbar.unit_column": "yes"},
])
def test_one_mistake_one_problem(make_arch, overrides):
    (path,) = overrides
    problems = make_arch.problems(**overrides)
    assert [p for p, _ in problems] == [path], problems


# ----------------------------------------------------------------------------- files


def test_invalid_yaml_syntax(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\ncrossbar: [1, 2\nweights: {bits: 8}\n")
    with pytest.raises(ConfigError) as info:
        load_arch(path)
    err = info.value
    assert err.source == str(path)
    assert len(err.problems) == 1
    where, msg = err.problems[0]
    assert where == ""
    assert msg.startswith("invalid YAML: line ")
    assert ", column " in msg


def test_invalid_yaml_tab_indentation(tmp_path):
    path = tmp_path / "tabs.yaml"
    path.write_text("clock:\n\tdigital: 1GHz\n")
    with pytest.raises(ConfigError) as info:
        read_yaml(path)
    assert info.value.problems[0][0] == ""
    assert info.value.problems[0][1].startswith("invalid YAML: line 2")


def test_duplicate_key_is_refused_with_both_lines(tmp_path):
    # Plain YAML keeps the last of two equal keys: the first value would vanish silently.
    path = tmp_path / "twice.yaml"
    path.write_text("mapping: packed\nbits: {weights: 8}\nmapping: dense\n")
    with pytest.raises(ConfigError) as info:
        read_yaml(path)
    msg = info.value.problems[0][1]
    assert msg.startswith("invalid YAML: line 3") and "'mapping'" in msg and "line 1" in msg
    nested = tmp_path / "nested.yaml"
    nested.write_text("crossbar:\n  rows: 128\n  rows: 256\n")
    with pytest.raises(ConfigError, match="'rows' is given twice"):
        read_yaml(nested)
    # The same key in two mappings, and YAML merge keys, stay legal.
    ok = tmp_path / "ok.yaml"
    ok.write_text("a: {rows: 1}\nb: {rows: 2}\nbase: &x {c: 1}\nd: {<<: *x, e: 2}\n")
    assert read_yaml(ok)["d"] == {"c": 1, "e": 2}


def test_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_arch(path)
    err = info.value
    assert err.source == str(path)
    assert err.problems == [("", "file not found")]
    assert str(err) == f"{path}: 1 problem(s)\n  file not found"


def test_a_directory_is_not_a_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_arch(tmp_path)
    assert info.value.problems == [("", "file not found")]


def test_empty_file_reports_every_required_key(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing yet\n")
    with pytest.raises(ConfigError) as info:
        load_arch(path)
    paths = [p for p, _ in info.value.problems]
    for required in ("name", "technology", "clock", "organization", "crossbar", "weights",
                     "inputs"):
        assert required in paths


def test_top_level_must_be_a_mapping():
    with pytest.raises(ConfigError) as info:
        arch_from_dict([1, 2, 3])
    assert ("(top level)", "must be a mapping, got list") in info.value.problems


# ----------------------------------------------------------------------------- tier two

# Each case is valid field by field; the expected problem is the only one.
CROSS_CASES = {
    "offset weight bits not whole cells": (
        {"weights.bits": 7},
        "weights.bits", ["7-bit offset weights", "not a whole number of 2-bit cells",
                         "crossbar.cell.bits"]),
    "differential magnitude bits not whole cells": (
        {"weights.encoding": "differential", "weights.bits": 8},
        "weights.bits", ["7 magnitude bits", "8-bit differential", "2-bit cells"]),
    "twos_complement magnitude bits not whole cells": (
        {"weights.encoding": "twos_complement", "weights.bits": 6, "crossbar.cell.bits": 4,
         "crossbar.adc.bits": 8},
        "weights.bits", ["5 magnitude bits", "6-bit twos_complement", "4-bit cells"]),
    "fragment taller than the crossbar": (
        {"weights.encoding": "polarized", "weights.bits": 9, "crossbar.fragment_rows": 32,
         "crossbar.adc.clip": True},
        "crossbar.fragment_rows", ["fragment of 32 rows is taller than the crossbar (16 rows)"]),
    "fragment does not divide rows": (
        {"weights.encoding": "polarized", "weights.bits": 9, "crossbar.fragment_rows": 5},
        "crossbar.fragment_rows", ["5 does not divide crossbar.rows (16)"]),
    "fragment_rows without polarized": (
        {"crossbar.fragment_rows": 4},
        "crossbar.fragment_rows", ["only applies to weights.encoding: polarized", "offset"]),
    "polarized without fragment_rows": (
        {"weights.encoding": "polarized", "weights.bits": 9},
        "crossbar.fragment_rows", ["is required with weights.encoding: polarized"]),
    "column_flip without unit column": (
        {"weights.encoding": "differential", "weights.bits": 9, "weights.column_flip": True,
         "crossbar.unit_column": False},
        "weights.column_flip", ["needs crossbar.unit_column: true"]),
    "offset without unit column": (
        {"crossbar.unit_column": False},
        "weights.encoding", ["offset encoding needs crossbar.unit_column: true"]),
    "column_flip with polarized": (
        {"weights.encoding": "polarized", "weights.bits": 9, "crossbar.fragment_rows": 4,
         "weights.column_flip": True},
        "weights.column_flip", ["cannot be combined with polarized"]),
    "DAC bits exceed input bits": (
        {"crossbar.dac.bits": 4, "inputs.bits": 3, "crossbar.adc.bits": 10},
        "crossbar.dac.bits", ["4 DAC bits exceed inputs.bits (3)"]),
    "more ADCs than columns": (
        {"crossbar.adc.per_crossbar": 10},
        "crossbar.adc.per_crossbar", ["10 ADCs for 8 columns"]),
    "ADC cannot hold the largest partial sum": (
        {"crossbar.adc.bits": 5},
        "crossbar.adc", ["5-bit ADC with full scale 31", "largest partial sum 48",
                         "16 rows x 3 cell levels x 1 DAC levels", "crossbar.adc.clip: true",
                         "weights.column_flip"]),
    "ADC too small even with column flipping": (
        {"crossbar.adc.bits": 4, "weights.column_flip": True},
        "crossbar.adc", ["largest partial sum 24", "halved by column flipping"]),
    "ADC too small for a multi-level DAC": (
        {"crossbar.dac.bits": 2, "crossbar.adc.bits": 7},
        "crossbar.adc", ["7-bit ADC with full scale 127", "largest partial sum 144",
                         "3 DAC levels"]),
    "ADC full scale below the largest partial sum": (
        {"crossbar.adc.full_scale": 47.5},
        "crossbar.adc", ["full scale 47.5", "largest partial sum 48"]),
    "unit column partial sum exceeds the flipped data columns": (
        # 1-bit cells flipped: data columns <= 8, but the unit column sums 16 inputs
        {"crossbar.cell.bits": 1, "weights.column_flip": True, "crossbar.adc.bits": 4},
        "crossbar.adc", ["largest partial sum 16"]),
    "calibrated range with a full scale": (
        {"crossbar.adc.range": "calibrated", "crossbar.adc.full_scale": 48},
        "crossbar.adc.full_scale", ["is set by calibration", "remove it"]),
    "calibrated range without clip cannot hold the largest partial sum": (
        {"crossbar.adc.range": "calibrated", "crossbar.adc.bits": 3},
        "crossbar.adc", ["range: calibrated with clip: false is contradictory",
                         "up to 48", "3-bit ADC", "crossbar.adc.clip: true"]),
    "stuck-at probabilities exceed 1": (
        {"variation.cell.stuck_at_0": 0.6, "variation.cell.stuck_at_1": 0.5},
        "variation.cell", ["stuck_at_0 + stuck_at_1 exceeds 1"]),
}


@pytest.mark.parametrize(("overrides", "path", "fragments"), list(CROSS_CASES.values()),
                         ids=list(CROSS_CASES))
def test_cross_field_contradiction(make_arch, overrides, path, fragments):
    problems = make_arch.problems(**overrides)
    assert [p for p, _ in problems] == [path], problems
    assert_problem(problems, path, *fragments)


@pytest.mark.parametrize("overrides", [
    # the ADC-range problem goes away with any of the remedies its message names
    {"crossbar.adc.bits": 5, "crossbar.adc.clip": True},
    {"crossbar.adc.bits": 5, "weights.column_flip": True},
    {"crossbar.adc.bits": 5, "crossbar.adc.full_scale": 48},
    {"crossbar.adc.bits": 5, "crossbar.adc.full_scale": 100.0},
    {"crossbar.dac.bits": 2, "crossbar.adc.bits": 8},
    {"crossbar.cell.bits": 1, "weights.column_flip": True, "crossbar.adc.bits": 5},
    # fragments of 4 rows (FORMS) need only 4 x 3 = 12 levels: a 4-bit ADC suffices
    {"weights.encoding": "polarized", "weights.bits": 9, "crossbar.fragment_rows": 4,
     "crossbar.unit_column": False, "crossbar.adc.bits": 4},
    {"weights.encoding": "polarized", "weights.bits": 9, "crossbar.fragment_rows": 16},
    # calibrated range that clips: no fixed full scale to check
    {"crossbar.adc.range": "calibrated", "crossbar.adc.bits": 3, "crossbar.adc.clip": True},
    # calibrated without clip is consistent when the ADC holds every partial sum (48 <= 63)
    {"crossbar.adc.range": "calibrated"},
    # boundaries that are allowed
    {"crossbar.adc.per_crossbar": 9},
    {"crossbar.dac.bits": 8, "crossbar.adc.bits": 14},
    {"variation.cell.stuck_at_0": 0.5, "variation.cell.stuck_at_1": 0.5},
    {"weights.encoding": "twos_complement", "weights.bits": 9},
    {"weights.encoding": "differential", "weights.bits": 9, "crossbar.unit_column": False},
])
def test_valid_combinations(make_arch, overrides):
    make_arch(**overrides)


# ----------------------------------------------------------------------------- several


def test_several_tier_one_mistakes_in_one_error(make_arch):
    problems = make_arch.problems(**{
        "colour": "red",                          # unknown key
        "crossbar.rows": "16",                    # wrong type
        "crossbar.adc.bits": 0,                   # out of range
        "inputs.signed": make_arch.DELETE,        # missing
        "clock.crossbar_cycle": "100Hz",          # bad unit
        "components[1].level": "board",           # bad choice in a list item
    })
    paths = [p for p, _ in problems]
    for path in ("colour", "crossbar.rows", "crossbar.adc.bits", "inputs.signed",
                 "clock.crossbar_cycle", "components[1].level"):
        assert path in paths
    assert len(problems) == 6


def test_several_contradictions_in_one_error(make_arch):
    problems = make_arch.problems(**{
        "weights.bits": 7,
        "crossbar.dac.bits": 4, "inputs.bits": 3, "crossbar.adc.bits": 10,
        "crossbar.adc.per_crossbar": 12,
        "variation.cell.stuck_at_0": 0.7, "variation.cell.stuck_at_1": 0.7,
    })
    assert sorted(p for p, _ in problems) == sorted([
        "weights.bits", "crossbar.dac.bits", "crossbar.adc.per_crossbar", "variation.cell"])


def test_tier_one_and_tier_two_reported_together(make_arch):
    problems = make_arch.problems(**{
        "colour": "red",
        "variation.cell.stuck_at_0": 0.7, "variation.cell.stuck_at_1": 0.7,
    })
    assert sorted(p for p, _ in problems) == ["colour", "variation.cell"]


def test_invalid_field_does_not_hide_an_unrelated_contradiction(make_arch):
    problems = make_arch.problems(**{
        "crossbar.cell.bits": 0,
        "crossbar.dac.bits": 4, "inputs.bits": 3, "crossbar.adc.clip": True,
    })
    assert sorted(p for p, _ in problems) == ["crossbar.cell.bits", "crossbar.dac.bits"]


def test_error_string_lists_one_line_per_problem(make_arch):
    data = make_arch.dict(**{"colour": "red", "crossbar.adc.bits": 0, "weights.bits": 7})
    with pytest.raises(ConfigError) as info:
        arch_from_dict(data, source="my_arch.yaml")
    err = info.value
    assert isinstance(err, UserError) and err.exit_code != 0
    lines = str(err).split("\n")
    assert lines[0] == f"my_arch.yaml: {len(err.problems)} problem(s)"
    assert len(lines) == 1 + len(err.problems)
    for line, (path, msg) in zip(lines[1:], err.problems, strict=True):
        assert line == f"  {path}: {msg}"
    assert "  crossbar.adc.bits: must be in 1..16, got 0" in lines


def test_error_string_from_a_file_names_the_file(make_arch, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(make_arch.dict(**{"crossbar.cell.bits": 9})))
    with pytest.raises(ConfigError) as info:
        load_arch(path)
    assert str(info.value) == f"{path}: 1 problem(s)\n  crossbar.cell.bits: must be in 1..8, got 9"


# ----------------------------------------------------------------------------- non-finite

@pytest.mark.parametrize(("path", "value"), [
    ("variation.cell.sigma", math.nan),
    ("clock.crossbar_cycle", math.nan),
    ("crossbar.adc.full_scale", math.inf),
    ("energy.adc_conversion", math.inf),
])
def test_non_finite_values_rejected(make_arch, tmp_path, path, value):
    file = tmp_path / "non_finite.yaml"
    file.write_text(yaml.safe_dump(make_arch.dict(**{path: value})))  # written as .nan/.inf
    with pytest.raises(ConfigError) as info:
        load_arch(file)
    assert path in [p for p, _ in info.value.problems]
