"""Deterministic float training of a workload's model (``imcsim train``).

:func:`train` makes the checkpoint a workload's ``checkpoint:`` names, plus a manifest JSON
next to it saying exactly how it was made (command, seed, data files, versions, accuracy,
checkpoint SHA-256). The same seed, data, torch version and thread count give the same
checkpoint bit for bit: weights are initialized after ``torch.manual_seed(seed)``, each
epoch's shuffling and augmentation come from a generator seeded from ``(seed, epoch)``,
and torch's deterministic algorithms are switched on for the run.

After every epoch the run's state is saved to ``<checkpoint>.partial``; a run that stops is
resumed from there by running the same command again, and reaches the same final weights as
an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sim.errors import UserError
from sim.fileio import atomic_write, ensure_writable_dir
from workloads.datasets import DataSource, locate_dataset
from workloads.download import file_digest
from workloads.spec import TrainSettings, Workload

_PARTIAL_FORMAT = 1


def train(workload: Workload, *, data_dir: str | os.PathLike[str] | None = None,
          epochs: int | None = None, seed: int | None = None,
          out: str | os.PathLike[str] | None = None, progress: bool = True,
          device: str = "cpu", resume: bool = True, command: str | None = None,
          force: bool = False) -> dict[str, Any]:
    """Train ``workload``'s model from scratch, evaluate it, write checkpoint and manifest.

    Args:
        workload: what to train; its ``train:`` settings give the optimizer and defaults.
        data_dir: data folder (default ``$IMCSIM_DATA``; not needed for ``digits``).
        epochs: override ``train.epochs``.
        seed: override ``train.seed``.
        out: checkpoint path (default ``workload.checkpoint_path``); the manifest is written
            next to it with the suffix ``.json``.
        progress: show a tqdm progress bar.
        device: torch device to train on.
        resume: continue from ``<out>.partial`` when it belongs to the same run settings.
        command: the command line recorded in the manifest (default: ``sys.argv``).
        force: allow replacing an existing checkpoint that a workload YAML names (this
            workload's or a shipped one's); without it that is refused before training.

    Returns:
        The manifest, as written to the JSON file.

    Raises:
        DataError: the data set is missing or malformed.
        UserError: ``epochs`` below 1, a negative ``seed``, or ``out`` is a workload's existing
            checkpoint and ``force`` is false.
        OutputError: the checkpoint's folder cannot be written (checked before training).
    """
    from tqdm import tqdm

    settings = workload.train
    epochs = settings.epochs if epochs is None else int(epochs)
    seed = settings.seed if seed is None else int(seed)
    if epochs < 1:
        raise UserError(f"epochs must be at least 1, got {epochs} (an untrained checkpoint "
                        "is not written)")
    if seed < 0:
        raise UserError(f"the training seed must not be negative, got {seed}")
    out_path = Path(out).expanduser().absolute() if out is not None else workload.checkpoint_path
    if out_path.is_dir():
        raise UserError(f"{out_path} is a folder; the output is a checkpoint file path "
                        f"(such as {out_path / workload.checkpoint_path.name})")
    _refuse_named_checkpoint(out_path, workload, force)
    ensure_writable_dir(out_path.parent, "checkpoint folder")
    partial_path = out_path.with_name(out_path.name + ".partial")
    started = time.perf_counter()

    source = locate_dataset(workload.dataset, data_dir)
    x_train, y_train = workload.load_data("train", data_dir)
    x_test, y_test = workload.load_data("test", data_dir)
    n_train = len(y_train)
    steps = math.ceil(n_train / settings.batch_size)

    was_deterministic = torch.are_deterministic_algorithms_enabled()
    was_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    # warn_only: an operator with no deterministic implementation on some device should not
    # abort a long run; on the CPU every operator these models use is deterministic.
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        torch.manual_seed(seed)
        model = workload.build_model().to(device)
        optimizer = _optimizer(model, settings)
        scheduler = _scheduler(optimizer, settings, epochs * steps)
        fingerprint = _fingerprint(workload, settings, epochs, seed, n_train, device)
        start_epoch = 0
        if resume:
            start_epoch = _resume(partial_path, fingerprint, model, optimizer, scheduler)
        loss_value = float("nan")
        with tqdm(total=epochs * steps, initial=start_epoch * steps, unit="step",
                  desc=f"train {workload.name}", disable=not progress) as bar:
            for epoch in range(start_epoch, epochs):
                loss_value = _train_epoch(model, optimizer, scheduler, x_train, y_train,
                                          settings, _epoch_generator(seed, epoch), device,
                                          on_step=lambda loss, e=epoch: _show(bar, e, epochs,
                                                                              loss))
                if epoch + 1 < epochs:
                    _save_partial(partial_path, fingerprint, epoch + 1, model, optimizer,
                                  scheduler)
        accuracy = evaluate(model, x_test, y_test, device=device)
    finally:
        torch.use_deterministic_algorithms(was_deterministic, warn_only=was_warn_only)

    state = {key: (value.detach().to("cpu", torch.float32) if value.is_floating_point()
                   else value.detach().cpu()).clone()
             for key, value in model.state_dict().items()}
    out_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out_path, lambda stream: torch.save(state, stream))
    manifest = {
        "workload": workload.name,
        # Relative to the manifest, so a committed manifest names no one's home folder.
        "workload_file": (os.path.relpath(workload.source, out_path.parent)
                          if workload.source is not None else None),
        "model": workload.model,
        **_model_provenance(workload),
        "command": command if command is not None else shlex.join(sys.argv),
        "seed": seed,
        "epochs": epochs,
        "train_settings": {k: v for k, v in dataclasses.asdict(settings).items()
                           if k not in ("epochs", "seed")},
        "dataset": workload.dataset,
        "data": _describe_source(source),
        "train_samples": n_train,
        "test_samples": len(y_test),
        "test_accuracy": accuracy,
        "final_train_loss": loss_value,
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "train_seconds": round(time.perf_counter() - started, 1),
        "checkpoint": out_path.name,
        "checkpoint_sha256": file_digest(out_path, "sha256"),
    }
    text = json.dumps(manifest, indent=2) + "\n"
    atomic_write(out_path.with_suffix(".json"), lambda stream: stream.write(text.encode()))
    partial_path.unlink(missing_ok=True)
    return manifest


def _refuse_named_checkpoint(path: Path, workload: Workload, force: bool) -> None:
    """Refuse to replace an existing checkpoint that a workload names, unless ``force``.

    The checkpoints a workload YAML names (committed ones above all) are what every later
    run of that workload uses; a quick ``--epochs 1`` experiment must not replace them.
    """
    if force or not path.exists():
        return
    named = {workload.name: workload.checkpoint_path}
    from workloads.spec import builtin_workloads, load_workload

    for name, yaml_path in builtin_workloads().items():
        try:
            named.setdefault(name, load_workload(yaml_path).checkpoint_path)
        except UserError:
            continue
    target = path.resolve()
    users = sorted(name for name, p in named.items() if p.resolve() == target)
    if users:
        raise UserError(f"{path} is the checkpoint that workload {', '.join(users)} uses; "
                        "training would replace it. Give another --out, or add --force to "
                        "replace it")


@torch.no_grad()
def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *,
             batch_size: int = 1000, device: str = "cpu") -> float:
    """Top-1 accuracy (0..1) of ``model`` in eval mode on ``images``/``labels``."""
    model.eval()
    correct = 0
    for start in range(0, len(labels), batch_size):
        logits = model(images[start:start + batch_size].to(device))
        correct += int((logits.argmax(1).cpu() == labels[start:start + batch_size]).sum())
    return correct / max(len(labels), 1)


def _optimizer(model: nn.Module, settings: TrainSettings) -> torch.optim.Optimizer:
    if settings.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=settings.lr,
                                weight_decay=settings.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=settings.lr, momentum=settings.momentum,
                           weight_decay=settings.weight_decay, nesterov=settings.momentum > 0)


def _scheduler(optimizer: torch.optim.Optimizer, settings: TrainSettings, total_steps: int
               ) -> torch.optim.lr_scheduler.LRScheduler:
    if settings.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(total_steps, 1))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    # Child seeds from SeedSequence: independent streams per epoch, so a resumed run draws
    # exactly what an uninterrupted one would without saving generator state.
    child = np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(child))


def _train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer,
                 scheduler: torch.optim.lr_scheduler.LRScheduler, images: torch.Tensor,
                 labels: torch.Tensor, settings: TrainSettings, generator: torch.Generator,
                 device: str, on_step: Callable[[float], None]) -> float:
    model.train()
    order = torch.randperm(len(labels), generator=generator)
    loss_value = float("nan")
    for start in range(0, len(labels), settings.batch_size):
        index = order[start:start + settings.batch_size]
        batch = images[index]
        if settings.augment:
            batch = augment(batch, generator)
        loss = F.cross_entropy(model(batch.to(device)), labels[index].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        loss_value = float(loss.detach())
        on_step(loss_value)
    return loss_value


def augment(images: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop after ``pad`` pixels of zero padding, and random horizontal flip.

    The standard CIFAR-10 augmentation of He et al. (2016), done for the whole batch at once
    with gathered indices rather than a Python loop per image.
    """
    n, c, h, w = images.shape
    padded = F.pad(images, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h)[None, :])[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w)[None, :])[:, None, None, :]
    crops = padded[torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None],
                   rows, cols]
    flip = (torch.rand(n, generator=generator) < 0.5)[:, None, None, None]
    return torch.where(flip, crops.flip(3), crops)


def _show(bar: Any, epoch: int, epochs: int, loss: float) -> None:
    bar.update(1)
    bar.set_postfix(epoch=f"{epoch + 1}/{epochs}", loss=f"{loss:.3f}", refresh=False)


def _fingerprint(workload: Workload, settings: TrainSettings, epochs: int, seed: int,
                 n_train: int, device: str) -> str:
    """What a ``.partial`` file must match to be resumed: the run's every setting."""
    return json.dumps({"format": _PARTIAL_FORMAT, "model": workload.model,
                       **_model_provenance(workload), "dataset": workload.dataset,
                       "settings": repr(settings),
                       "epochs": epochs, "seed": seed, "n_train": n_train, "device": device,
                       "torch": torch.__version__}, sort_keys=True)


def _model_provenance(workload: Workload) -> dict[str, Any]:
    """What else decides the trained weights besides the ``model:`` entry: the constructor's
    arguments, the input preprocessing, and the content of a user's model file."""
    out: dict[str, Any] = {}
    if workload.model_args:
        out["model_args"] = dict(workload.model_args)
    if workload.preprocessing is not None:
        out["preprocessing"] = dataclasses.asdict(workload.preprocessing)
    file = workload.model_ref.file
    if file is not None and file.is_file():
        out["model_file_sha256"] = file_digest(file, "sha256")
    return out


def _resume(path: Path, fingerprint: str, model: nn.Module, optimizer: torch.optim.Optimizer,
            scheduler: torch.optim.lr_scheduler.LRScheduler) -> int:
    """Load ``path`` into the run if it belongs to it; the epoch to start at (0 if not)."""
    if not path.is_file():
        return 0
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state.get("fingerprint") != fingerprint:
            return 0
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        return int(state["epoch"])
    except Exception:  # noqa: BLE001 - an unreadable partial file only means starting over
        return 0


def _save_partial(path: Path, fingerprint: str, epoch: int, model: nn.Module,
                  optimizer: torch.optim.Optimizer,
                  scheduler: torch.optim.lr_scheduler.LRScheduler) -> None:
    state = {"fingerprint": fingerprint, "epoch": epoch, "model": model.state_dict(),
             "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda stream: torch.save(state, stream))


def _describe_source(source: DataSource) -> dict[str, Any]:
    if source.kind == "sklearn":
        import sklearn

        return {"kind": source.kind, "folder": None, "files": [],
                "origin": f"sklearn.datasets.load_digits (scikit-learn {sklearn.__version__})"}
    files = []
    for path in source.files:
        if path.is_dir():
            images = [p for p in path.rglob("*") if p.is_file()]
            files.append({"name": path.name + "/", "file_count": len(images),
                          "size_bytes": sum(p.stat().st_size for p in images)})
        else:
            files.append({"name": path.name, "size_bytes": path.stat().st_size,
                          "md5": file_digest(path, "md5")})
    return {"kind": source.kind, "folder": str(source.folder), "files": files}
