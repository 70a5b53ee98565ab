"""Every unit parser of ``sim.config.units``: good values, bare numbers, bad units, negatives.

Parsed values are compared with ``pytest.approx`` (relative 1e-12): a prefix factor such as
``1e-9`` is not exact in binary, so ``100 * 1e-9 / 1e-9`` may be off in the last bit.
"""

from __future__ import annotations

import math

import pytest

from sim.components import quantities as q
from sim.config import units

REL = 1e-12  # a few ulps of float64: prefixes are not exact binary fractions

PARSERS = [units.time_ns, units.frequency_hz, units.power_mw, units.energy_pj,
           units.area_um2, units.size_bytes, units.length_nm]


@pytest.mark.parametrize(("text", "ns"), [
    ("100ns", 100.0), ("1.6us", 1600.0), ("1.6µs", 1600.0), ("2ms", 2e6), ("1s", 1e9),
    ("250ps", 0.25), ("5e2ns", 500.0), (" 100 ns ", 100.0), (".5ns", 0.5), ("+3ns", 3.0),
    ("0ns", 0.0), (0, 0.0),
])
def test_time_ns_good(text, ns):
    assert units.time_ns(text) == pytest.approx(ns, rel=REL)


@pytest.mark.parametrize(("text", "hz"), [
    ("1.2GHz", 1.2e9), ("10MHz", 1e7), ("32kHz", 3.2e4), ("32KHz", 3.2e4), ("50Hz", 50.0),
    ("1.28GS/s", 1.28e9), ("1.2GSps", 1.2e9), ("1.2GSPS", 1.2e9), ("100MS/s", 1e8),
    ("1e9Hz", 1e9),
])
def test_frequency_hz_good(text, hz):
    assert units.frequency_hz(text) == pytest.approx(hz, rel=REL)


@pytest.mark.parametrize(("text", "mw"), [
    ("16mW", 16.0), ("10uW", 0.01), ("65.8W", 65800.0), ("1kW", 1e6), ("0.5nW", 5e-7),
    ("0", 0.0),
])
def test_power_mw_good(text, mw):
    assert units.power_mw(text) == pytest.approx(mw, rel=REL)


@pytest.mark.parametrize(("text", "pj"), [
    ("1.67pJ", 1.67), ("0.4fJ", 4e-4), ("2nJ", 2000.0), ("1uJ", 1e6), ("3J", 3e12),
    (0, 0.0),
])
def test_energy_pj_good(text, pj):
    assert units.energy_pj(text) == pytest.approx(pj, rel=REL)


@pytest.mark.parametrize(("text", "um2"), [
    ("0.0096mm2", 9600.0), ("1200um2", 1200.0), ("5µm2", 5.0), ("1cm2", 1e8),
    ("2e6nm2", 2.0), ("1m2", 1e12), ("22.88mm2", 22.88e6), (0, 0.0),
])
def test_area_um2_good(text, um2):
    assert units.area_um2(text) == pytest.approx(um2, rel=REL)


@pytest.mark.parametrize(("text", "nbytes"), [
    ("64KiB", 65536), ("2KB", 2000), ("3kB", 3000), ("1kiB", 1024), ("256B", 256),
    ("1MiB", 1 << 20), ("1MB", 10**6), ("2GiB", 2 << 30), ("1GB", 10**9), ("1.5KiB", 1536),
    (0, 0),
])
def test_size_bytes_good(text, nbytes):
    got = units.size_bytes(text)
    assert got == nbytes
    assert isinstance(got, int)


@pytest.mark.parametrize(("text", "nm"), [
    ("32nm", 32.0), ("65nm", 65.0), ("0.032um", 32.0), ("1mm", 1e6),
])
def test_length_nm_good(text, nm):
    assert units.length_nm(text) == pytest.approx(nm, rel=REL)


@pytest.mark.parametrize(("parser", "text", "fragment"), [
    # a unit of the wrong dimension names the expected unit and an example
    (units.time_ns, "100Hz", "expected a quantity in s"),
    (units.time_ns, "100nJ", "expected a quantity in s"),
    (units.frequency_hz, "1.2GB", "expected a quantity in Hz"),
    (units.frequency_hz, "5ns", "expected a quantity in Hz"),
    (units.power_mw, "16mJ", "expected a quantity in W"),
    (units.energy_pj, "1.67pW", "expected a quantity in J"),
    (units.energy_pj, "1.67pj", "expected a quantity in J"),
    (units.length_nm, "32nm2", "expected a quantity in m"),
    (units.area_um2, "5mm", "expected an area in um2 or mm2"),
    (units.area_um2, "5 acres", "expected an area"),
    (units.size_bytes, "64kib", "expected a size such as '64KiB'"),
    (units.size_bytes, "64Kb", "expected a size"),
    # the right base unit with a prefix that does not exist
    (units.time_ns, "100xs", "unknown unit prefix 'x'"),
    (units.energy_pj, "1QJ", "unknown unit prefix 'Q'"),
    (units.power_mw, "3mmW", "unknown unit prefix 'mm'"),
    # not a quantity at all
    (units.time_ns, "fast", "cannot parse quantity 'fast'"),
    (units.time_ns, "", "cannot parse quantity"),
    (units.power_mw, "1.2.3mW", "cannot parse quantity"),
    (units.energy_pj, "pJ", "cannot parse quantity"),
    (units.area_um2, "mm2", "cannot parse quantity"),
    (units.time_ns, [100], "got list"),
    (units.time_ns, None, "expected a quantity such as '100ns'"),
])
def test_bad_units(parser, text, fragment):
    with pytest.raises(ValueError) as info:
        parser(text)
    assert fragment in str(info.value)


@pytest.mark.parametrize("parser", PARSERS)
def test_boolean_is_not_a_quantity(parser):
    # YAML turns `yes`/`true` into booleans, which Python would treat as 1
    with pytest.raises(ValueError, match="boolean"):
        parser(True)


@pytest.mark.parametrize(("parser", "text"), [
    (units.time_ns, "-100ns"), (units.frequency_hz, "-1GHz"),
    (units.frequency_hz, "-1.28GS/s"), (units.power_mw, "-16mW"),
    (units.energy_pj, "-1.67pJ"), (units.area_um2, "-1mm2"), (units.length_nm, "-32nm"),
])
def test_negative_quantities_rejected(parser, text):
    with pytest.raises(ValueError, match="must not be negative"):
        parser(text)


@pytest.mark.parametrize("text", ["-64KiB", "-1B", "0.5B", "1.5B", "1.0001KiB"])
def test_size_bytes_not_whole_or_negative(text):
    with pytest.raises(ValueError, match="whole, non-negative number of bytes"):
        units.size_bytes(text)


def test_negative_zero_is_zero():
    # "-0ns" is not a negative duration
    assert units.time_ns("-0ns") == 0.0


@pytest.mark.parametrize(("parser", "text"), [
    (units.time_ns, "-100ns"), (units.power_mw, "-16mW"), (units.area_um2, "-1mm2"),
    (units.size_bytes, "-64KiB"), (units.time_ns, "100Hz"),
])
def test_message_quotes_the_users_text(parser, text):
    with pytest.raises(ValueError) as info:
        parser(text)
    assert repr(text) in str(info.value)


@pytest.mark.parametrize("text", ["-1GS/s", "1.2XS/s"])
def test_frequency_message_quotes_the_users_text(text):
    with pytest.raises(ValueError) as info:
        units.frequency_hz(text)
    assert repr(text) in str(info.value)


@pytest.mark.parametrize(("parser", "text"), [
    (units.time_ns, math.nan), (units.time_ns, math.inf), (units.time_ns, "1e400ns"),
    (units.energy_pj, math.nan), (units.frequency_hz, math.inf), (units.area_um2, math.nan),
    (units.power_mw, "1e999mW"), (units.length_nm, math.nan),
])
def test_non_finite_quantities_rejected(parser, text):
    with pytest.raises(ValueError):
        parser(text)


@pytest.mark.parametrize("text", ["1e400B", math.inf])
def test_size_bytes_infinite_is_a_value_error(text):
    with pytest.raises(ValueError):
        units.size_bytes(text)


@pytest.mark.parametrize(("parser", "text", "expected"), [
    (units.area_um2, 0.0096, "'0.0096mm2'"), (units.area_um2, "1200", "um2"),
    (units.time_ns, 100, "'100ns'"), (units.frequency_hz, "1e9", "'1.2GHz'"),
    (units.power_mw, 16, "'16mW'"), (units.energy_pj, "1.6667", "'1.67pJ'"),
    (units.size_bytes, 512, "'64KiB'"), (units.length_nm, 65, "'32nm'"),
    (units.time_ns, -5, "'100ns'"),
])
def test_bare_number_needs_its_unit(parser, text, expected):
    # A bare number is ambiguous (area: 0.0096 meant mm2 would be read as um2): the message
    # names the problem and shows a value with the unit expected.
    with pytest.raises(ValueError, match="needs its unit") as info:
        parser(text)
    assert expected in str(info.value)


def test_bare_number_is_a_config_error_with_its_path(make_arch):
    problems = make_arch.problems(**{"components[0].area": 0.0096})
    assert any(p == "components[0].area" and "needs its unit" in m and "mm2" in m
               for p, m in problems)


@pytest.mark.parametrize(("parser", "text"), [
    (q.voltage_v, 0.3), (q.resistance_ohm, "2000"), (q.capacitance_ff, 1.5),
])
def test_component_quantities_need_their_unit(parser, text):
    with pytest.raises(ValueError, match="needs its unit"):
        parser(text)
