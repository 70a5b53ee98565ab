"""Per-layer zero-skipping of FORMS on real activations (docs/forms.md, issue 12 deliverable 4).

    python bench/forms_skip_fractions.py OUT.png LABEL=RESULT_DIR [LABEL=RESULT_DIR ...]

Each RESULT_DIR holds the ``result.json`` of an ``imcsim run`` on ``forms_32nm.yaml``. Prints,
per network and crossbar layer, the table of :func:`analysis.report.skip_fractions`: ADC
conversions per inference made and skipped, the share of the layer's fragment-column
bit-cycles skipped (one conversion is one fragment-column at one input step), the mean input
steps run per vector (a step runs unless every fragment of the layer's busiest crossbar
skips it) and the share of steps skipped; and draws both shares per layer, one panel per
network, into OUT.png.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from analysis.report import skip_fractions  # noqa: E402
from sim.config import load_arch  # noqa: E402


def _rows(result: dict) -> tuple[list[dict], int]:
    bits = load_arch(result["arch_file"]).inputs.bits
    rows = [r for r in skip_fractions(result) if r["placement"] == "crossbar"]
    return rows, bits


def main(out_png: str, pairs: list[str]) -> None:
    """Print the tables and write the figure."""
    nets = []
    for pair in pairs:
        label, _, d = pair.partition("=")
        result = json.loads((Path(d) / "result.json").read_text())
        rows, bits = _rows(result)
        nets.append((label, rows, bits))
        shapes = {lr["name"]: f"{lr['rows_k']}x{lr['columns_n']}" for lr in result["layers"]
                  if lr.get("placement") == "crossbar"}
        made = sum(r["made"] for r in rows)
        skipped = sum(r["skipped"] for r in rows)
        print(f"\n{label}: {result['workload']} on {result['arch']}, {result['samples']} test "
              f"samples; {100 * skipped / (made + skipped):.1f} % of all conversions skipped")
        print("| layer | K x N | conversions / inference | skipped / inference | bit-cycles "
              f"skipped | steps run (of {bits}) | steps skipped |")
        print("|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['name']} | {shapes[r['name']]} | {r['made']:.4g} | {r['skipped']:.4g} "
                  f"| {100 * r['share']:.1f} % | {r['steps_run']:.2f} "
                  f"| {100 * (1 - r['steps_run'] / bits):.1f} % |")
    fig, axes = plt.subplots(1, len(nets), figsize=(4.2 * len(nets), 3.6), squeeze=False)
    for ax, (label, rows, bits) in zip(axes[0], nets, strict=True):
        x = range(len(rows))
        ax.bar([i - 0.2 for i in x], [100 * r["share"] for r in rows], 0.4,
               color="#ee7733", label="fragment bit-cycles skipped")
        ax.bar([i + 0.2 for i in x], [100 * (1 - r["steps_run"] / bits) for r in rows], 0.4,
               color="#4477aa", label="input steps skipped")
        ax.set_xticks(list(x), [r["name"] for r in rows], rotation=45, ha="right", fontsize=8)
        ax.set_ylim(0, 100)
        ax.set_title(label, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("skipped (%)")
    axes[0][0].legend(fontsize=7, loc="upper left")
    fig.suptitle("FORMS zero-skipping per layer on real test activations (F = 8)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
