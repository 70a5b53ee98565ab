"""Parsing of quantities with units, done once at load time.

YAML may say ``"64KiB"``, ``"100ns"``, ``"1.28GHz"``, ``"16mW"``, ``"1.67pJ"``,
``"0.0096mm2"``; the loaders turn them into plain floats in the unit named by the field
(``_bytes``, ``_ns``, ``_hz``, ``_mw``, ``_pj``, ``_um2``). A bare number is an error (its
unit is not written, and ``area: 0.0096`` read as um^2 when mm^2 was meant is off by 10^6):
the message shows the unit expected. Zero is the one bare number accepted (it is zero in
every unit).
"""

from __future__ import annotations

import math
import re

_PREFIX = {"": 1.0, "f": 1e-15, "p": 1e-12, "n": 1e-9, "u": 1e-6, "µ": 1e-6, "m": 1e-3,
           "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
_NUMBER = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
_RE = re.compile(rf"^\s*{_NUMBER}\s*([A-Za-zµ0-9/]*)\s*$")


def _split(text: object) -> tuple[float, str]:
    if isinstance(text, bool):
        raise ValueError(f"expected a quantity, got boolean {text!r}")
    if isinstance(text, int | float):
        value, unit = float(text), ""
    elif not isinstance(text, str):
        kind = "null" if text is None else type(text).__name__
        raise ValueError(f"expected a quantity such as '100ns', got {kind}")
    else:
        m = _RE.match(text)
        if not m:
            raise ValueError(f"cannot parse quantity {text!r}")
        value, unit = float(m.group(1)), m.group(2)
    if not math.isfinite(value):
        raise ValueError(f"must be a finite number, got {text!r}")
    return value, unit


def _bare(value: float, text: object, example: str) -> float:
    """A number written without its unit: only zero is accepted."""
    if value == 0:
        return 0.0
    raise ValueError(f"{text!r} needs its unit, e.g. '{example}'")


def _scaled(text: object, base: str, to_unit_factor: float, example: str,
            split: tuple[float, str] | None = None) -> float:
    """Parse ``text`` whose unit ends in ``base``; return value / to_unit_factor (SI)."""
    value, unit = split if split is not None else _split(text)
    if unit == "":
        return _bare(value, text, example)
    if not unit.endswith(base):
        raise ValueError(f"expected a quantity in {base} (e.g. {example!r}), got {text!r}")
    prefix = unit[: -len(base)]
    if prefix not in _PREFIX:
        raise ValueError(f"unknown unit prefix {prefix!r} in {text!r}")
    result = value * _PREFIX[prefix] / to_unit_factor
    if not math.isfinite(result):
        raise ValueError(f"must be a finite number, got {text!r}")
    return result


def _nonneg(x: float, text: object) -> float:
    if x < 0:
        raise ValueError(f"must not be negative, got {text!r}")
    return x


def time_ns(text: object) -> float:
    """Time in ns: ``"100ns"``, ``"1.6us"``, ``"2ms"`` (a unit is required)."""
    return _nonneg(_scaled(text, "s", 1e-9, "100ns"), text)


def frequency_hz(text: object) -> float:
    """Frequency in Hz: ``"1.2GHz"``, ``"1.28GS/s"`` (samples per second; a unit is required)."""
    value, unit = _split(text)
    for samples in ("S/s", "Sps", "SPS"):  # samples per second: the same as Hz here
        if unit.endswith(samples):
            unit = unit[: -len(samples)] + "Hz"
    return _nonneg(_scaled(text, "Hz", 1.0, "1.2GHz", split=(value, unit)), text)


def power_mw(text: object) -> float:
    """Power in mW: ``"16mW"``, ``"10uW"``, ``"65.8W"`` (a unit is required)."""
    return _nonneg(_scaled(text, "W", 1e-3, "16mW"), text)


def energy_pj(text: object) -> float:
    """Energy in pJ: ``"1.67pJ"``, ``"0.4fJ"``, ``"2nJ"`` (a unit is required)."""
    return _nonneg(_scaled(text, "J", 1e-12, "1.67pJ"), text)


_AREA = {"um2": 1.0, "µm2": 1.0, "mm2": 1e6, "nm2": 1e-6, "m2": 1e12, "cm2": 1e8}


def area_um2(text: object) -> float:
    """Area in um^2: ``"0.0096mm2"``, ``"1200um2"`` (a unit, um2 or mm2, is required)."""
    value, unit = _split(text)
    if unit == "":
        return _nonneg(_bare(value, text, "0.0096mm2' or '1200um2"), text)
    if unit not in _AREA:
        raise ValueError(f"expected an area in um2 or mm2 (e.g. '0.0096mm2'), got {text!r}")
    result = value * _AREA[unit]
    if not math.isfinite(result):
        raise ValueError(f"must be a finite number, got {text!r}")
    return _nonneg(result, text)


_BYTES = {"B": 1, "KB": 1000, "MB": 1000**2, "GB": 1000**3, "KiB": 1024, "MiB": 1024**2,
          "GiB": 1024**3, "kB": 1000, "kiB": 1024}


def size_bytes(text: object) -> int:
    """Memory size in bytes: ``"64KiB"``, ``"2KB"``, ``"256B"``, ``"3kB"`` (a unit is required).

    ``KB`` is taken as 1000 bytes and ``KiB`` as 1024, as in SI/IEC usage; published tables
    that write "64 KB" for 65,536 bytes should be transcribed as ``64KiB``.
    """
    value, unit = _split(text)
    if unit == "":
        return int(_nonneg(_bare(value, text, "64KiB"), text))
    factor = _BYTES.get(unit)
    if factor is None:
        raise ValueError(f"expected a size such as '64KiB' or '2KB', got {text!r}")
    result = value * factor
    if not math.isfinite(result) or result != int(result) or result < 0:
        raise ValueError(f"size must be a whole, non-negative number of bytes, got {text!r}")
    return int(result)


def length_nm(text: object) -> float:
    """Length in nm (technology node): ``"32nm"``, ``"0.065um"`` (a unit is required)."""
    return _nonneg(_scaled(text, "m", 1e-9, "32nm"), text)
