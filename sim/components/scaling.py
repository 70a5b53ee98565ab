"""Technology-node scaling of area and energy for the reference-point component models.

Source: A. Stillmaker and B. Baas, "Scaling equations for the accurate prediction of CMOS
device performance from 180 nm to 7 nm", Integration 58 (2017) 74-81,
DOI 10.1016/j.vlsi.2017.02.002, as tabulated in the Accelergy project's
``hwcomponents/scaling/techscaling.py`` (area factors relative to 130 nm; dynamic energy as
``a*Vdd^2 + b*Vdd + c`` per node). Our own implementation: between tabulated nodes the factors
are interpolated geometrically (linear in log node, log factor); outside 7-130 nm they are
extrapolated with the classical first-order laws area ~ node^2 and energy ~ node (constant
voltage), which is outside the validity range of the fit and documented as such.
"""

from __future__ import annotations

import math

#: Tabulated nodes (nm), largest first.
NODES_NM = (130.0, 90.0, 65.0, 45.0, 32.0, 20.0, 16.0, 14.0, 10.0, 7.0)
#: Area of one design at each node relative to 130 nm (Stillmaker & Baas 2017).
_AREA_REL_130 = (1.0, 0.44, 0.23, 0.16, 0.072, 0.033, 0.03, 0.027, 0.016, 0.0092)
#: Dynamic-energy polynomial (a, b, c) in Vdd per node (Stillmaker & Baas 2017).
_ENERGY_POLY = (
    (7.171, -6.709, 2.904),
    (4.762, -4.781, 2.092),
    (3.755, -4.398, 1.975),
    (1.103, -0.362, 0.2767),
    (0.9559, -0.7823, 0.471),
    (0.373, -0.1582, 0.04104),
    (0.2958, -0.1241, 0.03024),
    (0.2363, -0.09675, 0.02239),
    (0.2068, -0.09311, 0.02375),
    (0.1776, -0.09097, 0.02447),
)
#: Supply voltage at which both nodes' energies are compared when none is given (the same
#: default as hwcomponents); the ratio, not the absolute energy, is what is used.
DEFAULT_VDD_V = 0.8


def _interp_log(node_nm: float, values: tuple[float, ...], out_exponent: float) -> float:
    """Geometric interpolation of ``values`` (one per tabulated node) at ``node_nm``.

    Outside the table the nearest end value is extended as ``node**out_exponent``.
    """
    if node_nm <= 0:
        raise ValueError(f"technology node must be positive, got {node_nm!r}")
    if node_nm >= NODES_NM[0]:
        return values[0] * (node_nm / NODES_NM[0]) ** out_exponent
    if node_nm <= NODES_NM[-1]:
        return values[-1] * (node_nm / NODES_NM[-1]) ** out_exponent
    for i in range(len(NODES_NM) - 1):
        hi, lo = NODES_NM[i], NODES_NM[i + 1]
        if lo <= node_nm <= hi:
            t = (math.log(hi) - math.log(node_nm)) / (math.log(hi) - math.log(lo))
            return math.exp((1 - t) * math.log(values[i]) + t * math.log(values[i + 1]))
    raise AssertionError("unreachable")  # pragma: no cover


def area_factor(to_nm: float, from_nm: float) -> float:
    """Multiply an area at ``from_nm`` by this to get the same design's area at ``to_nm``."""
    if to_nm == from_nm:
        return 1.0
    return _interp_log(to_nm, _AREA_REL_130, 2.0) / _interp_log(from_nm, _AREA_REL_130, 2.0)


def _energy_table(vdd_v: float) -> tuple[float, ...]:
    """Relative dynamic energy of each tabulated node at supply ``vdd_v``."""
    return tuple(a * vdd_v**2 + b * vdd_v + c for a, b, c in _ENERGY_POLY)


def energy_factor(to_nm: float, from_nm: float, vdd_v: float = DEFAULT_VDD_V) -> float:
    """Multiply an energy at ``from_nm`` by this to get the same design's energy at ``to_nm``."""
    if to_nm == from_nm:
        return 1.0
    table = _energy_table(vdd_v)
    if min(table) <= 0:
        raise ValueError(f"the energy fit is not positive at {vdd_v} V; use 0.6-1.2 V")
    return _interp_log(to_nm, table, 1.0) / _interp_log(from_nm, table, 1.0)
