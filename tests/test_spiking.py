"""Spiking neurons, encoders and reversible spiking blocks (workloads/spiking.py)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from workloads.spiking import (
    ATanSpike,
    IFNode,
    LIFNode,
    RateEncoder,
    ReversibleSpikingBlock,
    RevSpikingNet,
    SpikingLeNet,
    membrane_trace,
    multistep_neuron,
)


def _slow_neuron(x_seq, tau, v_th):
    """Per-element Python loop of the IF/LIF equations (the module docstring's oracle)."""
    t_steps = len(x_seq)
    flat = [s.reshape(-1).tolist() for s in x_seq]
    out = [[0.0] * len(flat[0]) for _ in range(t_steps)]
    for i in range(len(flat[0])):
        v = 0.0
        for t in range(t_steps):
            h = v + flat[t][i] if not tau else v + (flat[t][i] - v) / tau
            s = 1.0 if h >= v_th else 0.0
            v = 0.0 if s else h
            out[t][i] = s
    return torch.tensor(out, dtype=torch.float64).reshape(x_seq.shape)


@pytest.mark.parametrize("tau", [0.0, 2.0, 5.0])
def test_neuron_matches_slow_loop(tau):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(5, 3, 7, generator=g, dtype=torch.float64) * 1.5
    s = multistep_neuron(x.reshape(15, 7), 5, tau, 1.0, 2.0).reshape(5, 3, 7)
    assert torch.equal(s, _slow_neuron(x, tau, 1.0))
    h, s2 = membrane_trace(x.reshape(15, 7), 5, tau, 1.0)
    assert torch.equal(s2, s)


def test_lif_leaks_and_if_does_not():
    x = torch.full((6, 1), 0.4, dtype=torch.float64)  # 6 steps, one neuron
    if_spikes = IFNode(6)(x)
    lif_spikes = LIFNode(6, tau=2.0)(x)
    # IF integrates 0.4 per step: fires at steps 3 and 6 (1.2 >= 1); LIF converges to 0.4.
    assert if_spikes.reshape(-1).tolist() == [0, 0, 1, 0, 0, 1]
    assert lif_spikes.sum() == 0
    with pytest.raises(ValueError):
        LIFNode(4, tau=1.0)


def test_atan_surrogate_gradient():
    u = torch.tensor([-1.0, 0.0, 0.5], requires_grad=True)
    s = ATanSpike.apply(u, 2.0)
    assert s.tolist() == [0.0, 1.0, 1.0]
    s.sum().backward()
    want = [1.0 / (1 + (math.pi * v) ** 2) for v in (-1.0, 0.0, 0.5)]
    assert torch.allclose(u.grad, torch.tensor(want))


def test_rate_encoding_seeded_and_follows_intensity():
    x = torch.tensor([[0.0, 0.25, 1.0]]).repeat(200, 1)
    enc = RateEncoder(8, seed=3).eval()
    a = enc(x)
    assert torch.equal(a, enc(x))  # same seed and batch: same spikes, whatever came before
    assert not torch.equal(RateEncoder(8, seed=4).eval()(x), a)  # another seed: other spikes
    rates = a.mean(0)
    assert rates[0] == 0 and rates[2] == 1 and abs(float(rates[1]) - 0.25) < 0.03
    assert set(a.unique().tolist()) <= {0.0, 1.0}


def test_spiking_lenet_trains_one_step():
    torch.manual_seed(0)
    for encoding in ("direct", "rate"):
        m = SpikingLeNet(time_steps=3, encoding=encoding)
        x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
        loss = F.cross_entropy(m(x), y)
        loss.backward()
        assert m(x).shape == (8, 10)
        # the surrogate carries gradient through every layer to the first convolution
        assert m.conv1.weight.grad.abs().sum() > 0


# ----------------------------------------------------------------------------- reversible
def test_reversible_inverse_exact():
    torch.manual_seed(0)
    block = ReversibleSpikingBlock(8, time_steps=4).double().eval()
    for m in block.modules():  # non-trivial batch-norm statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    x = torch.randn(4 * 3, 8, 6, 6, dtype=torch.float64) * 2
    y = block(x)
    assert not torch.allclose(y, x)
    assert torch.allclose(block.inverse(y), x, rtol=0, atol=1e-12)
    xf = x.float()
    assert torch.allclose(block.float().inverse(block(xf)), xf, rtol=0, atol=1e-5)


@pytest.mark.parametrize("neuron", ["lif", "if"])
def test_reversible_gradients_equal_standard(neuron):
    torch.manual_seed(0)
    kw = dict(width=16, depth=3, time_steps=3, neuron=neuron, in_channels=3)
    rev = RevSpikingNet(reversible=True, **kw).double().train()
    std = RevSpikingNet(reversible=False, **kw).double().train()
    std.load_state_dict(rev.state_dict())
    x = torch.randn(4, 3, 10, 10, dtype=torch.float64) * 2
    y = torch.randint(0, 10, (4,))
    losses = []
    for m in (rev, std):
        m.zero_grad()
        loss = F.cross_entropy(m(x), y)
        loss.backward()
        losses.append(float(loss.detach()))
    assert losses[0] == losses[1]
    grads = 0
    for (name, p), (_, q) in zip(rev.named_parameters(), std.named_parameters(), strict=True):
        assert torch.allclose(p.grad, q.grad, rtol=1e-9, atol=1e-12), name
        grads += int(p.grad.abs().sum() > 0)
    assert grads > 10  # gradients reach the blocks' convolutions, not just the classifier
    # batch-norm running statistics are updated once, as the standard network's
    for (name, a), (_, b) in zip(rev.named_buffers(), std.named_buffers(), strict=True):
        assert torch.equal(a, b), name


def test_reversible_stores_only_outputs():
    """The reversible sequence saves no activations of its blocks for backward."""
    torch.manual_seed(0)
    saved = {}
    for rev in (True, False):
        m = RevSpikingNet(width=16, depth=4, time_steps=2, reversible=rev).train()
        x = torch.randn(2, 3, 8, 8)
        total = [0]

        def pack(t, total=total):
            total[0] += t.numel() * t.element_size()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = m(x).sum()  # what the forward pass keeps for backward
        out.backward()
        saved[rev] = total[0]
    assert saved[True] * 5 < saved[False]
