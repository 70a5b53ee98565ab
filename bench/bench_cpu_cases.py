"""One-thread CPU seconds of the bit-true cases of ``bench_kernels.py``, for before/after.

On a shared machine wall-clock rates swing with the load; CPU seconds of one thread
(``IMCSIM_THREADS=1``, ``time.process_time``) swing much less. Run it on two commits and
compare (``docs/performance.md`` shows how)::

    git archive <old> | tar -x -C /tmp/old
    (cd /tmp/old && IMCSIM_THREADS=1 PYTHONPATH=/tmp/old python /path/to/bench_cpu_cases.py)
    IMCSIM_THREADS=1 PYTHONPATH=$PWD python bench/bench_cpu_cases.py [--no-fast-path]

The script imports ``bench_kernels`` from the tree on ``PYTHONPATH`` (its ``bench/``), so the
same cases run against each tree's ``sim``. ``--no-fast-path`` needs a tree that has it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

#: cifar_cnn's crossbar layers: (K, N, vectors per image).
CIFAR_CNN = [(27, 16, 1024), (144, 16, 1024), (144, 32, 256), (288, 32, 256), (288, 64, 64),
             (576, 64, 64), (1024, 10, 1)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-fast-path", action="store_true")
    args = ap.parse_args()
    root = os.environ.get("PYTHONPATH", ".").split(os.pathsep)[0]
    sys.path.insert(0, os.path.join(root, "bench"))
    import bench_kernels as bk

    from sim.macros import CrossbarLayer

    kw = {"exact_fast_path": False} if args.no_fast_path else {}
    ideal, var, curves = bk.archs()

    def cpu(layer, x, rep=3):
        layer.matmul(x[:4])
        times = []
        for _ in range(rep):
            t = time.process_time()
            layer.matmul(x)
            times.append(time.process_time() - t)
        return min(times)

    rng = np.random.default_rng(0)
    w = rng.integers(-2**15, 2**15, size=(512, 512))
    x = rng.integers(-2**15, 2**15, size=(256, 512))
    for arch in (ideal, var, curves):
        t = cpu(CrossbarLayer(arch, w, seed=0, **kw), x)
        print(f"512x512 b256 {arch.source:<32} {t:.3f} s cpu")
    for arch in (ideal, var, curves):
        tot = 0.0
        for _n, k, n, m in bk.resnet20_layers(8):
            wl = rng.integers(-2**15, 2**15, size=(k, n))
            xl = rng.integers(-2**15, 2**15, size=(m, k))
            tot += cpu(CrossbarLayer(arch, wl, seed=0, **kw), xl, 1)
        print(f"ResNet-20 b8 {arch.source:<32} {tot:.3f} s cpu")
    tot = 0.0
    for k, n, v in CIFAR_CNN:
        wl = rng.integers(-127, 128, size=(k, n))
        xl = np.maximum(rng.integers(-255, 256, size=(v * 10, k)), 0)
        tot += cpu(CrossbarLayer(var, wl, seed=0, **kw), xl, 1)
    print(f"cifar_cnn layers x10 images, 8-bit ReLU inputs, variation {tot:.3f} s cpu")


if __name__ == "__main__":
    main()
