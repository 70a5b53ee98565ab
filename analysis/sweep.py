"""``imcsim sweep``: evaluate a design space, store every point, report the Pareto front.

The coordinator (this module) expands the sweep YAML into design points, builds each point's
arch (base YAML + ``fixed`` + the point's values; the loader scales every stated figure to
the point's own parameters with the component models, :mod:`sim.components.calibrate`),
records points that cannot be built as ``invalid`` with the loader's message, sends the rest
to an executor (:mod:`analysis.executors`) and stores each result in ``sweep.db`` the moment
it arrives (:mod:`analysis.store`). Points already in ``sweep.db`` are not sent again, so a
rerun after a crash or ``kill -9`` resumes. At the end it checks the constraints, finds the
Pareto front of the objectives among the points that meet them, and writes ``points.csv``,
``pareto.csv``, ``pareto.md``, ``pareto.png`` and ``sweep.json`` beside ``sweep.db``.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import hashlib
import io
import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

import sim
from analysis import pareto
from analysis.executors import evaluate_point, make_executor
from analysis.store import PointRow, SweepStore
from analysis.sweep_spec import SweepSpec, load_sweep, point_key, set_path
from sim.config.loader import arch_from_dict, read_yaml
from sim.config.validate import short_repr
from sim.errors import ConfigError, UserError
from sim.fileio import atomic_write, ensure_writable_dir
from workloads.spec import load_workload

#: A sweep name that can name its default output folder ``results/sweep_NAME``: no path
#: separators (``name: ../x`` would write outside ``results/``), no NUL.
_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")


@dataclass
class SweepOutcome:
    """What one ``imcsim sweep`` invocation produced."""

    out_dir: Path
    rows: list[PointRow]
    front: list[PointRow]
    computed: int
    resumed: int
    errors: list[str] = field(default_factory=list)

    def by_status(self) -> dict[str, int]:
        """How many points ended in each status."""
        out: dict[str, int] = {}
        for r in self.rows:
            out[r.status] = out.get(r.status, 0) + 1
        return out


def run_sweep(spec: SweepSpec | str | Path, out_dir: str | Path | None = None, *,
              workers: int | None = None, scheduler: str | None = None,
              progress: bool = True, db_name: str = "sweep.db",
              command: str = "", write_outputs: bool = True,
              backend: str | None = None) -> SweepOutcome:
    """Run (or resume) a sweep and write its outputs (unless ``write_outputs`` is false, as
    for Monte Carlo, which writes its own); see the module docstring. ``backend`` (the
    ``--backend`` option) is the array backend each point runs on, wherever it runs; without
    it a worker uses its own ``IMCSIM_BACKEND`` or ``auto`` (the same bits either way)."""
    if not isinstance(spec, SweepSpec):
        spec = load_sweep(spec)
    if not out_dir and not _SAFE_NAME.fullmatch(spec.name):
        raise UserError(f"the sweep's name {short_repr(spec.name)} cannot name its output "
                        "folder (letters, digits, '_', '.', '-'); rename it or give --out")
    out = Path(out_dir) if out_dir else Path("results") / f"sweep_{spec.name}"
    ensure_writable_dir(out)  # before any point is built or run
    base = read_yaml(spec.arch_path)
    arch_from_dict(base, source=str(spec.arch_path))  # a bad base arch fails here, once
    workload = load_workload(spec.workload_path)
    fingerprint = spec.base_fingerprint(_workload_digest(workload))
    points, keys = _unique_points(spec, fingerprint)
    store = SweepStore(out / db_name)
    executor = None
    try:
        done = store.finished_keys()
        todo = [(i, values, key) for i, (values, key) in enumerate(zip(points, keys, strict=True))
                if key not in done]
        resumed = len(points) - len(todo)
        executor = make_executor(workers, scheduler, len(todo) if spec.mode == "analytical"
                                 else None) if todo else None
        run_id = store.start_run(command or "run_sweep", executor.name if executor else "-")
        bar = tqdm(total=len(points), initial=resumed, desc=f"sweep {spec.name}", unit="point",
                   disable=not progress, file=sys.stderr)
        meta: dict[str, tuple] = {}

        def tasks():
            # Built as the executor asks for them: a pool's workers start on the first points
            # while this process builds (validates, calibrates) the next ones, instead of
            # after every point of the sweep is built.
            for idx, values, key in todo:
                task, notes, reason = _build_point(spec, base, idx, values, key, backend)
                if task is None:
                    store.add(PointRow(key=key, idx=idx, params=values, status="invalid",
                                       reason=reason, metrics={}, notes=[], seconds=0.0,
                                       run=run_id))
                    bar.update(1)
                else:
                    meta[key] = (idx, values, notes)
                    yield task

        errors = _execute(executor, tasks(), meta, spec, store, run_id, bar) if todo else []
        bar.close()
        order = {k: i for i, k in enumerate(keys)}
        rows = [dataclasses.replace(r, idx=order[r.key]) for r in store.rows(keys)]
        rows = [_classify(r, spec) for r in sorted(rows, key=lambda r: r.idx)]
    finally:
        if executor is not None:
            executor.close()
        store.close()
    outcome = SweepOutcome(out_dir=out, rows=rows, front=[], computed=len(todo),
                           resumed=resumed, errors=errors)
    outcome.front = _front(rows, spec)
    if write_outputs:
        _write_outputs(outcome, spec)
    return outcome


def _workload_digest(workload) -> str:
    """What the workload's files contribute to every point's key beyond the parsed YAML: the
    checkpoint's bytes and, for a user's own model, its code (an edited model must not
    resume stale points)."""
    path = workload.checkpoint_path
    digest = (hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file()
              else "no-checkpoint") + sim.__version__
    model_file = workload.model_ref.file
    if model_file is not None and model_file.is_file():
        digest += hashlib.sha256(model_file.read_bytes()).hexdigest()
    return digest


def _build_point(spec: SweepSpec, base: dict, idx: int, values: dict[str, Any], key: str,
                 backend: str | None = None):
    """The task of one point, or ``(None, [], reason)`` when its arch is invalid."""
    data = copy.deepcopy(base)
    for path, value in spec.fixed.items():
        set_path(data, path, value)
    for p in spec.parameters:
        for path in p.paths:
            set_path(data, path, values[p.name])
    label = f"{spec.arch_path.name} with {_describe(values)}"
    try:
        # The loader calibrates: stated figures scaled to this point, each change noted.
        arch = arch_from_dict(data, source=label)
    except ConfigError as err:
        reason = "; ".join(f"{p}: {m}" if p else m for p, m in err.problems)
        return None, [], reason
    notes = list(arch.notes)
    # "built": the validated arch itself, so the worker does not build it again (it pickles
    # in a tenth of the time); "arch" keeps the mapping it was built from.
    task = {"key": key, "idx": idx, "arch": data, "built": arch, "label": label,
            "workload": str(spec.workload_path), "samples": spec.samples, "seed": spec.seed,
            "data_dir": spec.data_dir, "batch_size": spec.batch_size, "mode": spec.mode,
            "first_sample": spec.first_sample(values),
            # ``--backend``, for workers that do not share this environment (a Dask cluster);
            # the same bits on each backend.
            "backend": backend}
    return task, notes, ""


def _describe(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items())


def _execute(executor, tasks, meta, spec: SweepSpec, store: SweepStore, run_id: int, bar):
    errors = []
    for outcome in executor.run(evaluate_point, tasks):
        idx, values, notes = meta[outcome["key"]]
        status, reason, metrics = outcome["status"], outcome.get("reason", ""), {}
        if status == "failed":
            raise UserError(f"point {idx} ({_describe(values)}): {reason}")
        if status == "error":
            errors.append(f"point {idx} ({_describe(values)}): {reason}")
            bar.write(f"imcsim: internal error at point {idx}; it is not stored, a rerun "
                      f"retries it:\n{reason}", file=sys.stderr)
            bar.update(1)
            continue
        if status == "ok":
            metrics = outcome["metrics"]
        else:
            reason = reason.replace("\n", " ")
        store.add(PointRow(key=outcome["key"], idx=idx, params=values, status=status,
                           reason=reason, metrics=metrics, notes=notes,
                           seconds=outcome["seconds"], run=run_id))
        bar.update(1)
    return errors


def _unique_points(spec: SweepSpec, fingerprint: str) -> tuple[list[dict], list[str]]:
    """The design points and their keys, each point once (the first occurrence)."""
    points, keys, seen = [], [], set()
    for values in spec.design_points():
        settings = spec.settings(values)
        if spec.slice_by is not None:  # the point's own test samples are part of its identity
            settings = {**settings, "(first test sample)": spec.first_sample(values)}
        key = point_key(fingerprint, settings)
        if key not in seen:
            seen.add(key)
            points.append(values)
            keys.append(key)
    return points, keys


def _classify(row: PointRow, spec: SweepSpec) -> PointRow:
    """A measured point against the spec's current constraints (applied at every run, so
    editing a constraint re-classifies stored points without recomputing them)."""
    if row.status != "ok":
        return row
    broken = [str(c) for c in spec.constraints if not c.holds(row.metrics)]
    bad = [m for m in spec.objectives if not math.isfinite(row.metrics.get(m, math.nan))]
    if bad:
        broken.append(f"no finite value of {', '.join(bad)}")
    if not broken:
        return row
    return dataclasses.replace(row, status="infeasible", reason="breaks " + "; ".join(broken))


def _front(rows: list[PointRow], spec: SweepSpec) -> list[PointRow]:
    ok = [r for r in rows if r.status == "ok"]
    if not ok or not spec.objectives:
        return []
    goals = list(spec.objectives.values())
    values = np.array([[r.metrics[m] for m in spec.objectives] for r in ok])
    mask = pareto.pareto_mask(values, goals)
    return [r for r, keep in zip(ok, mask, strict=True) if keep]


def _param_names(rows: list[PointRow]) -> list[str]:
    names: list[str] = []
    for r in rows:
        for k in r.params:
            if k not in names:
                names.append(k)
    return names


def _write_outputs(outcome: SweepOutcome, spec: SweepSpec) -> None:
    out, rows = outcome.out_dir, outcome.rows
    params = _param_names(rows)
    metric_names = sorted({m for r in rows for m in r.metrics})
    front_keys = {r.key for r in outcome.front}

    def table(selected: list[PointRow]) -> str:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["point", *params, "status", "pareto", *metric_names, "seconds", "reason"])
        for r in selected:
            w.writerow([r.idx, *(r.params.get(p, "") for p in params), r.status,
                        int(r.key in front_keys), *(r.metrics.get(m, "") for m in metric_names),
                        f"{r.seconds:.2f}", r.reason])
        return buf.getvalue()

    atomic_write(out / "points.csv", lambda fh: fh.write(table(rows)), text=True)
    atomic_write(out / "pareto.csv", lambda fh: fh.write(table(outcome.front)), text=True)
    atomic_write(out / "pareto.md", lambda fh: fh.write(front_markdown(outcome, spec) + "\n"),
                 text=True)
    summary = {"name": spec.name, "spec": str(spec.source), "arch": str(spec.arch_path),
               "workload": str(spec.workload_path), "samples": spec.samples, "seed": spec.seed,
               "objectives": spec.objectives, "constraints": [str(c) for c in spec.constraints],
               "counts": outcome.by_status(), "pareto": sorted(r.idx for r in outcome.front),
               "points": [{"point": r.idx, "params": r.params, "status": r.status,
                           "reason": r.reason, "metrics": r.metrics, "notes": r.notes}
                          for r in rows]}
    atomic_write(out / "sweep.json",
                 lambda fh: json.dump(_finite(summary), fh, indent=1, allow_nan=False), text=True)
    ok = [r for r in rows if r.status == "ok"]
    if len(spec.objectives) >= 1 and ok:
        pareto.plot_front(out / "pareto.png", [r.metrics for r in ok],
                          [r.key in front_keys for r in ok], spec.objectives,
                          [r.metrics for r in rows if r.status == "infeasible"],
                          title=f"{spec.name}: {len(ok)} feasible points, "
                                f"{len(outcome.front)} on the front")


def _finite(obj: Any) -> Any:
    """``obj`` with NaN and infinities as null (strict JSON)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def front_markdown(outcome: SweepOutcome, spec: SweepSpec) -> str:
    """The Pareto front as a Markdown table: parameters, then objectives in display units."""
    params = _param_names(outcome.rows)
    objs = list(spec.objectives)
    head = ["point", *params, *(f"{pareto.label(m)} [{spec.objectives[m]}]" for m in objs)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in sorted(outcome.front, key=lambda r: r.metrics[objs[0]] if objs else 0):
        cells = [str(r.idx), *(str(r.params.get(p, "")) for p in params),
                 *(f"{pareto.scaled(m, r.metrics[m]):.4g}" for m in objs)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_outcome(outcome: SweepOutcome, spec: SweepSpec) -> str:
    """What ``imcsim sweep`` prints at the end."""
    counts = outcome.by_status()
    lines = [f"sweep {spec.name}: {len(outcome.rows)} points stored "
             f"({', '.join(f'{v} {k}' for k, v in sorted(counts.items()))}); "
             f"{outcome.resumed} were already in {outcome.out_dir / 'sweep.db'}, "
             f"{outcome.computed} evaluated now"]
    invalid = [r for r in outcome.rows if r.status == "invalid"]
    for r in invalid[:10]:
        lines.append(f"  invalid point {r.idx} ({_describe(r.params)}): {r.reason[:300]}")
    if len(invalid) > 10:
        lines.append(f"  ... and {len(invalid) - 10} more invalid points (see points.csv)")
    if outcome.front:
        lines += ["", f"Pareto front ({len(outcome.front)} points):",
                  front_markdown(outcome, spec)]
    lines.append(f"\nwrote {outcome.out_dir}/points.csv, pareto.csv, pareto.md, sweep.json"
                 + (", pareto.png" if (outcome.out_dir / "pareto.png").exists() else ""))
    if outcome.errors:
        lines.append(f"{len(outcome.errors)} points failed with an internal error (not stored; "
                     "a rerun retries them)")
    return "\n".join(lines)

