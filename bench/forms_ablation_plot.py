"""Plot the FORMS ablation sweep (docs/forms.md): frames per second and energy per inference
for fragment height x zero-skipping x ADCs per crossbar.

    imcsim sweep examples/sweep_forms_lenet5.yaml --data-dir DATA --out DIR
    python bench/forms_ablation_plot.py DIR/points.csv OUT.png
"""

from __future__ import annotations

import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(points_csv: str, out_png: str) -> None:
    """Two panels (throughput, energy), one bar per sweep point, grouped by fragment height."""
    rows = list(csv.DictReader(open(points_csv)))
    labels = [f"F={r['crossbar.fragment_rows']}\n{r['crossbar.adc.per_crossbar']} ADC\n"
              f"{'skip' if r['inputs.zero_skip'] == 'True' else 'no skip'}" for r in rows]
    colors = ["tab:blue" if r["inputs.zero_skip"] == "True" else "tab:gray" for r in rows]
    fig, (a, b) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    x = range(len(rows))
    a.bar(x, [float(r["inferences_per_s"]) / 1e3 for r in rows], color=colors)
    a.set_ylabel("frames per second (k)")
    b.bar(x, [float(r["energy_per_inference_nj"]) for r in rows], color=colors)
    b.set_ylabel("energy per inference (nJ)")
    b.set_xticks(list(x), labels, fontsize=7)
    a.set_title("FORMS on LeNet-5/MNIST (compressed): blue = zero-skipping on")
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
