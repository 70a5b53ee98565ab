"""Event counts -> energy rollups, with invariants checked rather than assumed."""

from __future__ import annotations

from collections.abc import Mapping

from sim.config.schema import EVENT_ENERGY_KEY, EventEnergy
from sim.errors import InvariantError


def energy_by_event_pj(counts: Mapping[str, int], energy: EventEnergy) -> dict[str, float]:
    """Energy in pJ charged to each counted event: ``count x energy per event``.

    Events that cost nothing (skipped conversions) and counters that are not events (MACs)
    are left out. Raises :class:`InvariantError` on a negative count or energy.
    """
    result = {}
    for event, key in EVENT_ENERGY_KEY.items():
        if key is None:
            continue
        count = counts.get(event, 0)
        per = getattr(energy, key)
        if count < 0 or per < 0:
            raise InvariantError(f"negative {'count' if count < 0 else 'energy'} for {event}")
        result[event] = float(count) * per
    return result


def total_pj(parts: Mapping[str, float]) -> float:
    """Sum of an energy breakdown, checking every part is finite and non-negative."""
    total = 0.0
    for name, value in parts.items():
        if not value >= 0.0:  # also catches NaN
            raise InvariantError(f"energy part {name} is {value}")
        total += value
    return total
