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

import math
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


def _adc_pj_per_conversion(result: Mapping[str, Any]) -> float:
    """Energy the run charged per ADC conversion (the calibrated per-event figure)."""
    return result["energy_by_event_pj"]["adc_conversions"] / result["events_total"][
        "adc_conversions"]


def _array_area_share(result: Mapping[str, Any]) -> float:
    """The memory array's share of the chip area (CAP-RAM's SRAM array: ``sram_array``)."""
    by = result.get("area_by_component_mm2") or {}
    total = float(result.get("area_mm2") or 0.0)
    return float(by.get("sram_array", 0.0)) / total if total else 0.0


def _crossbars_vs_isaac16(result: Mapping[str, Any]) -> float:
    """Crossbars (one copy) the run's layers would take dense on ISAAC-CE with 16-bit weights
    (``arch_configs/isaac_32nm.yaml``, through the one geometry path) over the crossbars
    they took on the run's arch: FORMS's "fewer crossbars" figure."""
    from analysis.paths import ARCH_DIR
    from sim.config import load_arch
    from sim.engine.placement import geometry

    isaac = load_arch(ARCH_DIR / "isaac_32nm.yaml")
    layers = [lr for lr in result["layers"] if lr.get("placement", "crossbar") == "crossbar"
              and lr.get("crossbars")]
    dense = sum(geometry(isaac, lr["rows_k"], lr["columns_n"]).crossbars for lr in layers)
    return dense / sum(lr["crossbars"] for lr in layers)


#: imcsim quantities that are not a single ``result.json`` field.
DERIVED_METRICS: dict[str, Callable[[Mapping[str, Any]], float]] = {
    "peak_power_w": _peak_power_w,
    "array_area_share": _array_area_share,
    "adc_pj_per_conversion": _adc_pj_per_conversion,
    "crossbars_vs_isaac16": _crossbars_vs_isaac16,
}

_ISAAC = "Shafiee et al., ISAAC, ISCA 2016, DOI 10.1109/ISCA.2016.12"
_FORMS = "Yuan et al., FORMS, ISCA 2021, DOI 10.1109/ISCA52012.2021.00029"
_CAPRAM = "Chen et al., CAP-RAM, IEEE JSSC 2021, DOI 10.1109/JSSC.2021.3056447"

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
    # FORMS's headline ratios against optimized ISAAC need the baseline's run: they are in
    # docs/forms.md and tests/test_golden_forms.py, not in this single-run table.
    "forms_32nm": (
        PublishedValue(
            metric="adc_pj_per_conversion", label="energy per 4-bit ADC conversion", unit="pJ",
            value=0.22619, basis="read-2nd",
            source=f"{_FORMS}; hwcomponents-library forms.py FormsADC, 15.2 mW / (32 x "
                   "2.1 GS/s) (papers.md 2.3)",
            note="a calibration point of the ADC model (the adc row of forms_32nm.yaml)"),
        PublishedValue(
            metric="crossbars_vs_isaac16", label="crossbars saved vs dense 16-bit ISAAC",
            unit="x", value=185.44, basis="read-2nd", workload="lenet5_mnist_forms",
            source=f"{_FORMS}, Table I: 23.18x pruning x 4x quantization x 2x polarization "
                   "(papers.md 2.4)",
            note="one copy of each layer, from the mapping; LeNet-5's small layers floor at "
                 "one crossbar (docs/forms.md)"),
        PublishedValue(
            metric="hardware_accuracy", label="LeNet-5 MNIST accuracy, compressed",
            unit="fraction", value=0.9917, basis="read-2nd", workload="lenet5_mnist_forms",
            source=f"{_FORMS}, Table I (papers.md 2.4)",
            note="ours is a different training (23.74x pruned, 98.38 % float on the full "
                 "test set); compare on the full test set"),
    ),
    # CAP-RAM's throughput and efficiency figures (573.4 GOPS, 49.4 TOPS/W, 3.4 TOPS/mm2, 6.35
    # mW) each hold at their own precision and mode, not at a run's: they are checked at
    # those points in tests/test_golden_capram.py (docs/validation.md), not in this table.
    "cap_ram_65nm": (
        PublishedValue(
            metric="area_mm2", label="macro area", unit="mm2", value=0.179, basis="read-2nd",
            source=f"{_CAPRAM}, Sec. IV (papers.md 1)",
            note="a calibration point of the component areas (the area rows of "
                 "cap_ram_65nm.yaml)"),
        PublishedValue(
            metric="array_area_share", label="8 KB SRAM array share of the macro",
            unit="fraction", value=0.626, basis="read-2nd",
            source=f"{_CAPRAM}, Sec. IV (papers.md 1)", note="a calibration point"),
        PublishedValue(
            metric="hardware_accuracy", label="LeNet-5 MNIST accuracy, pruned + quantized",
            unit="fraction", value=0.988, basis="read", workload="lenet5_mnist_capram",
            source=f"{_CAPRAM}, abstract (papers.md 1)",
            note="measured chips (the paper) against this run's arch file and our own "
                 "ADMM training; compare on the full test set"),
        PublishedValue(
            metric="hardware_accuracy", label="ResNet-20 CIFAR-10 accuracy, one macro",
            unit="fraction", value=0.890, basis="read", workload="resnet20_cifar10_capram",
            source=f"{_CAPRAM}, abstract (papers.md 1)",
            note="compare with this run's float accuracy on the offline (JPEG re-encoded) "
                 "test set: the gap is mostly our model's (docs/validation.md)"),
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
    if not isinstance(value, int | float) or not value or not math.isfinite(value):
        return None  # an estimate's accuracy is NaN: not measured
    return float(value)


def rows_for(result: Mapping[str, Any]) -> tuple[PublishedValue, ...]:
    """The published rows that apply to ``result``'s arch and workload (may be empty)."""
    rows = PUBLISHED.get(result.get("arch", ""), ())
    return tuple(r for r in rows if r.workload in (None, result.get("workload")))


def comparison(result: Mapping[str, Any]) -> list[tuple[PublishedValue, float | None,
                                                          float | None]]:
    """Each published row that applies to ``result`` with imcsim's value and the relative
    difference ``imcsim / paper - 1`` (``None`` where imcsim has no value): what the report
    and ``imcsim run``'s printout show."""
    out = []
    for p in rows_for(result):
        ours = metric_value(result, p.metric)
        out.append((p, ours, ours / p.value - 1 if ours is not None and p.value else None))
    return out
