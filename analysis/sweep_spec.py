"""The sweep YAML: a base arch and workload, parameters by YAML path, sampling, goals.

::

    name: isaac_adc                       # optional; names the output folder
    arch: isaac_32nm                      # base arch: a path (relative to this file) or a
    workload: cifar_cnn_cifar10           #   shipped name; the same for the workload
    samples: 200                          # test samples per point (bit-true)
    seed: 0                               # the same seed at every point (paired comparison)
    batch_size: 100
    fixed: {crossbar.adc.range: calibrated}   # set at every point
    parameters:
      crossbar.adc.bits: [4, 5, 6, 7, 8]
      crossbar.size: {paths: [crossbar.rows, crossbar.columns], values: [64, 128, 256]}
      variation.cell.sigma: {low: 0.0, high: 0.2, points: 5}     # or log: true, integer: true
    sampling: grid                        # or {method: random, points: 20, seed: 1}
    mode: bit_true                        # or analytical: event counts from input
                                          #   histograms, no hardware accuracy (fast)
    constraints: ["area_mm2 <= 100", "hardware_accuracy >= 0.5"]
    objectives: {hardware_accuracy: max, tops_per_w: max, area_mm2: min}

A YAML path is dotted keys into the arch YAML; ``components[NAME].power`` addresses a row of
the component table by its name. Every problem in the file is reported at once with its path.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from analysis.pareto import LABELS
from analysis.paths import ARCH_DIR, WORKLOAD_DIR
from sim.config.loader import read_yaml
from sim.config.validate import Problems, Section, join
from sim.errors import ConfigError

#: Numeric fields of a run's Result a constraint or objective may name (each with its label).
METRICS = tuple(LABELS)
#: Metrics analytical mode does not measure (it runs no bit-true pass).
UNMEASURED_ANALYTICAL = ("hardware_accuracy", "prediction_agreement")
_OPS = {"<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b, "<": lambda a, b: a < b,
        ">": lambda a, b: a > b, "==": lambda a, b: a == b}
_CONSTRAINT = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(<=|>=|==|<|>)\s*(\S+)\s*$")
_SEGMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?:\[([^\]]+)\])?$")


@dataclass(frozen=True)
class Parameter:
    """One swept dimension: a name, the YAML paths it sets, its values or range."""

    name: str
    paths: tuple[str, ...]
    values: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False

    def draw(self, rng: np.random.Generator) -> Any:
        """One random value: a choice from the list, or uniform (log-uniform) in the range."""
        if self.values is not None:
            return self.values[int(rng.integers(len(self.values)))]
        lo, hi = self.low, self.high
        if self.log:
            x = math.exp(rng.uniform(math.log(lo), math.log(hi)))
        else:
            x = float(rng.uniform(lo, hi))
        return int(round(x)) if self.integer else x


@dataclass(frozen=True)
class Constraint:
    """``metric op value``, e.g. ``area_mm2 <= 100``."""

    metric: str
    op: str
    value: float

    def holds(self, metrics: dict[str, float]) -> bool:
        """Whether ``metrics`` satisfy this constraint."""
        return bool(_OPS[self.op](metrics[self.metric], self.value))

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.value:g}"


@dataclass(frozen=True)
class SweepSpec:
    """A parsed, validated sweep YAML."""

    source: Path
    name: str
    arch_path: Path
    workload_path: Path
    samples: int | None
    seed: int
    batch_size: int
    data_dir: str | None
    fixed: dict[str, Any]
    parameters: tuple[Parameter, ...]
    method: str
    points: int
    sampling_seed: int
    constraints: tuple[Constraint, ...]
    objectives: dict[str, str]
    mode: str = "bit_true"
    #: The name of a parameter whose ``i``-th value runs on its own test samples ``[i *
    #: samples, (i + 1) * samples)`` instead of the first ``samples`` (Monte Carlo's
    #: ``--disjoint-samples``: chip ``i`` on slice ``i``); ``None``: every point on the same.
    slice_by: str | None = None

    def __post_init__(self) -> None:
        if self.slice_by is None:
            return
        names = {p.name: p for p in self.parameters}
        if (self.slice_by not in names or names[self.slice_by].values is None
                or self.samples is None or self.mode != "bit_true"):
            raise ValueError(f"slice_by {self.slice_by!r} needs a parameter of that name with "
                             "listed values, a sample count and the bit-true mode")

    def first_sample(self, values: dict[str, Any]) -> int:
        """The index of the first test sample point ``values`` runs on (0 unless
        :attr:`slice_by`)."""
        if self.slice_by is None:
            return 0
        p = next(p for p in self.parameters if p.name == self.slice_by)
        return p.values.index(values[self.slice_by]) * self.samples

    def design_points(self) -> list[dict[str, Any]]:
        """Every point to evaluate: parameter name -> value, in a fixed order."""
        if self.method == "grid":
            names = [p.name for p in self.parameters]
            combos = itertools.product(*(p.values for p in self.parameters))
            return [dict(zip(names, combo, strict=True)) for combo in combos]
        rng = np.random.default_rng(self.sampling_seed)
        out: list[dict[str, Any]] = []
        seen: set[str] = set()
        for _ in range(self.points * 20):
            point = {p.name: p.draw(rng) for p in self.parameters}
            key = json.dumps(point, sort_keys=True, default=str)
            if key not in seen:
                seen.add(key)
                out.append(point)
            if len(out) == self.points:
                break
        return out

    def settings(self, values: dict[str, Any]) -> dict[str, Any]:
        """The YAML path -> value settings a point makes (a linked parameter sets several)."""
        return {path: values[p.name] for p in self.parameters for path in p.paths}

    def base_fingerprint(self, extra: str = "") -> str:
        """A hash of everything every point shares (files, samples, seed, fixed settings)."""
        # The parsed files, not their bytes: editing a comment must not invalidate results.
        blob = [read_yaml(self.arch_path), read_yaml(self.workload_path), self.samples,
                self.seed, self.batch_size, self.fixed, extra]
        if self.mode != "bit_true":
            blob.append(self.mode)
        if self.slice_by is not None:  # the first sample joins each key (sweep._unique_points)
            blob.append(["disjoint samples", self.slice_by])
        return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()


def point_key(fingerprint: str, values: dict[str, Any]) -> str:
    """The identity of one design point in ``sweep.db``."""
    blob = json.dumps([fingerprint, values], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _path_text(top: Section, key: str, *default: Any) -> str | None:
    """A string naming a file or folder; a NUL character (which no path can hold, and which
    makes ``pathlib`` raise) is a problem at ``key``."""
    value = top.get(key, str, *default)
    if isinstance(value, str) and "\x00" in value:
        top.problems.add(key, "must be a path; it contains a NUL character")
        return None
    return value


def _resolve(value: str, here: Path, shipped: Path) -> Path:
    candidates = [here / value, Path(value), shipped / value, shipped / f"{value}.yaml"]
    for c in candidates:
        if c.is_file():
            return c.resolve()
    return (here / value).resolve()


def load_sweep(path: str | Path) -> SweepSpec:
    """Read and validate a sweep YAML; every problem is reported at once."""
    path = Path(path)
    problems = Problems(str(path))
    top = Section(read_yaml(path), "", problems)
    here = path.resolve().parent
    name = top.get("name", str, path.stem)
    arch = _path_text(top, "arch")
    workload = _path_text(top, "workload")
    arch_path = _resolve(arch, here, ARCH_DIR) if arch else None
    workload_path = _resolve(workload, here, WORKLOAD_DIR) if workload else None
    for key, p in (("arch", arch_path), ("workload", workload_path)):
        if p is not None and not p.is_file():
            problems.add(key, f"file not found: {p}")
    samples = top.get("samples", int, None, lo=1)
    seed = top.get("seed", int, 0, lo=0)
    batch_size = top.get("batch_size", int, 100, lo=1)
    data_dir = _path_text(top, "data_dir", None)
    fixed_raw = top.get("fixed", dict, {})
    fixed = {}
    for key, value in (fixed_raw or {}).items():
        if _check_path(str(key), join("fixed", str(key)), problems):
            fixed[str(key)] = value
    parameters = _parameters(top.raw("parameters"), problems)
    method, points, sampling_seed = _sampling(top.raw("sampling", "grid"), problems)
    if top.has("scaling"):
        problems.add("scaling", "is no longer a setting: every point's energy and area now come "
                                "from the component models at the point's own parameters, "
                                "scaled from the stated figures (always on, in runs, sweeps "
                                "and Monte Carlo alike; docs/components.md); remove this key")
    mode = top.get("mode", str, "bit_true", choices=("bit_true", "analytical"))
    constraints = _constraints(top.get("constraints", list, []), problems)
    objectives = _objectives(top.get("objectives", dict, {}), problems)
    top.finish()
    if mode == "analytical":
        for where, metric in ([(f"constraints[{i}]", c.metric) for i, c in enumerate(constraints)]
                              + [(join("objectives", m), m) for m in objectives]):
            if metric in UNMEASURED_ANALYTICAL:
                problems.add(where, f"{metric} is not measured in analytical mode (mode: "
                                    "bit_true measures it)")
    if method == "grid":
        for p in parameters:
            if p.values is None:
                problems.add(join("parameters", p.name), "a range needs 'points' for grid "
                                                          "sampling")
    if arch_path is not None and arch_path.is_file():
        _check_paths(fixed, parameters, read_yaml(arch_path), problems)
    problems.raise_if_any()
    if data_dir is not None:
        data_dir = str((here / data_dir).resolve())
    return SweepSpec(source=path.resolve(), name=name, arch_path=arch_path,
                     workload_path=workload_path, samples=samples, seed=seed,
                     batch_size=batch_size, data_dir=data_dir, fixed=fixed,
                     parameters=tuple(parameters), method=method, points=points,
                     sampling_seed=sampling_seed,
                     constraints=tuple(constraints), objectives=objectives, mode=mode)


def _check_path(path: str, where: str, problems: Problems) -> bool:
    if not path or not all(_SEGMENT.match(seg) for seg in path.split(".")):
        problems.add(where, f"{path!r} is not a YAML path such as crossbar.adc.bits or "
                            "components[adc].power")
        return False
    return True


def _parameters(raw: Any, problems: Problems) -> list[Parameter]:
    if not isinstance(raw, dict) or not raw:
        problems.add("parameters", "needs a mapping of YAML path -> values (at least one)")
        return []
    out = []
    for name, spec in raw.items():
        where = join("parameters", str(name))
        name = str(name)
        if isinstance(spec, list):
            if not spec:
                problems.add(where, "needs at least one value")
                continue
            if _repeats(spec, where, problems) and _check_path(name, where, problems):
                out.append(Parameter(name=name, paths=(name,), values=tuple(spec)))
            continue
        s = Section(spec, where, problems)
        if not s.ok:
            continue
        paths = s.get("paths", list, [name])
        paths = tuple(str(p) for p in paths)
        ok = all(_check_path(p, join(where, "paths"), problems) for p in paths)
        values = s.get("values", list, None)
        low = s.get("low", float, None)
        high = s.get("high", float, None)
        n = s.get("points", int, None, lo=1)
        log = s.get("log", bool, False)
        integer = s.get("integer", bool, False)
        s.finish()
        if values is None and (low is None or high is None):
            problems.add(where, "give 'values: [...]' or a range 'low:' and 'high:'")
            continue
        if values is None:
            if high < low or (log and low <= 0):
                problems.add(where, "needs low <= high (and low > 0 with log: true)")
                continue
            if n is not None:
                grid = (np.geomspace(low, high, n) if log else np.linspace(low, high, n))
                values = [int(round(v)) if integer else float(v) for v in grid]
                values = list(dict.fromkeys(values))  # integer rounding may repeat values
        elif not _repeats(values, where, problems):
            continue
        if ok:
            out.append(Parameter(name=name, paths=paths,
                                 values=None if values is None else tuple(values),
                                 low=low, high=high, log=log, integer=integer))
    return out


def _repeats(values: list, where: str, problems: Problems) -> bool:
    """True when ``values`` has no repeated value; otherwise report it and return False."""
    seen = [json.dumps(v, sort_keys=True, default=str) for v in values]
    twice = sorted({v for v in seen if seen.count(v) > 1})
    if twice:
        problems.add(where, f"values repeat: {', '.join(twice)}")
        return False
    return True


def _sampling(raw: Any, problems: Problems) -> tuple[str, int, int]:
    if raw == "grid":
        return "grid", 0, 0
    s = Section(raw, "sampling", problems)
    method = s.get("method", str, "grid", choices=("grid", "random"))
    points = s.get("points", int, 0 if method == "grid" else None, lo=1)
    seed = s.get("seed", int, 0, lo=0)
    s.finish()
    return method, points or 0, seed


def _constraints(raw: list, problems: Problems) -> list[Constraint]:
    out = []
    for i, text in enumerate(raw or []):
        m = _CONSTRAINT.match(str(text))
        where = f"constraints[{i}]"
        if not m:
            problems.add(where, f"{text!r} is not 'METRIC OP NUMBER' (e.g. 'area_mm2 <= 100')")
            continue
        metric, op, number = m.groups()
        if metric not in METRICS:
            problems.add(where, f"unknown metric {metric!r}; metrics: {', '.join(METRICS)}")
            continue
        try:
            out.append(Constraint(metric, op, float(number)))
        except ValueError:
            problems.add(where, f"{number!r} is not a number")
    return out


def _objectives(raw: dict, problems: Problems) -> dict[str, str]:
    out = {}
    for metric, goal in (raw or {}).items():
        where = join("objectives", str(metric))
        if metric not in METRICS:
            problems.add(where, f"unknown metric; metrics: {', '.join(METRICS)}")
        elif goal not in ("max", "min"):
            problems.add(where, f"must be max or min, got {goal!r}")
        else:
            out[str(metric)] = goal
    return out


def set_path(data: dict[str, Any], path: str, value: Any) -> None:
    """Set ``value`` at dotted YAML ``path`` in ``data``, creating missing mappings.

    ``components[NAME]`` selects the list entry whose ``name`` is NAME. Raises ``KeyError``
    with a message when the path runs into something that is not a mapping or names a
    component row that does not exist.
    """
    node: Any = data
    segments = path.split(".")
    for depth, seg in enumerate(segments):
        key, select = _SEGMENT.match(seg).groups()
        last = depth == len(segments) - 1 and select is None
        if not isinstance(node, dict):
            raise KeyError(f"{'.'.join(segments[:depth])} is not a mapping")
        if last:
            node[key] = value
            return
        if select is None:
            node = node.setdefault(key, {})
            continue
        rows = node.get(key)
        match = [r for r in rows or [] if isinstance(r, dict) and str(r.get("name")) == select]
        if not match:
            names = [str(r.get("name")) for r in rows or [] if isinstance(r, dict)]
            raise KeyError(f"no {key} entry named {select!r} (have: {', '.join(names)})")
        node = match[0]
        if depth == len(segments) - 1:
            raise KeyError(f"{path} selects a whole {key} entry; name a field of it")


def check_against_base(spec: SweepSpec, base: dict[str, Any]) -> None:
    """Raise a ConfigError for ``fixed`` and parameter paths that are not arch settings."""
    problems = Problems(str(spec.source))
    _check_paths(spec.fixed, list(spec.parameters), base, problems)
    problems.raise_if_any()


def _check_paths(fixed: dict[str, Any], parameters: list[Parameter], base: Any,
                 problems: Problems) -> None:
    """Report ``fixed`` and parameter paths that are not settings of the base arch.

    Each path is set alone (to its first value) and loaded; an 'unknown key' problem at that
    path means a typo that would make every point invalid, so it is a mistake in the sweep
    YAML, reported with its YAML path in that file.
    """
    import copy

    from sim.config.loader import arch_from_dict

    if not isinstance(base, dict):
        return
    checks = [(join("fixed", k), k, v) for k, v in fixed.items()]
    for p in parameters:
        first = p.values[0] if p.values else p.low
        checks += [(join("parameters", p.name), path, first) for path in p.paths]
    for where, path, value in checks:
        data = copy.deepcopy(base)
        try:
            set_path(data, path, value)
        except KeyError as exc:
            problems.add(where, str(exc.args[0]))
            continue
        indexed = _indexed(path, base)
        try:
            arch_from_dict(data)
        except ConfigError as err:
            for at, msg in err.problems:
                if msg.startswith("unknown key") and (
                        indexed == at or indexed.startswith(at + ".") or at.startswith(indexed)):
                    problems.add(where, f"{path} is not an arch setting ({msg})")


def _indexed(path: str, base: dict[str, Any]) -> str:
    """``components[adc].power`` -> ``components[7].power``, as the arch loader names it."""
    segments = []
    for seg in path.split("."):
        key, select = _SEGMENT.match(seg).groups()
        if select is not None:
            rows = base.get(key) if isinstance(base, dict) else None
            names = [str(r.get("name")) if isinstance(r, dict) else None for r in rows or []]
            seg = f"{key}[{names.index(select)}]" if select in names else seg
        segments.append(seg)
    return ".".join(segments)
