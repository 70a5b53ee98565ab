"""Hand-written PyTorch models of the workloads imcsim maps onto IMC hardware.

Every model is built only from ``nn.Conv2d``, ``nn.Linear``, ``nn.BatchNorm2d``, ``nn.ReLU``,
pooling and flatten, each layer its own module (no functional convolutions, no in-place
ReLUs), so the torch bridge in :mod:`mappers` can find every matrix product by walking
``named_modules()`` and swap the ``Conv2d``/``Linear`` modules for hardware-backed ones.

Each model class carries ``input_shape`` (channels, height, width) so a workload can be
checked against its data set before anything runs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from sim.errors import UserError


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


#: Model constructors by the name a workload YAML uses in ``model:``. Each takes
#: ``num_classes`` and has an ``input_shape`` attribute.
MODELS: dict[str, Callable[..., nn.Module]] = {
    "digits_cnn": DigitsCNN,
    "lenet5": LeNet5,
    "resnet20": ResNet20,
    "vgg_small": VGGSmall,
    "cifar_cnn": CifarCNN,
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
