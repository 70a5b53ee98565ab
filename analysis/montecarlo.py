"""``imcsim montecarlo``: N simulated chips of one design, in parallel, with statistics.

A chip is one draw of every static non-ideality (cell variation, stuck-at cells, ADC
curves): chip ``i`` is the arch with ``variation.seed = base_seed + i``, run on the same test
samples with the same run seed, or, with ``disjoint_samples`` (``--disjoint-samples``), on its
own slice ``[i * samples, (i + 1) * samples)`` of the test split, so N chips cover N x samples
different images at the cost of ``samples`` each. The chips run as points of a sweep (same
executors, same resumable ``montecarlo.db``), optionally at several levels of one variation
parameter (``--vary variation.cell.sigma=0,0.05,0.1``); every level runs chip ``i`` on the
same samples, so levels stay paired. For each level the mean, the sample standard deviation
and a Student-t confidence interval of the mean are reported for accuracy, energy, latency
and the accuracy drop (float - hardware, per chip on its own samples), and written to
``montecarlo.json`` (the input of the report's variation section, see ``docs/reports.md``).
With disjoint samples each level also gets the pooled accuracies over every covered image and
the between-chip spread split into what sampling alone explains and the chip-to-chip rest
(:func:`pooled_accuracy`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from analysis.sweep import run_sweep
from analysis.sweep_spec import Parameter, SweepSpec, check_against_base
from sim.config import load_arch
from sim.config.loader import read_yaml
from sim.config.validate import short_repr
from sim.errors import UserError
from sim.fileio import atomic_write
from workloads.spec import load_workload

METRICS = ("hardware_accuracy", "float_accuracy", "energy_per_inference_nj",
           "latency_per_inference_s")
#: Per chip: float - hardware accuracy on the chip's own samples (removes their difficulty).
DROP = "accuracy_drop"


def parse_vary(text: str | None) -> tuple[str, tuple[Any, ...]] | None:
    """``PATH=v1,v2,...`` -> ``(PATH, values)``; values parsed as YAML scalars."""
    if not text:
        return None
    path, sep, values = text.partition("=")
    try:
        items = [_scalar(v) for v in values.split(",") if v.strip()]
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc)
        raise UserError(f"--vary {short_repr(text)}: a value is not a YAML scalar ({problem}); "
                        "expected PATH=VALUE,VALUE,... such as variation.cell.sigma=0,0.05,0.1"
                        ) from None
    if not sep or not path.strip() or not items:
        raise UserError(f"--vary {short_repr(text)}: expected PATH=VALUE,VALUE,... such as "
                        "variation.cell.sigma=0,0.05,0.1")
    return path.strip(), tuple(items)


def parse_set(texts: list[str] | None) -> dict[str, Any]:
    """``["PATH=VALUE", ...]`` -> ``{PATH: VALUE}``; values parsed as YAML scalars. The arch
    settings every chip shares (``--set weights.encoding=differential``)."""
    fixed: dict[str, Any] = {}
    for text in texts or ():
        path, sep, value = text.partition("=")
        if not sep or not path.strip() or not value.strip():
            raise UserError(f"--set {short_repr(text)}: expected PATH=VALUE such as "
                            "variation.cell.sigma=0.1")
        try:
            fixed[path.strip()] = _scalar(value)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or str(exc)
            raise UserError(f"--set {short_repr(text)}: the value is not a YAML scalar "
                            f"({problem})") from None
    return fixed


def _scalar(text: str) -> Any:
    """A YAML scalar, with numbers YAML 1.1 leaves as strings (``1e-2``) read as floats."""
    value = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506
    if isinstance(value, (list, dict)):  # "[1" is an error above; "[1]" is not a scalar
        raise yaml.YAMLError(f"{type(value).__name__} where a single value belongs")
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def confidence_interval(values: np.ndarray, confidence: float) -> dict[str, float]:
    """Mean, sample std and the Student-t interval of the mean of ``values`` (NaN for the
    std and the interval of fewer than two values: one chip says nothing of the spread)."""
    from scipy import stats

    x = np.asarray(values, dtype=float)
    n = len(x)
    mean = float(x.mean()) if n else math.nan
    std = float(x.std(ddof=1)) if n > 1 else math.nan
    half = float(stats.t.ppf((1 + confidence) / 2, n - 1) * std / math.sqrt(n)) if n > 1 \
        else math.nan
    return {"mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half, "n": n}


def pooled_accuracy(chips: list[dict[str, Any]], samples: int) -> dict[str, Any]:
    """One level's accuracies over every image its chips covered, each chip on its own
    ``samples`` test samples (``--disjoint-samples``), and its between-chip spread split in two.

    ``hardware_accuracy`` and ``float_accuracy``: total correct / total images. ``observed_std``:
    the sample std of the per-chip accuracies ``p_i``, which now holds the slices' difference
    as well as the chips'. ``sampling_std``: the part expected from sampling ``samples``
    images alone, binomial, ``sqrt(mean_i p_i (1 - p_i) / samples)``. ``chip_std``: the
    chip-to-chip spread estimate ``sqrt(max(0, observed_std^2 - sampling_std^2))`` (NaN with
    fewer than two chips).
    """
    hw = np.array([c["hardware_accuracy"] for c in chips], dtype=float)
    fl = np.array([c["float_accuracy"] for c in chips], dtype=float)
    images = samples * len(chips)
    observed = float(hw.var(ddof=1)) if len(hw) > 1 else math.nan
    sampling = float(np.mean(hw * (1 - hw))) / samples
    return {"images": images,
            "hardware_accuracy": float(np.rint(hw * samples).sum()) / images,
            "float_accuracy": float(np.rint(fl * samples).sum()) / images,
            "observed_std": math.sqrt(observed), "sampling_std": math.sqrt(sampling),
            "chip_std": math.sqrt(max(0.0, observed - sampling)) if len(hw) > 1 else math.nan}


def size_of_test_split(workload_path: Path, data_dir: str | None) -> int:
    """How many samples the workload's test split holds (loading it: a missing data set is
    found here, once, with its own message)."""
    return len(load_workload(workload_path).load_data("test", data_dir)[1])


def disjoint_slices(chips: int, samples: int | None, split: int) -> int:
    """The samples per chip when every chip runs on its own slice of a ``split``-sample test
    split: ``samples``, or ``split // chips`` when ``None``; a UserError when they do not fit."""
    if samples is None:
        if split < chips:
            raise UserError(f"--disjoint-samples: {chips} chips need at least one test sample "
                            f"each, but the test split has {split}")
        return split // chips
    if chips * samples > split:
        raise UserError(f"--disjoint-samples: {chips} chips x {samples} samples = "
                        f"{chips * samples:,} test samples, but the test split has {split:,}; "
                        f"give at most --samples {split // chips} or fewer chips")
    return samples


def run_montecarlo(arch_path: Path, workload_path: Path, *, chips: int, samples: int | None,
                   seed: int = 0, base_seed: int = 0, vary: str | None = None,
                   batch_size: int = 100, data_dir: str | None = None,
                   out_dir: str | Path, workers: int | None = None,
                   scheduler: str | None = None, confidence: float = 0.95,
                   progress: bool = True, command: str = "",
                   fixed: dict[str, Any] | None = None,
                   disjoint_samples: bool = False, backend: str | None = None
                   ) -> dict[str, Any]:
    """Run the chips (resuming finished ones) and return the ``montecarlo.json`` mapping.

    ``fixed``: arch settings (YAML path -> value) applied to every chip, as a sweep's
    ``fixed:`` (``imcsim montecarlo --set``). ``disjoint_samples``: chip ``i`` (in seed order)
    runs on test samples ``[i * samples, (i + 1) * samples)``, ``samples`` defaulting to
    ``split // chips`` (``--disjoint-samples``, see the module docstring)."""
    if chips < 2:
        raise UserError(f"--chips must be at least 2 (a confidence interval needs two chips), "
                        f"got {chips}")
    if not 0 < confidence < 1:
        raise UserError(f"--confidence must be between 0 and 1, got {confidence}")
    levels = parse_vary(vary)
    data_dir = None if data_dir is None else str(Path(data_dir).resolve())
    split = None
    if disjoint_samples:
        split = size_of_test_split(Path(workload_path), data_dir)
        samples = disjoint_slices(chips, samples, split)
    params = [Parameter(name="variation.seed", paths=("variation.seed",),
                        values=tuple(base_seed + i for i in range(chips)))]
    if levels:
        params.insert(0, Parameter(name=levels[0], paths=(levels[0],), values=levels[1]))
    spec = SweepSpec(source=Path(arch_path).resolve(), name="montecarlo",
                     arch_path=Path(arch_path).resolve(),
                     workload_path=Path(workload_path).resolve(), samples=samples, seed=seed,
                     batch_size=batch_size, data_dir=data_dir,
                     fixed=dict(fixed or {}), parameters=tuple(params), method="grid", points=0,
                     sampling_seed=0, constraints=(), objectives={},
                     slice_by="variation.seed" if disjoint_samples else None)
    check_against_base(spec, read_yaml(spec.arch_path))
    outcome = run_sweep(spec, out_dir, workers=workers, scheduler=scheduler, progress=progress,
                        db_name="montecarlo.db", command=command, write_outputs=False,
                        backend=backend)
    bad = [r for r in outcome.rows if r.status != "ok"]
    if bad:
        raise UserError(f"{len(bad)} chip(s) could not be simulated; first: {bad[0].reason}")
    if outcome.errors:
        raise UserError(f"{len(outcome.errors)} chip(s) failed with an internal error; "
                        f"a rerun retries them. First:\n{outcome.errors[0]}")
    report = {"kind": "imcsim-montecarlo", "arch": load_arch(arch_path).name,
              "arch_file": str(arch_path), "workload": load_workload(workload_path).name,
              "workload_file": str(workload_path),
              "samples": samples, "chips": chips, "base_seed": base_seed, "run_seed": seed,
              "disjoint_samples": disjoint_samples, "test_split": split,
              "samples_left_out": split - chips * samples if disjoint_samples else None,
              "confidence": confidence, "fixed": dict(fixed or {}), "levels": []}
    level_values = levels[1] if levels else (None,)
    for value in level_values:
        rows = [r for r in outcome.rows if not levels or r.params[levels[0]] == value]
        chips_out = [{"seed": r.params["variation.seed"], "first_sample": spec.first_sample(
                          r.params), **{m: r.metrics[m] for m in METRICS},
                      DROP: r.metrics["float_accuracy"] - r.metrics["hardware_accuracy"]}
                     for r in rows]
        level = {
            "label": f"{levels[0]}={value}" if levels else "as configured",
            "param": levels[0] if levels else None, "value": value, "chips": chips_out,
            "summary": {m: confidence_interval(np.array([c[m] for c in chips_out]), confidence)
                        for m in (*METRICS, DROP)}}
        if disjoint_samples:
            level["pooled"] = pooled_accuracy(chips_out, samples)
        report["levels"].append(level)
    out = Path(out_dir)
    atomic_write(out / "montecarlo.json", lambda fh: json.dump(report, fh, indent=1), text=True)
    return report


def format_montecarlo(report: dict[str, Any]) -> str:
    """A table of the per-level statistics (and, with disjoint samples, a second one of the
    pooled accuracies and the split spread)."""
    conf = int(round(100 * report["confidence"]))
    disjoint = report.get("disjoint_samples")
    if disjoint:
        covered = report["chips"] * report["samples"]
        what = (f"{report['chips']} chips x {report['samples']} test samples, each chip its "
                f"own (samples 0..{covered - 1} of {report['test_split']}, "
                f"{report['samples_left_out']} left out)")
    else:
        what = f"{report['chips']} chips x {report['samples'] or 'all'} test samples (the same)"
    lines = [f"{what}, {conf} % confidence intervals of the mean",
             f"  {'level':<30}{'hw accuracy %':>24}{'energy/inf nJ':>26}{'latency us':>22}"]
    for lv in report["levels"]:
        s = lv["summary"]
        lines.append(f"  {lv['label'][:29]:<30}{_cell(s, 'hardware_accuracy', 100):>24}"
                     f"{_cell(s, 'energy_per_inference_nj', 1):>26}"
                     f"{_cell(s, 'latency_per_inference_s', 1e6):>22}")
    if disjoint:
        lines += ["", f"  {'level':<30}{'pooled hw %':>12}{'pooled float %':>15}"
                      f"{'drop float-hw pp':>26}{'std pp: observed':>18}{'sampling':>10}"
                      f"{'chip':>7}"]
        for lv in report["levels"]:
            p = lv["pooled"]
            lines.append(f"  {lv['label'][:29]:<30}{100 * p['hardware_accuracy']:>12.2f}"
                         f"{100 * p['float_accuracy']:>15.2f}"
                         f"{_cell(lv['summary'], DROP, 100):>26}"
                         f"{100 * p['observed_std']:>18.2f}{100 * p['sampling_std']:>10.2f}"
                         f"{100 * p['chip_std']:>7.2f}")
        lines.append("  (pooled: total correct / total images over all chips; drop: mean of "
                     "each chip's float - hardware accuracy on its own images; std of the "
                     "per-chip accuracy: observed, expected from sampling alone (binomial), "
                     "chip = sqrt(max(0, observed^2 - sampling^2)), the chip-to-chip spread)")
    return "\n".join(lines)


def _cell(summary: dict[str, Any], metric: str, scale: float) -> str:
    v = summary[metric]
    return f"{v['mean'] * scale:.4g} [{v['ci_low'] * scale:.4g}, {v['ci_high'] * scale:.4g}]"
