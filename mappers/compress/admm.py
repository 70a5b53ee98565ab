"""The ADMM framework: train a model into a constraint set, then hard-project and fine-tune.

Problem: minimize ``loss(W)`` subject to ``W_t in S_t`` for every compressed weight ``t``
(``S_t`` the intersection of the constraints of its methods). ADMM splits it with a copy
``Z_t`` and a scaled dual ``U_t``:

1. W-step: SGD/Adam steps on ``loss(W) + sum_t rho/2 ||W_t - Z_t + U_t||^2``;
2. Z-step: ``Z_t = P_t(W_t + U_t)``, the composed projection of
   :mod:`mappers.compress.projections`;
3. U-step: ``U_t += W_t - Z_t``; then ``rho *= rho_growth`` (capped at ``rho_max``).

Steps 2-3 run ``updates_per_epoch`` times per ADMM epoch. Then the hard projection
``W_t = P_t(W_t)`` fixes the structure: the zeros of the pruning methods (every method but
``quantize``) become a mask and the discrete choices of each projection are frozen
(:meth:`Projection.freeze`). Masked fine-tuning trains on: every
step's forward and backward pass uses the projected weights ``P_t(W_t)`` (straight-through:
the gradient updates the latent ``W_t``), and the mask is re-applied after every optimizer
step, so pruned weights stay zero. The saved model is ``P_t(W_t)``: every constraint holds
exactly, which :func:`fit` checks before returning.

The run saves its whole state (model, optimizer, schedule, Z, U, rho, mask, frozen choices,
pattern library) after every epoch; running the same command again resumes there and ends
with the same bits as an uninterrupted run (each epoch's shuffling comes from a generator
seeded by ``(seed, epoch)``, as in :mod:`workloads.train`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from mappers.compress.projections import (
    Projection,
    Structured,
    Unify,
    compose,
    coupled_keep,
    coupled_score,
    keep_count,
    pattern_library,
)
from mappers.compress.spec import CompressionSpec, LayerSpec, layer_kinds
from sim.config.loader import read_yaml
from sim.errors import InvariantError, UserError
from sim.fileio import atomic_write
from workloads.download import file_digest
from workloads.spec import Workload, builtin_workloads, load_workload

# One code path for seeding, optimizers, schedules, augmentation and evaluation: the
# float-training module's own helpers.
from workloads.train import (
    _describe_source,
    _epoch_generator,
    _optimizer,
    _scheduler,
    augment,
    evaluate,
)

_PARTIAL_FORMAT = 1


@dataclass
class Target:
    """One compressed weight tensor: a Conv2d/Linear weight, or one GRU weight matrix whose
    ``chunks`` gate matrices (stacked along dim 0) are compressed separately."""

    layer: str
    param_name: str
    param: nn.Parameter
    chunks: int
    projections: list[Projection]

    @property
    def key(self) -> str:
        """``layer.param`` (unique within the model)."""
        return f"{self.layer}.{self.param_name}"

    def pieces(self, w: torch.Tensor) -> list[torch.Tensor]:
        """The gate matrices (or the one weight) of ``w``."""
        return list(torch.chunk(w, self.chunks, dim=0))


class Compressor:
    """The compressed weights of a model with their projections (built from a spec).

    The PatDNN library is taken from the model's weights when the compressor is built (the
    trained model), over all layers that use ``pattern``.
    """

    def __init__(self, model: nn.Module, spec: CompressionSpec,
                 library: list[int] | None = None):
        kinds = layer_kinds(model)
        pattern_weights = [kinds[ls.name][1].weight.detach() for ls in spec.layers
                           if "pattern" in ls.methods]
        if library is None:
            library = pattern_library(pattern_weights, spec.patterns) if pattern_weights else []
        self.library = [int(c) for c in library]
        self.targets: list[Target] = []
        for ls in spec.layers:
            module = kinds[ls.name][1]
            for pname, chunks in _weights(ls, module):
                self.targets.append(Target(
                    layer=ls.name, param_name=pname, param=getattr(module, pname),
                    chunks=chunks, projections=compose(spec.projections(ls,
                                                                        tuple(self.library)))))
        #: Per target, per piece, the frozen projections (set by :meth:`freeze`).
        self.frozen: dict[str, list[list[Projection]]] | None = None
        #: ``structured.channels_with`` couplings: (producer, its consumers, channels kept).
        self.couplings: list[tuple[Target, list[Target], int]] = []
        by_layer = {t.layer: t for t in self.targets}
        spec_by_name = {ls.name: ls for ls in spec.layers}
        consumers: dict[str, list[Target]] = {}
        for ls in spec.layers:
            p = ls.methods.get("structured")
            if p and p.get("channels_with") is not None:
                consumers.setdefault(p["channels_with"], []).append(by_layer[ls.name])
        for name, cons in consumers.items():
            prod = by_layer[name]
            rate = spec_by_name[name].methods["structured"]["rate"]
            self.couplings.append((prod, cons, keep_count(prod.param.shape[0], rate)))

    def _fixed(self, values: dict[str, torch.Tensor]) -> dict[str, dict[str, tuple[int, ...]]]:
        """The coupled kept sets on ``values`` (weights by target key), per target."""
        fixed: dict[str, dict[str, tuple[int, ...]]] = {}
        for prod, cons, k in self.couplings:
            kept = coupled_keep(values[prod.key].detach(),
                                [values[c.key].detach() for c in cons], k)
            fixed.setdefault(prod.key, {})["filters"] = kept
            for c in cons:
                fixed.setdefault(c.key, {})["channels"] = kept
        return fixed

    @staticmethod
    def _chain(t: Target, fixed: dict[str, dict[str, tuple[int, ...]]]) -> list[Projection]:
        sets = fixed.get(t.key)
        if not sets:
            return t.projections
        return [replace(p, **sets) if isinstance(p, Structured) else p for p in t.projections]

    def project_frozen(self, t: Target, w: torch.Tensor) -> torch.Tensor:
        """The composed projection of ``w`` with the choices frozen at hard pruning."""
        return self._project(t, w, None)

    def project_targets(self, values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The composed projection ``P_t`` of every target, ``values`` by target key; a
        coupled target (``channels_with``) takes its coupled set from ``values`` together."""
        fixed = self._fixed(values)
        return {t.key: self._project(t, values[t.key], self._chain(t, fixed))
                for t in self.targets}

    def _project(self, t: Target, w: torch.Tensor, chain: list[Projection] | None
                 ) -> torch.Tensor:
        out = []
        for i, piece in enumerate(t.pieces(w.detach())):
            for p in (self.frozen[t.key][i] if chain is None else chain):
                piece = p.project(piece)
            out.append(piece)
        return torch.cat(out, dim=0)

    def support(self, t: Target, w: torch.Tensor) -> torch.Tensor:
        """Where the frozen projection of ``w`` may be nonzero: its structure, not its grid.

        The frozen chain without ``quantize``: a weight that quantization rounds to zero
        stays trainable (the next step's projection may round it to a level), while a weight
        a pruning method removed stays removed.
        """
        out = []
        for i, piece in enumerate(t.pieces(w.detach())):
            for p in self.frozen[t.key][i]:
                if p.method != "quantize":
                    piece = p.project(piece)
            out.append(piece)
        return torch.cat(out, dim=0) != 0

    def freeze(self) -> None:
        """Fix every projection's discrete choices on the current weights."""
        self.frozen = {}
        fixed = self._fixed({t.key: t.param for t in self.targets})
        for t in self.targets:
            per_piece = []
            for piece in t.pieces(t.param.detach()):
                chain = []
                for p in self._chain(t, fixed):
                    f = p.freeze(piece)
                    chain.append(f)
                    piece = f.project(piece)
                per_piece.append(chain)
            self.frozen[t.key] = per_piece

    def frozen_state(self) -> dict[str, list[list[list[int] | None]]] | None:
        """The frozen choices as plain lists (for checkpoints)."""
        if self.frozen is None:
            return None
        def choice(p):
            if isinstance(p, Unify) and p.assignment is not None:
                return list(p.assignment)
            if isinstance(p, Structured) and (p.filters, p.channels) != (None, None):
                return {"filters": p.filters and list(p.filters),
                        "channels": p.channels and list(p.channels)}
            return None

        return {key: [[choice(p) for p in chain] for chain in chains]
                for key, chains in self.frozen.items()}

    def load_frozen_state(self, state: dict | None) -> None:
        """Restore :meth:`frozen_state`."""
        if state is None:
            self.frozen = None
            return
        self.frozen = {}
        for t in self.targets:
            self.frozen[t.key] = [
                [p if a is None else replace(p, assignment=tuple(a)) if isinstance(a, list)
                 else replace(p, **{k: v if v is None else tuple(v) for k, v in a.items()})
                 for p, a in zip(t.projections, chain, strict=True)]
                for chain in state[t.key]]

    def check(self, t: Target, w: torch.Tensor) -> dict[str, bool]:
        """Each method's constraint on every piece of ``w``."""
        out = {p.method: all(p.satisfied(piece) for piece in t.pieces(w.detach()))
               for p in t.projections}
        for prod, cons, k in self.couplings:  # kept filters and kept channels are one set
            if t is prod or t in cons:
                ws = [(w if u is t else u.param).detach() for u in (prod, *cons)]
                live = int((coupled_score(ws[0], ws[1:]) > 0).sum())
                out["channels_with"] = out.get("channels_with", True) and live <= k
        return out

    def report(self) -> dict[str, Any]:
        """Achieved figures per compressed weight (for the manifest)."""
        layers = {}
        for t in self.targets:
            w = t.param.detach()
            nnz = int((w != 0).sum())
            methods = {}
            for p in t.projections:
                pieces = [p.stats(piece) for piece in t.pieces(w)]
                merged: dict[str, Any] = {"satisfied": all(
                    p.satisfied(piece) for piece in t.pieces(w))}
                for key, value in pieces[0].items():
                    if isinstance(value, int | float) and not isinstance(value, bool) \
                            and len(pieces) > 1 and key not in ("bits", "fragment_rows"):
                        merged[key] = sum(s[key] for s in pieces)
                    else:
                        merged[key] = value
                if "stored_magnitudes" in merged:
                    stored = merged["stored_magnitudes"]
                    merged["storage_rate"] = w.numel() / stored if stored else math.inf
                methods[p.method] = merged
            layers[t.key] = {"shape": list(w.shape), "weights": w.numel(), "nonzero": nnz,
                             "pruning_rate": w.numel() / nnz if nnz else math.inf,
                             "methods": methods}
        return layers


def _weights(ls: LayerSpec, module: nn.Module) -> list[tuple[str, int]]:
    if ls.kind == "gru":
        # weight_ih_l{k} and weight_hh_l{k} stack the reset, update and new gates' matrices.
        return [(n, 3) for n in module._flat_weights_names if n.startswith("weight_")]
    return [("weight", 1)]


def fit(model: nn.Module, spec: CompressionSpec, data: dict[str, torch.Tensor], *,
        seed: int, partial_path: Path | None = None, fingerprint: str = "",
        progress: bool = True, device: str = "cpu",
        on_epoch: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Run ADMM, hard projection and masked fine-tuning on ``model`` in place.

    Args:
        model: the trained float model (its weights seed the pattern library and Z).
        spec: methods per layer and the ADMM / fine-tuning settings.
        data: ``x_train``, ``y_train``, ``x_test``, ``y_test`` tensors.
        seed: seeds shuffling and augmentation (epoch ``e`` uses ``(seed, e)``).
        partial_path: where the per-epoch state is saved and resumed from (None: nowhere).
        fingerprint: what a saved state must match to be resumed.
        progress: show a tqdm bar.
        on_epoch: called with the number of finished epochs after each epoch is saved.

    Returns:
        Accuracies, per-epoch history and the per-layer report.
    """
    from tqdm import tqdm

    settings = spec.train
    x_train, y_train = data["x_train"], data["y_train"]
    steps = math.ceil(len(y_train) / settings.batch_size)
    admm_epochs, ft_epochs = spec.admm.epochs, spec.finetune_epochs
    total = admm_epochs + ft_epochs

    was_det = torch.are_deterministic_algorithms_enabled()
    was_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        torch.manual_seed(seed)
        model.to(device)
        baseline = evaluate(model, data["x_test"], data["y_test"], device=device)
        comp = Compressor(model, spec)
        z = comp.project_targets({t.key: t.param for t in comp.targets})
        u = {t.key: torch.zeros_like(t.param.detach()) for t in comp.targets}
        rho = spec.admm.rho
        mask: dict[str, torch.Tensor] | None = None
        history: list[dict[str, Any]] = []
        hard_accuracy = None
        optimizer = _optimizer(model, settings)
        scheduler = _scheduler(optimizer, settings, max(admm_epochs * steps, 1))
        start = 0
        state = _load_partial(partial_path, fingerprint)
        if state is not None:
            start = int(state["epoch"])
            model.load_state_dict(state["model"])
            comp = Compressor(model, spec, library=state["library"])
            z, u, rho = state["z"], state["u"], float(state["rho"])
            mask, history = state["mask"], json.loads(state["history"])
            hard_accuracy = state["hard_accuracy"]
            comp.load_frozen_state(state["frozen"])
            if mask is not None:
                optimizer = _optimizer(model, settings)
                scheduler = _scheduler(optimizer, settings, max(ft_epochs * steps, 1))
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
        update_at = {round(steps * (j + 1) / spec.admm.updates_per_epoch)
                     for j in range(spec.admm.updates_per_epoch)}

        with tqdm(total=total * steps, initial=start * steps, unit="step",
                  desc="compress", disable=not progress) as bar:
            for epoch in range(start, total):
                gen = _epoch_generator(seed, epoch)
                admm = epoch < admm_epochs
                if not admm and mask is None:  # hard projection, once
                    comp.freeze()
                    mask = {t.key: comp.support(t, t.param) for t in comp.targets}
                    with torch.no_grad():
                        for t in comp.targets:
                            t.param.copy_(comp.project_frozen(t, t.param))
                    hard_accuracy = evaluate(model, data["x_test"], data["y_test"],
                                             device=device)
                    optimizer = _optimizer(model, settings)
                    scheduler = _scheduler(optimizer, settings, max(ft_epochs * steps, 1))
                model.train()
                order = torch.randperm(len(y_train), generator=gen)
                losses = []
                for i, begin in enumerate(range(0, len(y_train), settings.batch_size)):
                    index = order[begin:begin + settings.batch_size]
                    batch = x_train[index]
                    if settings.augment:
                        batch = augment(batch, gen)
                    if admm:
                        loss = F.cross_entropy(model(batch.to(device)),
                                               y_train[index].to(device))
                        penalty = sum(rho / 2 * (t.param - z[t.key] + u[t.key]).pow(2).sum()
                                      for t in comp.targets)
                        optimizer.zero_grad(set_to_none=True)
                        (loss + penalty).backward()
                        optimizer.step()
                        scheduler.step()
                        if i + 1 in update_at:
                            with torch.no_grad():
                                z = comp.project_targets({t.key: t.param.detach() + u[t.key]
                                                      for t in comp.targets})
                                for t in comp.targets:
                                    u[t.key] = u[t.key] + t.param.detach() - z[t.key]
                            rho = min(rho * spec.admm.rho_growth, spec.admm.rho_max)
                    else:
                        latent = {t.key: t.param.detach().clone() for t in comp.targets}
                        with torch.no_grad():
                            for t in comp.targets:
                                t.param.copy_(comp.project_frozen(t, t.param))
                        loss = F.cross_entropy(model(batch.to(device)),
                                               y_train[index].to(device))
                        optimizer.zero_grad(set_to_none=True)
                        loss.backward()
                        with torch.no_grad():
                            for t in comp.targets:
                                t.param.copy_(latent[t.key])
                        optimizer.step()
                        scheduler.step()
                        with torch.no_grad():
                            for t in comp.targets:
                                t.param.mul_(mask[t.key])
                    losses.append(float(loss.detach()))
                    bar.update(1)
                    bar.set_postfix(phase="admm" if admm else "finetune",
                                    epoch=f"{epoch + 1}/{total}", loss=f"{losses[-1]:.3f}",
                                    refresh=False)
                entry = {"epoch": epoch + 1, "phase": "admm" if admm else "finetune",
                         "mean_loss": float(np.mean(losses)) if losses else float("nan")}
                if admm:
                    entry["rho"] = rho
                    entry["residual"] = _residual(comp, z)
                history.append(entry)
                if partial_path is not None and epoch + 1 < total:
                    _save_partial(partial_path, {
                        "fingerprint": fingerprint, "epoch": epoch + 1,
                        "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(), "z": z, "u": u, "rho": rho,
                        "mask": mask, "library": comp.library, "frozen": comp.frozen_state(),
                        "history": json.dumps(history), "hard_accuracy": hard_accuracy})
                if on_epoch is not None:
                    on_epoch(epoch + 1)

        if mask is None:  # no fine-tuning epochs: the hard projection is the end
            comp.freeze()
            with torch.no_grad():
                for t in comp.targets:
                    t.param.copy_(comp.project_frozen(t, t.param))
            hard_accuracy = evaluate(model, data["x_test"], data["y_test"], device=device)
        else:
            with torch.no_grad():
                for t in comp.targets:
                    t.param.copy_(comp.project_frozen(t, t.param))
        for t in comp.targets:
            failed = [m for m, ok in comp.check(t, t.param).items() if not ok]
            if failed:
                raise InvariantError(f"{t.key}: constraint(s) {failed} do not hold after the "
                                     "final projection")
        accuracy = evaluate(model, data["x_test"], data["y_test"], device=device)
    finally:
        torch.use_deterministic_algorithms(was_det, warn_only=was_warn)
    return {"baseline_accuracy": baseline, "hard_projection_accuracy": hard_accuracy,
            "test_accuracy": accuracy, "history": history, "pattern_library":
            [f"{c:09b}"[::-1] for c in comp.library], "layers": comp.report(),
            "totals": _totals(model, comp)}


def _residual(comp: Compressor, z: dict[str, torch.Tensor]) -> float:
    """Relative primal residual ``||W - Z|| / ||W||`` over all compressed weights."""
    num = sum(float((t.param.detach() - z[t.key]).pow(2).sum()) for t in comp.targets)
    den = sum(float(t.param.detach().pow(2).sum()) for t in comp.targets)
    return math.sqrt(num / den) if den else 0.0


def _totals(model: nn.Module, comp: Compressor) -> dict[str, Any]:
    keys = {t.key for t in comp.targets}
    compressed = sum(t.param.numel() for t in comp.targets)
    compressed_nnz = sum(int((t.param != 0).sum()) for t in comp.targets)
    all_w = all_nnz = 0
    for name, (kind, module) in layer_kinds(model).items():
        for pname, _ in _weights(LayerSpec(name=name, kind=kind, methods={}), module):
            w = getattr(module, pname).detach()
            all_w += w.numel()
            all_nnz += int((w != 0).sum())
            keys.discard(f"{name}.{pname}")
    return {"compressed_weights": compressed, "compressed_nonzero": compressed_nnz,
            "compressed_pruning_rate": compressed / compressed_nnz if compressed_nnz
            else math.inf,
            "model_weights": all_w, "model_nonzero": all_nnz,
            "model_pruning_rate": all_w / all_nnz if all_nnz else math.inf}


def _uniform_weight_bits(model: nn.Module, spec: CompressionSpec) -> int | None:
    """The quantize bits shared by every Conv2d/Linear of ``model``, if they all have one."""
    bits = {ls.name: ls.methods["quantize"]["bits"] for ls in spec.layers
            if "quantize" in ls.methods}
    mapped = [n for n, (kind, _) in layer_kinds(model).items() if kind != "gru"]
    if mapped and all(n in bits for n in mapped) and len({bits[n] for n in mapped}) == 1:
        return bits[mapped[0]]
    return None


def _fully_unified(spec: CompressionSpec) -> bool:
    """Whether some layer's unification leaves no block free (zeroed + unified = all)."""
    return any(ls.methods["unify"]["zero_fraction"] + ls.methods["unify"]["unify_fraction"]
               >= 1.0 - 1e-9 for ls in spec.layers if "unify" in ls.methods)


def _layer_weight_bits(model: nn.Module, spec: CompressionSpec) -> dict[str, int]:
    """The quantize bits of every quantized Conv2d/Linear of ``model``, by module name."""
    mapped = {n for n, (kind, _) in layer_kinds(model).items() if kind != "gru"}
    return {ls.name: int(ls.methods["quantize"]["bits"]) for ls in spec.layers
            if "quantize" in ls.methods and ls.name in mapped}


def _load_partial(path: Path | None, fingerprint: str) -> dict | None:
    if path is None or not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - an unreadable partial file only means starting over
        return None
    if not isinstance(state, dict) or state.get("fingerprint") != fingerprint:
        return None
    return state


def _save_partial(path: Path, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda stream: torch.save(state, stream))


def compress(workload: Workload, spec: CompressionSpec, *,
             out: str | os.PathLike[str] | None = None,
             data_dir: str | os.PathLike[str] | None = None, admm_epochs: int | None = None,
             finetune_epochs: int | None = None, seed: int | None = None,
             train_samples: int | None = None, progress: bool = True, resume: bool = True,
             command: str | None = None,
             on_epoch: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Compress ``workload``'s trained model by ``spec``; write workload YAML, checkpoint and
    manifest into ``out`` (default ``results/compress/NAME``).

    The written ``NAME.yaml`` is the base workload's file with ``name`` and ``checkpoint``
    replaced (and no ``train:`` section), so ``imcsim run ARCH out/NAME.yaml`` maps the
    compressed model. Returns the manifest (also written as ``NAME.json``).
    ``train_samples``: train on the first that many training samples only (the manifest's
    ``train_samples`` records it); the test set stays whole.

    Raises:
        DataError: the base checkpoint or the data set is missing.
    """
    for label, value in (("--epochs", admm_epochs), ("--finetune-epochs", finetune_epochs),
                         ("--seed", seed)):
        if value is not None and value < 0:
            raise UserError(f"{label} must be at least 0, got {value}")
    if train_samples is not None and train_samples < 1:
        raise UserError(f"--train-samples must be at least 1, got {train_samples}")
    if admm_epochs is not None or finetune_epochs is not None:
        admm = spec.admm if admm_epochs is None else replace(spec.admm, epochs=admm_epochs)
        ft = spec.finetune_epochs if finetune_epochs is None else finetune_epochs
        spec = replace(spec, admm=admm, finetune_epochs=ft,
                       train=replace(spec.train, epochs=admm.epochs + ft))
    seed = spec.train.seed if seed is None else int(seed)
    name = spec.name or f"{workload.name}_compressed"
    out_dir = Path(out) if out is not None else Path("results") / "compress" / name
    out_dir = out_dir.expanduser().absolute()
    ckpt = out_dir / f"{name}.pt"
    started = time.perf_counter()

    model = workload.load_model()
    from workloads.datasets import locate_dataset

    source = locate_dataset(workload.dataset, data_dir)
    x_train, y_train = workload.load_data("train", data_dir)
    if train_samples is not None:
        x_train, y_train = x_train[:train_samples], y_train[:train_samples]
    x_test, y_test = workload.load_data("test", data_dir)
    base_sha = file_digest(workload.checkpoint_path, "sha256")
    fingerprint = json.dumps({
        "format": _PARTIAL_FORMAT, "workload": workload.name, "model": workload.model,
        "base_sha256": base_sha, "spec": repr((spec.patterns, spec.admm, spec.finetune_epochs,
                                               spec.train, spec.layers)),
        "seed": seed, "n_train": len(y_train), "torch": torch.__version__}, sort_keys=True)
    partial = ckpt.with_name(ckpt.name + ".partial")
    if not resume:
        partial.unlink(missing_ok=True)
    result = fit(model, spec, {"x_train": x_train, "y_train": y_train, "x_test": x_test,
                               "y_test": y_test}, seed=seed, partial_path=partial,
                 fingerprint=fingerprint, progress=progress, on_epoch=on_epoch)

    state = {k: (v.detach().to("cpu", torch.float32) if v.is_floating_point()
                 else v.detach().cpu()).clone() for k, v in model.state_dict().items()}
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(ckpt, lambda stream: torch.save(state, stream))
    yaml_path = out_dir / f"{name}.yaml"
    base = read_yaml(workload.source) if workload.source is not None else {
        "model": workload.model, "dataset": workload.dataset,
        "bits": asdict(workload.bits), "calibration_samples": workload.calibration_samples}
    base.pop("train", None)
    weight_bits = _uniform_weight_bits(model, spec)
    if weight_bits is not None:  # every mapped layer sits on one grid: map it at those bits
        base["bits"] = {**base.get("bits", {}), "weights": weight_bits}
    per_layer = _layer_weight_bits(model, spec)
    if per_layer:  # each quantized layer mapped at its own bits (mappers.compress.mapping)
        base["bits"] = {**base.get("bits", {}), "weights_per_layer": per_layer}
    # Zero weights occupy no cell, row or conversion (mappers/compress/mapping.py). A layer
    # whose every block is unified or zeroed can be stored as signs with one magnitude per
    # (row group, column) (mapping: unified, mapping.pack_unified, which refuses blocks not
    # aligned with the arch's row groups); partly unified layers keep full-bit weights.
    base["mapping"] = "unified" if _fully_unified(spec) else "packed"
    base["name"] = name
    base["checkpoint"] = ckpt.name
    base["description"] = (f"{workload.name} compressed by "
                           f"{spec.source.name if spec.source else 'a compression spec'} "
                           f"(see {name}.json)")
    text = ("# Written by imcsim compress; see the manifest beside it.\n"
            + yaml.safe_dump(base, sort_keys=False))
    atomic_write(yaml_path, lambda stream: stream.write(text.encode()))
    load_workload(yaml_path).load_model()  # the written workload must load

    manifest = {
        "workload": name,
        "base_workload": workload.name,
        # A built-in base workload is recorded by name (survives moving the manifest); the
        # files by their path from the manifest's own folder (read by manifest_source).
        "base_workload_builtin": _builtin_name(workload.source),
        "base_workload_file": _relative(workload.source, out_dir),
        "base_checkpoint_sha256": base_sha,
        "compression_file": _relative(spec.source, out_dir),
        "compression": spec.raw,
        "command": command if command is not None else shlex.join(sys.argv),
        "seed": seed,
        "admm": asdict(spec.admm),
        "finetune_epochs": spec.finetune_epochs,
        "train_settings": {k: v for k, v in asdict(spec.train).items() if k != "epochs"},
        "dataset": workload.dataset,
        "data": _describe_source(source),
        "train_samples": len(y_train),
        "test_samples": len(y_test),
        **result,
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "torch_threads": torch.get_num_threads(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - started, 1),
        "checkpoint": ckpt.name,
        "checkpoint_sha256": file_digest(ckpt, "sha256"),
        "workload_file": yaml_path.name,
        "workload_weight_bits": base["bits"]["weights"],
    }
    text = json.dumps(manifest, indent=2, default=str) + "\n"
    atomic_write(ckpt.with_suffix(".json"), lambda stream: stream.write(text.encode()))
    partial.unlink(missing_ok=True)
    return manifest


def _builtin_name(source: Path | None) -> str | None:
    """The built-in workload name of ``source``, if it is a shipped workload file."""
    if source is None:
        return None
    found = builtin_workloads().get(source.stem)
    return source.stem if found is not None and found.resolve() == source.resolve() else None


def _relative(source: Path | None, folder: Path) -> str | None:
    return Path(os.path.relpath(source.resolve(), folder.resolve())).as_posix() \
        if source is not None else None


def manifest_source(manifest: str | os.PathLike[str], which: str = "base_workload") -> Path:
    """The file a compression manifest refers to: ``which`` is ``base_workload`` or
    ``compression``.

    A built-in base workload is found by its recorded name; otherwise the recorded path is
    taken from the manifest's own folder, so a manifest moved together with its files (or
    referring to a built-in workload) still resolves.

    Raises:
        UserError: the manifest cannot be read, or the file it names does not exist.
    """
    path = Path(manifest)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read compression manifest {path}: {exc}") from None
    if which not in ("base_workload", "compression"):
        raise ValueError(f"which must be 'base_workload' or 'compression', got {which!r}")
    if which == "base_workload" and data.get("base_workload_builtin"):
        found = builtin_workloads().get(data["base_workload_builtin"])
        if found is not None:
            return found
    key = f"{which}_file"
    recorded = data.get(key)
    if not recorded:
        raise UserError(f"{path}: {key}: no file recorded")
    file = (path.parent / recorded).resolve()
    if not file.is_file():
        raise UserError(f"{path}: {key}: {recorded} (from the manifest's folder) does not "
                        f"exist: {file}")
    return file


def state_digest(model: nn.Module) -> str:
    """SHA-256 of a model's state (bit-level identity of two runs)."""
    h = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()
