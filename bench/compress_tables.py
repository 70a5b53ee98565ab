"""The compression tables of docs/compression.md: accuracy (from the compression manifests)
beside the hardware cost of every compressed model on the ISAAC config (from ``imcsim run``).

For every experiment of ``bench/compress_experiments.py`` whose manifest exists in
``workloads/compressed/`` (and for each table's dense base workload) this runs

    imcsim run arch_configs/isaac_32nm.yaml WORKLOAD --samples N --seed 1 --quiet

into a fresh ``results/compress/hw/NAME`` (deleted first, so a rerun never resumes an old
mapping's result), reads its ``result.json`` and writes the tables to
``docs/compression_tables.md``. The hardware columns (crossbars, ADC conversions, energy and
cycles per inference) are what the current mapping makes of the compressed weights: rerun
after a mapping change (``make compress-tables``). A run that fails (the GRU: the torch
bridge cannot map ``nn.GRU``) is reported with its error message, not dropped.

    python bench/compress_tables.py --data-dir /path/to/data [--samples 32] [--network cifar_cnn]

``--network cifar_cnn`` (the default) also makes the network-independent tables (GRU BSP,
LeNet-5 FORMS recipe) and writes ``docs/compression_tables.md``; ``--network resnet20`` makes
only the ResNet-20 tables and writes ``docs/compression_tables_resnet20.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compress_experiments import ROOT, experiments  # noqa: E402

ARCH = "arch_configs/isaac_32nm.yaml"
COMPRESSED = Path("workloads/compressed")

#: Published RTMobile points (papers.md section 5): overall compression -> TIMIT PER (%).
RTMOBILE_PER = [(9.95, 18.8), (20.34, 19.5), (79.50, 21.5), (301.28, 25.5)]


def nearest_rtmobile(rate: float) -> tuple[float, float]:
    """The published RTMobile (rate, PER %) point nearest ``rate`` on a log scale."""
    return min(RTMOBILE_PER, key=lambda p: abs(math.log(p[0] / rate)))


def hardware(name: str, workload: str, samples: int, seed: int, data_dir: str | None,
             reuse: bool = False) -> dict:
    """Run ``imcsim run`` on ``workload`` into a fresh folder; the figures or the error.

    With ``reuse``, a ``result.json`` already in the folder from a run of the same samples
    and seed is read instead (to fill in a table run by run; never after a mapping change).
    """
    out = ROOT / "results" / "compress" / "hw" / name
    old = out / "result.json"
    if not (reuse and old.exists() and json.loads(old.read_text())["samples"] == samples
            and json.loads(old.read_text())["seed"] == seed):
        shutil.rmtree(out, ignore_errors=True)
    cmd = [str(Path(sys.executable).with_name("imcsim")), "run", ARCH, workload,
           "--samples", str(samples), "--seed", str(seed), "--out", str(out), "--quiet"]
    if data_dir:
        cmd += ["--data-dir", data_dir]
    command = " ".join(["imcsim", *cmd[1:]]).replace(str(ROOT) + "/", "")
    start = time.time()
    if out.exists():
        proc = subprocess.CompletedProcess(cmd, 0, "", "")
        wall = json.loads(old.read_text())["wall_time_s"]
    else:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        wall = time.time() - start
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr or proc.stdout).strip().splitlines() if ln.strip()]
        return {"command": command, "error": lines[-1] if lines else f"exit {proc.returncode}",
                "wall_s": wall}
    r = json.loads((out / "result.json").read_text())
    n = r["samples"]
    cycles = r["latency_per_inference_s"] * r["digital_clock_hz"]
    xlayers = [lay for lay in r["layers"] if lay.get("placement", "crossbar") == "crossbar"]
    return {"command": command, "wall_s": wall, "samples": n, **at_bits(xlayers, n),
            "hw_accuracy": r["hardware_accuracy"], "float_accuracy": r["float_accuracy"],
            "crossbars": r["crossbars_used"],
            "crossbars_one_copy": sum(lay["crossbars"] for lay in r["layers"]
                                      if lay.get("placement", "crossbar") == "crossbar"),
            "layer_crossbars": {lay["name"]: lay["crossbars"] for lay in r["layers"]
                                if lay.get("placement", "crossbar") == "crossbar"},
            "adc_per_inf": r["events_total"]["adc_conversions"] / n,
            "cell_reads_per_inf": r["events_total"]["cell_reads"] / n,
            "energy_nj": r["energy_per_inference_nj"], "latency_cycles": cycles,
            "interval_cycles": r["interval_cycles"]}


def at_bits(layers: list[dict], samples: int) -> dict:
    """The same model mapped dense at each layer's stored bits, from a packed run's per-layer
    ``mapping`` record: crossbars (one copy) and ADC conversions per inference, each layer's
    conversions scaled by its ``dense_at_bits / packed`` conversions per vector (exact without
    zero-skipping: both count the same input vectors). Empty for a dense run."""
    if not any(lay.get("mapping") for lay in layers):
        return {}
    xbars = conv = 0.0
    for lay in layers:
        m = lay.get("mapping") or {}
        done = lay["events"]["adc_conversions"]
        if m:
            xbars += m["dense_at_bits_crossbars"]
            conv += done * m["dense_at_bits_conversions_per_vector"] / m["conversions_per_vector"]
        else:
            xbars += lay["crossbars"]
            conv += done
    return {"crossbars_at_bits": xbars, "adc_at_bits_per_inf": conv / samples}


def _packing_alone(hw: dict) -> str:
    """Crossbars and conversions the packing saves against the same weights dense at their
    stored bits (what is left of the saving once precision is taken out)."""
    if "error" in hw or not hw.get("crossbars_at_bits"):
        return "-"
    return (f"{hw['crossbars_at_bits'] / hw['crossbars_one_copy']:.2f}x / "
            f"{hw['adc_at_bits_per_inf'] / hw['adc_per_inf']:.2f}x")


def _pct(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.2f} %"


def _ratio(dense: dict, hw: dict, key: str) -> str:
    if "error" in hw or "error" in dense or not hw.get(key):
        return "-"
    return f"{hw[key]:,.0f} ({dense[key] / hw[key]:.2f}x)"


def _hw_cells(dense: dict, hw: dict) -> list[str]:
    if "error" in hw:
        return [f"fails: {hw['error']}"] + ["-"] * (HW_COLUMNS - 1)
    return [_pct(hw["hw_accuracy"]), _ratio(dense, hw, "crossbars_one_copy"),
            _ratio(dense, hw, "crossbars"), _ratio(dense, hw, "adc_per_inf"),
            _ratio(dense, hw, "energy_nj"), _ratio(dense, hw, "latency_cycles"),
            _ratio(dense, hw, "interval_cycles"), _packing_alone(hw)]


HW_HEAD = ("hw acc. (N samples) | crossbars, one copy of each layer | crossbars placed "
           "(with copies) | ADC conv. / inference | energy nJ / inference | latency cycles | "
           "pipeline interval cycles | packing alone: crossbars / ADC conv. (vs dense at the "
           "stored bits)")
HW_COLUMNS = HW_HEAD.count("|") + 1


def _count(x) -> str:
    return "-" if x is None else f"{x:,.0f}"


def _layer_rates(m: dict) -> str:
    return ", ".join(f"{k.removesuffix('.weight')} {v['pruning_rate']:.2f}x"
                     for k, v in m["layers"].items())


def table(group: str, title: str, dense_workload: str, names: list[str], manifests: dict,
          hw: dict, extra) -> list[str]:
    """One markdown table: the dense model, then each compressed model of the group."""
    dense = hw[f"dense:{dense_workload}"]
    lines = [f"### {title}", "", f"Dense reference: `{dense['command']}`", ""]
    head = ("| model | rate (compressed layers) | rate (model) | float | hard proj. | "
            "compressed | " + HW_HEAD + " |" + "".join(f" {h} |" for h, _ in extra))
    lines += [head, "|" + "---|" * (head.count("|") - 1)]
    d = ["dense (base)", "1x", "1x", "-", "-", "-"] + (
        [f"fails: {dense['error']}"] + ["-"] * (HW_COLUMNS - 1) if "error" in dense else
        [_pct(dense["hw_accuracy"])] + [_count(dense.get(k)) for k in (
            "crossbars_one_copy", "crossbars", "adc_per_inf", "energy_nj", "latency_cycles",
            "interval_cycles")] + ["-"])
    lines.append("| " + " | ".join(d + ["-"] * len(extra)) + " |")
    for name in names:
        m = manifests.get(name)
        if m is None:
            lines.append("| " + " | ".join([name, "not run"] + ["-"] * (4 + HW_COLUMNS
                                                                        + len(extra))) + " |")
            continue
        t = m["totals"]
        row = [name, f"{t['compressed_pruning_rate']:.2f}x", f"{t['model_pruning_rate']:.2f}x",
               _pct(m["baseline_accuracy"]), _pct(m["hard_projection_accuracy"]),
               _pct(m["test_accuracy"])] + _hw_cells(dense, hw[name])
        row += [fn(m) for _, fn in extra]
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Per-layer rates: " + "; ".join(
        f"{n}: {_layer_rates(manifests[n])}" for n in names if n in manifests), ""]
    lines += ["Commands: " + "; ".join(f"`{hw[n]['command']}` ({hw[n]['wall_s']:.0f} s)"
                                       for n in names if n in hw), ""]
    return lines


def forms_arithmetic(m: dict, arch_weight_bits: int = 16) -> list[str]:
    """FORMS Table I's crossbar-count product from the model: pruning x quantization x
    polarization, with the assumptions each factor needs."""
    rate = m["totals"]["model_pruning_rate"]
    bits = m.get("workload_weight_bits")
    quant = arch_weight_bits / bits if bits else float("nan")
    return [
        "FORMS-style crossbar arithmetic of this model (FORMS Table I: 23.18x x 4x x 2x = "
        "185.44x at 99.17 %):", "",
        "| factor | this model | assumption |", "|---|---|---|",
        f"| pruning | {rate:.2f}x | weights / nonzero weights over all layers; cells only "
        "shrink this much if the mapping packs nonzeros densely (not crossbar-granular) |",
        f"| quantization | {quant:.0f}x | {arch_weight_bits}-bit weights of the ISAAC config vs "
        f"{bits}-bit: cell slices per weight |",
        "| polarization | 2x | vs a two-array (positive/negative) mapping, as FORMS counts it; "
        "the ISAAC config's offset encoding needs no second array, so against it the factor "
        "is the offset column's, not 2x |",
        f"| **product** | **{rate * quant * 2:.2f}x** | ideal cell count, not crossbars "
        "counted by a mapping |", ""]


def main(argv: list[str] | None = None) -> int:  # noqa: D103
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--network", default="cifar_cnn", choices=("cifar_cnn", "resnet20"))
    ap.add_argument("--data-dir", default=os.environ.get("IMCSIM_DATA"))
    ap.add_argument("--samples", type=int, default=32)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", help="output file (default: docs/compression_tables.md for "
                    "cifar_cnn, docs/compression_tables_NETWORK.md otherwise)")
    ap.add_argument("--reuse", action="store_true",
                    help="read results already in results/compress/hw of the same samples and "
                         "seed instead of rerunning them (never after a mapping change)")
    args = ap.parse_args(argv)

    if args.out is None:
        args.out = ("docs/compression_tables.md" if args.network == "cifar_cnn"
                    else f"docs/compression_tables_{args.network}.md")
    exps = experiments(args.network)
    manifests = {n: json.loads((ROOT / COMPRESSED / f"{n}.json").read_text())
                 for n in exps if (ROOT / COMPRESSED / f"{n}.json").exists()}
    groups: dict[str, list[str]] = {}
    for n, e in exps.items():
        groups.setdefault(e["group"], []).append(n)
    dense_of = {g: exps[names[0]]["workload"] for g, names in groups.items()}
    hw: dict[str, dict] = {}
    for wl in sorted(set(dense_of.values())):
        print(f"dense {wl} ...", flush=True)
        hw[f"dense:{wl}"] = hardware("dense_" + Path(wl).stem, wl, args.samples, args.seed,
                                     args.data_dir, args.reuse)
    for n in manifests:
        print(f"{n} ...", flush=True)
        hw[n] = hardware(n, str(COMPRESSED / f"{n}.yaml"), args.samples, args.seed,
                         args.data_dir, args.reuse)

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    net = args.network
    lines = ["# Compression tables (generated)", "",
             f"Written by `python bench/compress_tables.py --network {net} --samples "
             f"{args.samples} --seed {args.seed}{' --reuse' if args.reuse else ''}` "
             + ("(`make compress-tables`) " if net == "cifar_cnn" else "") + "on "
             f"{datetime.now(UTC).isoformat(timespec='minutes')} at commit {commit}. Do not "
             "edit by hand; docs/compression.md explains the columns.", "",
             "Columns: rate = weights / nonzero weights (compressed layers; whole model); "
             "float / hard proj. / compressed = test accuracy in torch on the whole test "
             "split (the base model on the same data copy; right after the hard projection; "
             "after masked fine-tuning), from the manifest; hw acc. = bit-true accuracy of "
             f"`imcsim run` on the first {args.samples} test samples; crossbars (one copy of "
             "each layer: what the mapping needs; placed: with the copies the placer adds to "
             "fill the chip), ADC conversions, energy and latency per inference and the "
             "pipeline's interval between inferences on the ISAAC config, with the saving "
             "against the dense base model in parentheses (the dense model is stored at the "
             "arch's 16-bit weights, a compressed one at its own bits, so this saving includes "
             "precision); packing alone = the same compressed weights mapped dense at their "
             "stored bits against the packed mapping (the saving of the structure itself, "
             "from each layer's `mapping` record).", ""]
    ul = [("unify storage rate", lambda m: ", ".join(
        f"{v['methods']['unify'].get('storage_rate', float('nan')):.2f}x"
        for v in m["layers"].values() if "unify" in v["methods"]))]
    lines += table("patdnn", f"PatDNN pattern + connectivity pruning, {net} on CIFAR-10",
                   dense_of["patdnn"], groups["patdnn"], manifests, hw, [])
    lines += table("unify", f"Weight unification, several block shapes, {net} on CIFAR-10",
                   dense_of["unify"], groups["unify"], manifests, hw, ul)
    rt = [("RTMobile (TIMIT PER) at the nearest published rate",
           lambda m: "{:.2f}x: {} %".format(*nearest_rtmobile(
               m["totals"]["compressed_pruning_rate"])))]
    if "gru_bsp" in groups:
        lines += table("gru_bsp", "RTMobile BSP, GRU on row-sequential MNIST",
                       dense_of["gru_bsp"], groups["gru_bsp"], manifests, hw, rt)
    if "lenet_forms" in groups:
        lines += table("lenet_forms",
                       "LeNet-5 on MNIST, pruned + 4-bit + polarized (FORMS recipe)",
                       dense_of["lenet_forms"], groups["lenet_forms"], manifests, hw, [])
    if "lenet5_mnist_forms" in manifests:
        lines += forms_arithmetic(manifests["lenet5_mnist_forms"])
    path = ROOT / args.out
    path.write_text("\n".join(lines).rstrip() + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
