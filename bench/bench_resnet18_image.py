"""One ResNet-18 224x224 image bit-true on an arch, end to end through the torch bridge.

Maps ``bench_engine.ResNet18`` (random weights, seed 0; 8-bit weights and activations) with
``map_model``, runs one warm-up image (kernel compilation), then times one more image's
``mapped(x)``: activation quantization, im2col and every layer's crossbar products. Prints
CPU and wall seconds (issue 14 D6: under 2 s). ``--save FILE`` writes the output (torch) to
compare two trees bit for bit.

    IMCSIM_THREADS=1 nice -n 15 python bench/bench_resnet18_image.py arch_configs/isaac_32nm.yaml
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_engine import ResNet18  # noqa: E402

from mappers import QuantRecipe, map_model  # noqa: E402
from sim.config import load_arch  # noqa: E402


def main(argv=None) -> int:
    """Time the image and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("arch")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--save", default=None)
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    arch = load_arch(args.arch)
    model = ResNet18().eval()
    calib, x = torch.rand(4, 3, 224, 224), torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        mapped = map_model(model, arch, QuantRecipe(weight_bits=8, activation_bits=8), calib,
                           seed=0)
        mapped(x[:1])  # compile, warm
        cpu, wall = time.process_time(), time.perf_counter()
        y = mapped(x[1:2])
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(f"{arch.name}: ResNet-18 224x224, one image bit-true: {cpu:.2f} s CPU, {wall:.2f} s "
          f"wall (load average {os.getloadavg()[0]:.2f})")
    if args.save:
        torch.save(y, args.save)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
