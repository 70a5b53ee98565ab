"""A user's own model for imcsim: a small residual CNN with ReLU6, for 12x12 digit images.

Nothing here knows about imcsim: any ``torch.nn.Module`` whose matrix products are
``nn.Conv2d`` and ``nn.Linear`` modules can be simulated. ``my_model_digits.yaml`` names it
as ``model: my_model.py:SmallResNet`` with its constructor arguments under ``model_args``.
"""

from __future__ import annotations

import torch
from torch import nn


class SmallResNet(nn.Module):
    """conv 3x3 (``width``) + BN + ReLU6, one residual block, max pool, linear classifier.

    Args:
        width: channels of every convolution.
        num_classes: outputs of the classifier.
    """

    #: Optional: lets imcsim check the workload's (preprocessed) data set shape up front.
    input_shape = (1, 12, 12)

    def __init__(self, width: int = 16, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU6())
        self.block = nn.Sequential(nn.Conv2d(width, width, 3, padding=1, bias=False),
                                   nn.BatchNorm2d(width), nn.ReLU6(),
                                   nn.Conv2d(width, width, 3, padding=1, bias=False),
                                   nn.BatchNorm2d(width))
        self.act = nn.ReLU6()
        self.pool = nn.MaxPool2d(3)
        self.classifier = nn.Linear(width * 4 * 4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, num_classes)`` for inputs ``(N, 1, 12, 12)``."""
        x = self.stem(x)
        x = self.act(x + self.block(x))
        return self.classifier(self.pool(x).flatten(1))
