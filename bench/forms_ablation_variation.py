"""Summarize the FORMS ablation with device variation (docs/forms.md, issue 12 deliverable 4).

    imcsim sweep examples/sweep_forms_ablation_variation.yaml --data-dir DATA --out DIR
    python bench/forms_ablation_variation.py DIR/points.csv OUT.png

Groups the sweep's points by everything but ``variation.seed`` (the chips), prints one
Markdown row per group (frames per second, latency, energy and ADC conversions per
inference, area, and the hardware accuracy as mean, sample standard deviation, min and max
over the chips) and draws throughput, energy, conversions and accuracy per group into OUT.png.
"""

from __future__ import annotations

import csv
import sys
from collections import defaultdict

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SEED = "variation.seed"


def groups(points_csv: str) -> tuple[list[str], dict[tuple, list[dict]]]:
    """The swept parameter names other than the seed, and the ``ok`` points per group."""
    rows = [r for r in csv.DictReader(open(points_csv)) if r["status"] == "ok"]
    head = list(csv.DictReader(open(points_csv)).fieldnames or [])
    params = head[1:head.index("status")]
    keys = [p for p in params if p != SEED]
    out: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        out[tuple(r[k] for k in keys)].append(r)
    return keys, out


def _mean(rows: list[dict], metric: str) -> float:
    return float(np.mean([float(r[metric]) for r in rows]))


def _tick(param: str, value: str) -> str:
    """A short tick label for one parameter's value."""
    if param == "inputs.zero_skip":
        return "skip" if value == "True" else "no skip"
    names = {"crossbar.fragment_rows": "F", "variation.cell.sigma": "s",
             "crossbar.adc.per_crossbar": "ADC"}
    return f"{names.get(param, param.rsplit('.', 1)[-1])}={value}"


def main(points_csv: str, out_png: str) -> None:
    """Print the table and write the figure."""
    keys, grouped = groups(points_csv)
    short = {"crossbar.fragment_rows": "F", "inputs.zero_skip": "zero-skip",
             "variation.cell.sigma": "sigma", "crossbar.adc.per_crossbar": "ADCs/crossbar"}
    print("| " + " | ".join(short.get(k, k) for k in keys) + " | chips | FPS | latency us "
          "| energy nJ/inf | ADC conversions/inf | area mm2 | accuracy mean | std | min | max |")
    print("|" + "---|" * (len(keys) + 10))
    labels, fps, energy, conv, acc, err = [], [], [], [], [], []
    for key, rows in grouped.items():
        a = np.array([float(r["hardware_accuracy"]) for r in rows])
        std = float(a.std(ddof=1)) if len(a) > 1 else float("nan")
        print("| " + " | ".join(key) + f" | {len(rows)} | {_mean(rows, 'inferences_per_s'):.4g} "
              f"| {1e6 * _mean(rows, 'latency_per_inference_s'):.4g} "
              f"| {_mean(rows, 'energy_per_inference_nj'):.4g} "
              f"| {_mean(rows, 'adc_conversions_per_inference'):.4g} "
              f"| {_mean(rows, 'area_mm2'):.2f} | {100 * a.mean():.2f} % | {100 * std:.2f} "
              f"| {100 * a.min():.2f} % | {100 * a.max():.2f} % |")
        labels.append("\n".join(_tick(k, v) for k, v in zip(keys, key, strict=True)))
        fps.append(_mean(rows, "inferences_per_s") / 1e3)
        energy.append(_mean(rows, "energy_per_inference_nj"))
        conv.append(_mean(rows, "adc_conversions_per_inference") / 1e3)
        acc.append(100 * a.mean())
        err.append(0.0 if np.isnan(std) else 100 * std)
    skip = ["inputs.zero_skip" in keys and dict(zip(keys, k, strict=True))["inputs.zero_skip"]
            == "True" for k in grouped]
    colors = ["tab:blue" if s else "tab:gray" for s in skip]
    fig, axes = plt.subplots(4, 1, figsize=(max(8.0, 0.8 * len(labels)), 9), sharex=True)
    x = np.arange(len(labels))
    for ax, vals, name in zip(axes, (fps, energy, conv),
                              ("frames per second (k)", "energy / inference (nJ)",
                               "ADC conversions / inference (k)"), strict=False):
        ax.bar(x, vals, color=colors)
        ax.set_ylabel(name, fontsize=8)
    axes[3].bar(x, acc, yerr=err, color=colors, capsize=3)
    axes[3].set_ylim(max(0.0, min(acc) - 3 * max(err + [0.5])), 100)
    axes[3].set_ylabel("hardware accuracy (%)\nmean +- std over chips", fontsize=8)
    axes[3].set_xticks(list(x), labels, fontsize=7)
    axes[0].set_title("FORMS ablation (blue = zero-skipping on; s = lognormal cell sigma); "
                      "accuracy: mean +- std over the chips", fontsize=9)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
