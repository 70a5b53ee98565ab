"""The one place that sets the JIT options of every compiled kernel.

``cache=True`` keeps compiled machine code in ``__pycache__`` so later processes start fast;
``nogil=True`` releases the GIL so that several Python threads run kernels (and single-threaded
BLAS calls) side by side; ``fastmath`` stays off because the kernels must be bit-exact.

Kernels are serial. Parallelism comes from the caller running independent chunks of samples in
a thread pool (see :mod:`sim.macros.crossbar`): numba's own parallel regions alternating with
multi-threaded BLAS calls made the two thread pools fight over the cores (measured: up to 3x
slower and erratic), and numba's default workqueue layer is not safe to enter from several
threads at once.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numba


def _drop_stale_cache(here: Path) -> None:
    """Drop the compiled-code cache of ``here`` (``sim/kernels``) when any of its sources
    changed.

    numba's ``cache=True`` checks only the cached function's own source file, but a kernel
    compiles in the kernels it calls from other modules (the ADC kernel draws its comparator
    noise with :mod:`sim.kernels.noise`): after an edit of ``noise.py`` alone it would keep
    the old draws (measured). A digest of every kernel source, kept beside the cache, is
    compared at import; on a change the cache files are removed and numba compiles afresh.
    Where ``__pycache__`` cannot be written numba uses a per-user cache this does not see
    (a read-only install, whose sources do not change).
    """
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sorted(here.glob("*.py"))))
    cache = here / "__pycache__"
    stamp = cache / "numba_sources.sha256"
    try:
        if stamp.read_text() == digest.hexdigest():
            return
    except OSError:
        pass
    try:
        cache.mkdir(exist_ok=True)
        for f in (*cache.glob("*.nbi"), *cache.glob("*.nbc")):
            f.unlink(missing_ok=True)
        stamp.write_text(digest.hexdigest())
    except OSError:
        pass


_drop_stale_cache(Path(__file__).resolve().parent)

#: Serial, GIL-free kernel.
jit = numba.njit(cache=True, nogil=True, fastmath=False)

#: The same options, inlined into its callers by numba (a few lines on a hot path, where a
#: call would cost more than the work).
jit_inline = numba.njit(cache=True, nogil=True, fastmath=False, inline="always")

#: The same options with numpy's error model: a float division by zero gives inf or nan (as in
#: numpy) instead of raising, so a loop with a division has no branch and vectorizes. Only for
#: kernels whose divisors cannot be zero (checked where it is used).
jit_vector = numba.njit(cache=True, nogil=True, fastmath=False, error_model="numpy")

#: :data:`jit_vector`'s options, inlined into its callers (the error model is the inlined
#: function's own).
jit_vector_inline = numba.njit(cache=True, nogil=True, fastmath=False, error_model="numpy",
                               inline="always")
