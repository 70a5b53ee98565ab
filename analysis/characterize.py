"""Linearity characterization of one macro, as CAP-RAM's chips were measured (``imcsim
characterize``).

CAP-RAM (Chen et al., JSSC 2021, Sec. IV, Figs. 16-17) sweeps MAC inputs and weights across
the macro, records the ADC output code of every column against the ideal MAC value, and
reports the system linearity error (under 2 LSB after its two-step calibration) over 524,288
samples from two chips. Here:

* one **macro** is one crossbar of the arch (``crossbar.rows`` x ``crossbar.columns``, plus
  its unit column), programmed with seeded uniform random weights that fill its columns;
* a **chip** is one seed of the macro's static variation (cells and ADC instances); chip ``c``
  of seed ``s`` uses ``SeedSequence([s, c, 0])`` (its weights and sweep ``[s, c, 1]``), so
  more chips never change the earlier ones;
* the **sweep** applies input vectors whose fraction of nonzero inputs rises linearly from 0
  to 1 (each nonzero input is the largest positive value or a uniform one, even odds), so
  every step's MAC values cover the ADC range;
* a **sample** is one conversion: one column at one input step of one vector. Its error is
  ``value - ideal`` in LSB of the ADC, where ``ideal`` is the MAC of the programmed weights
  and the known inputs over the ADC step, ``value`` the (calibrated) code;
* per column: mean, standard deviation and largest absolute error; INL-like = largest
  absolute mean error over the one-LSB bins of the ideal value; DNL-like = largest change of
  that mean between adjacent bins (bins with fewer than :data:`MIN_BIN` samples left out).

Each chip is measured with ``crossbar.adc.calibration: none`` and ``two_step`` (the same
chip: calibration is digital and its data come from its own seed, never from the sweep).
The macro goes through the layer's public API (:meth:`CrossbarLayer.column_conversions`);
``_macro_layer`` and ``_macro_shape`` are the two places a macro family plugs in.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from sim.config import load_arch
from sim.config.schema import Arch, columns_per_weight
from sim.errors import UserError

#: Samples of CAP-RAM's linearity measurement (two chips; card claim C1, Sec. IV).
PAPER_SAMPLES = 524_288
#: CAP-RAM's system linearity error bound after calibration (LSB).
PAPER_BOUND_LSB = 2.0
#: Fewest samples a one-LSB bin needs to enter the INL/DNL-like figures.
MIN_BIN = 4
#: The calibration settings compared.
MODES = ("none", "two_step")


@dataclass
class ColumnStats:
    """Error statistics of one column on one chip (LSB)."""

    column: int
    instance: int
    samples: int
    mean_lsb: float
    std_lsb: float
    max_abs_lsb: float
    inl_lsb: float
    dnl_lsb: float


@dataclass
class ChipRun:
    """One chip under one calibration setting: per-column figures and pooled errors."""

    chip: int
    calibration: str
    columns: list[ColumnStats]
    ideal: np.ndarray = field(repr=False)
    value: np.ndarray = field(repr=False)
    column: np.ndarray = field(repr=False)

    @property
    def error(self) -> np.ndarray:
        """Per-sample error ``value - ideal`` (LSB)."""
        return self.value - self.ideal


@dataclass
class Characterization:
    """The result of :func:`characterize`."""

    arch_name: str
    rows: int
    columns: int
    adc_bits: int
    chips: int
    seed: int
    samples_per_chip: int
    vectors_per_chip: int
    runs: list[ChipRun]

    def summary(self) -> list[dict]:
        """One row per (calibration, chip) and per calibration over all chips."""
        rows = []
        for mode in MODES:
            runs = [r for r in self.runs if r.calibration == mode]
            for r in runs:
                rows.append(_summary_row(mode, str(r.chip), [r]))
            rows.append(_summary_row(mode, "all", runs))
        return rows


def _summary_row(mode: str, chip: str, runs: list[ChipRun]) -> dict:
    err = np.concatenate([r.error for r in runs])
    cols = [c for r in runs for c in r.columns]
    a = np.abs(err)
    return {"calibration": mode, "chip": chip, "samples": int(err.size),
            "mean_lsb": float(err.mean()), "std_lsb": float(err.std()),
            "max_abs_lsb": float(a.max()), "p999_abs_lsb": float(np.quantile(a, 0.999)),
            "within_2lsb": float((a < PAPER_BOUND_LSB).mean()),
            "worst_column_inl_lsb": _nanmax([c.inl_lsb for c in cols]),
            "worst_column_dnl_lsb": _nanmax([c.dnl_lsb for c in cols])}


def _nanmax(values: list[float]) -> float:
    """Largest of the figures that exist (NaN: too few samples per bin anywhere)."""
    v = np.asarray(values, np.float64)
    return float(v[~np.isnan(v)].max()) if (~np.isnan(v)).any() else math.nan


def _macro_shape(arch: Arch) -> tuple[int, int]:
    """``(K, N)`` of the weight matrix that fills one macro's rows and data columns.

    A family whose macro holds several arrays that compute one after another on the same
    MAC circuits and ADCs (CAP-RAM: ``cells_per_mac`` weight groups of ``crossbar.rows`` MAC
    rows) fills all of them: ``K`` is the view's rows times those groups, so the sweep
    covers every cell of the macro.
    """
    xb = arch.crossbar
    per = columns_per_weight(arch.weights, xb.cell)
    n = xb.columns // per
    if n < 1:
        raise UserError(f"{arch.name}: one weight needs {per} columns, more than the "
                        f"{xb.columns} of crossbar.columns; nothing to characterize")
    groups = getattr(arch.macro, "cells_per_mac", 1) if arch.macro is not None else 1
    return xb.rows * groups, n


def _macro_layer(arch: Arch, weights: np.ndarray, seed: np.random.SeedSequence):
    """The macro model of ``arch`` programmed with ``weights`` (the family's layer)."""
    from sim.macros.family import make_layer

    return make_layer(arch, weights, seed=seed, name="macro")


def _with_calibration(arch: Arch, mode: str) -> Arch:
    xb = arch.crossbar
    return dataclasses.replace(arch, crossbar=dataclasses.replace(
        xb, adc=dataclasses.replace(xb.adc, calibration=mode)))


def _sweep_inputs(arch: Arch, k: int, m: int, rng: np.random.Generator) -> np.ndarray:
    """``m`` input vectors whose density of nonzero inputs rises linearly from 0 to 1."""
    inp = arch.inputs
    lo = -(1 << (inp.bits - 1)) if inp.signed else 0
    hi = (1 << (inp.bits - 1)) - 1 if inp.signed else (1 << inp.bits) - 1
    density = ((np.arange(m) + 0.5) / m)[:, None]
    on = rng.random((m, k)) < density
    top = rng.random((m, k)) < 0.5
    uniform = rng.integers(lo, hi + 1, size=(m, k), dtype=np.int64)
    return np.where(on, np.where(top, hi, uniform), 0).astype(np.int64)


def _column_stats(ideal, value, column, instance) -> list[ColumnStats]:
    err = value - ideal
    out = []
    for c in range(instance.shape[0]):
        sel = column == c
        e, t = err[sel], ideal[sel]
        if e.size == 0:
            continue
        bins = np.rint(t).astype(np.int64)
        bins -= bins.min()
        cnt = np.bincount(bins)
        mean_bin = np.bincount(bins, e) / np.maximum(cnt, 1)
        ok = cnt >= MIN_BIN
        inl = float(np.abs(mean_bin[ok]).max()) if ok.any() else math.nan
        both = ok[1:] & ok[:-1]
        dnl = float(np.abs(np.diff(mean_bin))[both].max()) if both.any() else math.nan
        out.append(ColumnStats(column=c, instance=int(instance[c]), samples=int(e.size),
                               mean_lsb=float(e.mean()), std_lsb=float(e.std()),
                               max_abs_lsb=float(np.abs(e).max()), inl_lsb=inl,
                               dnl_lsb=dnl))
    return out


def characterize(arch: str | Path | Arch, *, samples: int = PAPER_SAMPLES, chips: int = 2,
                 seed: int | None = None, progress: bool = True) -> Characterization:
    """Measure one macro's linearity on ``chips`` simulated chips (see module docstring).

    ``samples`` conversions in all (split evenly over the chips; each chip's last vector
    is cut to the count); ``seed`` defaults to the arch's ``variation.seed``.

    Raises:
        UserError: a bad arch file (a :class:`~sim.errors.ConfigError` naming its YAML
            paths), a bad count, or a macro with no room for one weight.
    """
    if not isinstance(arch, Arch):
        arch = load_arch(arch)
    if chips < 1 or samples < chips:
        raise UserError(f"characterize: need at least one chip and one sample per chip, got "
                        f"{chips} chip(s) and {samples} sample(s)")
    seed = arch.variation.seed if seed is None else int(seed)
    k, n = _macro_shape(arch)
    per_chip = samples // chips
    runs: list[ChipRun] = []
    bar = tqdm(total=chips * len(MODES), desc=f"characterize {arch.name}", unit="run",
               disable=not progress)
    vectors = 0
    for chip in range(chips):
        # A fresh SeedSequence per layer: a layer spawns children from the one it is given.
        rng = np.random.default_rng([seed, chip, 1])
        half = 1 << (arch.weights.bits - 1)
        weights = rng.integers(-half + 1, half, size=(k, n), dtype=np.int64)
        probe = None
        for mode in MODES:
            layer = _macro_layer(_with_calibration(arch, mode), weights,
                                 np.random.SeedSequence([seed, chip, 0]))
            if layer.step is None:  # `range: calibrated`: set the range from its own data
                layer.calibrate(_sweep_inputs(arch, k, 64, np.random.default_rng(
                    [seed, chip, 2])))
            if probe is None:
                # conversions per vector: steps x row groups x columns (incl. unit columns)
                per_vector = layer.steps * layer.groups * layer.columns_total
                vectors = -(-per_chip // per_vector)
                x = _sweep_inputs(arch, k, vectors, rng)
                probe = layer
            elif not np.array_equal(layer.adc_thresholds, probe.adc_thresholds):
                raise AssertionError("calibration changed the chip's ADC draw")  # invariant
            conv = layer.column_conversions(x, seed=chip)
            # (groups, steps, M, C) -> samples ordered vector by vector, then cut to the count
            order = (2, 1, 0, 3)
            ideal = conv["ideal"].transpose(order).reshape(-1)[:per_chip]
            value = conv["value"].transpose(order).reshape(-1)[:per_chip]
            ct = layer.columns_total
            column = np.broadcast_to(np.arange(ct), conv["ideal"].transpose(order).shape)
            column = column.reshape(-1)[:per_chip]
            inst = conv["instance"][0]
            runs.append(ChipRun(chip=chip, calibration=mode,
                                columns=_column_stats(ideal, value, column, inst),
                                ideal=ideal, value=value, column=column))
            bar.update(1)
    bar.close()
    return Characterization(arch_name=arch.name, rows=k,
                            columns=arch.crossbar.columns, adc_bits=arch.crossbar.adc.bits,
                            chips=chips, seed=seed, samples_per_chip=per_chip,
                            vectors_per_chip=vectors, runs=runs)


# ----------------------------------------------------------------------------- outputs


def column_table_csv(result: Characterization) -> str:
    """Per (calibration, chip, column) figures as CSV text."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["calibration", "chip", "column", "adc_instance", "samples", "mean_lsb",
                "std_lsb", "max_abs_lsb", "inl_lsb", "dnl_lsb"])
    for r in result.runs:
        for c in r.columns:
            w.writerow([r.calibration, r.chip, c.column, c.instance, c.samples,
                        f"{c.mean_lsb:.4f}", f"{c.std_lsb:.4f}", f"{c.max_abs_lsb:.4f}",
                        f"{c.inl_lsb:.4f}", f"{c.dnl_lsb:.4f}"])
    return buf.getvalue()


def summary_markdown(result: Characterization) -> str:
    """The summary as a markdown table."""
    lines = [f"{result.arch_name}: one {result.rows}x{result.columns} macro, "
             f"{result.adc_bits}-bit ADC, {result.chips} chip(s) (seed {result.seed}), "
             f"{result.samples_per_chip:,} conversions per chip "
             f"({result.vectors_per_chip} input vectors); errors in LSB of the ADC",
             "",
             "| calibration | chip | samples | mean | std | max abs | 99.9 % abs | "
             "within 2 LSB | worst column INL | worst column DNL |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for s in result.summary():
        lines.append(
            f"| {s['calibration']} | {s['chip']} | {s['samples']:,} | {s['mean_lsb']:+.3f} | "
            f"{s['std_lsb']:.3f} | {s['max_abs_lsb']:.2f} | {s['p999_abs_lsb']:.2f} | "
            f"{100 * s['within_2lsb']:.3f} % | {s['worst_column_inl_lsb']:.2f} | "
            f"{s['worst_column_dnl_lsb']:.2f} |")
    return "\n".join(lines) + "\n"


def plot_png(result: Characterization) -> bytes:
    """Ideal vs output code (all columns, both chips) and the per-column error figures,
    before and after calibration, as PNG bytes."""
    import matplotlib
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure

    top = (1 << result.adc_bits) - 1
    fig = Figure(figsize=(13, 7.5), layout="constrained")
    axes = fig.subplots(len(MODES), 3)
    with matplotlib.rc_context({"font.size": 9, "axes.grid": True, "grid.alpha": 0.3}):
        for row, mode in enumerate(MODES):
            runs = [r for r in result.runs if r.calibration == mode]
            ideal = np.concatenate([r.ideal for r in runs])
            value = np.concatenate([r.value for r in runs])
            err = value - ideal
            title = "before calibration" if mode == "none" else "after two-step calibration"
            ax = axes[row, 0]
            edges = np.linspace(-1.5, top + 1.5, min(top + 4, 200))
            ax.hist2d(ideal, value, bins=[edges, edges], norm=LogNorm(), cmap="viridis")
            ax.plot([0, top], [0, top], color="white", lw=0.6, ls="--")
            ax.set(xlabel="ideal MAC (LSB)", ylabel="output code (LSB)",
                   title=f"ideal vs output, all columns, {title}")
            ax = axes[row, 1]
            bins = np.clip(np.rint(ideal).astype(np.int64), 0, top)
            cnt = np.bincount(bins, minlength=top + 1)
            ok = cnt >= MIN_BIN
            mean = np.bincount(bins, err, top + 1) / np.maximum(cnt, 1)
            lo = np.full(top + 1, np.inf)
            hi = np.full(top + 1, -np.inf)
            np.minimum.at(lo, bins, err)
            np.maximum.at(hi, bins, err)
            x = np.arange(top + 1)[ok]
            # each column of the first chip: its mean error per bin, thin
            r0 = runs[0]
            b0 = np.clip(np.rint(r0.ideal).astype(np.int64), 0, top)
            for c in np.unique(r0.column):
                sel = r0.column == c
                n_c = np.bincount(b0[sel], minlength=top + 1)
                m_c = np.bincount(b0[sel], r0.error[sel], top + 1) / np.maximum(n_c, 1)
                keep = n_c >= MIN_BIN
                ax.plot(np.arange(top + 1)[keep], m_c[keep], color="#999999", lw=0.3,
                        alpha=0.4, label="per column (chip 0)" if c == 0 else None)
            ax.fill_between(x, lo[ok], hi[ok], color="#88aadd", alpha=0.5, label="min..max")
            ax.plot(x, mean[ok], color="#223377", lw=1, label="mean, all columns")
            for b in (-PAPER_BOUND_LSB, PAPER_BOUND_LSB):
                ax.axhline(b, color="#cc3311", lw=0.8, ls=":")
            ax.set(xlabel="ideal MAC (LSB)", ylabel="error (LSB)",
                   title=f"error vs ideal value ({err.size:,} samples)")
            ax.legend(loc="lower left")
            ax = axes[row, 2]
            for r, marker in zip(runs, "os^v<>", strict=False):
                cols = np.array([c.column for c in r.columns])
                ax.plot(cols, [c.max_abs_lsb for c in r.columns], marker, ms=2.5, ls="none",
                        label=f"chip {r.chip} max |err|")
                ax.plot(cols, [c.inl_lsb for c in r.columns], marker, ms=2.5, ls="none",
                        mfc="none", label=f"chip {r.chip} INL-like")
            ax.axhline(PAPER_BOUND_LSB, color="#cc3311", lw=0.8, ls=":", label="2 LSB")
            ax.set(xlabel="column", ylabel="LSB", title="per column")
            ax.legend(loc="upper right", fontsize=7)
        fig.suptitle(f"{result.arch_name}: linearity of one {result.rows}x{result.columns} "
                     f"macro, {result.chips} chips, seed {result.seed}")
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def write(result: Characterization, out: str | Path, *, plot: bool = True) -> list[Path]:
    """Write ``characterize.md`` (summary), ``columns.csv`` and ``linearity.png`` into
    ``out``; returns the paths written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "characterize.md", out / "columns.csv"]
    paths[0].write_text(summary_markdown(result))
    paths[1].write_text(column_table_csv(result))
    if plot:
        png = out / "linearity.png"
        png.write_bytes(plot_png(result))
        paths.append(png)
    return paths
