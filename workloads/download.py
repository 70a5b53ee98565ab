"""Fetch the standard public data sets, verified by checksum (``imcsim data download NAME``).

Files land in ``data_dir/<folder>`` (``mnist/``, ``fashion-mnist/``, ``cifar10/``), where
:func:`workloads.datasets.load_dataset` looks for them. Each file is streamed to a temporary
file in the same folder, checked against its published MD5, and only then renamed into
place, so an interrupted or corrupted download never leaves a file that looks finished.

Checksums: the ``.gz``/``.tar.gz`` MD5s are the ones published with the data sets (the
Fashion-MNIST README, torchvision's ``datasets/mnist.py`` and ``cifar.py``). For MNIST and
Fashion-MNIST the MD5 of the uncompressed content is accepted too, because mirrors and
distribution packages (Debian's ``dataset-fashion-mnist``) re-compress the same bytes.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

from sim.errors import DataError, OutputError, UserError

_CHUNK = 1 << 20


@dataclass(frozen=True, kw_only=True)
class RemoteFile:
    """One file of a data set as published.

    Attributes:
        name: file name on the server and on disk.
        md5: MD5 of the file as served.
        content_md5: MD5 of the gunzipped content, for ``.gz`` files (``None`` if unknown).
    """

    name: str
    md5: str
    content_md5: str | None = None


@dataclass(frozen=True, kw_only=True)
class Source:
    """Where a data set is downloaded from and which folder under ``data_dir`` it goes to."""

    base_url: str
    folder: str
    files: tuple[RemoteFile, ...]


#: Download sources by data set name. MD5s of the ``.gz`` files from torchvision's
#: ``mnist.py``; content MD5s checked against the offline copies (MNIST: the project's
#: shared data folder; Fashion-MNIST: Debian's ``dataset-fashion-mnist`` package).
SOURCES: dict[str, Source] = {
    "mnist": Source(
        # The original yann.lecun.com host is no longer reliable; this is PyTorch's mirror.
        base_url="https://ossci-datasets.s3.amazonaws.com/mnist/",
        folder="mnist",
        files=(
            RemoteFile(name="train-images-idx3-ubyte.gz", md5="f68b3c2dcbeaaa9fbdd348bbdeb94873",
                       content_md5="6bbc9ace898e44ae57da46a324031adb"),
            RemoteFile(name="train-labels-idx1-ubyte.gz", md5="d53e105ee54ea40749a09fcbcd1e9432",
                       content_md5="a25bea736e30d166cdddb491f175f624"),
            RemoteFile(name="t10k-images-idx3-ubyte.gz", md5="9fb629c4189551a2d022fa330f9573f3",
                       content_md5="2646ac647ad5339dbf082846283269ea"),
            RemoteFile(name="t10k-labels-idx1-ubyte.gz", md5="ec29112dd5afa0611ce80d1b7f02629c",
                       content_md5="27ae3e4e09519cfbb04c329615203637"),
        ),
    ),
    "fashion_mnist": Source(
        base_url="http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        folder="fashion-mnist",
        files=(
            RemoteFile(name="train-images-idx3-ubyte.gz", md5="8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                       content_md5="f4a8712d7a061bf5bd6d2ca38dc4d50a"),
            RemoteFile(name="train-labels-idx1-ubyte.gz", md5="25c81989df183df01b3e8a0aad5dffbe",
                       content_md5="9018921c3c673c538a1fc5bad174d6f9"),
            RemoteFile(name="t10k-images-idx3-ubyte.gz", md5="bef4ecab320f06d8554ea6380940ec79",
                       content_md5="8181f5470baa50b63fa0f6fddb340f0a"),
            RemoteFile(name="t10k-labels-idx1-ubyte.gz", md5="bb300cfdad3c16e7a12a480ee83cd310",
                       content_md5="15d484375f8d13e6eb1aabb0c3f46965"),
        ),
    ),
    "cifar10": Source(
        base_url="https://www.cs.toronto.edu/~kriz/",
        folder="cifar10",
        files=(RemoteFile(name="cifar-10-python.tar.gz", md5="c58f30108f718f92721af3b95e74349a"),),
    ),
}


def download(name: str, data_dir: str | os.PathLike[str], *, base_url: str | None = None,
             progress: bool = True) -> Path:
    """Download data set ``name`` into ``data_dir/<folder>`` and return that folder.

    Files already there with a matching checksum are kept; others are (re)downloaded.

    Args:
        name: ``mnist``, ``fashion_mnist`` or ``cifar10``.
        data_dir: the data folder (the one given to ``--data-dir`` / ``IMCSIM_DATA``).
        base_url: fetch from this URL prefix instead of the public source (a mirror, or a
            local server in tests); file names are appended to it.
        progress: show a tqdm progress bar per file.

    Raises:
        DataError: the download failed or a checksum did not match (the bad file is removed).
        UserError: ``name`` cannot be downloaded.
    """
    try:
        source = SOURCES[name]
    except (KeyError, TypeError):
        raise UserError(f"cannot download data set {name!r}; downloadable: "
                        f"{', '.join(sorted(SOURCES))}") from None
    folder = Path(data_dir).expanduser() / source.folder
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the data folder {folder}: {exc}") from None
    prefix = base_url if base_url is not None else source.base_url
    if not prefix.endswith("/"):
        prefix += "/"
    for remote in source.files:
        target = folder / remote.name
        if target.is_file() and verify(target, remote):
            continue
        fetch(prefix + remote.name, target, remote, progress=progress)
    return folder


def verify(path: Path, remote: RemoteFile) -> bool:
    """Whether ``path`` holds ``remote``: its MD5, or its gunzipped content's MD5, matches."""
    if file_md5(path) == remote.md5:
        return True
    if remote.content_md5 is None:
        return False
    try:
        with gzip.open(path, "rb") as stream:
            return hashlib.file_digest(stream, "md5").hexdigest() == remote.content_md5
    except (OSError, EOFError, zlib.error):  # damaged: not the file, fetch it again
        return False


def file_md5(path: Path) -> str:
    """Hex MD5 of a file, read in chunks."""
    return file_digest(path, "md5")


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of a file with ``hashlib`` algorithm ``algorithm``, read in chunks."""
    with path.open("rb") as stream:
        return hashlib.file_digest(stream, algorithm).hexdigest()


def fetch(url: str, target: Path, remote: RemoteFile, *, progress: bool = True) -> None:
    """Stream ``url`` to ``target`` via a temporary file; keep it only if it verifies.

    Raises:
        DataError: network error, or checksum mismatch (nothing is left at ``target``).
    """
    from tqdm import tqdm

    try:
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.",
                                        suffix=".part")
    except OSError as exc:
        raise OutputError(target.parent, exc.strerror or str(exc), exc.errno or 0) from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=60) as response:
                    total = int(response.headers.get("Content-Length") or 0) or None
                    with tqdm(total=total, unit="B", unit_scale=True, desc=target.name,
                              disable=not progress, leave=False) as bar:
                        for chunk in iter(lambda: response.read(_CHUNK), b""):
                            out.write(chunk)
                            bar.update(len(chunk))
            except (urllib.error.URLError, OSError, ValueError) as exc:
                if isinstance(exc, urllib.error.HTTPError):
                    why = f"HTTP {exc.code} {exc.reason}"
                else:
                    why = str(getattr(exc, "reason", exc))
                raise DataError(
                    f"downloading {url} failed: {why}.\n"
                    f"Fix: check the network and run again, or fetch the file by hand and put "
                    f"it in {target.parent}") from None
            out.flush()
            os.fsync(out.fileno())
        if not verify(tmp, remote):
            got = file_md5(tmp)
            raise DataError(
                f"checksum mismatch for {url}: expected MD5 {remote.md5}, got {got}; the file "
                "was deleted. Run again (the download may have been corrupted), or use "
                "another mirror (base_url)")
        os.replace(tmp, target)
    finally:
        # A no-op after the rename; otherwise it removes the partial or rejected file.
        tmp.unlink(missing_ok=True)
