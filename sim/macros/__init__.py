"""Functional models of one IMC macro or crossbar type, built from the kernels."""

from sim.macros.crossbar import CrossbarLayer, Events

__all__ = ["CrossbarLayer", "Events"]
