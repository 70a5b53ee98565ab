"""Where a bit-true run's CPU time goes: per stage of the crossbar pipeline and per layer.

Maps the workload on the arch (as ``bench_full_testset.py`` does), runs two images once to
compile the kernels, then the first ``--samples`` test images bit-true, and prints the
process CPU seconds of each stage (one thread: ``IMCSIM_THREADS=1`` and one torch thread, so
process time is the stage's own) and of each mapped layer's forward pass:

- ``hw_inputs``: the bridge's activation quantization, im2col and the packed sub-layers'
  row gathers;
- ``split``: DAC steps and driven-row counts (``inputs.split_inputs_activity``);
- ``gemm``: the partial-sum GEMMs (whichever backend ran them: ``IMCSIM_BACKEND``);
- ``adc``: the fused ADC + shift-and-add kernel, with the comparator-noise draws it makes
  (since Dec 2 the kernel draws them itself; trees before that show them as ``comparator
  noise``);
- ``run_chunk``: the whole per-chunk pipeline (the stages above but ``hw_inputs``, plus
  event counting).

    IMCSIM_THREADS=1 nice -n 15 python bench/profile_bittrue.py \\
        examples/cap_ram_65nm_variation.yaml workloads/resnet20_cifar10_capram.yaml \\
        --data-dir ../shared/data --samples 100

``--save FILE`` writes the model's outputs (``.npy``) to compare two trees bit for bit.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.run import _prepare  # noqa: E402
from mappers import map_model  # noqa: E402
from mappers import torch_bridge as tb  # noqa: E402
from sim.config import load_arch  # noqa: E402
from sim.macros import crossbar as cb  # noqa: E402

STAGES: dict[str, float] = collections.defaultdict(float)
LAYERS: dict[str, float] = collections.defaultdict(float)


_DEPTH: dict[str, int] = collections.defaultdict(int)


def _timed(owner, name: str, key: str, table: dict[str, float]) -> None:
    """Add the process time of ``owner.name``'s calls to ``table[key]``; a call made from
    within another timed call of the same key (a backend falling back to numpy's GEMM) is
    counted once."""
    fn = owner.__dict__.get(name) if isinstance(owner, type) else getattr(owner, name, None)
    if fn is None:  # an older tree without this stage (or a class that inherits it)
        return

    def wrapper(*args, **kwargs):
        _DEPTH[key] += 1
        t = time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            _DEPTH[key] -= 1
            if _DEPTH[key] == 0:
                table[key] += time.process_time() - t

    setattr(owner, name, wrapper)


def main(argv=None) -> int:
    """Run the profile and print it."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("arch")
    ap.add_argument("workload")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save", default=None, help="write the outputs here (.npy)")
    args = ap.parse_args(argv)
    if os.environ.get("IMCSIM_THREADS") != "1":
        print("note: IMCSIM_THREADS is not 1; stage times then add up several threads")
    torch.set_num_threads(1)
    _timed(tb.HardwareLayer, "hw_inputs", "hw_inputs", STAGES)
    _timed(cb.inputs_k, "split_inputs_activity", "split", STAGES)
    for backend in (cb.backend_k.NumpyBackend, getattr(cb.backend_k, "TorchCpuBackend", None),
                    getattr(cb.backend_k, "CudaBackend", None)):
        if backend is not None:  # every backend's GEMM (IMCSIM_BACKEND), counted once
            _timed(backend, "gemm", "gemm", STAGES)
    _timed(cb.adc_k, "adc_accumulate", "adc", STAGES)
    _timed(cb.noise_k, "comparator_noise", "comparator noise", STAGES)
    _timed(cb.noise_k, "add_read_noise", "read noise", STAGES)
    _timed(cb.CrossbarLayer, "_run_chunk", "run_chunk", STAGES)
    forward = tb.HardwareLayer.forward

    def layer_forward(self, x):
        t = time.process_time()
        try:
            return forward(self, x)
        finally:
            LAYERS[self.layer_name] += time.process_time() - t

    tb.HardwareLayer.forward = layer_forward
    arch = load_arch(args.arch)
    _, model, x, _, calib, recipe = _prepare(Path(args.workload), args.samples, args.data_dir)
    n = x.shape[0]
    with torch.no_grad():
        mapped = map_model(model, arch, recipe, calib, seed=args.seed)
        mapped(x[:2])  # compile the kernels
        STAGES.clear()
        LAYERS.clear()
        load = os.getloadavg()[0]
        c0, w0 = time.process_time(), time.perf_counter()
        outs = []
        for b, i in enumerate(range(0, n, args.batch_size)):
            mapped.reset_events()
            mapped.set_noise(args.seed, call=b)
            outs.append(mapped(x[i:i + args.batch_size]))
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    print(f"{n} images: {cpu:.2f} s CPU ({1e3 * cpu / n:.1f} ms per image), {wall:.2f} s wall, "
          f"load average {load:.2f} before, {os.getloadavg()[0]:.2f} after")
    for key, val in sorted(STAGES.items(), key=lambda kv: -kv[1]):
        print(f"  {key:18s} {val:7.2f} s  {100 * val / cpu:5.1f} %")
    print("per layer (forward, CPU s):")
    for key, val in LAYERS.items():
        print(f"  {key:24s} {val:6.2f}")
    if args.save:
        np.save(args.save, torch.cat(outs).numpy())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
