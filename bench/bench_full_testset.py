"""Time a workload's whole test set bit-true (variation on) beside plain float inference.

Issue 11 deliverable 7: the same model in the same process, float first, then the bit-true
run through ``imcsim run``'s own function (:func:`analysis.run.simulate`: the mapped model,
with the arch's non-idealities and a fresh noise draw per batch), in ``--workers`` batch
processes as ``imcsim run --workers`` runs it. Prints the seconds, images per second,
accuracy and the process's peak resident memory after each phase (``ru_maxrss`` is
monotonic, so the float figure is the float phase's peak and the bit-true figure the whole
run's; with workers, also the largest worker's own peak, its ``VmHWM``: a spawned worker's
``ru_maxrss`` starts at its parent's resident memory, which Linux keeps across ``exec``).
Also prints the wall seconds of ``simulate``'s phases (its DEBUG log line): load, mapping,
placement, the batches (within them, how long the workers took to be ready), the schedule
and the result's energy roll-up.

    OMP_NUM_THREADS=2 python bench/bench_full_testset.py examples/cap_ram_65nm_variation.yaml \
        workloads/resnet20_cifar10_capram.yaml --data-dir ../shared/data --batch-size 100 \
        --workers 2

Takes any arch and workload. The CPU time printed is this process's and its workers'.

Also prints the load average before and after, the machine's fp32 GEMM rate measured in the
same run (``bench_kernels.gemm_rates``), the events per image (ADC conversions, the
hardware's cell-MACs) and how long those cell-MACs alone would take at that GEMM rate: a
floor for any float32 implementation of the bit-true model.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_kernels import gemm_rates  # noqa: E402

from analysis.run import _prepare, simulate  # noqa: E402
from mappers import map_model  # noqa: E402
from sim.config import load_arch  # noqa: E402


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _Phases(logging.Handler):
    """Keeps :func:`analysis.run.simulate`'s DEBUG lines of its phases' wall times and of
    its batch workers' own peak memory."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.text = ""
        self.worker_rss = ""

    def emit(self, record: logging.LogRecord) -> None:
        """Keep the two lines; drop the others."""
        message = record.getMessage()
        if message.startswith("run phases"):
            self.text = message.split(": ", 1)[1]
        elif message.startswith("batch workers' peak RSS"):
            self.worker_rss = message.split(": ", 1)[1].replace(" MiB", "")


def main(argv=None) -> int:
    """Run the benchmark and print its figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("arch")
    ap.add_argument("workload")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--samples", type=int, default=None, help="default: the whole test set")
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--workers", type=int, default=1,
                    help="`imcsim run --workers`: batch worker processes (default 1: this "
                         "process, the kernels' thread pool)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()

    t0 = time.perf_counter()
    arch = load_arch(args.arch)
    workload, model, x, y, calib, recipe = _prepare(Path(args.workload), args.samples,
                                                    args.data_dir)
    n = len(y)
    load_s = time.perf_counter() - t0
    batches = [(x[i:i + args.batch_size], y[i:i + args.batch_size])
               for i in range(0, n, args.batch_size)]
    child0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    child_cpu0 = child0.ru_utime + child0.ru_stime
    with torch.no_grad():
        t0 = time.perf_counter()
        correct = sum(int((model(xb).argmax(1) == yb).sum()) for xb, yb in batches)
        float_s = time.perf_counter() - t0
        float_acc, float_rss = correct / n, peak_rss_mb()

    t0 = time.perf_counter()
    mapped = map_model(model, arch, recipe, calib, seed=args.seed)
    map_s = time.perf_counter() - t0
    del mapped  # only timed here; the run below maps the model itself (and in each worker)

    # The bit-true phase is `imcsim run`'s own path: simulate() maps the model, runs every
    # batch (in --workers processes), schedules and rolls up the energy. Its phases' wall
    # times come from its DEBUG log line.
    phases = _Phases()
    run_log = logging.getLogger("analysis.run")
    run_log.addHandler(phases)
    run_log.setLevel(logging.DEBUG)
    t0, c0 = time.perf_counter(), time.process_time()
    result = simulate(arch, Path(args.workload), samples=args.samples, seed=args.seed,
                      data_dir=args.data_dir, batch_size=args.batch_size, progress=False,
                      workers=args.workers)
    hw_s = time.perf_counter() - t0
    run_log.removeHandler(phases)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)  # the workers, joined by now
    hw_cpu = time.process_time() - c0 + children.ru_utime + children.ru_stime - child_cpu0
    hw_acc, hw_rss = result.hardware_accuracy, peak_rss_mb()
    conversions = result.events_total.get("adc_conversions", 0)
    cell_macs = result.events_total.get("cell_macs", 0)
    load_after = os.getloadavg()
    fp32 = max(gemm_rates(3, int8=False).values())

    print(f"{workload.name} on {arch.name}: {n} test samples, batch {args.batch_size}, "
          f"torch threads {torch.get_num_threads()}, {platform.processor() or platform.machine()}")
    print(f"load (model + data): {load_s:.2f} s; map_model (program + calibrate): {map_s:.2f} s")
    print("| run | seconds | images/s | accuracy | peak RSS (MiB) |")
    print("|---|---|---|---|---|")
    print(f"| float | {float_s:.2f} | {n / float_s:,.0f} | {100 * float_acc:.2f} % | "
          f"{float_rss:,.0f} |")
    rss = f"{hw_rss:,.0f}" + (f" (largest worker {phases.worker_rss})" if phases.worker_rss
                             else "")
    print(f"| bit-true, {args.workers} worker(s) | {hw_s:.2f} | {n / hw_s:,.0f} | "
          f"{100 * hw_acc:.2f} % | {rss} |")
    print(f"bit-true / float time: {hw_s / float_s:.0f}x; bit-true CPU time (this process and "
          f"its workers) {hw_cpu:.2f} s; the bit-true seconds are the whole `simulate` call "
          "(mapping, worker start-up, schedule and energy roll-up included)")
    print(f"simulate's phases (wall s; workers ready: from their start, within batches): "
          f"{phases.text or '(not logged)'}")
    print(f"load average (1 min) before {load_before[0]:.2f}, after {load_after[0]:.2f} on "
          f"{os.cpu_count()} CPUs; fp32 GEMM rate measured after the run: {fp32 / 1e9:.1f} G "
          "MAC/s (best of numpy sgemm and torch mm, 2048^3)")
    print(f"per image: {conversions / n / 1e6:.2f} M ADC conversions, {cell_macs / n / 1e6:.0f} "
          f"M cell-MACs (the hardware's, padding and all-zero steps included); those cell-MACs "
          f"at the fp32 GEMM rate alone: {cell_macs / fp32:.1f} s for the {n} images")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
