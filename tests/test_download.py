"""Downloads against a local HTTP server: checksums, atomic writes, no needless re-downloads.

The public sources are replaced by small files served from ``tmp_path`` on 127.0.0.1, with
``SOURCES`` patched to their checksums; nothing here touches the internet.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import threading
from pathlib import Path

import numpy as np
import pytest

from sim.errors import DataError, UserError
from workloads.datasets import load_dataset
from workloads.download import SOURCES, RemoteFile, Source, download, verify

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


class _Server:
    """A static file server on 127.0.0.1 that records the paths it was asked for."""

    def __init__(self, folder: Path):
        self.requests: list[str] = []
        requests = self.requests

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                requests.append(self.path)
                super().do_GET()

            def log_message(self, *args):  # keep pytest output clean
                pass

        handler = functools.partial(Handler, directory=str(folder))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        # A short poll interval so shutdown() returns at once instead of after 0.5 s.
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,),
                                       daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def served(tmp_path):
    folder = tmp_path / "served"
    folder.mkdir()
    server = _Server(folder)
    yield folder, server
    server.close()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


@pytest.fixture
def tiny_mnist(served, monkeypatch):
    """Serve four tiny MNIST-format .gz files and point SOURCES['mnist'] at their MD5s."""
    folder, server = served
    rng = np.random.default_rng(0)
    contents = {
        "train-images-idx3-ubyte.gz": _idx(rng.integers(0, 256, (6, 28, 28))),
        "train-labels-idx1-ubyte.gz": _idx(rng.integers(0, 10, 6)),
        "t10k-images-idx3-ubyte.gz": _idx(rng.integers(0, 256, (4, 28, 28))),
        "t10k-labels-idx1-ubyte.gz": _idx(rng.integers(0, 10, 4)),
    }
    files = []
    for name, content in contents.items():
        data = gzip.compress(content, mtime=0)
        (folder / name).write_bytes(data)
        files.append(RemoteFile(name=name, md5=md5(data), content_md5=md5(content)))
    monkeypatch.setitem(SOURCES, "mnist", Source(base_url="http://invalid.example/",
                                                 folder="mnist", files=tuple(files)))
    return folder, server


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_download_verifies_and_places_files_where_the_loader_looks(tmp_path, tiny_mnist):
    served_folder, server = tiny_mnist
    data_dir = tmp_path / "data"
    folder = download("mnist", data_dir, base_url=server.url, progress=False)
    assert folder == data_dir / "mnist"
    for path in served_folder.iterdir():
        assert (folder / path.name).read_bytes() == path.read_bytes()
    assert _leftovers(folder) == []
    images, labels = load_dataset("mnist", "test", data_dir)
    assert images.shape == (4, 1, 28, 28) and labels.shape == (4,)


def test_second_call_does_not_download_again(tmp_path, tiny_mnist):
    _, server = tiny_mnist
    download("mnist", tmp_path, base_url=server.url, progress=False)
    assert len(server.requests) == 4
    download("mnist", tmp_path, base_url=server.url, progress=False)
    assert len(server.requests) == 4


def test_a_damaged_local_file_is_fetched_again(tmp_path, tiny_mnist):
    _, server = tiny_mnist
    folder = download("mnist", tmp_path, base_url=server.url, progress=False)
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(b"garbage")
    download("mnist", tmp_path, base_url=server.url, progress=False)
    assert server.requests[4:] == ["/t10k-labels-idx1-ubyte.gz"]


def test_checksum_mismatch_raises_and_leaves_no_file(tmp_path, served, monkeypatch):
    folder, server = served
    (folder / "cifar-10-python.tar.gz").write_bytes(b"not the real tarball")
    monkeypatch.setitem(SOURCES, "cifar10", Source(
        base_url="http://invalid.example/", folder="cifar10",
        files=(RemoteFile(name="cifar-10-python.tar.gz", md5="0" * 32),)))
    with pytest.raises(DataError, match="checksum mismatch") as info:
        download("cifar10", tmp_path, base_url=server.url, progress=False)
    assert "cifar-10-python.tar.gz" in str(info.value) and "0" * 32 in str(info.value)
    assert list((tmp_path / "cifar10").iterdir()) == []


def test_missing_file_on_server_is_a_data_error_and_leaves_no_file(tmp_path, served,
                                                                   monkeypatch):
    _, server = served
    monkeypatch.setitem(SOURCES, "cifar10", Source(
        base_url="http://invalid.example/", folder="cifar10",
        files=(RemoteFile(name="cifar-10-python.tar.gz", md5="0" * 32),)))
    with pytest.raises(DataError, match="404"):
        download("cifar10", tmp_path, base_url=server.url.rstrip("/"), progress=False)
    assert list((tmp_path / "cifar10").iterdir()) == []


def test_recompressed_gzip_is_accepted_by_its_content_checksum(tmp_path):
    content = b"same bytes inside"
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(content, compresslevel=1, mtime=123))
    remote = RemoteFile(name="x.gz", md5="f" * 32, content_md5=md5(content))
    assert verify(path, remote)
    assert not verify(path, RemoteFile(name="x.gz", md5="f" * 32, content_md5="e" * 32))


def test_unknown_data_set_lists_downloadable_ones(tmp_path):
    with pytest.raises(UserError, match="cifar10, fashion_mnist, mnist"):
        download("digits", tmp_path)


def test_published_checksums_are_well_formed():
    for source in SOURCES.values():
        assert source.base_url.startswith(("http://", "https://"))
        for remote in source.files:
            for digest in (remote.md5, remote.content_md5 or "0" * 32):
                assert len(digest) == 32 and int(digest, 16) >= 0


def test_content_checksums_match_the_offline_mnist_copy_if_available():
    folder = SHARED_DATA / "mnist"
    if not folder.is_dir():
        pytest.skip(f"offline MNIST copy not found at {folder}")
    for remote in SOURCES["mnist"].files:
        assert verify(folder / remote.name, remote), remote.name


def test_a_local_file_with_a_corrupt_deflate_stream_is_not_taken_for_the_file(tmp_path):
    # A valid gzip header, then a deflate block of the invalid type 3: zlib.error inside gzip.
    path = tmp_path / "x.gz"
    path.write_bytes(b"\x1f\x8b\x08\x00" + bytes(4) + b"\x00\xff" + b"\xff" * 64)
    assert not verify(path, RemoteFile(name="x.gz", md5="f" * 32, content_md5="e" * 32))

