"""The functions behind ``import imcsim``: argument checks and data handling, then the same
code path as ``imcsim run`` (:func:`analysis.run.simulate` on a
:class:`~analysis.run.LoadedWorkload`)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset

from analysis import run
from analysis.paths import ARCH_DIR, resolve
from analysis.run import LoadedWorkload, Result
from mappers import QuantRecipe
from mappers import map_model as _map_model
from mappers.torch_bridge import MappedModel
from sim.config import Arch
from sim.config import load_arch as _load_arch
from sim.errors import UserError
from workloads.spec import Bits

ArchLike = Arch | str | os.PathLike[str]


def load_arch(arch: ArchLike) -> Arch:
    """An :class:`~sim.config.Arch` from an arch YAML path, the name of a shipped arch
    (``isaac_32nm``), or an ``Arch`` already loaded (returned as is).

    Raises:
        UserError: no such file or shipped arch; ConfigError: the YAML is invalid (every
            problem with its YAML path).
    """
    if isinstance(arch, Arch):
        return arch
    if not isinstance(arch, str | os.PathLike):
        raise UserError(f"arch: expected an arch YAML path, a shipped arch name or an "
                        f"imcsim.Arch, got {type(arch).__name__}")
    return _load_arch(resolve(os.fspath(arch), ARCH_DIR, "arch"))


def simulate(model: nn.Module, arch: ArchLike, test_data: Any, calibration_data: Any, *,
             weight_bits: int = 8, activation_bits: int = 8, samples: int | None = None,
             calibration_samples: int = 256, seed: int = 0, batch_size: int = 50,
             pipelined: bool = True, progress: bool = False, name: str | None = None,
             allow_float_products: bool = False) -> Result:
    """Simulate ``model`` on ``arch`` bit-true, as ``imcsim run`` does for a workload YAML.

    The float model and the hardware model run on the same test samples; the result holds
    both accuracies, the exact events per layer, energy, latency, throughput and area.

    Args:
        model: a ``torch.nn.Module`` taking a batch of inputs and returning logits
            ``(N, classes)``. Its Conv2d and Linear layers are mapped onto crossbars; it is
            left unchanged (put in eval mode for the run and restored after).
        arch: an arch YAML path, the name of a shipped arch, or an :class:`Arch`.
        test_data: ``(inputs, labels)`` tensors or arrays, a ``Dataset`` of
            ``(input, label)`` items, or a ``DataLoader`` of ``(inputs, labels)`` batches.
        calibration_data: inputs that fix the activation ranges (and calibrated ADC ranges):
            any form ``test_data`` takes, or inputs alone (a tensor or a list of tensors).
            Use training data, not the test samples.
        weight_bits, activation_bits: the integer precision to map at (1..16; at most the
            arch's ``weights.bits`` and ``inputs.bits``).
        samples: how many test samples to run (default: all of ``test_data``).
        calibration_samples: how many calibration inputs to use at most.
        seed: fixes every random draw (variation, ADC curves, noise).
        batch_size: samples per hardware batch.
        pipelined: pipelined timing (else layer by layer).
        progress: show a progress bar.
        name: the workload's name in the result (default: the model's class name).
        allow_float_products: let matrix products that do not map onto crossbars (``q @ k.T``,
            ``torch.bmm``, ``F.linear`` with a computed weight...) run in float instead of
            being refused; the result lists them, its ``energy_complete`` is False and a note
            says the energy and time leave them out.

    Returns:
        The same :class:`Result` as the command line (``format_result``, ``save``);
        ``result.operations`` lists every executed operation, classified.

    Raises:
        UserError: a bad argument (one message naming it); MappingError (a UserError): a
            layer that cannot be mapped onto the arch, or a matrix product outside an
            ``nn.Conv2d``/``nn.Linear`` (named by module and source line).
    """
    lw, arch_obj = _loaded(model, arch, test_data, calibration_data, weight_bits,
                           activation_bits, samples, calibration_samples, name)
    _check_positive("batch_size", batch_size)
    with _eval_mode(model):
        return run.simulate(arch_obj, lw, seed=_int("seed", seed), batch_size=batch_size,
                            progress=progress, pipelined=pipelined,
                            allow_float_products=_flag("allow_float_products",
                                                       allow_float_products))


def estimate(model: nn.Module, arch: ArchLike, test_data: Any, calibration_data: Any, *,
             weight_bits: int = 8, activation_bits: int = 8, samples: int = 16,
             calibration_samples: int = 256, seed: int = 0, name: str | None = None,
             allow_float_products: bool = False) -> Result:
    """The analytical mode of :func:`simulate`: events estimated from input statistics.

    Fast enough for large sweeps. The float model runs on ``samples`` test samples; the
    hardware accuracy is not measured (NaN). Arguments as in :func:`simulate`.
    """
    lw, arch_obj = _loaded(model, arch, test_data, calibration_data, weight_bits,
                           activation_bits, samples, calibration_samples, name)
    with _eval_mode(model):
        return run.estimate(arch_obj, lw, samples=None, seed=_int("seed", seed),
                            allow_float_products=_flag("allow_float_products",
                                                       allow_float_products))


def map_model(model: nn.Module, arch: ArchLike, calibration_data: Any, *,
              weight_bits: int = 8, activation_bits: int = 8, calibration_samples: int = 256,
              seed: int = 0, allow_float_products: bool = False) -> MappedModel:
    """``model`` with its Conv2d/Linear products on simulated crossbars of ``arch``.

    Returns a :class:`MappedModel`: call it on inputs (``mapped(x)``) for the hardware's
    outputs; ``mapped.model`` is the ``nn.Module``; ``mapped.layers`` holds each mapped
    layer's shape, crossbars and accumulated events; ``mapped.coverage`` every executed
    operation, classified. ``model`` itself is not changed. Arguments as in :func:`simulate`.
    """
    _check_model(model)
    arch_obj = load_arch(arch)
    recipe = _recipe(weight_bits, activation_bits)
    calib = as_inputs(calibration_data, "calibration_data", limit=calibration_samples)
    with _eval_mode(model):
        _check_forward(model, calib[:1], "calibration_data")
        return _map_model(model, arch_obj, recipe, calib, seed=_int("seed", seed),
                          allow_float_products=_flag("allow_float_products",
                                                     allow_float_products))


def _flag(what: str, value: Any) -> bool:
    """``value`` if it is a bool, else a :class:`UserError` naming ``what``."""
    if not isinstance(value, bool):
        raise UserError(f"{what}: expected True or False, got {value!r}")
    return value


def as_labelled(data: Any, what: str = "test_data", limit: int | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(inputs, labels)`` tensors from a pair of tensors or arrays, a Dataset or a
    DataLoader (at most ``limit`` samples); labels become int64 ``(N,)``.

    Raises:
        UserError: ``data`` is none of those, has no labels, or its parts do not match.
    """
    if isinstance(data, DataLoader | Dataset):
        inputs, labels = _collect(data, what, limit, need_labels=True)
    elif isinstance(data, tuple | list) and len(data) == 2 and _is_array(data[0]) \
            and _is_array(data[1]):
        inputs, labels = _tensor(data[0], what, "inputs"), _tensor(data[1], what, "labels")
    else:
        raise UserError(f"{what}: expected (inputs, labels) tensors, a Dataset of "
                        f"(input, label) items or a DataLoader of (inputs, labels) batches, "
                        f"got {_describe(data)}")
    labels = _labels(labels, what)
    if len(inputs) != len(labels):
        raise UserError(f"{what}: {len(inputs)} inputs but {len(labels)} labels")
    if limit is not None:
        inputs, labels = inputs[:limit], labels[:limit]
    _check_inputs(inputs, what)
    return inputs, labels


def as_inputs(data: Any, what: str = "calibration_data", limit: int | None = None
              ) -> torch.Tensor:
    """Inputs from a tensor or array, a list of batches, an ``(inputs, labels)`` pair, a
    Dataset or a DataLoader (labels, if any, are dropped; at most ``limit`` inputs).

    Raises:
        UserError: ``data`` is none of those, or empty.
    """
    if isinstance(data, DataLoader | Dataset):
        inputs, _ = _collect(data, what, limit, need_labels=False)
    elif _is_array(data):
        inputs = _tensor(data, what, "inputs")
    elif isinstance(data, tuple | list) and len(data) == 2 and _is_array(data[0]) \
            and _is_array(data[1]) and len(data[0]) == len(data[1]) \
            and torch.as_tensor(np.asarray(data[1]) if not isinstance(data[1], torch.Tensor)
                                else data[1]).dim() == 1:
        inputs = _tensor(data[0], what, "inputs")  # an (inputs, labels) pair
    elif isinstance(data, tuple | list) and data and all(_is_array(b) for b in data):
        inputs = _cat([_tensor(b, what, "inputs") for b in data], what)
    else:
        raise UserError(f"{what}: expected input tensors, a list of input batches, "
                        f"(inputs, labels) tensors, a Dataset or a DataLoader, got "
                        f"{_describe(data)}")
    if limit is not None:
        inputs = inputs[:limit]
    _check_inputs(inputs, what)
    return inputs


# ---------------------------------------------------------------------------------------


def _loaded(model, arch, test_data, calibration_data, weight_bits, activation_bits, samples,
            calibration_samples, name) -> tuple[LoadedWorkload, Arch]:
    _check_model(model)
    arch_obj = load_arch(arch)
    recipe = _recipe(weight_bits, activation_bits)
    if samples is not None:
        _check_positive("samples", samples)
    _check_positive("calibration_samples", calibration_samples)
    x, y = as_labelled(test_data, "test_data", limit=samples)
    calib = as_inputs(calibration_data, "calibration_data", limit=calibration_samples)
    with _eval_mode(model):
        _check_forward(model, x[:2], "test_data")
        if tuple(calib.shape[1:]) != tuple(x.shape[1:]):
            raise UserError(f"calibration_data: inputs of shape {tuple(calib.shape[1:])} but "
                            f"test_data inputs are {tuple(x.shape[1:])}")
    if name is not None and not isinstance(name, str):
        raise UserError(f"name: expected a string, got {_describe(name)}")
    lw = LoadedWorkload(
        name=name or type(model).__name__, model=model, test_inputs=x, test_labels=y,
        calibration=calib, bits=Bits(weights=recipe.weight_bits,
                                     activations=recipe.activation_bits),
        label=f"(python: {type(model).__module__}.{type(model).__qualname__})")
    return lw, arch_obj


def _check_model(model: Any) -> None:
    if not isinstance(model, nn.Module):
        raise UserError(f"model: expected a torch.nn.Module, got {_describe(model)}")
    devices = {str(t.device) for t in [*model.parameters(), *model.buffers()]
               if t.device.type != "cpu"}
    if devices:
        raise UserError(f"model: has tensors on {', '.join(sorted(devices))}; imcsim "
                        "simulates on the CPU: pass model.cpu()")


def _recipe(weight_bits: Any, activation_bits: Any) -> QuantRecipe:
    for what, v in (("weight_bits", weight_bits), ("activation_bits", activation_bits)):
        if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= 16:
            raise UserError(f"{what}: must be an integer in 1..16, got {v!r}")
    return QuantRecipe(weight_bits=weight_bits, activation_bits=activation_bits)


def _int(what: str, v: Any) -> int:
    if not isinstance(v, int | np.integer) or isinstance(v, bool):
        raise UserError(f"{what}: must be an integer, got {v!r}")
    return int(v)


def _check_positive(what: str, v: Any) -> None:
    if _int(what, v) < 1:
        raise UserError(f"{what}: must be at least 1, got {v!r}")


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode for the run (batch norm uses its running statistics, dropout is off), the
    caller's mode restored after."""
    was = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was)


def _check_forward(model: nn.Module, x: torch.Tensor, what: str) -> None:
    try:
        with torch.no_grad():
            out = model(x)
    except Exception as exc:  # noqa: BLE001 - the user's forward() is theirs to fix
        raise UserError(f"model fails on {what} inputs of shape {tuple(x.shape[1:])}: "
                        f"{type(exc).__name__}: {exc}") from None
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != len(x):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise UserError(f"model returns {got} for a batch of {len(x)} {what} inputs; "
                        "imcsim needs logits of shape (batch, classes)")


def _is_array(x: Any) -> bool:
    return isinstance(x, torch.Tensor | np.ndarray)


def _tensor(x: Any, what: str, part: str) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        try:
            x = torch.from_numpy(np.ascontiguousarray(x))
        except TypeError as exc:
            raise UserError(f"{what}: {part} array of dtype {x.dtype} is not numeric: "
                            f"{exc}") from None
    if not isinstance(x, torch.Tensor):
        raise UserError(f"{what}: {part} must be tensors or numpy arrays, got {_describe(x)}")
    return x.detach().cpu()


def _labels(y: torch.Tensor, what: str) -> torch.Tensor:
    if y.dim() != 1:
        raise UserError(f"{what}: labels must be class indices of shape (N,), got shape "
                        f"{tuple(y.shape)}")
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise UserError(f"{what}: labels must be integer class indices, got {y.dtype}")
    return y.to(torch.int64)


def _check_inputs(x: torch.Tensor, what: str) -> None:
    if len(x) == 0:
        raise UserError(f"{what}: no samples")
    if not x.is_floating_point():
        raise UserError(f"{what}: inputs are {x.dtype}; give float tensors, preprocessed "
                        "(scaled and normalized) as the model expects")


def _cat(parts: list[torch.Tensor], what: str) -> torch.Tensor:
    if not parts:
        raise UserError(f"{what}: no samples")
    shapes = {tuple(p.shape[1:]) for p in parts}
    if len(shapes) > 1:
        raise UserError(f"{what}: batches of different input shapes {sorted(shapes)}")
    return torch.cat(parts)


def _collect(data: DataLoader | Dataset, what: str, limit: int | None, need_labels: bool
             ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Inputs (and labels) of a DataLoader's batches or a Dataset's items, up to ``limit``."""
    loader = isinstance(data, DataLoader)
    if loader or isinstance(data, IterableDataset):
        items = iter(data)
    else:
        try:
            n = len(data)  # type: ignore[arg-type]
        except TypeError:
            raise UserError(f"{what}: a map-style Dataset must have __len__") from None
        n = n if limit is None else min(n, limit)
        items = (data[i] for i in range(n))
    xs: list[torch.Tensor] = []
    ys: list[torch.Tensor] = []
    count = 0
    kind = "batch" if loader else "item"
    try:
        for item in items:
            if isinstance(item, tuple | list) and len(item) >= 2:
                x, y = item[0], item[1]
            elif isinstance(item, dict) and {"input", "label"} <= item.keys():
                x, y = item["input"], item["label"]
            elif not need_labels and _is_array(item):
                x, y = item, None
            elif (not need_labels and isinstance(item, tuple | list) and len(item) == 1
                  and _is_array(item[0])):  # TensorDataset(inputs) and its DataLoader
                x, y = item[0], None
            else:
                raise UserError(f"{what}: each {kind} must be (inputs, labels)"
                                f"{'' if need_labels else ' or inputs'}, got {_describe(item)}")
            x = _tensor(x, what, "inputs")
            if not loader:
                x = x.unsqueeze(0)
            xs.append(x)
            if y is not None:
                y = torch.as_tensor(y) if not _is_array(y) else _tensor(y, what, "labels")
                ys.append(y.reshape(1) if not loader else y)
            count += len(x)
            if limit is not None and count >= limit:
                break
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's Dataset/collate code raised
        raise UserError(f"{what}: reading the {type(data).__name__} failed: "
                        f"{type(exc).__name__}: {exc}") from None
    inputs = _cat(xs, what)
    if need_labels:
        if len(ys) != len(xs):
            raise UserError(f"{what}: some {kind}s have no labels")
        return inputs, _cat(ys, what)
    return inputs, None


def _describe(x: Any) -> str:
    if isinstance(x, torch.Tensor | np.ndarray):
        return f"{type(x).__name__} of shape {tuple(x.shape)}"
    if isinstance(x, tuple | list):
        return f"{type(x).__name__} of {len(x)} ({', '.join(_describe(i) for i in x[:3])}" \
               f"{', ...' if len(x) > 3 else ''})"
    return type(x).__name__
