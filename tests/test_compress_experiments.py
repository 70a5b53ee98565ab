"""The compression experiments' scripts (bench/compress_experiments.py, bench/compress_tables.py)
and the GRU workload they use: every spec they write is valid for its model, each variant
changes what its name says, the BSP settings reach their target rates, and the table's
hardware ratios follow the hardware figures. No training here (fast)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
import yaml

from mappers.compress.projections import BlockStructured
from mappers.compress.spec import parse_compression
from workloads.spec import load_workload

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import compress_experiments as ce  # noqa: E402
import compress_tables as ct  # noqa: E402


def test_the_gru_workload_builds_and_reads_rows_as_time_steps():
    workload = load_workload(ROOT / "workloads" / "gru_rowmnist.yaml")
    model = workload.build_model().eval()
    assert workload.input_shape == (1, 28, 28)
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        out = model(x)
        # Permuting the rows (time steps) changes the output: the rows are a sequence.
        moved = model(x.flip(2))
    assert out.shape == (2, 10)
    assert not torch.allclose(out, moved)


@pytest.mark.parametrize("network", sorted(ce.NETWORKS))
def test_every_experiment_spec_is_valid_for_its_model(network):
    models = {}
    for name, e in ce.experiments(network).items():
        data = ce.variant(ROOT / e["spec"], name, e["method"], e["params"], e.get("top"))
        if e["workload"] not in models:
            models[e["workload"]] = load_workload(
                ROOT / e["workload"] if e["workload"].endswith(".yaml") else e["workload"]
            ).build_model()
        spec = parse_compression(data, models[e["workload"]])
        assert spec.name == name


def test_variants_change_the_named_parameter_only():
    exps = ce.experiments("cifar_cnn")

    def layers(name):
        e = exps[name]
        return ce.variant(ROOT / e["spec"], name, e["method"], e["params"])["layers"]

    assert {v["connectivity"]["rate"] for v in layers("cifar_cnn_patdnn_c4").values()} == {4}
    assert {v["connectivity"]["rate"] for v in layers("cifar_cnn_patdnn_c2").values()} == {2}
    c1 = layers("cifar_cnn_patdnn_c1")
    assert all("connectivity" not in v and "pattern" in v for v in c1.values())
    u = layers("cifar_cnn_unify_8x1")
    assert {tuple(v["unify"]["block"]) for v in u.values()} == {(8, 1)}
    assert {v["unify"]["zero_fraction"] for v in u.values()} == {0.5}  # untouched
    e = exps["gru_bsp_10x_long"]
    long = ce.variant(ROOT / e["spec"], "x", e["method"], e["params"], e["top"])
    assert (long["admm"]["epochs"], long["finetune"]["epochs"]) == (3, 3)
    assert long["admm"]["rho"] == 0.01 and long["layers"]["gru"]["bsp"]["row_rate"] == 10


@pytest.mark.parametrize("name", sorted(ce.GRU_BSP))
def test_gru_bsp_settings_reach_their_target_rates(name):
    # The achieved rate of each setting, counted on projected random gate matrices of the
    # workload's GRU (3 gates x (128, 28) input and 3 x (128, 128) recurrent).
    p = ce.GRU_BSP[name]
    proj = BlockStructured(tuple(p["block"]), p["column_rate"], p["row_rate"])
    g = torch.Generator().manual_seed(0)
    total = nonzero = 0
    for fan_in in (28, 128):
        for _ in range(3):
            w = proj.project(torch.randn(128, fan_in, generator=g))
            total += w.numel()
            nonzero += int((w != 0).sum())
    target = float(name.removeprefix("gru_bsp_").removesuffix("x"))
    assert abs(math.log(total / nonzero / target)) < math.log(1.15)


def test_table_ratios_follow_the_hardware_figures():
    manifest = {"totals": {"compressed_pruning_rate": 4.0, "model_pruning_rate": 3.0},
                "baseline_accuracy": 0.9, "hard_projection_accuracy": 0.5,
                "test_accuracy": 0.88,
                "layers": {"fc.weight": {"pruning_rate": 4.0, "methods": {}}}}
    figures = {"hw_accuracy": 0.875, "crossbars": 10, "crossbars_one_copy": 6,
               "adc_per_inf": 1000.0, "energy_nj": 50.0, "latency_cycles": 400.0,
               "interval_cycles": 300.0}
    dense = {"command": "imcsim run dense", **figures}
    hw = {"dense:base.yaml": dense,
          "m": {"command": "imcsim run m", "wall_s": 1.0, **figures, "crossbars": 5,
                "crossbars_one_copy": 4, "interval_cycles": 400.0}}
    text = "\n".join(ct.table("g", "T", "base.yaml", ["m", "x"], {"m": manifest}, hw, []))
    assert "5 (2.00x)" in text and "4.00x" in text and "88.00 %" in text
    assert "| x | not run |" in text
    assert "4 (1.50x)" in text and "400 (0.75x)" in text  # one copy; a slower interval
    assert all(line.count("|") == text.splitlines()[4].count("|")
               for line in text.splitlines() if line.startswith("|"))  # no ragged row
    hw["m"]["crossbars"] = 10
    assert "10 (1.00x)" in "\n".join(ct.table("g", "T", "base.yaml", ["m"], {"m": manifest},
                                             hw, []))
    hw["m"] = {"command": "imcsim run m", "wall_s": 1.0, "error": "cannot map nn.GRU"}
    assert "fails: cannot map nn.GRU" in "\n".join(
        ct.table("g", "T", "base.yaml", ["m"], {"m": manifest}, hw, []))


def test_nearest_rtmobile_point_is_taken_on_a_log_scale():
    assert ct.nearest_rtmobile(9.85) == (9.95, 18.8)
    assert ct.nearest_rtmobile(85.3) == (79.50, 21.5)
    assert ct.nearest_rtmobile(332.8) == (301.28, 25.5)


def test_examples_name_their_own_workload():
    # The committed base specs are loadable YAML with the documented names.
    for spec in ("compress_gru_bsp", "compress_cifar_cnn_patdnn", "compress_cifar_cnn_unify",
                 "compress_resnet20_patdnn", "compress_resnet20_unify",
                 "compress_lenet5_forms23"):
        data = yaml.safe_load((ROOT / "examples" / f"{spec}.yaml").read_text())
        assert data["layers"], spec


def test_packing_alone_takes_precision_out_of_the_saving():
    # One packed layer (10 -> 6 crossbars at its bits; 300 -> 200 conversions per vector, 50
    # vectors) and one dense layer (2 crossbars, 1000 conversions), 2 samples.
    layers = [{"crossbars": 6, "events": {"adc_conversions": 200 * 50},
               "mapping": {"dense_at_bits_crossbars": 10, "crossbars": 6,
                           "dense_at_bits_conversions_per_vector": 300,
                           "conversions_per_vector": 200}},
              {"crossbars": 2, "events": {"adc_conversions": 1000}, "mapping": {}}]
    fig = ct.at_bits(layers, 2)
    assert fig == {"crossbars_at_bits": 12, "adc_at_bits_per_inf": (300 * 50 + 1000) / 2}
    hw = {**fig, "crossbars_one_copy": 8, "adc_per_inf": (200 * 50 + 1000) / 2}
    assert ct._packing_alone(hw) == f"1.50x / {16000 / 11000:.2f}x"
    layers[0]["mapping"]["dense_at_bits_conversions_per_vector"] = 200  # no column saved
    assert ct._packing_alone({**hw, **ct.at_bits(layers, 2)}) == "1.50x / 1.00x"
    assert ct.at_bits([layers[1]], 2) == {}  # a dense run has no packed figures
