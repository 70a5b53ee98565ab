"""Every executed operation classified; every matrix product outside a mapped layer refused
(mappers/coverage.py), whether or not ``torch.fx`` can trace the model."""

from __future__ import annotations

import inspect

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
