"""Energy, area and throughput rollups over the component table, the events and the schedule.

- area of the chip: every component row's group area x how many of its level the chip has
  (tiles, tiles x IMAs), divided among the ``shared_by`` units sharing it;
- peak power the same way from the rows' group powers at the config's point (the published
  table's totals at its stated point; elsewhere each row's power scaled by the calibration,
  including how often its instances act: ``sim.components.calibrate.rate_law``);
- dynamic energy: each counted event x its per-event energy, charged to the component that
  performs it (``sim.config.schema.EVENTS``; the figures are calibrated at the config's own
  point by ``sim.components.calibrate``); leakage power x latency on top (zero where neither
  the table nor a model gives static power); the parts sum to the total (checked);
- peak throughput from the organization and the step time: every crossbar busy with dense
  inputs, ``rows x weights per crossbar row`` MACs per input vector of ``steps`` steps.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from sim.config.schema import Arch, columns_per_weight, input_steps
from sim.engine.timing import step_cycles
from sim.errors import InvariantError
from sim.stats import energy_by_event_pj, total_pj

_LEVEL_ORDER = {"ima": 0, "tile": 1, "chip": 2}


def level_count(arch: Arch, level: str) -> int:
    """How many instances of a hierarchy level the chip has."""
    org = arch.organization
    return {"chip": 1, "tile": org.tiles, "ima": org.tiles * org.imas_per_tile}[level]


def area_by_component_um2(arch: Arch) -> dict[str, float]:
    """Chip area of each component-table row (um^2)."""
    return {c.name: c.area_um2 * level_count(arch, c.level) / c.shared_by
            for c in arch.components}


def power_by_component_mw(arch: Arch) -> dict[str, float]:
    """Chip power of each component-table row at the config's operating point (mW)."""
    return {c.name: c.power_mw * level_count(arch, c.level) / c.shared_by
            for c in arch.components}


def per_level_total(arch: Arch, level: str, values: Mapping[str, float]) -> float:
    """Sum of ``values`` (chip totals by row) for one instance of ``level`` and below it.

    E.g. a tile's power is its own rows plus ``imas_per_tile`` IMAs' rows.
    """
    total = 0.0
    n = level_count(arch, level)
    for c in arch.components:
        if _LEVEL_ORDER[c.level] <= _LEVEL_ORDER[level]:
            total += values[c.name] / n
    return total


def event_component(arch: Arch, event: str) -> str:
    """The component (table row, or ``<class> (model)``) an event's energy is charged to."""
    return arch.energy.component_of(event)


def energy_by_component_pj(arch: Arch, events: Mapping[str, float], latency_s: float
                           ) -> dict[str, float]:
    """Energy of ``events`` by component, plus leakage x ``latency_s``; sums to the total.

    Every event is charged through :data:`sim.config.schema.EVENTS` (an unknown name raises
    :class:`InvariantError`). The result's sum equals the dynamic energy of the events plus
    the leakage energy, which is checked.
    """
    out: dict[str, float] = {}
    by_event = energy_by_event_pj(events, arch.energy)
    for event, e in by_event.items():
        name = event_component(arch, event)
        out[name] = out.get(name, 0.0) + e
    leakage = leakage_pj(arch, latency_s)
    for name, e in leakage.items():
        out[name] = out.get(name, 0.0) + e
    expected = total_pj(by_event) + total_pj(leakage)
    got = total_pj(out)
    if not math.isclose(got, expected, rel_tol=1e-9, abs_tol=1e-9):
        raise InvariantError(f"energy by component sums to {got} pJ, events and leakage to "
                             f"{expected} pJ")
    return out


def leakage_pj(arch: Arch, latency_s: float) -> dict[str, float]:
    """Leakage energy of each row with static power over ``latency_s`` (pJ)."""
    out = {}
    for c in arch.components:
        if c.leakage_mw:
            leak = c.leakage_mw * level_count(arch, c.level) / c.shared_by * 1e-3 * latency_s
            out[c.name] = leak * 1e12
    return out


@dataclass(frozen=True, kw_only=True)
class Peak:
    """Peak (all crossbars busy, dense inputs) figures of an architecture."""

    ops_per_s: float
    area_mm2: float
    power_w: float

    @property
    def gops_per_mm2(self) -> float:
        """Computational efficiency (ISAAC's CE), GOPS/s/mm^2."""
        return self.ops_per_s / 1e9 / self.area_mm2

    @property
    def gops_per_w(self) -> float:
        """Power efficiency (ISAAC's PE), GOPS/W."""
        return self.ops_per_s / 1e9 / self.power_w


def peak(arch: Arch, *, per_cell: bool = False) -> Peak:
    """Peak throughput over the component table's area and power (2 ops per MAC).

    Every array that computes at once (:meth:`sim.macros.family.MacroFamily.active_arrays`:
    all crossbars of ISAAC, one weight group per CAP-RAM macro) busy with dense inputs:
    ``rows x weights per row`` MACs of ``weights.bits x inputs.bits`` per input vector of
    ``steps`` steps. ``per_cell``: every cell's product of one step's input with its bits
    counts as one MAC (``rows x columns`` per step), the way bit-level macros quote peak.
    """
    from sim.macros.family import family_of

    xb = arch.crossbar
    cols = xb.columns + (1 if xb.unit_column else 0)
    # Every row group (fragment) of the crossbar converts at peak.
    step_s = step_cycles(arch, cols, xb.rows // xb.group_rows) / arch.clock.digital_hz
    if per_cell:
        weights_per_row, vector_s = xb.columns, step_s
    else:
        weights_per_row = xb.columns // columns_per_weight(arch.weights, xb.cell)
        vector_s = input_steps(arch.inputs, xb.dac) * step_s
    macs = family_of(arch).active_arrays(arch) * xb.rows * weights_per_row
    area = sum(area_by_component_um2(arch).values()) / 1e6
    power = sum(power_by_component_mw(arch).values()) / 1e3
    return Peak(ops_per_s=2 * macs / vector_s, area_mm2=area, power_w=power)
