"""Speed of the cycle-level schedule and of analytical mode on ResNet-18 (224x224).

(a) One image of ResNet-18 on the ISAAC-CE config: a float forward pass to take each layer's
    8-bit input histogram, the torch.fx layer graph (residual adds, pooling, activations),
    analytical event counts, placement with duplication, and the full simpy schedule with
    contention (tile buffer ports, NoC links on XY routes) over the graph: one inference for
    the latency and a stream of inferences for the steady-state interval. Prints wall time
    per stage and the peak resident memory.
    Target: under 2 s on 2 cores (PIMSIM-NN, a cycle-accurate SystemC peer, reports 59.5 s
    for ResNet-18).
(b) Analytical mode over a design grid (ADC bits x crossbar rows x cell bits): event
    estimates, geometry and energy for every (design point, layer). Prints design points x
    layers per second, with and without the time to validate each design's YAML.
    This is the cached-kernel figure: event estimates from input histograms taken once,
    without mapping, scheduling, area or a result.
(c) Analytical sweep end to end, through the path ``imcsim sweep`` runs (``analysis.sweep.
    run_sweep`` with ``mode: analytical``, its executor, ``analysis.executors.
    evaluate_point``, ``analysis.run.estimate``): per point the arch YAML is validated and
    calibrated, the prepared model mapped onto it, events estimated, placement, the simpy
    schedule, area and the result built and stored in ``sweep.db``. The float pass, input
    extraction and histograms are taken once per workload and worker and reused
    (``analysis.run._AnalyticalWorkload``); a simpy run is reused by the points whose
    schedule inputs are equal (``sim.engine.timing._simulate_memo``), a mapping by the points
    that differ only in what a mapping does not read (``_AnalyticalWorkload.mapping``: the
    ADC, energies, components) and the placement's copies by the points with the same
    figures (``sim.engine.placement._copies``); all three are cleared before each pass, so
    the warm pass makes its own. Prints (design points x mapped layers) per second
    with and without the worker's one-time preparation, and a profile of the steady state.
    Target: at least 1,000 per second (CiMLoop reports up to 1,076).

Run: ``python bench/bench_engine.py [--threads 1] [--sweep-only] [--workload NAME]
[--data-dir DIR]``.
"""

from __future__ import annotations

import copy
import cProfile
import dataclasses
import io
import itertools
import os
import pstats
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from mappers import fold_batchnorm
from mappers.quantize import activation_quant
from mappers.torch_bridge import trace_graph
from sim.config.loader import arch_from_dict, read_yaml
from sim.engine.analytical import InputHistogram, estimate_events
from sim.engine.placement import LayerShape, place
from sim.engine.timing import schedule
from sim.errors import UserError
from sim.stats import energy_by_event_pj, total_pj
from workloads.models import BasicBlock

ROOT = Path(__file__).resolve().parents[1]


class ResNet18(nn.Module):
    """ResNet-18 for 224x224 ImageNet inputs (He et al. 2016), random weights: the benchmark
    needs shapes and plausible activation statistics, not accuracy."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False),
                                  nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        blocks, c = [], 64
        for out, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            blocks += [BasicBlock(c, out, stride), BasicBlock(out, out, 1)]
            c = out
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, 1000))

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)))


def layer_stats(model: nn.Module, x: torch.Tensor, bits: int, run=None):
    """(LayerShape, statistics of the 8-bit quantized input vectors) per Conv2d/Linear, in
    call order.

    ``run`` (default ``model(x)``) is the forward pass to watch: the schedule benchmark
    passes the layer-graph trace, whose shape propagation is itself a forward pass.
    """
    records = []

    def hook(name):
        def fn(mod, args, out):
            inp = args[0]
            q = activation_quant(float(inp.min()), float(inp.max()), bits, True)
            x = q.to_int(inp)
            if isinstance(mod, nn.Conv2d):  # the layer's input vectors (vectors, K)
                x = F.unfold(x.double(), mod.kernel_size, dilation=mod.dilation,
                             padding=mod.padding, stride=mod.stride)
                x = x.transpose(1, 2).reshape(-1, x.shape[1])
            hist = InputHistogram.of(x.to(torch.int64).numpy())
            if isinstance(mod, nn.Conv2d):
                k = mod.in_channels * mod.kernel_size[0] * mod.kernel_size[1]
                shape = dict(k=k, n=mod.out_channels, vectors=out.shape[2] * out.shape[3],
                             out_width=out.shape[3], kernel_height=mod.kernel_size[0])
            else:
                shape = dict(k=mod.in_features, n=mod.out_features, vectors=1)
            records.append((name, shape, hist))
        return fn

    for name, mod in model.named_modules():
        if isinstance(mod, nn.Conv2d | nn.Linear):
            mod.register_forward_hook(hook(name))
    with torch.no_grad():
        (run or (lambda: model(x)))()
    shapes, prev = [], None
    for name, shape, _ in records:
        shapes.append(LayerShape(name=name, source=prev, **shape))
        prev = name
    return shapes, [h for _, _, h in records]


def bench_schedule(base: dict) -> None:
    arch = arch_from_dict(base, "isaac")
    torch.manual_seed(0)
    model = ResNet18().eval()
    image = torch.randn(1, 3, 224, 224)
    # One-time costs, not per-image work: the numba compilation of the input-statistics
    # kernels and the lazy imports behind them (printed, not counted).
    w0 = time.perf_counter()
    InputHistogram.of(np.zeros((2, 3), np.int64))
    warm = time.perf_counter() - w0
    c0 = time.process_time()
    t0 = time.perf_counter()
    folded, _ = fold_batchnorm(model)
    names = [n for n, m in folded.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    traced = []
    shapes, hists = layer_stats(
        folded, image, 8, run=lambda: traced.append(trace_graph(folded, image, names)))
    graph, note = traced[0]
    if graph is None:
        raise SystemExit(f"ResNet-18 did not trace: {note}")
    t1 = t2 = time.perf_counter()
    c1 = time.process_time()
    events = [estimate_events(arch, s.k, s.n, s.vectors, h) for s, h in zip(shapes, hists,
                                                                              strict=True)]
    activity = {s.name: e.activity for s, e in zip(shapes, events, strict=True)
                if e.activity is not None}
    t3 = time.perf_counter()
    placements = place(arch, shapes)
    t4 = time.perf_counter()
    c4 = time.process_time()
    timing = schedule(arch, placements, activity, graph=graph)
    t5 = time.perf_counter()
    c5 = time.process_time()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ops = sum(2 * e.macs for e in events)
    digital = [t for t in timing.nodes]
    print("(a) ResNet-18 224x224, one image, ISAAC-CE, cycle-level schedule over the layer "
          "graph with contention")
    print(f"    graph nodes {len(graph.nodes)} ({len(shapes)} layers, {len(digital)} digital "
          f"work nodes), crossbars used {timing.crossbars_used} of {timing.crossbars_total}, "
          f"simpy operations per inference "
          f"{sum(t.operations for t in timing.layers + timing.nodes)}, "
          f"stream of {timing.inferences}; per-step activity for {len(activity)} layers")
    print(f"    one-time warm-up (numba compilation, imports) {warm:.3f} s, not counted")
    print(f"    batch-norm folding + fx graph with shape propagation (the float pass) + input "
          f"histograms {t1 - t0:.3f} s, analytical events {t3 - t2:.3f} s, placement "
          f"{t4 - t3:.3f} s, schedule {t5 - t4:.3f} s")
    print(f"    CPU time of this process: float pass and graph {c1 - c0:.3f} s, events and "
          f"placement {c4 - c1:.3f} s, schedule {c5 - c4:.3f} s")
    total = t5 - t0
    print(f"    total {total:.3f} s wall, {c5 - c0:.3f} s CPU of this process (the machine is "
          f"shared: CPU time is the steadier figure) (target < 2 s: "
          f"{'met' if total < 2 else 'NOT met'}); peak resident memory {rss:.0f} MiB")
    waits = sum(t.wait_resource_cycles for t in timing.layers + timing.nodes)
    print(f"    simulated latency {timing.latency_s * 1e6:.1f} us, interval "
          f"{timing.interval_cycles} cycles = {timing.inferences_per_s:.1f} inferences/s, "
          f"{waits} cycles queued for shared ports/links, {ops / 1e9:.2f} GOP per image")


def design_grid(base: dict) -> list:
    """The benchmark's design points: ADC bits 4-8 x crossbar rows 64/128/256 x cell bits
    1/2/4 on ``base`` (an arch YAML as a dict), each loaded and calibrated."""
    archs = []
    for adc_bits, rows, cell_bits in itertools.product([4, 5, 6, 7, 8], [64, 128, 256],
                                                       [1, 2, 4]):
        d = copy.deepcopy(base)
        d["crossbar"]["adc"].update(bits=adc_bits, clip=True)
        d["crossbar"]["rows"] = rows
        d["crossbar"]["cell"]["bits"] = cell_bits
        archs.append(arch_from_dict(d, "point"))
    return archs


def bench_analytical(base: dict) -> None:
    torch.manual_seed(0)
    shapes, hists = layer_stats(ResNet18().eval(), torch.randn(1, 3, 224, 224), 8)
    t0 = time.perf_counter()
    archs = design_grid(base)
    t1 = time.perf_counter()
    energy_pj = 0.0
    for arch in archs:
        for s, h in zip(shapes, hists, strict=True):
            ev = estimate_events(arch, s.k, s.n, s.vectors, h)
            energy_pj += total_pj(energy_by_event_pj(ev.counts(), arch.energy))
    t2 = time.perf_counter()
    n = len(archs) * len(shapes)
    rate = n / (t2 - t1)
    rate_all = n / (t2 - t0)
    print(f"(b) analytical mode, CACHED KERNEL ONLY (events from histograms taken once; no "
          f"mapping, schedule, area or result): {len(archs)} design points x {len(shapes)} "
          f"layers = {n}")
    print(f"    {rate:,.0f} (design point x layer)/s estimating "
          f"(target >= 10,000: {'met' if rate >= 10_000 else 'NOT met'}); "
          f"{rate_all:,.0f}/s including YAML validation of every design point")


SWEEP_YAML = """name: bench_analytical
arch: {arch}
workload: {workload}
samples: {samples}
seed: 0
mode: analytical
fixed:
  crossbar.adc.clip: true
parameters:
  crossbar.adc.bits: [4, 5, 6, 7, 8]
  crossbar.size: {{paths: [crossbar.rows, crossbar.columns], values: [64, 128, 256]}}
  crossbar.cell.bits: [1, 2, 4]
sampling: grid
objectives:
  tops_per_w: max
  area_mm2: min
"""


def bench_sweep(workload: str, data_dir: str | None, samples: int, profile: bool,
                warm_passes: int = 3) -> None:
    """(c): the 45-point analytical sweep through ``run_sweep`` in this process (one worker,
    the serial executor: the rate of one worker; a pool of W workers multiplies it by at most
    W), cold (the worker prepares the workload at its first point), then ``warm_passes``
    times again, each into a fresh output folder with every per-point memo cleared (the
    worker's preparation reused: the steady rate of a long sweep); a warm pass takes well
    under a second, so the best and the median of the passes are printed."""
    from analysis import run
    from analysis.sweep import run_sweep
    from analysis.sweep_spec import load_sweep
    from sim.engine import placement as placement_mod
    from sim.engine import timing as timing_mod

    run._ANALYTICAL.clear()
    prof = cProfile.Profile() if profile else None
    with tempfile.TemporaryDirectory() as tmp:
        spec_file = Path(tmp) / "sweep.yaml"
        spec_file.write_text(SWEEP_YAML.format(
            arch=ROOT / "arch_configs" / "isaac_32nm.yaml", workload=workload,
            samples=samples))
        spec = load_sweep(spec_file)
        if data_dir:
            spec = dataclasses.replace(spec, data_dir=data_dir)
        figures = []
        for label in ["cold"] + ["warm"] * warm_passes:
            # Simulations, mappings and placement copies are kept across points with the same
            # inputs; the warm pass must not reuse the cold pass's (it would only measure the
            # memo): it keeps the workload's preparation, nothing that depends on a point.
            timing_mod.clear_simulations()
            placement_mod._copies.cache_clear()
            for wl in run._ANALYTICAL.values():
                wl.mappings.clear()
                wl.mapping_stats.update(hits=0, misses=0)
            c0, t0 = time.process_time(), time.perf_counter()
            if prof and label == "warm":
                prof.enable()
            outcome = run_sweep(spec, Path(tmp) / f"{label}{len(figures)}", workers=0,
                                progress=False, write_outputs=False)
            if prof and label == "warm":
                prof.disable()
            (wl,) = run._ANALYTICAL.values()
            figures.append((label, time.perf_counter() - t0, time.process_time() - c0,
                            outcome.rows, dict(timing_mod.SIMULATION_STATS),
                            dict(wl.mapping_stats), placement_mod._copies.cache_info()))
        (wl,) = run._ANALYTICAL.values()
        layers = len(wl.prepared.targets)
    rows = figures[0][3]
    bad = [r for r in rows if r.status != "ok"]
    n = len(rows) * layers
    print(f"(c) analytical sweep END TO END through run_sweep (imcsim sweep's path: YAML, "
          f"mapping, events, placement, schedule, area, result, sweep.db), one worker: "
          f"{len(rows)} design points ({len(bad)} not ok) x {layers} mapped layers of "
          f"{workload}, {samples} test samples for the statistics")
    for label, wall, cpu, _, sims, maps, copies in figures:
        what = ("cold: includes the worker's one-time preparation (data, model, folding, "
                "range calibration, graph, float pass, histograms)" if label == "cold" else
                "warm: the same sweep again into a fresh folder, preparation reused")
        print(f"    {what}: {wall:.2f} s wall, {cpu:.2f} s CPU = {n / wall:,.0f} (design point "
              f"x layer)/s by wall time, {n / cpu:,.0f}/s by CPU time; "
              f"{1e3 * wall / len(rows):.1f} ms wall per point (target >= 1,000/s: "
              f"{'met' if n / wall >= 1000 else 'NOT met'})")
        print(f"      simpy runs: {sims['misses']} made, {sims['hits']} reused from points with "
              "the same schedule inputs (placement, step times, ports, links; here points "
              "that differ only in ADC bits)")
        print(f"      mappings: {maps['misses']} made, {maps['hits']} reused from points that "
              f"differ only in what a mapping does not read (ADC, energies, components); "
              f"placement copies: {copies.misses} worked out, {copies.hits} reused")
    warm = sorted(n / cpu for label, _w, cpu, *_ in figures if label == "warm")
    warm_wall = sorted(n / wall for label, wall, *_ in figures if label == "warm")
    if warm:
        mid = len(warm) // 2
        print(f"    warm passes ({len(warm)}): best {warm[-1]:,.0f}/s and median "
              f"{warm[mid]:,.0f}/s by CPU time, best {warm_wall[-1]:,.0f}/s and median "
              f"{warm_wall[mid]:,.0f}/s by wall time (target >= 1,000/s)")
    print(f"    {wl.float_passes} float pass(es) of the model in all")
    if prof:
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(
            r"/(analysis|sim|mappers)/", 30)
        print("    profile of the warm sweep (cumulative seconds, cProfile adds overhead):")
        for line in out.getvalue().splitlines():
            if "/" in line or "ncalls" in line:
                print("     ", line.strip()[:150])


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2,
                    help="torch threads (1: CPU time equals the work of one core)")
    ap.add_argument("--sweep-only", action="store_true", help="only (c)")
    ap.add_argument("--workload", default="cifar_cnn_cifar10",
                    help="(c)'s workload (a shipped name or a YAML)")
    ap.add_argument("--data-dir", default=os.environ.get("IMCSIM_DATA"),
                    help="(c)'s data folder")
    ap.add_argument("--samples", type=int, default=64, help="(c)'s test samples")
    ap.add_argument("--profile", action="store_true", help="profile (c)")
    ap.add_argument("--warm-passes", type=int, default=3,
                    help="(c)'s warm passes, each with the per-point memos cleared")
    args = ap.parse_args()
    base = read_yaml(ROOT / "arch_configs" / "isaac_32nm.yaml")
    torch.set_num_threads(args.threads)
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs (figures "
          "are only comparable on an otherwise idle machine)")
    if not args.sweep_only:
        bench_schedule(base)
        bench_analytical(base)
    try:
        bench_sweep(args.workload, args.data_dir, args.samples, args.profile,
                    max(1, args.warm_passes))
    except UserError as exc:  # e.g. no CIFAR-10 folder: say so, as the CLI does
        raise SystemExit(f"(c) not run: {exc}") from None
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
