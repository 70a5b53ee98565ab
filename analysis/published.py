"""Published figures of the designs imcsim models, for the report's comparison table.

:data:`PUBLISHED` maps an arch YAML's ``name`` to the paper's numbers, one
:class:`PublishedValue` per row. Every number comes from ``../shared/reference/papers.md``
with its tag there: ``read`` (read in the paper), ``read-2nd`` (read in a source that
transcribes the paper) or ``derived`` (arithmetic on read numbers). Adding a design, or a
row, is data only: its ``metric`` names a ``result.json`` field or a key of
:data:`DERIVED_METRICS`. Compare only like with like: peak figures with peak figures, and a
workload's figures only for that workload (``workload``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

#: Tags from papers.md section 0, in the order of how directly the number was read.
BASES = ("read", "read-2nd", "derived")


@dataclass(frozen=True, kw_only=True)
class PublishedValue:
    """One published number and the imcsim quantity it is compared with."""

    metric: str
    """A ``result.json`` field or a key of :data:`DERIVED_METRICS`."""
    label: str
    unit: str
    value: float
    source: str
    """Citation: paper, table or section, and where papers.md transcribes it."""
    basis: str
    """How the number was obtained, one of :data:`BASES`."""
    note: str = ""
    workload: str | None = None
    """Compare only when the result ran this workload (``None``: any workload)."""

    def __post_init__(self) -> None:
        if self.basis not in BASES:
            raise ValueError(f"{self.label}: basis {self.basis!r} is not one of {BASES}")


def _peak_power_w(result: Mapping[str, Any]) -> float:
    """Full-activity chip power: the peak model divides peak ops by exactly this power."""
    return result["peak_gops"] / result["peak_gops_per_w"]


#: imcsim quantities that are not a single ``result.json`` field.
DERIVED_METRICS: dict[str, Callable[[Mapping[str, Any]], float]] = {
    "peak_power_w": _peak_power_w,
}

_ISAAC = "Shafiee et al., ISAAC, ISCA 2016, DOI 10.1109/ISCA.2016.12"

PUBLISHED: dict[str, tuple[PublishedValue, ...]] = {
    "isaac_ce_32nm": (
        PublishedValue(
            metric="peak_gops", label="peak throughput (16-bit ops)", unit="GOPS",
            value=41_300.0, basis="derived",
            source=f"{_ISAAC}; 16,128 arrays x 4,096 ops / 1.6 us (papers.md 3.4)",
            note="every crossbar busy, dense inputs; not workload-dependent"),
        PublishedValue(
            metric="peak_gops_per_mm2", label="computational efficiency CE", unit="GOPS/s/mm2",
            value=478.95, basis="read-2nd",
            source=f"{_ISAAC}, Table IV, ISAAC-CE (papers.md 3.4)",
            note="peak, HyperTransport included; not workload-dependent"),
        PublishedValue(
            metric="peak_gops_per_w", label="power efficiency PE", unit="GOPS/W",
            value=627.5, basis="read-2nd",
            source=f"{_ISAAC}, Table IV, ISAAC-CE (papers.md 3.4)",
            note="peak ops over full chip power; not workload-dependent"),
        PublishedValue(
            metric="area_mm2", label="chip area", unit="mm2", value=85.4, basis="read-2nd",
            source=f"{_ISAAC}, Table I, chip total (papers.md 3.2)",
            note="168 tiles + HyperTransport"),
        PublishedValue(
            metric="peak_power_w", label="chip power, full activity", unit="W", value=65.8,
            basis="read-2nd", source=f"{_ISAAC}, Table I, chip total (papers.md 3.2)",
            note="imcsim: peak_gops / peak_gops_per_w; the run's power_w is "
                 "workload-dependent and not compared"),
    ),
}


def metric_value(result: Mapping[str, Any], metric: str) -> float | None:
    """The imcsim value of ``metric`` in ``result``, or ``None`` where the result lacks it.

    ``Result`` writes 0.0 for a figure it could not compute (peak and area figures of an arch
    without a component table), so zero counts as missing too.
    """
    try:
        value = DERIVED_METRICS[metric](result) if metric in DERIVED_METRICS else result[metric]
    except (KeyError, TypeError, ZeroDivisionError):
        return None
    return float(value) if isinstance(value, int | float) and value else None


def rows_for(result: Mapping[str, Any]) -> tuple[PublishedValue, ...]:
    """The published rows that apply to ``result``'s arch and workload (may be empty)."""
    rows = PUBLISHED.get(result.get("arch", ""), ())
    return tuple(r for r in rows if r.workload in (None, result.get("workload")))
