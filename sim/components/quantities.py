"""Parsers for the electrical quantities that only component models need.

:mod:`sim.config.units` parses time, frequency, power, energy, area, size and length. The
physical cell and capacitor models also take voltages, resistances, capacitances and
capacitance densities; they are parsed here the same way (a string with its unit; a bare
number other than zero is an error whose message shows the unit expected), once, at load time.
"""

from __future__ import annotations

import re

_PREFIX = {"": 1.0, "f": 1e-15, "p": 1e-12, "n": 1e-9, "u": 1e-6, "µ": 1e-6, "m": 1e-3,
           "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9}
_NUMBER = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
_RE = re.compile(rf"^\s*{_NUMBER}\s*([A-Za-zµΩ0-9/]*)\s*$")


def _parse(text: object, bases: tuple[str, ...], to_unit_factor: float, example: str) -> float:
    """``text`` as a non-negative float in the target unit (SI value / ``to_unit_factor``)."""
    if isinstance(text, bool):
        raise ValueError(f"expected a quantity such as {example!r}, got boolean {text!r}")
    if isinstance(text, int | float):
        value, unit = float(text), ""
        if value != 0:
            raise ValueError(f"{text!r} needs its unit, e.g. {example!r}")
    elif isinstance(text, str):
        m = _RE.match(text)
        if not m:
            raise ValueError(f"cannot parse quantity {text!r} (e.g. {example!r})")
        value, unit = float(m.group(1)), m.group(2)
        if not unit and value != 0:
            raise ValueError(f"{text!r} needs its unit, e.g. {example!r}")
    else:
        raise ValueError(f"expected a quantity such as {example!r}, got {type(text).__name__}")
    if unit:
        base = next((b for b in bases if unit.endswith(b)), None)
        if base is None:
            raise ValueError(f"expected a quantity in {bases[0]} (e.g. {example!r}), "
                             f"got {text!r}")
        prefix = unit[: -len(base)]
        if prefix not in _PREFIX:
            raise ValueError(f"unknown unit prefix {prefix!r} in {text!r}")
        value = value * _PREFIX[prefix] / to_unit_factor
    if value < 0:
        raise ValueError(f"must not be negative, got {text!r}")
    return value


def voltage_v(text: object) -> float:
    """Voltage in V: ``"0.3V"``, ``"900mV"``, (a unit is required)."""
    return _parse(text, ("V",), 1.0, "0.3V")


def resistance_ohm(text: object) -> float:
    """Resistance in ohm: ``"2kohm"``, ``"3Mohm"``, ``"20kΩ"``, (a unit is required)."""
    return _parse(text, ("ohm", "Ohm", "Ω"), 1.0, "2kohm")


def capacitance_ff(text: object) -> float:
    """Capacitance in fF: ``"1.5fF"``, ``"0.2pF"``, (a unit is required)."""
    return _parse(text, ("F",), 1e-15, "1.5fF")


def capacitance_density_ff_per_um2(text: object) -> float:
    """Capacitance per area in fF/um^2: ``"2fF/um2"``, (a unit is required)."""
    if isinstance(text, str) and text.strip().endswith("/um2"):
        text = text.strip()[: -len("/um2")]
        return capacitance_ff(text)
    if isinstance(text, str) and "/" in text:
        raise ValueError(f"expected a density in fF/um2 (e.g. '2fF/um2'), got {text!r}")
    return capacitance_ff(text)
