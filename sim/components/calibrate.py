"""Calibrated component models: every energy, power and area at the config's own parameters.

One path serves every run, sweep point and Monte-Carlo chip: :func:`calibrate` turns the
component table and the stated per-event figures of an architecture YAML into figures at the
architecture's own operating point.

- Each table row names its model (``class:``). The figures a row states (group ``power``,
  ``area``, ``count``, ``leakage``) are a *calibration point*: they held at the parameters the
  row records in ``at:`` (merged over the file's ``stated_at:``, which also gives the node).
- The config's own parameters for that class come from the architecture (ADC bits and rate
  from ``crossbar.adc``, DAC bits, crossbar rows, columns and cell bits, the tile buffer's size
  and bus width, the NoC link width, the node; see :data:`BINDINGS`).
- When the two differ, each stated figure is multiplied by the model's ratio between the two
  points (energy per action, area per instance, instances per IMA), and a note says so.
- Per-event energies: a figure stated in ``energy:`` for the event, else the charged row's
  power divided by its stated action rate (``at.rate``), scaled the same way; an event no row
  performs gets its model's figure at the config's point (noted). A figure neither stated nor
  derivable is a problem at its YAML path, never a silent zero.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from sim.components.base import PerBitComponent
from sim.components.registry import REGISTRY, _load_families
from sim.config import units
from sim.config.schema import EVENTS, OPTIONAL_EVENTS, Arch, Component, EventEnergy
from sim.config.validate import Problems, Section, join
from sim.engine.timing import step_cycles

#: Keys an ``at:`` mapping may hold, with their parsers.
AT_PARSERS: dict[str, Callable[[Any], Any]] = {
    "technology": units.length_nm, "bits": int, "rate": units.frequency_hz, "rows": int,
    "columns": int, "size": units.size_bytes, "width": int, "per_crossbar": int,
    "crossbars_per_ima": int, "crossbar_cycle": units.time_ns, "digital": units.frequency_hz,
}
#: ``at:`` key -> field of the component model's dataclass.
MODEL_FIELD = {"bits": "bits", "rate": "rate_hz", "rows": "rows", "columns": "columns",
               "size": "size_bytes", "width": "width_bits"}

_LEVEL_ORDER = {"ima": 0, "tile": 1, "chip": 2}
_ADC = ("sar_adc", "cisar_adc", "flash_adc")
_ARRAYS = ("reram_crossbar", "sram_array")
_BUFFERS = ("edram_buffer", "sram_buffer")
#: ``crossbar.cell.technology`` -> the array classes that model such cells.
CELL_CLASSES: dict[str, tuple[str, ...]] = {"reram": ("reram_crossbar",),
                                            "sram": ("sram_array", "capacitor_array")}
#: Classes acting once per digital clock cycle at most (their power follows ``clock.digital``).
_DIGITAL = ("shift_add", "sigmoid", "maxpool", "register", "multiplier", "lif_neuron")


@dataclass(frozen=True)
class Binding:
    """Which parameters of a class follow the config.

    ``model``: ``at:`` keys passed to the component model; ``count``: keys whose product the
    number of instances per IMA is proportional to (IMA-level rows only); ``own``: the
    config's values of both.
    """

    model: tuple[str, ...]
    count: tuple[str, ...]
    own: Callable[[Arch], dict[str, Any]]


def adc_rate_hz(arch: Arch) -> float:
    """Conversions per second of one ADC: as stated, or what keeps the crossbar cycle.

    Without ``crossbar.adc.rate`` the ADC must convert its share of the columns (the unit
    column included) in one crossbar cycle.
    """
    xb = arch.crossbar
    if xb.adc.rate_hz is not None:
        return xb.adc.rate_hz
    columns = xb.columns + int(xb.unit_column)
    return math.ceil(columns / xb.adc.per_crossbar) / (arch.clock.crossbar_cycle_ns * 1e-9)


def _adc_own(a: Arch) -> dict[str, Any]:
    return {"bits": a.crossbar.adc.bits, "rate": adc_rate_hz(a),
            "per_crossbar": a.crossbar.adc.per_crossbar,
            "crossbars_per_ima": a.organization.crossbars_per_ima}


def _array_own(a: Arch) -> dict[str, Any]:
    return {"rows": a.crossbar.rows, "columns": a.crossbar.columns, "bits": a.crossbar.cell.bits,
            "crossbars_per_ima": a.organization.crossbars_per_ima}


def _buffer_own(a: Arch) -> dict[str, Any]:
    tb = a.tile_buffer
    return {} if tb is None else {"size": tb.size_bytes, "width": tb.bus_bits}


def _noc_own(a: Arch) -> dict[str, Any]:
    return {} if a.noc is None else {"width": a.noc.link_bits}


#: class -> which of its parameters follow the config. Classes not listed (registers, the
#: tile bus, sigmoid and max-pool units, the S+H energy, off-chip links) depend on the node only.
BINDINGS: dict[str, Binding] = {
    **{c: Binding(("bits", "rate"), ("per_crossbar", "crossbars_per_ima"), _adc_own)
       for c in _ADC},
    "dac": Binding(("bits",), ("rows", "crossbars_per_ima"),
                   lambda a: {"bits": a.crossbar.dac.bits, "rows": a.crossbar.rows,
                              "crossbars_per_ima": a.organization.crossbars_per_ima}),
    "sample_hold": Binding((), ("columns", "crossbars_per_ima"),
                           lambda a: {"columns": a.crossbar.columns,
                                      "crossbars_per_ima": a.organization.crossbars_per_ima}),
    "reram_crossbar": Binding(("rows", "columns", "bits"), ("crossbars_per_ima",), _array_own),
    "sram_array": Binding(("rows", "columns"), ("crossbars_per_ima",), _array_own),
    # One MAC capacitor per row and column of an array.
    "capacitor_array": Binding((), ("rows", "columns", "crossbars_per_ima"), _array_own),
    "shift_add": Binding(("width",), (), lambda a: {"width": a.outputs.bits}),
    "multiplier": Binding(("width",), (), lambda a: {"width": a.outputs.bits}),
    "lif_neuron": Binding(("width",), (), lambda a: {"width": a.outputs.bits}),
    **{c: Binding(("size", "width"), (), _buffer_own) for c in _BUFFERS},
    "router": Binding(("width",), (), _noc_own),
    "noc_link": Binding(("width",), (), _noc_own),
}
_NODE_ONLY = Binding((), (), lambda a: {})

#: How often one instance of a row acts (see :func:`rate_law`) -> the ``at:`` keys it needs.
LAW_KEYS: dict[str | None, tuple[str, ...]] = {
    "cells": ("rows", "columns", "crossbar_cycle", "digital"),
    "step": ("columns", "crossbar_cycle", "digital"),
    "digital": ("digital",),
}


def step_rate_hz(arch: Arch, columns: int | None = None) -> float:
    """Input steps per second of one crossbar converting every column (``columns`` data
    columns, the crossbar's by default): the step time the schedule and the peak use,
    :func:`sim.engine.timing.step_cycles`."""
    xb = arch.crossbar
    cols = (xb.columns if columns is None else columns) + int(xb.unit_column)
    # Every row group (fragment) converts: FORMS's fragments each take their own conversions.
    return arch.clock.digital_hz / step_cycles(arch, cols, xb.rows // xb.group_rows)


def rate_law(class_name: str, performs: set[str]) -> str | None:
    """How the actions per second of one instance of a row follow the config.

    ``"cells"``: arrays read every cell once per input step; ``"step"``: DACs, S+Hs and the
    input register act once per step; ``"digital"``: digital units (shift-and-add, sigmoid,
    max-pool, registers) act at most once per digital cycle; ``None``: ADCs (their rate is
    a model parameter) and rows working at their own stated rate (buffers, bus, NoC, off-chip).
    ``performs`` are the events the row is charged.
    """
    if class_name in _ARRAYS:
        return "cells"
    if class_name == "capacitor_array":  # one MAC circuit, charged once per step
        return "step"
    if class_name in ("dac", "sample_hold") or (
            class_name == "register" and "input_register_write_bits" in performs):
        return "step"
    if class_name in _DIGITAL:
        return "digital"
    return None


def binding(class_name: str) -> Binding:
    """The :class:`Binding` of ``class_name`` (node only when not listed)."""
    return BINDINGS.get(class_name, _NODE_ONLY)


@dataclass(frozen=True)
class StatedRow:
    """One component-table row as written: figures stated at the point ``at``."""

    index: int
    name: str
    level: str
    class_name: str
    count: int
    power_mw: float | None
    area_um2: float | None
    shared_by: int
    leakage_mw: float
    spec: str
    at: Mapping[str, Any]
    #: Events charged to this row explicitly; ``None``: those of its class (see ``run``).
    events: tuple[str, ...] | None

    @property
    def path(self) -> str:
        """YAML path of the row."""
        return f"components[{self.index}]"


def read_at(raw: Any, path: str, problems: Problems) -> dict[str, Any]:
    """Parse an ``at:`` mapping (parameters a stated figure held at)."""
    s = Section(raw, path, problems)
    out = {}
    for key, parse in AT_PARSERS.items():
        if s.has(key):
            lo = 1 if parse is int else None
            value = s.get(key, parse, None, lo=lo)
            if value is not None:
                out[key] = value
    s.finish()
    return out


def read_rows(raw: Any, problems: Problems, level_choices: tuple[str, ...],
              class_choices: tuple[str, ...]) -> list[StatedRow]:
    """Read the ``components:`` list; problems go to ``problems`` with their paths."""
    if not isinstance(raw, list):
        problems.add("components", "must be a list of component rows")
        return []
    rows = []
    for idx, item in enumerate(raw):
        path = f"components[{idx}]"
        s = Section(item, path, problems)
        events = s.get("events", list, None)  # absent: charged by class; []: charged nothing
        for j, ev in enumerate(events or []):
            if not isinstance(ev, str) or ev not in EVENTS or EVENTS[ev] is None:
                valid = ", ".join(k for k, v in EVENTS.items() if v is not None)
                problems.add(join(join(path, "events"), j),
                             f"unknown event {ev!r}; events: {valid}")
        rows.append(StatedRow(
            index=idx, name=s.get("name", str), level=s.get("level", str, choices=level_choices),
            class_name=s.get("class", str, choices=class_choices),
            count=s.get("count", int, 1, lo=1), power_mw=s.get("power", units.power_mw),
            area_um2=s.get("area", units.area_um2),
            shared_by=s.get("shared_by", int, 1, lo=1),
            leakage_mw=s.get("leakage", units.power_mw, 0.0), spec=s.get("spec", str, ""),
            at=read_at(s.raw("at", None), join(path, "at"), problems),
            events=None if events is None else tuple(e for e in events if isinstance(e, str))))
        if rows[-1].name is not None and not rows[-1].name.strip():
            problems.add(join(path, "name"), "must not be empty (energy and area are reported "
                                             "by component name)")
        s.finish()
    return rows


def _fmt(key: str, value: Any) -> str:
    if key == "rate":
        return f"rate={value / 1e9:.4g} GS/s"
    if key == "technology":
        return f"{value:g} nm"
    if key == "size":
        return f"size={value} B"
    return f"{key}={value}"


def _same(a: Any, b: Any) -> bool:
    """Equal, or equal to float rounding (a rate derived from the cycle vs. a typed one)."""
    if isinstance(a, float | int) and isinstance(b, float | int):
        return math.isclose(a, b, rel_tol=1e-12)
    return a == b


def _point(values: Mapping[str, Any], keys: tuple[str, ...]) -> str:
    return ", ".join(_fmt(k, values[k]) for k in keys if k in values)


class _Calibrator:
    """Scales one architecture's stated figures to its own point (see module docstring)."""

    def __init__(self, arch: Arch, stated_at: Mapping[str, Any],
                 energy: Mapping[str, tuple[float, Mapping[str, Any]]], problems: Problems):
        self.arch = arch
        self.stated_at = stated_at
        self.energy = energy
        self.problems = problems
        self.notes: list[str] = []
        self.tech = arch.technology_nm
        #: (stated node, energy ratio, area ratio) -> rows whose only change is the node.
        self.node_only: dict[tuple[float, str, str], list[str]] = {}
        #: The ADC row's stated point (its rate and sharing set the stated step time).
        self.adc_at: dict[str, Any] | None = None

    # ------------------------------------------------------------------ models
    def model(self, class_name: str, params: Mapping[str, Any], tech: float):
        """A bare component model (no stated figures) at ``params`` and node ``tech``."""
        b = binding(class_name)
        fields = {MODEL_FIELD[k]: params[k] for k in b.model if k in params}
        return REGISTRY[class_name](technology_nm=tech, **fields)

    def ratio(self, class_name: str, action: str, at: Mapping[str, Any], at_tech: float,
              own: Mapping[str, Any]) -> tuple[float, float]:
        """Model ratios own / at of (energy per action, area per instance)."""
        b = binding(class_name)
        same = at_tech == self.tech and all(at.get(k) == own.get(k) for k in b.model)
        if same:
            return 1.0, 1.0
        m_at = self.model(class_name, at, at_tech)
        m_own = self.model(class_name, own, self.tech)
        e = m_own.energy_pj(action) / m_at.energy_pj(action)
        a = m_own.area_um2 / m_at.area_um2
        return e, a

    # ------------------------------------------------------------------ rows
    def row_at(self, row: StatedRow) -> tuple[dict[str, Any], float | None]:
        """The row's stated point (``stated_at`` overlaid by ``at``) and its node."""
        at = {**self.stated_at, **row.at}
        return at, at.get("technology")

    def calibrate_row(self, row: StatedRow, own: dict[str, Any], law: str | None
                      ) -> tuple[Component, float, float, dict[str, Any]] | None:
        """The row at the config's point, its energy and area ratios, and its stated point.

        ``law``: how often one instance acts (:func:`rate_law`), whose ratio between the two
        points multiplies the row's power.
        """
        b = binding(row.class_name)
        at, at_tech = self.row_at(row)
        at_path = join(row.path, "at")
        law_keys = LAW_KEYS.get(law, ())
        own = {**own, **{k: v for k, v in self.clock_own().items() if k in law_keys}}
        own = self.family().own_params(row.class_name, self.arch, own)
        # Parameters this config does not define (no tile_buffer, no noc) keep the stated ones.
        own = {**{k: at[k] for k in b.model + b.count if k in at}, **own}
        needed = b.model + (b.count if row.level == "ima" else ()) + law_keys
        # A key whose value could not be read has its own problem already: one mistake, one
        # message.
        missing = [k for k in dict.fromkeys(needed) if k in own and k not in at
                   and not self.problems.bad(join(at_path, k))]
        if at_tech is None:
            self.problems.add("stated_at.technology",
                              f"is required: {row.path} ({row.name}) states figures, and the "
                              "node they held at must be recorded (or give at.technology)")
            return None
        if missing:
            self.problems.add(at_path, f"must record the {', '.join(missing)} the figures of "
                                       f"this {row.class_name} were stated at (the model scales "
                                       "them to this config's values; see docs/arch_yaml.md)")
            return None
        if any(k in own and k not in at for k in needed):
            return None  # an unreadable at: value, already reported
        action = REGISTRY[row.class_name].actions[0]
        try:
            e_ratio, a_ratio = self.ratio(row.class_name, action, at, at_tech, own)
            # Static power follows the node only (the model's node law), not the parameters
            # that change the energy of an action.
            node_ratio, _ = self.ratio(row.class_name, action, at, at_tech,
                                       {k: at[k] for k in b.model if k in at})
        except ValueError as exc:
            self.problems.add(row.path, f"the {row.class_name} model cannot scale the stated "
                                        f"figures to this config: {exc}")
            return None
        count_ratio = 1.0
        if row.level == "ima":
            for k in b.count:
                if k in own:
                    count_ratio *= own[k] / at[k]
        rate_ratio = 1.0
        if "rate" in b.model and "rate" in own:
            rate_ratio = own["rate"] / at["rate"]
        rate_ratio *= self.action_ratio(law, own, at)
        count = max(1, round(row.count * count_ratio))
        power = (row.power_mw or 0.0) * e_ratio * rate_ratio * count_ratio
        area = (row.area_um2 or 0.0) * a_ratio * count_ratio
        leakage = row.leakage_mw * node_ratio * count_ratio
        keys = tuple(dict.fromkeys(b.model + b.count + law_keys))
        changed = [k for k in keys if k in own and not _same(own[k], at.get(k))]
        if not changed and at_tech != self.tech:  # node only: one note for all such rows
            key = (at_tech, f"{e_ratio:.4g}", f"{a_ratio:.4g}")
            self.node_only.setdefault(key, []).append(row.name)
        elif changed:
            keys = tuple(changed) + ("technology",)
            own_pt = {**own, "technology": self.tech}
            at_pt = {**at, "technology": at_tech}
            self.notes.append(
                f"{row.name} ({row.class_name}) stated at {_point(at_pt, keys)}, this config "
                f"has {_point(own_pt, keys)}: energy per action x{e_ratio:.4g}, area per "
                f"instance x{a_ratio:.4g}, instances x{count_ratio:.4g}, actions per instance "
                f"per second x{rate_ratio:.4g}, power x{e_ratio * rate_ratio * count_ratio:.4g}"
                f" ({row.class_name} model)")
        comp = Component(
            name=row.name, level=row.level, component_class=row.class_name, count=count,
            power_mw=power, area_um2=area, shared_by=row.shared_by, leakage_mw=leakage,
            spec=row.spec, at=tuple(sorted((k, v) for k, v in row.at.items())),
            events=row.events or (), stated_count=row.count, stated_power_mw=row.power_mw or 0.0,
            stated_area_um2=row.area_um2 or 0.0, stated_leakage_mw=row.leakage_mw)
        return comp, e_ratio, a_ratio, at

    # ------------------------------------------------------------------ action rates
    def clock_own(self) -> dict[str, Any]:
        """The config's clock and crossbar size, as ``at:`` keys."""
        a = self.arch
        return {"crossbar_cycle": a.clock.crossbar_cycle_ns, "digital": a.clock.digital_hz,
                "rows": a.crossbar.rows, "columns": a.crossbar.columns}

    def stated_step_arch(self, at: Mapping[str, Any]) -> Arch:
        """This arch at a stated point's clock and ADC (the ADC row's stated rate and sharing),
        for the step time of :func:`step_rate_hz`."""
        a = self.arch
        adc = a.crossbar.adc
        adc_at = self.adc_at or {}
        adc = replace(adc, rate_hz=adc_at.get("rate", adc.rate_hz),
                      per_crossbar=adc_at.get("per_crossbar", adc.per_crossbar))
        clock = replace(a.clock, crossbar_cycle_ns=at["crossbar_cycle"], digital_hz=at["digital"])
        return replace(a, clock=clock, crossbar=replace(a.crossbar, adc=adc))

    def action_ratio(self, law: str | None, own: Mapping[str, Any], at: Mapping[str, Any]
                     ) -> float:
        """Actions per instance per second at the config's point over those at ``at``."""
        if law is None:
            return 1.0
        if law == "digital":
            return own["digital"] / at["digital"]
        ratio = step_rate_hz(self.arch) / step_rate_hz(self.stated_step_arch(at), at["columns"])
        if law == "cells":
            ratio *= own["rows"] * own["columns"] / (at["rows"] * at["columns"])
        return ratio

    # ------------------------------------------------------------------ events
    def per_access(self, row: StatedRow, at: Mapping[str, Any]) -> float:
        """Actions one stated access performs: bits for per-bit kinds, cells for arrays."""
        cls = REGISTRY[row.class_name]
        if issubclass(cls, PerBitComponent):
            return at.get("width", cls.DEFAULT_WIDTH_BITS)
        if row.class_name in _ARRAYS and "rows" in at and "columns" in at:
            return at["rows"] * at["columns"]
        return 1.0

    def assign(self, rows: list[StatedRow]) -> dict[str, StatedRow | None]:
        """The row charged with each energy event: the row listing it in ``events:``, else the
        first row of a performing class (IMA level first) that lists no events; ``None``: no
        row performs it."""
        explicit = {ev: r for r in rows for ev in r.events or ()}
        out: dict[str, StatedRow | None] = {}
        for event, kind in EVENTS.items():
            if kind is None:
                continue
            row = explicit.get(event)
            if row is None:
                candidates = [r for r in rows
                              if r.class_name in kind.classes and r.events is None]
                candidates.sort(key=lambda r: (kind.classes.index(r.class_name),
                                               _LEVEL_ORDER.get(r.level, 3), r.index))
                row = candidates[0] if candidates else None
            out[event] = row
        return out

    def check_cells(self, rows: list[StatedRow]) -> set[int]:
        """Rows whose array class does not model this config's cells (a problem each)."""
        tech = self.arch.crossbar.cell.technology
        fits = CELL_CLASSES.get(tech, ())
        arrays = {c for classes in CELL_CLASSES.values() for c in classes}
        bad = set()
        for r in rows:
            if r.class_name in arrays and r.class_name not in fits:
                self.problems.add(join(r.path, "class"),
                                  f"{r.class_name} models other cells than this config's "
                                  f"crossbar.cell.technology: {tech}; its figures would "
                                  f"price {tech} cells as a {r.class_name}: use class "
                                  f"{' or '.join(fits)} (with figures stated for it)")
                bad.add(r.index)
        return bad

    def run(self, rows: list[StatedRow]) -> tuple[tuple[Component, ...], EventEnergy]:
        """Calibrate every row, then price every event; problems go to ``self.problems``."""
        assigned = self.assign(rows)
        performs: dict[int, set[str]] = {}
        for event, row in assigned.items():
            if row is not None:
                performs.setdefault(row.index, set()).add(event)
        bad_cells = self.check_cells(rows)
        adc_row = assigned.get("adc_conversions")
        if adc_row is not None:
            self.adc_at = self.row_at(adc_row)[0]
        done = {}
        comps = []
        for row in rows:
            if row.class_name not in REGISTRY or row.power_mw is None or row.area_um2 is None:
                continue  # its problem is already reported
            if row.index in bad_cells:
                continue
            own = self.own(row.class_name)
            law = rate_law(row.class_name, performs.get(row.index, set()))
            got = self.calibrate_row(row, own, law)
            if got is not None:
                comps.append(got[0])
                done[row.index] = (row, *got[1:])
        for (at_tech, e, a), names in self.node_only.items():
            self.notes.append(f"technology {at_tech:g} -> {self.tech:g} nm: energy per action "
                              f"x{e}, area x{a} (component models' node scaling) for "
                              f"{', '.join(names)}")
        per_event, charged = [], []
        for event, row in assigned.items():
            kind = EVENTS[event]
            if row is not None and row.index not in done:
                continue  # the row's own problem is already reported
            if row is not None and row.class_name not in kind.classes:
                self.problems.add(join(row.path, "events"),
                                  f"{event} is performed by a {' or '.join(kind.classes)}, not "
                                  f"a {row.class_name}")
                continue
            if row is None and event in self.family().never_counts:
                continue  # always zero on this macro family: nothing to price
            if row is None and rows and not self.required(event):
                # Outside the macro family's own events (a unit around the macro): priced by
                # its model at this config's point when the model can, else left unpriced (a
                # run that counts it fails loudly in sim.stats).
                quiet = Problems(self.problems.source)
                saved, self.problems = self.problems, quiet
                value = self.event_energy(event, kind, None, None)
                self.problems = saved
                if value is not None:
                    per_event.append((event, value[0]))
                    charged.append((event, value[1]))
                else:
                    self.notes.append(f"{event}: no components row and no model figure at "
                                      "this config's point; not priced (this macro family "
                                      "does not count it)")
                continue
            if row is None and rows:
                cls = self.model_class(kind)
                self.problems.add("components",
                                  f"no components row performs {event}: its area and power "
                                  f"would be unknown; add a row of class {cls} (or list "
                                  f"{event} in the events: of a "
                                  f"{' or '.join(kind.classes)} row)")
                continue
            value = self.event_energy(event, kind, row, done.get(row.index) if row else None)
            if value is not None:
                per_event.append((event, value[0]))
                charged.append((event, value[1]))
        if not rows:
            self.notes.append("no components table: per-event energies from energy: and the "
                              "component models; chip area and power are not known")
        return tuple(comps), EventEnergy(per_event_pj=tuple(per_event), component=tuple(charged))

    def family(self):
        """The arch's macro family (:mod:`sim.macros.family`)."""
        from sim.macros.family import family_of

        return family_of(self.arch)

    def own(self, class_name: str) -> dict[str, Any]:
        """The config's own parameters of ``class_name`` (:data:`BINDINGS`), as the macro
        family sizes them (:meth:`sim.macros.family.MacroFamily.own_params`)."""
        own = binding(class_name).own(self.arch)
        return self.family().own_params(class_name, self.arch, own)

    def required(self, event: str) -> bool:
        """Whether ``event`` needs a component row: every event, or the macro family's own
        (:attr:`sim.macros.family.MacroFamily.events`)."""
        if event in OPTIONAL_EVENTS:
            return False
        own = self.family().events
        return own is None or event in own

    def event_energy(self, event: str, kind, row: StatedRow | None, cal
                     ) -> tuple[float, str] | None:
        """Energy of one ``event`` at this config's point and the component charged."""
        path = join("energy", kind.key)
        stated, stated_point = self.energy.get(kind.key, (None, {}))
        if row is not None:
            _, e_ratio, _, at = cal
            if stated is not None and not stated_point:
                return stated * e_ratio, row.name
            if stated is not None:  # the figure records its own point
                point = {**at, **stated_point}
                own = {**{k: v for k, v in point.items() if k in binding(row.class_name).model},
                       **self.own(row.class_name)}
                try:
                    ratio, _ = self.ratio(row.class_name, kind.action, point,
                                          point["technology"], own)
                except ValueError as exc:
                    self.problems.add(path, f"the {row.class_name} model cannot scale it: {exc}")
                    return None
                return stated * ratio, row.name
            rate = at.get("rate")
            if row.power_mw is not None and rate:
                per = row.power_mw * 1e9 / (row.count * rate * self.per_access(row, at))
                return per * e_ratio, row.name
            return self.model_energy(event, kind, path, row.class_name, row.name)
        # No row performs it.
        cls = self.model_class(kind)
        if stated is not None:
            b = binding(cls)
            own = self.own(cls)
            point = {**self.stated_at, **stated_point}
            tech = point.get("technology")
            missing = [k for k in b.model if k in own and k not in point]
            if tech is None or missing:
                need = ["technology"] * (tech is None) + missing
                self.problems.add(path, f"no components row performs {event}, so nothing "
                                        f"records the {', '.join(need)} this figure was "
                                        f"stated at; write it as {{energy: ..., at: {{"
                                        f"{', '.join(f'{k}: ...' for k in need)}}}}} (or add a "
                                        f"{cls} row with at:)")
                return None
            try:
                e_ratio, _ = self.ratio(cls, kind.action, point, tech, own)
            except ValueError as exc:
                self.problems.add(path, f"the {cls} model cannot scale it: {exc}")
                return None
            return stated * e_ratio, f"{cls} (stated)"
        return self.model_energy(event, kind, path, cls, f"{cls} (model)")

    def model_class(self, kind) -> str:
        """The class whose model prices an event no row performs."""
        if kind.classes[0] in _ARRAYS:
            return CELL_CLASSES[self.arch.crossbar.cell.technology][0]
        return kind.classes[0]

    def model_energy(self, event: str, kind, path: str, cls: str, name: str
                     ) -> tuple[float, str] | None:
        """The model's energy of ``event`` at this config's point (noted), or a problem."""
        _load_families()
        own = self.own(cls)
        try:
            value = self.model(cls, own, self.tech).energy_pj(kind.action)
        except ValueError as exc:
            self.problems.add(path, f"no figure is stated for {event} and the {cls} model "
                                    f"cannot derive one: {exc}")
            return None
        self.notes.append(f"{event}: no stated figure, {cls} model at this config's point: "
                          f"{value:.4g} pJ each")
        return value, name


def calibrate(arch: Arch, rows: list[StatedRow], stated_at: Mapping[str, Any],
              energy: Mapping[str, tuple[float, Mapping[str, Any]]], problems: Problems
              ) -> Arch:
    """``arch`` with its component table and per-event energies at its own parameters.

    ``rows`` are the table as stated, ``stated_at`` the file-wide stated point, ``energy``
    the stated per-event figures (``energy:`` key -> (pJ, their own ``at:``)). Problems go to
    ``problems``.
    """
    _load_families()
    if (rows or energy) and "technology" not in stated_at and not all(
            "technology" in r.at for r in rows):
        problems.add("stated_at.technology",
                     "is required: the node at which the stated figures (energy:, "
                     "components:) hold, e.g. stated_at: {technology: 32nm}")
        return arch
    cal = _Calibrator(arch, stated_at, energy, problems)
    comps, event_energy = cal.run(rows)
    return replace(arch, components=comps, energy=event_energy,
                   stated_technology_nm=stated_at.get("technology"), notes=tuple(cal.notes))
