"""Accuracy drop under device variation, original vs fully optimized model (docs/forms.md).

    python bench/forms_variation_study.py LABEL=IDEAL_RUN_DIR,MONTECARLO_DIR [...]

For each LABEL: IDEAL_RUN_DIR holds the ``result.json`` of ``imcsim run`` without variation
(or the ``montecarlo.json`` of ``imcsim montecarlo --chips 2 --set variation.cell.sigma=0``
when the arch needs ``--set`` settings; its chips must agree), MONTECARLO_DIR the
``montecarlo.json`` of ``imcsim montecarlo`` on the same arch, workload, test samples and
run seed with the variation on (``--set variation.cell.sigma=0.1``); several montecarlo
folders joined by ``+`` (e.g. chips 0-9 and, by ``--base-seed 10``, chips 10-49) are pooled
into one set of chips: they must agree on everything but the chips, and no chip seed may
repeat. Prints
one Markdown row per label: arch, workload, images per chip, chips, accuracy without
variation, mean accuracy over the chips with its confidence interval, the drop (percentage
points; the ideal accuracy is a single deterministic run, so the drop's interval is the
mean's), the chips' standard deviation, worst and best chip.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from analysis.montecarlo import confidence_interval  # noqa: E402


def _ideal(d: Path) -> dict:
    """``arch``, ``samples``, ``seed`` and ``hardware_accuracy`` of the run without variation."""
    if (d / "result.json").exists():
        return json.loads((d / "result.json").read_text())
    mc = json.loads((d / "montecarlo.json").read_text())
    accs = {c["hardware_accuracy"] for c in mc["levels"][-1]["chips"]}
    if len(accs) != 1 or (mc.get("fixed") or {}).get("variation.cell.sigma", 0) != 0:
        raise SystemExit(f"{d}: not a run without variation (chips differ: {sorted(accs)})")
    return {"arch": mc["arch"], "samples": mc["samples"], "seed": mc["run_seed"],
            "hardware_accuracy": accs.pop()}


def pooled(mc_dirs: str) -> dict:
    """The ``montecarlo.json`` of ``mc_dirs`` (``A+B+...``), chips pooled over the folders."""
    runs = [json.loads((Path(d) / "montecarlo.json").read_text()) for d in mc_dirs.split("+")]
    mc = runs[0]
    if len(runs) == 1:
        return mc
    same = ("arch", "workload", "samples", "run_seed", "fixed", "confidence")
    chips = []
    for d, run in zip(mc_dirs.split("+"), runs, strict=True):
        if any(run.get(k) != mc.get(k) for k in same) or len(run["levels"]) != 1 \
                or len(mc["levels"]) != 1:
            raise SystemExit(f"{d}: not the same study as {mc_dirs.split('+')[0]} "
                             f"(compare {', '.join(same)}; one level each)")
        chips += run["levels"][0]["chips"]
    seeds = [c["seed"] for c in chips]
    if len(set(seeds)) != len(seeds):
        raise SystemExit(f"{mc_dirs}: a chip seed repeats across the folders")
    acc = np.array([c["hardware_accuracy"] for c in chips], dtype=np.float64)
    level = {**mc["levels"][0], "chips": chips,
             "summary": {"hardware_accuracy": confidence_interval(acc, mc["confidence"])}}
    return {**mc, "levels": [level]}


def row(label: str, ideal_dir: str, mc_dir: str) -> str:
    """One Markdown row; refuses a pair that did not run the same samples and seed."""
    ideal = _ideal(Path(ideal_dir))
    mc = pooled(mc_dir)
    if (ideal["samples"], ideal["seed"]) != (mc["samples"], mc["run_seed"]):
        raise SystemExit(f"{label}: {ideal_dir} ran {ideal['samples']} samples with seed "
                         f"{ideal['seed']}, {mc_dir} {mc['samples']} with seed {mc['run_seed']}")
    if ideal["arch"] != mc["arch"]:
        raise SystemExit(f"{label}: arch {ideal['arch']} vs {mc['arch']}")
    level = mc["levels"][-1]
    s = level["summary"]["hardware_accuracy"]
    chips = [c["hardware_accuracy"] for c in level["chips"]]
    a0 = ideal["hardware_accuracy"]
    setting = ", ".join(f"{k}={v}" for k, v in (mc.get("fixed") or {}).items())
    if level.get("param"):
        setting = ", ".join(filter(None, [setting, level["label"]]))
    conf = int(round(100 * mc["confidence"]))
    return (f"| {label} | {mc['arch']} | {mc['workload']} | {setting} | {mc['samples']} "
            f"| {len(chips)} | {100 * a0:.2f} % | {100 * s['mean']:.2f} % "
            f"[{100 * s['ci_low']:.2f}, {100 * s['ci_high']:.2f}] ({conf} %) "
            f"| **{100 * (a0 - s['mean']):.2f}** | {100 * s['std']:.2f} "
            f"| {100 * min(chips):.1f} % | {100 * max(chips):.1f} % |")


def main(pairs: list[str]) -> None:
    """Print the table."""
    print("| model | arch | workload | chips' setting | images / chip | chips "
          "| accuracy, no variation | mean accuracy, variation [CI] | drop (pp) "
          "| std over chips (pp) | worst chip | best chip |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for pair in pairs:
        label, _, dirs = pair.partition("=")
        ideal_dir, _, mc_dir = dirs.partition(",")
        print(row(label, ideal_dir, mc_dir))


if __name__ == "__main__":
    main(sys.argv[1:])
