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
    # Compressed workloads (mapping: packed) store their weights at their own bits; the
    # "_w16" ones are the FORMS variation study's 16-bit originals (docs/forms.md).
    expected = (4 if name.endswith("_capram") else 16 if name.endswith("_w16") else 8)
    assert by_name.bits.weights == expected
    assert by_name.bits.activations == 8
    assert by_name.checkpoint_path.parent.name == "checkpoints"


MISTAKES = [
    # (changes to VALID, YAML path, fragment of the message)
    ({"colour": "red"}, "colour", "unknown key; valid keys here:"),
    ({"name": None}, "name", "is required"),
    ({"name": "a/b"}, "name", "letters, digits"),
    ({"model": "resnet99"}, "model",
     "must be one of cifar_cnn, digits_cnn, lenet5, lenet_bn, resnet20, row_gru, "
     "spiking_cifar_cnn, spiking_lenet, vgg_small"),
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


# ---------------------------------------------------------------------------------------
# A user's own model: model: file.py:Class or package.module:Class, model_args, preprocessing

USER_MODEL = """\
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, hidden=32, num_classes=10):
        super().__init__()
        self.fc1 = nn.Linear(64, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


def make(hidden=32):
    return Net(hidden=hidden)


class Shaped(Net):
    input_shape = (1, 12, 12)

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(144, 32)
"""

USER_YAML = """\
name: mine
model: nets/user_net.py:Net
model_args: {hidden: 24}
dataset: digits
bits: {weights: 8, activations: 8}
"""


def user_files(tmp_path: Path, yaml_text: str = USER_YAML, model_text: str = USER_MODEL):
    (tmp_path / "nets").mkdir(exist_ok=True)
    (tmp_path / "nets" / "user_net.py").write_text(model_text)
    return write(tmp_path, yaml_text)


def test_user_model_file_relative_to_the_yaml_with_constructor_arguments(tmp_path):
    workload = load_workload(user_files(tmp_path))
    assert workload.model == "nets/user_net.py:Net" and workload.model_args == {"hidden": 24}
    assert workload.model_ref.file == (tmp_path / "nets" / "user_net.py").resolve()
    model = workload.build_model()
    assert type(model).__name__ == "Net" and model.fc1.out_features == 24
    assert workload.train_command == f"imcsim train {tmp_path / 'workload.yaml'}"


def test_user_model_by_absolute_path_and_by_module_name(tmp_path):
    path = user_files(tmp_path)
    absolute = load_workload(write(tmp_path, USER_YAML.replace(
        "nets/user_net.py", str(tmp_path / "nets" / "user_net.py")), "abs.yaml"))
    assert absolute.build_model().fc1.out_features == 24
    # package.module:Class, found from the YAML's folder first.
    (tmp_path / "nets" / "__init__.py").write_text("")
    by_module = load_workload(write(tmp_path, USER_YAML.replace(
        "nets/user_net.py:Net", "nets.user_net:Net"), "mod.yaml"))
    assert by_module.model_ref.module == "nets.user_net"
    assert by_module.build_model().fc1.out_features == 24
    assert load_workload(path).build_model().fc1.out_features == 24
    # A factory function instead of a class.
    factory = load_workload(write(tmp_path, USER_YAML.replace(":Net", ":make"), "fn.yaml"))
    assert type(factory.build_model()).__name__ == "Net"
    not_a_module = load_workload(write(tmp_path, USER_YAML.replace(":Net", ":torch.zeros")
                                       .replace("{hidden: 24}", "{size: [2]}"), "t.yaml"))
    with pytest.raises(UserError, match="made a Tensor, not a torch.nn.Module"):
        not_a_module.build_model()


USER_MISTAKES = [
    # (model entry, model file text, fragment of the problem at `model`)
    ("nets/missing.py:Net", USER_MODEL, "model file not found: "),
    ("nets/user_net.py:Nett", USER_MODEL, "has no 'Nett'; nn.Module classes defined there: "
                                          "Net, Shaped"),
    ("nets/user_net.py:Net", USER_MODEL + "\nraise RuntimeError('boom')\n",
     "importing {file} failed: RuntimeError: boom ({file}, line "
     + str(USER_MODEL.count("\n") + 2) + ")"),
    ("nets/user_net.py:Net", "import no_such_package_xyz\n",
     "failed: ModuleNotFoundError: No module named 'no_such_package_xyz' ({file}, line 1)"),
    ("nets/user_net.py:Net", "def broken(:\n", "failed: SyntaxError: "),
    ("no_such_module_xyz:Net", USER_MODEL, "no module named 'no_such_module_xyz'"),
    ("nets/user_net.py:1x", USER_MODEL, "is not of the form path/to/file.py:Class"),
    ("lenet", USER_MODEL, "must be one of cifar_cnn, digits_cnn, lenet5, lenet_bn, resnet20, "
                          "row_gru, spiking_cifar_cnn, spiking_lenet, vgg_small, or a model "
                          "class of your own"),
]


@pytest.mark.parametrize("entry, text, fragment", USER_MISTAKES,
                         ids=[m[0] for m in USER_MISTAKES])
def test_user_model_mistakes_are_one_problem_at_model(tmp_path, entry, text, fragment):
    path = user_files(tmp_path, USER_YAML.replace("nets/user_net.py:Net", entry), text)
    with pytest.raises(ConfigError) as info:
        load_workload(path)
    assert len(info.value.problems) == 1, info.value.problems
    where, message = info.value.problems[0]
    assert where == "model"
    assert fragment.format(file=tmp_path / "nets" / "user_net.py") in message, message
    assert str(info.value).startswith(f"{path}: 1 problem(s)")


def test_constructor_and_forward_failures_name_the_yaml(tmp_path):
    path = user_files(tmp_path, USER_YAML.replace("{hidden: 24}", "{hidden: 24, depth: 3}"))
    with pytest.raises(UserError) as info:
        load_workload(path).build_model()
    message = str(info.value)
    assert message.startswith(f"{path}: model: nets/user_net.py:Net(hidden=24, depth=3) failed")
    assert "unexpected keyword argument 'depth'" in message and "model_args" in message
    # Wrong number of classes: the output shape is checked against the data set.
    path = user_files(tmp_path, USER_YAML.replace("{hidden: 24}", "{num_classes: 3}"))
    with pytest.raises(UserError, match=r"returns \(2, 3\) for a batch of 2, expected logits "
                                        r"of shape \(2, 10\)"):
        load_workload(path).build_model()
    # A model for other inputs: the forward pass on the data set's shape fails.
    path = user_files(tmp_path, USER_YAML.replace("dataset: digits", "dataset: mnist"))
    with pytest.raises(UserError, match=r"fails on inputs of shape 1x28x28 \(data set mnist\): "
                                        r"RuntimeError"):
        load_workload(path).build_model()
    assert not isinstance(info.value, ConfigError)


def test_model_args_keys_must_be_argument_names(tmp_path):
    problems = problems_of(tmp_path, edited(model_args={"1x": 2}))
    assert problems == [("model_args", "keys must be Python argument names, got '1x'")]
    problems = problems_of(tmp_path, edited(model_args=[1, 2]))
    assert problems[0][0] == "model_args" and "must be a mapping" in problems[0][1]


def test_preprocessing_defaults_to_the_data_set_constants(tmp_path):
    from workloads.datasets import DATASETS, default_preprocessing, load_dataset

    workload = load_workload(user_files(tmp_path))
    assert workload.preprocessing is None
    assert workload.input_preprocessing == default_preprocessing(DATASETS["digits"])
    assert workload.input_preprocessing.mean == (0.3053,)  # documented in docs/workloads.md
    x, _ = workload.load_data("test")
    assert torch.equal(x, load_dataset("digits", "test")[0])


def test_preprocessing_mean_std_and_resize_move_the_inputs(tmp_path):
    yaml_text = USER_YAML.replace("nets/user_net.py:Net", "nets/user_net.py:Shaped") \
        .replace("model_args: {hidden: 24}\n", "") + \
        "preprocessing: {resize: 12, mean: 0.5, std: [0.25]}\n"
    workload = load_workload(user_files(tmp_path, yaml_text))
    assert workload.preprocessing.resize == (12, 12) and workload.input_shape == (1, 12, 12)
    x, _ = workload.load_data("test")
    assert x.shape[1:] == (1, 12, 12)
    # Scaled pixels are in [0, 1]: with mean 0.5 and std 0.25 the inputs span [-2, 2].
    assert float(x.min()) >= -2.0 - 1e-6 and float(x.max()) <= 2.0 + 1e-6
    assert float(x.min()) == pytest.approx(-2.0)
    workload.build_model()  # the model's 12x12 input_shape matches the resized data
    # Leaving resize out: the declared input_shape no longer matches, at load time.
    problems = problems_of(tmp_path, yaml_text.replace("resize: 12, ", ""))
    assert problems == [("dataset", "model nets/user_net.py:Shaped takes 1x12x12 inputs but "
                                    "data set digits has 1x8x8 images")]


PREPROCESSING_MISTAKES = [
    ({"std": 0}, "preprocessing.std", "must be greater than 0"),
    ({"mean": [0.1, 0.2]}, "preprocessing.mean", "has 2 values; give 1 or one per channel (1)"),
    ({"mean": ["a"]}, "preprocessing.mean", "must be a number or a list of numbers"),
    ({"resize": [8]}, "preprocessing.resize", "must be a size in pixels or [height, width]"),
    ({"resize": 0}, "preprocessing.resize", "at least 1"),
    ({"crop": 4}, "preprocessing.crop", "unknown key; valid keys here: mean, resize, std"),
]


@pytest.mark.parametrize("section, path, fragment", PREPROCESSING_MISTAKES,
                         ids=[f"{m[1]}-{i}" for i, m in enumerate(PREPROCESSING_MISTAKES)])
def test_preprocessing_mistakes_have_their_yaml_path(tmp_path, section, path, fragment):
    problems = problems_of(tmp_path, edited(preprocessing=section))
    assert len(problems) == 1 and problems[0][0] == path and fragment in problems[0][1], problems
