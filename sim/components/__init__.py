"""Component library: per-action energy, area, leakage and latency of hardware components.

Components are registered under their YAML ``class:`` name; :func:`build` validates a YAML
mapping of parameters (collecting every problem with its YAML path) and returns a frozen
:class:`Component`. See ``docs/components.md`` for every class, its parameters and its model.
Importing the family modules registers their classes.
"""

from sim.components import converters, digital, interconnect, memory  # noqa: F401
from sim.components.base import Anchor, Component, PerBitComponent
from sim.components.registry import REGISTRY, ROW_KEYS, build, component_classes, read, register

__all__ = ["REGISTRY", "ROW_KEYS", "Anchor", "Component", "PerBitComponent", "build",
           "component_classes", "read", "register"]
