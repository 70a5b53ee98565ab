"""Render a ``result.json`` (and optionally a ``montecarlo.json``) as one report.

Both formats carry the same sections: summary, energy, area, latency, skipped conversions,
variation (with a Monte Carlo file) and the published design's numbers (when
:mod:`analysis.published` knows the arch). The sections are assembled once as paragraphs,
tables and lazily drawn figures; :func:`render_html` and :func:`render_markdown` only lay them
out. Figures are drawn on :class:`matplotlib.figure.Figure` objects, which need no pyplot or
backend state. See ``docs/reports.md``.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter

from analysis.published import comparison
from sim.errors import UserError
from sim.fileio import atomic_write, ensure_writable_dir

#: Keys every ``result.json`` (``asdict(analysis.run.Result)``) has that the report reads.
RESULT_KEYS = ("arch", "workload", "samples", "layers", "energy_by_component_pj",
               "area_by_component_mm2")
LAYER_KEYS = ("name", "events", "energy_pj", "energy_total_pj", "cycles_busy", "cycles_latency")
MONTECARLO_KEYS = ("kind", "levels", "confidence")
MONTECARLO_KIND = "imcsim-montecarlo"
#: Monte Carlo metrics: key, name, unit shown, scale from the stored unit to the shown one.
MC_METRICS = (("hardware_accuracy", "hardware accuracy", "%", 100.0),
              ("energy_per_inference_nj", "energy per inference", "nJ", 1.0),
              ("latency_per_inference_s", "latency per inference", "us", 1e6))
DPI = 110
#: Figure width: at DPI, the width of the HTML page's text column, so images are not scaled.
FIG_WIDTH_IN = 9.6
#: Bars per axis up to which each bar carries its value as text.
MAX_BAR_LABELS = 16
_RC = {"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 9,
       "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True,
       "grid.alpha": 0.3, "axes.axisbelow": True}
_LABELS = {"sample_holds": "sample & hold", "shift_adds": "shift & add",
           "input_buffer_read_bits": "input buffer reads",
           "input_register_write_bits": "input register writes",
           "output_buffer_write_bits": "output buffer writes", "edram_ima_bus": "eDRAM-IMA bus"}
_PHRASES = {"shift_add": "shift & add", "sample_hold": "sample & hold"}
_WORDS = {"adc": "ADC", "dac": "DAC", "ima": "IMA", "edram": "eDRAM", "noc": "NoC",
          "hypertransport": "HyperTransport", "sram": "SRAM"}
_NUMBER = re.compile(r"^[-+<]?[\d,]*\.?\d+(e[-+]?\d+)?( %)?$")
DASH = "—"


@dataclass(frozen=True)
class Table:
    """A table of already formatted cells."""

    header: tuple[str, ...]
    rows: list[tuple[str, ...]]


@dataclass(frozen=True)
class Plot:
    """A figure, drawn only when a renderer needs it; its element id is ``fig-<name>``."""

    name: str
    caption: str
    draw: Callable[[], Figure]


@dataclass
class Section:
    """One report section: paragraphs (``str``), tables and figures, in order."""

    id: str
    title: str
    blocks: list[str | Table | Plot] = field(default_factory=list)


# ----------------------------------------------------------------------------- loading


def _read_object(path: Path, what: str) -> dict[str, Any]:
    """The JSON object in ``path``; anything else is a UserError naming ``path``."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: cannot read: {err}") from None
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: not JSON ({err})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: not an {what} (a JSON {type(data).__name__}, not an object)")
    return data


def _require(path: Path, data: Mapping[str, Any], keys: tuple[str, ...], what: str) -> None:
    missing = [k for k in keys if k not in data]
    if missing:
        raise UserError(f"{path}: not an {what} (missing {', '.join(missing)})")


def load_json(path: str | Path) -> dict[str, Any]:
    """Read an imcsim ``result.json`` (``asdict(analysis.run.Result)``).

    A missing or unreadable file, invalid JSON, or a JSON document that is not a result
    (missing keys, malformed layers) raises :class:`~sim.errors.UserError` naming ``path``.
    """
    path, what = Path(path), "imcsim result.json"
    data = _read_object(path, what)
    _require(path, data, RESULT_KEYS, what)
    layers = data["layers"]
    if not isinstance(layers, list) or not all(isinstance(x, dict) for x in layers):
        raise UserError(f"{path}: not an {what} (layers is not a list of objects)")
    for i, layer in enumerate(layers):
        missing = [k for k in LAYER_KEYS if k not in layer]
        if missing:
            raise UserError(f"{path}: layers[{i}] lacks {', '.join(missing)}; rerun "
                            f"`imcsim run` with this version to get a complete result.json")
    return data


def load_montecarlo(path: str | Path) -> dict[str, Any]:
    """Read a ``montecarlo.json`` (see ``docs/reports.md``); a wrong file is a UserError."""
    path, what = Path(path), "imcsim montecarlo.json"
    data = _read_object(path, what)
    _require(path, data, MONTECARLO_KEYS, what)
    if data["kind"] != MONTECARLO_KIND:
        raise UserError(f"{path}: kind is {data['kind']!r}, expected {MONTECARLO_KIND!r}")
    return data


# ----------------------------------------------------------------------------- formatting


def _num(x: float | None, digits: int = 4) -> str:
    """4 significant digits; whole numbers with thousands separators from 10,000 up."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return DASH
    if math.isinf(x):
        return "inf"
    if 1e4 <= abs(x) < 1e15:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def _pct(fraction: float | None, digits: int = 1) -> str:
    if fraction is None or math.isnan(fraction):
        return DASH
    if 0 < fraction < 0.5 * 10 ** -(digits + 2):
        return f"<{10 ** -digits:g} %"
    return f"{100 * fraction:.{digits}f} %"


def _share(part: float, whole: float) -> str:
    return _pct(part / whole) if whole else DASH


def _label(key: str) -> str:
    """``"ima_shift_add"`` -> ``"IMA shift & add"``: the literature's spelling for a key."""
    if key in _LABELS:
        return _LABELS[key]
    for phrase, words in _PHRASES.items():
        key = key.replace(phrase, words)
    return " ".join(_WORDS.get(w, w) for w in key.split("_"))


def _per_inf(result: Mapping[str, Any]) -> int:
    return max(int(result["samples"]), 1)


# ----------------------------------------------------------------------------- figures


def _figure(height: float = 3.8, rows: int = 1) -> tuple[Figure, Any]:
    """A figure as wide as the HTML page shows it unscaled (``FIG_WIDTH_IN`` x ``DPI``)."""
    fig = Figure(figsize=(FIG_WIDTH_IN, height), layout="constrained")
    return fig, fig.subplots(rows, 1, squeeze=True, sharex=rows > 1)


def _layer_ticks(ax: Any, names: list[str]) -> None:
    """Layer names under the bars, turned when they would collide."""
    ax.set_xticks(range(len(names)))
    ax.set_xlabel("layer")
    if len(names) * max((len(n) for n in names), default=0) <= 60:
        ax.set_xticklabels(names)
    elif len(names) <= 30:
        ax.set_xticklabels(names, rotation=40, ha="right", rotation_mode="anchor")
    else:
        ax.set_xticklabels(names, rotation=90, fontsize=7)


def _draw(plot: Plot) -> bytes:
    """The plot as PNG bytes, drawn and saved under the report's style."""
    buf = io.BytesIO()
    with matplotlib.rc_context(_RC):
        plot.draw().savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def _hbars(values: Mapping[str, float], xlabel: str, unit: str) -> Figure:
    """Horizontal bars, largest on top, each labelled with its value and share."""
    items = sorted(values.items(), key=lambda kv: kv[1])
    total = sum(values.values()) or 1.0
    fig, ax = _figure(height=0.9 + 0.32 * len(items))
    bars = ax.barh([_label(k) for k, _ in items], [v for _, v in items], color="#4477aa")
    ax.bar_label(bars, [f" {_num(v)} {unit} ({_share(v, total)})" for _, v in items],
                 fontsize=8.5)
    ax.set_xlabel(xlabel)
    ax.set_xlim(0, max(v for _, v in items) * 1.35 if items else 1)
    ax.grid(axis="y", visible=False)
    return fig


def _energy_layers_figure(result: Mapping[str, Any]) -> Figure:
    layers, n = result["layers"], _per_inf(result)
    kinds = _energy_kinds(layers)
    fig, ax = _figure()
    bottom = np.zeros(len(layers))
    colors = matplotlib.colormaps["tab10"]
    for i, kind in enumerate(kinds):
        vals = np.array([lr["energy_pj"].get(kind, 0.0) / n / 1e3 for lr in layers])
        ax.bar(range(len(layers)), vals, 0.65, bottom=bottom, label=_label(kind),
               color=colors(i % colors.N))
        bottom += vals
    _layer_ticks(ax, [lr["name"] for lr in layers])
    ax.set_ylabel("dynamic energy per inference (nJ)")
    _legend_right(ax, "event")
    return fig


def _energy_kinds(layers: list[dict]) -> list[str]:
    """Event kinds that cost energy in some layer, most expensive first."""
    totals: dict[str, float] = {}
    for lr in layers:
        for k, v in lr["energy_pj"].items():
            totals[k] = totals.get(k, 0.0) + v
    return [k for k, v in sorted(totals.items(), key=lambda kv: -kv[1]) if v > 0]


_CYCLE_SERIES = (("cycles_latency", "latency"), ("cycles_busy", "busy"),
                 ("cycles_waiting_for_input", "waiting for input"),
                 ("cycles_limited_by_buffer", "buffer-limited"),
                 ("cycles_limited_by_noc", "NoC-limited"))


def _latency_figure(result: Mapping[str, Any]) -> Figure:
    layers = result["layers"]
    series = [(k, lab) for k, lab in _CYCLE_SERIES if any(lr.get(k, 0) for lr in layers)]
    fig, (top, bottom) = _figure(height=5.6, rows=2)
    x = np.arange(len(layers))
    width = 0.8 / max(len(series), 1)
    for i, (key, lab) in enumerate(series):
        top.bar(x + (i - (len(series) - 1) / 2) * width, [lr.get(key, 0) for lr in layers],
                width, label=lab)
    top.set_ylabel("digital clock cycles\nper inference")
    top.yaxis.set_major_formatter(EngFormatter(sep=""))
    _legend_right(top)
    _percent_bars(bottom, [100 * _util(lr) for lr in layers], "#228833", "busy / latency (%)")
    _layer_ticks(bottom, [lr["name"] for lr in layers])
    return fig


def _legend_right(ax: Any, title: str | None = None) -> None:
    ax.legend(title=title, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)


def _percent_bars(ax: Any, values: list[float], color: str, ylabel: str) -> None:
    """Bars on a 0-100 % axis, each labelled with its value while there is room."""
    bars = ax.bar(range(len(values)), values, 0.5, color=color)
    if len(values) <= MAX_BAR_LABELS:
        ax.bar_label(bars, [f"{v:.0f} %" for v in values], fontsize=8.5)
    ax.set_ylim(0, 112)
    ax.set_ylabel(ylabel)


def _util(layer: Mapping[str, Any]) -> float:
    return layer["cycles_busy"] / layer["cycles_latency"] if layer["cycles_latency"] else 0.0


def skip_fractions(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Zero-skipping per layer of a ``result.json`` mapping, in execution order.

    Each row: ``name``, ``placement``, ``made`` and ``skipped`` (ADC conversions per
    inference, converted and skipped), ``share`` (the fraction of the layer's conversions
    skipped: one conversion is one fragment-column, or one crossbar column group, at one
    bit-serial input step, so this is the fraction of its bit-cycles skipped; None for a layer
    that converts nothing) and ``steps_run`` (mean input steps executed per input vector).
    The report's "Skipped conversions" section and ``bench/forms_skip_fractions.py`` print it.
    """
    n = _per_inf(result)
    rows = []
    for lr in result["layers"]:
        made = lr["events"].get("adc_conversions", 0) / n
        skipped = lr["events"].get("adc_conversions_skipped", 0) / n
        rows.append({"name": lr["name"], "placement": lr.get("placement"), "made": made,
                     "skipped": skipped,
                     "share": skipped / (made + skipped) if made + skipped else None,
                     "steps_run": lr.get("executed_input_steps")})
    return rows


def _skipped_figure(result: Mapping[str, Any]) -> Figure:
    rows = skip_fractions(result)
    made = np.array([r["made"] for r in rows])
    skipped = np.array([r["skipped"] for r in rows])
    fig, (top, bottom) = _figure(height=5.6, rows=2)
    x = np.arange(len(rows))
    top.bar(x, made, 0.6, label="converted", color="#4477aa")
    top.bar(x, skipped, 0.6, bottom=made, label="skipped", color="#ee7733")
    top.set_ylabel("ADC conversions\nper inference")
    top.yaxis.set_major_formatter(EngFormatter(sep=""))
    _legend_right(top)
    share = [100 * (r["share"] or 0.0) for r in rows]
    _percent_bars(bottom, share, "#ee7733", "skipped (%)")
    _layer_ticks(bottom, [r["name"] for r in rows])
    return fig


def _variation_figure(mc: Mapping[str, Any]) -> Figure:
    levels = mc["levels"]
    fig, ax = _figure(height=4.0)
    ci_label = f"mean over chips, {100 * mc.get('confidence', 0.95):.0f} % CI"
    if _numeric_levels(levels):
        _accuracy_vs_value(ax, levels, ci_label)
    else:
        _accuracy_strip(ax, levels, ci_label)
    floats = [c["float_accuracy"] for lv in levels for c in lv["chips"]]
    if floats:
        ax.axhline(100 * float(np.mean(floats)), color="#cc3311", ls="--", lw=1,
                   label="float model")
    shown = [100 * c[k] for lv in levels for c in lv["chips"]
             for k in ("hardware_accuracy", "float_accuracy") if k in c]
    shown += [100 * lv["summary"]["hardware_accuracy"][k] for lv in levels
              for k in ("ci_low", "ci_high")]
    if shown:
        pad = max(0.5, 0.06 * (max(shown) - min(shown)))
        ax.set_ylim(min(shown) - pad, max(shown) + pad)
    ax.set_ylabel("hardware accuracy (%)")
    ax.legend(frameon=False, loc="best")
    return fig


def _numeric_levels(levels: list[dict]) -> bool:
    """Whether accuracy can be drawn against the levels' values (two or more numbers)."""
    return len(levels) > 1 and all(isinstance(lv.get("value"), int | float)
                                   and not isinstance(lv.get("value"), bool) for lv in levels)


def _accuracy_vs_value(ax: Any, levels: list[dict], ci_label: str) -> None:
    values = np.array([lv["value"] for lv in levels], dtype=float)
    stats = [lv["summary"]["hardware_accuracy"] for lv in levels]
    mean = np.array([100 * s["mean"] for s in stats])
    err = np.array([[100 * (s["mean"] - s["ci_low"]) for s in stats],
                    [100 * (s["ci_high"] - s["mean"]) for s in stats]])
    ax.errorbar(values, mean, yerr=err, fmt="o-", capsize=4, color="#4477aa", label=ci_label)
    for i, lv in enumerate(levels):
        accs = [100 * c["hardware_accuracy"] for c in lv["chips"]]
        ax.scatter([lv["value"]] * len(accs), accs, s=10, color="#999999", alpha=0.6, zorder=1,
                   label="one chip" if i == 0 else None)
    params = {lv.get("param") for lv in levels}
    ax.set_xlabel(params.pop() if len(params) == 1 and None not in params else "level value")


def _accuracy_strip(ax: Any, levels: list[dict], ci_label: str) -> None:
    rng = np.random.default_rng(0)  # jitter only, for legibility
    for i, lv in enumerate(levels):
        accs = np.array([100 * c["hardware_accuracy"] for c in lv["chips"]])
        ax.scatter(i + rng.uniform(-0.15, 0.15, len(accs)), accs, s=14, color="#999999",
                   label="one chip" if i == 0 else None)
        s = lv["summary"]["hardware_accuracy"]
        ax.errorbar([i], [100 * s["mean"]], yerr=[[100 * (s["mean"] - s["ci_low"])],
                                                  [100 * (s["ci_high"] - s["mean"])]],
                    fmt="o", capsize=6, color="#4477aa", label=ci_label if i == 0 else None)
    ax.set_xticks(range(len(levels)))
    ax.set_xticklabels([lv["label"] for lv in levels])
    ax.set_xlim(-0.6, len(levels) - 0.4)
    ax.set_xlabel("variation level")


# ----------------------------------------------------------------------------- sections


def _summary(r: Mapping[str, Any]) -> Section:
    comp = r["energy_by_component_pj"]
    full_nj = sum(comp.values()) / 1e3 if comp else None
    rows = [
        ("architecture", f"{r['arch']} ({r.get('arch_file', '')})", ""),
        ("workload", f"{r['workload']} ({r.get('workload_file', '')})", ""),
        ("test samples", _num(r["samples"]), ""), ("seed", str(r.get("seed", DASH)), ""),
        ("float accuracy", _pct(r.get("float_accuracy"), 2), ""),
        ("hardware accuracy", _pct(r.get("hardware_accuracy"), 2), ""),
        ("prediction agreement", _pct(r.get("prediction_agreement"), 2), "same class as float"),
        ("effective throughput", _num(r.get("gops")),
         "GOPS (dense-equivalent: 2 ops per MAC of the dense model)"),
        ("executed throughput", _num(r.get("gops_executed")),
         "GOPS (2 ops per MAC the crossbars perform)"),
        ("effective energy efficiency", _num(r.get("tops_per_w")), "TOPS/W (dense-equivalent)"),
        ("executed energy efficiency", _num(r.get("tops_per_w_executed")), "TOPS/W"),
        ("effective area efficiency", _num(r.get("tops_per_mm2")), "TOPS/mm2 (dense-equivalent)"),
        ("executed area efficiency", _num(r.get("tops_per_mm2_executed")), "TOPS/mm2"),
        ("inferences per second", _num(r.get("inferences_per_s")), "1/s"),
        ("latency per inference", _num(1e6 * r.get("latency_per_inference_s", math.nan)), "us"),
        ("chip area", _num(r.get("area_mm2")), "mm2"),
        ("power at this throughput", _num(r.get("power_w")), "W"),
        ("energy per inference, all components", _num(full_nj), "nJ (incl. leakage)"),
        ("energy per inference, dynamic events", _num(r.get("energy_per_inference_nj")), "nJ"),
        ("crossbar utilization", _pct(r.get("crossbar_utilization")),
         f"of {_num(r.get('crossbars_used'))} used; chip has {_num(r.get('crossbars_total'))}"),
        ("execution", "pipelined" if r.get("pipelined", True) else "layer by layer", ""),
    ]
    if r.get("peak_gops"):
        rows += [("peak throughput", _num(r["peak_gops"]), "GOPS"),
                 ("peak area efficiency", _num(r.get("peak_gops_per_mm2")), "GOPS/s/mm2"),
                 ("peak power efficiency", _num(r.get("peak_gops_per_w")), "GOPS/W")]
    rows.append(("imcsim version", str(r.get("imcsim_version", DASH)), ""))
    rows += [("note", note, "") for note in r.get("notes", [])]
    text = ("Run figures count 2 ops per MAC over the measured throughput: effective ones the "
            "MACs of the dense model (a pruned model's packed layers counted at their dense "
            "K x N, as PatDNN and FORMS quote; these can exceed the peak), executed ones the "
            "MACs the crossbars perform (a packed layer's sub-layers); the two are equal for a "
            "dense model. Peak figures assume every crossbar busy with dense inputs at the "
            "arch's precision (the published CE/PE convention).")
    return Section("summary", "Summary", [Table(("quantity", "value", "unit"), rows), text])


def _energy(r: Mapping[str, Any]) -> Section:
    n, layers = _per_inf(r), r["layers"]
    dyn = sum(lr["energy_total_pj"] for lr in layers) / n / 1e3 if layers else 0.0
    by_layer = [(lr["name"], lr.get("kind", ""), _num(lr["energy_total_pj"] / n / 1e3),
                 _share(lr["energy_total_pj"] / n / 1e3, dyn),
                 _share(lr["energy_pj"].get("adc_conversions", 0.0), lr["energy_total_pj"]))
                for lr in layers]
    by_event: dict[str, float] = {}
    for lr in layers:
        for k, v in lr["energy_pj"].items():
            by_event[k] = by_event.get(k, 0.0) + v / n / 1e3
    comp = {k: v / 1e3 for k, v in r["energy_by_component_pj"].items()}
    full = sum(comp.values())
    text = f"Dynamic event energy per inference: {_num(dyn)} nJ."
    if comp:
        text = (f"Energy per inference: {_num(full)} nJ over all components (dynamic events "
                f"plus leakage x latency), of which dynamic events {_num(dyn)} nJ.")
    if comp and math.isclose(full, dyn, rel_tol=1e-9):
        text += " No component of this arch has leakage power in its table."
    return Section("energy", "Energy", [
        text,
        Plot("energy-layers", "Dynamic event energy per inference of each layer, stacked by "
             "event kind (nJ). Leakage and static power are not in these bars.",
             lambda: _energy_layers_figure(r)),
        Table(("layer", "kind", "dynamic nJ / inference", "share", "ADC share of layer"),
              by_layer + [("total", "", _num(dyn), _share(dyn, dyn), "")]),
        Table(("event kind", "nJ / inference", "share of dynamic"),
              [(_label(k), _num(v), _share(v, dyn))
               for k, v in sorted(by_event.items(), key=lambda kv: -kv[1]) if v]),
    ] + _components(comp))


def _components(comp: Mapping[str, float]) -> list[str | Table | Plot]:
    """Chart and table of the full energy per inference by component (``comp`` in nJ)."""
    if not comp:
        return ["The arch has no component table, so no energy by component."]
    full = sum(comp.values())
    return [
        Plot("energy-components", "Full energy per inference by component (nJ): the dynamic "
             "events charged to the component that performs them, plus leakage x latency.",
             lambda: _hbars(comp, "energy per inference (nJ)", "nJ")),
        Table(("component", "nJ / inference", "share"),
              [(_label(k), _num(v), _share(v, full))
               for k, v in sorted(comp.items(), key=lambda kv: -kv[1])]
              + [("total", _num(full), _share(full, full))]),
    ]


def _area(r: Mapping[str, Any]) -> Section:
    area = r["area_by_component_mm2"]
    total = sum(area.values())
    if not area:
        return Section("area", "Area", ["The arch has no component table, so no area."])
    rows = [(_label(k), _num(v), _share(v, total))
            for k, v in sorted(area.items(), key=lambda kv: -kv[1])]
    return Section("area", "Area", [
        f"Chip area {_num(total)} mm2, summed over the arch's component table (each row's "
        "group area x how many of its level the chip has).",
        Plot("area", "Chip area by component (mm2).", lambda: _hbars(area, "area (mm2)", "mm2")),
        Table(("component", "mm2", "share"), rows + [("total", _num(total), _pct(1.0))]),
    ])


def _latency(r: Mapping[str, Any]) -> Section:
    layers = r["layers"]
    idle = [lab for k, lab in _CYCLE_SERIES[2:] if not any(lr.get(k, 0) for lr in layers)]
    mode = "pipelined" if r.get("pipelined", True) else "layer by layer"
    text = (f"One inference, {mode}: latency {_num(1e6 * r.get('latency_per_inference_s', 0))} "
            f"us, throughput {_num(r.get('inferences_per_s'))} inferences/s. Cycles are whole "
            "digital clock cycles (the arch's clock.digital); one crossbar step lasts many of "
            "them. Busy cycles are when the layer's crossbar copies compute; latency runs from "
            "the layer's start to its last output.")
    if idle:
        text += f" Zero in every layer, so not drawn: {', '.join(idle)} cycles."
    clock = r.get("digital_clock_hz") or 0.0
    if clock:
        text += f" The digital clock runs at {_num(clock / 1e9)} GHz."
    rows = [(lr["name"], _num(lr.get("duplicates", 1)), _num(lr.get("crossbars")),
             _num(lr["cycles_busy"]), _num(lr["cycles_latency"]),
             _num(1e6 * lr["cycles_latency"] / clock) if clock else DASH,
             _num(lr.get("cycles_waiting_for_input", 0)),
             _num(lr.get("cycles_limited_by_buffer", 0)), _num(lr.get("cycles_limited_by_noc", 0)),
             _num(lr.get("executed_input_steps")), _pct(_util(lr)))
            for lr in layers]
    return Section("latency", "Latency and utilization", [
        text,
        Plot("latency", "Top: cycles per layer for one inference (digital clock cycles). "
             "Bottom: utilization, busy cycles over latency cycles (%).",
             lambda: _latency_figure(r)),
        Table(("layer", "copies", "crossbars / copy", "busy", "latency", "latency (us)",
               "waiting for input",
               "buffer-limited", "NoC-limited", "input steps run", "busy / latency"), rows),
    ])


def _skipped(r: Mapping[str, Any]) -> Section:
    fractions = skip_fractions(r)
    rows = [(f["name"], _num(f["made"]), _num(f["skipped"]),
             _share(f["skipped"], f["made"] + f["skipped"]), _num(f["steps_run"]))
            for f in fractions]
    made_all = sum(f["made"] for f in fractions)
    skipped_all = sum(f["skipped"] for f in fractions)
    rows.append(("total", _num(made_all), _num(skipped_all),
                 _share(skipped_all, made_all + skipped_all), ""))
    table = Table(("layer", "conversions / inference", "skipped / inference", "skipped share",
                   "input steps run (mean)"), rows)
    if not skipped_all:
        return Section("skipped", "Skipped conversions", [
            "No ADC conversion was skipped in this run (no zero-skip, or no all-zero input "
            "step); the figure is omitted.", table])
    return Section("skipped", "Skipped conversions", [
        f"{_share(skipped_all, made_all + skipped_all)} of the ADC conversions were skipped "
        "(zero-skip). Input steps run is the mean number of bit-serial input steps executed per "
        "input vector.",
        Plot("skipped", "Top: ADC conversions per inference of each layer, converted and "
             "skipped. Bottom: share of each layer's conversions skipped (%).",
             lambda: _skipped_figure(r)),
        table])


def _operations(r: Mapping[str, Any]) -> Section | None:
    """Every executed operation in execution order: on the crossbars, in a costed digital
    unit, or in float (not costed)."""
    ops = r.get("operations") or []
    if not ops:
        return None
    counts: dict[str, int] = {}
    for op in ops:
        counts[op["placement"]] = counts.get(op["placement"], 0) + 1
    rows = [(str(op["index"]), op["placement"], op["category"], op["op"],
             op["module"] or op["module_type"], op["source"]) for op in ops]
    text = ("Every operation the model executed on a calibration sample, in execution order: "
            + ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
            + ". Crossbar and digital operations are in the energy and time; float ones run "
              "in torch and are not costed.")
    if not r.get("energy_complete", True):
        text += (" ENERGY INCOMPLETE: matrix products ran in float (allow_float_products) "
                 "and are missing from the energy and time.")
    return Section("operations", "Operations", [
        text, Table(("#", "placement", "category", "operation", "module", "source"), rows)])


def _variation(mc: Mapping[str, Any], result: Mapping[str, Any]) -> Section:
    conf = 100 * mc.get("confidence", 0.95)
    samples = mc.get("samples")
    text = (f"{mc.get('chips', DASH)} chips per level, each a different seed from base seed "
            f"{mc.get('base_seed', DASH)}, "
            f"{'the whole test split' if samples is None else f'{samples} test samples'} each"
            f"{' (its own slice of the test split)' if mc.get('disjoint_samples') else ''}; "
            f"intervals are {conf:.0f} % confidence intervals of the mean over chips.")
    for lv in mc["levels"] if mc.get("disjoint_samples") else ():
        p = lv.get("pooled") or {}
        if p:
            text += (f" {lv['label']}: {_num(100 * p['hardware_accuracy'])} % hardware, "
                     f"{_num(100 * p['float_accuracy'])} % float over all {p['images']:,} "
                     f"images; chip-to-chip std {_num(100 * p['chip_std'])} points (observed "
                     f"{_num(100 * p['observed_std'])}, of which sampling alone "
                     f"{_num(100 * p['sampling_std'])}).")
    if not (_same(mc, result, "arch") and _same(mc, result, "workload")):
        text += (f" Note: this Monte Carlo run is {mc.get('workload')} on {mc.get('arch')}, "
                 f"not the result's {result['workload']} on {result['arch']}.")
    blocks: list[str | Table | Plot] = [
        text,
        Plot("variation", f"Hardware accuracy per variation level (%): mean over chips with "
             f"its {conf:.0f} % confidence interval; grey dots are single chips, the dashed "
             "line the float model.", lambda: _variation_figure(mc))]
    for key, name, unit, scale in MC_METRICS:
        rows = []
        for lv in mc["levels"]:
            s, value = lv["summary"][key], lv.get("value")
            rows.append((lv["label"],
                         f"{lv.get('param')} = {_value(value)}" if value is not None else DASH,
                         _num(s["n"]), _num(scale * s["mean"]), _num(scale * s["std"]),
                         _num(scale * s["ci_low"]), _num(scale * s["ci_high"])))
        blocks.append(Table(("level", "setting", "chips", f"mean {name} ({unit})", "std",
                             f"{conf:.0f} % CI low", f"{conf:.0f} % CI high"), rows))
    return Section("variation", "Accuracy under variation", blocks)


def _same(mc: Mapping[str, Any], result: Mapping[str, Any], key: str) -> bool:
    """Whether the Monte Carlo file's ``key`` (a name or a YAML path) is the result's."""
    given = str(mc.get(key, ""))
    yaml = str(result.get(f"{key}_file", ""))
    return given in (result[key], yaml) or (bool(yaml) and Path(given).name == Path(yaml).name)


def _value(value: Any) -> str:
    return _num(value) if isinstance(value, int | float) else str(value)


def _paper(r: Mapping[str, Any]) -> Section | None:
    published = comparison(r)
    if not published:
        return None
    rows = []
    for p, ours, rel in published:
        diff = f"{100 * rel:+.2f} %" if rel is not None else DASH
        rows.append((p.label, p.unit, _num(p.value, 6), _num(ours), diff, p.basis, p.source,
                     p.note))
    return Section("paper", "Comparison with the published design", [
        f"Published numbers for {r['arch']} (analysis/published.py, each from "
        "../shared/reference/papers.md with its tag: read, read-2nd = read in a transcription "
        "of the paper, derived = arithmetic on read numbers). Relative difference = imcsim / "
        "paper - 1.",
        Table(("metric", "unit", "paper", "imcsim", "difference", "basis", "source", "note"),
              rows),
    ])


def _sections(result: Mapping[str, Any], montecarlo: Mapping[str, Any] | None) -> list[Section]:
    sections = [_summary(result), _energy(result), _area(result), _latency(result),
                _skipped(result)]
    ops = _operations(result)
    if ops is not None:
        sections.append(ops)
    if montecarlo is not None:
        sections.append(_variation(montecarlo, result))
    paper = _paper(result)
    return sections + ([paper] if paper is not None else [])


def _title(result: Mapping[str, Any]) -> str:
    return f"imcsim report: {result['workload']} on {result['arch']}"


# ----------------------------------------------------------------------------- HTML

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
       max-width: 1120px; margin: 2em auto; padding: 0 1.5em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; border-bottom: 2px solid #4477aa; padding-bottom: .2em; }
h2 { font-size: 1.3em; margin-top: 2em; border-bottom: 1px solid #ccc; }
nav a { margin-right: 1em; }
table { border-collapse: collapse; margin: 1em 0; font-size: .92em; }
th, td { border: 1px solid #d0d0d0; padding: .25em .6em; vertical-align: top; }
th { background: #eef2f7; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.nw { white-space: nowrap; }
tr:nth-child(even) td { background: #fafafa; }
figure { margin: 1.2em 0; }
figure img { max-width: 100%; height: auto; }
figcaption { font-size: .9em; color: #444; max-width: 60em; }
"""


def _numeric_columns(table: Table) -> list[bool]:
    return [all(_NUMBER.match(row[i]) or row[i] in ("", DASH) for row in table.rows)
            for i in range(len(table.header))]


def _html_cell(text: str, numeric: bool) -> str:
    """A ``<td>``: numbers right-aligned, single words (units, tags) never broken."""
    cls = ' class="num"' if numeric else ' class="nw"' if " " not in text else ""
    return f"<td{cls}>{html.escape(text)}</td>"


def _html_table(table: Table) -> str:
    numeric = _numeric_columns(table)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.header)
    body = "".join("<tr>" + "".join(_html_cell(c, numeric[i]) for i, c in enumerate(row))
                   + "</tr>\n" for row in table.rows)
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>"


def _html_block(block: str | Table | Plot, number: int) -> str:
    if isinstance(block, Table):
        return _html_table(block)
    if isinstance(block, Plot):
        data = base64.b64encode(_draw(block)).decode("ascii")
        cap = html.escape(block.caption)
        return (f'<figure id="fig-{block.name}"><img src="data:image/png;base64,{data}" '
                f'alt="{cap}">\n<figcaption>Figure {number}. {cap}</figcaption></figure>')
    return f"<p>{html.escape(block)}</p>"


def render_html(result: Mapping[str, Any], montecarlo: Mapping[str, Any] | None = None) -> str:
    """The report as one self-contained HTML document (figures inline as PNG data URIs)."""
    sections = _sections(result, montecarlo)
    title = html.escape(_title(result))
    nav = " ".join(f'<a href="#{s.id}">{html.escape(s.title)}</a>' for s in sections)
    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             f"<title>{title}</title>", f"<style>{_STYLE}</style>", "</head>", "<body>",
             f"<h1>{title}</h1>", f"<nav>{nav}</nav>"]
    figures = 0
    for s in sections:
        parts.append(f'<section id="{s.id}">\n<h2>{html.escape(s.title)}</h2>')
        for block in s.blocks:
            figures += isinstance(block, Plot)
            parts.append(_html_block(block, figures))
        parts.append("</section>")
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)


# ----------------------------------------------------------------------------- Markdown


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_table(table: Table) -> str:
    numeric = _numeric_columns(table)
    lines = ["| " + " | ".join(_md_cell(h) for h in table.header) + " |",
             "|" + "|".join("---:" if num else "---" for num in numeric) + "|"]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in table.rows]
    return "\n".join(lines)


def _md_plot(plot: Plot, number: int, figures_dir: Path, prefix: str) -> str:
    name = f"fig-{plot.name}.png"
    png = _draw(plot)
    atomic_write(figures_dir / name, lambda fh: fh.write(png))
    return f"![Figure {number}]({prefix}{name})\n\n*Figure {number}. {plot.caption}*"


def render_markdown(result: Mapping[str, Any], montecarlo: Mapping[str, Any] | None = None,
                    figures_dir: Path | None = None, figure_prefix: str = "") -> str:
    """The report as Markdown with the same sections and tables as :func:`render_html`.

    With ``figures_dir``, each figure is written there as ``fig-<name>.png`` and linked as
    ``<figure_prefix>fig-<name>.png`` (so ``figure_prefix`` is the folder's path relative to
    the Markdown file, with a trailing ``/``); without it, figures are left out.
    """
    figures_dir = Path(figures_dir) if figures_dir is not None else None
    if figures_dir is not None:
        figures_dir.mkdir(parents=True, exist_ok=True)
    out = [f"# {_title(result)}"]
    figures = 0
    for s in _sections(result, montecarlo):
        out.append(f"## {s.title}")
        for block in s.blocks:
            if isinstance(block, Table):
                out.append(_md_table(block))
            elif isinstance(block, Plot) and figures_dir is not None:
                figures += 1
                out.append(_md_plot(block, figures, figures_dir, figure_prefix))
            elif isinstance(block, str):
                out.append(block)
    return "\n\n".join(out) + "\n"


# ----------------------------------------------------------------------------- files


def _check_output(out: Path, inputs: list[Path]) -> None:
    """Refuse an output that is one of the inputs or a folder; make sure its folder can be
    written, before anything is rendered."""
    for path in inputs:
        if out.resolve() == path.resolve():
            raise UserError(f"--out {out} is the input {path}; writing the report there would "
                            "destroy it. Give another output file")
    if out.is_dir():
        raise UserError(f"--out {out} is a folder; give a file name such as "
                        f"{out / 'report.html'}")
    ensure_writable_dir(out.parent, "report's folder")


def write_report(result_path: str | Path, fmt: str = "html", out: str | Path | None = None,
                 montecarlo_path: str | Path | None = None) -> Path:
    """Render ``result_path`` as ``fmt`` (``html`` or ``md``) into ``out`` and return its path.

    ``out`` defaults to ``report.<fmt>`` beside the result. Without ``montecarlo_path``, a
    ``montecarlo.json`` beside the result is used if there is one. Markdown figures go into
    ``<out stem>_figures/`` beside the Markdown file. Files are written atomically.
    """
    if fmt not in ("html", "md"):
        raise UserError(f"report format {fmt!r} is not one of html, md")
    result_path = Path(result_path)
    result = load_json(result_path)
    beside = result_path.with_name("montecarlo.json")
    if montecarlo_path is None and beside.is_file():
        montecarlo_path = beside
    mc = load_montecarlo(montecarlo_path) if montecarlo_path is not None else None
    out = Path(out) if out is not None else result_path.with_name(f"report.{fmt}")
    _check_output(out, [result_path] + ([Path(montecarlo_path)] if montecarlo_path else []))
    if fmt == "html":
        text = render_html(result, mc)
    else:
        figures = out.with_name(f"{out.stem}_figures")
        text = render_markdown(result, mc, figures, f"{figures.name}/")
    return atomic_write(out, lambda fh: fh.write(text), text=True)
