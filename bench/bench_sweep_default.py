"""Wall time of an analytical sweep end to end through ``run_sweep``, by executor.

``imcsim sweep`` without ``--workers`` runs an analytical sweep in the calling process and
hands the rest to a local pool only once it would take more than 30 s there
(``analysis.executors.Auto``). This compares, in fresh processes one after another, the
default (``auto``), one process (``--workers 0``) and a pool of the usable cores from the start
(``pool``: the default before Dec 2), on two ``cifar_cnn`` grids on ISAAC: 45 points (ADC bits
x crossbar size x cell bits) and 324 (also DAC bits and tile count). Each run includes the
workload's preparation (data, model, float pass, histograms) in every process that runs
points, as a user's sweep does.

    python bench/bench_sweep_default.py --data-dir ../shared/data [--repeat 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

GRID = """name: bench_default
arch: {arch}
workload: {workload}
samples: 64
seed: 0
mode: analytical
fixed:
  crossbar.adc.clip: true
parameters:
  crossbar.adc.bits: {adc}
  crossbar.size: {{paths: [crossbar.rows, crossbar.columns], values: [64, 128, 256]}}
  crossbar.cell.bits: [1, 2, 4]
{extra}sampling: grid
objectives:
  tops_per_w: max
  area_mm2: min
"""
GRIDS = {
    "45 points": ("[4, 5, 6, 7, 8]", ""),
    "324 points": ("[3, 4, 5, 6, 7, 8]",
                   "  crossbar.dac.bits: [1, 2]\n  organization.tiles: [84, 168, 336]\n"),
}
MODES = {"auto (default)": "auto", "one process (--workers 0)": "serial",
         "pool from the start": "pool"}

RUN = """
import dataclasses, sys, time
from pathlib import Path
import analysis.sweep as sweep_mod
from analysis.executors import LocalPool
from analysis.sweep_spec import load_sweep
spec, out, data, mode = sys.argv[1:5]
if mode == "pool":  # the default before Dec 2: a pool of the usable cores from the start
    sweep_mod.make_executor = lambda *a, **k: LocalPool(None)
s = dataclasses.replace(load_sweep(Path(spec)), data_dir=data)
t = time.perf_counter()
o = sweep_mod.run_sweep(s, Path(out), workers=0 if mode == "serial" else None, progress=False)
print(f"{time.perf_counter() - t:.2f} {len(o.rows)} {o.by_status().get('ok', 0)}")
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=os.environ.get("IMCSIM_DATA"))
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    if not args.data_dir:
        raise SystemExit("needs CIFAR-10: --data-dir FOLDER or IMCSIM_DATA")
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start; wall "
          "seconds of each run in a fresh process, end to end")
    with tempfile.TemporaryDirectory() as tmp:
        for grid, (adc, extra) in GRIDS.items():
            spec = Path(tmp) / f"{grid.split()[0]}.yaml"
            spec.write_text(GRID.format(arch=ROOT / "arch_configs" / "isaac_32nm.yaml",
                                        workload=ROOT / "workloads" / "cifar_cnn_cifar10.yaml",
                                        adc=adc, extra=extra))
            times: dict[str, list[float]] = {k: [] for k in MODES}
            for r in range(args.repeat):
                for label, mode in MODES.items():
                    out = Path(tmp) / f"{grid.split()[0]}_{r}_{mode}"
                    proc = subprocess.run(
                        [sys.executable, "-c", RUN, str(spec), str(out), args.data_dir, mode],
                        capture_output=True, text=True, check=True, cwd=ROOT,
                        env={**os.environ, "PYTHONPATH": str(ROOT)})
                    wall, n, ok = proc.stdout.split()
                    times[label].append(float(wall))
            print(f"  {grid} ({n} made, {ok} ok):")
            for label, ts in times.items():
                print(f"    {label:<28}" + "  ".join(f"{t:6.2f} s" for t in ts))
    print(f"load average {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"({time.perf_counter() - start:.0f} s in all)")
