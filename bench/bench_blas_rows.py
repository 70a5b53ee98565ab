"""Whether float32 GEMM rows depend on how many rows are multiplied at once (this BLAS).

imcsim's float32 partial sums are the BLAS's bits, so a layer's chunks of samples must be a
function of its sample count alone (``CrossbarLayer._chunks``), never of the thread count: if
a row's bits depended on the rows beside it, chunking by threads would change results. This
multiplies 0/1 step rows by non-integer conductances (one thread) for several shapes and row
counts ``M``, rows ``start .. start + M`` alone against the same rows of the whole product,
and prints which differ.

    python bench/bench_blas_rows.py
"""

from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

SHAPES = [(128, 4128), (128, 129), (27, 24), (144, 24), (64, 64), (512, 1024), (128, 258),
          (9, 9)]
ROWS = [1, 2, 3, 7, 16, 31, 64, 100, 248, 299, 496]


def main() -> None:
    rng = np.random.default_rng(0)
    for info in threadpool_info():
        print(f"BLAS: {info.get('internal_api')} {info.get('version')} kernel "
              f"{info.get('architecture')}")
    differ = total = 0
    with threadpool_limits(1, "blas"):
        for k, n in SHAPES:
            w = (rng.random((k, n)) * 3).astype(np.float32)
            x = (rng.random((600, k)) < 0.5).astype(np.float32)
            full = x @ w
            bad = []
            for m in ROWS:
                for start in (0, 5):
                    total += 1
                    if (x[start:start + m] @ w).tobytes() != full[start:start + m].tobytes():
                        differ += 1
                        bad.append(f"{m}@{start}")
            print(f"  K x N = {k} x {n}: rows differing alone (M@start): "
                  f"{', '.join(bad) or 'none'}")
    print(f"{differ} of {total} (shape, M, start) cases differ from the whole product")


if __name__ == "__main__":
    main()
