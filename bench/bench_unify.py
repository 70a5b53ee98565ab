"""Speed of the unification Z-step (``Unify.project``) on ResNet-20's 18 3x3 convolutions.

For each block shape, the CPU time of one projection of every layer (the cost of one ADMM
Z-step of ``examples/compress_resnet20_unify.yaml``: zero_fraction 0.5, unify_fraction 0.3),
its total over the model, and beside it this machine's one-thread fp32 GEMM rate by CPU time
(``bench_kernels.gemm_rates``) measured in the same run, expressed as the GEMM MACs the same
CPU time buys and as a fraction of one training step's MACs (forward + backward, about three
forward passes, of a batch of 128). ``--reference`` also times the former block choice
(scipy's ``linear_sum_assignment`` on a blocks x (zero + unify slots) cost matrix, kept as
the test oracle in ``tests/test_compress.py``): O(n**3), tens of CPU-seconds per 64x64
layer with [8, 1] or [1, 8] blocks, so minutes per block shape.

Weights are a seeded random initialization (the choice's cost does not depend on training).
The machine is shared: CPU time, best of ``--repeat``.

Run: ``python bench/bench_unify.py [--blocks 4x4 8x1 1x8] [--repeat 3] [--reference]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench"), str(ROOT / "tests")]

from bench_kernels import best_time, gemm_rates  # noqa: E402

from mappers.compress.projections import Unify  # noqa: E402
from workloads.models import build_model  # noqa: E402

ZERO_FRACTION, UNIFY_FRACTION, BATCH = 0.5, 0.3, 128


def resnet20_convs() -> tuple[dict[str, torch.Tensor], int]:
    """The 3x3 convolutions of the residual stages (name -> weight) and the forward MACs of
    one image."""
    torch.manual_seed(0)
    model = build_model("resnet20").eval()
    macs = []

    def count(module, inputs, out):
        k = module.weight[0].numel() if isinstance(module, nn.Conv2d) else module.in_features
        macs.append(out.numel() * k)

    hooks = [m.register_forward_hook(count) for m in model.modules()
             if isinstance(m, nn.Conv2d | nn.Linear)]
    with torch.no_grad():
        model(torch.zeros(1, 3, 32, 32))
    for h in hooks:
        h.remove()
    convs = {name: m.weight.detach().clone() for name, m in model.named_modules()
             if isinstance(m, nn.Conv2d) and name.startswith("layer")
             and m.kernel_size == (3, 3)}
    return convs, sum(macs)


def main(argv: list[str] | None = None) -> None:
    """Print the per-layer and per-model projection times."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--blocks", nargs="+", default=["4x4", "8x1", "1x8"])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--reference", action="store_true",
                    help="also time the former scipy assignment (minutes)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    convs, image_macs = resnet20_convs()
    fp32 = gemm_rates(args.repeat, int8=False, clock=time.process_time)["numpy fp32 sgemm"]
    step_macs = 3 * image_macs * BATCH
    print(f"fp32 sgemm {fp32 / 1e9:.2f} G MAC/s by CPU time (one thread); one training step "
          f"(batch {BATCH}, ~3 forward passes) = {step_macs / 1e9:.2f} G MAC")
    if args.reference:
        from test_compress import _assignment_reference, _block_costs
    for text in args.blocks:
        block = tuple(int(x) for x in text.split("x"))
        proj = Unify(block, ZERO_FRACTION, UNIFY_FRACTION)
        rows = []
        for name, w in convs.items():
            blocks = len(proj.choose(w))
            fast = best_time(lambda w=w, p=proj: p.project(w), args.repeat, time.process_time)
            ref = None
            if args.reference:  # one call: tens of seconds on the largest layers
                start = time.process_time()
                zero, unify = _block_costs(proj, w)
                _assignment_reference(zero, unify, *proj.counts(len(zero)))
                ref = time.process_time() - start
            rows.append((name, tuple(w.shape), blocks, fast, ref))
        print(f"\nblock {list(block)} (zero {ZERO_FRACTION}, unify {UNIFY_FRACTION}):")
        head = f"  {'layer':16} {'weight':16} {'blocks':>6} {'project s':>10}"
        print(head + (f" {'former choice s':>16}" if args.reference else ""))
        for name, shape, blocks, fast, ref in rows:
            line = f"  {name:16} {str(shape):16} {blocks:6d} {fast:10.4f}"
            print(line + (f" {ref:16.3f}" if ref is not None else ""))
        total = sum(r[3] for r in rows)
        print(f"  one Z-step, 18 convs: {total:.3f} s CPU = {total * fp32 / 1e9:.2f} G fp32 "
              f"GEMM MAC = {total * fp32 / step_macs:.3f} training steps' MACs")
        if args.reference:
            old_total = sum(r[4] for r in rows)
            print(f"  former choice, 18 convs: {old_total:.1f} s CPU = "
                  f"{old_total * fp32 / step_macs:.1f} training steps' MACs "
                  f"({old_total / total:.0f}x the projection now)")


if __name__ == "__main__":
    main()
