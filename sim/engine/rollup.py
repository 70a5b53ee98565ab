"""Energy, area and throughput rollups over the component table, the events and the schedule.

- area of the chip: every component row's group area x how many of its level the chip has
  (tiles, tiles x IMAs), divided among the ``shared_by`` units sharing it;
- peak power the same way from the rows' group powers (the published table's totals);
- dynamic energy: each counted event x its per-event energy, charged to the component class
  that performs it; leakage power x latency on top (zero where the table gives none);
- peak throughput from the organization and the step time: every crossbar busy with dense
  inputs, ``rows x weights per crossbar row`` MACs per input vector of ``steps`` steps.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sim.config.schema import Arch, columns_per_weight, input_steps
from sim.engine.timing import step_cycles
from sim.stats import energy_by_event_pj

#: Which component classes perform each event (the first present in the table is charged).
EVENT_CLASSES = {
    "adc_conversions": ("sar_adc", "cisar_adc", "flash_adc"),
    "dac_pulses": ("dac",),
    "cell_reads": ("reram_crossbar", "sram_array", "capacitor_array"),
    "sample_holds": ("sample_hold",),
    "shift_adds": ("shift_add",),
    "input_buffer_read_bits": ("edram_buffer", "sram_buffer"),
    "output_buffer_write_bits": ("edram_buffer", "sram_buffer"),
    "input_register_write_bits": ("register",),
}
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
    """Chip power of each component-table row at the table's operating point (mW)."""
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
    """The component-table row an event's energy is charged to (or ``other: <event>``)."""
    for cls in EVENT_CLASSES.get(event, ()):
        rows = sorted((c for c in arch.components if c.component_class == cls),
                      key=lambda c: _LEVEL_ORDER[c.level])
        if rows:
            return rows[0].name
    return f"other: {event}"


def energy_by_component_pj(arch: Arch, events: Mapping[str, int], latency_s: float
                           ) -> dict[str, float]:
    """Dynamic energy of ``events`` by component, plus leakage x ``latency_s``."""
    out: dict[str, float] = {}
    for event, e in energy_by_event_pj(events, arch.energy).items():
        if e:
            name = event_component(arch, event)
            out[name] = out.get(name, 0.0) + e
    for c in arch.components:
        if c.leakage_mw:
            leak = c.leakage_mw * level_count(arch, c.level) / c.shared_by * 1e-3 * latency_s
            out[c.name] = out.get(c.name, 0.0) + leak * 1e12
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


def peak(arch: Arch) -> Peak:
    """Peak throughput over the component table's area and power (2 ops per MAC)."""
    xb = arch.crossbar
    weights_per_row = xb.columns // columns_per_weight(arch.weights, xb.cell)
    cols = xb.columns + (1 if xb.unit_column else 0)
    vector_s = input_steps(arch.inputs, xb.dac) * step_cycles(arch, cols) / arch.clock.digital_hz
    macs = arch.organization.crossbars * xb.rows * weights_per_row
    area = sum(area_by_component_um2(arch).values()) / 1e6
    power = sum(power_by_component_mw(arch).values()) / 1e3
    return Peak(ops_per_s=2 * macs / vector_s, area_mm2=area, power_w=power)
