"""A gallery of user-style models the shipped workloads do not cover, run through the public
API (``imcsim.simulate``) on a few scikit-learn digits.

Each model is trained briefly (seeded, one thread) so that its accuracy means something, then
simulated bit-true on ISAAC. What is asserted today:

- the float accuracy in the result is plain PyTorch's on the same samples;
- every ``nn.Conv2d``/``nn.Linear`` of the model is a mapped layer with events, including
  grouped (depthwise) convolutions;
- every executed operation is classified in execution order (``result.operations``): the
  depthwise model's ReLU6 and average pooling and the residual+concat model's adds and cat as
  costed digital units, the custom activation's sigmoid as a digital unit and its gate
  products (``x * sigmoid``) in float; the untraceable model is checked through the operation
  recorder (no ``torch.fx`` needed), which also gives the schedule its dataflow graph;
- a matrix product between two activations (``q @ k.transpose``) is refused with a
  :class:`~sim.errors.MappingError` naming the model and the source line in this file, and
  runs in float, labelled, with ``allow_float_products=True``.
"""

from __future__ import annotations

import inspect

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import imcsim
from analysis.report import render_markdown
from workloads.datasets import load_dataset

SAMPLES = 16
ARCH = "isaac_32nm"


class DepthwiseSeparable(nn.Module):
    """MobileNet-style: a stem, a depthwise 3x3 (groups = channels) and a pointwise 1x1."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.depthwise = nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.pointwise = nn.Conv2d(16, 32, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(32)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(32 * 4, 10)

    def forward(self, x):
        x = F.relu6(self.bn1(self.stem(x)))
        x = F.relu6(self.bn2(self.depthwise(x)))
        x = F.relu6(self.bn3(self.pointwise(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


class ResidualConcat(nn.Module):
    """Two parallel branches concatenated, plus a residual add around a 1x1 convolution."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1)
        self.branch3 = nn.Conv2d(8, 8, 3, padding=1)
        self.branch1 = nn.Conv2d(8, 8, 1)
        self.mix = nn.Conv2d(16, 16, 1)
        self.fc = nn.Linear(16 * 4 * 4, 10)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        y = torch.cat([torch.relu(self.branch3(x)), torch.relu(self.branch1(x))], dim=1)
        y = torch.relu(y + self.mix(y))
        return self.fc(F.max_pool2d(y, 2).flatten(1))


class Swishish(nn.Module):
    """A user's own activation: x * sigmoid(beta x) with a learned beta."""

    def __init__(self):
        super().__init__()
        self.beta = nn.Parameter(torch.tensor(1.0))

    def forward(self, x):
        return x * torch.sigmoid(self.beta * x)


class CustomActivation(nn.Module):
    """An MLP with a custom activation module between the layers."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(64, 48)
        self.act = Swishish()
        self.fc2 = nn.Linear(48, 10)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x.flatten(1))))


class DataDependentBranch(nn.Module):
    """``torch.fx`` cannot trace this: the branch depends on the values of the batch."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 8 * 8, 10)

    def forward(self, x):
        x = torch.relu(self.conv(x))
        if x.mean() > 10.0:  # data-dependent control flow
            x = x / x.mean()
        return self.fc(x.flatten(1))


class TinyAttention(nn.Module):
    """Self-attention over the 8 image rows: ``q @ k.T`` multiplies two activations."""

    def __init__(self):
        super().__init__()
        self.q = nn.Linear(8, 8)
        self.k = nn.Linear(8, 8)
        self.v = nn.Linear(8, 8)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        rows = x.flatten(1, 2)  # (N, 8, 8): 8 tokens of 8 features
        q, k, v = self.q(rows), self.k(rows), self.v(rows)
        attention = torch.softmax(q @ k.transpose(-1, -2) / 8**0.5, dim=-1)
        return self.fc((attention @ v).flatten(1))


MAPPABLE = [DepthwiseSeparable, ResidualConcat, CustomActivation, DataDependentBranch]

#: The expected operations of each model in execution order (views left out), as
#: (placement, category, op or module); batch norm is folded into the preceding layers.
CLASSIFIED = {
    "DepthwiseSeparable": [
        ("crossbar", "crossbar", "stem"), ("digital", "activation", "hardtanh"),
        ("crossbar", "crossbar", "depthwise"), ("digital", "activation", "hardtanh"),
        ("crossbar", "crossbar", "pointwise"), ("digital", "activation", "hardtanh"),
        ("digital", "pooling", "_adaptive_avg_pool2d"), ("crossbar", "crossbar", "fc")],
    "ResidualConcat": [
        ("crossbar", "crossbar", "stem"), ("digital", "activation", "relu"),
        ("crossbar", "crossbar", "branch3"), ("digital", "activation", "relu"),
        ("crossbar", "crossbar", "branch1"), ("digital", "activation", "relu"),
        ("digital", "concat", "cat"), ("crossbar", "crossbar", "mix"),
        ("digital", "add", "add"), ("digital", "activation", "relu"),
        ("digital", "pooling", "max_pool2d_with_indices"), ("crossbar", "crossbar", "fc")],
    "CustomActivation": [
        ("crossbar", "crossbar", "fc1"), ("float", "gate", "mul"),
        ("digital", "activation", "sigmoid"), ("float", "gate", "mul"),
        ("crossbar", "crossbar", "fc2")],
    # Untraceable by torch.fx: the recorder still sees every operation and the dataflow, so
    # the ReLU is scheduled and costed like in the traced models.
    "DataDependentBranch": [
        ("crossbar", "crossbar", "conv"), ("digital", "activation", "relu"),
        ("float", "reduction", "mean"), ("float", "elementwise", "gt"),
        ("float", "elementwise", "_local_scalar_dense"), ("crossbar", "crossbar", "fc")],
}


@pytest.fixture(scope="module")
def digits():
    x_train, y_train = load_dataset("digits", "train")
    x_test, y_test = load_dataset("digits", "test")
    return x_train, y_train, x_test, y_test


def _trained(cls, x, y, steps: int = 120):
    """``cls()`` after a short seeded Adam run on one thread (bit-reproducible)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        model = cls()
        opt = torch.optim.Adam(model.parameters(), lr=0.01)
        g = torch.Generator().manual_seed(0)
        model.train()
        for _ in range(steps):
            idx = torch.randint(0, len(y), (64,), generator=g)
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


@pytest.mark.parametrize("cls", MAPPABLE, ids=[c.__name__ for c in MAPPABLE])
def test_gallery_model_runs_with_float_accuracy_of_plain_pytorch(digits, cls):
    x_train, y_train, x_test, y_test = digits
    model = _trained(cls, x_train, y_train)
    result = imcsim.simulate(model, ARCH, (x_test, y_test), x_train[:256], samples=SAMPLES)
    with torch.no_grad():
        plain = float((model(x_test[:SAMPLES]).argmax(1) == y_test[:SAMPLES]).float().mean())
    assert result.float_accuracy == plain
    assert result.samples == SAMPLES and result.workload == cls.__name__
    assert plain >= 0.5, "the short training should learn something"
    # Every matrix-product module is a mapped layer that did work on the crossbars.
    products = [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    on_crossbars = [lr for lr in result.layers if lr.crossbars]
    assert sorted(lr.name for lr in on_crossbars) == sorted(products)
    assert all(lr.events["adc_conversions"] > 0 for lr in on_crossbars)
    assert result.energy_total_pj > 0 and result.latency_per_inference_s > 0
    # 8-bit weights and activations on ISAAC: the hardware mostly agrees with float.
    assert result.prediction_agreement >= 0.75
    # Every executed operation, classified, in execution order.
    got = [(op["placement"], op["category"],
            op["module"] if op["category"] == "crossbar" else op["op"])
           for op in result.operations]
    assert got == CLASSIFIED[cls.__name__]
    assert result.energy_complete
    assert all(op["source"].split(":")[0].endswith("test_gallery.py") for op in result.operations)
    # The costed digital operations are the graph's digital nodes in the result (a
    # concatenation is data movement: its cost is its producers' NoC transfers).
    digital_ops = [op for op in result.operations
                   if op["placement"] == "digital" and op["category"] != "concat"]
    digital_layers = [lr for lr in result.layers if lr.placement == "digital"]
    assert len(digital_ops) == len(digital_layers)
    assert all(lr.energy_total_pj > 0 for lr in digital_layers)
    assert result.layer_graph["traced"]  # by torch.fx or, when it cannot, by the recorder
    if cls is DataDependentBranch:
        assert any("cannot be traced by torch.fx" in note and "recorded" in note
                   for note in result.layer_graph["notes"])
    print(f"{cls.__name__}: float {plain:.3f}, hardware {result.hardware_accuracy:.3f}, "
          f"agreement {result.prediction_agreement:.3f}, {result.crossbars_used} crossbars")


def _line_of(cls, text: str) -> int:
    """The line number in this file of the line of ``cls`` containing ``text``."""
    lines, first = inspect.getsourcelines(cls)
    return first + next(i for i, line in enumerate(lines) if text in line)


def test_product_of_two_activations_is_refused_with_a_clear_error(digits):
    x_train, y_train, x_test, y_test = digits
    with pytest.raises(imcsim.MappingError) as info:
        imcsim.simulate(TinyAttention(), ARCH, (x_test, y_test), x_train[:64], samples=4)
    message = str(info.value)
    assert message.startswith("cannot map onto crossbars: ")
    assert "Supported matrix products" in message and "allow_float_products" in message
    # Named by the model and the source line, not by an fx node name.
    assert "matmul_1" not in message and "(TinyAttention)" in message
    for code in ("q @ k.transpose(-1, -2)", "attention @ v"):
        assert f"test_gallery.py:{_line_of(TinyAttention, code)}" in message
        assert code in message


def test_opting_in_runs_the_product_in_float_and_marks_the_energy_incomplete(digits):
    x_train, y_train, x_test, y_test = digits
    result = imcsim.simulate(TinyAttention(), ARCH, (x_test, y_test), x_train[:64], samples=4,
                             allow_float_products=True)
    assert not result.energy_complete
    assert any(note.startswith("ENERGY INCOMPLETE") for note in result.notes)
    products = [op for op in result.operations if op["category"] == "product"]
    assert [op["op"] for op in products] == ["bmm", "bmm"]
    assert all(op["placement"] == "float" for op in products)
    assert products[0]["source"].endswith(f":{_line_of(TinyAttention, 'q @ k.transpose')}")
    assert "ENERGY INCOMPLETE" in imcsim.format_result(result)
    report = render_markdown(result.to_json())
    assert "## Operations" in report and "ENERGY INCOMPLETE" in report
    assert "| float | product | bmm |" in report


def test_the_untraceable_model_really_defeats_torch_fx():
    """So the gallery keeps covering the path where ``torch.fx`` cannot see the graph."""
    with pytest.raises(torch.fx.proxy.TraceError):
        torch.fx.symbolic_trace(DataDependentBranch())
    torch.fx.symbolic_trace(ResidualConcat())  # the others trace
