"""Macro families: the arch YAML names its macro by a registered class, as components are.

``crossbar: {class: reram_crossbar, ...}`` (the default when ``class`` is absent, so ISAAC's
config is unchanged) or ``crossbar: {class: cap_ram, ...}``. A family owns:

- the schema of its YAML sections (``crossbar:`` and ``organization:``), read with the same
  all-errors-at-once :class:`~sim.config.validate.Section` readers, and its cross-field rules;
- the engine's *view* of the macro: a :class:`~sim.config.schema.Crossbar` (rows summed per
  conversion, columns, cell, DAC, ADC) and an :class:`~sim.config.schema.Organization` whose
  ``crossbars`` are the units placement fills (ReRAM crossbars; CAP-RAM weight groups), so one
  geometry path (:func:`sim.engine.placement.layer_geometry`) and one calibrated energy path
  (:mod:`sim.components.calibrate`, :mod:`sim.engine.rollup`) serve every family;
- its functional layer (weight encodings, non-idealities, events): an object with
  :class:`~sim.macros.CrossbarLayer`'s public API (constructor ``(arch, weights, seed=,
  name=)``, ``matmul``, ``calibrate``, ``crossbars``, :class:`~sim.macros.Events`);
- its timing per step: how many of a layer's arrays compute at once, whether layers on
  different arrays may overlap in time (pipelining), whether copies help;
- the events it produces (each needs a component row that performs it).

Adding a family: a folder ``sim/macros/<name>/`` whose ``__init__`` defines a
:class:`MacroFamily` subclass decorated with :func:`register_family`, plus its module name in
:data:`FAMILY_MODULES` (see ``docs/macros.md``).
"""

from __future__ import annotations

import importlib
from typing import Any, ClassVar

from sim.config.schema import Arch, Crossbar, Organization, Variation
from sim.config.validate import Problems, Section

#: Packages under ``sim/macros/`` that register a family when imported.
FAMILY_MODULES = ("reram_crossbar", "cap_ram", "forms")
#: The family of a ``crossbar:`` section without ``class:``.
DEFAULT_FAMILY = "reram_crossbar"

FAMILIES: dict[str, MacroFamily] = {}


class MacroFamily:
    """One macro type (see the module docstring); subclasses override what differs."""

    #: The YAML ``crossbar.class`` name (set by :func:`register_family`).
    class_name: ClassVar[str] = ""
    #: Events the macro's layers count that need a component row performing them; ``None``:
    #: every event of :data:`sim.config.schema.EVENTS`. Events outside the set that no row
    #: performs (the digital units around the macro) are priced by their component model.
    events: ClassVar[tuple[str, ...] | None] = None
    #: Events the family's layers and placement never count (always zero): not priced.
    never_counts: ClassVar[tuple[str, ...]] = ("sign_indicator_reads",)
    #: Whether layers placed on different arrays compute at the same time (pipelining).
    pipelines: ClassVar[bool] = True
    #: Whether extra copies of a layer's weights speed it up (ISAAC-style duplication).
    duplicates: ClassVar[bool] = True
    #: What placement fills, for messages ("crossbars", "weight groups").
    array_unit: ClassVar[str] = "crossbars"

    # ------------------------------------------------------------------ schema
    def read_organization(self, s: Section) -> Organization:
        """The ``organization:`` section."""
        raise NotImplementedError

    def read_crossbar(self, s: Section) -> tuple[Crossbar, Any]:
        """The ``crossbar:`` section (``class`` already read): the engine's view and the
        family's own frozen parameters (``None`` when it has none)."""
        raise NotImplementedError

    def finish_organization(self, org: Organization, crossbar: Crossbar | None,
                            params: Any) -> Organization:
        """The organization once the crossbar section is known (default: as read)."""
        return org

    def read_variation(self, s: Section, macro: Any, adc_bits: int | None
                       ) -> tuple[Variation, Any]:
        """The ``variation:`` section as the shared kernels' :class:`Variation` (and the
        family parameters, updated with what it reads); default: the shared schema."""
        from sim.config.loader import _variation

        return _variation(s), macro

    def cross_checks(self, arch: Arch, problems: Problems) -> None:
        """Family rules between fields (tier two), run before the shared ones (which skip
        fields already reported); default none."""

    # ------------------------------------------------------------------ function
    def layer(self, arch: Arch, weights, *, seed=0, name: str = "layer", **kw):
        """The functional layer of ``weights`` (K, N) on this macro."""
        raise NotImplementedError

    def own_params(self, class_name: str, arch: Arch, own: dict[str, Any]) -> dict[str, Any]:
        """The config's parameters a component row of ``class_name`` is scaled to
        (``sim.components.calibrate.BINDINGS``: ``rows``, ``columns``, ``crossbars_per_ima``,
        ...), adjusted where this family's hardware differs from the engine view; default
        as the view says."""
        return own

    def periphery_counts(self, events) -> None:
        """Adjust the shape-given counts of :meth:`sim.macros.Events.set_fixed` (bit-true
        and analytical alike) to the family's periphery; default: ISAAC's, unchanged."""

    # ------------------------------------------------------------------ timing
    def serial_arrays(self, arch: Arch, arrays: int) -> int:
        """How many of a layer copy's ``arrays`` compute one after another per input step
        (1: all at once, as ReRAM crossbars do)."""
        return 1

    def active_arrays(self, arch: Arch) -> int:
        """Arrays of the chip that compute at the same time at peak."""
        return arch.organization.crossbars


def register_family(class_name: str):
    """Class decorator registering a :class:`MacroFamily` under its YAML class name."""

    def decorate(cls: type[MacroFamily]) -> type[MacroFamily]:
        if class_name in FAMILIES and type(FAMILIES[class_name]) is not cls:
            raise ValueError(f"macro family {class_name!r} registered twice")
        cls.class_name = class_name
        FAMILIES[class_name] = cls()
        return cls

    return decorate


_loaded = False


def _load() -> None:
    # Once per process: the import machinery's lookups cost more than the family lookups
    # they guard (thousands per analytical sweep point).
    global _loaded
    if _loaded:
        return
    for name in FAMILY_MODULES:
        importlib.import_module(f"sim.macros.{name}")
    _loaded = True


def family_names() -> tuple[str, ...]:
    """Every registered family's YAML class name."""
    _load()
    return tuple(FAMILIES)


def get_family(class_name: str) -> MacroFamily:
    """The family registered as ``class_name``."""
    _load()
    return FAMILIES[class_name]


def family_of(arch: Arch) -> MacroFamily:
    """The family of ``arch``'s macro."""
    return get_family(arch.macro_class)


def make_layer(arch: Arch, weights, *, seed=0, name: str = "layer", **kw):
    """The functional layer of ``weights`` on ``arch``'s macro (dispatch to its family)."""
    return family_of(arch).layer(arch, weights, seed=seed, name=name, **kw)
