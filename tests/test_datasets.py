"""Data set loaders: every on-disk format from tiny files written here, plus clear errors.

The real data sets are used only by the last tests, and only when the project's offline copy
(``../shared/data`` from the project root) exists; otherwise they skip with the reason.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import sys
import tarfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sim.errors import DataError, UserError
from workloads.datasets import (
    CIFAR10_CLASSES,
    DATASETS,
    load_dataset,
    locate_dataset,
    read_idx,
)

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
datasets_module = sys.modules["workloads.datasets"]


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch):
    """No test may read the developer's IMCSIM_DATA or write the real cache."""
    monkeypatch.delenv("IMCSIM_DATA", raising=False)
    monkeypatch.setenv("IMCSIM_CACHE", str(tmp_path / "cache"))


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write ``array`` (uint8) as an IDX file, gzip-compressed when ``path`` ends in .gz."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if path.suffix == ".gz":
        data = gzip.compress(data)
    path.write_bytes(data)


def make_mnist(folder: Path, *, gz: bool, n_train: int = 12, n_test: int = 5, seed: int = 0
               ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Tiny MNIST-format files in ``folder``; returns the raw arrays by split."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    arrays = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels)
        arrays[split] = (images, labels)
    return arrays


def cifar_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random 3x32x32 uint8 images and labels cycling through the classes."""
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8),
            np.arange(n, dtype=np.int64) % 10)


def write_cifar_batches(folder: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Five 2-image training batches and a 3-image test batch in the python format."""
    folder.mkdir(parents=True)
    parts = {}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for i, name in enumerate(names):
        images, labels = cifar_images(3 if name == "test_batch" else 2, seed=i)
        batch = {b"batch_label": name.encode(), b"labels": labels.tolist(),
                 b"data": images.reshape(len(images), -1),
                 b"filenames": [f"{name}_{j}.png".encode() for j in range(len(images))]}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
        parts[name] = (images, labels)
    train = [parts[f"data_batch_{i}"] for i in range(1, 6)]
    return {"train": (np.concatenate([p[0] for p in train]),
                      np.concatenate([p[1] for p in train])),
            "test": parts["test_batch"]}


def write_image_folders(root: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """PNG image folders ``train/<class>/`` and ``test/<class>/`` (lossless, so exact).

    The expected order interleaves the classes: image 0 of every class, then image 1, ...
    """
    expected = {}
    for split, per_class in (("train", 2), ("test", 1)):
        images, labels = [], []
        for j in range(per_class):
            for label, name in enumerate(CIFAR10_CLASSES[:3]):
                (root / split / name).mkdir(parents=True, exist_ok=True)
                image = np.random.default_rng([label, j, len(split)]).integers(
                    0, 256, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(image).save(root / split / name / f"{j:04d}.png")
                images.append(image.transpose(2, 0, 1))
                labels.append(label)
        expected[split] = (np.stack(images), np.array(labels))
    return expected


def test_image_folders_interleave_classes(tmp_path):
    expected = write_image_folders(tmp_path / "cifar10")
    _, labels = load_dataset("cifar10", "train", tmp_path)
    assert labels.tolist() == [0, 1, 2, 0, 1, 2] == expected["train"][1].tolist()


def raw(images: torch.Tensor, name: str) -> np.ndarray:
    """Undo the normalization of :func:`load_dataset` back to integer pixels."""
    info = DATASETS[name]
    mean = torch.tensor(info.mean).view(1, -1, 1, 1)
    std = torch.tensor(info.std).view(1, -1, 1, 1)
    return torch.round((images * std + mean) * info.max_value).to(torch.int64).numpy()


# ---------------------------------------------------------------------------------------
# MNIST-format files


@pytest.mark.parametrize("gz", [True, False], ids=["gzip", "raw"])
def test_mnist_idx_files_load_normalized(tmp_path, gz):
    arrays = make_mnist(tmp_path / "mnist", gz=gz)
    for split in ("train", "test"):
        images, labels = load_dataset("mnist", split, tmp_path)
        want_images, want_labels = arrays[split]
        assert images.dtype == torch.float32 and labels.dtype == torch.int64
        assert images.shape == (len(want_labels), 1, 28, 28)
        np.testing.assert_array_equal(raw(images, "mnist")[:, 0], want_images)
        np.testing.assert_array_equal(labels.numpy(), want_labels)
    # (x / 255 - mean) / std, with the documented constants.
    expected_first = (arrays["test"][0][0, 0, 0] / 255 - 0.1307) / 0.3081
    assert images[0, 0, 0, 0].item() == pytest.approx(expected_first, rel=1e-6)


def test_fashion_mnist_subfolder_names_and_env_variable(tmp_path, monkeypatch):
    for i, sub in enumerate(("fashion-mnist", "fashion_mnist")):
        root = tmp_path / str(i)
        arrays = make_mnist(root / sub, gz=i == 0, seed=i)
        monkeypatch.setenv("IMCSIM_DATA", str(root))
        _, labels = load_dataset("fashion_mnist", "test")
        np.testing.assert_array_equal(labels.numpy(), arrays["test"][1])


def test_data_dir_argument_wins_over_environment(tmp_path, monkeypatch):
    make_mnist(tmp_path / "given", gz=True, n_test=3)
    make_mnist(tmp_path / "env", gz=True, n_test=7)
    monkeypatch.setenv("IMCSIM_DATA", str(tmp_path / "env"))
    assert len(load_dataset("mnist", "test", tmp_path / "given")[1]) == 3
    assert len(load_dataset("mnist", "test")[1]) == 7


def test_missing_data_set_names_folders_files_and_fixes(tmp_path):
    with pytest.raises(DataError) as info:
        load_dataset("mnist", "train", tmp_path)
    message = str(info.value)
    for expected in ("mnist", str(tmp_path), str(tmp_path / "mnist"),
                     "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                     "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz",
                     "--data-dir", "IMCSIM_DATA", "imcsim data download mnist"):
        assert expected in message


def test_no_data_folder_given_says_how_to_give_one():
    with pytest.raises(DataError, match="IMCSIM_DATA") as info:
        load_dataset("cifar10", "test")
    message = str(info.value)
    assert "no data folder" in message and "cifar-10-batches-py" in message
    assert "imcsim data download cifar10" in message


def test_partial_idx_set_lists_the_missing_files(tmp_path):
    make_mnist(tmp_path, gz=True)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"3 of the 4 files; missing: t10k-labels-idx1-ubyte"):
        load_dataset("mnist", "train", tmp_path)


@pytest.mark.parametrize("content, fragment", [
    (b"\x00\x00\x09\x03" + bytes(12), "bad magic"),
    (struct.pack(">BBBBIII", 0, 0, 8, 3, 2, 28, 28) + bytes(100), "header says"),
    (b"", "bad magic"),
])
def test_malformed_idx_file_is_a_data_error_naming_it(tmp_path, content, fragment):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(content)
    with pytest.raises(DataError, match=fragment) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_images_and_labels_of_different_length_are_rejected(tmp_path):
    make_mnist(tmp_path, gz=False)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(4, np.uint8))
    with pytest.raises(DataError, match="expected 5 labels"):
        load_dataset("mnist", "test", tmp_path)


def test_unknown_names_list_the_valid_ones(tmp_path):
    with pytest.raises(UserError, match="cifar10, digits, fashion_mnist, mnist"):
        load_dataset("imagenet", "train", tmp_path)
    with pytest.raises(UserError, match="train or test"):
        load_dataset("digits", "validation")


# ---------------------------------------------------------------------------------------
# CIFAR-10


def test_cifar_python_batches(tmp_path):
    expected = write_cifar_batches(tmp_path / "cifar10" / "cifar-10-batches-py")
    assert locate_dataset("cifar10", tmp_path).kind == "cifar_batches"
    for split in ("train", "test"):
        images, labels = load_dataset("cifar10", split, tmp_path)
        assert images.shape == (len(expected[split][1]), 3, 32, 32)
        np.testing.assert_array_equal(raw(images, "cifar10"), expected[split][0])
        np.testing.assert_array_equal(labels.numpy(), expected[split][1])


def test_cifar_python_tarball_is_read_without_extracting(tmp_path):
    expected = write_cifar_batches(tmp_path / "src" / "cifar-10-batches-py")
    (tmp_path / "data").mkdir()
    with tarfile.open(tmp_path / "data" / "cifar-10-python.tar.gz", "w:gz") as archive:
        archive.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    assert locate_dataset("cifar10", tmp_path / "data").kind == "cifar_tarball"
    images, labels = load_dataset("cifar10", "train", tmp_path / "data")
    np.testing.assert_array_equal(raw(images, "cifar10"), expected["train"][0])
    np.testing.assert_array_equal(labels.numpy(), expected["train"][1])


def test_pickle_that_would_run_code_is_refused(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar_batches(folder)

    class Exploit:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    (folder / "test_batch").write_bytes(pickle.dumps({b"data": Exploit()}))
    with pytest.raises(DataError, match="refusing to load"):
        load_dataset("cifar10", "test", tmp_path)


def test_cifar_image_folders_plain(tmp_path):
    expected = write_image_folders(tmp_path / "cifar10")
    assert locate_dataset("cifar10", tmp_path).kind == "image_folders"
    for split in ("train", "test"):
        images, labels = load_dataset("cifar10", split, tmp_path)
        np.testing.assert_array_equal(raw(images, "cifar10"), expected[split][0])
        np.testing.assert_array_equal(labels.numpy(), expected[split][1])


def _tar_image_folders(tmp_path: Path, prefix: str = "") -> tuple[Path, dict]:
    expected = write_image_folders(tmp_path / "src")
    archive_path = tmp_path / "data" / "cifar10" / "cifar10-images.tar.gz"
    archive_path.parent.mkdir(parents=True)
    with tarfile.open(archive_path, "w:gz") as archive:
        for split in ("train", "test"):
            archive.add(tmp_path / "src" / split, arcname=f"{prefix}{split}")
    return archive_path, expected


@pytest.mark.parametrize("prefix", ["", "cifar10-jpeg/"], ids=["top", "nested"])
def test_cifar_image_tarball_is_decoded_once_then_cached(tmp_path, monkeypatch, prefix):
    archive_path, expected = _tar_image_folders(tmp_path, prefix)
    data_dir = tmp_path / "data"
    assert locate_dataset("cifar10", data_dir).kind == "image_tarball"
    images, labels = load_dataset("cifar10", "test", data_dir)
    np.testing.assert_array_equal(raw(images, "cifar10"), expected["test"][0])
    np.testing.assert_array_equal(labels.numpy(), expected["test"][1])

    cache = tmp_path / "cache"
    cached = sorted(p.name for p in cache.iterdir())
    # Both splits cached from the one pass; no temporary file left behind.
    assert len(cached) == 4 and all(name.endswith(".npy") for name in cached)

    def no_decoding(source):
        raise AssertionError("decoded again despite a warm cache")

    monkeypatch.setattr(datasets_module, "_decode_archive", no_decoding)
    images2, labels2 = load_dataset("cifar10", "train", data_dir)
    np.testing.assert_array_equal(raw(images2, "cifar10"), expected["train"][0])
    np.testing.assert_array_equal(labels2.numpy(), expected["train"][1])


def test_cache_is_keyed_by_source_mtime_and_survives_a_corrupt_entry(tmp_path):
    archive_path, expected = _tar_image_folders(tmp_path)
    data_dir = tmp_path / "data"
    load_dataset("cifar10", "test", data_dir)
    cache = tmp_path / "cache"
    first = set(cache.iterdir())

    # A changed source (new mtime) gets a new cache entry rather than stale arrays.
    stat = archive_path.stat()
    os.utime(archive_path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    load_dataset("cifar10", "test", data_dir)
    second = set(cache.iterdir()) - first
    assert len(second) == 4

    # A truncated entry (as after a crash without the temp-then-rename) is ignored.
    for path in second:
        if path.name.endswith("test-images.npy"):
            path.write_bytes(path.read_bytes()[:100])
    images, _ = load_dataset("cifar10", "test", data_dir)
    np.testing.assert_array_equal(raw(images, "cifar10"), expected["test"][0])


def test_unrelated_tarball_is_not_taken_for_cifar(tmp_path):
    folder = tmp_path / "cifar10"
    folder.mkdir()
    with tarfile.open(folder / "other.tar.gz", "w:gz") as archive:
        data = b"hello"
        member = tarfile.TarInfo("notes/readme.txt")
        member.size = len(data)
        archive.addfile(member, io.BytesIO(data))
    with pytest.raises(DataError, match="other.tar.gz.*holds neither"):
        load_dataset("cifar10", "test", tmp_path)


def test_wrong_image_size_is_a_data_error(tmp_path):
    folder = tmp_path / "train" / "cat"
    folder.mkdir(parents=True)
    (tmp_path / "test" / "cat").mkdir(parents=True)
    Image.new("RGB", (28, 28)).save(folder / "0.png")
    with pytest.raises(DataError, match="expected 32x32"):
        load_dataset("cifar10", "train", tmp_path)


# ---------------------------------------------------------------------------------------
# scikit-learn digits and the real data


def test_digits_need_no_files_and_split_is_fixed():
    x_train, y_train = load_dataset("digits", "train")
    x_test, y_test = load_dataset("digits", "test")
    assert x_train.shape == (1437, 1, 8, 8) and x_test.shape == (360, 1, 8, 8)
    assert abs(torch.cat([x_train, x_test]).mean().item()) < 1e-3
    again, _ = load_dataset("digits", "test")
    assert torch.equal(again, x_test)
    # Train and test are disjoint pieces of the 1,797 images.
    pixels = {tuple(row) for row in x_train.flatten(1).tolist()}
    assert sum(tuple(row) in pixels for row in x_test.flatten(1).tolist()) < 5


def test_real_mnist_test_split_if_available():
    folder = SHARED_DATA / "mnist"
    if not folder.is_dir():
        pytest.skip(f"offline MNIST copy not found at {folder}")
    images, labels = load_dataset("mnist", "test", SHARED_DATA)
    assert images.shape == (10000, 1, 28, 28)
    # Label counts published in the shared data README.
    assert np.bincount(labels.numpy()).tolist() == [980, 1135, 1032, 1010, 982, 892, 958,
                                                    1028, 974, 1009]
    assert abs(images.mean().item()) < 0.02 and abs(images.std().item() - 1) < 0.02


def test_real_cifar10_tarball_is_found_if_available():
    folder = SHARED_DATA / "cifar10"
    if not folder.is_dir():
        pytest.skip(f"offline CIFAR-10 copy not found at {folder}")
    # Decoding all 60,000 JPEGs takes ~15 s, too slow here; finding the archive is checked.
    source = locate_dataset("cifar10", SHARED_DATA)
    assert source.kind == "image_tarball"
    assert source.files[0].name == "cifar10-jpeg.tar.gz"


# ---------------------------------------------------------------------------------------
# Damaged compressed files: every one is a DataError naming the file, never a zlib traceback


def _corrupt_deflate(data: bytes, keep: int = 0) -> bytes:
    """A gzip file whose first ``keep`` bytes of ``data`` inflate fine, followed by a deflate
    block of the invalid type 3: reading past ``keep`` raises zlib.error (not a gzip header
    or CRC error, which are OSErrors)."""
    head = b"\x1f\x8b\x08\x00" + bytes(4) + b"\x00\xff"
    deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
    body = deflate.compress(data[:keep]) + deflate.flush(zlib.Z_FULL_FLUSH) if keep else b""
    return head + body + b"\xff" * 64


def _damaged_variants(data: bytes) -> dict[str, bytes]:
    packed = gzip.compress(data, mtime=0)
    crc = bytearray(packed)
    crc[-8] ^= 0xFF
    return {"deflate": _corrupt_deflate(data), "truncated": packed[: len(packed) // 2],
            "crc": bytes(crc), "not gzip": b"PK\x03\x04" + bytes(100)}


@pytest.mark.parametrize("damage", ["deflate", "truncated", "crc", "not gzip"])
def test_damaged_gzip_idx_is_a_data_error(tmp_path, damage):
    make_mnist(tmp_path, gz=True)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(_damaged_variants(gzip.decompress(path.read_bytes()))[damage])
    with pytest.raises(DataError) as info:
        load_dataset("mnist", "test", tmp_path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("damage", ["deflate", "truncated"])
@pytest.mark.parametrize("kind", ["cifar_tarball", "image_tarball"])
def test_damaged_cifar_tarball_is_a_data_error(tmp_path, kind, damage):
    if kind == "image_tarball":
        archive_path, _ = _tar_image_folders(tmp_path)
    else:
        write_cifar_batches(tmp_path / "src" / "cifar-10-batches-py")
        archive_path = tmp_path / "data" / "cifar-10-python.tar.gz"
        archive_path.parent.mkdir()
        with tarfile.open(archive_path, "w:gz") as archive:
            archive.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    plain = gzip.decompress(archive_path.read_bytes())
    packed = gzip.compress(plain, mtime=0)
    if damage == "truncated":
        damaged = packed[: len(packed) * 2 // 3]
    else:  # the first members (which identify the kind) intact, then a bad deflate block
        damaged = _corrupt_deflate(plain, keep=len(plain) // 3)
    archive_path.write_bytes(damaged)
    with pytest.raises(DataError) as info:
        load_dataset("cifar10", "test", tmp_path / "data")
    assert str(archive_path) in str(info.value)


@pytest.mark.parametrize("resize", [None, (6, 6)])
def test_first_samples_equal_the_whole_splits_first(resize):
    """``first=n``: the split's first n samples, preprocessed, bit for bit those of the
    whole split (a run's calibration samples), resized or not; a different n moves them."""
    from workloads.datasets import Preprocessing

    pre = Preprocessing(mean=(0.3,), std=(0.7,), resize=resize)
    x, y = load_dataset("digits", "train", preprocessing=pre)
    xf, yf = load_dataset("digits", "train", preprocessing=pre, first=37)
    assert xf.shape[0] == 37 and torch.equal(xf, x[:37]) and torch.equal(yf, y[:37])
    assert load_dataset("digits", "train", preprocessing=pre, first=5)[0].shape[0] == 5
