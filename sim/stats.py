"""Event counts -> energy rollups, with invariants checked rather than assumed."""

from __future__ import annotations

from collections.abc import Mapping

from sim.config.schema import EVENTS, EventEnergy
from sim.errors import InvariantError


def energy_by_event_pj(counts: Mapping[str, float], energy: EventEnergy) -> dict[str, float]:
    """Energy in pJ charged to each counted event: ``count x energy per event``.

    Every name in ``counts`` must be in :data:`sim.config.schema.EVENTS`: one that is not
    raises :class:`InvariantError` (a counted event is never dropped silently). Names that
    cost nothing there (skipped conversions, the MAC counters) are left out of the result.
    Raises :class:`InvariantError` on a negative count or energy too.
    """
    per = dict(energy.per_event_pj)
    result = {}
    for event, count in counts.items():
        if event not in EVENTS:
            raise InvariantError(f"event {event!r} has no entry in sim.config.schema.EVENTS; "
                                 "every counted event must say which component it charges")
        if EVENTS[event] is None or (count == 0 and event not in per):
            continue  # a zero count of an event the macro family does not price costs nothing
        if event not in per:
            raise InvariantError(f"no energy per event for {event!r} (the arch was not "
                                 "calibrated by sim.config.load_arch)")
        if count < 0 or per[event] < 0:
            raise InvariantError(f"negative {'count' if count < 0 else 'energy'} for {event}")
        result[event] = float(count) * per[event]
    return result


def total_pj(parts: Mapping[str, float]) -> float:
    """Sum of an energy breakdown, checking every part is finite and non-negative."""
    total = 0.0
    for name, value in parts.items():
        if not value >= 0.0:  # also catches NaN
            raise InvariantError(f"energy part {name} is {value}")
        total += value
    return total
