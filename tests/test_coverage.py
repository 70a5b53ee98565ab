"""Every executed operation classified; every matrix product outside a mapped layer refused
(mappers/coverage.py), whether or not ``torch.fx`` can trace the model."""

from __future__ import annotations

import dataclasses
import inspect

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from analysis.cli import build_parser
from mappers import QuantRecipe, map_model
from mappers.coverage import record_operations
from sim.errors import MappingError

#: Each product the issue lists, written the way a user would, on (N, 4, 8) activations.
PRODUCTS = {
    "matmul": lambda h, w: h @ h.transpose(-1, -2),
    "addmm": lambda h, w: torch.addmm(h[:, 0], h[:, 0], w),
    "baddbmm": lambda h, w: torch.baddbmm(h, h, w.expand(h.shape[0], 8, 8)),
    "tensordot": lambda h, w: torch.tensordot(h, w, dims=1),
    "mv": lambda h, w: torch.mv(w, h[0, 0]).expand(h.shape[0], 4, 8),
    "inner": lambda h, w: torch.inner(h, h),
    "einsum": lambda h, w: torch.einsum("bij,bkj->bik", h, h),
    "sdpa": lambda h, w: F.scaled_dot_product_attention(h, h, h),
    "linear_computed_weight": lambda h, w: F.linear(h, w * 2),
    "bmm": lambda h, w: torch.bmm(h, h.transpose(1, 2)),
    "outer_by_broadcast": lambda h, w: h.unsqueeze(-1) * h.unsqueeze(-2),
}


class Product(nn.Module):
    """A Linear, then one unmapped product; ``branch`` adds data-dependent control flow."""

    def __init__(self, product, branch: bool):
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.w = nn.Parameter(torch.randn(8, 8))
        self.product, self.branch = product, branch

    def forward(self, x):
        h = self.fc(x)
        if self.branch and h.sum() > 1e9:  # defeats torch.fx
            h = h * 0
        return self.product(h, self.w).flatten(1)


@pytest.mark.parametrize("branch", [False, True], ids=["traceable", "untraceable"])
@pytest.mark.parametrize("name", list(PRODUCTS))
def test_every_product_outside_a_mapped_layer_is_refused(name, branch):
    model = Product(PRODUCTS[name], branch).eval()
    if branch:
        with pytest.raises(torch.fx.proxy.TraceError):
            torch.fx.symbolic_trace(model)
    with pytest.raises(MappingError) as info:
        record_operations(model, torch.randn(2, 4, 8))
    message = str(info.value)
    assert "matrix product" in message and "(Product)" in message
    # The source line is the user's code that did the product (the lambda above), with its
    # text.
    source, line = inspect.getsourcelines(PRODUCTS[name])
    assert f"test_coverage.py:{line}: {source[0].strip()}" in message
    # The flag lets it through and lists it.
    cov = record_operations(model, torch.randn(2, 4, 8), allow_float_products=True)
    assert cov.float_products and all(op.placement == "float" for op in cov.float_products)


def test_mapped_layers_and_digital_units_pass():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(4 * 3 * 3, 5), nn.Softmax(-1)).eval()
    cov = record_operations(model, torch.randn(2, 1, 8, 8))
    got = [(op.placement, op.category, op.module) for op in cov.operations
           if op.placement != "layout"]
    assert got == [("crossbar", "crossbar", "0"), ("digital", "activation", "1"),
                   ("digital", "pooling", "2"), ("crossbar", "crossbar", "4"),
                   ("digital", "softmax", "5")]
    assert cov.counts() == {"crossbar": 2, "digital": 3}
    assert not cov.float_products


@pytest.mark.parametrize("pool", ["module", "functional"])
def test_a_global_average_pool_is_a_costed_pooling_unit(isaac_arch, pool):
    """``AdaptiveAvgPool2d(1)`` lowers to ``aten.mean``; it is still the pooling unit the
    layer graph costs (ResNet-20's head), and the costed digital operations are the result's
    digital layers."""
    import imcsim

    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3, padding=1)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            x = torch.relu(self.conv(x))
            x = self.pool(x) if pool == "module" else F.adaptive_avg_pool2d(x, 1)
            return self.fc(x.flatten(1))

    torch.manual_seed(0)
    x, y = torch.randn(3, 1, 6, 6), torch.tensor([0, 1, 2])
    result = imcsim.simulate(Head().eval(), isaac_arch, (x, y), torch.randn(8, 1, 6, 6))
    got = [(op["placement"], op["category"], op["op"]) for op in result.operations]
    assert got == [("crossbar", "crossbar", "Conv2d"), ("digital", "activation", "relu"),
                   ("digital", "pooling", "mean"), ("crossbar", "crossbar", "Linear")]
    digital = [lr for lr in result.layers if lr.placement == "digital"]
    assert [lr.kind for lr in digital] == ["activation", "pool"]
    assert digital[1].events["pooling_ops"] == 3 * 4 * 6 * 6  # each map read once


def test_an_operator_not_on_the_allow_list_is_refused():
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return torch.linalg.det(self.fc(x).reshape(-1, 2, 2))

    with pytest.raises(MappingError, match="does not know"):
        record_operations(Odd().eval(), torch.randn(2, 4))


def test_an_element_wise_gate_is_not_a_product():
    """x * sigmoid(x) has the shape of its inputs: gate arithmetic (float), not refused."""
    model = nn.Sequential(nn.Linear(4, 4), nn.SiLU()).eval()

    class Gate(nn.Module):
        def forward(self, x):
            return x * torch.sigmoid(x)

    cov = record_operations(nn.Sequential(model, Gate()), torch.randn(3, 4))
    cats = [op.category for op in cov.operations if op.placement != "layout"]
    assert cats == ["crossbar", "activation", "activation", "gate"]


def test_map_model_refuses_and_opts_in(isaac_arch):
    model = Product(PRODUCTS["bmm"], True).eval()
    x = torch.randn(4, 4, 8)
    with pytest.raises(MappingError, match="bmm"):
        map_model(model, isaac_arch, QuantRecipe(), x)
    mapped = map_model(model, isaac_arch, QuantRecipe(), x, allow_float_products=True)
    assert [op.op for op in mapped.coverage.float_products] == ["bmm"]
    assert mapped(x).shape == model(x).shape


def test_cli_run_has_the_opt_in_flag():
    args = build_parser().parse_args(["run", "a", "b", "--allow-float-products"])
    assert args.allow_float_products
    assert not build_parser().parse_args(["run", "a", "b"]).allow_float_products


# ------------------------------------------------- grouped convolutions: one geometry (issue 9.4)
@pytest.mark.parametrize("case", range(8))
def test_functional_and_placement_crossbars_agree_for_grouped_convolutions(make_arch, case):
    """The bridge's CrossbarLayers, the layer record and placement count the same crossbars
    for random groups, kernels and crossbar sizes, and the packed layer computes what torch
    does."""
    from sim.engine.placement import layer_geometry, place

    rng = np.random.default_rng(case)
    rows, columns = [(16, 8), (32, 16), (64, 32), (16, 64)][case % 4]
    arch = make_arch(**{"crossbar.rows": rows, "crossbar.columns": columns,
                        "crossbar.adc.bits": 10, "organization.tiles": 64})
    groups = int(rng.choice([2, 3, 4, 8, 16]))
    c_in = groups * int(rng.integers(1, 5))
    c_out = groups * int(rng.integers(1, 4))
    kernel = int(rng.choice([1, 3, 5]))
    torch.manual_seed(case)
    model = nn.Sequential(nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2,
                                    groups=groups)).eval()
    x = torch.randn(2, c_in, 6, 6)
    mapped = map_model(model, arch, QuantRecipe(), x)
    y = mapped(x)
    torch.testing.assert_close(y, model(x), rtol=0.1, atol=0.1)
    hw = mapped.model[0]
    (shape,) = mapped.layer_shapes()
    functional = sum(xb.crossbars for xb in hw.crossbar_layers)
    assert functional == mapped.layers[0].crossbars == layer_geometry(arch, shape).crossbars
    assert place(arch, [shape], duplicate=False)[0].crossbars == functional
    # Packing saves crossbars only when it packs: never more than one set per group.
    one_group = dataclasses.replace(shape, groups=1, n=c_out // groups)
    assert functional <= groups * layer_geometry(arch, one_group).crossbars


def test_depthwise_packs_groups_block_diagonally_on_isaac(isaac_arch):
    """A depthwise 3x3 over 32 channels on ISAAC (128 x 128, 16-bit weights in 2-bit cells:
    8 columns each): 14 groups per crossbar (126 of 128 rows), so 3 crossbars, not 32."""
    from sim.engine.placement import groups_per_pack

    assert groups_per_pack(isaac_arch, 32, 9, 1) == 14
    model = nn.Sequential(nn.Conv2d(32, 32, 3, padding=1, groups=32, bias=False)).eval()
    mapped = map_model(model, isaac_arch, QuantRecipe(), torch.randn(2, 32, 5, 5))
    assert [xb.k for xb in mapped.model[0].crossbar_layers] == [126, 126, 36]
    assert mapped.layers[0].crossbars == 3


def test_mobilenet_style_run_uses_copies_times_crossbars(isaac_arch):
    import imcsim

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU6(),
        nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.ReLU6(),
        nn.Conv2d(16, 32, 1), nn.ReLU6(),
        nn.Conv2d(32, 32, 3, padding=1, groups=32, stride=2), nn.ReLU6(),
        nn.Flatten(), nn.Linear(32 * 4 * 4, 10)).eval()
    x, y = torch.randn(4, 1, 8, 8), torch.randint(0, 10, (4,))
    result = imcsim.simulate(model, isaac_arch, (x, y), torch.randn(16, 1, 8, 8))
    layers = [lr for lr in result.layers if lr.placement == "crossbar"]
    assert result.crossbars_used == sum(lr.duplicates * lr.crossbars for lr in layers)
    grouped = {lr.name: lr.crossbars for lr in layers if lr.name in ("2", "6")}
    assert grouped == {"2": 2, "6": 3}  # 16 groups: 14 + 2; 32 groups: 14 + 14 + 4


@pytest.mark.parametrize("name", ["lenet5", "digits_cnn", "resnet20", "vgg_small", "cifar_cnn"])
def test_shipped_models_digital_operations_are_the_graph_digital_nodes(isaac_arch, name):
    """The recorder's costed digital operations (concatenations aside: data movement) are the
    layer graph's digital work nodes, one for one and in order, for every shipped model."""
    from sim.engine.graph import DIGITAL_WORK
    from workloads.models import MODELS

    shape = {"lenet5": (1, 28, 28), "digits_cnn": (1, 8, 8)}.get(name, (3, 32, 32))
    torch.manual_seed(0)
    mapped = map_model(MODELS[name]().eval(), isaac_arch, QuantRecipe(), torch.randn(2, *shape))
    kind = {"activation": "activation", "softmax": "activation", "pooling": "pool",
            "add": "add"}
    ops = [kind[op.category] for op in mapped.coverage.operations
           if op.placement == "digital" and op.category != "concat"]
    assert mapped.graph is not None and mapped.graph.traced
    assert ops == [nd.kind for nd in mapped.graph.nodes if nd.kind in DIGITAL_WORK]
    assert not [op for op in mapped.coverage.operations if op.placement == "float"]


def test_operations_json_is_asdict_of_scalar_fields():
    """``Coverage.to_json`` (field by field) gives ``dataclasses.asdict`` of every operation,
    and every field is a scalar, which that way of copying relies on."""
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3)).eval()
    cov = record_operations(model, torch.randn(2, 1, 4, 4))
    got = cov.to_json()
    assert got == [dataclasses.asdict(op) for op in cov.operations] and len(got) == 3
    assert all(isinstance(v, int | str) for d in got for v in d.values())
    got[0]["module"] = "edited"  # a copy: the recorded operation does not move
    assert cov.to_json()[0]["module"] == cov.operations[0].module != "edited"
