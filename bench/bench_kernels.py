"""Speed of the bit-true crossbar path against this machine's own GEMM rates.

Prints, for a 512x512 layer on a batch of 256 and for every Conv/Linear layer of ResNet-20 on
CIFAR-10-sized inputs, the simulated cell-MACs per second of
:meth:`sim.macros.CrossbarLayer.matmul` on the ISAAC-CE config (16-bit weights in 8 two-bit
cells, 16 one-bit input steps), ideal and with cell variation plus a mismatched ADC on every
partial sum; beside them the machine's fp32 GEMM rate (numpy/OpenBLAS and torch) and int8 GEMM
rate (``torch._int_mm``) measured in the same run, before the crossbar rows and again after
them, and the ratio to the faster fp32 rate of the two (a machine whose speed drifts during the
run shows it, and the ratio is the stricter one).

One cell-MAC is one (sample, crossbar row, crossbar column, input step) product, the physical
work of the analog array (padding rows of a layer's last row group included, as on the chip);
the target is at least 0.5 of the fp32 GEMM MAC rate on every row. Work that cannot change the
result is not done (``docs/kernels.md`` section 6), so the ideal rows, whose config is provably
exact, run as one integer product: their rate says how much that saves, not how fast the
per-row-group model is; ``--no-fast-path`` measures the latter.

The array backend is ``IMCSIM_BACKEND`` (default ``auto``) or ``--backend``. The machine is
shared: figures are noisy, so compare the ratios (same run), and repeat.

Run: ``python bench/bench_kernels.py [--batch 256] [--resnet-batch 8] [--repeat 3]``;
``--cpu`` gives the same table by CPU seconds of one worker thread against the one-thread fp32
rate by CPU time (on a shared machine the others' turns count in wall time), every layer the
best of ``--repeat`` calls.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np

from sim.config.loader import arch_from_dict, read_yaml
from sim.macros import CrossbarLayer

ROOT = Path(__file__).resolve().parents[1]
BACKEND: str | None = None
FAST = True
TARGET = 0.5


def best_time(fn, repeat: int, clock=time.perf_counter) -> float:
    """Best time of ``repeat`` calls after one warm-up call (wall time unless ``clock``)."""
    fn()
    times = []
    for _ in range(repeat):
        t = clock()
        fn()
        times.append(clock() - t)
    return min(times)


def gemm_rates(repeat: int, int8: bool = True, clock=time.perf_counter) -> dict[str, float]:
    """MACs per second of fp32 and (with ``int8``) int8 GEMMs on this machine (2048^3); the
    torch rows only where torch is installed."""
    n = 2048
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    rates = {"numpy fp32 sgemm": n**3 / best_time(lambda: a @ a, repeat, clock)}
    if clock is not time.perf_counter:
        return rates
    try:
        import torch
    except ImportError:
        print("  torch not installed: numpy's rate only")
        return rates
    ta = torch.from_numpy(a)
    rates["torch fp32 mm"] = n**3 / best_time(lambda: ta @ ta, repeat)
    if torch.cuda.is_available():  # the device's own limit, for the cuda backend's rows
        ga = ta.cuda()
        prev = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = False

        def on_device():
            ga @ ga
            torch.cuda.synchronize()

        try:
            rates["cuda fp32 mm (TF32 off)"] = n**3 / best_time(on_device, repeat)
        finally:
            torch.backends.cuda.matmul.allow_tf32 = prev
    if not int8:
        return rates
    # 1024^3: on a CPU without VNNI int8 runs at well under 1 G MAC/s, and 2048^3 took minutes.
    n8 = 1024
    i8 = torch.randint(-128, 127, (n8, n8), dtype=torch.int8)
    try:
        rates["torch int8 _int_mm (1024^3)"] = n8**3 / best_time(lambda: torch._int_mm(i8, i8),
                                                                 repeat)
    except (RuntimeError, AttributeError) as exc:  # not every CPU build has it
        print(f"  torch._int_mm unavailable: {exc}")
    return rates


def archs():
    """ISAAC as given (ideal); with cell variation (every partial sum then goes through the
    8-bit ADC's quantization and clipping); and with per-instance mismatched ADC curves too."""
    base = read_yaml(ROOT / "arch_configs" / "isaac_32nm.yaml")
    ideal = arch_from_dict(base, "isaac ideal")
    clip = {**base["crossbar"], "adc": {**base["crossbar"]["adc"], "clip": True}}
    cell = {"distribution": "lognormal", "sigma": 0.05}
    var = dict(base, crossbar=clip, variation={"seed": 1, "cell": cell})
    curves = dict(base, crossbar=clip, variation={
        "seed": 1, "cell": cell,
        "adc": {"offset_sigma_lsb": 0.3, "gain_sigma": 0.01, "cap_mismatch_sigma": 0.02}})
    return (ideal, arch_from_dict(var, "isaac variation + ADC"),
            arch_from_dict(curves, "isaac variation + ADC curves"))


def rate(arch, k: int, n: int, m: int, repeat: int, rng,
         clock=time.perf_counter) -> tuple[float, int]:
    """Cell-MACs per second of one layer (K, N) on M samples (wall time unless ``clock``)."""
    w = rng.integers(-(2**15), 2**15, size=(k, n))
    x = rng.integers(-(2**15), 2**15, size=(m, k))
    layer = CrossbarLayer(arch, w, seed=0, backend=BACKEND, exact_fast_path=FAST)
    cell_macs = layer.matmul(x[:1])[1].cell_macs * m
    return cell_macs / best_time(lambda: layer.matmul(x), repeat, clock), cell_macs


def resnet20_layers(batch: int) -> list[tuple[str, int, int, int]]:
    """(name, K, N, M) of every Conv2d/Linear of ResNet-20 on a batch of 32x32 images."""
    from workloads.models import build_model

    return layer_shapes(build_model("resnet20").eval(), (batch, 3, 32, 32))


def layer_shapes(model, input_shape) -> list[tuple[str, int, int, int]]:
    """(name, K, N, M) of every Conv2d/Linear of ``model`` on inputs of ``input_shape``."""
    import torch
    from torch import nn

    shapes = []

    def hook(name):
        def fn(mod, args, out):
            if isinstance(mod, nn.Conv2d):
                k = mod.in_channels * mod.kernel_size[0] * mod.kernel_size[1] // mod.groups
                shapes.append((name, k, mod.out_channels, out.shape[0] * out.shape[2]
                               * out.shape[3]))
            else:
                shapes.append((name, mod.in_features, mod.out_features, out.shape[0]))
        return fn

    for name, mod in model.named_modules():
        if isinstance(mod, nn.Conv2d | nn.Linear):
            mod.register_forward_hook(hook(name))
    with torch.no_grad():
        model(torch.zeros(*input_shape))
    return shapes


def resnet18_image(arch, rng) -> tuple[float, int]:
    """Wall seconds of every ResNet-18 224x224 layer's bit-true crossbar product for one
    image (8-bit activations, half of them zero as after a ReLU; random 8-bit weights), and
    the cell-MACs. The crossbar work only: im2col and quantization in the torch bridge are
    not included."""
    import sys

    sys.path.insert(0, str(ROOT / "bench"))
    from bench_engine import ResNet18

    total, cell_macs = 0.0, 0
    for _name, k, n, m in layer_shapes(ResNet18().eval(), (1, 3, 224, 224)):
        w = rng.integers(-127, 128, size=(k, n))
        x = np.maximum(rng.integers(-255, 256, size=(m, k)), 0)
        layer = CrossbarLayer(arch, w, seed=0, backend=BACKEND, exact_fast_path=FAST)
        layer.matmul(x[:2])  # compile, warm
        t = time.perf_counter()
        ev = layer.matmul(x)[1]
        total += time.perf_counter() - t
        cell_macs += ev.cell_macs
    return total, cell_macs


def _fp32_cpu(repeat: int) -> float:
    """The one-thread fp32 sgemm rate by CPU time, measured now."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):  # CPU seconds, as the layer's
        return gemm_rates(repeat, int8=False, clock=time.process_time)["numpy fp32 sgemm"]


def _layer_setup(batch: int, repeat: int, weight_bits: int):
    """The one-thread fp32 GEMM rate by CPU time (measured now), and the 512x512 layer's
    weights and ``batch`` 16-bit inputs (seed 0); prints the header line."""
    fp32 = _fp32_cpu(repeat)
    rng = np.random.default_rng(0)
    lo = -(2 ** (weight_bits - 1)) + 1
    w = rng.integers(lo, -lo, size=(512, 512))
    x = rng.integers(-(2**15), 2**15, size=(batch, 512))
    print(f"512x512, batch {batch}, CPU seconds (best of {repeat}), worker threads "
          f"{__import__('sim.macros.crossbar', fromlist=['threads']).threads()}; one-thread "
          f"fp32 sgemm {fp32 / 1e9:.2f} G MAC/s by CPU time:")
    return fp32, w, x


def curves_cpu(batch: int, repeat: int) -> None:
    """Best CPU seconds (this process) and cell-MAC rates of the 512x512 layer: variation and
    an ideal ADC, then mismatched ADC curves column by column (the reference), by instance
    runs through the tables, and by the vectorized SAR walk (the default; the same bits),
    beside the one-thread fp32 GEMM rate by CPU time measured in the same run."""
    _, var, curves = archs()
    fp32, w, x = _layer_setup(batch, repeat, var.weights.bits)
    outs, rows = [], []
    for arch, by_runs, walk, label in ((var, True, True, "variation + ideal ADC"),
                                       (curves, False, False, "+ curves, column by column"),
                                       (curves, True, False, "+ curves, by instance runs"),
                                       (curves, True, True, "+ curves, SAR walk")):
        layer = CrossbarLayer(arch, w, seed=1, backend=BACKEND)
        layer.adc_by_runs, layer.adc_walk = by_runs, walk
        cell_macs = layer.matmul(x[:8], seed=0)[1].cell_macs * batch // 8
        best = float("inf")
        for _ in range(repeat):
            c = time.process_time()
            out, _ = layer.matmul(x, seed=0)
            best = min(best, time.process_time() - c)
        outs.append(out)
        r = cell_macs / best
        print(f"  {label:<32}{best:8.3f} s {r / 1e9:8.2f} G cell-MAC/s  ratio {r / fp32:.3f}")
        rows.append((label, cell_macs / best))
    after = _fp32_cpu(repeat)
    print(f"  one-thread fp32 sgemm after the rows {after / 1e9:.2f} G; ratios against the "
          f"faster ({max(fp32, after) / 1e9:.2f} G): "
          + ", ".join(f"{label.strip()} {r / max(fp32, after):.3f}" for label, r in rows))
    print("  curves paths give the same bits:",
          outs[1].tobytes() == outs[2].tobytes() == outs[3].tobytes())


def read_noise_cpu(batch: int, repeat: int) -> None:
    """Best CPU seconds (this process) and cell-MAC rates of the 512x512 layer with cell
    variation, then with read noise on top (``variation.cell.read_noise_sigma: 0.05``),
    beside the one-thread fp32 GEMM rate by CPU time measured in the same run (CPU time on
    both sides: on a loaded machine wall time counts the other processes' turns)."""
    _, var, _ = archs()
    base = read_yaml(ROOT / "arch_configs" / "isaac_32nm.yaml")
    clip = {**base["crossbar"], "adc": {**base["crossbar"]["adc"], "clip": True}}
    cell = {"distribution": "lognormal", "sigma": 0.05, "read_noise_sigma": 0.05}
    noisy = arch_from_dict(dict(base, crossbar=clip, variation={"seed": 1, "cell": cell}),
                           "isaac variation + read noise")
    fp32, w, x = _layer_setup(batch, repeat, var.weights.bits)
    for arch in (var, noisy):
        layer = CrossbarLayer(arch, w, seed=1, backend=BACKEND)
        cell_macs = layer.matmul(x[:1])[1].cell_macs * batch
        best = float("inf")
        for _ in range(repeat):
            c = time.process_time()
            layer.matmul(x, seed=0)
            best = min(best, time.process_time() - c)
        r = cell_macs / best
        print(f"  {arch.source:<32}{best:8.3f} s {r / 1e9:8.2f} G cell-MAC/s  ratio "
              f"{r / fp32:.3f}")


def noise_draws_cpu(repeat: int) -> None:
    """CPU nanoseconds per normal draw of the compiled comparator-noise fill
    (``sim.kernels.noise``: vectorized Box-Muller on a counter stream) for rows of 21, 24 and 64
    conversions, beside numpy's own ``Generator.standard_normal(dtype=float32)`` into an
    ``out`` array (PCG64 + ziggurat) in the same run: the peer a user would reach for."""
    from sim.kernels import noise as noise_k

    total = 1 << 21
    for cols in (21, 24, 64):
        rows = total // cols - (total // cols) % 8
        out = np.empty((rows, cols), np.float32)
        none = np.zeros(0, np.int32)

        def ours(rows=rows, none=none, out=out):
            noise_k.comparator_noise(noise_k.stream_key(1, 2), 0.1, rows, none, rows // 8, 0,
                                     out)

        def numpy_draws(out=out):
            np.random.default_rng([1, 2]).standard_normal(out=out, dtype=np.float32)

        t_ours = best_time(ours, repeat, time.process_time)
        t_np = best_time(numpy_draws, repeat, time.process_time)
        n = rows * cols
        print(f"  rows of {cols:3d}: imcsim {1e9 * t_ours / n:6.2f} ns per draw, numpy "
              f"standard_normal(float32) {1e9 * t_np / n:6.2f} ns ({t_np / t_ours:4.1f}x)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--resnet-batch", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--backend", choices=("auto", "numpy", "torch", "cuda"), default=None)
    ap.add_argument("--resnet18", action="store_true",
                    help="also time one ResNet-18 224x224 image's crossbar products")
    ap.add_argument("--curves", action="store_true",
                    help="only: CPU seconds of the 512x512 layer with variation, and with ADC "
                         "curves column by column, by instance runs and by the SAR walk, "
                         "against the one-thread fp32 GEMM rate")
    ap.add_argument("--no-fast-path", action="store_true",
                    help="run provably exact configs through the per-row-group model too")
    ap.add_argument("--cpu", action="store_true",
                    help="the same table by CPU seconds of one worker thread, against the "
                         "one-thread fp32 GEMM rate by CPU time (a shared machine's load "
                         "counts in wall time, not in CPU time)")
    ap.add_argument("--read-noise", action="store_true",
                    help="only: CPU seconds of the 512x512 layer with variation, and with "
                         "read noise too, against the one-thread fp32 GEMM rate")
    ap.add_argument("--noise-draws", action="store_true",
                    help="only: CPU ns per normal draw of the compiled noise fill against "
                         "numpy's standard_normal in the same run")
    args = ap.parse_args()
    global BACKEND, FAST
    BACKEND, FAST = args.backend, not args.no_fast_path
    if args.cpu:
        os.environ["IMCSIM_THREADS"] = "1"  # read by sim.macros.crossbar.threads() per call
    from threadpoolctl import threadpool_info

    import sim.macros.crossbar as xb

    try:  # torch's own BLAS/OpenMP show up in the list below once it is loaded
        import torch  # noqa: F401
    except ImportError:
        pass

    print("machine:", platform.processor() or platform.machine(), f"{os.cpu_count()} cpus,",
          f"worker threads {xb.threads()}")
    print("OPENBLAS_CORETYPE =", os.environ.get("OPENBLAS_CORETYPE", "(unset)"))
    for info in threadpool_info():
        print(f"BLAS: {info.get('internal_api')} {info.get('version')} kernel "
              f"{info.get('architecture')} threads {info.get('num_threads')}")
    if args.curves:
        curves_cpu(args.batch, args.repeat)
        return
    if args.read_noise:
        read_noise_cpu(args.batch, args.repeat)
        return
    if args.noise_draws:
        noise_draws_cpu(args.repeat)
        return
    from sim.kernels import backend as backend_k

    print("array backend:", backend_k.resolve(BACKEND), "| exact fast path:", FAST)
    clock = time.perf_counter

    def reference() -> dict[str, float]:
        if args.cpu:
            from threadpoolctl import threadpool_limits

            with threadpool_limits(limits=1, user_api="blas"):
                return gemm_rates(args.repeat, int8=False, clock=clock)
        return gemm_rates(args.repeat)

    if args.cpu:
        clock = time.process_time
        print("\none worker thread, CPU seconds; one-thread GEMM rate by CPU time (MAC/s):")
    else:
        print("\nmachine GEMM rates (2048^3 unless said, MAC/s):")
    rates = reference()
    for name, r in rates.items():
        print(f"  {name:<30}{r / 1e9:8.2f} G")

    rng = np.random.default_rng(0)
    rows = []
    for arch in archs():
        r, _ = rate(arch, 512, 512, args.batch, args.repeat, rng, clock)
        rows.append((f"512x512, batch {args.batch}, {arch.source}", r))
    for arch in archs():
        total_macs, total_time = 0, 0.0
        for _name, k, n, m in resnet20_layers(args.resnet_batch):
            # one timed call per layer (wall time, as before); best of --repeat by CPU time
            r, cm = rate(arch, k, n, m, args.repeat if args.cpu else 1, rng, clock)
            total_macs += cm
            total_time += cm / r
        rows.append((f"ResNet-20 all layers, batch {args.resnet_batch}, {arch.source}",
                     total_macs / total_time))
    # The reference again after the rows: a machine whose speed drifted during the run shows
    # it here, and each ratio is taken against the faster of the two (the stricter).
    after = reference()
    best = {k: max(v, after.get(k, 0.0)) for k, v in rates.items()}
    # The limit of the device the GEMMs run on: the GPU's for the cuda backend, else the CPU's.
    on_gpu = backend_k.resolve(BACKEND) == "cuda" and any(k.startswith("cuda") for k in best)
    if args.cpu and backend_k.resolve(BACKEND) == "cuda":
        print("  note: --cpu times one CPU thread: the ratios are to the CPU's rate")
    fp32 = max(v for k, v in best.items() if "fp32" in k and k.startswith("cuda") == on_gpu)
    print("  fp32 again after the rows: " + ", ".join(
        f"{k} {v / 1e9:.2f} G" for k, v in after.items() if "fp32" in k))
    print(f"\nbit-true crossbar path (ratio = cell-MAC/s / the faster {'GPU' if on_gpu else 'CPU'} "
          f"fp32 GEMM rate, before or after the rows; target >= {TARGET}):")
    print(f"  {'case':<44}{'cell-MAC/s':>12}{'ratio':>8}")
    for label, r in rows:
        ok = "meets target" if r / fp32 >= TARGET else "BELOW target"
        print(f"  {label:<44}{r / 1e9:10.2f} G{r / fp32:8.3f}  {ok}")
    if args.resnet18:
        print("\nResNet-18 224x224, one image, crossbar products only (target < 2 s):")
        for arch in archs()[:2]:
            t, cm = resnet18_image(arch, rng)
            print(f"  {arch.source:<44}{t:8.2f} s  ({cm / t / 1e9:.1f} G cell-MAC/s)")


if __name__ == "__main__":
    main()
