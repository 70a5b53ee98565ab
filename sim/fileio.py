"""Crash-safe file writing shared by every layer (checkpoints, caches, progress, results).

Every failed write (no permission, a full disk, a read-only file system) is raised as an
:class:`~sim.errors.OutputError` naming the path, and leaves whatever file was there before
untouched: the new content goes to a temporary file beside it that is renamed over the old one
only once it is complete.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from sim.errors import OutputError


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def atomic_write(path: str | Path, write: Callable[[IO[Any]], Any], *, text: bool = False
                 ) -> Path:
    """Write ``path`` through ``write(stream)`` into a temporary file, then rename it.

    Readers never see a partial file, even if the process dies mid-write; the file gets the
    usual permissions (``mkstemp`` would leave it 0600). An :class:`OSError` on the way (a
    full disk, no permission) removes the temporary file, keeps the old ``path`` as it was and
    is raised as :class:`~sim.errors.OutputError` naming ``path``.
    """
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise OutputError(path, _reason(exc), exc.errno or 0) from None
    try:
        with os.fdopen(fd, "w" if text else "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, path)
    except OutputError:
        Path(tmp).unlink(missing_ok=True)
        raise
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise OutputError(path, _reason(exc), exc.errno or 0) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)
    return path


def ensure_writable_dir(folder: str | Path, what: str = "output folder") -> Path:
    """Create ``folder`` if needed and prove a file can be written in it; return it.

    Commands call this before their expensive work, so that a read-only or missing location
    is reported at once rather than after the first batch. Raises
    :class:`~sim.errors.OutputError` naming the folder.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(folder, f"the {what} is an existing file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".imcsim-write-test.")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(folder, f"the {what} cannot be written ({_reason(exc)})",
                          exc.errno or 0) from None
    return folder
