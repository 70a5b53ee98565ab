"""Activation memory and training time of reversible spiking blocks against the same network
with stored activations (workloads/spiking.py, RevSpikingNet).

For each depth the two networks (same weights) run one training step on the same batch:

- activation memory per image: bytes of the tensors autograd saves for backward during the
  forward pass (``torch.autograd.graph.saved_tensors_hooks``; a tensor saved twice counted
  once, by storage), divided by the batch size. This is the memory the papers' claims are
  about; weights, optimizer state and the transient working set of the backward pass (one
  block's recomputation) are not in it.
- training time: median seconds of forward + backward over ``--repeats`` steps, and its ratio;
  the machine's own fp32 GEMM rate measured in the same run for scale.

Usage (two cores, a few minutes):

    nice -n 5 python bench/bench_revsnn.py --depths 2 4 8 16 --width 32 --time-steps 4
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workloads.spiking import RevSpikingNet  # noqa: E402


def gemm_gflops(n: int = 512, repeats: int = 5) -> float:
    """The machine's fp32 GEMM rate (GFLOP/s), best of ``repeats``."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def saved_bytes(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[int, float]:
    """(bytes saved for backward by the forward pass, seconds of forward + backward)."""
    seen: dict[tuple[int, int], int] = {}

    def pack(t: torch.Tensor):
        key = (t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
        seen[key] = t.untyped_storage().nbytes()
        return t

    model.zero_grad(set_to_none=True)
    t0 = time.perf_counter()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = F.cross_entropy(model(x), y)
    loss.backward()
    return sum(seen.values()), time.perf_counter() - t0


def step_seconds(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.zero_grad(set_to_none=True)
    t0 = time.perf_counter()
    F.cross_entropy(model(x), y).backward()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:  # noqa: D103
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--depths", type=int, nargs="+", default=[2, 4, 8, 16])
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--time-steps", type=int, default=4)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=32, help="image height and width")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(min(args.threads, 2))
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, args.size, args.size)
    y = torch.randint(0, 10, (args.batch,))
    print(f"machine fp32 GEMM: {gemm_gflops():.1f} GFLOP/s; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print(f"RevSpikingNet width {args.width}, T {args.time_steps}, batch {args.batch}, "
          f"{args.size}x{args.size} images, LIF neurons")
    print(f"{'depth':>5} {'standard MiB/img':>17} {'reversible MiB/img':>19} {'ratio':>7} "
          f"{'std s/step':>11} {'rev s/step':>11} {'time ratio':>10}")
    for depth in args.depths:
        kw = dict(width=args.width, depth=depth, time_steps=args.time_steps)
        rev = RevSpikingNet(reversible=True, **kw).train()
        std = RevSpikingNet(reversible=False, **kw).train()
        std.load_state_dict(rev.state_dict())
        mem_rev, _ = saved_bytes(rev, x, y)
        mem_std, _ = saved_bytes(std, x, y)
        t_rev = statistics.median(step_seconds(rev, x, y) for _ in range(args.repeats))
        t_std = statistics.median(step_seconds(std, x, y) for _ in range(args.repeats))
        mib = 2**20 * args.batch
        print(f"{depth:>5} {mem_std / mib:>17.3f} {mem_rev / mib:>19.3f} "
              f"{mem_std / mem_rev:>6.2f}x {t_std:>11.3f} {t_rev:>11.3f} {t_rev / t_std:>9.2f}x")


if __name__ == "__main__":
    main()
