"""The base class every component model derives from, and the stated-figure logic they share.

A component answers, for ONE instance: the energy of one action (``energy_pj``), its area
(``area_um2``), its leakage power (``leakage_mw``) and the time one action keeps it busy
(``latency_ns``). Each figure comes either from what a published table states (a group's
power, count, action rate and area, or per-instance figures) or, when nothing is stated, from
the kind's documented model (its equation, source and validity range are in its docstring and
in ``docs/components.md``).

A kind implements three hooks: ``_model_energy_pj(action)``, ``_model_area_um2()`` and the
class method ``_read_params(section, ...)`` that reads its own YAML keys; it may override
``_model_latency_ns(action)``. Everything else (the stated-figure arithmetic, unknown actions)
is here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar

from sim.config import units
from sim.config.validate import Section, join, type_name

#: YAML keys every component reads, whatever its kind (see ``docs/components.md``).
STATED_KEYS = ("count", "power", "rate", "area", "energy_per_action", "area_per_instance",
               "leakage", "technology")


@dataclass(frozen=True, kw_only=True)
class Component:
    """One instance of a hardware component: energy per action, area, leakage, latency.

    Stated figures take precedence over the model, figure by figure:

    - energy of one action = ``energy_per_action`` (per instance, one value or one per action),
      else ``power / (count x rate x actions_per_access)`` (a table's group power turned into
      energy per action at the stated rate; leakage is then inside that energy), else the model;
    - area of one instance = ``area_per_instance``, else ``area / count``, else the model;
    - leakage of one instance = ``leakage`` if stated, else 0 (models give dynamic energy only);
    - latency of one action = ``1 / rate`` if stated, else the model's (``0.0`` where the kind
      has no timing model: the macro's or engine's clock sets it).

    Attributes:
        technology_nm: process node the model scales to.
        count: instances in the stated group (divides group power and area).
        rate_hz: actions (accesses, for per-bit kinds) per second of one instance.
        power_mw: stated group power (all ``count`` instances), or ``None``.
        area_total_um2: stated group area, or ``None``.
        energy_per_action_pj: stated ``(action, pJ)`` pairs for one instance.
        area_per_instance_um2: stated area of one instance, or ``None``.
        stated_leakage_mw: stated leakage of one instance, or ``None``.
    """

    #: The YAML ``class:`` name (set by :func:`sim.components.registry.register`).
    class_name: ClassVar[str] = ""
    #: Names of the actions this kind answers.
    actions: ClassVar[tuple[str, ...]] = ()
    #: A minimal valid parameter set for the model path (contract tests build from it).
    EXAMPLE: ClassVar[Mapping[str, Any]] = MappingProxyType({})
    #: Action rate of one instance used for latency when ``rate`` is not given.
    DEFAULT_RATE_HZ: ClassVar[float | None] = None

    technology_nm: float
    count: int = 1
    rate_hz: float | None = None
    power_mw: float | None = None
    area_total_um2: float | None = None
    energy_per_action_pj: tuple[tuple[str, float], ...] = ()
    area_per_instance_um2: float | None = None
    stated_leakage_mw: float | None = None

    # ------------------------------------------------------------------ public API
    def energy_pj(self, action: str) -> float:
        """Energy of one ``action`` of one instance, in pJ."""
        self._check_action(action)
        stated = dict(self.energy_per_action_pj)
        if action in stated:
            return stated[action]
        if self.power_mw is not None and self.rate_hz:
            # mW / (actions/s) = 1e-3 J/s / (1/s) -> x 1e12 pJ/J = 1e9
            return self.power_mw * 1e9 / (self.count * self.rate_hz * self.actions_per_access)
        return self._model_energy_pj(action)

    def energy_basis(self, action: str) -> str:
        """Where ``energy_pj(action)`` comes from: ``stated``, ``power`` or ``model``."""
        self._check_action(action)
        if action in dict(self.energy_per_action_pj):
            return "stated"
        if self.power_mw is not None and self.rate_hz:
            return "power"
        return "model"

    @property
    def area_um2(self) -> float:
        """Area of one instance, in um^2."""
        if self.area_per_instance_um2 is not None:
            return self.area_per_instance_um2
        if self.area_total_um2 is not None:
            return self.area_total_um2 / self.count
        return self._model_area_um2()

    @property
    def area_basis(self) -> str:
        """Where ``area_um2`` comes from: ``stated`` or ``model``."""
        stated = self.area_per_instance_um2 is not None or self.area_total_um2 is not None
        return "stated" if stated else "model"

    @property
    def leakage_mw(self) -> float:
        """Leakage (static) power of one instance, in mW; 0 unless stated."""
        return self.stated_leakage_mw if self.stated_leakage_mw is not None else 0.0

    def latency_ns(self, action: str) -> float:
        """Time one ``action`` keeps one instance busy, in ns (per access for per-bit kinds).

        ``0.0`` means the kind has no timing model and the caller's clock sets the time.
        """
        self._check_action(action)
        if self.rate_hz:
            return 1e9 / self.rate_hz
        return self._model_latency_ns(action)

    @property
    def actions_per_access(self) -> int:
        """Actions one access performs (1; the access width for per-bit kinds)."""
        return 1

    # ------------------------------------------------------------------ hooks
    def _model_energy_pj(self, action: str) -> float:
        """The model's energy of one action of one instance, in pJ."""
        raise NotImplementedError

    def _model_area_um2(self) -> float:
        """The model's area of one instance, in um^2."""
        raise NotImplementedError

    def _model_latency_ns(self, action: str) -> float:
        """The model's latency of one action, in ns (``DEFAULT_RATE_HZ`` or 0)."""
        return 1e9 / self.DEFAULT_RATE_HZ if self.DEFAULT_RATE_HZ else 0.0

    @classmethod
    def _read_params(cls, s: Section, *, need_energy: bool, need_area: bool) -> dict[str, Any]:
        """Read this kind's own YAML keys from ``s``; return dataclass field values.

        ``need_energy`` / ``need_area`` say whether the model will be asked for energy / area
        (they are not all stated), so inputs only the model uses are required only then.
        """
        return {}

    # ------------------------------------------------------------------ helpers
    def _check_action(self, action: str) -> None:
        if action not in self.actions:
            raise ValueError(f"{self.class_name or type(self).__name__} has no action "
                             f"{action!r}; valid actions: {', '.join(self.actions)}")

    def _need(self, **values: Any) -> None:
        """Raise a clear error if a model input is missing (built without the registry)."""
        missing = [k for k, v in values.items() if v is None]
        if missing:
            raise ValueError(f"the {self.class_name} model needs {', '.join(missing)}; give "
                             "them, or state the figures (energy_per_action / area_per_instance)")

    @staticmethod
    def _require(s: Section, key: str, value: Any, needed: bool, what: str) -> None:
        """Record ``key`` as required when the model that uses it will run."""
        path = join(s.path, key)
        if not needed or value is not None or key in s.data:
            return
        if any(p == path for p, _ in s.problems.items):
            return  # already reported (e.g. ``rate`` required with ``power``)
        s.problems.add(path, f"is required by the {what} model (or state the figures it gives)")

    @classmethod
    def read_fields(cls, s: Section, technology_nm: float) -> dict[str, Any] | None:
        """Read the stated-figure keys and this kind's keys; ``None`` if a problem was found.

        Problems go to ``s.problems`` with their YAML paths; the caller calls ``s.finish()``.
        """
        before = len(s.problems.items)
        tech = s.get("technology", units.length_nm, float(technology_nm))
        if tech is not None and tech <= 0:
            s.problems.add(join(s.path, "technology"), "must be positive")
        count = s.get("count", int, 1, lo=1)
        rate = s.get("rate", units.frequency_hz, None)
        if rate is not None and rate <= 0:
            s.problems.add(join(s.path, "rate"), f"must be positive, got {rate:g}")
            rate = None
        power = s.get("power", units.power_mw, None)
        area = s.get("area", units.area_um2, None)
        area_one = s.get("area_per_instance", units.area_um2, None)
        leakage = s.get("leakage", units.power_mw, None)
        energy = cls._read_energy(s)

        if power is not None and energy:
            s.problems.add(join(s.path, "power"),
                           "give either power (with count and rate) or energy_per_action, "
                           "not both")
        if power is not None and rate is None and "rate" not in s.data:
            s.problems.add(join(s.path, "rate"),
                           "is required with power: energy per action = power / (count x rate)")
        if area is not None and area_one is not None:
            s.problems.add(join(s.path, "area"),
                           "give either area (group total) or area_per_instance, not both")

        energy_stated = power is not None or set(dict(energy)) >= set(cls.actions)
        area_stated = area is not None or area_one is not None
        own = cls._read_params(s, need_energy=not energy_stated, need_area=not area_stated)
        if len(s.problems.items) > before:
            return None
        return dict(technology_nm=tech, count=count, rate_hz=rate, power_mw=power,
                    area_total_um2=area, energy_per_action_pj=energy,
                    area_per_instance_um2=area_one, stated_leakage_mw=leakage, **own)

    @classmethod
    def _read_energy(cls, s: Section) -> tuple[tuple[str, float], ...]:
        """``energy_per_action``: one energy for every action, or a mapping action -> energy."""
        path = join(s.path, "energy_per_action")
        raw = s.raw("energy_per_action", None)
        if raw is None:
            return ()
        if isinstance(raw, Mapping):
            pairs = []
            for key, value in raw.items():
                if key not in cls.actions:
                    s.problems.add(join(path, str(key)),
                                   f"unknown action; valid actions: {', '.join(cls.actions)}")
                    continue
                try:
                    pairs.append((key, units.energy_pj(value)))
                except ValueError as exc:
                    s.problems.add(join(path, str(key)), str(exc))
            return tuple(pairs)
        try:
            energy = units.energy_pj(raw)
        except ValueError as exc:
            s.problems.add(path, f"{exc} (or a mapping action: energy, got {type_name(raw)})")
            return ()
        return tuple((a, energy) for a in cls.actions)


@dataclass(frozen=True, kw_only=True)
class PerBitComponent(Component):
    """A component whose actions each move one bit (buffers, registers, links, routers).

    An access moves ``width_bits`` bits, so a stated group power becomes energy per bit as
    ``power / (count x rate x width)`` with ``rate`` in accesses per second.
    """

    #: Access width when ``width`` is not given.
    DEFAULT_WIDTH_BITS: ClassVar[int] = 1

    width_bits: int | None = None

    def __post_init__(self) -> None:
        if self.width_bits is None:  # frozen: set the kind's default once, at construction
            object.__setattr__(self, "width_bits", self.DEFAULT_WIDTH_BITS)

    @property
    def actions_per_access(self) -> int:
        """Bits moved by one access."""
        return self.width_bits

    @classmethod
    def _read_width(cls, s: Section) -> int:
        """The ``width`` key (bits per access), defaulting to the kind's."""
        return s.get("width", int, cls.DEFAULT_WIDTH_BITS, lo=1, hi=1 << 16)


@dataclass(frozen=True)
class Anchor:
    """A published figure at a reference design point that a model scales from.

    Attributes:
        energy_pj: energy of one action at the reference point.
        area_um2: area of one instance at the reference point.
        technology_nm: node of the reference point.
        source: citation, with the arithmetic that gives the figures.
    """

    energy_pj: float
    area_um2: float
    technology_nm: float
    source: str

    def __post_init__(self) -> None:
        for name in ("energy_pj", "area_um2", "technology_nm"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"anchor {name} must be finite and >= 0, got {value!r}")
