"""The public Python API (``import imcsim``): same Result as the CLI, any data form, clear
errors, and the precision note that moves with its cause."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

import imcsim
from analysis.run import simulate as simulate_yaml

ISAAC = "isaac_32nm"
N = 12  # test samples per run: enough for non-trivial events, fast on 2 cores


@pytest.fixture(scope="module")
def digits():
    """The shipped digits CNN, test inputs/labels and calibration inputs."""
    workload = imcsim.load_workload("digits_cnn")
    if not workload.checkpoint_path.is_file():
        pytest.skip(f"{workload.checkpoint_path} not trained")
    x_test, y_test = workload.load_data("test")
    x_train, _ = workload.load_data("train")
    return workload, workload.load_model(), x_test, y_test, x_train[:workload.calibration_samples]


def test_simulate_gives_the_cli_result_for_the_same_model_and_data(digits):
    workload, model, x, y, calib = digits
    cli = simulate_yaml(imcsim.load_arch(ISAAC), workload.source, samples=N, progress=False)
    api = imcsim.simulate(model, ISAAC, (x, y), calib, samples=N, name=workload.name)
    assert isinstance(api, imcsim.Result)
    for key in ("float_accuracy", "hardware_accuracy", "prediction_agreement",
                "events_total", "energy_total_pj", "latency_per_inference_s", "area_mm2",
                "crossbars_used", "notes"):
        assert getattr(api, key) == getattr(cli, key), key
    assert [lr.name for lr in api.layers] == [lr.name for lr in cli.layers]
    assert api.workload == workload.name and api.workload_file.startswith("(python:")
    assert "float accuracy" in imcsim.format_result(api)


def test_data_as_pair_arrays_dataset_or_dataloader_give_the_same_result(digits):
    _, model, x, y, calib = digits
    x, y = x[:N], y[:N]
    ref = imcsim.simulate(model, ISAAC, (x, y), calib)
    ref_json = {k: v for k, v in ref.to_json().items() if k != "wall_time_s"}

    class Items(Dataset):  # a user's map-style Dataset of (input, label) items
        def __len__(self):
            return N

        def __getitem__(self, i):
            return x[i], int(y[i])

    forms = [
        ((x.numpy(), y.numpy()), calib.numpy()),
        (TensorDataset(x, y), TensorDataset(calib, torch.zeros(len(calib), dtype=torch.long))),
        (DataLoader(TensorDataset(x, y), batch_size=5), DataLoader(TensorDataset(calib),
                                                                   batch_size=100)),
        (Items(), [calib[:100], calib[100:]]),
    ]
    for test_data, calibration in forms:
        got = imcsim.simulate(model, ISAAC, test_data, calibration)
        assert {k: v for k, v in got.to_json().items() if k != "wall_time_s"} == ref_json


def test_float_accuracy_is_plain_pytorch_and_the_model_is_left_as_it_was(digits):
    _, model, x, y, calib = digits
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = imcsim.simulate(model, ISAAC, (x[:N], y[:N]), calib, seed=3)
    assert model.training  # mode restored
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    model.eval()
    with torch.no_grad():
        plain = float((model(x[:N]).argmax(1) == y[:N]).float().mean())
    assert result.float_accuracy == plain
    assert result.samples == N and result.seed == 3


def test_estimate_is_the_analytical_mode(digits):
    _, model, x, y, calib = digits
    result = imcsim.estimate(model, ISAAC, (x, y), calib, samples=8)
    assert result.samples == 8 and math.isnan(result.hardware_accuracy)
    assert result.events_total["adc_conversions"] > 0
    assert any("analytical mode" in n for n in result.notes)


def test_map_model_gives_a_callable_hardware_module(digits):
    _, model, x, _, calib = digits
    mapped = imcsim.map_model(model, ISAAC, DataLoader(TensorDataset(calib), batch_size=64))
    assert isinstance(mapped, imcsim.MappedModel) and isinstance(mapped.model, nn.Module)
    out = mapped(x[:4])
    assert out.shape == (4, 10)
    assert [r.name for r in mapped.layers] == ["conv1", "conv2", "fc"]
    assert sum(r.events.counts()["adc_conversions"] for r in mapped.layers) > 0


class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        return self.fc(x.flatten(1))


def _bad_calls():
    x, y = torch.randn(6, 1, 8, 8), torch.randint(0, 10, (6,))
    m = _Tiny()
    return [
        # (call, fragment of the one-line message)
        (lambda: imcsim.simulate("resnet", ISAAC, (x, y), x), "model: expected a torch.nn"),
        (lambda: imcsim.simulate(m, "no_such_arch", (x, y), x), "arch 'no_such_arch' not found"),
        (lambda: imcsim.simulate(m, 5, (x, y), x), "arch: expected an arch YAML path"),
        (lambda: imcsim.simulate(m, ISAAC, x, x), "test_data: expected (inputs, labels)"),
        (lambda: imcsim.simulate(m, ISAAC, (x, y.float()), x), "labels must be integer"),
        (lambda: imcsim.simulate(m, ISAAC, (x, y[:3]), x), "6 inputs but 3 labels"),
        (lambda: imcsim.simulate(m, ISAAC, ((x * 9).to(torch.uint8), y), x),
         "inputs are torch.uint8"),
        (lambda: imcsim.simulate(m, ISAAC, (x, y), "train.csv"), "calibration_data: expected"),
        (lambda: imcsim.simulate(m, ISAAC, (x, y), torch.randn(4, 3, 8, 8)),
         "model fails on calibration_data inputs|calibration_data: inputs of shape"),
        (lambda: imcsim.simulate(m, ISAAC, (torch.randn(6, 1, 9, 9), y), x),
         "model fails on test_data inputs of shape (1, 9, 9)"),
        (lambda: imcsim.simulate(m, ISAAC, (x, y), x, weight_bits=0), "weight_bits: must be"),
        (lambda: imcsim.simulate(m, ISAAC, (x, y), x, activation_bits=8.0),
         "activation_bits: must be"),
        (lambda: imcsim.simulate(m, ISAAC, (x, y), x, samples=0), "samples: must be at least"),
        (lambda: imcsim.simulate(m, ISAAC, DataLoader(TensorDataset(x), batch_size=2), x),
         "each batch must be (inputs, labels), got"),
        (lambda: imcsim.simulate(m, ISAAC, (x[:0], y[:0]), x), "test_data: no samples"),
        (lambda: imcsim.map_model(m, ISAAC, x, weight_bits=17), "weight_bits: must be"),
        (lambda: imcsim.simulate(_Tiny().to("meta"), ISAAC, (x, y), x),
         "model: has tensors on meta; imcsim simulates on the CPU: pass model.cpu()"),
    ]


@pytest.mark.parametrize("index", range(len(_bad_calls())))
def test_bad_arguments_are_one_clear_user_error(index):
    call, fragment = _bad_calls()[index]
    with pytest.raises(imcsim.UserError) as info:
        call()
    message = str(info.value)
    assert any(f in message for f in fragment.split("|")), message
    assert "\n" not in message


def test_a_failing_dataset_is_a_user_error_naming_the_argument():
    class Broken(Dataset):
        def __len__(self):
            return 3

        def __getitem__(self, i):
            raise KeyError(i)

    with pytest.raises(imcsim.UserError, match="test_data: reading the Broken failed: KeyError"):
        imcsim.simulate(_Tiny(), ISAAC, Broken(), torch.randn(4, 1, 8, 8))


# ---------------------------------------------------------------------------------------
# Precision made visible


def _precision_note(result):
    notes = [n for n in result.notes if n.startswith("precision padded by the hardware")]
    assert len(notes) <= 1
    return notes[0] if notes else None


def test_precision_note_appears_and_moves_with_the_workload_bits(digits):
    _, model, x, y, calib = digits
    data = (x[:4], y[:4])
    at8 = _precision_note(imcsim.simulate(model, ISAAC, data, calib))
    at4 = _precision_note(imcsim.simulate(model, ISAAC, data, calib, weight_bits=4,
                                          activation_bits=4))
    # 16-bit weights fill ISAAC's slots; 15-bit unsigned activations need all 16 signed bits.
    full = _precision_note(imcsim.simulate(model, ISAAC, data, calib, weight_bits=16,
                                           activation_bits=15))
    assert full is None
    assert "8-bit weights are stored as 16-bit weights in 8 cell columns each (4 would" in at8
    # ReLU outputs are unsigned: 8-bit codes need 9 bits of ISAAC's signed inputs.
    assert "needing 9 bits are streamed as 16-bit inputs in 16 crossbar steps (9 would" in at8
    assert "3.56x the ADC conversions" in at8  # (8 x 16) / (4 x 9)
    assert "4-bit weights" in at4 and "12.80x the ADC conversions" in at4  # (8 x 16) / (2 x 5)
    printed = imcsim.format_result(imcsim.simulate(model, ISAAC, data, calib))
    assert f"note: {at8}" in printed


def test_precision_note_cost_matches_a_design_at_the_workload_precision(digits):
    """The note's cost figure is what a native-precision variant of the arch really saves."""
    _, model, x, y, calib = digits
    isaac = imcsim.load_arch(ISAAC)
    native = dataclasses.replace(isaac, weights=dataclasses.replace(isaac.weights, bits=8),
                                 inputs=dataclasses.replace(isaac.inputs, bits=9))
    padded = imcsim.simulate(model, isaac, (x[:4], y[:4]), calib)
    exact = imcsim.simulate(model, native, (x[:4], y[:4]), calib)
    assert _precision_note(exact) is None
    ratio = padded.events_total["adc_conversions"] / exact.events_total["adc_conversions"]
    assert ratio == pytest.approx(8 * 16 / (4 * 9), rel=0.05)
    cells = padded.events_total["cell_reads"] / exact.events_total["cell_reads"]
    assert cells == pytest.approx(8 / 4, rel=0.1)


def test_precision_padding_arithmetic():
    from sim.config.schema import integer_bits, precision_padding

    assert [integer_bits(0, 255, False), integer_bits(0, 255, True),
            integer_bits(-128, 127, True), integer_bits(-129, 0, True)] == [8, 9, 8, 9]
    isaac = imcsim.load_arch(ISAAC)
    p = precision_padding(isaac, 8, -127, 127)
    assert (p.weight_columns, p.weight_columns_needed) == (8, 4)
    assert (p.input_steps, p.input_steps_needed) == (16, 8)
    assert p.padded and p.conversion_ratio == 4.0 and p.column_ratio == 2.0
    assert not precision_padding(isaac, 16, -(2**15), 2**15 - 1).padded
    assert np.isclose(precision_padding(isaac, 16, 0, 1).conversion_ratio, 16 / 2)
