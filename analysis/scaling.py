"""Rescale a design point's component table when a sweep changes the crossbar or its ADC.

A published config states its component table (power and area per group) and its per-event
energies at one operating point. When a sweep moves the ADC resolution or the crossbar size,
those stated figures no longer describe the point; leaving them fixed would make every point
cost the same and the sweep's Pareto front meaningless. :func:`rescale` keeps the base
config's stated figures as the anchor and scales them by ratios of models:

- **ADC** (classes ``sar_adc``, ``cisar_adc``, ``flash_adc``): energy per conversion by the
  ADC survey model's ratio ``E(bits', rate') / E(bits, rate)`` (:mod:`sim.components.converters`,
  Murmann survey as fit by hwcomponents); group power by that ratio times the rate ratio and
  the ADCs-per-crossbar ratio; group area by the survey area model's ratio and the count ratio.
- **ADC rate**, unless the point sets it: scaled with the columns each ADC must convert in one
  crossbar cycle, ``(columns' + unit') / (columns + unit) x per_crossbar / per_crossbar'``, so
  the crossbar cycle (the pipeline's clock) is kept.
- **DACs** (one per row): group power, area and count by ``rows' / rows``.
- **Sample-and-holds** (one per column): by the column ratio above.
- **Crossbar arrays**: power and area by the cell ratio ``rows' x (columns' + unit') /
  (rows x (columns + unit))`` (the unit column is cells too).

A group's ``count`` is updated only when it scales to a whole number (ISAAC's 1,024
sample-and-holds cover 128 data columns, so 65/129 of them is not); its power and area scale
regardless.

Per-event energies other than the ADC's are per row, per cell or per bit and so stay as
stated. Registers, buffers, shift-and-add units, routers and links are not rescaled (their
widths barely move with these parameters); cell bits change the event counts (more or fewer
slices), not the per-cell figures. Values a point sets explicitly are never rescaled.
"""

from __future__ import annotations

from typing import Any

from sim.components.converters import survey_adc_area_um2, survey_adc_energy_pj
from sim.config.schema import Arch

ADC_CLASSES = ("sar_adc", "cisar_adc", "flash_adc")
ARRAY_CLASSES = ("reram_crossbar", "sram_array", "capacitor_array")


def rescale(base: Arch, point: Arch, data: dict[str, Any], explicit: set[str]) -> list[str]:
    """Rescale ``data`` (the point's YAML mapping, edited in place) from ``base``.

    ``point`` is ``data`` as loaded; ``explicit`` holds the YAML paths the sweep set for this
    point (never rescaled). Returns one note per rescaled figure. A point that changes
    nothing the rules look at is left untouched.
    """
    x0, x1 = base.crossbar, point.crossbar
    rows = x1.rows / x0.rows
    cols = (x1.columns + int(x1.unit_column)) / (x0.columns + int(x0.unit_column))
    adcs = x1.adc.per_crossbar / x0.adc.per_crossbar
    rate0 = x0.adc.rate_hz
    rate1 = x1.adc.rate_hz
    notes: list[str] = []
    if "crossbar.adc.rate" not in explicit and (cols != 1 or adcs != 1) and rate0:
        rate1 = rate0 * cols / adcs
        data["crossbar"]["adc"]["rate"] = f"{rate1 / 1e9:.6g}GS/s"
        notes.append(f"ADC rate {rate0 / 1e9:.4g} -> {rate1 / 1e9:.4g} GS/s to keep the "
                     "crossbar cycle")
    e_ratio = a_ratio = 1.0
    if (x1.adc.bits, rate1) != (x0.adc.bits, rate0) and rate0 and rate1:
        tech = base.technology_nm
        e0 = survey_adc_energy_pj(x0.adc.bits, rate0, tech)
        e1 = survey_adc_energy_pj(x1.adc.bits, rate1, tech)
        e_ratio = e1 / e0
        a_ratio = survey_adc_area_um2(rate1, tech, e1) / survey_adc_area_um2(rate0, tech, e0)
        if "energy.adc_conversion" not in explicit and base.energy.adc_conversion_pj:
            value = base.energy.adc_conversion_pj * e_ratio
            data.setdefault("energy", {})["adc_conversion"] = f"{value:.6g}pJ"
            notes.append(f"energy.adc_conversion x{e_ratio:.4g} (ADC survey model, "
                         f"{x0.adc.bits} -> {x1.adc.bits} bits)")
    factors = {}
    for cls in ADC_CLASSES:
        factors[cls] = (e_ratio * rate1 / rate0 * adcs if rate0 else adcs, a_ratio * adcs, adcs)
    factors["dac"] = (rows, rows, rows)
    factors["sample_hold"] = (cols, cols, cols)
    for cls in ARRAY_CLASSES:
        factors[cls] = (rows * cols, rows * cols, 1.0)
    rows_yaml = data.get("components") or []
    for i, comp in enumerate(base.components):
        f_power, f_area, f_count = factors.get(comp.component_class, (1.0, 1.0, 1.0))
        if (f_power, f_area, f_count) == (1.0, 1.0, 1.0) or i >= len(rows_yaml):
            continue
        row = rows_yaml[i]
        prefix = f"components[{comp.name}]"
        changed = []
        if f"{prefix}.power" not in explicit and f_power != 1.0:
            row["power"] = f"{comp.power_mw * f_power:.6g}mW"
            changed.append(f"power x{f_power:.4g}")
        if f"{prefix}.area" not in explicit and f_area != 1.0:
            row["area"] = f"{comp.area_um2 * f_area:.6g}um2"
            changed.append(f"area x{f_area:.4g}")
        if f"{prefix}.count" not in explicit and f_count != 1.0:
            count = comp.count * f_count
            if count == int(count):
                row["count"] = int(count)
                changed.append(f"count x{f_count:.4g}")
        if changed:
            notes.append(f"{comp.name}: {', '.join(changed)}")
    return notes
