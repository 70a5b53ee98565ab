"""The array backend behind which the partial-sum GEMMs run.

One partial-sum GEMM multiplies a row group's DAC step values ``(rows, R)`` (small unsigned
integers) by the group's cell conductances ``(R, columns)``. Backends:

``numpy``
    float32 BLAS (``np.matmul``). With ideal cells every product and partial sum is an integer
    below ``2**24``, so the result is exact; with cell variation it is the float32 product.
    The reference: every other backend must give the same bits wherever it is chosen.
``torch``
    ``torch._int_mm`` (int8 x int8 -> int32) on the CPU, used only where it is exact and equal
    to the numpy result: ideal cells (conductances are the integer levels), levels and DAC
    step values below 128, partial sums below ``2**24``. Elsewhere it falls back to numpy.
``cuda``
    torch float64 matmul on a CUDA device for integer-valued partial sums (ideal cells), where
    it is exact (integers below ``2**53``; float64 needs no TF32 switch, so no global torch
    setting is touched) and so equal to numpy; non-integer conductances stay on numpy,
    because a GPU sums in another order and would not give numpy's float32 bits. float64
    runs at 1/32-1/64 of the float32 rate on consumer GPUs (near it on data-centre ones).
    **Untested on a GPU**: the development machine has none (its code runs on torch's CPU
    device in the tests; ``bench/gpu_check.sh`` is the device check).
``auto`` (default)
    ``cuda`` when torch is importable and sees a CUDA device, else ``numpy``. The CPU int8
    path is not chosen automatically: it serves only ideal cells outside the exact fast path,
    and on a CPU without AVX-512 VNNI it measured about 10x slower than float32 BLAS at these
    shapes (with VNNI, as on the development machine since Dec 1, 1-4x faster: choose it with
    ``--backend torch``; ``docs/performance.md``).

Chosen by the ``backend`` argument of :class:`sim.macros.CrossbarLayer`, the run option
``--backend`` of ``imcsim run``, ``montecarlo`` and ``sweep`` (:func:`selected`), or the
environment variable ``IMCSIM_BACKEND``. torch is imported lazily, only here, and only when
a torch backend is asked for (explicitly, or by ``auto`` probing for a GPU); ``sim`` runs
without it.
"""

from __future__ import annotations

import contextlib
import functools
import os

import numpy as np

from sim.errors import UserError
from sim.kernels._jit import jit

NAMES = ("auto", "numpy", "torch", "cuda")

#: Largest integer partial sum that float32 holds exactly (and int32 -> float32 converts exactly).
EXACT_F32 = 2**24


class BackendError(UserError):
    """An unknown backend name, or a backend this machine cannot run."""


class NumpyBackend:
    """float32 BLAS partial sums (the reference)."""

    name = "numpy"

    def prepare(self, conductance: np.ndarray, integer_bound: int | None):
        """Per-group weights in this backend's form; ``integer_bound`` is the largest partial
        sum when every product is an exact integer (ideal cells), else ``None``."""
        return np.ascontiguousarray(conductance, dtype=np.float32)

    def gemm(self, x: np.ndarray, w, out: np.ndarray) -> np.ndarray:
        """Partial sums ``x @ w`` of step values ``x`` ``(n, R)`` into ``out[:n]``; returns them."""
        xf = x if x.dtype == np.float32 else x.astype(np.float32)
        return np.matmul(xf, w, out=out[: x.shape[0]])


@jit
def _rows_float32(steps, a, b, out):
    n_m = steps.shape[1]
    for p in range(steps.shape[0]):
        for m in range(n_m):
            src = steps[p, m, a:b]
            dst = out[p * n_m + m]
            for k in range(b - a):
                dst[k] = np.float32(src[k])


def rows_float32(steps: np.ndarray, a: int, b: int, buf: np.ndarray) -> np.ndarray:
    """A row group's step values ``steps[:, :, a:b]`` (``(P, M, rows)``, small integers) as
    contiguous float32 rows ``(P*M, b-a)``, the numpy backend's GEMM input, written into the
    front of the flat float32 buffer ``buf`` (reused across groups: a fresh array per group
    page-faulted, and numpy's cast of the strided view took about 1.5 ns per value)."""
    out = buf[: steps.shape[0] * steps.shape[1] * (b - a)].reshape(-1, b - a)
    _rows_float32(steps, a, b, out)
    return out


def _torch():
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise BackendError("this array backend needs torch, which is not installed; use "
                           "--backend numpy (or IMCSIM_BACKEND=numpy)") from exc
    return torch


class _IntWeights:
    """Weights of a group prepared for an integer path, with the numpy fallback kept."""

    def __init__(self, fallback: np.ndarray, fast):
        self.fallback = fallback
        self.fast = fast  # None: this group uses the fallback


class TorchCpuBackend(NumpyBackend):
    """``torch._int_mm`` where exact (see module docstring), numpy elsewhere."""

    name = "torch"

    def __init__(self):
        self.torch = _torch()
        self.dac_max = 255  # set per layer by :func:`for_layer`

    def prepare(self, conductance, integer_bound):
        base = super().prepare(conductance, integer_bound)
        fast = None
        if (integer_bound is not None and integer_bound < EXACT_F32 and self.dac_max < 128
                and (base.size == 0 or base.max() < 128)):
            fast = self.torch.from_numpy(base.astype(np.int8))
        return _IntWeights(base, fast)

    def gemm(self, x, w, out):
        if w.fast is None or x.dtype != np.uint8 or x.shape[0] == 0:
            return super().gemm(x, w.fallback, out)
        xt = self.torch.from_numpy(np.ascontiguousarray(x).view(np.int8))
        # int32 partial sums below 2**24: the ADC kernel reads them as exactly as float32.
        return self.torch._int_mm(xt, w.fast).numpy()


class CudaBackend(NumpyBackend):
    """torch float64 on a CUDA device for integer partial sums; numpy elsewhere. Untested."""

    name = "cuda"

    def __init__(self, device: str = "cuda"):
        self.torch = torch = _torch()
        if device == "cuda" and not torch.cuda.is_available():
            raise BackendError("the cuda array backend (--backend or IMCSIM_BACKEND) needs a "
                               "CUDA device, and torch sees none")
        # Another device runs the same code (the tests use the CPU: no GPU here).
        self.device = torch.device(device)

    def prepare(self, conductance, integer_bound):
        base = super().prepare(conductance, integer_bound)
        fast = None
        if integer_bound is not None and integer_bound < EXACT_F32:
            # float64: exact for these integers whatever the TF32 setting (float32 matmul on
            # a GPU may round inputs to TF32's 10-bit mantissa unless a global flag is off).
            fast = self.torch.from_numpy(base.astype(np.float64)).to(self.device)
        return _IntWeights(base, fast)

    def gemm(self, x, w, out):
        if w.fast is None or x.shape[0] == 0:
            return super().gemm(x, w.fallback, out)
        # Wide DAC steps arrive as uint16, which torch supports only in part on a device:
        # widened on the host (uint8 travels as it is).
        xh = np.ascontiguousarray(x if x.dtype == np.uint8 else x.astype(np.int32))
        xt = self.torch.from_numpy(xh).to(self.device).double()
        res = self.torch.matmul(xt, w.fast)
        dst = out[: x.shape[0]]
        dst[...] = res.cpu().numpy()  # integers below 2**24: float32 holds them exactly
        return dst


@functools.cache
def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def resolve(name: str | None = None) -> str:
    """The backend name to use: ``name``, else ``IMCSIM_BACKEND``, else ``auto``, resolved."""
    chosen = name or os.environ.get("IMCSIM_BACKEND") or "auto"
    if chosen not in NAMES:
        raise BackendError(f"unknown array backend {chosen!r} (IMCSIM_BACKEND or backend=): "
                           f"choose one of {', '.join(NAMES)}")
    if chosen == "auto":
        return "cuda" if _cuda_available() else "numpy"
    return chosen


def make(name: str | None = None, *, dac_max: int = 255):
    """A backend instance for one layer; ``dac_max`` is the largest DAC step value."""
    chosen = resolve(name)
    if chosen == "numpy":
        return NumpyBackend()
    if chosen == "torch":
        b = TorchCpuBackend()
        b.dac_max = dac_max
        return b
    return CudaBackend()


def require(name: str | None = None) -> str:
    """The resolved backend name (:func:`resolve`), after checking that this machine can run
    it: torch importable for ``torch`` and ``cuda``, a CUDA device for ``cuda``. A run option
    naming a backend calls this before any work, so a missing GPU is one message, not a
    fallback found out later."""
    chosen = resolve(name)
    if chosen != "numpy":
        make(chosen)  # raises BackendError naming what is missing
    return chosen


@contextlib.contextmanager
def selected(name: str | None):
    """Run the enclosed code with ``name`` as this process's backend (``IMCSIM_BACKEND``,
    which worker processes inherit) once :func:`require` accepts it, and the environment as it
    was afterwards: the ``--backend`` of one command or one sweep point. ``None``: unchanged."""
    if not name:
        yield
        return
    require(name)
    with _environment(IMCSIM_BACKEND=name):
        yield


def available() -> list[str]:
    """Concrete backends this machine can run (for tests and benchmarks)."""
    names = ["numpy"]
    try:
        _torch()
    except BackendError:
        return names
    names.append("torch")
    if _cuda_available():
        names.append("cuda")
    return names


def test_variants() -> list[tuple[str, bool]]:
    """``(backend, exact fast path)`` pairs a test suite should run on this machine: numpy
    with and without the exact fast path, and every other backend without it (the fast path
    does not use the backend)."""
    return [("numpy", True), ("numpy", False)] + [(b, False) for b in available()[1:]]


@contextlib.contextmanager
def forced(name: str, exact_fast_path: bool = True):
    """Run the enclosed code with ``IMCSIM_BACKEND=name`` and the fast path on or off."""
    with _environment(IMCSIM_BACKEND=name,
                      IMCSIM_EXACT_FAST_PATH="1" if exact_fast_path else "0"):
        yield


@contextlib.contextmanager
def _environment(**values: str):
    """Run the enclosed code with these environment variables set, restored afterwards."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
