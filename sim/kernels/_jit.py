"""The one place that sets the JIT options of every compiled kernel.

``cache=True`` keeps compiled machine code in ``__pycache__`` so later processes start fast;
``nogil=True`` lets BLAS and other threads run beside a kernel; ``fastmath`` stays off because
the kernels must be bit-exact (no reassociation of sums).
"""

from __future__ import annotations

import numba

#: Serial kernel.
jit = numba.njit(cache=True, nogil=True, fastmath=False)
#: Kernel whose outer ``prange`` loop runs on all cores; each iteration writes its own rows,
#: so results do not depend on the number of threads.
pjit = numba.njit(cache=True, nogil=True, fastmath=False, parallel=True)
prange = numba.prange
