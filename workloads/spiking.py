"""Spiking neurons, input encoders and spiking CNNs, trained with surrogate gradients.

Tensors of a spiking model keep time folded into the batch: a sequence of ``T`` time steps
of a batch of ``B`` is one tensor of ``T x B`` rows, time step major (rows ``t*B .. t*B+B-1``
are step ``t``). So every ``nn.Conv2d``, ``nn.Linear``, batch norm and pooling layer sees an
ordinary 4-D (or 2-D) tensor and the torch bridge maps it unchanged; only the neurons look at
the time axis. Each call of a model is one whole sequence: neurons start at rest (membrane
0) every forward pass, so there is no state to reset between batches.

Neurons (:func:`multistep_neuron`, the modules :class:`IFNode` and :class:`LIFNode`): per step

    h[t] = v[t-1] + x[t]                        (IF, integrate)
    h[t] = v[t-1] + (x[t] - v[t-1]) / tau       (LIF, leak towards 0 then integrate)
    s[t] = H(h[t] - v_threshold)                (spike: Heaviside)
    v[t] = h[t] * (1 - s[t])                    (hard reset to 0)

with the Heaviside step's gradient replaced by the ATan surrogate
``alpha / 2 / (1 + (pi/2 * alpha * u)^2)`` (Fang et al., ICCV 2021; SpikingJelly's default),
and the reset detached from the graph (``detach_reset``), as RevSNN's nodes use.

Encoders: ``direct`` feeds the analog image to the first layer, which runs once and whose
output is repeated over the ``T`` steps (the first layer is then an ordinary multi-bit layer
on the hardware); ``rate`` turns each pixel intensity in ``[0, 1]`` into Bernoulli spikes at
every step (then every layer, the first included, is driven by spikes). Rate coding draws
from a generator seeded by the module's ``seed`` in eval mode (same seed and batch, same
spikes), from torch's global generator in training.

:func:`multistep_neuron` and :func:`rate_encode` are leaves for ``torch.fx`` (``torch.fx.wrap``)
and carry ``imcsim_kind`` so the bridge's layer graph sees one ``neuron`` node per neuron
layer (digital membrane update and threshold, costed by the engine's neuron component).
"""

from __future__ import annotations

import math

import torch
import torch.fx
from torch import nn


class ATanSpike(torch.autograd.Function):
    """Heaviside step forward; ATan surrogate gradient backward."""

    @staticmethod
    def forward(ctx, u: torch.Tensor, alpha: float) -> torch.Tensor:  # noqa: D102
        ctx.save_for_backward(u)
        ctx.alpha = alpha
        return (u >= 0).to(u.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: D102
        (u,) = ctx.saved_tensors
        a = ctx.alpha
        return grad * (a / 2) / (1 + (math.pi / 2 * a * u) ** 2), None


def multistep_neuron(x: torch.Tensor, time_steps: int, tau: float, v_threshold: float,
                     alpha: float) -> torch.Tensor:
    """Spikes ``(T*B, ...)`` of IF or LIF neurons driven by the input currents ``x``.

    ``x`` holds ``time_steps`` steps folded into its first dimension (module docstring).
    ``tau`` 0 means IF (no leak); otherwise LIF with time constant ``tau`` (> 1).
    """
    seq = x.reshape(time_steps, x.shape[0] // time_steps, *x.shape[1:])
    v = torch.zeros_like(seq[0])
    out = []
    for t in range(time_steps):
        h = v + seq[t] if not tau else v + (seq[t] - v) / tau
        s = ATanSpike.apply(h - v_threshold, alpha)
        v = h * (1.0 - s.detach())
        out.append(s)
    return torch.cat(out, dim=0)


def membrane_trace(x: torch.Tensor, time_steps: int, tau: float, v_threshold: float
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Membrane after integration ``h`` and spikes ``s``, both ``(T, B, ...)`` (no grad), for
    tests and the hardware's digital neuron reference."""
    with torch.no_grad():
        seq = x.reshape(time_steps, x.shape[0] // time_steps, *x.shape[1:])
        v = torch.zeros_like(seq[0])
        hs, ss = [], []
        for t in range(time_steps):
            h = v + seq[t] if not tau else v + (seq[t] - v) / tau
            s = (h >= v_threshold).to(h.dtype)
            v = h * (1.0 - s)
            hs.append(h)
            ss.append(s)
        return torch.stack(hs), torch.stack(ss)


multistep_neuron.imcsim_kind = "neuron"  # type: ignore[attr-defined]
torch.fx.wrap("multistep_neuron")


class _Neuron(nn.Module):
    """A layer of multi-step spiking neurons (see :func:`multistep_neuron`)."""

    tau: float = 0.0

    def __init__(self, time_steps: int, v_threshold: float = 1.0, alpha: float = 2.0):
        super().__init__()
        self.time_steps = int(time_steps)
        self.v_threshold = float(v_threshold)
        self.alpha = float(alpha)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Spikes (0/1, ``x``'s shape) of the ``T x B`` folded input currents ``x``."""
        return multistep_neuron(x, self.time_steps, self.tau, self.v_threshold, self.alpha)

    def extra_repr(self) -> str:  # noqa: D102
        return f"T={self.time_steps}, tau={self.tau}, v_threshold={self.v_threshold}"


class IFNode(_Neuron):
    """Integrate-and-fire neurons: no leak, hard reset to 0, ATan surrogate."""


class LIFNode(_Neuron):
    """Leaky integrate-and-fire neurons with time constant ``tau`` (default 2)."""

    def __init__(self, time_steps: int, tau: float = 2.0, v_threshold: float = 1.0,
                 alpha: float = 2.0):
        super().__init__(time_steps, v_threshold, alpha)
        if tau <= 1.0:
            raise ValueError(f"LIF tau must be above 1, got {tau}")
        self.tau = float(tau)


def repeat_steps(x: torch.Tensor, time_steps: int) -> torch.Tensor:
    """Direct encoding: the same input at every step, folded ``(T*B, ...)``."""
    return x.repeat(time_steps, *([1] * (x.dim() - 1)))


def rate_encode(x: torch.Tensor, time_steps: int, seed: int, call: int) -> torch.Tensor:
    """Bernoulli spikes ``(T*B, ...)`` firing with probability ``clamp(x, 0, 1)`` per step.

    ``seed >= 0``: drawn from a generator seeded with ``(seed, call)``, reproducible;
    ``seed < 0``: from torch's global generator (training).
    """
    p = x.clamp(0.0, 1.0).repeat(time_steps, *([1] * (x.dim() - 1)))
    if seed < 0:
        return torch.bernoulli(p)
    gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(call))
    return (torch.rand(p.shape, generator=gen, dtype=p.dtype) < p).to(p.dtype)


torch.fx.wrap("repeat_steps")
torch.fx.wrap("rate_encode")


def time_mean(x: torch.Tensor, time_steps: int) -> torch.Tensor:
    """Mean over the ``T`` steps of a folded ``(T*B, ...)`` tensor: ``(B, ...)``."""
    return x.reshape(time_steps, x.shape[0] // time_steps, *x.shape[1:]).mean(0)


torch.fx.wrap("time_mean")


class RateEncoder(nn.Module):
    """Rate coding of inputs in ``[0, 1]`` (see :func:`rate_encode`).

    In eval mode every call draws from a generator seeded with ``seed`` alone (frozen noise):
    the spikes are a fixed function of the batch, so the float model and its hardware copy,
    however often each was called before (calibration, coverage), see the same spikes. In
    training the draws come from torch's global generator.
    """

    def __init__(self, time_steps: int, seed: int = 0):
        super().__init__()
        self.time_steps = int(time_steps)
        self.seed = int(seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return rate_encode(x, self.time_steps, -1 if self.training else self.seed, 0)


def _neuron(kind: str, time_steps: int, tau: float) -> nn.Module:
    if kind == "relu":  # the equivalent ANN (LeNetBN)
        return nn.ReLU()
    if kind == "if":
        return IFNode(time_steps)
    if kind == "lif":
        return LIFNode(time_steps, tau=tau)
    raise ValueError(f"neuron must be 'if', 'lif' or 'relu', got {kind!r}")


class SpikingLeNet(nn.Module):
    """A LeNet-style spiking CNN for 28x28 MNIST / Fashion-MNIST.

    conv 16@5x5 pad 2 + BN, neurons, maxpool 2, conv 32@5x5 + BN, neurons, maxpool 2,
    fc 800 -> 128, neurons, fc 128 -> ``num_classes``; logits are the classifier's output
    averaged over the ``time_steps`` steps. ``encoding``: ``direct`` (the first convolution
    runs once on the analog image and its output is repeated over time) or ``rate``
    (Bernoulli spikes drive every layer). ``neuron``: ``lif`` (tau ``tau``) or ``if``.
    """

    input_shape = (1, 28, 28)

    def __init__(self, num_classes: int = 10, time_steps: int = 4, neuron: str = "lif",
                 tau: float = 2.0, encoding: str = "direct", seed: int = 0):
        super().__init__()
        if encoding not in ("direct", "rate"):
            raise ValueError(f"encoding must be 'direct' or 'rate', got {encoding!r}")
        self.time_steps = t = int(time_steps)
        self.encoding = encoding
        self.encoder = RateEncoder(t, seed) if encoding == "rate" else None
        self.conv1 = nn.Conv2d(1, 16, kernel_size=5, padding=2, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.sn1 = _neuron(neuron, t, tau)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(16, 32, kernel_size=5, bias=False)
        self.bn2 = nn.BatchNorm2d(32)
        self.sn2 = _neuron(neuron, t, tau)
        self.pool2 = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(32 * 5 * 5, 128)
        self.sn3 = _neuron(neuron, t, tau)
        self.fc2 = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, num_classes)`` of images ``(N, 1, 28, 28)``."""
        if self.encoder is not None:
            x = self.bn1(self.conv1(self.encoder(x)))
        else:
            x = repeat_steps(self.bn1(self.conv1(x)), self.time_steps)
        x = self.pool1(self.sn1(x))
        x = self.pool2(self.sn2(self.bn2(self.conv2(x))))
        x = self.sn3(self.fc1(self.flatten(x)))
        return time_mean(self.fc2(x), self.time_steps)


class LeNetBN(SpikingLeNet):
    """The ANN with :class:`SpikingLeNet`'s architecture: the same convolutions, batch norm,
    pooling and linear layers, ReLU in place of the neurons, one time step (the baseline the
    spiking network's energy, latency and accuracy are compared with)."""

    def __init__(self, num_classes: int = 10):
        super().__init__(num_classes, time_steps=1, neuron="relu", encoding="direct")


class SpikingCifarCNN(nn.Module):
    """A small spiking VGG-style CIFAR-10 CNN: 32-M-64-M-128-M, fc 2048 -> 10, direct coding.

    Each conv 3x3 pad 1 + BN + LIF neurons; the first convolution runs once on the image and
    its output is repeated over ``time_steps`` steps.
    """

    input_shape = (3, 32, 32)

    def __init__(self, num_classes: int = 10, time_steps: int = 4, neuron: str = "lif",
                 tau: float = 2.0):
        super().__init__()
        self.time_steps = t = int(time_steps)
        self.conv1 = nn.Conv2d(3, 32, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.sn1 = _neuron(neuron, t, tau)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.sn2 = _neuron(neuron, t, tau)
        self.pool2 = nn.MaxPool2d(2)
        self.conv3 = nn.Conv2d(64, 128, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(128)
        self.sn3 = _neuron(neuron, t, tau)
        self.pool3 = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(128 * 4 * 4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, num_classes)`` of images ``(N, 3, 32, 32)``."""
        x = repeat_steps(self.bn1(self.conv1(x)), self.time_steps)
        x = self.pool1(self.sn1(x))
        x = self.pool2(self.sn2(self.bn2(self.conv2(x))))
        x = self.pool3(self.sn3(self.bn3(self.conv3(x))))
        return time_mean(self.fc(self.flatten(x)), self.time_steps)


# ----------------------------------------------------------------------- reversible blocks
def _bn_state(modules) -> list[tuple[nn.Module, list[torch.Tensor]]]:
    return [(m, [m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone()])
            for m in modules if isinstance(m, nn.modules.batchnorm._BatchNorm)
            and m.track_running_stats and m.running_mean is not None]


def _bn_restore(saved) -> None:
    with torch.no_grad():
        for m, (mean, var, count) in saved:
            m.running_mean.copy_(mean)
            m.running_var.copy_(var)
            m.num_batches_tracked.copy_(count)


class SpikingBranch(nn.Module):
    """``F`` or ``G`` of a reversible spiking block (RevSNN's): neurons, 3x3 conv + BN,
    neurons, 3x3 conv + BN, on ``channels`` channels, shape preserving."""

    def __init__(self, channels: int, time_steps: int, neuron: str = "lif", tau: float = 2.0):
        super().__init__()
        self.sn1 = _neuron(neuron, time_steps, tau)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.sn2 = _neuron(neuron, time_steps, tau)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.bn2(self.conv2(self.sn2(self.bn1(self.conv1(self.sn1(x))))))


class ReversibleSpikingBlock(nn.Module):
    """``y1 = x1 + F(x2)``, ``y2 = x2 + G(y1)`` on the two channel halves of ``x``.

    :meth:`forward` is the ordinary (stored-activation) computation; :meth:`inverse`
    reconstructs the input from the output; :meth:`backward_pass` recomputes ``F`` and ``G``
    (activations and membrane potentials) from the output to give the input and its gradient,
    which :class:`ReversibleSequence` uses instead of storing anything.
    """

    def __init__(self, channels: int, time_steps: int, neuron: str = "lif", tau: float = 2.0):
        super().__init__()
        if channels % 2:
            raise ValueError(f"a reversible block needs an even channel count, got {channels}")
        half = channels // 2
        self.f = SpikingBranch(half, time_steps, neuron, tau)
        self.g = SpikingBranch(half, time_steps, neuron, tau)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        x1, x2 = x.chunk(2, dim=1)
        y1 = x1 + self.f(x2)
        y2 = x2 + self.g(y1)
        return torch.cat([y1, y2], dim=1)

    @torch.no_grad()
    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        """The input whose output is ``y``: ``x2 = y2 - G(y1)``, ``x1 = y1 - F(x2)``."""
        y1, y2 = y.chunk(2, dim=1)
        x2 = y2 - self.g(y1)
        x1 = y1 - self.f(x2)
        return torch.cat([x1, x2], dim=1)

    def backward_pass(self, y: torch.Tensor, dy: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, dL/dx)`` from the output ``y`` and ``dL/dy``; accumulates the parameters'
        gradients. ``G`` and ``F`` are recomputed (membranes included) with their batch-norm
        running statistics left as the forward pass set them."""
        y1, y2 = y.chunk(2, dim=1)
        dy1, dy2 = dy.chunk(2, dim=1)
        saved = _bn_state(self.modules())
        with torch.enable_grad():
            y1_ = y1.detach().requires_grad_(True)
            gy1 = self.g(y1_)
            gy1.backward(dy2)
        with torch.no_grad():
            x2 = y2 - gy1
            dx1 = dy1 + y1_.grad
        with torch.enable_grad():
            x2_ = x2.detach().requires_grad_(True)
            fx2 = self.f(x2_)
            fx2.backward(dx1)
        _bn_restore(saved)
        with torch.no_grad():
            x1 = y1 - fx2
            dx2 = dy2 + x2_.grad
        return torch.cat([x1, x2], dim=1), torch.cat([dx1, dx2], dim=1)


class _ReversibleFunction(torch.autograd.Function):
    """Runs blocks without storing activations; backward rebuilds them from the output."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, blocks: nn.ModuleList, *params: torch.Tensor):  # noqa: D102
        with torch.no_grad():
            for block in blocks:
                x = block(x)
        ctx.blocks = blocks
        ctx.save_for_backward(x)
        return x

    @staticmethod
    def backward(ctx, dy: torch.Tensor):  # noqa: D102
        (y,) = ctx.saved_tensors
        for block in reversed(ctx.blocks):
            y, dy = block.backward_pass(y, dy)
        return (dy, None) + (None,) * len(tuple(p for b in ctx.blocks for p in b.parameters()))


class ReversibleSequence(nn.Module):
    """Reversible spiking blocks in a row. ``reversible=True`` (training): the custom autograd
    function stores only the sequence's output; ``False``: ordinary autograd (the reference
    the tests and ``bench/bench_revsnn.py`` compare against)."""

    def __init__(self, blocks: list[ReversibleSpikingBlock], reversible: bool = True):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.reversible = reversible

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if self.reversible and torch.is_grad_enabled() and self.training:
            params = [p for p in self.parameters()]
            return _ReversibleFunction.apply(x, self.blocks, *params)
        for block in self.blocks:
            x = block(x)
        return x


class RevSpikingNet(nn.Module):
    """A reversible spiking CNN: stem conv 3x3 + BN (direct coding, repeated over ``T``),
    ``depth`` reversible spiking blocks of ``width`` channels, neurons, global average pool,
    linear classifier, logits averaged over time. ``reversible=False`` gives the same network
    with stored activations (identical function and gradients)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: int = 32,
                 depth: int = 4, time_steps: int = 4, neuron: str = "lif", tau: float = 2.0,
                 reversible: bool = True):
        super().__init__()
        self.time_steps = time_steps
        self.stem = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        self.blocks = ReversibleSequence(
            [ReversibleSpikingBlock(width, time_steps, neuron, tau) for _ in range(depth)],
            reversible=reversible)
        self.sn = _neuron(neuron, time_steps, tau)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        x = repeat_steps(self.bn(self.stem(x)), self.time_steps)
        x = self.blocks(x)
        x = self.flatten(self.pool(self.sn(x)))
        return time_mean(self.fc(x), self.time_steps)
