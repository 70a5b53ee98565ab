"""Compare two sweep outputs point by point (e.g. the same sweep on a local pool and on Dask).

    python bench/compare_sweeps.py DIR_A DIR_B

Reads both ``sweep.db`` files, matches points by key, and prints how many points each has,
how many statuses differ, and the largest absolute difference of every metric. Exit status 0
when every shared point has the same status and bit-identical metrics, 1 otherwise.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path


def load(folder: str) -> dict[str, tuple[str, dict[str, float]]]:
    """key -> (status, metrics) of every point in ``folder/sweep.db``."""
    con = sqlite3.connect(Path(folder) / "sweep.db")
    try:
        return {k: (s, json.loads(m)) for k, s, m in
                con.execute("SELECT key, status, metrics FROM points")}
    finally:
        con.close()


def main() -> int:
    a, b = load(sys.argv[1]), load(sys.argv[2])
    shared = sorted(set(a) & set(b))
    print(f"points: {len(a)} in {sys.argv[1]}, {len(b)} in {sys.argv[2]}, {len(shared)} shared")
    status = sum(a[k][0] != b[k][0] for k in shared)
    print(f"status differs at {status} points")
    worst: dict[str, float] = {}
    for k in shared:
        for m, v in a[k][1].items():
            w = b[k][1].get(m)
            diff = abs(v - w) if w is not None else float("inf")
            worst[m] = max(worst.get(m, 0.0), diff)
    for m in sorted(worst):
        print(f"  {m:<28} max |difference| {worst[m]:.3g}")
    same = status == 0 and all(d == 0.0 for d in worst.values()) and len(shared) == len(a)
    print("identical" if same else "DIFFERENT")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
