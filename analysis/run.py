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
import sys
import time
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
from sim.errors import UserError
from sim.fileio import atomic_write, ensure_writable_dir
from sim.macros import Events
from sim.stats import energy_by_event_pj, total_pj
from workloads.spec import Workload, load_workload

log = logging.getLogger(__name__)


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
    latency_per_inference_s: float = 0.0
    inferences_per_s: float = 0.0
    pipelined: bool = True
    crossbar_utilization: float = 0.0
    crossbars_used: int = 0
    crossbars_total: int = 0
    gops: float = 0.0
    tops_per_w: float = 0.0
    tops_per_mm2: float = 0.0
    power_w: float = 0.0
    area_mm2: float = 0.0
    area_by_component_mm2: dict[str, float] = field(default_factory=dict)
    energy_by_component_pj: dict[str, float] = field(default_factory=dict)
    peak_gops: float = 0.0
    peak_gops_per_mm2: float = 0.0
    peak_gops_per_w: float = 0.0
    digital_clock_hz: float = 0.0
    imcsim_version: str = sim.__version__
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """A plain mapping for ``json.dump``."""
        return asdict(self)


def _config_key(arch: Arch, workload: Workload, samples: int, seed: int,
                batch_size: int) -> str:
    h = hashlib.sha256()
    h.update(json.dumps(to_plain(arch), sort_keys=True, default=str).encode())
    if workload.source is not None:
        h.update(Path(workload.source).read_bytes())
    if workload.checkpoint_path.is_file():
        h.update(workload.checkpoint_path.read_bytes())
    h.update(f"{samples}|{seed}|{batch_size}|{sim.__version__}".encode())
    return h.hexdigest()


@functools.lru_cache(maxsize=4)
def _cached_data(workload_path: Path, mtime: float, data_dir: str | None, samples: int | None,
                 calibration: int):
    """Test samples and calibration samples of a workload, kept per process.

    A sweep evaluates many design points of the same workload in one worker process; loading
    and decoding the data set once per worker instead of once per point saves seconds a point.
    ``mtime`` makes an edited workload file a new cache entry.
    """
    workload = load_workload(workload_path)
    x_test, y_test = workload.load_data("test", data_dir)
    x_train, _ = workload.load_data("train", data_dir)
    n = len(y_test) if samples is None else min(int(samples), len(y_test))
    return x_test[:n].clone(), y_test[:n].clone(), x_train[:calibration].clone()


def _atomic_json(path: Path, obj: Any) -> None:
    atomic_write(path, lambda fh: json.dump(obj, fh, indent=2), text=True)


def _prepare(workload_path: Path, samples: int | None, data_dir: str | Path | None):
    """The workload, its model, test and calibration samples (cached) and its recipe."""
    workload = load_workload(workload_path)
    x_test, y_test, calib = _cached_data(
        workload_path.resolve(), workload_path.stat().st_mtime,
        None if data_dir is None else str(data_dir), samples, workload.calibration_samples)
    recipe = QuantRecipe(weight_bits=workload.bits.weights,
                         activation_bits=workload.bits.activations)
    return workload, workload.load_model(), x_test, y_test, calib, recipe


def simulate(arch_path: str | Path | Arch, workload_path: str | Path, *,
             samples: int | None = None,
             seed: int = 0, data_dir: str | Path | None = None, batch_size: int = 50,
             out_dir: str | Path | None = None, progress: bool = True,
             pipelined: bool = True, trace_layer: str | None = None) -> Result:
    """Run ``workload_path`` on ``arch_path`` bit-true over ``samples`` test samples.

    ``arch_path`` is an arch YAML or an already loaded :class:`~sim.config.Arch` (a sweep
    point). ``seed`` fixes every random draw (static variation, ADC curves, noise); ``samples=None``
    uses the whole test split. With ``out_dir`` the run is resumable (see module docstring).
    ``trace_layer`` names a mapped layer whose per-cycle trace for the first test sample is
    written to ``out_dir/trace_<layer>.csv``.
    """
    start = time.perf_counter()
    _check_run_arguments(samples, batch_size, seed)
    if out_dir is not None:  # before any work: an unwritable folder is found at once
        ensure_writable_dir(out_dir)
    elif trace_layer is not None:
        ensure_writable_dir(".", "trace's folder")
    workload_path = Path(workload_path)
    if isinstance(arch_path, Arch):
        arch, arch_path = arch_path, Path(arch_path.source or "<arch>")
    else:
        arch_path = Path(arch_path)
        arch = load_arch(arch_path)
    workload, model, x_test, y_test, calib, recipe = _prepare(workload_path, samples, data_dir)
    n = len(y_test)
    clamped = samples is not None and samples > n
    if clamped:
        log.warning("--samples %d: the %s test split has %d samples; using all %d", samples,
                    workload.dataset, n, n)
    mapped = map_model(model, arch, recipe, calib, seed=seed)
    # Placement (does the model fit the chip?) and the traced layer's name are checked on one
    # sample now, before the first batch, rather than after the whole bit-true pass.
    mapped(x_test[:1])
    mapped.reset_events()
    placements = place(arch, mapped.layer_shapes())
    if trace_layer is not None and trace_layer not in _hardware_layers(mapped):
        raise UserError(f"--trace: no mapped layer {trace_layer!r}; layers: "
                        f"{', '.join(_hardware_layers(mapped))}")

    n_batches = -(-n // batch_size)
    state = {"key": None, "done": 0,
             "float_correct": 0, "hw_correct": 0, "agree": 0,
             "events": {rec.name: Events().counts() for rec in mapped.layers}}
    progress_file = None
    if out_dir is not None:
        out = Path(out_dir)
        progress_file = out / "progress.json"
        state["key"] = _config_key(arch, workload, n, seed, batch_size)
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
    with torch.no_grad():
        for b in range(state["done"], n_batches):
            batch_start = time.perf_counter()
            xb, yb = x_test[b * batch_size:(b + 1) * batch_size], y_test[b * batch_size:
                                                                         (b + 1) * batch_size]
            mapped.reset_events()
            mapped.set_noise(seed, call=b)
            pf = model(xb).argmax(1)
            ph = mapped(xb).argmax(1)
            state["float_correct"] += int((pf == yb).sum())
            state["hw_correct"] += int((ph == yb).sum())
            state["agree"] += int((pf == ph).sum())
            for rec in mapped.layers:
                acc = state["events"][rec.name]
                for k, v in rec.events.counts().items():
                    acc[k] = acc.get(k, 0) + v
            state["done"] = b + 1
            # Wall time summed over invocations: a resumed run reports the whole run's time.
            state["wall_s"] = state.get("wall_s", 0.0) + time.perf_counter() - batch_start
            if progress_file is not None:
                _atomic_json(progress_file, state)
            bar.update(1)
            bar.set_postfix(hw_acc=f"{state['hw_correct'] / min(n, (b + 1) * batch_size):.3f}")
    bar.close()
    timing = schedule(arch, placements, _executed_fractions(state["events"]),
                      pipelined=pipelined)
    if trace_layer is not None:
        _write_trace(arch, mapped, placements, timing, trace_layer, x_test[:1],
                     Path(out_dir) if out_dir is not None else Path("."))
    result = _result(arch, arch_path, workload, workload_path, mapped, state, n, seed,
                     earlier + time.perf_counter() - start, timing)
    if clamped:
        result.notes.append(f"{samples} samples asked for; the test split has {n}, all used")
    return result


def _check_run_arguments(samples: int | None, batch_size: int, seed: int) -> None:
    """The numeric arguments of a run, checked before anything is loaded."""
    if samples is not None and (isinstance(samples, bool) or int(samples) < 1):
        raise UserError(f"samples must be at least 1 (or None for the whole split), got "
                        f"{samples}")
    if isinstance(batch_size, bool) or int(batch_size) < 1:
        raise UserError(f"batch size must be at least 1, got {batch_size}")
    if int(seed) < 0:
        raise UserError(f"seed must not be negative, got {seed}")


def estimate(arch: Arch, workload_path: str | Path, *, samples: int = 16, seed: int = 0,
             data_dir: str | Path | None = None) -> Result:
    """Analytical mode: a :class:`Result` without the bit-true pass, for large sweeps.

    The float model runs on ``samples`` test samples; each mapped layer's integer inputs (the
    hardware's quantization) give a histogram from which :func:`sim.engine.analytical.
    estimate_events` counts the events (exact except for zero-skipping, which assumes
    independent rows). Timing, energy and area follow as in :func:`simulate`. The hardware
    accuracy is not measured: it and the prediction agreement are NaN; the float accuracy is
    measured on the same samples.
    """
    from sim.engine.analytical import InputHistogram, estimate_events

    start = time.perf_counter()
    workload_path = Path(workload_path)
    workload, model, x_test, y_test, calib, recipe = _prepare(workload_path, samples, data_dir)
    n = len(y_test)
    # Event counts do not depend on the ADC's range: skip the calibrated range's pass.
    adc = dataclasses.replace(arch.crossbar.adc, range="fixed", clip=True)
    mapped_arch = dataclasses.replace(arch, crossbar=dataclasses.replace(arch.crossbar, adc=adc))
    mapped = map_model(model, mapped_arch, recipe, calib, seed=seed)
    hw = _hardware_layers(mapped)
    inputs: dict[str, torch.Tensor] = {}
    hooks = [mod.register_forward_pre_hook(
        lambda _m, args, name=name: inputs.__setitem__(name, args[0].detach()))
        for name, mod in model.named_modules() if name in hw]
    with torch.no_grad():
        pf = model(x_test).argmax(1)  # map_model left ``model`` as it was
        mapped(x_test[:1])  # one bit-true sample: the layers' execution order and shapes
    for h in hooks:
        h.remove()
    events = {}
    for name, layer in hw.items():
        mats, _ = layer.hw_inputs(inputs[name])
        ev = Events()
        for xb, mat in zip(layer.crossbar_layers, mats, strict=True):
            x = mat.numpy()
            ev.add(estimate_events(arch, xb.k, xb.n, x.shape[0], InputHistogram.of(x)))
        events[name] = ev.counts()
    state = {"float_correct": int((pf == y_test).sum()), "hw_correct": math.nan,
             "agree": math.nan, "events": events}
    timing = schedule(arch, place(arch, mapped.layer_shapes()), _executed_fractions(events))
    result = _result(arch, Path(arch.source or "<arch>"), workload, workload_path, mapped,
                     state, n, seed, time.perf_counter() - start, timing)
    result.notes.append(f"analytical mode: events estimated from the input histograms of {n} "
                        "test samples; hardware accuracy not measured")
    return result


def _executed_fractions(events: dict[str, dict[str, int]]) -> dict[str, float]:
    """Per layer, the share of ADC conversions actually done (the rest were skipped)."""
    out = {}
    for name, ev in events.items():
        total = ev["adc_conversions"] + ev["adc_conversions_skipped"]
        out[name] = ev["adc_conversions"] / total if total else 1.0
    return out


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
    rows = layer_trace(arch, x, p.layer.n, p.duplicates, start)
    return write_trace(out / f"trace_{name.replace('.', '_')}.csv", rows)


def _result(arch: Arch, arch_path: Path, workload: Workload, workload_path: Path, mapped,
            state: dict, n: int, seed: int, wall: float, timing: Timing) -> Result:
    layers = []
    tl = {t.name: t for t in timing.layers}
    totals: dict[str, int] = {}
    by_event: dict[str, float] = {}
    for rec in mapped.layers:
        counts = state["events"][rec.name]
        energy = energy_by_event_pj(counts, arch.energy)
        t = tl[rec.name]
        layers.append(LayerResult(
            name=rec.name, kind=rec.kind, rows_k=rec.k, columns_n=rec.n,
            crossbars=rec.crossbars, events=dict(counts), energy_pj=energy,
            energy_total_pj=total_pj(energy), duplicates=t.duplicates, cycles_busy=t.busy_cycles,
            cycles_latency=t.latency_cycles, cycles_waiting_for_input=t.wait_input_cycles,
            cycles_limited_by_buffer=t.buffer_limited_cycles,
            cycles_limited_by_noc=t.noc_limited_cycles, executed_input_steps=t.executed_steps))
        for k, v in counts.items():
            totals[k] = totals.get(k, 0) + v
        for k, v in energy.items():
            by_event[k] = by_event.get(k, 0.0) + v
    total = total_pj(by_event)
    per_inf_events = {k: v / max(n, 1) for k, v in totals.items()}
    by_component = rollup.energy_by_component_pj(arch, per_inf_events, timing.latency_s)
    per_inf_pj = total_pj(by_component)
    macs = totals.get("macs", 0) / max(n, 1)
    ops = 2 * macs
    area_by = rollup.area_by_component_um2(arch)
    area_mm2 = sum(area_by.values()) / 1e6
    pk = rollup.peak(arch) if arch.components else None
    ips = timing.inferences_per_s
    gops = ops * ips / 1e9
    energy_j = per_inf_pj * 1e-12
    notes = []
    if mapped.folded_batchnorms:
        notes.append(f"batch norm folded into the preceding layer: "
                     f"{', '.join(mapped.folded_batchnorms)}")
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
        crossbar_utilization=timing.utilization, crossbars_used=timing.crossbars_used,
        crossbars_total=timing.crossbars_total, gops=gops,
        tops_per_w=ops / energy_j / 1e12 if energy_j else 0.0,
        tops_per_mm2=gops / 1e3 / area_mm2 if area_mm2 else 0.0,
        power_w=energy_j * ips, area_mm2=area_mm2,
        area_by_component_mm2={k: v / 1e6 for k, v in area_by.items()},
        energy_by_component_pj=by_component,
        peak_gops=pk.ops_per_s / 1e9 if pk else 0.0,
        peak_gops_per_mm2=pk.gops_per_mm2 if pk else 0.0,
        peak_gops_per_w=pk.gops_per_w if pk else 0.0,
        digital_clock_hz=arch.clock.digital_hz)


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
        f"{result.workload} on {result.arch}: {result.samples} test samples, seed {result.seed}",
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
        lines.append(
            f"  {lr.name[:21]:<22}{f'{lr.rows_k}x{lr.columns_n}':>12}{lr.crossbars:>7}"
            f"{e['adc_conversions'] / n:>12.4g}{e['adc_conversions_skipped'] / n:>10.3g}"
            f"{e['dac_pulses'] / n:>12.4g}{e['cell_reads'] / n:>13.4g}"
            f"{lr.energy_total_pj / n / 1e3:>10.4g} nJ")
    lines.append("  (event counts are per inference)")
    lines.append("")
    lines.append(f"  {'layer':<22}{'copies':>7}{'busy cyc':>11}{'latency cyc':>13}"
                 f"{'wait input':>12}{'buffer-lim':>12}{'NoC-lim':>10}{'steps run':>11}")
    for lr in result.layers:
        lines.append(f"  {lr.name[:21]:<22}{lr.duplicates:>7}{lr.cycles_busy:>11}"
                     f"{lr.cycles_latency:>13}{lr.cycles_waiting_for_input:>12}"
                     f"{lr.cycles_limited_by_buffer:>12}{lr.cycles_limited_by_noc:>10}"
                     f"{lr.executed_input_steps:>11.2f}")
    mode = "pipelined" if result.pipelined else "layer by layer"
    lines += [
        "",
        f"  latency {result.latency_per_inference_s * 1e6:.4g} us/inference, throughput "
        f"{result.inferences_per_s:.4g} inferences/s ({mode}), crossbar utilization "
        f"{100 * result.crossbar_utilization:.1f} % of {result.crossbars_used} used "
        f"(chip has {result.crossbars_total})",
        f"  {result.gops:.4g} GOPS, {result.tops_per_w:.4g} TOPS/W, "
        f"{result.tops_per_mm2:.4g} TOPS/mm2, {result.power_w:.4g} W, "
        f"area {result.area_mm2:.4g} mm2",
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
    for note in result.notes:
        lines.append(f"  note: {note}")
    return "\n".join(lines)

