"""Analytical mode against the bit-true pass, per layer, with zero-skip on.

For each workload (digits_cnn always; lenet5_mnist and cifar_cnn_cifar10 when their data sets
are found, e.g. in ``../shared/data``) and each design (ISAAC with ``inputs.zero_skip: true``,
and variants), the bit-true pass runs on ``--test`` test samples, and analytical mode
estimates the same layers' events from the statistics of

- ``same``: the float model's inputs on the same test samples (as ``imcsim sweep`` with
  ``mode: analytical`` does), and
- ``disjoint``: the float model's inputs on the next ``--stats`` test samples, scaled to the
  bit-true run's vectors (the estimator's error on data it has not seen),

and, for reference, the former estimator that took rows as independent (``indep``, same
samples). Prints, per layer and in total, the relative error of the ADC conversions done and of
the energy (``sim.stats.energy_by_event_pj``).

Run: ``python bench/bench_analytical_accuracy.py [--test 100] [--stats 200]
[--data-dir ../shared/data]``; ``--speed`` instead times analytical events with zero-skip on
``bench/bench_engine.py``'s ResNet-18 design grid.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import numpy as np
import torch

from analysis.run import _hardware_layers, input_statistics
from mappers import QuantRecipe, map_model
from sim.config.loader import arch_from_dict, read_yaml
from sim.engine.analytical import estimate_events, step_density
from sim.engine.placement import geometry
from sim.errors import UserError
from sim.macros import Events
from sim.stats import energy_by_event_pj, total_pj
from workloads.spec import load_workload

ROOT = Path(__file__).resolve().parents[1]
WORKLOADS = ("digits_cnn", "lenet5_mnist", "cifar_cnn_cifar10")


def designs() -> dict[str, object]:
    """ISAAC with zero-skip; with a 2-bit DAC (and the 10-bit ADC that keeps it exact); with
    64-row crossbars; and a lossy one: a 2-bit DAC with ISAAC's 8-bit ADC clipping (its
    hardware activations depart from the float model's). Every variant goes through the YAML
    validation."""
    base = read_yaml(ROOT / "arch_configs" / "isaac_32nm.yaml")
    base["inputs"]["zero_skip"] = True
    out = {}
    for label, change in (("isaac+skip", {}),
                          ("isaac+skip dac2", {"dac": {"bits": 2}, "adc_bits": 10}),
                          ("isaac+skip rows64", {"rows": 64}),
                          ("isaac+skip dac2 adc8 clip (lossy)",
                           {"dac": {"bits": 2}, "adc_bits": 8, "clip": True})):
        d = copy.deepcopy(base)
        if "dac" in change:
            d["crossbar"]["dac"] = change["dac"]
            d["crossbar"]["adc"]["bits"] = change["adc_bits"]
            d["crossbar"]["adc"]["clip"] = change.get("clip", False)
        if "rows" in change:
            d["crossbar"]["rows"] = change["rows"]
        out[label] = arch_from_dict(d, label)
    return out


def independent_rows(arch, k: int, n: int, vectors: int, hist) -> int:
    """The former estimate of conversions done: rows independent, ``1 - (1 - rho)^rows``."""
    g = geometry(arch, k, n)
    rho = step_density(hist, arch.inputs.bits, arch.crossbar.dac.bits, arch.inputs.signed)
    r = arch.crossbar.group_rows
    rows = np.full(g.row_groups, r)
    rows[-1] = k - r * (g.row_groups - 1)
    active = 1.0 - (1.0 - rho[:, None]) ** rows[None, :]
    return round(active.sum() * vectors * g.columns_total)


def compare(arch, workload_name: str, n_test: int, n_stats: int, data_dir) -> None:
    wl = load_workload(workload_name)
    try:
        x_test, _ = wl.load_data("test", data_dir)
        x_train, _ = wl.load_data("train", data_dir)
    except UserError as exc:
        print(f"  {workload_name}: skipped ({str(exc).splitlines()[0]})")
        return
    model = wl.load_model()
    recipe = QuantRecipe(weight_bits=wl.bits.weights, activation_bits=wl.bits.activations)
    calib = x_train[:wl.calibration_samples]
    mapped = map_model(model, arch, recipe, calib, seed=0)
    xt = x_test[:n_test]
    mapped.reset_events()
    mapped(xt)
    exact = {rec.name: rec.events for rec in mapped.layers}
    same = input_statistics(model, mapped, xt)
    # Statistics samples disjoint from the bit-true samples.
    other = input_statistics(model, mapped, x_test[n_test:n_test + n_stats])
    rows = []
    for name, layer in _hardware_layers(mapped).items():
        est = {"same": Events(), "disjoint": Events()}
        indep = 0
        for xb, h_same, h_other in zip(layer.crossbar_layers, same[name], other[name],
                                       strict=True):
            v = h_same.vectors
            est["same"].add(estimate_events(arch, xb.k, xb.n, v, h_same))
            est["disjoint"].add(estimate_events(arch, xb.k, xb.n, v, h_other))
            indep += independent_rows(arch, xb.k, xb.n, v, h_same)
        ex = exact[name]
        e_ex = total_pj(energy_by_event_pj(ex.counts(), arch.energy))
        ind = ex.counts() | {"adc_conversions": indep}
        row = [name, ex.adc_conversions / max(ex.adc_conversions + ex.adc_conversions_skipped, 1)]
        for counts in (est["same"].counts(), est["disjoint"].counts(), ind):
            e = total_pj(energy_by_event_pj(counts, arch.energy))
            row += [counts["adc_conversions"] / max(ex.adc_conversions, 1) - 1, e / e_ex - 1]
        rows.append((row, ex, est, ind, e_ex))
    hdr = (f"  {'layer':<12}{'run':>6}  {'same conv':>10}{'energy':>8}  {'disjoint':>10}"
           f"{'energy':>8}  {'indep':>8}{'energy':>8}")
    print(f"  {workload_name}: bit-true on {n_test} test samples; disjoint statistics from "
          f"the next {n_stats} test samples")
    print(hdr)
    for row, *_ in rows:
        print(f"  {row[0][:11]:<12}{100 * row[1]:5.1f}%  " + "  ".join(
            f"{100 * row[i]:+9.2f}%{100 * row[i + 1]:+7.2f}%" for i in (2, 4, 6)))
    tot_ex = sum(r[1].adc_conversions for r in rows)
    e_tot = sum(r[4] for r in rows)
    parts = []
    for kind in ("same", "disjoint", "indep"):
        c = [r[2][kind].counts() if kind != "indep" else r[3] for r in rows]
        conv = sum(x["adc_conversions"] for x in c)
        e = sum(total_pj(energy_by_event_pj(x, arch.energy)) for x in c)
        parts.append(f"{100 * (conv / tot_ex - 1):+9.2f}%{100 * (e / e_tot - 1):+7.2f}%")
    print(f"  {'total':<12}{'':>6}  " + "  ".join(parts))


def bench_speed() -> None:
    """Analytical events with zero-skip on over bench_engine's ResNet-18 design grid: the
    per-step activity is derived once per (DAC, row-group, crossbar) geometry and layer."""
    import sys
    import time

    sys.path.insert(0, str(ROOT / "bench"))
    from bench_engine import ResNet18, design_grid, layer_stats

    torch.manual_seed(0)
    t0 = time.perf_counter()
    shapes, hists = layer_stats(ResNet18().eval(), torch.randn(1, 3, 224, 224), 8)
    t1 = time.perf_counter()
    base = read_yaml(ROOT / "arch_configs" / "isaac_32nm.yaml")
    base["inputs"]["zero_skip"] = True
    archs = design_grid(base)
    t2 = time.perf_counter()
    for arch in archs:
        for sh, h in zip(shapes, hists, strict=True):
            estimate_events(arch, sh.k, sh.n, sh.vectors, h)
    t3 = time.perf_counter()
    n = len(archs) * len(shapes)
    print(f"ResNet-18 224x224, one image: float pass + input statistics {t1 - t0:.3f} s; "
          f"{len(archs)} design points x {len(shapes)} layers with zero-skip: "
          f"{n / (t3 - t2):,.0f} (design point x layer)/s (activity derived for 3 crossbar "
          "heights, reused by the other parameters)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--test", type=int, default=100, help="test samples run bit-true")
    ap.add_argument("--stats", type=int, default=200, help="test samples for 'disjoint'")
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--workloads", nargs="*", default=list(WORKLOADS))
    ap.add_argument("--speed", action="store_true",
                    help="only time analytical events with zero-skip on ResNet-18")
    args = ap.parse_args()
    torch.set_num_threads(2)
    if args.speed:
        bench_speed()
        return
    for label, arch in designs().items():
        print(f"{label}: relative error of analytical vs bit-true (conversions, energy)")
        for wl in args.workloads:
            compare(arch, wl, args.test, args.stats, args.data_dir)


if __name__ == "__main__":
    main()
