"""Workload YAML -> :class:`Workload`: which model, data set, precision and checkpoint.

A workload file looks like (``docs/workloads.md`` describes every key)::

    name: lenet5_mnist
    model: lenet5                 # a key of workloads.models.MODELS, or your own class:
                                  #   path/to/file.py:Class or package.module:Class
    model_args: {}                # keyword arguments of the model's constructor
    dataset: mnist                # a key of workloads.datasets.DATASETS
    preprocessing: {mean: [0.1307], std: [0.3081]}   # default: the data set's constants
    bits: {weights: 8, activations: 8}   # optional weights_per_layer: {conv1: 4, ...}
    mapping: dense                # or packed: zero weights occupy no cell (compressed models);
                                  # or unified: packed, unified blocks stored as signs
    checkpoint: checkpoints/lenet5_mnist.pt   # relative to this file's folder
    calibration_samples: 256      # training samples used to calibrate activation ranges
    train: {epochs: 3, batch_size: 128, lr: 0.01, seed: 0}   # used by `imcsim train`

Every problem in the file is collected with its YAML path and reported in one
:class:`~sim.errors.ConfigError`; unknown keys are problems. A user's model file is imported
when the YAML is loaded, so a missing file, a missing class or an error inside the file is a
problem at ``model``. A missing checkpoint is not a problem of the file: it is reported by
:meth:`Workload.load_model`, with the command that makes it.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sim.config.loader import MAX_YAML_BYTES, parse_yaml_text
from sim.config.validate import Problems, Section, short_repr
from sim.errors import ConfigError, DataError, UserError
from workloads.datasets import (
    DATASETS,
    DatasetInfo,
    Preprocessing,
    default_preprocessing,
    load_dataset,
)
from workloads.models import ModelRef, parse_model_ref, resolve_model

#: Folder of the workload YAML files shipped with imcsim.
BUILTIN_DIR = Path(__file__).resolve().parent

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("cosine", "constant")
#: How a workload's weights are laid on the crossbars (see :class:`Workload`).
MAPPINGS = ("dense", "packed", "unified")


@dataclass(frozen=True, kw_only=True)
class Bits:
    """Integer precision of the mapped model: weight and activation bit widths (1..16).

    ``weights_per_layer`` overrides ``weights`` for the named Conv2d/Linear modules (a
    compressed model quantized per layer, written by ``imcsim compress``).
    """

    weights: int
    activations: int
    weights_per_layer: Mapping[str, int] = field(default_factory=dict, hash=False)


@dataclass(frozen=True, kw_only=True)
class TrainSettings:
    """How ``imcsim train`` makes the float checkpoint.

    Attributes:
        epochs: passes over the training split.
        batch_size: samples per optimizer step.
        lr: peak learning rate.
        seed: seeds weight initialization, shuffling and augmentation.
        optimizer: ``sgd`` (with ``momentum``) or ``adam``.
        momentum: SGD momentum (ignored by Adam).
        weight_decay: L2 penalty.
        schedule: ``cosine`` (annealed to zero over all steps) or ``constant``.
        augment: random crop (4-pixel padding) and horizontal flip, for CIFAR-10.
    """

    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.01
    seed: int = 0
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "cosine"
    augment: bool = False


@dataclass(frozen=True, kw_only=True)
class Workload:
    """A model, its data set, the precision to map it at, and its trained checkpoint.

    Attributes:
        name: identifier used in file names and reports.
        model: key of :data:`workloads.models.MODELS`, or a user's class as
            ``path/to/file.py:Class`` or ``package.module:Class`` (see
            :func:`workloads.models.parse_model_ref`).
        dataset: key of :data:`workloads.datasets.DATASETS`.
        bits: weight and activation precision.
        checkpoint_path: absolute path of the float checkpoint (a ``state_dict``).
        calibration_samples: training samples used to calibrate activation ranges.
        train: settings for ``imcsim train``.
        description: free text.
        source: the YAML file this came from, if any.
        model_args: keyword arguments of the model's constructor (a shipped model also gets
            ``num_classes`` from the data set unless given here).
        preprocessing: resize and normalization of the inputs; ``None`` means the data set's
            fixed constants (:func:`workloads.datasets.default_preprocessing`).
        mapping: ``dense`` (every weight, zeros included, at the arch's weight bits) or
            ``packed`` (compressed layers as packed sub-layers at their own weight bits, see
            :mod:`mappers.compress.mapping`), or ``unified`` (packed, and a layer unified
            per crossbar row group stored as signs with one magnitude per (row group,
            column), :func:`mappers.compress.mapping.pack_unified`).
    """

    name: str
    model: str
    dataset: str
    bits: Bits
    checkpoint_path: Path
    calibration_samples: int = 256
    train: TrainSettings = TrainSettings()
    description: str = ""
    source: Path | None = None
    model_args: Mapping[str, Any] = field(default_factory=dict)
    preprocessing: Preprocessing | None = None
    mapping: str = "dense"

    @property
    def dataset_info(self) -> DatasetInfo:
        """Shape, classes and normalization of the workload's data set."""
        return DATASETS[self.dataset]

    @property
    def num_classes(self) -> int:
        """Number of output classes of the model."""
        return len(self.dataset_info.classes)

    @property
    def train_command(self) -> str:
        """The shell command that (re)makes this workload's checkpoint (``imcsim train``
        writes to the checkpoint path while no file is there, else under ``results/`` unless
        ``--out`` names it, and then ``--force`` is needed to replace it)."""
        target = str(self.source) if self.source is not None else self.name
        command = f"imcsim train {shlex.quote(target)}"
        if self.checkpoint_path.exists():
            command += f" --out {shlex.quote(str(self.checkpoint_path))} --force"
        if self.dataset_info.subfolders:  # every data set but the bundled digits
            command += " --data-dir FOLDER"
        return command

    @property
    def model_ref(self) -> ModelRef:
        """The parsed ``model:`` entry (relative files taken from the YAML's folder)."""
        return parse_model_ref(self.model, self._base_dir)

    @property
    def input_preprocessing(self) -> Preprocessing:
        """The preprocessing in effect: the YAML's, or the data set's fixed constants."""
        if self.preprocessing is not None:
            return self.preprocessing
        return default_preprocessing(self.dataset_info)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(channels, height, width)`` of one preprocessed input."""
        return self.input_preprocessing.shape(self.dataset_info)

    @property
    def _base_dir(self) -> Path | None:
        return self.source.parent if self.source is not None else None

    @property
    def _where(self) -> str:
        return str(self.source) if self.source is not None else f"workload {self.name!r}"

    def build_model(self) -> nn.Module:
        """A freshly initialized (untrained) model of this workload, checked on one input.

        Raises:
            UserError: the model's file or class cannot be found or imported, its constructor
                fails with ``model_args``, or its forward pass fails on (or returns the wrong
                shape for) a zero batch of the preprocessed input shape; the message names
                the workload YAML.
        """
        ref = self.model_ref
        try:
            cls = resolve_model(ref, self._base_dir)
        except UserError as exc:
            raise UserError(f"{self._where}: model: {exc}") from None
        kwargs = dict(self.model_args)
        if ref.builtin is not None:
            kwargs.setdefault("num_classes", self.num_classes)
        try:
            model = cls(**kwargs)
        except Exception as exc:  # noqa: BLE001 - a constructor failure is the user's to fix
            args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
            raise UserError(f"{self._where}: model: {self.model}({args}) failed: "
                            f"{type(exc).__name__}: {exc} (check model_args)") from None
        if not isinstance(model, nn.Module):
            raise UserError(f"{self._where}: model: {self.model} made a "
                            f"{type(model).__name__}, not a torch.nn.Module")
        self._check_forward(model)
        return model

    def _check_forward(self, model: nn.Module) -> None:
        """Run a zero batch through ``model`` so a shape mistake is one clear message."""
        shape = self.input_shape
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                out = model(torch.zeros(2, *shape))
        except Exception as exc:  # noqa: BLE001 - the user's forward() is theirs to fix
            raise UserError(
                f"{self._where}: model {self.model} fails on inputs of shape "
                f"{_shape(shape)} (data set {self.dataset}"
                f"{', resized' if self.input_preprocessing.resize else ''}): "
                f"{type(exc).__name__}: {exc}") from None
        finally:
            model.train(was_training)
        want = (2, self.num_classes)
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != want:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise UserError(f"{self._where}: model {self.model} returns {got} for a batch of "
                            f"2, expected logits of shape {want} for the {self.num_classes} "
                            f"classes of {self.dataset} (check model_args)")

    def load_model(self) -> nn.Module:
        """The model with the checkpoint's weights, in eval mode, on the CPU.

        Raises:
            DataError: the checkpoint is missing, unreadable, or does not fit the model; the
                message names the file and the ``imcsim train`` command that makes it.
        """
        model = self.build_model()  # a mistake in the model comes before a missing checkpoint
        path = self.checkpoint_path
        if not path.is_file():
            raise DataError(f"checkpoint of workload {self.name!r} not found: {path}\n"
                            f"Make it with: {self.train_command}")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - weights_only unpickling of a damaged file
            # raises anything (IndexError, KeyError, UnicodeDecodeError...); none runs code.
            raise DataError(f"cannot read checkpoint {path}: {checkpoint_problem(path, exc)}\n"
                            f"Make it again with: {self.train_command}") from None
        if not isinstance(state, Mapping):
            raise DataError(f"checkpoint {path} is not a state_dict (got "
                            f"{type(state).__name__})")
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise DataError(f"checkpoint {path} does not fit model {self.model!r}: {exc}\n"
                            f"Make it again with: {self.train_command}") from None
        return model.eval()

    def load_data(self, split: str, data_dir: str | os.PathLike[str] | None = None,
                  first: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One preprocessed split of the workload's data set, or its ``first`` samples (see
        :func:`load_dataset`)."""
        return load_dataset(self.dataset, split, data_dir, self.preprocessing, first)


def checkpoint_problem(path: Path, exc: BaseException) -> str:
    """Why ``torch.load(path, weights_only=True)`` failed, in words a user can act on.

    Torch's own message for a file it cannot unpickle advises loading it with
    ``weights_only=False``, which would run whatever code the file holds: that advice is not
    passed on.
    """
    try:
        if path.stat().st_size == 0:
            return "the file is empty"
    except OSError as err:
        return err.strerror or str(err)
    text = str(exc)
    if "Weights only load failed" in text:
        return ("not a checkpoint of plain tensors (a corrupt file, or one holding other "
                "Python objects, which imcsim never unpickles)")
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return f"not a readable PyTorch checkpoint ({first[:200]})"


def builtin_workloads() -> dict[str, Path]:
    """The workload YAML files shipped with imcsim, by name (file stem)."""
    return {p.stem: p for p in sorted(BUILTIN_DIR.glob("*.yaml"))}


def load_workload(path: str | os.PathLike[str]) -> Workload:
    """Read and validate a workload YAML file.

    ``path`` may also be the name of a built-in workload (``lenet5_mnist``), used when no file
    of that name exists.

    Raises:
        UserError: the file does not exist or cannot be read.
        ConfigError: YAML syntax error, or one or more invalid entries (all of them listed,
            each with its YAML path).
    """
    file = Path(path).expanduser()
    if not file.is_file():
        builtin = builtin_workloads()
        if str(path) in builtin:
            file = builtin[str(path)]
        else:
            raise UserError(f"workload file not found: {file}; give a YAML path or one of the "
                            f"built-in workloads: {', '.join(builtin) or '(none)'}")
    try:
        raw = file.read_bytes() if file.stat().st_size <= MAX_YAML_BYTES else None
    except OSError as exc:
        raise UserError(f"cannot read workload file {file}: {exc}") from None
    if raw is None:
        raise ConfigError(str(file), [("", f"file is larger than {MAX_YAML_BYTES:,} bytes")])
    data = parse_yaml_text(raw, str(file))  # bounded: size, aliases, UTF-8
    return parse_workload(data, source=file)


def parse_workload(data: object, *, source: Path | None = None) -> Workload:
    """Validate already-parsed YAML ``data``; relative paths are taken from ``source``'s folder.

    Raises:
        ConfigError: every problem found, each with its YAML path.
    """
    problems = Problems(str(source) if source is not None else "(workload)")
    top = Section(data, "", problems)
    if not top.ok:  # not a mapping: "name is required" etc. would only be noise
        problems.raise_if_any()
    name = top.get("name", str)
    if name is not None and not _NAME.match(name):
        problems.add("name", "must be letters, digits, '_', '.' or '-' (it names files), got "
                             f"{short_repr(name)}")
        name = None
    base = source.parent if source is not None else Path.cwd()
    model = top.get("model", str)
    model_class = None
    if model is not None:
        try:
            model_class = resolve_model(parse_model_ref(model, base), base)
        except UserError as exc:
            problems.add("model", str(exc))
            model = None
    model_args = top.get("model_args", dict, {})
    if model_args and not all(isinstance(k, str) and k.isidentifier() for k in model_args):
        problems.add("model_args", "keys must be Python argument names, got "
                                   f"{', '.join(map(repr, model_args))}")
    dataset = top.get("dataset", str, choices=sorted(DATASETS))
    preprocessing = None
    if top.has("preprocessing"):
        preprocessing = _preprocessing(top.section("preprocessing"),
                                       DATASETS.get(dataset) if dataset else None)
    want = getattr(model_class, "input_shape", None)  # optional on a user's class
    if want is not None and dataset is not None and not problems.bad("preprocessing"):
        info = DATASETS[dataset]
        have = (preprocessing or default_preprocessing(info)).shape(info)
        if tuple(want) != have:
            resized = " after preprocessing.resize" if preprocessing and preprocessing.resize \
                else ""
            problems.add("dataset", f"model {model} takes {_shape(tuple(want))} inputs but "
                                    f"data set {dataset} has {_shape(have)} images{resized}")
    description = top.get("description", str, "")

    bits_section = top.section("bits", required=True)
    weights = activations = None
    weights_per_layer: dict[str, int] = {}
    mapping = "dense"
    if bits_section.ok and "bits" in top.data:  # else "is required"/"must be a mapping" said it
        weights = bits_section.get("weights", int, lo=1, hi=16)
        activations = bits_section.get("activations", int, lo=1, hi=16)
        per_layer = bits_section.section("weights_per_layer")
        for key in list(per_layer.data):
            bits = per_layer.get(key, int, lo=1, hi=16)
            if bits is not None:
                weights_per_layer[str(key)] = bits
        per_layer.finish()
        bits_section.finish()
    mapping = top.get("mapping", str, "dense", choices=MAPPINGS)

    checkpoint = top.get("checkpoint", str, f"checkpoints/{name}.pt" if name else None)
    calibration_samples = top.get("calibration_samples", int, 256, lo=1)
    train = _train_settings(top.section("train"))
    top.finish()
    problems.raise_if_any()

    checkpoint_path = Path(checkpoint).expanduser()
    if not checkpoint_path.is_absolute():
        checkpoint_path = base / checkpoint_path
    return Workload(
        name=name, model=model, dataset=dataset,
        bits=Bits(weights=weights, activations=activations,
                  weights_per_layer=weights_per_layer),
        checkpoint_path=Path(os.path.normpath(checkpoint_path.absolute())),
        calibration_samples=calibration_samples, train=train, description=description,
        source=source.absolute() if source is not None else None,
        model_args=dict(model_args), preprocessing=preprocessing, mapping=mapping,
    )


def _preprocessing(section: Section, info: DatasetInfo | None) -> Preprocessing | None:
    """The ``preprocessing:`` section; keys left out take the data set's constants."""
    channels = info.shape[0] if info is not None else None

    def per_channel(key: str, positive: bool) -> tuple[float, ...] | None:
        default = getattr(info, key) if info is not None else None
        value = section.get(key, (list, float), default)
        if value is None or value is default:
            return value
        values = value if isinstance(value, list) else [value]
        path = f"{section.path}.{key}"
        if not values or not all(isinstance(v, int | float) and not isinstance(v, bool)
                                 for v in values):
            section.problems.add(path, f"must be a number or a list of numbers, got {value!r}")
            return None
        if channels is not None and len(values) not in (1, channels):
            section.problems.add(path, f"has {len(values)} values; give 1 or one per channel "
                                       f"({channels})")
            return None
        if positive and min(values) <= 0:
            section.problems.add(path, "must be greater than 0")
            return None
        if channels is not None and len(values) == 1:
            values = values * channels
        return tuple(float(v) for v in values)

    mean = per_channel("mean", positive=False)
    std = per_channel("std", positive=True)
    raw = section.get("resize", (int, list), None)
    resize = None
    if isinstance(raw, int):
        raw = [raw, raw]
    if raw is not None:
        if (len(raw) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1
                                     for v in raw)):
            section.problems.add(f"{section.path}.resize", "must be a size in pixels or "
                                 f"[height, width], each at least 1, got {raw!r}")
        else:
            resize = (int(raw[0]), int(raw[1]))
    section.finish()
    if mean is None or std is None:
        return None
    return Preprocessing(mean=mean, std=std, resize=resize)


def _train_settings(section: Section) -> TrainSettings:
    default = TrainSettings()
    lr = section.get("lr", float, default.lr, lo=0.0)
    if lr == 0.0:
        section.problems.add(f"{section.path}.lr", "must be greater than 0")
    settings = TrainSettings(
        epochs=section.get("epochs", int, default.epochs, lo=1),
        batch_size=section.get("batch_size", int, default.batch_size, lo=1),
        lr=lr,
        seed=section.get("seed", int, default.seed, lo=0, hi=2**63 - 1),
        optimizer=section.get("optimizer", str, default.optimizer, choices=OPTIMIZERS),
        momentum=section.get("momentum", float, default.momentum, lo=0.0, hi=1.0),
        weight_decay=section.get("weight_decay", float, default.weight_decay, lo=0.0),
        schedule=section.get("schedule", str, default.schedule, choices=SCHEDULES),
        augment=section.get("augment", bool, default.augment),
    )
    section.finish()
    return settings


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))
