"""Compression YAML -> :class:`CompressionSpec`, validated against the model it compresses.

A compression file looks like::

    name: digits_cnn_patdnn        # name of the compressed workload (default WORKLOAD_compressed)
    patterns: 8                    # PatDNN library size (used when a layer has `pattern`)
    admm: {epochs: 4, rho: 0.001, rho_growth: 1.5, rho_max: 0.1, updates_per_epoch: 2}
    finetune: {epochs: 2}
    train: {batch_size: 32, lr: 0.001, optimizer: adam, seed: 0}
    layers:
      conv2:
        pattern: {}
        connectivity: {rate: 2}
        quantize: {bits: 4}
        polarize: {fragment_rows: 8}
      fc:
        unstructured: {rate: 4}

Every problem is collected with its YAML path and reported in one
:class:`~sim.errors.ConfigError` (unknown keys, wrong types, out-of-range values, layers the
model does not have, methods a layer cannot take).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from mappers.compress.projections import (
    ORDER,
    BlockStructured,
    Connectivity,
    Pattern,
    Polarize,
    Projection,
    Quantize,
    Structured,
    Unify,
    Unstructured,
    keep_count,
)
from sim.config.loader import read_yaml
from sim.config.validate import Problems, Section
from sim.errors import UserError
from workloads.spec import OPTIMIZERS, SCHEDULES, TrainSettings

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

#: Which methods each kind of layer takes.
APPLIES = {
    "conv": {"unstructured", "structured", "pattern", "connectivity", "unify", "polarize",
             "quantize"},
    "linear": {"unstructured", "structured", "bsp", "unify", "polarize", "quantize"},
    "gru": {"unstructured", "bsp", "unify", "polarize", "quantize"},
}


@dataclass(frozen=True, kw_only=True)
class AdmmSettings:
    """The ADMM phase: ``epochs`` of W-steps; ``updates_per_epoch`` Z/U updates per epoch,
    after each of which ``rho`` is multiplied by ``rho_growth`` up to ``rho_max``."""

    epochs: int = 4
    rho: float = 1e-3
    rho_growth: float = 1.5
    rho_max: float = 1.0
    updates_per_epoch: int = 1


@dataclass(frozen=True, kw_only=True)
class LayerSpec:
    """The methods of one layer, as configured (projections built later, see ``methods``).

    ``methods`` maps a method key of :data:`~mappers.compress.projections.ORDER` to its
    parameters.
    """

    name: str
    kind: str
    methods: dict[str, dict]


@dataclass(frozen=True, kw_only=True)
class CompressionSpec:
    """A validated compression recipe."""

    name: str | None
    patterns: int
    admm: AdmmSettings
    finetune_epochs: int
    train: TrainSettings
    layers: tuple[LayerSpec, ...]
    source: Path | None = None
    raw: dict = field(default_factory=dict, compare=False)

    def projections(self, layer: LayerSpec, library: tuple[int, ...] = ()) -> list[Projection]:
        """The projections of ``layer`` (``library``: the PatDNN pattern codes)."""
        out: list[Projection] = []
        for method, p in layer.methods.items():
            if method == "unstructured":
                out.append(Unstructured(p["rate"]))
            elif method == "structured":
                out.append(Structured(p["rate"], p["axis"]))  # channels_with: Compressor
            elif method == "pattern":
                out.append(Pattern(tuple(library)))
            elif method == "connectivity":
                out.append(Connectivity(p["rate"]))
            elif method == "bsp":
                out.append(BlockStructured(tuple(p["block"]), p["column_rate"], p["row_rate"]))
            elif method == "unify":
                out.append(Unify(tuple(p["block"]), p["zero_fraction"], p["unify_fraction"]))
            elif method == "polarize":
                out.append(Polarize(p["fragment_rows"]))
            elif method == "quantize":
                out.append(Quantize(p["bits"], p["scale"]))
        return out


def layer_kinds(model: nn.Module) -> dict[str, tuple[str, nn.Module]]:
    """Compressible modules of ``model`` by name: Conv2d, Linear and GRU."""
    kinds: dict[str, tuple[str, nn.Module]] = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            kinds[name] = ("conv", module)
        elif isinstance(module, nn.Linear):
            kinds[name] = ("linear", module)
        elif isinstance(module, nn.GRU):
            kinds[name] = ("gru", module)
    return kinds


def load_compression(path: str | os.PathLike[str], model: nn.Module) -> CompressionSpec:
    """Read and validate a compression YAML for ``model``.

    Raises:
        UserError: the file does not exist.
        ConfigError: every problem of the file, each with its YAML path.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise UserError(f"compression file not found: {file}")
    return parse_compression(read_yaml(file), model, source=file)


def parse_compression(data: object, model: nn.Module, *, source: Path | None = None
                      ) -> CompressionSpec:
    """Validate already-parsed YAML ``data`` against ``model`` (see :func:`load_compression`)."""
    problems = Problems(str(source) if source is not None else "(compression)")
    top = Section(data, "", problems)
    if not top.ok:
        problems.raise_if_any()
    name = top.get("name", str, None)
    if name is not None and not _NAME.match(name):
        problems.add("name", f"must be letters, digits, '_', '.' or '-' (it names files), "
                             f"got {name!r}")
    patterns = top.get("patterns", int, 8, lo=1, hi=126)

    a = top.section("admm")
    d = AdmmSettings()
    admm = AdmmSettings(
        epochs=a.get("epochs", int, d.epochs, lo=0),
        rho=_positive(a, "rho", d.rho),
        rho_growth=a.get("rho_growth", float, d.rho_growth, lo=1.0),
        rho_max=_positive(a, "rho_max", d.rho_max),
        updates_per_epoch=a.get("updates_per_epoch", int, d.updates_per_epoch, lo=1),
    )
    a.finish()
    f = top.section("finetune")
    finetune_epochs = f.get("epochs", int, 2, lo=0)
    f.finish()

    t = top.section("train")
    td = TrainSettings()
    train = TrainSettings(
        epochs=admm.epochs + finetune_epochs,
        batch_size=t.get("batch_size", int, td.batch_size, lo=1),
        lr=_positive(t, "lr", td.lr),
        seed=t.get("seed", int, td.seed, lo=0, hi=2**63 - 1),
        optimizer=t.get("optimizer", str, td.optimizer, choices=OPTIMIZERS),
        momentum=t.get("momentum", float, td.momentum, lo=0.0, hi=1.0),
        weight_decay=t.get("weight_decay", float, td.weight_decay, lo=0.0),
        schedule=t.get("schedule", str, "constant", choices=SCHEDULES),
        augment=t.get("augment", bool, td.augment),
    )
    t.finish()

    kinds = layer_kinds(model)
    layers_section = top.section("layers", required=True)
    layers: list[LayerSpec] = []
    for lname in layers_section.data:
        path = f"layers.{lname}"
        if lname not in kinds:
            problems.add(path, "no Conv2d, Linear or GRU of that name in the model (it has: "
                               f"{', '.join(kinds) or 'none'})")
            layers_section.raw(lname)
            continue
        kind, module = kinds[lname]
        methods = _layer_methods(layers_section.section(lname), kind, module, problems)
        if methods:
            layers.append(LayerSpec(name=lname, kind=kind, methods=methods))
    layers_section.finish()
    _check_couplings(layers, kinds, problems)
    if "layers" in top.data and not layers and not problems:
        problems.add("layers", "names no layer to compress")
    top.finish()
    problems.raise_if_any()
    return CompressionSpec(name=name, patterns=patterns, admm=admm,
                           finetune_epochs=finetune_epochs, train=train, layers=tuple(layers),
                           source=source.absolute() if source is not None else None,
                           raw=data if isinstance(data, dict) else {})


def _check_couplings(layers: list[LayerSpec], kinds: dict, problems: Problems) -> None:
    """``structured.channels_with``: the named layer's filters feed this layer's channels.

    Both layers prune structurally, the producer its filters (``axis: filter|both``), this
    layer its channels (``axis: channel|both``), and both keep the same number of them.
    """
    by_name = {ls.name: ls for ls in layers}
    for ls in layers:
        p = ls.methods.get("structured")
        if not p or p.get("channels_with") is None:
            continue
        path = f"layers.{ls.name}.structured.channels_with"
        name = p["channels_with"]
        module = kinds[ls.name][1]
        prod = by_name.get(name)
        pp = prod.methods.get("structured") if prod is not None else None
        if name == ls.name:
            problems.add(path, "a layer cannot take its channels from its own filters")
            continue
        if ls.kind not in ("conv", "linear"):
            problems.add(path, f"couples conv and linear layers only, this is a {ls.kind}")
            continue
        if pp is None:
            problems.add(path, f"{name!r} must be a layer of this file with `structured` "
                               f"pruning (its kept filters become this layer's kept channels)")
            continue
        if prod.kind not in ("conv", "linear"):
            problems.add(path, f"couples conv and linear layers only, {name!r} is a {prod.kind}")
            continue
        if p["axis"] == "filter":
            problems.add(f"layers.{ls.name}.structured.axis",
                         "must be `channel` or `both` with channels_with (the coupling "
                         "chooses channels)")
        if pp["axis"] == "channel":
            problems.add(f"layers.{name}.structured.axis",
                         f"must be `filter` or `both`: {ls.name} takes its channels from "
                         f"this layer's filters")
        if pp.get("channels_with") is not None and by_name.get(pp["channels_with"]) is ls:
            problems.add(path, f"{name!r} and {ls.name!r} take their channels from each other")
        # The weights' own dims, as the projection reads them (group_energy): filters are
        # dim 0, a consumer's channels dim 1 (a grouped convolution's are per group).
        n_out, n_in = kinds[name][1].weight.shape[0], module.weight.shape[1]
        if n_out != n_in:
            problems.add(path, f"{name!r} has {n_out} filters but {ls.name} has {n_in} input "
                               f"channels per weight: they must be the same channels (a "
                               f"grouped convolution cannot take them)")
            continue
        k_out, k_in = keep_count(n_out, pp["rate"]), keep_count(n_in, p["rate"])
        if k_out != k_in:
            problems.add(path, f"{name!r} keeps {k_out} of its {n_out} filters (rate "
                               f"{pp['rate']}) but this layer keeps {k_in} of its {n_in} "
                               f"channels (rate {p['rate']}): the counts must be equal")


def _positive(section: Section, key: str, default: float) -> float:
    value = section.get(key, float, default, lo=0.0)
    if value == 0.0 and key in section.data:
        section.problems.add(f"{section.path}.{key}", "must be greater than 0")
        return default
    return value


def _block(section: Section, problems: Problems) -> tuple[int, int] | None:
    raw = section.get("block", list, None)
    if raw is None:
        if "block" not in section.data:
            problems.add(f"{section.path}.block", "is required ([rows, columns])")
        return None
    if (len(raw) != 2 or not all(isinstance(x, int) and not isinstance(x, bool) for x in raw)
            or min(raw) < 1):
        problems.add(f"{section.path}.block", f"must be [rows, columns], two integers >= 1, "
                                              f"got {raw!r}")
        return None
    return int(raw[0]), int(raw[1])


def _layer_methods(section: Section, kind: str, module: nn.Module, problems: Problems
                   ) -> dict[str, dict]:
    methods: dict[str, dict] = {}
    if not section.ok:
        return methods
    for method in section.data:
        path = f"{section.path}.{method}"
        if method not in ORDER:
            continue  # reported as unknown by finish()
        if method not in APPLIES[kind]:
            problems.add(path, f"does not apply to a {kind} layer (it takes: "
                               f"{', '.join(m for m in ORDER if m in APPLIES[kind])})")
            section.raw(method)
            continue
        s = section.section(method)
        p: dict = {}
        if method in ("unstructured", "structured", "connectivity"):
            p["rate"] = s.get("rate", float, lo=1.0)
        if method == "structured":
            p["axis"] = s.get("axis", str, "filter", choices=("filter", "channel", "both"))
            p["channels_with"] = s.get("channels_with", str, None)
        if method == "pattern" and tuple(module.kernel_size) != (3, 3):
            problems.add(path, f"PatDNN patterns need 3x3 kernels, this layer has "
                               f"{module.kernel_size[0]}x{module.kernel_size[1]}")
        if method in ("pattern", "connectivity") and module.groups != 1:
            problems.add(path, "grouped convolutions are not supported")
        if method == "bsp":
            p["block"] = _block(s, problems)
            p["column_rate"] = s.get("column_rate", float, 1.0, lo=1.0)
            p["row_rate"] = s.get("row_rate", float, 1.0, lo=1.0)
        if method == "unify":
            p["block"] = _block(s, problems)
            p["zero_fraction"] = s.get("zero_fraction", float, 0.0, lo=0.0, hi=1.0)
            p["unify_fraction"] = s.get("unify_fraction", float, 0.0, lo=0.0, hi=1.0)
            if (p["zero_fraction"] or 0) + (p["unify_fraction"] or 0) > 1.0:
                problems.add(path, "zero_fraction + unify_fraction must be at most 1")
        if method == "polarize":
            p["fragment_rows"] = s.get("fragment_rows", int, lo=1, hi=4096)
        if method == "quantize":
            p["bits"] = s.get("bits", int, lo=2, hi=16)
            p["scale"] = s.get("scale", str, "max", choices=("max", "fit"))
        s.finish()
        if method in ("polarize", "unify") and getattr(module, "groups", 1) != 1:
            problems.add(path, "grouped convolutions are not supported")
        methods[method] = p
    for method in ORDER:  # name every method this layer takes in an "unknown key" message
        if method in APPLIES[kind]:
            section.has(method)
    section.finish()
    return methods
