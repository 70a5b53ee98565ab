"""Run the compression experiments of issue 10 (docs/compression.md, "Experiments").

Each experiment is one ``imcsim compress WORKLOAD SPEC --out OUT`` run. Variants of a
committed base spec (a connectivity rate, a unification block shape, BSP rates) are written
to ``results/compress/specs/NAME.yaml`` by overriding the parameters of one method on every
layer that has it, so the committed example files stay the single source of each recipe. A
run whose manifest ``OUT/NAME.json`` exists is skipped (delete it to redo); an interrupted
run resumes from its ``.partial`` state; a lock file beside the written spec keeps two
runners from running the same experiment at once. Every command, its wall time and the manifest's
headline figures are appended to ``results/compress/experiments.log``.

    python bench/compress_experiments.py --data-dir /path/to/data [--only gru_bsp_10x ...]
    python bench/compress_experiments.py --network resnet20 --data-dir ...   # when trained
    python bench/compress_experiments.py --list

The hardware columns come from ``bench/compress_tables.py`` (``make compress-tables``).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent

#: The networks the CIFAR-10 tables run on: base workload and the per-method base specs.
NETWORKS = {
    "cifar_cnn": {"workload": "workloads/cifar_cnn_cifar10.yaml",
                  "patdnn": "examples/compress_cifar_cnn_patdnn.yaml",
                  "unify": "examples/compress_cifar_cnn_unify.yaml"},
    "resnet20": {"workload": "workloads/resnet20_cifar10.yaml",
                 "patdnn": "examples/compress_resnet20_patdnn.yaml",
                 "unify": "examples/compress_resnet20_unify.yaml"},
}

#: GRU BSP rates: blocks of 128 rows (a whole gate matrix's height) x 16 input columns, the
#: released RTMobile models' "block_prune_filter" layout (rows pruned inside column blocks);
#: beyond a row rate of 43 the 300x point also prunes columns (see docs/compression.md).
GRU_BSP = {
    "gru_bsp_10x": {"block": [128, 16], "row_rate": 10, "column_rate": 1},
    "gru_bsp_20x": {"block": [128, 16], "row_rate": 21.4, "column_rate": 1},
    "gru_bsp_80x": {"block": [128, 16], "row_rate": 43, "column_rate": 2},
    "gru_bsp_300x": {"block": [128, 16], "row_rate": 43, "column_rate": 8},
}


def experiments(network: str) -> dict[str, dict]:
    """Every experiment by name: workload, base spec, the method whose parameters change."""
    net = NETWORKS[network]
    out: dict[str, dict] = {}
    for rate in (1, 2, 4):
        out[f"{network}_patdnn_c{rate}"] = {
            "group": "patdnn", "workload": net["workload"], "spec": net["patdnn"],
            "method": "connectivity", "params": {"rate": rate}}
    for shape in ((4, 4), (8, 1), (1, 8)):
        out[f"{network}_unify_{shape[0]}x{shape[1]}"] = {
            "group": "unify", "workload": net["workload"], "spec": net["unify"],
            "method": "unify", "params": {"block": list(shape)}}
    if network == "cifar_cnn":  # the network-independent tables run once
        for name, params in GRU_BSP.items():
            out[name] = {"group": "gru_bsp", "workload": "workloads/gru_rowmnist.yaml",
                         "spec": "examples/compress_gru_bsp.yaml", "method": "bsp",
                         "params": params}
        # The 10x point again with a longer recipe: how much of the short runs' loss is
        # training length.
        out["gru_bsp_10x_long"] = {**out["gru_bsp_10x"],
                                   "top": {"admm": {"epochs": 3}, "finetune": {"epochs": 3}}}
        out["lenet5_mnist_forms"] = {"group": "lenet_forms", "workload": "lenet5_mnist",
                                     "spec": "examples/compress_lenet5_forms23.yaml",
                                     "method": None, "params": {}}
    return out


def variant(base: Path, name: str, method: str | None, params: dict,
            top: dict | None = None) -> dict:
    """The base spec with ``name``, the top-level sections of ``top`` updated (such as
    ``{"admm": {"epochs": 3}}``) and, on every layer having ``method``, ``params`` set."""
    spec = yaml.safe_load(base.read_text())
    spec = copy.deepcopy(spec)
    spec["name"] = name
    for key, value in (top or {}).items():
        spec[key] = {**(spec.get(key) or {}), **value}
    if method is not None:
        touched = 0
        for layer in spec["layers"].values():
            if method in layer:
                layer[method] = {**(layer[method] or {}), **params}
                touched += 1
        if method == "connectivity" and params.get("rate") == 1:
            for layer in spec["layers"].values():  # rate 1 = patterns only
                layer.pop("connectivity", None)
                touched += 1
        if not touched:
            raise SystemExit(f"{base}: no layer uses {method}")
    return spec


def main(argv: list[str] | None = None) -> int:  # noqa: D103
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--network", choices=sorted(NETWORKS), default="cifar_cnn")
    ap.add_argument("--workload", help="override the CIFAR-10 network's workload YAML")
    ap.add_argument("--data-dir", default=os.environ.get("IMCSIM_DATA"))
    ap.add_argument("--out", default="workloads/compressed", help="output folder")
    ap.add_argument("--only", nargs="*", help="experiment names (default: all)")
    ap.add_argument("--list", action="store_true", help="list the experiments and exit")
    ap.add_argument("--dry-run", action="store_true", help="write specs, print commands")
    args = ap.parse_args(argv)

    table = experiments(args.network)
    if args.list:
        for name, e in table.items():
            print(f"{name:28s} {e['group']:12s} {e['workload']}  {e['spec']}  {e['params']}")
        return 0
    names = args.only or list(table)
    unknown = [n for n in names if n not in table]
    if unknown:
        raise SystemExit(f"unknown experiments {unknown}; --list shows them")
    spec_dir = ROOT / "results" / "compress" / "specs"
    spec_dir.mkdir(parents=True, exist_ok=True)
    log = ROOT / "results" / "compress" / "experiments.log"
    imcsim = str(Path(sys.executable).with_name("imcsim"))
    out = Path(args.out)
    for name in names:
        e = table[name]
        workload = args.workload if args.workload and e["group"] in ("patdnn", "unify") \
            else e["workload"]
        spec_path = spec_dir / f"{name}.yaml"
        spec_path.write_text(f"# {name}: {e['spec']} with {e['method']} {e['params']} "
                             "(written by bench/compress_experiments.py)\n"
                             + yaml.safe_dump(variant(ROOT / e["spec"], name, e["method"],
                                                      e["params"], e.get("top")),
                                              sort_keys=False))
        cmd = [imcsim, "compress", workload, str(spec_path.relative_to(ROOT)), "--out",
               str(out), "--quiet"]
        if args.data_dir:
            cmd += ["--data-dir", args.data_dir]
        if (ROOT / out / f"{name}.json").exists() and not args.dry_run:
            print(f"{name}: done already ({out / (name + '.json')})")
            continue
        print("$ " + shlex.join(["imcsim", *cmd[1:]]), flush=True)
        if args.dry_run:
            continue
        # Two runners started side by side must not run one experiment twice (both would
        # resume from and write the same .partial state).
        lock = spec_dir / f"{name}.lock"
        try:
            lock.open("x").close()
        except FileExistsError:
            print(f"{name}: another runner holds {lock} (delete it if none is running)")
            continue
        start = time.time()
        try:
            rc = subprocess.call(cmd, cwd=ROOT)
        finally:
            lock.unlink(missing_ok=True)
        seconds = time.time() - start
        line = {"name": name, "command": shlex.join(["imcsim", *cmd[1:]]), "rc": rc,
                "wall_s": round(seconds, 1)}
        manifest = ROOT / out / f"{name}.json"
        if rc == 0 and manifest.exists():
            m = json.loads(manifest.read_text())
            line.update(float=m["baseline_accuracy"], hard=m["hard_projection_accuracy"],
                        final=m["test_accuracy"],
                        rate=m["totals"]["compressed_pruning_rate"])
        with log.open("a") as f:
            f.write(json.dumps(line) + "\n")
        print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
