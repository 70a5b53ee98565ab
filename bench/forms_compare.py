"""FORMS against optimized ISAAC from two ``imcsim run`` results (docs/forms.md tables).

    python bench/forms_compare.py FORMS_RESULT_DIR ISAAC_OPT_RESULT_DIR [ISAAC_DENSE_DIR]

Prints frames per second, workload GOPS/s/mm2 and GOPS/W (the run's ``tops_per_mm2`` and
``tops_per_w``: the model's ops per second over the chip's area and the run's power), energy
per inference, ADC conversions (converted, skipped) and crossbars of one copy, and their
ratios FORMS / optimized ISAAC; with a third result (the dense model on original ISAAC), the
crossbar ratio against it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _load(d: str) -> dict:
    return json.loads((Path(d) / "result.json").read_text())


def _xbars(r: dict) -> int:
    return sum(lr["crossbars"] for lr in r["layers"] if lr.get("placement") == "crossbar")


def main(argv: list[str]) -> None:
    f, o = _load(argv[0]), _load(argv[1])
    rows = [
        ("hardware accuracy", "hardware_accuracy", "{:.4f}"),
        ("frames per second", "inferences_per_s", "{:.4g}"),
        ("workload GOPS/s/mm2", None, "{:.4g}"),
        ("workload GOPS/W", None, "{:.4g}"),
        ("energy per inference (nJ)", "energy_per_inference_nj", "{:.4g}"),
    ]
    n = f["samples"]
    print(f"workload {f['workload']} ({f['samples']} samples): {f['arch']} vs {o['arch']}")
    print("| metric | FORMS | optimized ISAAC | FORMS / opt. ISAAC |")
    print("|---|---|---|---|")
    for label, key, fmt in rows:
        if key is None:
            key = "tops_per_mm2" if "mm2" in label else "tops_per_w"
            a, b = f[key] * 1e3, o[key] * 1e3
        else:
            a, b = f[key], o[key]
        print(f"| {label} | {fmt.format(a)} | {fmt.format(b)} | {a / b:.3f}x |")
    for label, ev in (("ADC conversions / inference", "adc_conversions"),
                      ("skipped conversions / inference", "adc_conversions_skipped")):
        a = f["events_total"].get(ev, 0) / n
        b = o["events_total"].get(ev, 0) / o["samples"]
        ratio = f"{a / b:.3f}x" if b else "-"
        print(f"| {label} | {a:.4g} | {b:.4g} | {ratio} |")
    print(f"| crossbars (one copy) | {_xbars(f)} | {_xbars(o)} | {_xbars(f) / _xbars(o):.3f}x |")
    if len(argv) > 2:
        d = _load(argv[2])
        print(f"dense {d['workload']} on {d['arch']}: {_xbars(d)} crossbars; "
              f"{_xbars(d) / _xbars(f):.3f}x FORMS's")


if __name__ == "__main__":
    main(sys.argv[1:])
