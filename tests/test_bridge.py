"""The torch bridge: batch-norm folding, quantized products through crossbars, clear errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mappers import QuantRecipe, fold_batchnorm, map_model
from mappers.quantize import quantize_weights
from sim.errors import MappingError


def _bn_model() -> nn.Module:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                      nn.Conv2d(4, 6, 3, stride=2, bias=False), nn.BatchNorm2d(6), nn.ReLU(),
                      nn.Flatten(), nn.Linear(6 * 3 * 3, 5)).eval()
    for bn in (m[1], m[4]):  # non-trivial statistics so folding matters
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.3, 0.3)
    return m


def test_fold_batchnorm_preserves_outputs():
    model = _bn_model()
    x = torch.randn(8, 2, 8, 8)
    folded, names = fold_batchnorm(model)
    assert names == ["1", "4"]
    assert isinstance(folded[1], nn.Identity)
    torch.testing.assert_close(folded(x), model(x), rtol=1e-5, atol=1e-5)


def test_batchnorm_kept_when_its_input_is_shared():
    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)
            self.bn = nn.BatchNorm2d(2)

        def forward(self, x):
            y = self.conv(x)
            return self.bn(y) + y  # the conv output is used twice: folding would be wrong

    model = Shared().eval()
    model.bn.running_mean.fill_(0.3)
    folded, names = fold_batchnorm(model)
    assert names == []
    x = torch.randn(2, 1, 5, 5)
    torch.testing.assert_close(folded(x), model(x))


def _reference(model_folded: nn.Module, mapped, x: torch.Tensor) -> torch.Tensor:
    """The same integer arithmetic in float64 torch: quantize input, integer product, rescale."""
    recs = {r.name: r for r in mapped.layers}
    out = x
    for name, mod in model_folded.named_children():
        if isinstance(mod, nn.Conv2d | nn.Linear):
            act = recs[name].activation
            q = act.to_int(out).double()
            wq, scale = quantize_weights(mod.weight.detach(), 8)
            if isinstance(mod, nn.Conv2d):
                y = F.conv2d(q, wq.double(), stride=mod.stride, padding=mod.padding)
                y = y * (scale * act.scale)[None, :, None, None]
                b = mod.bias.double()[None, :, None, None] if mod.bias is not None else 0
            else:
                y = F.linear(q, wq.double()) * (scale * act.scale)[None, :]
                b = mod.bias.double()[None, :] if mod.bias is not None else 0
            out = (y + b).float()
        else:
            out = mod(out)
    return out


def test_ideal_isaac_equals_integer_reference(isaac_arch):
    model = _bn_model()
    x = torch.randn(6, 2, 8, 8)
    mapped = map_model(model, isaac_arch, QuantRecipe(weight_bits=8, activation_bits=8),
                       torch.randn(16, 2, 8, 8), seed=3)
    folded, _ = fold_batchnorm(model)
    got = mapped(x)
    torch.testing.assert_close(got, _reference(folded, mapped, x), rtol=1e-5, atol=1e-5)
    counts = {r.name: r.events.adc_conversions for r in mapped.layers}
    assert all(v > 0 for v in counts.values())


def test_unsigned_hardware_uses_exact_zero_point(make_arch):
    arch = make_arch(**{"inputs.signed": False})
    model = nn.Sequential(nn.Linear(7, 3)).eval()
    x = torch.randn(5, 7)  # negative inputs on unsigned rows: zero point path
    mapped = map_model(model, arch, QuantRecipe(weight_bits=8, activation_bits=8), x)
    act = mapped.layers[0].activation
    assert act.zero_point > 0
    wq, scale = quantize_weights(model[0].weight, 8)
    ref = F.linear(act.to_int(x).double(), wq.double()) * (scale * act.scale) \
        + model[0].bias.double()
    torch.testing.assert_close(mapped(x).double(), ref, rtol=1e-6, atol=1e-6)


def test_grouped_convolution_maps_each_group(isaac_arch):
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, groups=2)).eval()
    x = torch.randn(3, 4, 6, 6)
    mapped = map_model(model, isaac_arch, QuantRecipe(), x)
    torch.testing.assert_close(mapped(x), model(x), rtol=0.05, atol=0.05)


@pytest.mark.parametrize("layer", [nn.ConvTranspose2d(2, 2, 3), nn.GRUCell(4, 4),
                                   nn.Conv1d(2, 2, 3)])
def test_unmappable_layer_is_named(isaac_arch, layer):
    model = nn.Sequential(nn.Linear(4, 4), layer)
    with pytest.raises(MappingError, match=rf"layer '1' \({type(layer).__name__}\)"):
        map_model(model, isaac_arch, QuantRecipe(), torch.randn(2, 4))


def test_functional_product_is_named(isaac_arch):
    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.randn(4, 4))

        def forward(self, x):
            return F.linear(x, self.w)

    with pytest.raises(MappingError) as info:
        map_model(Functional(), isaac_arch, QuantRecipe(), torch.randn(2, 4))
    # The executed product (F.linear lowers to mm), the model and the line that called it.
    message = str(info.value)
    assert "matrix product (mm)" in message and "(Functional)" in message
    assert "test_bridge.py:" in message and "return F.linear(x, self.w)" in message


def test_workload_bits_wider_than_arch(make_arch):
    arch = make_arch()  # 8-bit weights
    with pytest.raises(MappingError, match="weights.bits"):
        map_model(nn.Linear(3, 2), arch, QuantRecipe(weight_bits=12), torch.randn(2, 3))


def test_map_model_records_the_layer_graph(make_arch):
    """The bridge traces the folded model: a residual join and a shared input reach the
    engine, and each layer's single ``source`` follows the graph, not the execution order."""

    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(1, 2, 3, padding=1)
            self.b = nn.Conv2d(2, 2, 3, padding=1)
            self.c = nn.Conv2d(2, 2, 1)  # reads a's output, executed after b
            self.relu = nn.ReLU()
            self.fc = nn.Linear(2 * 4 * 4, 3)

        def forward(self, x):
            y = self.relu(self.a(x))
            z = self.b(y) + self.c(y)
            return self.fc(torch.flatten(z, 1))

    torch.manual_seed(0)
    mapped = map_model(Branchy().eval(), make_arch(), QuantRecipe(activation_bits=7),
                       torch.randn(4, 1, 4, 4))
    assert mapped.graph is not None and mapped.graph_note == ""
    g = mapped.layer_graph()
    assert g.traced
    assert g.work_inputs("c") == ("relu",) == g.work_inputs("b")
    (add,) = [nd.name for nd in g.nodes if nd.kind == "add"]
    assert set(g.work_inputs(add)) == {"b", "c"}
    assert g.work_inputs("fc") == (add,)  # through the flatten
    mapped(torch.randn(1, 1, 4, 4))
    sources = {s.name: s.source for s in mapped.layer_shapes()}
    assert sources == {"a": None, "b": "a", "c": "a", "fc": "b"}


def _unfold_columns(q, kernel, padding, stride, dilation, columns, zero_point):
    """The reference: ``F.unfold`` of the zero-padded input (float64 holds these integers
    exactly), rows in output order, plus the zero point; then the columns, ``-1`` a column
    of zeros."""
    full = F.unfold(torch.from_numpy(q).double(), kernel, dilation=dilation, padding=padding,
                    stride=stride)  # (n, C*kh*kw, L)
    full = full.permute(0, 2, 1).reshape(-1, full.shape[1]) + zero_point
    full = torch.cat([full, torch.zeros(full.shape[0], 1, dtype=full.dtype)], dim=1)
    idx = torch.from_numpy(np.where(columns < 0, full.shape[1] - 1, columns))
    return full.index_select(1, idx).numpy()


@pytest.mark.parametrize("dtype", [np.int16, np.int64])
@pytest.mark.parametrize(("kernel", "padding", "stride", "dilation"), [
    ((3, 3), (1, 1), (1, 1), (1, 1)), ((3, 2), (0, 1), (2, 1), (1, 1)),
    ((3, 3), (2, 2), (1, 2), (2, 2)), ((1, 1), (0, 0), (1, 1), (1, 1)),
    ((1, 1), (0, 0), (2, 2), (1, 1)), ((5, 3), (2, 0), (3, 2), (1, 2))])
def test_conv_vectors_match_unfold(dtype, kernel, padding, stride, dilation):
    """The bridge's one-pass im2col (``sim.kernels.inputs.conv_vectors``) equals ``F.unfold``
    for padding, strides and dilation, row for row and column for column: all columns, a
    shuffled half of them (a packed sub-layer's rows) and zero columns (a polarized
    fragment's padding row), with and without a zero point, in the input's integer type."""
    from sim.kernels.inputs import conv_vectors

    rng = np.random.default_rng(7)
    q = rng.integers(-128, 128, size=(3, 4, 11, 9)).astype(dtype)
    k_all = 4 * kernel[0] * kernel[1]
    for zero_point in (0, 17):
        for columns in (np.arange(k_all), rng.permutation(k_all)[: k_all // 2],
                        np.array([k_all - 1, -1, 0, -1, k_all // 2])):
            got = conv_vectors(q, kernel, padding, stride, dilation, columns, zero_point)
            assert got.dtype == q.dtype
            want = _unfold_columns(q, kernel, padding, stride, dilation, columns, zero_point)
            np.testing.assert_array_equal(got, want)
    for bad in (np.array([0, k_all]), np.array([-2])):
        with pytest.raises(ValueError, match="im2col columns must lie in"):
            conv_vectors(q, kernel, padding, stride, dilation, bad)


def test_prepared_model_quantizes_each_layer_once_per_bits_and_weights(make_arch):
    """Mappings of one prepared model reuse its quantized weights: the same as quantizing
    afresh; another weight width, or weights edited in place, quantize again."""
    from mappers.torch_bridge import map_prepared, prepare_model

    torch.manual_seed(0)
    model = _bn_model()
    calib = torch.randn(16, 2, 8, 8)
    x = torch.randn(3, 2, 8, 8)
    arch = make_arch(**{"weights.bits": 8})

    def fresh(recipe):
        return map_model(model, arch, recipe, calib, seed=1)(x)

    r8, r6 = QuantRecipe(weight_bits=8, activation_bits=7), QuantRecipe(weight_bits=6,
                                                                        activation_bits=7)
    prepared = prepare_model(model, r8, calib)
    first = map_prepared(prepared, arch, r8, seed=1)
    assert len(prepared.quantized) == len(prepared.targets)
    again = map_prepared(prepared, arch, r8, seed=1)  # from the kept quantization
    assert torch.equal(again(x), first(x)) and torch.equal(first(x), fresh(r8))
    again.model.get_submodule(prepared.targets[0]).w_scale.mul_(2)  # a copy: first unchanged
    assert torch.equal(first(x), fresh(r8))
    six = map_prepared(prepared, arch, r6, seed=1)
    assert len(prepared.quantized) == 2 * len(prepared.targets)
    assert torch.equal(six(x), fresh(r6)) and not torch.equal(six(x), first(x))
    w = prepared.model.get_submodule(prepared.targets[0]).weight
    with torch.no_grad():
        w.mul_(-1)  # an in-place edit of the prepared weights
    edited = map_prepared(prepared, arch, r8, seed=1)(x)
    assert not torch.equal(edited, first(x))
    unkept = dataclasses.replace(prepared, quantized={})  # the same weights, nothing kept
    assert torch.equal(edited, map_prepared(unkept, arch, r8, seed=1)(x))


@pytest.mark.parametrize("signed,bits,act_bits", [(True, 16, 8), (False, 8, 8), (False, 16, 16)])
def test_narrow_inputs_same_values_and_bits(make_arch, signed, bits, act_bits):
    """The forward pass builds its input matrices in int16 where every value fits (zero point
    included), int64 otherwise: the same values as the default int64 matrices, and the
    crossbar layers (cell and ADC variation, comparator noise) give the same outputs and
    events from either type."""
    import numpy as np

    arch = make_arch(**{"inputs.signed": signed, "inputs.bits": bits, "crossbar.adc.clip": True,
                        "variation": {"seed": 2, "cell": {"sigma": 0.05},
                                      "adc": {"noise_sigma_lsb": 0.3,
                                              "cap_mismatch_sigma": 0.02}}})
    model = _bn_model()
    mapped = map_model(model, arch, QuantRecipe(weight_bits=8, activation_bits=act_bits),
                       torch.randn(16, 2, 8, 8), seed=3)
    x = torch.randn(3, 2, 8, 8)
    hw = next(m for m in mapped.model.modules() if hasattr(m, "hw_inputs"))
    wide, _ = hw.hw_inputs(x)
    narrow, _ = hw.hw_inputs(x, narrow=True)
    fits = max(abs(hw.act.lo), abs(hw.act.hi)) + abs(hw.act.zero_point) < 2**15
    assert fits == (act_bits == 8)
    for a, b in zip(wide, narrow, strict=True):
        assert a.dtype == torch.int64 and b.dtype == (torch.int16 if fits else torch.int64)
        assert torch.equal(a, b.long())
        xb = hw.crossbar_layers[0]
        out_a, ev_a = xb.matmul(a.numpy(), seed=4)
        out_b, ev_b = xb.matmul(b.numpy(), seed=4)
        assert out_a.tobytes() == out_b.tobytes() and ev_a == ev_b
        assert np.abs(out_a).sum() > 0


def _hw_inputs_reference(layer, x):
    """The bridge's input matrices built the way it used to: ``F.unfold`` of the quantized
    input, plus the zero point, split into packs of groups, or a packed layer's sub-layer
    rows (row ``K``: a zero padding row)."""
    q = layer.act.to_int(x)
    full = F.unfold(q.double(), layer.kernel_size, dilation=layer.dilation,
                    padding=layer.padding, stride=layer.stride)
    full = full.transpose(1, 2).reshape(-1, full.shape[1]) + layer.act.zero_point
    if layer.packing is None:
        k = full.shape[1] // layer.groups * layer.per_pack
        return [m.to(torch.int64) for m in full.split(k, dim=1)]
    full = torch.cat([full, full.new_zeros(full.shape[0], 1)], dim=1)
    return [full.index_select(1, rows).to(torch.int64) for rows in layer._rows]


@pytest.mark.parametrize("arch_file,recipe", [
    ("isaac_32nm.yaml", QuantRecipe(weight_bits=8, activation_bits=8)),
    ("isaac_32nm.yaml", QuantRecipe(weight_bits=8, activation_bits=8, packed=True)),
    ("forms_32nm.yaml", QuantRecipe(weight_bits=8, activation_bits=8, packed=True))])
def test_hw_inputs_of_grouped_and_packed_convolutions_match_unfold(arch_file, recipe):
    """A grouped convolution's packs (30 groups of 6 rows share crossbars, the last pack
    short) and a packed layer's sub-layer rows (FORMS: polarized fragments) get the columns
    ``F.unfold`` gives (a padding row, index K, is ``conv_vectors``' column -1, checked in
    test_conv_vectors_match_unfold)."""
    from mappers.torch_bridge import HardwareLayer
    from sim.config import load_arch
    from tests.conftest import REPO

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(30, 30, (3, 2), padding=1, groups=30), nn.ReLU(),
                          nn.Conv2d(30, 12, 3, stride=2, dilation=2, padding=2)).eval()
    with torch.no_grad():  # sign-polarized 8-row fragments, as FORMS needs
        for conv in (model[0], model[2]):
            w = conv.weight.view(conv.out_channels, -1)
            frag = torch.arange(w.shape[1]) // 8
            sign = torch.where(torch.rand(w.shape[0], int(frag.max()) + 1) < 0.5, -1.0, 1.0)
            w.copy_(w.abs() * sign[:, frag])
    x = torch.randn(3, 30, 11, 9)
    mapped = map_model(model, load_arch(REPO / "arch_configs" / arch_file), recipe, x)
    layers = [m for m in mapped.model.modules() if isinstance(m, HardwareLayer)]
    assert len(layers) == 2
    for layer, inp in zip(layers, (x, torch.relu(x)), strict=True):
        got, _ = layer.hw_inputs(inp)
        want = _hw_inputs_reference(layer, inp)
        assert len(got) == len(want)
        assert len(got) > 1 or (layer is layers[1] and not recipe.packed)
        for g, w in zip(got, want, strict=True):
            assert torch.equal(g, w)
