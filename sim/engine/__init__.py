"""Cycle-level engine: placement of layers on crossbars, the simpy schedule, and rollups."""
