"""Workload YAML: valid files load; every mistake is reported with its YAML path, together."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from sim.errors import ConfigError, DataError, UserError
from workloads.spec import Workload, builtin_workloads, load_workload

VALID = """\
name: lenet5_mnist
model: lenet5
dataset: mnist
bits: {weights: 8, activations: 4}
checkpoint: checkpoints/lenet5_mnist.pt
calibration_samples: 128
train: {epochs: 3, batch_size: 64, lr: 0.01, seed: 7}
"""


def write(tmp_path: Path, text: str, name: str = "workload.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def edited(**changes) -> str:
    """VALID with top-level keys replaced (``None`` deletes a key)."""
    data = yaml.safe_load(VALID)
    for key, value in changes.items():
        if value is None:
            data.pop(key)
        else:
            data[key] = value
    return yaml.safe_dump(data)


def problems_of(tmp_path: Path, text: str) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as info:
        load_workload(write(tmp_path, text))
    return info.value.problems


def test_valid_file_loads_into_frozen_dataclasses(tmp_path):
    folder = tmp_path / "sub"
    folder.mkdir()
    workload = load_workload(write(folder, VALID))
    assert workload.name == "lenet5_mnist" and workload.model == "lenet5"
    assert workload.dataset == "mnist" and workload.num_classes == 10
    assert (workload.bits.weights, workload.bits.activations) == (8, 4)
    assert workload.calibration_samples == 128
    assert (workload.train.epochs, workload.train.batch_size, workload.train.seed) == (3, 64, 7)
    assert workload.train.lr == 0.01 and isinstance(workload.train.lr, float)
    # Relative to the YAML file's folder, and absolute.
    assert workload.checkpoint_path == folder / "checkpoints" / "lenet5_mnist.pt"
    assert workload.checkpoint_path.is_absolute()
    with pytest.raises(AttributeError):
        workload.name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        Workload("x", "lenet5")  # type: ignore[misc]  # keyword-only


def test_optional_keys_have_documented_defaults(tmp_path):
    workload = load_workload(write(tmp_path, edited(checkpoint=None, train=None,
                                                    calibration_samples=None)))
    assert workload.checkpoint_path == tmp_path / "checkpoints" / "lenet5_mnist.pt"
    assert workload.calibration_samples == 256
    assert workload.train.optimizer == "sgd" and workload.train.schedule == "cosine"


@pytest.mark.parametrize("name", sorted(builtin_workloads()))
def test_builtin_workloads_load_by_path_and_by_name(name):
    by_name = load_workload(name)
    assert by_name == load_workload(builtin_workloads()[name])
    assert by_name.bits.weights == 8 and by_name.bits.activations == 8
    assert by_name.checkpoint_path.parent.name == "checkpoints"


MISTAKES = [
    # (changes to VALID, YAML path, fragment of the message)
    ({"colour": "red"}, "colour", "unknown key; valid keys here:"),
    ({"name": None}, "name", "is required"),
    ({"name": "a/b"}, "name", "letters, digits"),
    ({"model": "resnet99"}, "model",
     "must be one of cifar_cnn, digits_cnn, lenet5, resnet20, vgg_small"),
    ({"dataset": "imagenet"}, "dataset", "must be one of cifar10, digits, fashion_mnist"),
    ({"dataset": "cifar10"}, "dataset", "takes 1x28x28 inputs but data set cifar10 has 3x32x32"),
    ({"bits": None}, "bits", "is required"),
    ({"bits": 8}, "bits", "must be a mapping, got integer"),
    ({"bits": {"weights": 0, "activations": 8}}, "bits.weights", "must be in 1..16, got 0"),
    ({"bits": {"weights": "eight", "activations": 8}}, "bits.weights", "must be an integer"),
    ({"bits": {"weights": 8}}, "bits.activations", "is required"),
    ({"bits": {"weights": 8, "activations": 8, "adc": 7}}, "bits.adc", "unknown key"),
    ({"calibration_samples": 0}, "calibration_samples", "must be in 1..inf"),
    ({"checkpoint": 5}, "checkpoint", "must be a string"),
    ({"train": {"epochs": 0}}, "train.epochs", "must be in 1..inf, got 0"),
    ({"train": {"lr": 0}}, "train.lr", "greater than 0"),
    ({"train": {"lr": "fast"}}, "train.lr", "must be a number"),
    ({"train": {"optimizer": "rmsprop"}}, "train.optimizer", "must be one of sgd, adam"),
    ({"train": {"augment": "yes"}}, "train.augment", "must be true or false"),
    ({"train": {"epoch": 3}}, "train.epoch", "unknown key; valid keys here: augment"),
]


@pytest.mark.parametrize("changes, path, fragment", MISTAKES,
                         ids=[f"{m[1]}-{i}" for i, m in enumerate(MISTAKES)])
def test_each_mistake_is_reported_with_its_yaml_path(tmp_path, changes, path, fragment):
    problems = problems_of(tmp_path, edited(**changes))
    assert len(problems) == 1, problems
    assert problems[0][0] == path
    assert fragment in problems[0][1]


def test_several_mistakes_are_reported_together(tmp_path):
    text = edited(model="lenet7", bits={"weights": 99, "activations": 8},
                  train={"epochs": -1, "seed": 0, "warmup": 5}, extra=True)
    with pytest.raises(ConfigError) as info:
        load_workload(write(tmp_path, text))
    paths = [path for path, _ in info.value.problems]
    assert sorted(paths) == sorted(["model", "bits.weights", "train.epochs", "train.warmup",
                                    "extra"])
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'workload.yaml'}: 5 problem(s)")
    for path in paths:
        assert f"  {path}: " in message


def test_top_level_must_be_a_mapping(tmp_path):
    problems = problems_of(tmp_path, "- just\n- a list\n")
    assert problems == [("(top level)", "must be a mapping, got list")]


def test_empty_file_lists_every_required_key(tmp_path):
    paths = [path for path, _ in problems_of(tmp_path, "")]
    assert paths == ["name", "model", "dataset", "bits"]


def test_yaml_syntax_error_is_a_config_error_with_the_line(tmp_path):
    path = write(tmp_path, "name: x\nbits: {weights: 8, activations: 8\nmodel: lenet5\n")
    with pytest.raises(ConfigError, match=r"invalid YAML: line \d+, column \d+") as info:
        load_workload(path)
    assert str(path) in str(info.value)


def test_missing_file_is_a_user_error_naming_it_and_the_builtins(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(UserError, match="lenet5_mnist") as info:
        load_workload(path)
    assert str(path) in str(info.value)
    assert not isinstance(info.value, ConfigError)


def test_missing_checkpoint_is_reported_when_the_model_is_loaded(tmp_path):
    workload = load_workload(write(tmp_path, VALID))  # loading the spec does not need it
    with pytest.raises(DataError) as info:
        workload.load_model()
    message = str(info.value)
    assert str(workload.checkpoint_path) in message
    assert f"imcsim train {tmp_path / 'workload.yaml'}" in message


def test_checkpoint_of_another_model_is_a_data_error(tmp_path):
    workload = load_workload(write(tmp_path, VALID))
    workload.checkpoint_path.parent.mkdir()
    torch.save({"conv1.weight": torch.zeros(3)}, workload.checkpoint_path)
    with pytest.raises(DataError, match="does not fit model 'lenet5'"):
        workload.load_model()
    workload.checkpoint_path.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="cannot read checkpoint"):
        workload.load_model()


def test_shipped_checkpoints_load_in_eval_mode():
    for name in ("digits_cnn", "lenet5_mnist"):
        workload = load_workload(name)
        if not workload.checkpoint_path.is_file():
            pytest.skip(f"{workload.checkpoint_path} not trained yet")
        model = workload.load_model()
        assert not model.training
        assert all(p.dtype == torch.float32 for p in model.parameters())
