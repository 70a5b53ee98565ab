"""The component registry: YAML ``class:`` name -> component model class.

``@register("sar_adc")`` puts a :class:`~sim.components.base.Component` subclass in
:data:`REGISTRY`; :func:`build` validates one YAML mapping of parameters against it, collecting
every problem with its YAML path, and returns the frozen component. An unknown class name is a
problem at ``<path>.class`` that lists every valid name (never a silent fallback).
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from sim.components.base import Component
from sim.config.validate import Problems, Section, join

#: YAML ``class:`` name -> component class.
REGISTRY: dict[str, type[Component]] = {}

#: Keys of a component-table row that belong to the table, not to the model (the row may be
#: passed to :func:`build` whole: they are accepted and ignored here).
ROW_KEYS = ("name", "level", "class", "spec", "shared_by", "at", "events")

#: Modules whose import registers the component families.
_FAMILIES = ("memory", "converters", "digital", "interconnect")

_C = TypeVar("_C", bound=type[Component])


def register(class_name: str) -> Callable[[_C], _C]:
    """Class decorator registering a component under its YAML ``class:`` name."""

    def decorate(cls: _C) -> _C:
        if class_name in REGISTRY and REGISTRY[class_name] is not cls:
            raise ValueError(f"component class {class_name!r} registered twice "
                             f"({REGISTRY[class_name].__name__} and {cls.__name__})")
        if not cls.actions:
            raise ValueError(f"{cls.__name__} declares no actions")
        cls.class_name = class_name
        REGISTRY[class_name] = cls
        return cls

    return decorate


def _load_families() -> None:
    """Import the family modules so that every component is registered."""
    for name in _FAMILIES:
        importlib.import_module(f"sim.components.{name}")


def component_classes() -> list[str]:
    """Every registered YAML ``class:`` name, sorted."""
    _load_families()
    return sorted(REGISTRY)


def read(class_name: Any, params: Mapping[str, Any] | None, *, path: str,
         technology_nm: float, problems: Problems) -> Component | None:
    """Validate ``params`` for ``class_name`` into ``problems``; the component, or ``None``.

    For loaders that collect the problems of a whole file before raising once.
    """
    _load_families()
    cls = REGISTRY.get(class_name) if isinstance(class_name, str) else None
    if cls is None:
        valid = sorted(REGISTRY)
        hint = ""
        if isinstance(class_name, str):
            close = difflib.get_close_matches(class_name, valid, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
        problems.add(join(path, "class"), f"unknown component class {class_name!r}{hint}; "
                                          f"valid classes: {', '.join(valid)}")
        return None
    before = len(problems.items)
    s = Section(params, path, problems)
    if not s.ok:
        return None
    for key in ROW_KEYS:
        s.has(key)
    values = cls.read_fields(s, technology_nm)
    s.finish()
    if values is None or len(problems.items) > before:
        return None
    return cls(**values)


def build(class_name: str, params: Mapping[str, Any] | None, *, path: str,
          technology_nm: float, source: str = "<components>") -> Component:
    """Validate ``params`` and build one component; raise one ``ConfigError`` on problems.

    Args:
        class_name: the YAML ``class:`` name.
        params: the YAML mapping of the component (a whole table row is accepted).
        path: YAML path of the mapping, e.g. ``components[3]``; problems carry it.
        technology_nm: the architecture's node (a ``technology`` key overrides it).
        source: file name for the error message.
    """
    problems = Problems(source)
    component = read(class_name, params, path=path, technology_nm=technology_nm,
                     problems=problems)
    problems.raise_if_any()
    assert component is not None
    return component
