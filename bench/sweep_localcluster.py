"""Run ``imcsim sweep`` on a Dask ``LocalCluster`` started for the occasion.

The same code path as a real cluster (``--scheduler tcp://HOST:PORT``), on this machine:

    python bench/sweep_localcluster.py SWEEP.yaml --workers 2 [--out DIR] [--data-dir DIR]

It starts a ``distributed.LocalCluster`` of ``--workers`` single-threaded worker processes,
runs ``imcsim sweep SWEEP.yaml --scheduler <its address>`` as a separate process, prints
its output and shuts the cluster down.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("spec")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", default=None)
    p.add_argument("--data-dir", default=None)
    args = p.parse_args()
    from distributed import LocalCluster

    imcsim = Path(sys.executable).with_name("imcsim")
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        print(f"LocalCluster at {cluster.scheduler_address}, {args.workers} workers", flush=True)
        cmd = [str(imcsim), "sweep", args.spec, "--scheduler", cluster.scheduler_address]
        if args.out:
            cmd += ["--out", args.out]
        if args.data_dir:
            cmd += ["--data-dir", args.data_dir]
        print("$ " + " ".join(cmd), flush=True)
        return subprocess.run(cmd, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
