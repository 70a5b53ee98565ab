"""One simulation run: an arch YAML against a workload, bit-true, on real data.

:func:`simulate` loads both files, maps the trained model onto the architecture, runs the float
model and the hardware model on the same test samples, and returns a :class:`Result` with the
accuracies, the exact events per layer and the energy they cost. Progress is shown per batch;
with an output folder, finished batches are saved as they complete (``progress.json``) and a
rerun of the same command resumes after the last finished batch.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import math
import os
import pickle
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

import sim
from mappers import QuantRecipe, map_model
from sim.config import Arch, load_arch
from sim.config.loader import to_plain
from sim.engine import rollup
from sim.engine.placement import place
from sim.engine.timing import Timing, schedule
from sim.errors import InvariantError, UserError
from sim.fileio import atomic_write, ensure_writable_dir
from sim.kernels.backend import resolve as resolve_backend
from sim.macros import Events
from sim.stats import energy_by_event_pj, total_pj
from workloads.spec import Bits, Workload, load_workload

log = logging.getLogger(__name__)


#: Version of the resumable state in ``progress.json`` (2: per-step activity per layer).
PROGRESS_FORMAT = 2


@dataclass
class LayerResult:
    """Events and energy of one mapped layer over all simulated samples."""

    name: str
    kind: str
    rows_k: int
    columns_n: int
    crossbars: int
    events: dict[str, int]
    energy_pj: dict[str, float]
    energy_total_pj: float
    duplicates: int = 1
    cycles_busy: int = 0
    cycles_latency: int = 0
    cycles_waiting_for_input: int = 0
    cycles_limited_by_buffer: int = 0
    cycles_limited_by_noc: int = 0
    executed_input_steps: float = 0.0
    #: Cycles queued for a buffer port, NoC link or shared crossbar another node held.
    cycles_waiting_for_resources: int = 0
    #: ``crossbar`` (a mapped layer) or ``digital`` (a costed digital unit of the graph).
    placement: str = "crossbar"
    #: A packed (compressed) layer: dense against packed crossbars, cell rows and
    #: conversions per input vector (:func:`mappers.compress.mapping.savings`); else empty.
    mapping: dict[str, int] = field(default_factory=dict)


@dataclass
class Result:
    """Everything one run measured; saved as ``result.json`` (see ``docs/result.md``)."""

    arch: str
    arch_file: str
    workload: str
    workload_file: str
    samples: int
    seed: int
    float_accuracy: float
    hardware_accuracy: float
    prediction_agreement: float
    layers: list[LayerResult]
    events_total: dict[str, int]
    energy_by_event_pj: dict[str, float]
    energy_total_pj: float
    energy_per_inference_nj: float
    wall_time_s: float
    #: Index of the first test sample simulated: samples ``[first_sample, first_sample +
    #: samples)`` of the test split (a Monte Carlo chip's own slice; 0 for a plain run).
    first_sample: int = 0
    latency_per_inference_s: float = 0.0
    inferences_per_s: float = 0.0
    pipelined: bool = True
    #: Inferences of the simulated stream and cycles between their completions.
    inferences_simulated: int = 1
    interval_cycles: int = 0
    crossbar_utilization: float = 0.0
    crossbars_used: int = 0
    crossbars_total: int = 0
    #: Effective (dense-equivalent) figures: 2 ops per MAC of the workload's dense ``K x N``
    #: products, as PatDNN/FORMS quote a pruned model; they can exceed the peak.
    gops: float = 0.0
    tops_per_w: float = 0.0
    tops_per_mm2: float = 0.0
    #: Executed figures: 2 ops per MAC the crossbars actually perform (a packed layer's
    #: sub-layers, not its dense product); equal to the effective ones for a dense model.
    executed_macs_per_inference: float = 0.0
    gops_executed: float = 0.0
    tops_per_w_executed: float = 0.0
    tops_per_mm2_executed: float = 0.0
    power_w: float = 0.0
    area_mm2: float = 0.0
    area_by_component_mm2: dict[str, float] = field(default_factory=dict)
    energy_by_component_pj: dict[str, float] = field(default_factory=dict)
    peak_gops: float = 0.0
    peak_gops_per_mm2: float = 0.0
    peak_gops_per_w: float = 0.0
    digital_clock_hz: float = 0.0
    #: The layer graph the schedule followed (``LayerGraph.to_json``: nodes, kinds, producers).
    layer_graph: dict = field(default_factory=dict)
    #: Every executed operation of the model in execution order, classified (``placement``:
    #: crossbar, digital, float), with its module and source line (views left out).
    operations: list[dict] = field(default_factory=list)
    #: False when matrix products ran in float (``allow_float_products``): their energy and
    #: time are missing from the figures.
    energy_complete: bool = True
    #: The array backend of the partial-sum GEMMs (``--backend``, ``IMCSIM_BACKEND``),
    #: resolved: ``numpy``, ``torch`` or ``cuda``. The bits are the same on each.
    backend: str = ""
    imcsim_version: str = sim.__version__
    notes: list[str] = field(default_factory=list)

    @property
    def adc_conversions_per_inference(self) -> float:
        """ADC conversions made per inference (zero-skipped ones not counted): a sweep metric."""
        return self.events_total.get("adc_conversions", 0) / max(self.samples, 1)

    def to_json(self) -> dict[str, Any]:
        """A plain mapping for ``json.dump``."""
        return asdict(self)


@dataclass(frozen=True, kw_only=True, eq=False)
class LoadedWorkload:
    """A workload already in memory, accepted by :func:`simulate` and :func:`estimate` in place
    of a workload YAML: how the Python API (``imcsim.simulate``) runs a user's ``nn.Module``
    on tensors through the same code path as ``imcsim run``.

    Attributes:
        name: the workload's name in the result.
        model: the float model, in eval mode.
        test_inputs, test_labels: float inputs ``(N, ...)`` and int64 labels ``(N,)``.
        calibration: inputs that fix the activation ranges.
        bits: weight and activation precision.
        label: what the result's ``workload_file`` says.
        mapping: ``dense``, ``packed`` or ``unified`` (see :class:`workloads.spec.Workload`).
    """

    name: str
    model: torch.nn.Module
    test_inputs: torch.Tensor
    test_labels: torch.Tensor
    calibration: torch.Tensor
    bits: Bits
    label: str = "(python)"
    mapping: str = "dense"
    source = None  # no YAML: a run of a loaded workload cannot be resumed from an out_dir

    def __str__(self) -> str:
        return self.label


def _config_key(arch: Arch, workload: Workload, samples: int, seed: int,
                batch_size: int, first_sample: int = 0) -> str:
    h = hashlib.sha256()
    h.update(json.dumps(to_plain(arch), sort_keys=True, default=str).encode())
    _hash_files(h, workload)
    # PROGRESS_FORMAT: a saved state of another format (e.g. without per-step activity)
    # is not resumed.
    h.update(f"{samples}|{seed}|{batch_size}|{sim.__version__}|{PROGRESS_FORMAT}".encode())
    if first_sample:  # only then: the saved states of runs from sample 0 keep their keys
        h.update(f"|from {first_sample}".encode())
    return h.hexdigest()


def _hash_files(h, workload) -> None:
    """Feed ``h`` the files a workload's model comes from: its YAML, a user's model code
    (it decides the outputs) and the checkpoint (nothing for a :class:`LoadedWorkload`)."""
    if getattr(workload, "source", None) is None:
        return
    h.update(Path(workload.source).read_bytes())
    model_file = workload.model_ref.file
    if model_file is not None and model_file.is_file():
        h.update(model_file.read_bytes())
    if workload.checkpoint_path.is_file():
        h.update(workload.checkpoint_path.read_bytes())


def _files_key(workload) -> str:
    """A digest of the files the workload's model comes from (:func:`_hash_files`)."""
    h = hashlib.sha256()
    _hash_files(h, workload)
    return h.hexdigest()


def _test_window(total: int, samples: int | None, first_sample: int = 0) -> slice:
    """Which of a test split's ``total`` samples a run uses: ``samples`` of them (all when
    ``None``) from index ``first_sample`` on, cut at the end of the split. The one place
    test samples are selected (files and a :class:`LoadedWorkload` alike)."""
    start = min(int(first_sample), total)
    stop = total if samples is None else min(start + int(samples), total)
    return slice(start, stop)


@functools.lru_cache(maxsize=4)
def _cached_data(workload_path: Path, mtime: float, data_dir: str | None, calibration: int):
    """The whole test split and the calibration samples of a workload, kept per process.

    A sweep evaluates many design points of the same workload in one worker process; loading
    and decoding the data set once per worker instead of once per point saves seconds a point.
    The split is kept whole so that points on other test windows (Monte Carlo chips on
    disjoint samples) reuse it; :func:`_prepare` cuts the window. ``mtime`` makes an edited
    workload file a new cache entry.
    """
    workload = load_workload(workload_path)
    x_test, y_test = workload.load_data("test", data_dir)
    x_train, _ = workload.load_data("train", data_dir, first=calibration)
    return x_test, y_test, x_train


def _atomic_json(path: Path, obj: Any) -> None:
    atomic_write(path, lambda fh: json.dump(obj, fh, indent=2), text=True)


def _prepare(workload_path: Path | LoadedWorkload, samples: int | None,
             data_dir: str | Path | None, first_sample: int = 0):
    """The workload, its model, test samples (``samples`` from ``first_sample`` on, see
    :func:`_test_window`), calibration samples (cached) and its recipe."""
    if isinstance(workload_path, LoadedWorkload):
        w = workload_path
        window = _test_window(len(w.test_labels), samples, first_sample)
        return (w, w.model, w.test_inputs[window], w.test_labels[window], w.calibration,
                _recipe(w.bits, w.mapping))
    workload = load_workload(workload_path)
    x_test, y_test, calib = _cached_data(
        workload_path.resolve(), workload_path.stat().st_mtime,
        None if data_dir is None else str(data_dir), workload.calibration_samples)
    window = _test_window(len(y_test), samples, first_sample)
    x_test, y_test = x_test[window], y_test[window]
    recipe = _recipe(workload.bits, workload.mapping)
    return workload, workload.load_model(), x_test, y_test, calib, recipe


def _recipe(bits: Bits, mapping: str) -> QuantRecipe:
    """The bridge's recipe of a workload's bits and mapping (``dense`` or ``packed``)."""
    return QuantRecipe(weight_bits=bits.weights, activation_bits=bits.activations,
                       layer_weight_bits=tuple(sorted(bits.weights_per_layer.items())),
                       packed=mapping in ("packed", "unified"), unified=mapping == "unified")


def simulate(arch_path: str | Path | Arch, workload_path: str | Path | LoadedWorkload, *,
             samples: int | None = None,
             seed: int = 0, data_dir: str | Path | None = None, batch_size: int = 50,
             out_dir: str | Path | None = None, progress: bool = True,
             pipelined: bool = True, trace_layer: str | None = None,
             allow_float_products: bool = False, first_sample: int = 0,
             workers: int | str = 1) -> Result:
    """Run ``workload_path`` on ``arch_path`` bit-true over ``samples`` test samples.

    ``arch_path`` is an arch YAML or an already loaded :class:`~sim.config.Arch` (a sweep
    point). ``seed`` fixes every random draw (static variation, ADC curves, noise); ``samples=None``
    uses the whole test split; ``first_sample`` skips that many test samples first (the run
    uses samples ``[first_sample, first_sample + samples)``, as a Monte Carlo chip on its own
    slice does). With ``out_dir`` the run is resumable (see module docstring).
    ``trace_layer`` names a mapped layer whose per-cycle trace for the first test sample is
    written to ``out_dir/trace_<layer>.csv``. ``workload_path`` may be a
    :class:`LoadedWorkload` (then ``data_dir`` is unused and ``out_dir`` must be ``None``).
    ``allow_float_products`` lets matrix products that do not map onto crossbars run in float
    (the result lists them and says its energy is incomplete); without it they are refused.
    ``workers`` > 1 runs whole batches in that many worker processes, each single-threaded;
    ``"auto"`` runs the first batch here and the rest in one worker per core when they would
    take more than :data:`AUTO_WORKERS_SECONDS` (see :func:`_batch_results`). The result is
    the same bit for bit.
    """
    start = time.perf_counter()
    clock = _Clock(start)
    _check_run_arguments(samples, batch_size, seed, first_sample)
    if workers != "auto" and (not isinstance(workers, int) or workers < 1):
        raise UserError(f"workers must be 'auto' or a whole number of at least 1, got "
                        f"{workers!r}")
    workload_path = _workload_arg(workload_path, out_dir)
    if out_dir is not None:  # before any work: an unwritable folder is found at once
        ensure_writable_dir(out_dir)
    elif trace_layer is not None:
        ensure_writable_dir(".", "trace's folder")
    if isinstance(arch_path, Arch):
        arch, arch_path = arch_path, Path(arch_path.source or "<arch>")
    else:
        arch_path = Path(arch_path)
        arch = load_arch(arch_path)
    workload, model, x_test, y_test, calib, recipe = _prepare(workload_path, samples, data_dir,
                                                              first_sample)
    n = len(y_test)
    dataset = getattr(workload, "dataset", "workload")
    if not n:
        raise UserError(f"first sample {first_sample} is past the end of the {dataset} test "
                        "split")
    clamped = samples is not None and samples > n
    if clamped:
        log.warning("--samples %d: the %s test split has %d samples%s; using all %d", samples,
                    dataset, n, f" from sample {first_sample} on" if first_sample else "", n)
    clock.lap("load")
    mapped = _map_for_run(model, arch, recipe, calib, seed, allow_float_products, x_test)
    clock.lap("map")
    # Placement (does the model fit the chip?) and the traced layer's name are checked on one
    # sample now, before the first batch, rather than after the whole bit-true pass.
    placements = place(arch, mapped.layer_shapes())
    if trace_layer is not None and trace_layer not in _hardware_layers(mapped):
        raise UserError(f"--trace: no mapped layer {trace_layer!r}; layers: "
                        f"{', '.join(_hardware_layers(mapped))}")

    n_batches = -(-n // batch_size)
    state = {"key": None, "done": 0,
             "float_correct": 0, "hw_correct": 0, "agree": 0,
             "events": {rec.name: Events().counts() for rec in mapped.layers},
             "activity": {}}
    progress_file = None
    if out_dir is not None:
        out = Path(out_dir)
        progress_file = out / "progress.json"
        state["key"] = _config_key(arch, workload, n, seed, batch_size, first_sample)
        if progress_file.is_file():
            try:
                saved = json.loads(progress_file.read_text())
            except (OSError, json.JSONDecodeError):
                saved = None
            if saved and saved.get("key") == state["key"]:
                state = saved
    earlier = state.get("wall_s", 0.0)  # batch time of earlier invocations of this run
    bar = tqdm(total=n_batches, initial=state["done"], desc=f"{workload.name} on {arch.name}",
               unit="batch", disable=not progress, file=sys.stderr)
    run = _Batches(mapped, model, x_test, y_test, seed, batch_size)
    worker_args = (arch, workload_path, samples, data_dir, first_sample, seed,
                   allow_float_products, batch_size, _files_key(workload))

    def say(message: str) -> None:  # beside the progress bar, or to the log without one
        if progress:
            bar.write(message, file=sys.stderr)
        else:
            log.info(message)

    clock.lap("place")
    batch_start = time.perf_counter()
    for b, part in _batch_results(run, range(state["done"], n_batches), workers, worker_args,
                                  say, clock, _model_code(workload)):
        for k in ("float_correct", "hw_correct", "agree"):
            state[k] += part[k]
        for name, counts in part["events"].items():
            acc = state["events"][name]
            for k, v in counts.items():
                acc[k] = acc.get(k, 0) + v
        for name, act in part["activity"].items():
            _add_activity(state, name, act)
        state["done"] = b + 1
        # Wall time summed over invocations: a resumed run reports the whole run's time.
        now = time.perf_counter()
        state["wall_s"] = state.get("wall_s", 0.0) + now - batch_start
        batch_start = now
        if progress_file is not None:
            _atomic_json(progress_file, state)
        bar.update(1)
        bar.set_postfix(hw_acc=f"{state['hw_correct'] / min(n, (b + 1) * batch_size):.3f}")
    bar.close()
    clock.lap("batches")
    graph = mapped.layer_graph()
    timing = schedule(arch, placements, _schedule_activity(arch, state), graph=graph,
                      pipelined=pipelined)
    clock.lap("schedule")
    if trace_layer is not None:
        mapped.set_noise(seed, call=0)  # the trace's noise: batch 0's, whoever ran it
        _write_trace(arch, mapped, placements, timing, trace_layer, x_test[:1],
                     Path(out_dir) if out_dir is not None else Path("."))
    result = _result(arch, arch_path, workload, workload_path, mapped, state, n, seed,
                     earlier + time.perf_counter() - start, timing, graph, placements)
    result.first_sample = int(first_sample)
    result.backend = resolve_backend()  # the one the layers resolved (the same environment)
    if clamped:
        result.notes.append(f"{samples} samples asked for; the test split has {n}"
                            f"{f' from sample {first_sample} on' if first_sample else ''}, "
                            "all used")
    clock.lap("result")
    log.debug("run phases (wall s): %s", clock)
    return result


class _Clock:
    """Wall seconds of a run's phases in order (``simulate`` logs them at DEBUG level;
    ``bench/bench_full_testset.py`` prints them): where a run's time goes outside the
    batches."""

    def __init__(self, start: float) -> None:
        self.last = start
        self.phases: dict[str, float] = {}

    def lap(self, name: str) -> None:
        """Charge the time since the last lap to ``name``."""
        now = time.perf_counter()
        self.phases[name] = self.phases.get(name, 0.0) + now - self.last
        self.last = now

    def note(self, name: str, seconds: float) -> None:
        """Record a figure measured elsewhere, not a lap (part of the next lap): the largest
        of those given (the last of the workers ready)."""
        self.phases[name] = max(self.phases.get(name, 0.0), seconds)

    def __str__(self) -> str:
        return ", ".join(f"{k} {v:.2f}" for k, v in self.phases.items())


def _map_for_run(model, arch: Arch, recipe: QuantRecipe, calib, seed: int,
                 allow_float_products: bool, x_test):
    """The model mapped onto ``arch`` for a run, after one sample has gone through it (which
    checks that every layer maps before the first batch); the same in every worker."""
    mapped = map_model(model, arch, recipe, calib, seed=seed,
                       allow_float_products=allow_float_products)
    mapped(x_test[:1])
    mapped.reset_events()
    return mapped


@dataclass
class _Batches:
    """What one batch of a run needs: the mapped and the float model, the test samples
    (``None`` in a worker started from the parent's mapping: its batches bring theirs)."""

    mapped: Any
    model: torch.nn.Module
    x_test: torch.Tensor | None
    y_test: torch.Tensor | None
    seed: int
    batch_size: int

    def samples(self, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch ``b``'s test inputs and labels."""
        lo, hi = b * self.batch_size, (b + 1) * self.batch_size
        return self.x_test[lo:hi], self.y_test[lo:hi]

    def run(self, b: int, xb: torch.Tensor | None = None, yb: torch.Tensor | None = None
            ) -> dict:
        """Batch ``b``'s correct counts, events and per-step activity, per layer, on the
        batch's samples (``xb, yb``: given to a worker that holds no test set).

        The noise of batch ``b`` is keyed by ``b`` alone (``set_noise``), so a batch gives the
        same bits whichever process runs it and whatever ran before it.
        """
        if xb is None:
            xb, yb = self.samples(b)
        mapped = self.mapped
        mapped.reset_events()
        mapped.set_noise(self.seed, call=b)
        with torch.no_grad():
            pf = self.model(xb).argmax(1)
            ph = mapped(xb).argmax(1)
        return {"float_correct": int((pf == yb).sum()), "hw_correct": int((ph == yb).sum()),
                "agree": int((pf == ph).sum()),
                "events": {rec.name: rec.events.counts() for rec in mapped.layers},
                "activity": {rec.name: rec.events.activity for rec in mapped.layers
                             if rec.events.activity is not None}}


#: ``workers="auto"`` starts worker processes when the batches after the first would take
#: longer than this in this process (a worker's start costs a few seconds).
AUTO_WORKERS_SECONDS = 30.0
#: At most this many workers for ``workers="auto"``.
AUTO_WORKERS_MAX = 8


def _cores() -> int:
    """Worker processes for ``workers="auto"``: the kernels' thread count
    (:func:`sim.macros.crossbar.threads`: ``IMCSIM_THREADS`` or the usable cores), at most
    as many as the available memory holds copies of this process (each worker holds the
    mapped model and, when it maps the model itself, the data: at most this process's peak)
    and at most :data:`AUTO_WORKERS_MAX`."""
    import resource

    from sim.macros.crossbar import threads

    n = min(threads(), AUTO_WORKERS_MAX)
    try:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # not on Linux: no memory bound
        return n
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    return max(1, min(n, int(free // max(peak, 1))))


#: The batches of this worker process's run (set by :func:`_worker_start` or
#: :func:`_worker_from_state`), the error its start raised, and when it was ready (the
#: ``perf_counter`` clock, the same in every process of the machine; sent with its first
#: batch, then ``None``).
_WORKER_BATCHES: _Batches | None = None
_WORKER_ERROR: Exception | None = None
_WORKER_READY: float | None = None


def _worker_start(arch: Arch, workload_path, samples, data_dir, first_sample: int, seed: int,
                  allow_float_products: bool, batch_size: int, files_key: str) -> None:
    """Start a batch worker that maps the model itself (when the parent's mapping does not
    pickle, :func:`_mapping_state`): one thread, and the run's model mapped as the parent
    mapped it (the same seeded chip: same static variation, same calibration), from the same
    files (``files_key``: a checkpoint rewritten since the parent loaded it is refused).
    Ctrl-C is the parent's to handle. A failure is kept and raised by the first batch, as
    itself."""
    global _WORKER_BATCHES, _WORKER_ERROR, _WORKER_READY
    _worker_signals()
    try:
        workload, model, x_test, y_test, calib, recipe = _prepare(workload_path, samples,
                                                                  data_dir, first_sample)
        if _files_key(workload) != files_key:
            raise UserError(f"{workload_path}: the workload's files (YAML, model code or "
                            "checkpoint) changed on disk during the run; rerun it")
        mapped = _map_for_run(model, arch, recipe, calib, seed, allow_float_products, x_test)
        _WORKER_BATCHES = _Batches(mapped, model, x_test, y_test, seed, batch_size)
        _WORKER_READY = time.perf_counter()
    except Exception as err:  # noqa: BLE001 - raised again by _worker_batch, in the parent
        _WORKER_ERROR = err


def _worker_from_state(state: str, model_code: tuple | None, seed: int,
                       batch_size: int) -> None:
    """Start a batch worker from the parent's mapping (the file ``state``,
    :func:`_mapping_state`): one thread;
    the model's code imported first (``model_code``: the workload's ``(ModelRef, folder)``,
    so that a user's classes unpickle), then the mapped and the float model exactly as the
    parent holds them after its one-sample check (same chip; no data set loaded, no
    remapping: each batch brings its samples). Ctrl-C is the parent's to handle; a failure is
    kept and raised by the first batch."""
    global _WORKER_BATCHES, _WORKER_ERROR, _WORKER_READY
    _worker_signals()
    try:
        if model_code is not None:
            from workloads.models import resolve_model

            resolve_model(*model_code)
        try:
            with open(state, "rb") as fh:
                mapped, model = pickle.load(fh)
        except ModuleNotFoundError as err:  # a user's model file edited since: new module name
            raise UserError(f"a batch worker cannot load the mapped model ({err}): did the "
                            "workload's model code change on disk during the run? rerun it"
                            ) from None
        _WORKER_BATCHES = _Batches(mapped, model, None, None, seed, batch_size)
        _WORKER_READY = time.perf_counter()
    except Exception as err:  # noqa: BLE001 - raised again by _worker_batch, in the parent
        _WORKER_ERROR = err


def _worker_signals() -> None:
    """A worker process: Ctrl-C is the parent's to handle; the kernels on one thread."""
    import signal

    from analysis.executors import single_threaded

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    single_threaded()


def _worker_batch(b: int, xb=None, yb=None) -> dict:
    """Run batch ``b`` in a worker process, on its samples ``xb, yb`` (numpy arrays) when the
    worker holds no test set; or raise the worker's start failure. The first batch of a
    worker also reports when it was ready (``worker_ready``); each its peak resident memory
    so far (``worker_rss``, :func:`_own_peak_rss`)."""
    global _WORKER_READY
    if _WORKER_ERROR is not None:
        raise _WORKER_ERROR
    if xb is not None:  # copies: unpickled arrays may be read-only
        xb, yb = torch.from_numpy(xb.copy()), torch.from_numpy(yb.copy())
    part = _WORKER_BATCHES.run(b, xb, yb)
    if _WORKER_READY is not None:
        part["worker_ready"], _WORKER_READY = _WORKER_READY, None
    part["worker_rss"] = _own_peak_rss()
    return part


def _own_peak_rss() -> int:
    """This process's own peak resident memory in bytes (Linux ``VmHWM``; 0 elsewhere).
    Not ``ru_maxrss``: a spawned process starts as a fork of its parent, and Linux keeps
    that peak across the ``exec``, so a worker's ``ru_maxrss`` is at least its parent's
    resident memory when the worker started."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _mapping_state(run: _Batches) -> str | None:
    """A temporary file (its path; the caller removes it) holding ``run``'s mapped and float
    model pickled for the batch workers (a few MiB: ResNet-20 on CAP-RAM 6 MiB, 0.03 s each
    way), so that a worker neither loads the data set nor maps the model again; ``None`` when
    they do not pickle (a user's model holding a lambda, say): then each worker maps the
    model itself (:func:`_worker_start`), to the same bits. A file, not the workers' start
    arguments: those go down a pipe that blocks the parent until each worker has imported
    its modules, one worker after the other."""
    import tempfile

    try:
        blob = pickle.dumps((run.mapped, run.model), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as err:  # noqa: BLE001 - any pickling failure: the workers map themselves
        log.debug("the mapped model does not pickle (%s): each worker maps it itself", err)
        return None
    fd, path = tempfile.mkstemp(prefix="imcsim-mapping-", suffix=".pickle")
    with os.fdopen(fd, "wb") as fh:
        fh.write(blob)
    return path


def _model_code(workload) -> tuple | None:
    """What a worker imports before unpickling a mapped model: the workload's model reference
    and its YAML's folder, when the model is a user's file or module (``None`` for a shipped
    model or a :class:`LoadedWorkload`, whose classes are importable by name)."""
    if getattr(workload, "source", None) is None or workload.model_ref.builtin is not None:
        return None
    return workload.model_ref, Path(workload.source).parent


def _batch_results(run: _Batches | None, batches: range, workers: int | str,
                   worker_args: tuple, say=log.info, clock: _Clock | None = None,
                   model_code: tuple | None = None):
    """Yield ``(b, result of batch b)`` in batch order.

    One worker: here, with the kernels' own thread pool. More: whole batches in ``workers``
    processes (``spawn``: no thread state of this process is forked), each single-threaded.
    Each worker starts from this process's mapping (``run``'s mapped and float model,
    pickled: :func:`_mapping_state`) and gets each batch's samples with the batch, so it
    neither loads the data set nor maps the model; when the mapping does not pickle (or
    ``run`` is ``None``), each worker loads the workload and maps the model with the run's
    seed itself (``worker_args``, :func:`_worker_start`). ``model_code``: what a worker
    imports before unpickling (:func:`_model_code`); ``clock`` gets the workers' start.
    Batches share nothing but the chip, so this scales with the cores where the one-process
    run does not (its Python and numpy stages between kernels run on one thread); the results
    are the same bit for bit, and the parent still saves progress after each batch in order.
    ``"auto"``: the first batch here, timed; the rest here too unless they would take more
    than :data:`AUTO_WORKERS_SECONDS`, then in one worker per core (:func:`_cores`).
    """
    if workers == "auto":
        if not batches:
            return
        first = time.perf_counter()
        yield batches[0], run.run(batches[0])
        rest = batches[1:]
        left = (time.perf_counter() - first) * len(rest)
        workers = min(_cores(), len(rest)) if left > AUTO_WORKERS_SECONDS else 1
        if workers > 1:
            say(f"{len(rest)} batches left, about {left:.0f} s in this process: running them "
                f"in {workers} worker processes")
        batches = rest
    workers = min(workers, len(batches))
    if workers <= 1:
        for b in batches:
            yield b, run.run(b)
        return
    state = _mapping_state(run) if run is not None else None
    if state is not None:
        start, args = _worker_from_state, (state, model_code, run.seed, run.batch_size)
        tasks = (batches, (run.samples(b)[0].detach().numpy() for b in batches),
                 (run.samples(b)[1].detach().numpy() for b in batches))
    else:
        start, args, tasks = _worker_start, worker_args, (batches,)
    try:
        yield from _pool_results(start, args, tasks, workers, clock)
    finally:
        if state is not None:
            Path(state).unlink(missing_ok=True)


def _pool_results(start, args: tuple, tasks: tuple, workers: int, clock: _Clock | None):
    """``(b, result)`` of each batch ``b`` of ``tasks[0]``, in order, from ``workers``
    processes started by ``start(*args)`` (:func:`_batch_results`)."""
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool
    from multiprocessing import get_context

    started = time.perf_counter()
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"),
                               initializer=start, initargs=args)
    rss = 0
    try:
        for b, part in zip(tasks[0], pool.map(_worker_batch, *tasks), strict=True):
            ready = part.pop("worker_ready", None)
            if ready is not None and clock is not None:
                clock.note("workers ready", ready - started)
            rss = max(rss, part.pop("worker_rss", 0))
            yield b, part
    except BrokenProcessPool:
        pool.shutdown(wait=False, cancel_futures=True)
        raise UserError(f"a batch worker process died (out of memory? each of the {workers} "
                        "workers holds the mapped model); rerun with fewer --workers (with "
                        "--out, finished batches are kept)") from None
    except BaseException:  # Ctrl-C, an error, an early stop: queued batches are dropped
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)  # the workers joined (their CPU time counted as children's)
    log.debug("batch workers' peak RSS: %.0f MiB", rss / 2**20)


def _check_run_arguments(samples: int | None, batch_size: int, seed: int,
                         first_sample: int = 0) -> None:
    """The numeric arguments of a run, checked before anything is loaded."""
    if samples is not None and (isinstance(samples, bool) or int(samples) < 1):
        raise UserError(f"samples must be at least 1 (or None for the whole split), got "
                        f"{samples}")
    if isinstance(batch_size, bool) or int(batch_size) < 1:
        raise UserError(f"batch size must be at least 1, got {batch_size}")
    if int(seed) < 0:
        raise UserError(f"seed must not be negative, got {seed}")
    if isinstance(first_sample, bool) or int(first_sample) < 0:
        raise UserError(f"first sample must not be negative, got {first_sample}")


def estimate(arch: Arch, workload_path: str | Path | LoadedWorkload, *, samples: int = 16,
             seed: int = 0, data_dir: str | Path | None = None,
             allow_float_products: bool = False) -> Result:
    """Analytical mode: a :class:`Result` without the bit-true pass, for large sweeps.

    The float model runs on ``samples`` test samples; each mapped layer's integer inputs (the
    hardware's quantization) give the statistics (:func:`input_statistics`) from which
    :func:`sim.engine.analytical.estimate_events` counts the events: exact on these samples
    (see ``docs/analytical.md``). Timing, energy and area follow as in :func:`simulate`. The
    hardware accuracy is not measured: it and the prediction agreement are NaN; the float
    accuracy is measured on the same samples.

    What does not depend on the design point is done once per workload and process and reused
    (:class:`_AnalyticalWorkload`): loading the model and data, batch-norm folding, range
    calibration and graph tracing (:func:`mappers.torch_bridge.prepare_model`), the float pass
    with its accuracy, the layers' execution order and input shapes, and each layer's input
    statistics, keyed on everything its input matrices depend on
    (:meth:`~mappers.torch_bridge.HardwareLayer.input_key`: the activation quantizer, so
    activation bits and the input format's signedness, the groups per crossbar and a packed
    layer's rows). Each point maps the prepared model onto its arch and counts its events.
    """
    from mappers.recurrent import UnrolledRecurrent
    from sim.engine.analytical import estimate_events

    start = time.perf_counter()
    workload_path = _workload_arg(workload_path, None)
    wl = _analytical_workload(workload_path, samples, data_dir, allow_float_products)
    n = len(wl.y_test)
    # Event counts do not depend on the ADC's range: skip the calibrated range's pass.
    adc = dataclasses.replace(arch.crossbar.adc, range="fixed", clip=True)
    mapped_arch = dataclasses.replace(arch, crossbar=dataclasses.replace(arch.crossbar, adc=adc))
    # The mapping of an earlier point that differs only in what a mapping does not read (the
    # ADC, energies, components), or a new one (map_prepared); its layers' archs are that
    # point's, so each is rebound to this point's before its events are counted.
    mapped, template, hw = wl.mapping(mapped_arch, seed)
    stats = wl.statistics(hw)
    with _ANALYTICAL_LOCK:  # a kept mapping is shared; both only write its first time
        for name, x_shape in wl.calls.items():  # execution order and shapes, as a forward pass
            if name in hw:
                hw[name].note_call(x_shape)
        for name, mod in mapped.model.named_modules():  # recurrent layers: steps a sequence
            if isinstance(mod, UnrolledRecurrent):
                for k in range(mod.num_layers):
                    mod.note_steps(k, wl.counts.get(f"{name}.hh_l{k}", 1))
    events: dict[str, dict[str, int]] = {}
    state = {"float_correct": wl.float_correct, "hw_correct": math.nan,
             "agree": math.nan, "events": events, "activity": {}}
    for name, layer in hw.items():
        # xb.arch: a packed layer's sub-layers are stored at the layer's own weight bits.
        evs = []
        for xb, hist in zip(layer.crossbar_layers, stats[name], strict=True):
            evs.append(estimate_events(_rebound(xb.arch, template, mapped_arch), xb.k, xb.n,
                                       hist.vectors, hist))
            evs[-1].scale_multiplies = xb.scale_multiplies(hist.vectors)  # unified: signs
        ev = layer.combine_events(evs)
        events[name] = ev.counts()
        _add_activity(state, name, ev.activity)  # the per-step activity for the schedule
    placements = place(arch, mapped.layer_shapes())
    graph = mapped.layer_graph()
    timing = schedule(arch, placements, _schedule_activity(arch, state), graph=graph)
    result = _result(arch, Path(arch.source or "<arch>"), wl.workload, workload_path, mapped,
                     state, n, seed, time.perf_counter() - start, timing, graph, placements)
    result.notes.append(f"analytical mode: events estimated from the input statistics of {n} "
                        "test samples; hardware accuracy not measured")
    return result


class _AnalyticalWorkload:
    """One workload's design-point-independent work for :func:`estimate` (kept per process,
    :data:`_ANALYTICAL`): the prepared model, the test samples, and, from the first float
    pass over the samples, the float accuracy and each mapped layer's first-call input shape
    in execution order; input statistics per ``(layer, input_key)``, each computed on first
    demand by a float pass."""

    #: Input statistics kept per layer (distinct quantizers or packings of one layer).
    MAX_KEYS_PER_LAYER = 16
    #: Mappings kept (:meth:`mapping`), at most this many and this many bytes of weight
    #: arrays (each crossbar layer's integer weights and encoded cell levels); a mapping
    #: larger than the byte bound alone is not kept. Least recently used first out.
    MAPPINGS_KEPT = 32
    MAPPING_BYTES_KEPT = 256 * 2**20

    def __init__(self, workload_path, samples, data_dir, allow_float_products):
        from mappers.torch_bridge import prepare_model

        self.workload, self.model, self.x_test, self.y_test, calib, self.recipe = _prepare(
            workload_path, samples, data_dir)
        self.prepared = prepare_model(self.model, self.recipe, calib,
                                      allow_float_products=allow_float_products)
        self.calls: dict[str, tuple[int, ...]] = {}
        self.counts: dict[str, int] = {}
        self.hists: dict[tuple, list] = {}
        self.float_correct = 0
        self.float_passes = 0
        self.stamp = self._files_stamp()
        self.mappings: OrderedDict[tuple, tuple] = OrderedDict()
        self.mapping_stats = {"hits": 0, "misses": 0}

    def mapping(self, arch: Arch, seed: int) -> tuple:
        """``(mapped, template, hw)``: the prepared model mapped onto ``arch``
        (:func:`~mappers.torch_bridge.map_prepared`) by an earlier call whose arch had the
        same :func:`_mapping_key` and seed (``template``: that call's arch), or now
        (``template`` is ``arch``); ``hw``: its layers by name. The analytical mode reads a
        mapping's geometry and records only and never programs its cells, so one mapping
        serves every arch of its key; archs held by its layers are ``template``'s, or made
        from it (:func:`_rebound`). Kept per workload: :attr:`MAPPINGS_KEPT`,
        :attr:`MAPPING_BYTES_KEPT`."""
        from mappers.torch_bridge import map_prepared

        key = (_mapping_key(arch), int(seed))
        with _ANALYTICAL_LOCK:
            got = self.mappings.get(key)
            if got is not None:
                self.mappings.move_to_end(key)
                self.mapping_stats["hits"] += 1
                return got[:3]
            self.mapping_stats["misses"] += 1
        mapped = map_prepared(self.prepared, arch, self.recipe, seed=seed)
        hw = _hardware_layers(mapped)
        size = sum(xb.held_bytes() for layer in hw.values() for xb in layer.crossbar_layers)
        with _ANALYTICAL_LOCK:
            if size <= self.MAPPING_BYTES_KEPT:
                self.mappings[key] = (mapped, arch, hw, size)
                held = sum(e[3] for e in self.mappings.values())
                while len(self.mappings) > self.MAPPINGS_KEPT or held > self.MAPPING_BYTES_KEPT:
                    held -= self.mappings.popitem(last=False)[1][3]
        return mapped, arch, hw

    def _files_stamp(self) -> tuple:
        """Modification times of the files the model comes from (the checkpoint, a user's
        model code): an edited one makes this entry stale."""
        files = [getattr(self.workload, "checkpoint_path", None)]
        ref = getattr(self.workload, "model_ref", None)
        files.append(getattr(ref, "file", None))
        return tuple(f.stat().st_mtime_ns if f is not None and Path(f).is_file() else None
                     for f in files)

    def _float_pass(self, wanted: dict) -> None:
        """Run the float model on the samples; for each ``name -> layer`` in ``wanted`` store
        the statistics of the layer's integer inputs under its input key. The first pass also
        records the float accuracy and the layers' first-call input shapes."""
        first = not self.float_passes
        out, stats = _float_statistics(self.model, wanted, self.x_test,
                                       self.calls if first else None,
                                       self.prepared.targets if first else (),
                                       self.counts if first else None)
        if first:
            self.float_correct = int((out.argmax(1) == self.y_test).sum())
        self.float_passes += 1
        for name, layer in wanted.items():
            same = [k for k in self.hists if k[0] == name]
            if len(same) >= self.MAX_KEYS_PER_LAYER:
                del self.hists[same[0]]
            self.hists[(name, layer.input_key())] = stats[name]

    def statistics(self, hw: dict) -> dict[str, list]:
        """Per mapped layer (``name -> HardwareLayer``), the input statistics of each of its
        crossbar layers; a float pass computes those not yet known for their input key."""
        with _ANALYTICAL_LOCK:  # a Dask worker may run points in threads
            missing = {name: layer for name, layer in hw.items()
                       if (name, layer.input_key()) not in self.hists}
            if missing or not self.float_passes:
                self._float_pass(missing)
            return {name: self.hists[(name, layer.input_key())] for name, layer in hw.items()}


def _analytical_workload(workload_path: Path | LoadedWorkload, samples: int | None,
                         data_dir: str | Path | None, allow_float_products: bool
                         ) -> _AnalyticalWorkload:
    """The cached :class:`_AnalyticalWorkload` of these arguments (a few per process). A
    workload file is keyed by its path and modification time (and those of its checkpoint and
    model code), a workload in memory by itself.
    """
    source = ((str(workload_path.resolve()), workload_path.stat().st_mtime)
              if isinstance(workload_path, Path) else workload_path)
    key = (source, samples, None if data_dir is None else str(data_dir),
           bool(allow_float_products))
    with _ANALYTICAL_LOCK:
        if key in _ANALYTICAL and _ANALYTICAL[key].stamp != _ANALYTICAL[key]._files_stamp():
            del _ANALYTICAL[key]  # its checkpoint or model code changed
        if key not in _ANALYTICAL:
            if len(_ANALYTICAL) >= 4:
                _ANALYTICAL.pop(next(iter(_ANALYTICAL)))
            _ANALYTICAL[key] = _AnalyticalWorkload(workload_path, samples, data_dir,
                                                   allow_float_products)
        return _ANALYTICAL[key]


#: Arch fields no mapping reads when analytical mode maps (the ADC is read only when cells
#: are programmed or a calibrated range is set, and :func:`estimate` maps with a fixed
#: one; energies and components cost events, they do not place weights; where the arch came
#: from and how it was scaled): design points differing only in these share a mapping.
_UNMAPPED_FIELDS = frozenset({"energy", "components", "notes", "source"})


def _mapping_key(arch: Arch) -> tuple:
    """Every field of ``arch`` but :data:`_UNMAPPED_FIELDS` and ``crossbar.adc`` (except its
    ``range``, which decides whether a mapping calibrates): the key of a kept mapping."""
    xb = arch.crossbar
    return (tuple(getattr(arch, f.name) for f in dataclasses.fields(arch)
                  if f.name not in _UNMAPPED_FIELDS and f.name != "crossbar"),
            tuple(getattr(xb, f.name) for f in dataclasses.fields(xb) if f.name != "adc"),
            xb.adc.range)


def _rebound(derived: Arch, template: Arch, arch: Arch) -> Arch:
    """The arch a layer of a mapping made on ``arch`` would hold, from the one it holds
    (``derived``) in a mapping made on ``template`` (same :func:`_mapping_key`): ``template``
    itself, or made from it by replacing whole fields (a layer stored at its own weight bits,
    :func:`~sim.engine.placement.storage_arch`; a spike-driven layer's inputs,
    :func:`~sim.engine.placement.spike_arch`). Fields ``derived`` shares with ``template``
    are taken from ``arch``; the replaced ones are kept, which is right only for keyed
    fields (equal in both archs), so a replaced unkeyed field is an error."""
    if template is arch:  # a mapping made on this arch: its layers' archs as they are
        return derived
    if derived is template:
        return arch
    changes = {}
    for f in dataclasses.fields(derived):
        mine = getattr(derived, f.name)
        if mine is getattr(template, f.name):
            changes[f.name] = getattr(arch, f.name)
        elif f.name in _UNMAPPED_FIELDS or f.name == "crossbar":
            raise InvariantError(f"a mapped layer's arch replaced {f.name!r}, which the kept "
                                 "mappings are not keyed on")
    return dataclasses.replace(derived, **changes)


#: Design-point-independent analytical work per workload (see :func:`estimate`).
_ANALYTICAL: dict[tuple, _AnalyticalWorkload] = {}
_ANALYTICAL_LOCK = threading.RLock()


def input_statistics(model: torch.nn.Module, mapped, x: torch.Tensor) -> dict[str, list]:
    """Per mapped layer, the :class:`~sim.engine.analytical.InputHistogram` of each of its
    crossbar layers' integer input vectors when the float ``model`` runs on ``x`` (the
    hardware's quantization of the float activations)."""
    return _float_statistics(model, _hardware_layers(mapped), x)[1]


def _float_statistics(model: torch.nn.Module, layers: dict, x: torch.Tensor,
                      calls: dict | None = None, names=(), counts: dict | None = None
                      ) -> tuple[torch.Tensor, dict]:
    """The float ``model``'s output on ``x`` and :func:`input_statistics` of ``layers``
    (``name -> HardwareLayer``). A layer called several times with inputs of one shape (a
    recurrent layer's matrices, once a step) counts every call; with differing shapes, its
    last call. With ``calls``, also record there the first-call input shape of each module in
    ``names``, in call order; with ``counts``, how often each was called (a recurrent
    layer's matrix: once a step)."""
    from mappers.recurrent import unroll
    from sim.engine.analytical import InputHistogram

    # Recurrent layers as the bridge maps them (per-matrix Linear, called once a step).
    model = unroll(model)
    inputs: dict[str, list[torch.Tensor]] = {}
    watched = set(layers) | set(names)

    def hook(name, args):
        if calls is not None and name in names and name not in calls:
            calls[name] = tuple(args[0].shape)
        if counts is not None and name in names:
            counts[name] = counts.get(name, 0) + 1
        if name in layers:
            inputs.setdefault(name, []).append(args[0].detach())

    hooks = [mod.register_forward_pre_hook(lambda _m, args, name=name: hook(name, args))
             for name, mod in model.named_modules() if name in watched]
    try:
        with torch.no_grad():
            out = model(x)
    finally:
        for h in hooks:
            h.remove()
    return out, {name: [InputHistogram.of(mat.numpy())
                        for mat in layer.hw_inputs(_joined(inputs[name]))[0]]
                 for name, layer in layers.items()}


def _joined(calls: list[torch.Tensor]) -> torch.Tensor:
    """One layer's inputs over its calls: all of them when they share a shape, else the last."""
    if len(calls) > 1 and all(c.shape[1:] == calls[0].shape[1:] for c in calls):
        return torch.cat(calls)
    return calls[-1]


def _workload_arg(workload: str | Path | LoadedWorkload, out_dir) -> Path | LoadedWorkload:
    if not isinstance(workload, LoadedWorkload):
        return Path(workload)
    if out_dir is not None:
        from sim.errors import UserError

        raise UserError("a LoadedWorkload run is not resumable: pass out_dir=None and save "
                         "the result with save()")
    return workload


def _precision_note(arch: Arch, mapped) -> str | None:
    """Say plainly when the workload's precision is padded into the arch's wider slots."""
    from sim.config.schema import precision_padding

    # Layers stored at their own bits (packed mapping) are not padded.
    recs = [r for r in mapped.layers if r.storage_bits is None]
    if not recs:
        return None
    wb = max(r.weight_bits for r in recs)
    # Spike-driven layers take 1-bit inputs in one step (mappers.spiking): never padded.
    multibit = [r for r in recs if not r.spike_inputs]
    if not multibit:
        from sim.engine.placement import spike_arch

        arch, multibit = spike_arch(arch), recs
    lo = min(r.activation.lo + r.activation.zero_point for r in multibit)
    hi = max(r.activation.hi + r.activation.zero_point for r in multibit)
    p = precision_padding(arch, wb, lo, hi)
    if not p.padded:
        return None
    parts = []
    if p.weight_columns > p.weight_columns_needed:
        parts.append(f"{wb}-bit weights are stored as {arch.weights.bits}-bit weights in "
                     f"{p.weight_columns} cell columns each ({p.weight_columns_needed} would "
                     f"hold {wb} bits)")
    if p.input_steps > p.input_steps_needed:
        parts.append(f"layer inputs needing {p.input_bits_needed} bits are streamed as "
                     f"{arch.inputs.bits}-bit inputs in {p.input_steps} crossbar steps "
                     f"({p.input_steps_needed} would do)")
    skip = (" unless zero-skipping finds a padded step all zero (see adc_conversions_skipped)"
            if arch.inputs.zero_skip else "")
    return (f"precision padded by the hardware: {' and '.join(parts)}; the padding costs "
            f"about {p.conversion_ratio:.2f}x the ADC conversions{skip} and "
            f"{p.column_ratio:.2f}x the cell columns and cell reads of a design at the "
            f"workload's precision (the arch's weights.bits and inputs.bits are fixed)")


def _add_activity(state: dict, name: str, act) -> None:
    """Accumulate a layer's per-step activity into ``state`` (kept as JSON: resumable)."""
    if act is None:
        return
    acc = state.setdefault("activity", {})
    if name in acc:
        total = _activity_from_json(acc[name])
        total.add(act)
        act = total
    acc[name] = act.to_json()


def _activity_from_json(d: dict):
    """Inverse of :meth:`StepActivity.to_json`."""
    import numpy as np

    from sim.macros.activity import StepActivity

    return StepActivity(steps=d["steps"], row_tiles=d["row_tiles"],
                        groups_per_crossbar=d["groups_per_crossbar"], vectors=d["vectors"],
                        hist_max=np.asarray(d["hist_max"], np.int64),
                        hist_tile=np.asarray(d["hist_tile"], np.int64))


def _schedule_activity(arch: Arch, state: dict) -> dict:
    """Each layer's per-step activity, which the schedule times zero-skip from. Both the
    bit-true pass and the analytical mode record it for every layer; with zero-skip on a
    layer without one is an invariant violation (the schedule would have to guess)."""

    acts = state.get("activity") or {}
    missing = [name for name in state["events"] if name not in acts]
    if arch.inputs.zero_skip and missing:
        raise InvariantError(f"no per-step activity recorded for {', '.join(missing)}")
    return {name: _activity_from_json(acts[name]) for name in state["events"] if name in acts}


def _hardware_layers(mapped) -> dict:
    """The mapped model's hardware layers by module name."""
    from mappers.torch_bridge import HardwareLayer

    return {m.layer_name: m for m in mapped.model.modules() if isinstance(m, HardwareLayer)}


def _write_trace(arch, mapped, placements, timing, name, sample, out: Path) -> Path:
    """Run ``sample`` once more, capturing layer ``name``'s inputs, and write its trace."""
    from sim.engine.trace import layer_trace, write_trace

    hw = _hardware_layers(mapped)
    if name not in hw:
        raise UserError(f"--trace: no mapped layer {name!r}; layers: {', '.join(hw)}")
    hw[name].capture = []
    mapped(sample)
    x = hw[name].capture[0]
    hw[name].capture = None
    p = next(p for p in placements if p.layer.name == name)
    start = next(t.start_cycle for t in timing.layers if t.name == name)
    out.mkdir(parents=True, exist_ok=True)
    # A grouped layer's packs (a packed layer's sub-layers) run side by side on their own
    # crossbars: trace the first (its inputs were captured), with its columns and weight bits.
    first = hw[name].crossbar_layers[0]
    rows = layer_trace(first.arch, x, first.n, p.duplicates, start)
    return write_trace(out / f"trace_{name.replace('.', '_')}.csv", rows)


def _result(arch: Arch, arch_path: Path, workload: Workload, workload_path: Path, mapped,
            state: dict, n: int, seed: int, wall: float, timing: Timing, graph=None,
            placements=None) -> Result:
    from sim.engine.graph import graph_events

    layers = []
    tl = {t.name: t for t in timing.layers + timing.nodes}
    recs = {rec.name: rec for rec in mapped.layers}
    # Per-node events of the layer graph (NoC, routers, digital units, off-chip), per
    # inference; scaled to the run's samples like every other count.
    gev = graph_events(arch, graph, placements) if graph is not None else {}
    order = [name for name in gev] or [rec.name for rec in mapped.layers]
    totals: dict[str, int] = {}
    by_event: dict[str, float] = {}
    for name in order:
        rec = recs.get(name)
        counts = dict(state["events"][name]) if rec is not None else {}
        for k, v in gev.get(name, {}).items():
            counts[k] = counts.get(k, 0) + v * n
        energy = energy_by_event_pj(counts, arch.energy)
        t = tl[name]
        node = graph.node(name) if graph is not None else None
        layers.append(LayerResult(
            name=name, kind=rec.kind if rec is not None else node.kind,
            rows_k=rec.k if rec is not None else 0, columns_n=rec.n if rec is not None else 0,
            crossbars=rec.crossbars if rec is not None else 0, events=counts,
            energy_pj=energy, energy_total_pj=total_pj(energy), duplicates=t.duplicates,
            cycles_busy=t.busy_cycles, cycles_latency=t.latency_cycles,
            cycles_waiting_for_input=t.wait_input_cycles,
            cycles_limited_by_buffer=t.buffer_limited_cycles,
            cycles_limited_by_noc=t.noc_limited_cycles, executed_input_steps=t.executed_steps,
            cycles_waiting_for_resources=t.wait_resource_cycles,
            placement="crossbar" if rec is not None else "digital",
            mapping=_mapping_figures(arch, rec)))
        for k, v in counts.items():
            totals[k] = totals.get(k, 0) + v
        for k, v in energy.items():
            by_event[k] = by_event.get(k, 0.0) + v
    per_inf_events = {k: v / max(n, 1) for k, v in totals.items()}
    by_component = rollup.energy_by_component_pj(arch, per_inf_events, timing.latency_s)
    # One total: events plus leakage x latency; energy per inference and TOPS/W both use it.
    per_inf_pj = total_pj(by_component)
    leak_pj = total_pj(rollup.leakage_pj(arch, timing.latency_s))
    if leak_pj:
        by_event["leakage"] = leak_pj * n
    total = per_inf_pj * n
    macs = totals.get("macs", 0) / max(n, 1)
    ops = 2 * macs
    executed = sum(_executed_macs(layer, recs.get(layer.name)) for layer in layers) / max(n, 1)
    area_by = rollup.area_by_component_um2(arch)
    area_mm2 = sum(area_by.values()) / 1e6
    pk = rollup.peak(arch) if arch.components else None
    ips = timing.inferences_per_s
    gops = ops * ips / 1e9
    energy_j = per_inf_pj * 1e-12
    # how stated figures were scaled to this config's point, then the schedule's notes
    notes = list(arch.notes) + list(timing.notes)
    if mapped.folded_batchnorms:
        notes.append(f"batch norm folded into the preceding layer: "
                     f"{', '.join(mapped.folded_batchnorms)}")
    precision = _precision_note(arch, mapped)
    if precision is not None:
        notes.append(precision)
    coverage = getattr(mapped, "coverage", None)
    float_products = coverage.float_products if coverage is not None else []
    operations = coverage.to_json() if coverage is not None else []
    if graph is not None and not graph.traced:
        # No traced graph: the schedule is a chain of the mapped layers, so the digital units
        # were not costed; say so rather than list them as costed.
        uncosted = [op for op in operations if op["placement"] == "digital"]
        for op in uncosted:
            op["placement"] = "float"
        if uncosted:
            notes.append(f"{len(uncosted)} digital operations (activation, pooling, add, "
                         "concat) ran in torch without energy or time: the model could not be "
                         "traced, so only its mapped layers were scheduled")
    if float_products:
        sites = sorted({f"{o.op} at {o.source}" for o in float_products})
        notes.append("ENERGY INCOMPLETE: matrix products ran in float (allow_float_products), "
                     f"not on the chip, and are not in the energy or time: {', '.join(sites)}")
    return Result(
        arch=arch.name, arch_file=str(arch_path), workload=workload.name,
        workload_file=str(workload_path), samples=n, seed=seed,
        float_accuracy=state["float_correct"] / n if n else float("nan"),
        hardware_accuracy=state["hw_correct"] / n if n else float("nan"),
        prediction_agreement=state["agree"] / n if n else float("nan"),
        layers=layers, events_total=totals, energy_by_event_pj=by_event,
        energy_total_pj=total, energy_per_inference_nj=total / n / 1e3 if n else float("nan"),
        wall_time_s=wall, notes=notes, latency_per_inference_s=timing.latency_s,
        inferences_per_s=ips, pipelined=timing.pipelined,
        inferences_simulated=timing.inferences, interval_cycles=timing.interval_cycles,
        crossbar_utilization=timing.utilization, crossbars_used=timing.crossbars_used,
        crossbars_total=timing.crossbars_total, gops=gops,
        tops_per_w=ops / energy_j / 1e12 if energy_j else 0.0,
        tops_per_mm2=gops / 1e3 / area_mm2 if area_mm2 else 0.0,
        executed_macs_per_inference=executed, gops_executed=2 * executed * ips / 1e9,
        tops_per_w_executed=2 * executed / energy_j / 1e12 if energy_j else 0.0,
        tops_per_mm2_executed=2 * executed * ips / 1e12 / area_mm2 if area_mm2 else 0.0,
        power_w=energy_j * ips, area_mm2=area_mm2,
        area_by_component_mm2={k: v / 1e6 for k, v in area_by.items()},
        energy_by_component_pj=by_component,
        peak_gops=pk.ops_per_s / 1e9 if pk else 0.0,
        peak_gops_per_mm2=pk.gops_per_mm2 if pk else 0.0,
        peak_gops_per_w=pk.gops_per_w if pk else 0.0,
        digital_clock_hz=arch.clock.digital_hz,
        layer_graph=graph.to_json() if graph is not None else {},
        operations=operations,
        energy_complete=not float_products)


def _executed_macs(layer: LayerResult, rec) -> int:
    """MACs the crossbars performed for ``layer``: its ``macs`` count, except for a packed
    layer, whose count is the dense ``K x N`` per vector (mappers.torch_bridge.combine_events)
    while its sub-layers compute only ``sum(k_i x n_i)`` per vector."""
    macs = layer.events.get("macs", 0)
    if rec is None or not rec.parts:
        return macs
    vectors, rest = divmod(macs, rec.k * rec.n)
    if rest:
        raise InvariantError(f"{layer.name}: {macs} MACs is not a whole number of "
                             f"{rec.k} x {rec.n} vectors")
    return vectors * sum(k * n for k, n in rec.parts)


def _mapping_figures(arch: Arch, rec) -> dict[str, int]:
    """Dense against packed figures of a packed layer (empty for a dense one)."""
    if rec is None or not rec.parts:
        return {}
    from mappers.compress.mapping import savings

    return savings(arch, rec.k, rec.n, rec.parts, rec.weight_bits, rec.rows_bound,
                   stored_bits=rec.storage_bits, scaled=rec.scaled)


def save(result: Result, out_dir: str | Path) -> Path:
    """Write ``result.json`` into ``out_dir`` (atomically) and return its path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "result.json"
    _atomic_json(path, result.to_json())
    return path


def format_result(result: Result) -> str:
    """A human-readable summary: accuracies, events per layer, energy."""
    lines = [
        f"{result.workload} on {result.arch}: {result.samples} test samples"
        f"{f' (from sample {result.first_sample})' if result.first_sample else ''}, "
        f"seed {result.seed}",
        f"  float accuracy    {100 * result.float_accuracy:6.2f} %",
        f"  hardware accuracy {100 * result.hardware_accuracy:6.2f} %   "
        f"(same prediction as float on {100 * result.prediction_agreement:.2f} %)",
        "",
        f"  {'layer':<22}{'K x N':>12}{'xbars':>7}{'ADC conv':>12}{'skipped':>10}"
        f"{'DAC pulses':>12}{'cell reads':>13}{'energy/inf':>13}",
    ]
    n = max(result.samples, 1)
    for lr in result.layers:
        e = lr.events
        shape = f"{lr.rows_k}x{lr.columns_n}" if lr.crossbars else lr.kind
        lines.append(
            f"  {lr.name[:21]:<22}{shape:>12}{lr.crossbars:>7}"
            f"{e.get('adc_conversions', 0) / n:>12.4g}"
            f"{e.get('adc_conversions_skipped', 0) / n:>10.3g}"
            f"{e.get('dac_pulses', 0) / n:>12.4g}{e.get('cell_reads', 0) / n:>13.4g}"
            f"{lr.energy_total_pj / n / 1e3:>10.4g} nJ")
    lines.append("  (event counts are per inference; layers and digital nodes in execution "
                 "order)")
    packed = [lr for lr in result.layers if lr.mapping]
    if packed:
        lines.append("")
        lines.append(f"  {'packed layer':<22}{'bits':>5}{'parts':>6}{'crossbars':>16}"
                     f"{'cell rows':>19}{'conversions/vector':>25}{'row bound':>11}")
        for lr in packed:
            m = lr.mapping
            figs = "".join(
                f"{'/'.join(str(m[k]) for k in (f'dense_{w}', f'dense_at_bits_{w}', w)):>{x}}"
                for w, x in (("crossbars", 16), ("rows_mapped", 19),
                             ("conversions_per_vector", 25)))
            lines.append(f"  {lr.name[:21]:<22}{m['weight_bits_stored']:>5}{m['sub_layers']:>6}"
                         + figs + f"{m.get('rows_lower_bound', ''):>11}")
        lines.append("  (dense / dense at the layer's bits / packed: all K x N weights at the "
                     "arch's weight bits / at the layer's bits / the packed sub-layers; "
                     "conversions without zero-skip; row bound: fewest cell rows any "
                     "column-tile cut could map)")
    lines.append("")
    lines.append(f"  {'layer':<22}{'copies':>7}{'busy cyc':>11}{'latency cyc':>13}"
                 f"{'wait input':>12}{'wait res':>10}{'buffer-lim':>12}{'NoC-lim':>10}"
                 f"{'steps run':>11}")
    for lr in result.layers:
        lines.append(f"  {lr.name[:21]:<22}{lr.duplicates:>7}{lr.cycles_busy:>11}"
                     f"{lr.cycles_latency:>13}{lr.cycles_waiting_for_input:>12}"
                     f"{lr.cycles_waiting_for_resources:>10}"
                     f"{lr.cycles_limited_by_buffer:>12}{lr.cycles_limited_by_noc:>10}"
                     f"{lr.executed_input_steps:>11.2f}")
    mode = (f"pipelined, stream of {result.inferences_simulated}" if result.pipelined
            else "layer by layer")
    lines += [
        "",
        f"  latency {result.latency_per_inference_s * 1e6:.4g} us/inference, throughput "
        f"{result.inferences_per_s:.4g} inferences/s ({mode}), crossbar utilization "
        f"{100 * result.crossbar_utilization:.1f} % of {result.crossbars_used} used "
        f"(chip has {result.crossbars_total})",
        f"  {result.gops:.4g} GOPS, {result.tops_per_w:.4g} TOPS/W, "
        f"{result.tops_per_mm2:.4g} TOPS/mm2 effective (dense-equivalent), "
        f"{result.power_w:.4g} W, area {result.area_mm2:.4g} mm2",
        f"  {result.gops_executed:.4g} GOPS, {result.tops_per_w_executed:.4g} TOPS/W, "
        f"{result.tops_per_mm2_executed:.4g} TOPS/mm2 executed (MACs the crossbars perform)",
    ]
    if result.peak_gops:
        lines.append(f"  peak: {result.peak_gops:.4g} GOPS, {result.peak_gops_per_mm2:.4g} "
                     f"GOPS/s/mm2, {result.peak_gops_per_w:.4g} GOPS/W")
    lines.append("")
    lines.append(f"  energy per inference {result.energy_per_inference_nj:.4g} nJ, of which")
    total = max(result.energy_total_pj, 1e-30)
    for k, v in sorted(result.energy_by_event_pj.items(), key=lambda kv: -kv[1]):
        if v:
            lines.append(f"    {k:<28}{v / n / 1e3:>10.4g} nJ  {100 * v / total:5.1f} %")
    if result.energy_by_component_pj:
        lines.append("  energy per inference by component")
        comp_total = max(sum(result.energy_by_component_pj.values()), 1e-30)
        for k, v in sorted(result.energy_by_component_pj.items(), key=lambda kv: -kv[1]):
            lines.append(f"    {k:<28}{v / 1e3:>10.4g} nJ  {100 * v / comp_total:5.1f} %")
    if result.area_by_component_mm2:
        lines.append("  chip area by component")
        for k, v in sorted(result.area_by_component_mm2.items(), key=lambda kv: -kv[1]):
            lines.append(f"    {k:<28}{v:>10.4g} mm2 {100 * v / result.area_mm2:5.1f} %")
    if result.operations:
        lines.append("  operations in execution order (placement: crossbar, digital = costed "
                     "digital unit, float = torch, not costed)")
        for op in result.operations:
            lines.append(f"    {op['index']:>4} {op['placement']:<9}{op['category']:<14}"
                         f"{op['op'][:22]:<23}{(op['module'] or op['module_type'])[:22]:<23}"
                         f"{op['source']}")
    lines += _paper_lines(result)
    if not result.energy_complete:
        lines.append("  ENERGY INCOMPLETE: matrix products ran in float (see the notes)")
    for note in result.notes:
        lines.append(f"  note: {note}")
    return "\n".join(lines)


def _paper_lines(result: Result) -> list[str]:
    """The comparison with the published design (:mod:`analysis.published`, the report's
    table): each published figure that applies to this arch and workload, imcsim's value
    and the relative difference; none for an arch with no published figures."""
    from analysis.published import comparison

    rows = comparison(result.to_json())
    if not rows:
        return []
    paper = ", ".join(rows[0][0].source.split(", ")[:2])
    lines = ["", f"  comparison with the published design ({paper}; analysis/published.py)",
             f"    {'figure':<45}{'paper':>10}{'imcsim':>11} {'unit':<11}{'imcsim/paper-1':>15}"
             "  [basis] note"]
    for p, ours, rel in rows:
        diff = f"{100 * rel:+.2f} %" if rel is not None else "-"
        shown = "-" if ours is None else f"{ours:.4g}"
        lines.append(f"    {p.label[:44]:<45}{p.value:>10.4g}{shown:>11} {p.unit:<11}{diff:>15}"
                     f"  [{p.basis}] {p.note}")
    return lines

