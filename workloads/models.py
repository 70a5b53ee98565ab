"""Hand-written PyTorch models of the workloads imcsim maps onto IMC hardware.

Every model is built only from ``nn.Conv2d``, ``nn.Linear``, ``nn.BatchNorm2d``, ``nn.ReLU``,
pooling and flatten, each layer its own module (no functional convolutions, no in-place
ReLUs), so the torch bridge in :mod:`mappers` can find every matrix product by walking
``named_modules()`` and swap the ``Conv2d``/``Linear`` modules for hardware-backed ones.

Each model class carries ``input_shape`` (channels, height, width) so a workload can be
checked against its data set before anything runs.

A workload may also name a user's own model class instead of a key of :data:`MODELS`:
``path/to/file.py:Class`` (a Python file, relative to the workload YAML's folder or absolute)
or ``package.module:Class`` (an importable module; the YAML's folder is searched first). See
:func:`resolve_model` and ``docs/workloads.md``.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from sim.errors import UserError
from workloads.spiking import LeNetBN, SpikingCifarCNN, SpikingLeNet


class DigitsCNN(nn.Module):
    """A tiny CNN for the 8x8 scikit-learn digits: the fast offline demo and test workload.

    conv 16@3x3 pad 1 + BN + ReLU, conv 32@3x3 pad 1 + BN + ReLU + maxpool 2, linear to
    ``num_classes`` (4,800 weights in the convolutions, 5,120 in the classifier).
    """

    input_shape = (1, 8, 8)

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(16, 32, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(32)
        self.relu2 = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(32 * 4 * 4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape ``(N, num_classes)`` for images of shape ``(N, 1, 8, 8)``."""
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.pool(self.relu2(self.bn2(self.conv2(x))))
        return self.fc(self.flatten(x))


class LeNet5(nn.Module):
    """LeNet-5 for 28x28 MNIST as used by CAP-RAM (JSSC 2021): no batch normalization.

    conv 6@5x5 pad 2, ReLU, maxpool 2, conv 16@5x5, ReLU, maxpool 2, fc 120, fc 84, fc
    ``num_classes``. Max pooling and ReLU stand in for LeCun's subsampling and tanh, as in
    the IMC literature.
    """

    input_shape = (1, 28, 28)

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, kernel_size=5, padding=2)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(6, 16, kernel_size=5)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(120, 84)
        self.relu4 = nn.ReLU()
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape ``(N, num_classes)`` for images of shape ``(N, 1, 28, 28)``."""
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        x = self.relu3(self.fc1(self.flatten(x)))
        x = self.relu4(self.fc2(x))
        return self.fc3(x)


class BasicBlock(nn.Module):
    """The two-convolution residual block of He et al. (CVPR 2016).

    When the block changes the shape (stride 2 or more channels) the shortcut is a 1x1
    convolution + BN (the paper's option B), which is a matrix product the bridge maps like
    any other; otherwise it is the identity.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride,
                               padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1,
                               bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu2 = nn.ReLU()
        if stride != 1 or in_channels != out_channels:
            self.shortcut: nn.Module = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``."""
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class ResNet20(nn.Module):
    """ResNet-20 for CIFAR-10 (He et al., CVPR 2016, section 4.2).

    A 3x3 stem with 16 channels, three stages of three :class:`BasicBlock` each with 16, 32
    and 64 channels (stride 2 at the start of the second and third), global average pooling
    and a linear classifier: 19 convolutions + 1 linear layer = 20 weight layers (plus the two
    1x1 shortcut convolutions).
    """

    input_shape = (3, 32, 32)

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu1 = nn.ReLU()
        self.layer1 = self._stage(16, 16, stride=1)
        self.layer2 = self._stage(16, 32, stride=2)
        self.layer3 = self._stage(32, 64, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(64, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                # He initialization, as in the paper; PyTorch's default is tuned for tanh-era
                # nets and trains deep residual stacks more slowly.
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    @staticmethod
    def _stage(in_channels: int, out_channels: int, stride: int, blocks: int = 3) -> nn.Sequential:
        layers = [BasicBlock(in_channels, out_channels, stride)]
        layers += [BasicBlock(out_channels, out_channels) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape ``(N, num_classes)`` for images of shape ``(N, 3, 32, 32)``."""
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.flatten(self.pool(x)))


class VGGSmall(nn.Module):
    """A small VGG-style CIFAR-10 network: 64-64-M-128-128-M-256-256-M, then one linear layer.

    Every convolution is 3x3 with padding 1, followed by BN and ReLU; ``M`` is a 2x2 max
    pooling, so the classifier sees 256 x 4 x 4 features.
    """

    input_shape = (3, 32, 32)
    config: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, "M")

    def __init__(self, num_classes: int = 10):
        super().__init__()
        layers: list[nn.Module] = []
        channels = self.input_shape[0]
        for item in self.config:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                width = int(item)
                layers += [nn.Conv2d(channels, width, kernel_size=3, padding=1, bias=False),
                           nn.BatchNorm2d(width), nn.ReLU()]
                channels = width
        self.features = nn.Sequential(*layers)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(channels * 4 * 4, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape ``(N, num_classes)`` for images of shape ``(N, 3, 32, 32)``."""
        return self.fc(self.flatten(self.features(x)))


class CifarCNN(VGGSmall):
    """A narrow VGG-style CIFAR-10 network for fast bit-true sweeps: 16-16-M-32-32-M-64-M.

    About 7 M multiply-accumulates per image (VGGSmall has 150 M), so a design-space sweep of
    tens of points with a few hundred CIFAR-10 test images per point runs in minutes on a
    laptop. Same building blocks as :class:`VGGSmall` (3x3 conv, BN, ReLU, 2x2 max pooling),
    classifier on 64 x 4 x 4 features.
    """

    config = (16, 16, "M", 32, 32, "M", 64, "M")


class RowGRU(nn.Module):
    """A GRU classifier of row-sequential images: each image row is one time step.

    For 28x28 MNIST: 28 steps of 28 features into a one-layer ``nn.GRU`` with ``hidden``
    units (default 128), the last hidden state into a linear layer to ``num_classes``. The
    recurrent workload of the RTMobile block-pruning experiments (issue 10; TIMIT, which
    RTMobile uses, is licensed and not available offline).

    Its ``nn.GRU`` maps onto crossbars step by step (:mod:`mappers.recurrent`, docs/snn_rnn.md).
    """

    input_shape = (1, 28, 28)

    def __init__(self, num_classes: int = 10, hidden: int = 128):
        super().__init__()
        self.gru = nn.GRU(self.input_shape[2], hidden, batch_first=True)
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape ``(N, num_classes)`` for images of shape ``(N, 1, H, W)``."""
        rows = x.reshape(x.shape[0], x.shape[-2], x.shape[-1])  # (N, steps=H, features=W)
        _, last = self.gru(rows)
        return self.fc(last[-1])


#: Model constructors by the name a workload YAML uses in ``model:``. Each takes
#: ``num_classes`` and has an ``input_shape`` attribute.
MODELS: dict[str, Callable[..., nn.Module]] = {
    "digits_cnn": DigitsCNN,
    "lenet5": LeNet5,
    "resnet20": ResNet20,
    "vgg_small": VGGSmall,
    "cifar_cnn": CifarCNN,
    "row_gru": RowGRU,
    "spiking_lenet": SpikingLeNet,
    "spiking_cifar_cnn": SpikingCifarCNN,
    "lenet_bn": LeNetBN,
}


def model_input_shape(name: str) -> tuple[int, int, int]:
    """The ``(channels, height, width)`` a registered model expects."""
    return tuple(_lookup(name).input_shape)  # type: ignore[attr-defined]


def build_model(name: str, num_classes: int = 10) -> nn.Module:
    """A freshly initialized model from :data:`MODELS` (seed torch first for reproducibility).

    Raises:
        UserError: ``name`` is not a registered model; the message lists the valid names.
    """
    return _lookup(name)(num_classes=num_classes)


def _lookup(name: str) -> Callable[..., nn.Module]:
    try:
        return MODELS[name]
    except (KeyError, TypeError):
        raise UserError(f"unknown model {name!r}; choose one of "
                        f"{', '.join(sorted(MODELS))}") from None


@dataclass(frozen=True)
class ModelRef:
    """A parsed ``model:`` entry of a workload YAML.

    Attributes:
        text: the entry as written.
        builtin: the key of :data:`MODELS` when it names a shipped model, else ``None``.
        file: the absolute Python file of a ``file.py:Class`` reference, else ``None``.
        module: the module name of a ``package.module:Class`` reference, else ``None``.
        attribute: the class (or factory function) name after the colon; dotted names reach
            nested attributes (``Outer.Inner``).
    """

    text: str
    builtin: str | None = None
    file: Path | None = None
    module: str | None = None
    attribute: str = ""


def parse_model_ref(text: str, base_dir: Path | None = None) -> ModelRef:
    """Parse a ``model:`` entry: a :data:`MODELS` key, ``file.py:Class`` or ``module:Class``.

    A reference whose part before the last colon ends in ``.py`` or contains a path separator
    is a file, taken relative to ``base_dir`` (the YAML's folder) unless absolute.

    Raises:
        UserError: neither a shipped model nor a well-formed reference (says which forms
            are accepted).
    """
    if ":" not in text:
        if text in MODELS:
            return ModelRef(text=text, builtin=text)
        raise UserError(f"must be one of {', '.join(sorted(MODELS))}, or a model class of "
                        f"your own as path/to/file.py:Class or package.module:Class; got "
                        f"{text!r}")
    where, _, attribute = text.rpartition(":")
    if not where or not attribute or not all(p.isidentifier() for p in attribute.split(".")):
        raise UserError(f"{text!r} is not of the form path/to/file.py:Class or "
                        "package.module:Class (the part after the colon must be a Python name)")
    if where.endswith(".py") or "/" in where or "\\" in where:
        file = Path(where).expanduser()
        if not file.is_absolute():
            file = (base_dir if base_dir is not None else Path.cwd()) / file
        return ModelRef(text=text, file=file.resolve(), attribute=attribute)
    if not all(p.isidentifier() for p in where.split(".")):
        raise UserError(f"{where!r} in {text!r} is neither a Python file (ending in .py) nor a "
                        "dotted module name")
    return ModelRef(text=text, module=where, attribute=attribute)


def resolve_model(ref: ModelRef, base_dir: Path | None = None) -> Callable[..., nn.Module]:
    """The class (or factory) a :class:`ModelRef` names, importing its file or module.

    A file is imported once per content (its SHA-256 names the module in ``sys.modules``), with
    its own folder on ``sys.path`` during the import so it can import its neighbours. A
    module is imported with ``base_dir`` (the YAML's folder) searched first.

    Raises:
        UserError: the file is missing, its import fails (the message quotes the exception
            and the line of the user's file where it happened), or it has no such attribute.
    """
    if ref.builtin is not None:
        return MODELS[ref.builtin]
    if ref.file is not None:
        if not ref.file.is_file():
            raise UserError(f"model file not found: {ref.file}")
        module = _import_file(ref.file)
        origin = str(ref.file)
    else:
        module = _import_module(str(ref.module), base_dir)
        origin = f"module {ref.module}"
    obj: object = module
    for part in ref.attribute.split("."):
        if not hasattr(obj, part):
            names = sorted(n for n, v in vars(module).items()
                           if isinstance(v, type) and issubclass(v, nn.Module)
                           and v.__module__ == module.__name__)
            raise UserError(f"{origin} has no {ref.attribute!r}; nn.Module classes defined "
                            f"there: {', '.join(names) or '(none)'}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise UserError(f"{ref.attribute!r} in {origin} is not a class or function")
    return obj  # type: ignore[return-value]


def _import_file(path: Path):
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    name = f"imcsim_user_model_{path.stem}_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UserError(f"cannot import {path}: not a Python source file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # before executing: dataclasses and pickling look it up
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - any error in the user's file is theirs to fix
        del sys.modules[name]
        raise UserError(f"importing {path} failed: {_where(exc, path)}") from None
    finally:
        _remove_path(str(path.parent))
    return module


def _import_module(name: str, base_dir: Path | None):
    folder = str(base_dir) if base_dir is not None else None
    if folder is not None:
        sys.path.insert(0, folder)
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
            searched = f" (searched {folder} and sys.path)" if folder else ""
            raise UserError(f"no module named {exc.name!r}{searched}") from None
        raise UserError(f"importing module {name} failed: {_where(exc, None)}") from None
    except Exception as exc:  # noqa: BLE001 - any error in the user's module is theirs
        raise UserError(f"importing module {name} failed: {_where(exc, None)}") from None
    finally:
        if folder is not None:
            _remove_path(folder)


def _remove_path(folder: str) -> None:
    try:
        sys.path.remove(folder)
    except ValueError:  # the user's code took it off already
        pass


def _where(exc: BaseException, path: Path | None) -> str:
    """``Type: message (file, line N)`` for the innermost frame in the user's code."""
    frames = traceback.extract_tb(exc.__traceback__)
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"SyntaxError: {exc.msg} ({exc.filename}, line {exc.lineno})"
    user = [f for f in frames if path is None or Path(f.filename) == path]
    user = [f for f in user if "importlib" not in f.filename] or user
    at = f" ({user[-1].filename}, line {user[-1].lineno})" if user else ""
    return f"{type(exc).__name__}: {exc}{at}"
