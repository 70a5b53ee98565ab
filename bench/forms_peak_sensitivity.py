"""FORMS peak figures as the fragment height and the ADCs per crossbar move (docs/forms.md).

    python bench/forms_peak_sensitivity.py

:func:`sim.engine.rollup.peak` on ``arch_configs/forms_32nm.yaml`` with
``crossbar.fragment_rows`` and ``crossbar.adc.per_crossbar`` changed, against
``arch_configs/isaac_opt_32nm.yaml`` (optimized ISAAC).
"""

from __future__ import annotations

import copy
from pathlib import Path

from sim.config.loader import arch_from_dict, read_yaml
from sim.engine import rollup

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    """Print the table."""
    base = read_yaml(ROOT / "arch_configs" / "forms_32nm.yaml")
    po = rollup.peak(arch_from_dict(read_yaml(ROOT / "arch_configs" / "isaac_opt_32nm.yaml"),
                                    "isaac_opt"))
    print(f"optimized ISAAC: {po.ops_per_s / 1e9:,.0f} GOPS, {po.gops_per_mm2:.1f} GOPS/s/mm2, "
          f"{po.gops_per_w:.1f} GOPS/W, {po.area_mm2:.2f} mm2, {po.power_w:.2f} W")
    print("| F | ADCs/crossbar | peak GOPS | GOPS/s/mm2 | GOPS/W | area mm2 | power W "
          "| CE vs opt. ISAAC | PE vs opt. ISAAC |")
    print("|---|---|---|---|---|---|---|---|---|")
    for f in (4, 8, 16):
        for per in (4, 8, 16, 32):
            d = copy.deepcopy(base)
            d["crossbar"]["fragment_rows"] = f
            d["crossbar"]["adc"]["per_crossbar"] = per
            pk = rollup.peak(arch_from_dict(d, f"forms_f{f}_adc{per}"))
            print(f"| {f} | {per} | {pk.ops_per_s / 1e9:,.0f} | {pk.gops_per_mm2:.1f} | "
                  f"{pk.gops_per_w:.1f} | {pk.area_mm2:.2f} | {pk.power_w:.2f} | "
                  f"{pk.gops_per_mm2 / po.gops_per_mm2:.2f}x | "
                  f"{pk.gops_per_w / po.gops_per_w:.2f}x |")


if __name__ == "__main__":
    main()
