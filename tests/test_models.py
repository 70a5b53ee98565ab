"""Models: shapes, mappable layer types, and deterministic training of the digits CNN."""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from sim.errors import DataError, UserError
from workloads.download import file_digest
from workloads.models import MODELS, build_model, model_input_shape
from workloads.spec import load_workload
from workloads.spiking import IFNode, LIFNode, RateEncoder
from workloads.train import augment, evaluate, train

train_module = sys.modules["workloads.train"]

# The layer types a torch bridge must handle; anything else would escape the mapping.
ALLOWED = (nn.Conv2d, nn.Linear, nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d, nn.AdaptiveAvgPool2d,
           nn.Flatten, nn.Identity)


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("num_classes", [10, 7])
def test_output_shape_on_a_dummy_batch(name, num_classes):
    torch.manual_seed(0)
    model = build_model(name, num_classes=num_classes).eval()
    with torch.no_grad():
        out = model(torch.randn(3, *model_input_shape(name)))
    assert out.shape == (3, num_classes)
    assert torch.isfinite(out).all()


# Models holding a recurrent layer (issue 10: the GRU workload of the RTMobile experiments;
# mapped by mappers/recurrent.py); each may hold only that one extra layer type.
NOT_MAPPABLE_YET = {"row_gru": nn.GRU}
# Spiking models also hold their neurons and the rate encoder (digital units, no product).
SPIKING_LEAVES = (IFNode, LIFNode, RateEncoder)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_only_mappable_leaf_modules(name):
    model = build_model(name)
    leaves = [m for m in model.modules() if not list(m.children())]
    allowed = ALLOWED + ((NOT_MAPPABLE_YET[name],) if name in NOT_MAPPABLE_YET else ())
    if name.startswith("spiking_"):
        allowed += SPIKING_LEAVES
    assert all(isinstance(m, allowed) for m in leaves), {type(m) for m in leaves}
    assert not any(isinstance(m, nn.ReLU) and m.inplace for m in leaves)


def test_layer_counts_match_the_papers():
    def count(name, kind):
        return sum(isinstance(m, kind) for m in build_model(name).modules())

    assert (count("lenet5", nn.Conv2d), count("lenet5", nn.Linear)) == (2, 3)
    assert count("lenet5", nn.BatchNorm2d) == 0
    # ResNet-20: 19 3x3 convolutions + 2 1x1 shortcut convolutions, 1 linear layer.
    assert (count("resnet20", nn.Conv2d), count("resnet20", nn.Linear)) == (21, 1)
    assert sum(p.numel() for p in build_model("resnet20").parameters()) == 272474
    assert (count("vgg_small", nn.Conv2d), count("vgg_small", nn.BatchNorm2d)) == (6, 6)


def test_unknown_model_lists_valid_names():
    with pytest.raises(UserError, match="digits_cnn, lenet5, lenet_bn, resnet20, row_gru, "
                                        "spiking_cifar_cnn, spiking_lenet, vgg_small"):
        build_model("alexnet")


def test_augment_keeps_shape_and_is_seeded():
    images = torch.randn(16, 3, 32, 32)
    a = augment(images, torch.Generator().manual_seed(1))
    b = augment(images, torch.Generator().manual_seed(1))
    assert a.shape == images.shape and torch.equal(a, b)
    # Random shifts and flips change the batch.
    assert not torch.equal(a, images)


EPOCHS = 4


@contextlib.contextmanager
def one_thread():
    """Train on one thread: on a loaded machine, torch's first run with several OpenMP
    threads can take ten times longer while they wait for each other; and the bits of a
    result depend on the thread count, so every run compared here must use the same one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits_runs(tmp_path_factory):
    """The digits CNN trained twice with seed 0 (a few seconds each)."""
    folder = tmp_path_factory.mktemp("digits")
    workload = load_workload("digits_cnn")
    with one_thread():
        runs = [train(workload, epochs=EPOCHS, seed=0, out=folder / f"run{i}.pt",
                      progress=False) for i in range(2)]
    return workload, folder, runs


def test_digits_cnn_trains_to_90_percent(digits_runs):
    _, _, runs = digits_runs
    assert runs[0]["test_accuracy"] >= 0.90
    assert runs[0]["test_samples"] == 360 and runs[0]["epochs"] == EPOCHS


def test_same_seed_gives_identical_state_dict_bits(digits_runs):
    _, folder, runs = digits_runs
    first = torch.load(folder / "run0.pt", weights_only=True)
    second = torch.load(folder / "run1.pt", weights_only=True)
    assert first.keys() == second.keys()
    for key in first:
        assert first[key].dtype == second[key].dtype
        assert torch.equal(first[key].view(torch.uint8) if first[key].is_floating_point()
                           else first[key],
                           second[key].view(torch.uint8) if second[key].is_floating_point()
                           else second[key]), key
    assert runs[0]["checkpoint_sha256"] == runs[1]["checkpoint_sha256"]


def test_manifest_records_how_the_checkpoint_was_made(digits_runs):
    _, folder, runs = digits_runs
    manifest = runs[0]
    assert (folder / "run0.json").is_file()
    for key in ("command", "seed", "epochs", "dataset", "data", "test_accuracy",
                "test_samples", "torch_version", "date", "checkpoint_sha256"):
        assert key in manifest
    assert manifest["seed"] == 0 and manifest["dataset"] == "digits"
    assert all(v.dtype == torch.float32 for v in
               torch.load(folder / "run0.pt", weights_only=True).values()
               if v.is_floating_point())


def test_checkpoint_loads_back_with_the_same_accuracy(digits_runs):
    workload, folder, runs = digits_runs
    from dataclasses import replace

    model = replace(workload, checkpoint_path=folder / "run0.pt").load_model()
    images, labels = workload.load_data("test")
    assert evaluate(model, images, labels) == runs[0]["test_accuracy"]


def test_interrupted_run_resumes_to_the_same_weights(digits_runs, tmp_path, monkeypatch):
    workload, _, runs = digits_runs
    real_epoch = train_module._train_epoch
    calls = []

    def crash_in_third_epoch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(train_module, "_train_epoch", crash_in_third_epoch)
    out = tmp_path / "resumed.pt"
    with one_thread(), pytest.raises(KeyboardInterrupt):
        train(workload, epochs=EPOCHS, seed=0, out=out, progress=False)
    assert (tmp_path / "resumed.pt.partial").is_file() and not out.exists()
    calls.clear()
    with one_thread():
        manifest = train(workload, epochs=EPOCHS, seed=0, out=out, progress=False)
    assert len(calls) == EPOCHS - 2  # epochs 3 and 4 only
    assert manifest["checkpoint_sha256"] == runs[0]["checkpoint_sha256"]
    assert not (tmp_path / "resumed.pt.partial").exists()


def test_training_without_data_is_a_data_error(tmp_path, monkeypatch):
    monkeypatch.delenv("IMCSIM_DATA", raising=False)
    with pytest.raises(DataError, match="imcsim data download mnist"):
        train(load_workload("lenet5_mnist"), out=tmp_path / "x.pt", progress=False)


# ---------------------------------------------------------------------------------------
# A user's own model, from the YAML: examples/my_model.py + examples/my_model_digits.yaml

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_example_user_model_from_training_to_report(tmp_path, capsys):
    """The worked example of docs/workloads.md, as a user runs it (1 epoch, 8 samples)."""
    from analysis.cli import main

    for name in ("my_model.py", "my_model_digits.yaml"):
        shutil.copy(EXAMPLES / name, tmp_path / name)
    spec = tmp_path / "my_model_digits.yaml"
    with one_thread():
        assert main(["train", str(spec), "--epochs", "1", "--quiet"]) == 0
    manifest = json.loads((tmp_path / "checkpoints" / "my_model_digits.json").read_text())
    assert manifest["model"] == "my_model.py:SmallResNet"
    assert manifest["model_args"] == {"width": 16, "num_classes": 10}
    assert manifest["preprocessing"]["resize"] == [12, 12]
    assert manifest["model_file_sha256"] == file_digest(tmp_path / "my_model.py", "sha256")
    out = tmp_path / "out"
    assert main(["run", "isaac_32nm", str(spec), "--samples", "8", "--quiet", "--out", str(out),
                 "--report", "md"]) == 0
    assert "my_model_digits on isaac_ce_32nm: 8 test samples" in capsys.readouterr().out
    result = json.loads((out / "result.json").read_text())
    assert [lr["name"] for lr in result["layers"] if lr["crossbars"]] == [
        "stem.0", "block.0", "block.3", "classifier"]
    assert (out / "report.md").is_file()
    # The float accuracy is plain PyTorch on the same 8 preprocessed (12x12) samples.
    workload = load_workload(spec)
    images, labels = workload.load_data("test")
    assert images.shape[1:] == (1, 12, 12)
    model = workload.load_model()
    with torch.no_grad():
        plain = float((model(images[:8]).argmax(1) == labels[:8]).float().mean())
    assert result["float_accuracy"] == plain
    # Editing the model's code makes the run a new one (no stale resume from progress.json).
    from analysis.run import _config_key
    from sim.config import load_arch

    arch = load_arch(Path(__file__).resolve().parent.parent / "arch_configs" / "isaac_32nm.yaml")
    before = _config_key(arch, workload, 8, 0, 50)
    code = (tmp_path / "my_model.py").read_text()
    (tmp_path / "my_model.py").write_text(code.replace("self.act = nn.ReLU6()",
                                                       "self.act = nn.ReLU()"))
    assert _config_key(arch, workload, 8, 0, 50) != before


def test_user_model_mistakes_exit_2_naming_the_yaml(tmp_path, capsys):
    from analysis.cli import main

    shutil.copy(EXAMPLES / "my_model.py", tmp_path / "my_model.py")
    text = (EXAMPLES / "my_model_digits.yaml").read_text()
    cases = [
        (text.replace("my_model.py:SmallResNet", "my_model.py:BigResNet"),
         "my_model.py has no 'BigResNet'; nn.Module classes defined there: SmallResNet"),
        (text.replace("my_model.py:SmallResNet", "other.py:SmallResNet"),
         "model: model file not found"),
        (text.replace("width: 16", "widht: 16"), "unexpected keyword argument 'widht'"),
        (text.replace("resize: [12, 12]", "resize: [10, 10]"),
         "takes 1x12x12 inputs but data set digits has 1x10x10 images after"),
    ]
    for i, (body, fragment) in enumerate(cases):
        spec = tmp_path / f"bad{i}.yaml"
        spec.write_text(body)
        for command in (["train", str(spec), "--quiet"],
                        ["run", "isaac_32nm", str(spec), "--quiet", "--samples", "2",
                         "--out", str(tmp_path / "out")]):
            assert main(command) == 2, (i, command)
            err = capsys.readouterr().err
            assert str(spec) in err and fragment in err, err
            assert "Traceback" not in err
