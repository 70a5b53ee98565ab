"""Coupled structured pruning (``structured.channels_with``): one layer's kept filters are the
next layer's kept channels, chosen jointly (the CAP-RAM ResNet-20 recipe needs it: pruned
independently, a block's second convolution read 1 of the 16 channels its first one computed).
"""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from mappers.compress import Compressor, Structured, fit, parse_compression
from mappers.compress.projections import coupled_keep
from sim.errors import ConfigError
from workloads.models import DigitsCNN


def rand(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g)


def _kept_filters(w):
    return set(torch.nonzero(w.reshape(w.shape[0], -1).ne(0).any(1)).flatten().tolist())


def _kept_channels(w):
    return set(torch.nonzero(w.transpose(0, 1).reshape(w.shape[1], -1).ne(0).any(1)).flatten()
               .tolist())


def test_coupled_keep_is_the_nearest_set_among_all_candidates():
    prod, cons = rand(6, 3, 3, 3, seed=1), [rand(5, 6, 3, 3, seed=2), rand(4, 6, 1, 1, seed=3)]
    k = 3
    got = coupled_keep(prod, cons, k)

    def removed(kept):
        drop = [c for c in range(6) if c not in kept]
        return float(prod[drop].pow(2).sum() + sum(c[:, drop].pow(2).sum() for c in cons))

    best = min(itertools.combinations(range(6), k), key=removed)
    assert removed(got) == pytest.approx(removed(best), abs=1e-9)
    assert len(got) == k


def test_structured_with_fixed_sets_keeps_them_and_prunes_the_free_axis_by_norm():
    w = rand(8, 6, 3, 3)
    p = Structured(2.0, "both", channels=(0, 4, 5)).project(w)
    assert _kept_channels(p) == {0, 4, 5}
    assert len(_kept_filters(p)) == 4
    assert Structured(2.0, "both", channels=(0, 4, 5)).satisfied(p)
    assert not Structured(2.0, "both", channels=(0, 1, 2)).satisfied(p)
    assert torch.equal(Structured(2.0, "both", channels=(0, 4, 5)).project(p), p)
    # without fixed sets, the projection is the former one (filters, then channels)
    free = Structured(2.0, "both").project(w)
    f = Structured(2.0, "filter").project(w)
    assert torch.equal(free, Structured(2.0, "channel").project(f))


class Block(nn.Module):
    """Two convolutions in a row, like a ResNet basic block's conv1 -> conv2."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)

    def forward(self, x):
        return self.conv2(torch.relu(self.conv1(x)))


def _spec(coupled=True, rate2=2.0, axis2="both", axis1="both"):
    s2 = {"rate": rate2, "axis": axis2}
    if coupled:
        s2["channels_with"] = "conv1"
    return {"layers": {"conv1": {"structured": {"rate": 2.0, "axis": axis1}},
                       "conv2": {"structured": s2}}}


def test_coupled_projection_keeps_one_set_for_filters_and_next_channels():
    torch.manual_seed(0)
    net = Block()
    with torch.no_grad():  # make the independent choices disagree
        net.conv1.weight[:4] *= 3
        net.conv2.weight[:, 4:] *= 3
    for coupled in (False, True):
        comp = Compressor(net, parse_compression(_spec(coupled), Block()))
        z = comp.project_targets({t.key: t.param for t in comp.targets})
        filt, chan = _kept_filters(z["conv1.weight"]), _kept_channels(z["conv2.weight"])
        assert len(filt) == 4 and len(chan) == 4
        if coupled:
            assert filt == chan
        else:
            assert filt == {0, 1, 2, 3} and chan == {4, 5, 6, 7}
    # the cause moves the output: enlarging conv2's channel 7 moves the shared set to it
    comp = Compressor(net, parse_compression(_spec(), Block()))
    before = _kept_filters(comp.project_targets({t.key: t.param for t in comp.targets})
                           ["conv1.weight"])
    values = {t.key: t.param.detach().clone() for t in comp.targets}
    (dropped,) = [c for c in range(8) if c not in before][:1]
    values["conv2.weight"][:, dropped] *= 100
    after = comp.project_targets(values)
    assert dropped in _kept_filters(after["conv1.weight"])
    assert _kept_filters(after["conv1.weight"]) == _kept_channels(after["conv2.weight"])


def test_check_reports_a_broken_coupling():
    net = Block()
    comp = Compressor(net, parse_compression(_spec(), Block()))
    z = comp.project_targets({t.key: t.param for t in comp.targets})
    with torch.no_grad():
        for t in comp.targets:
            t.param.copy_(z[t.key])
    for t in comp.targets:
        assert all(comp.check(t, t.param).values())
    with torch.no_grad():  # keep a channel of conv2 whose filter conv1 pruned
        dead = min(set(range(8)) - _kept_filters(net.conv1.weight))
        net.conv2.weight[0, dead] = 1.0
    t2 = comp.targets[1]
    assert comp.check(t2, t2.param)["channels_with"] is False


def test_coupling_survives_freezing_fine_tuning_and_resume_state():
    from workloads.datasets import load_dataset

    x, y = load_dataset("digits", "train")
    xt, yt = load_dataset("digits", "test")
    data = {"x_train": x[:128], "y_train": y[:128], "x_test": xt[:64], "y_test": yt[:64]}
    spec = parse_compression({
        "admm": {"epochs": 1, "rho": 0.01, "updates_per_epoch": 2},
        "finetune": {"epochs": 1},
        "train": {"batch_size": 64, "lr": 0.001, "optimizer": "adam", "seed": 3},
        "layers": {"conv1": {"structured": {"rate": 2, "axis": "filter"},
                             "quantize": {"bits": 3, "scale": "fit"}},
                   "conv2": {"structured": {"rate": 2, "axis": "both",
                                            "channels_with": "conv1"}}}}, DigitsCNN())
    torch.manual_seed(0)
    model = DigitsCNN()
    fit(model, spec, data, seed=3, progress=False)
    filt, chan = _kept_filters(model.conv1.weight), _kept_channels(model.conv2.weight)
    assert len(filt | chan) <= 8 and len(chan) >= 6  # one set of 8 channels, not two
    assert len(_kept_filters(model.conv2.weight)) <= 16
    comp = Compressor(model, spec)
    comp.freeze()
    state = comp.frozen_state()
    other = Compressor(model, spec)
    other.load_frozen_state(state)
    for t in comp.targets:
        assert torch.equal(comp.project_frozen(t, t.param),
                           other.project_frozen(t, t.param))
    s = [p for p in other.frozen["conv2.weight"][0] if isinstance(p, Structured)][0]
    assert s.channels is not None and set(s.channels) >= chan


@pytest.mark.parametrize("spec,path,words", [
    (_spec(rate2=4.0), "layers.conv2.structured.channels_with", "counts must be equal"),
    (_spec(axis2="filter"), "layers.conv2.structured.axis", "channel"),
    (_spec(axis1="channel"), "layers.conv1.structured.axis", "filter"),
    ({"layers": {"conv2": {"structured": {"rate": 2, "axis": "both",
                                          "channels_with": "conv1"}}}},
     "layers.conv2.structured.channels_with", "structured"),
    ({"layers": {"conv1": {"structured": {"rate": 2, "axis": "both",
                                          "channels_with": "conv1"}}}},
     "layers.conv1.structured.channels_with", "own"),
])
def test_bad_couplings_are_reported_with_their_paths(spec, path, words):
    with pytest.raises(ConfigError) as err:
        parse_compression(spec, Block())
    problems = dict(err.value.problems)
    assert path in problems and words in problems[path]


def test_mismatched_channel_counts_are_reported():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 8, 3)
            self.conv2 = nn.Conv2d(6, 4, 3)

    with pytest.raises(ConfigError) as err:
        parse_compression({"layers": {
            "conv1": {"structured": {"rate": 2}},
            "conv2": {"structured": {"rate": 2, "axis": "channel",
                                     "channels_with": "conv1"}}}}, Net())
    assert "8 filters" in dict(err.value.problems)["layers.conv2.structured.channels_with"]


def test_a_grouped_consumer_is_refused_not_crashed():
    """A depthwise convolution has one input channel per weight: coupling it to a producer's
    8 filters is a config error naming the layers, not an IndexError in the projection."""
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 8, 3)
            self.conv2 = nn.Conv2d(8, 8, 3, groups=8)

    with pytest.raises(ConfigError) as err:
        parse_compression({"layers": {
            "conv1": {"structured": {"rate": 2}},
            "conv2": {"structured": {"rate": 2, "axis": "channel",
                                     "channels_with": "conv1"}}}}, Net())
    msg = dict(err.value.problems)["layers.conv2.structured.channels_with"]
    assert "8 filters" in msg and "1 input channels per weight" in msg
