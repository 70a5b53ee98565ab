"""Pareto fronts of measured design points, as a table and a plot."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from sim.fileio import atomic_write

#: Axis labels with units for the metrics a sweep can optimize, and a display scale.
LABELS = {
    "float_accuracy": ("float accuracy (%)", 100.0),
    "hardware_accuracy": ("hardware accuracy (%)", 100.0),
    "prediction_agreement": ("agreement with float (%)", 100.0),
    "energy_per_inference_nj": ("energy per inference (nJ)", 1.0),
    "latency_per_inference_s": ("latency per inference (us)", 1e6),
    "inferences_per_s": ("throughput (inferences/s)", 1.0),
    "crossbar_utilization": ("crossbar utilization (%)", 100.0),
    "crossbars_used": ("crossbars used", 1.0),
    "gops": ("effective throughput (GOPS, dense-equivalent)", 1.0),
    "tops_per_w": ("effective energy efficiency (TOPS/W, dense-equivalent)", 1.0),
    "tops_per_mm2": ("effective area efficiency (TOPS/mm2, dense-equivalent)", 1.0),
    "power_w": ("power (W)", 1.0),
    "area_mm2": ("chip area (mm2)", 1.0),
    "peak_gops": ("peak throughput (GOPS)", 1.0),
    "peak_gops_per_mm2": ("peak GOPS/s/mm2", 1.0),
    "peak_gops_per_w": ("peak GOPS/W", 1.0),
    "adc_conversions_per_inference": ("ADC conversions per inference", 1.0),
}


def pareto_mask(values: np.ndarray, goals: Sequence[str]) -> np.ndarray:
    """Which rows of ``values`` (points x objectives) no other row dominates.

    ``goals`` says per column whether larger (``max``) or smaller (``min``) is better. A row
    is dominated when another is at least as good in every objective and better in one; equal
    rows do not dominate each other, so ties all stay on the front.
    """
    v = np.asarray(values, dtype=float)
    sign = np.array([-1.0 if g == "max" else 1.0 for g in goals])
    cost = v * sign
    keep = np.ones(len(v), dtype=bool)
    for i in range(len(v)):
        no_worse = np.all(cost <= cost[i], axis=1)
        better = np.any(cost < cost[i], axis=1)
        if np.any(no_worse & better):
            keep[i] = False
    return keep


def label(metric: str) -> str:
    """The axis label of ``metric`` with its unit."""
    return LABELS.get(metric, (metric, 1.0))[0]


def scaled(metric: str, value: float) -> float:
    """``value`` in the unit :func:`label` names (e.g. accuracy in %)."""
    return value * LABELS.get(metric, (metric, 1.0))[1]


def plot_front(path: Path, points: Sequence[Mapping[str, float]], front: Sequence[bool],
               objectives: Mapping[str, str], infeasible: Sequence[Mapping[str, float]] = (),
               title: str = "") -> Path:
    """Scatter the first two objectives, the front highlighted; a third colours the points."""
    from matplotlib.figure import Figure

    names = list(objectives)
    x_name = names[0]
    y_name = names[1] if len(names) > 1 else None
    fig = Figure(figsize=(7.0, 5.0), dpi=120)
    ax = fig.add_subplot()

    def col(rows, name):
        return np.array([scaled(name, r[name]) for r in rows], dtype=float)

    if y_name is None:
        order = np.argsort(col(points, x_name))
        ax.plot(np.arange(len(order)), col(points, x_name)[order], "o")
        ax.set_xlabel("design point (sorted)")
        ax.set_ylabel(label(x_name))
    else:
        xs, ys = col(points, x_name), col(points, y_name)
        c_name = names[2] if len(names) > 2 else None
        if c_name:
            sc = ax.scatter(xs, ys, c=col(points, c_name), cmap="viridis", s=36,
                            edgecolors="none", label="measured points")
            fig.colorbar(sc, ax=ax, label=label(c_name))
        else:
            ax.scatter(xs, ys, color="0.6", s=30, label="measured points")
        mask = np.asarray(front, dtype=bool)
        if mask.any():
            order = np.argsort(xs[mask])
            ax.plot(xs[mask][order], ys[mask][order], "-", color="tab:red", lw=1, zorder=1)
            ax.scatter(xs[mask], ys[mask], facecolors="none", edgecolors="tab:red", s=110,
                       lw=1.5, label="Pareto front", zorder=3)
        if infeasible:
            ax.scatter(col(infeasible, x_name), col(infeasible, y_name), marker="x",
                       color="0.3", s=30, label="breaks a constraint")
        ax.set_xlabel(f"{label(x_name)}  [{objectives[x_name]}]")
        ax.set_ylabel(f"{label(y_name)}  [{objectives[y_name]}]")
        ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda fh: fig.savefig(fh, format="png"))  # never half a PNG
    return path
