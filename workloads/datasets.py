"""Data set loaders: the standard on-disk formats, from any folder the user names.

:func:`load_dataset` returns ``(images, labels)``: float32 images ``(N, C, H, W)`` already
preprocessed, and int64 labels. Preprocessing (:class:`Preprocessing`) is: scale pixels to
``[0, 1]`` (``x / max_value``), optionally resize (bilinear) to ``resize``, then normalize
per channel, ``(x - mean) / std``. Its default is each data set's fixed constants in
:data:`DATASETS` (what every shipped workload and checkpoint uses); a workload YAML may name
its own ``preprocessing:`` (see ``docs/workloads.md``). Nothing is downloaded here; see
:mod:`workloads.download` (``imcsim data download NAME``).

Where the files are looked for, in order: the ``data_dir`` argument (the CLI's
``--data-dir``), else the environment variable ``IMCSIM_DATA``; in that folder and in the
data set's usual subfolders (``mnist/``, ``fashion-mnist/``, ``cifar10/``, ...). A missing
data set raises one :class:`~sim.errors.DataError` naming the folders searched, the files
expected and how to get them.

Formats read:

- ``digits``: scikit-learn's bundled 8x8 digits; no files needed.
- ``mnist``, ``fashion_mnist``: the four IDX files, gzip (``.gz``) or uncompressed.
- ``cifar10``: the python batches (``cifar-10-batches-py/``, or the ``cifar-10-python.tar.gz``
  they come in), or image folders ``train/<class>/*.png|jpg`` and ``test/<class>/*``, plain
  or inside a ``.tar.gz`` (in class-interleaved order, so that the first N samples are
  class-balanced; the python batches keep their own order). Decoding 60,000 images takes
  ~15 s, so the decoded uint8 arrays
  are cached as ``.npy`` under ``IMCSIM_CACHE`` (default ``~/.cache/imcsim``), keyed by the
  source's path, size and modification time.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import lzma
import os
import pickle
import struct
import tarfile
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sim.errors import DataError, UserError
from sim.fileio import atomic_write

#: Environment variable naming the data folder when no ``data_dir`` is given.
DATA_ENV = "IMCSIM_DATA"
#: Environment variable naming the cache folder for decoded arrays.
CACHE_ENV = "IMCSIM_CACHE"

SPLITS = ("train", "test")

#: Fixed seed of the digits train/test permutation; changing it changes every digits result.
DIGITS_SPLIT_SEED = 0
#: Fraction of the 1,797 digits used for training (1,437 train, 360 test).
DIGITS_TRAIN_FRACTION = 0.8

_IDX_STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_CIFAR_BATCHES = {
    "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test": ("test_batch",),
}
_CIFAR_TARBALL = "cifar-10-python.tar.gz"
_CIFAR_BATCH_DIR = "cifar-10-batches-py"
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
# Bump when the cached array layout changes, so stale caches are never read.
_CACHE_FORMAT = 2  # 2: image folders in class-interleaved order

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")


@dataclass(frozen=True, kw_only=True)
class DatasetInfo:
    """What imcsim knows about one data set: shape, classes, files and normalization.

    Attributes:
        name: the key used in workload YAML and on the command line.
        title: a human-readable name for messages.
        shape: ``(channels, height, width)`` of one image.
        classes: class names in label order.
        train_size, test_size: number of samples in each split of the full data set.
        max_value: the largest raw pixel value (255, or 16 for scikit-learn digits).
        mean, std: per-channel constants applied after scaling pixels to ``[0, 1]``.
        subfolders: folders below the data folder that are searched too.
        files: the file layouts accepted, as shown in error messages.
        downloadable: whether ``imcsim data download`` can fetch it.
        citation: where the data set comes from.
    """

    name: str
    title: str
    shape: tuple[int, int, int]
    classes: tuple[str, ...]
    train_size: int
    test_size: int
    max_value: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    subfolders: tuple[str, ...]
    files: tuple[str, ...]
    downloadable: bool
    citation: str


def _idx_files() -> tuple[str, ...]:
    stems = [stem for split in SPLITS for stem in _IDX_STEMS[split]]
    return tuple(f"{stem}.gz (or uncompressed {stem})" for stem in stems)


#: Every data set :func:`load_dataset` reads. The normalization constants are fixed (not
#: recomputed from whatever copy is on disk) so a checkpoint always sees the same inputs.
DATASETS: dict[str, DatasetInfo] = {
    "digits": DatasetInfo(
        name="digits", title="scikit-learn digits", shape=(1, 8, 8),
        classes=tuple(str(i) for i in range(10)), train_size=1437, test_size=360,
        # Mean and std of all 1,797 images scaled by 1/16.
        max_value=16, mean=(0.3053,), std=(0.3760,), subfolders=(),
        files=("(none: bundled with scikit-learn)",), downloadable=False,
        citation="UCI optical recognition of handwritten digits, via sklearn.datasets"),
    "mnist": DatasetInfo(
        name="mnist", title="MNIST", shape=(1, 28, 28),
        classes=tuple(str(i) for i in range(10)), train_size=60000, test_size=10000,
        # The customary constants: mean and std of the 60,000 training images.
        max_value=255, mean=(0.1307,), std=(0.3081,),
        subfolders=("mnist", "MNIST", "MNIST/raw"), files=_idx_files(), downloadable=True,
        citation="Y. LeCun, C. Cortes, C. Burges (CC BY-SA 3.0)"),
    "fashion_mnist": DatasetInfo(
        name="fashion_mnist", title="Fashion-MNIST", shape=(1, 28, 28),
        classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                 "Sneaker", "Bag", "Ankle boot"),
        train_size=60000, test_size=10000,
        # Mean and std of the 60,000 training images.
        max_value=255, mean=(0.2860,), std=(0.3530,),
        subfolders=("fashion-mnist", "fashion_mnist", "FashionMNIST/raw"),
        files=_idx_files(), downloadable=True, citation="H. Xiao, K. Rasul, R. Vollgraf, "
        "Zalando Research (MIT)"),
    "cifar10": DatasetInfo(
        name="cifar10", title="CIFAR-10", shape=(3, 32, 32), classes=CIFAR10_CLASSES,
        train_size=50000, test_size=10000,
        # Per-channel mean and (population) std of the 50,000 original training images.
        max_value=255, mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616),
        subfolders=("cifar10", "cifar-10", "CIFAR10"),
        files=(f"{_CIFAR_BATCH_DIR}/data_batch_1 ... data_batch_5 and test_batch",
               f"or the {_CIFAR_TARBALL} holding them",
               "or image folders train/<class>/*.png|jpg and test/<class>/*.png|jpg",
               "or a .tar.gz holding those image folders (e.g. cifar10-jpeg.tar.gz)",
               f"with <class> one of {' '.join(CIFAR10_CLASSES)}"),
        downloadable=True, citation="A. Krizhevsky, Learning Multiple Layers of Features "
        "from Tiny Images, 2009"),
}


@dataclass(frozen=True, kw_only=True)
class Preprocessing:
    """How raw images become model inputs: scale to ``[0, 1]``, resize, normalize.

    Attributes:
        mean, std: per-channel constants (one value, or one per channel) applied after scaling
            (and resizing): ``(x - mean) / std``.
        resize: ``(height, width)`` to resize to (bilinear, antialiased when shrinking), or
            ``None`` to keep the data set's size.
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]
    resize: tuple[int, int] | None = None

    def shape(self, info: DatasetInfo) -> tuple[int, int, int]:
        """``(channels, height, width)`` of one preprocessed image of data set ``info``."""
        c, h, w = info.shape
        return (c, *self.resize) if self.resize is not None else (c, h, w)


def default_preprocessing(info: DatasetInfo) -> Preprocessing:
    """The data set's fixed normalization, no resize: the default of every workload."""
    return Preprocessing(mean=info.mean, std=info.std)


@dataclass(frozen=True, kw_only=True)
class DataSource:
    """Where a data set was found on disk.

    Attributes:
        dataset: key of :data:`DATASETS`.
        kind: ``sklearn``, ``idx``, ``cifar_batches``, ``cifar_tarball``, ``image_folders``
            or ``image_tarball``.
        folder: the folder the files are in (``None`` for ``sklearn``).
        files: the files (or, for ``image_folders``, the two split folders) read.
    """

    dataset: str
    kind: str
    folder: Path | None
    files: tuple[Path, ...]


def dataset_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of ``name``; a miss raises a UserError listing valid names."""
    try:
        return DATASETS[name]
    except (KeyError, TypeError):
        raise UserError(f"unknown data set {name!r}; choose one of "
                        f"{', '.join(sorted(DATASETS))}") from None


def load_dataset(name: str, split: str, data_dir: str | os.PathLike[str] | None = None,
                 preprocessing: Preprocessing | None = None, first: int | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Load one split of a data set, preprocessed.

    Args:
        name: a key of :data:`DATASETS` (``digits``, ``mnist``, ``fashion_mnist``,
            ``cifar10``).
        split: ``"train"`` or ``"test"``.
        data_dir: folder holding the files (or their usual subfolder); default
            ``$IMCSIM_DATA``. Not needed for ``digits``.
        preprocessing: resize and normalization (default: :func:`default_preprocessing`, the
            data set's fixed mean and std, no resize).
        first: only the split's first ``first`` samples (all when ``None``): the same values
            as those of the whole split (preprocessing is per image), without preprocessing
            the rest (a run's calibration samples: 256 of CIFAR-10's 50,000 training images,
            1.3 s and 600 MiB of float32 less).

    Returns:
        ``(images, labels)``: float32 ``(N, C, H, W)`` preprocessed, and int64 ``(N,)``.

    Raises:
        DataError: the files are missing or malformed (one message saying how to fix it).
        UserError: unknown data set or split.
    """
    info = dataset_info(name)
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r} of data set {name!r}; choose train or test")
    source = locate_dataset(name, data_dir)
    images, labels = load_raw(source, split)
    if first is not None:
        images, labels = images[:first], labels[:first]
    return normalize(images, info, preprocessing), torch.from_numpy(labels.astype(np.int64))


def normalize(images: np.ndarray, info: DatasetInfo,
              preprocessing: Preprocessing | None = None) -> torch.Tensor:
    """Raw integer images ``(N, C, H, W)`` -> float32 model inputs.

    ``x / max_value``, resized to ``preprocessing.resize`` if set, then ``(x - mean) / std``
    per channel; ``preprocessing`` defaults to the data set's fixed constants.
    """
    pre = preprocessing if preprocessing is not None else default_preprocessing(info)
    x = torch.from_numpy(np.ascontiguousarray(images)).to(torch.float32)
    x.div_(float(info.max_value))
    if pre.resize is not None and tuple(x.shape[-2:]) != tuple(pre.resize):
        x = torch.nn.functional.interpolate(x, size=tuple(pre.resize), mode="bilinear",
                                            align_corners=False, antialias=True)
    mean = torch.tensor(pre.mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(pre.std, dtype=torch.float32).view(1, -1, 1, 1)
    return x.sub_(mean).div_(std)


def load_raw(source: DataSource, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The un-normalized uint8 images ``(N, C, H, W)`` and labels of one split of ``source``."""
    info = DATASETS[source.dataset]
    if source.kind == "sklearn":
        images, labels = _load_digits(split)
    elif source.kind == "idx":
        images, labels = _load_idx(source, split, info)
    elif source.kind == "cifar_batches":
        images, labels = _load_cifar_batches(source.folder, split)  # type: ignore[arg-type]
    else:
        images, labels = _cached(source, split, lambda: _decode_archive(source))
    if labels.size and int(labels.max()) >= len(info.classes):
        raise DataError(f"{info.title} labels in {source.folder} go up to {int(labels.max())}, "
                        f"but the data set has {len(info.classes)} classes")
    return images, labels


# ---------------------------------------------------------------------------------------
# Finding the files


def data_root(data_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """The data folder in effect: ``data_dir`` if given, else ``$IMCSIM_DATA``, else None."""
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser()
    env = os.environ.get(DATA_ENV, "")
    return Path(env).expanduser() if env else None


def locate_dataset(name: str, data_dir: str | os.PathLike[str] | None = None) -> DataSource:
    """Find the files of data set ``name`` without reading them.

    Raises:
        DataError: nothing usable found; the message names the folders searched, the file
            names expected, and how to fix it.
    """
    info = dataset_info(name)
    if name == "digits":
        return DataSource(dataset=name, kind="sklearn", folder=None, files=())
    root = data_root(data_dir)
    if root is None:
        raise _missing(info, [], "no data folder was given (no --data-dir and "
                                 f"${DATA_ENV} is not set)")
    folders = [root] + [root / sub for sub in info.subfolders]
    notes: list[str] = []
    for folder in folders:
        if not folder.is_dir():
            continue
        finder = _find_idx if info.name in ("mnist", "fashion_mnist") else _find_cifar
        found = finder(info, folder, notes)
        if found is not None:
            return found
    reason = f"{info.title} was not found"
    if not root.is_dir():
        reason = f"the data folder {root} does not exist"
    raise _missing(info, folders, reason, notes)


def _missing(info: DatasetInfo, folders: list[Path], reason: str,
             notes: list[str] | None = None) -> DataError:
    lines = [f"data set {info.name!r} ({info.title}): {reason}."]
    if folders:
        lines.append("Searched: " + ", ".join(str(f) for f in folders))
    lines += [f"  {n}" for n in notes or []]
    lines.append("Expected, in one of those folders:")
    lines += [f"  {f}" for f in info.files]
    fix = (f"Fix: pass --data-dir FOLDER (data_dir= in Python) or set {DATA_ENV}=FOLDER to a "
           "folder holding them")
    if info.downloadable:
        fix += f", or fetch them with: imcsim data download {info.name} --data-dir FOLDER"
    if info.name == "fashion_mnist":
        fix += (" (on Debian/Ubuntu, `apt-get install dataset-fashion-mnist` puts them in "
                "/usr/share/datasets/fashion-mnist)")
    lines.append(fix + ".")
    return DataError("\n".join(lines))


def _find_idx(info: DatasetInfo, folder: Path, notes: list[str]) -> DataSource | None:
    found: list[Path] = []
    missing: list[str] = []
    for split in SPLITS:
        for stem in _IDX_STEMS[split]:
            for candidate in (folder / f"{stem}.gz", folder / stem):
                if candidate.is_file():
                    found.append(candidate)
                    break
            else:
                missing.append(stem)
    if not missing:
        return DataSource(dataset=info.name, kind="idx", folder=folder, files=tuple(found))
    if found:
        notes.append(f"{folder} has {len(found)} of the 4 files; missing: "
                     + ", ".join(f"{m}[.gz]" for m in missing))
    return None


def _find_cifar(info: DatasetInfo, folder: Path, notes: list[str]) -> DataSource | None:
    names = _CIFAR_BATCHES["train"] + _CIFAR_BATCHES["test"]
    for batch_dir in (folder / _CIFAR_BATCH_DIR, folder):
        if all((batch_dir / n).is_file() for n in names):
            return DataSource(dataset=info.name, kind="cifar_batches", folder=batch_dir,
                              files=tuple(batch_dir / n for n in names))
        present = [n for n in names if (batch_dir / n).is_file()]
        if present:
            notes.append(f"{batch_dir} has only {', '.join(present)} of the python batches")
    tarball = folder / _CIFAR_TARBALL
    if tarball.is_file():
        return DataSource(dataset=info.name, kind="cifar_tarball", folder=folder,
                          files=(tarball,))
    if (folder / "train").is_dir() and (folder / "test").is_dir():
        return DataSource(dataset=info.name, kind="image_folders", folder=folder,
                          files=(folder / "train", folder / "test"))
    for archive in sorted([*folder.glob("*.tar.gz"), *folder.glob("*.tgz")]):
        kind = _peek_tarball(archive)
        if kind is not None:
            return DataSource(dataset=info.name, kind=kind, folder=folder, files=(archive,))
        notes.append(f"{archive.name} in {folder} holds neither train/<class>/ image folders "
                     "nor the python batches")
    return None


def _peek_tarball(path: Path) -> str | None:
    """``cifar_tarball`` or ``image_tarball`` from the first members of ``path``, else None.

    Only the first few members are read: listing a whole archive means decompressing it.
    """
    try:
        with tarfile.open(path, "r:*") as archive:
            for _ in range(50):
                member = archive.next()
                if member is None:
                    break
                parts = Path(member.name).parts
                if _CIFAR_BATCH_DIR in parts:
                    return "cifar_tarball"
                if _split_and_class(member.name) is not None:
                    return "image_tarball"
    except (tarfile.TarError, *_DECOMPRESS_ERRORS):
        return None
    return None


# ---------------------------------------------------------------------------------------
# Readers


#: What reading a damaged compressed file can raise: gzip and bz2 raise OSError (and
#: EOFError when cut short), a corrupt deflate stream raises zlib.error, xz raises LZMAError.
_DECOMPRESS_ERRORS = (OSError, EOFError, zlib.error, lzma.LZMAError)


def _why(exc: BaseException) -> str:
    """A reader's exception in words: a corrupt compressed stream is called that."""
    if isinstance(exc, (zlib.error, lzma.LZMAError, EOFError)) or type(exc).__name__ in (
            "BadGzipFile", "CompressionError", "ReadError"):
        return f"the compressed data is damaged ({exc or type(exc).__name__}); delete the " \
               "file and download it again"
    return str(exc) or type(exc).__name__


def _load_digits(split: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = bunch.images.astype(np.uint8)[:, None, :, :]  # values 0..16
    labels = bunch.target.astype(np.int64)
    # A fixed permutation rather than sklearn's train_test_split, whose shuffling may change
    # between scikit-learn releases; numpy's Generator streams are kept stable.
    order = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(len(labels))
    n_train = int(DIGITS_TRAIN_FRACTION * len(labels))
    chosen = order[:n_train] if split == "train" else order[n_train:]
    return images[chosen], labels[chosen]


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (gzip or raw) of unsigned bytes into an array of its shape.

    Raises:
        DataError: the file is not a valid unsigned-byte IDX file.
    """
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as stream:
                data = stream.read()
        else:
            data = path.read_bytes()
    except _DECOMPRESS_ERRORS as exc:
        raise DataError(f"cannot read {path}: {_why(exc)}") from None
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] != 0x08:
        raise DataError(f"{path} is not an IDX file of unsigned bytes (bad magic number "
                        f"{data[:4].hex() or 'empty'}); expected the standard MNIST format")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected = int(np.prod(dims))
    if len(data) - header != expected:
        raise DataError(f"{path}: IDX header says {'x'.join(map(str, dims))} = {expected} "
                        f"bytes of data, the file has {len(data) - header}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _load_idx(source: DataSource, split: str, info: DatasetInfo
              ) -> tuple[np.ndarray, np.ndarray]:
    image_stem, label_stem = _IDX_STEMS[split]
    by_stem = {p.name.removesuffix(".gz"): p for p in source.files}
    image_path, label_path = by_stem[image_stem], by_stem[label_stem]
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.ndim != 3 or images.shape[1:] != info.shape[1:]:
        got = " x ".join(map(str, images.shape))
        raise DataError(f"{image_path}: expected images of shape N x {info.shape[1]} x "
                        f"{info.shape[2]}, got {got}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise DataError(f"{label_path}: expected {len(images)} labels to match {image_path.name}, "
                        f"got shape {labels.shape}")
    return images[:, None, :, :].copy(), labels.astype(np.int64)


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only plain containers and numpy arrays: a CIFAR batch is a pickle, and a
    pickle from an untrusted folder must not be able to run code."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        # Python 3 writes bytes into protocol-2 pickles as _codecs.encode(str, "latin1").
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):  # noqa: D102 - pickle protocol
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        with warnings.catch_warnings():
            # numpy 2 warns when old pickles name numpy.core; the class it returns is right.
            warnings.simplefilter("ignore", DeprecationWarning)
            return super().find_class(module, name)


def _read_cifar_batch(stream: io.BufferedIOBase | io.BytesIO, label: str
                      ) -> tuple[np.ndarray, np.ndarray]:
    try:
        batch = _ArrayUnpickler(stream, encoding="bytes").load()
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch.get(b"labels", batch.get(b"fine_labels")), dtype=np.int64)
    except (pickle.UnpicklingError, KeyError, TypeError, ValueError, EOFError,
            AttributeError) as exc:
        raise DataError(f"{label} is not a CIFAR-10 python batch: {exc}") from None
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise DataError(f"{label}: expected N x 3072 bytes and N labels, got data "
                        f"{data.shape} and {labels.shape} labels")
    return data.reshape(-1, 3, 32, 32), labels


def _load_cifar_batches(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    parts = []
    for name in _CIFAR_BATCHES[split]:
        path = folder / name
        try:
            with path.open("rb") as stream:
                parts.append(_read_cifar_batch(stream, str(path)))
        except OSError as exc:
            raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))


def _split_and_class(member: str) -> tuple[str, int] | None:
    """``(split, label)`` for a path ending in ``<split>/<class>/<file>``, else None."""
    parts = Path(member).parts
    if len(parts) < 3 or parts[-3] not in SPLITS or parts[-2] not in CIFAR10_CLASSES:
        return None
    return parts[-3], CIFAR10_CLASSES.index(parts[-2])


def _decode_image(data: bytes, label: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            array = np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"cannot decode image {label}: {exc}") from None
    if array.shape != (32, 32, 3):
        raise DataError(f"image {label} is {array.shape[1]}x{array.shape[0]}, expected 32x32")
    return array.transpose(2, 0, 1)


def _decode_archive(source: DataSource) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Both splits of a tarball or image-folder source, decoded in one pass."""
    # (split, label, sort key) -> image; sorting makes the order independent of the order
    # files happen to sit in the archive or the directory listing.
    items: dict[str, list[tuple[int, str, np.ndarray]]] = {s: [] for s in SPLITS}
    if source.kind == "image_folders":
        for split_dir in source.files:
            for path in sorted(split_dir.rglob("*")):
                key = _split_and_class(str(path.relative_to(source.folder)))
                if key is None or path.suffix.lower() not in _IMAGE_SUFFIXES:
                    continue
                items[key[0]].append((key[1], path.name, _decode_image(path.read_bytes(),
                                                                       str(path))))
    elif source.kind == "cifar_tarball":
        return _decode_cifar_tarball(source.files[0])
    else:
        archive_path = source.files[0]
        try:
            with tarfile.open(archive_path, "r:*") as archive:
                for member in archive:
                    key = _split_and_class(member.name)
                    if (key is None or not member.isfile()
                            or Path(member.name).suffix.lower() not in _IMAGE_SUFFIXES):
                        continue
                    stream = archive.extractfile(member)
                    data = stream.read() if stream is not None else b""
                    items[key[0]].append((key[1], Path(member.name).name,
                                          _decode_image(data, f"{archive_path}:{member.name}")))
        except (tarfile.TarError, *_DECOMPRESS_ERRORS) as exc:
            raise DataError(f"cannot read {archive_path}: {_why(exc)}") from None
    result = {}
    for split in SPLITS:
        entries = _interleave_classes(items[split])
        if not entries:
            raise DataError(f"{source.files[0]} has no images under {split}/<class>/ "
                            f"(classes: {' '.join(CIFAR10_CLASSES)})")
        result[split] = (np.stack([e[2] for e in entries]),
                         np.array([e[0] for e in entries], dtype=np.int64))
    return result


def _interleave_classes(entries: list[tuple[int, str, np.ndarray]]
                        ) -> list[tuple[int, str, np.ndarray]]:
    """Image-folder entries ``(label, name, image)`` in a class-balanced order.

    Folders carry no order of their own, and class by class would make the first N samples
    (``--samples N``, calibration) a single class. Each class is sorted by file name, then
    classes take turns: the first image of every class, then the second of every class, ...
    so every prefix is as balanced as the classes allow.
    """
    by_class: dict[int, list] = {}
    for entry in sorted(entries, key=lambda e: (e[0], e[1])):
        by_class.setdefault(entry[0], []).append(entry)
    ranked = [(rank, label, entry) for label, group in by_class.items()
              for rank, entry in enumerate(group)]
    return [entry for _, _, entry in sorted(ranked, key=lambda r: (r[0], r[1]))]


def _decode_cifar_tarball(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    wanted = {name: split for split in SPLITS for name in _CIFAR_BATCHES[split]}
    parts: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    try:
        with tarfile.open(path, "r:*") as archive:
            for member in archive:
                name = Path(member.name).name
                if member.isfile() and name in wanted:
                    stream = archive.extractfile(member)
                    parts[name] = _read_cifar_batch(io.BytesIO(stream.read() if stream else b""),
                                                    f"{path}:{member.name}")
    except (tarfile.TarError, *_DECOMPRESS_ERRORS) as exc:
        raise DataError(f"cannot read {path}: {_why(exc)}") from None
    missing = [n for n in wanted if n not in parts]
    if missing:
        raise DataError(f"{path} lacks the CIFAR-10 batches {', '.join(missing)}; delete it "
                        "and download it again (imcsim data download cifar10)")
    return {split: (np.concatenate([parts[n][0] for n in _CIFAR_BATCHES[split]]),
                    np.concatenate([parts[n][1] for n in _CIFAR_BATCHES[split]]))
            for split in SPLITS}


# ---------------------------------------------------------------------------------------
# Cache of decoded arrays


def cache_dir() -> Path:
    """Folder for cached decoded arrays: ``$IMCSIM_CACHE``, else ``~/.cache/imcsim``."""
    env = os.environ.get(CACHE_ENV, "")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "imcsim"


def _source_key(source: DataSource) -> str:
    """A digest of the source's identity: path, size and mtime of everything it reads."""
    digest = hashlib.sha256(f"{_CACHE_FORMAT}|{source.dataset}|{source.kind}".encode())
    paths: list[Path] = []
    for path in source.files:
        paths += sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for path in paths:
        stat = path.stat()
        digest.update(f"|{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:24]


def _cache_paths(source: DataSource, key: str, split: str) -> tuple[Path, Path]:
    stem = f"{source.dataset}-{key}-{split}"
    folder = cache_dir()
    return folder / f"{stem}-images.npy", folder / f"{stem}-labels.npy"


def _cached(source: DataSource, split: str,
            decode: Callable[[], dict[str, tuple[np.ndarray, np.ndarray]]]
            ) -> tuple[np.ndarray, np.ndarray]:
    """Split ``split`` from the cache, or decode every split with ``decode()`` and cache it."""
    key = _source_key(source)
    hit = _read_cache(*_cache_paths(source, key, split))
    if hit is not None:
        return hit
    decoded = decode()
    for name, (images, labels) in decoded.items():
        paths = _cache_paths(source, key, name)
        try:
            paths[0].parent.mkdir(parents=True, exist_ok=True)
            # Labels first: a crash between the two writes leaves no images file, which
            # reads as a miss rather than as a half-written entry.
            _atomic_save(paths[1], labels)
            _atomic_save(paths[0], images)
        except OSError as exc:
            warnings.warn(f"could not cache decoded {source.dataset} in {paths[0].parent}: "
                          f"{exc}; it will be decoded again next time", stacklevel=3)
    return decoded[split]


def _read_cache(image_path: Path, label_path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    if not (image_path.is_file() and label_path.is_file()):
        return None
    try:
        images = np.load(image_path, allow_pickle=False)
        labels = np.load(label_path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    if images.dtype != np.uint8 or images.ndim != 4 or len(images) != len(labels):
        return None
    return images, labels


def _atomic_save(path: Path, array: np.ndarray) -> None:
    """Write ``array`` to ``path`` via a temporary file and a rename, so readers never see a
    partial file even if the process dies mid-write."""
    atomic_write(path, lambda stream: np.save(stream, array, allow_pickle=False))
