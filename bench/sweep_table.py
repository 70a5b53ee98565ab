"""Markdown pivot tables of a finished sweep: one metric over two parameters.

    python bench/sweep_table.py DIR METRIC ROW_PARAM COL_PARAM [SPLIT_PARAM] [--scale X]

Reads ``DIR/sweep.json`` and prints, for each value of ``SPLIT_PARAM`` (if given), a table of
``METRIC`` (times ``--scale``) with ``ROW_PARAM`` values as rows and ``COL_PARAM`` values as
columns. Invalid points show their status instead of a number.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder")
    p.add_argument("metric")
    p.add_argument("row")
    p.add_argument("col")
    p.add_argument("split", nargs="?")
    p.add_argument("--scale", type=float, default=1.0)
    args = p.parse_args()
    points = json.loads((Path(args.folder) / "sweep.json").read_text())["points"]

    def values(name):
        return sorted({pt["params"][name] for pt in points})

    for group in values(args.split) if args.split else [None]:
        if args.split:
            print(f"\n{args.split} = {group}\n")
        cols = values(args.col)
        print(f"| {args.row} \\ {args.col} | " + " | ".join(map(str, cols)) + " |")
        print("|---|" + "---|" * len(cols))
        for r in values(args.row):
            cells = []
            for c in cols:
                match = [pt for pt in points if pt["params"][args.row] == r
                         and pt["params"][args.col] == c
                         and (group is None or pt["params"][args.split] == group)]
                if not match:
                    cells.append("")
                elif match[0]["metrics"].get(args.metric) is None:
                    cells.append(match[0]["status"])
                else:
                    cells.append(f"{match[0]['metrics'][args.metric] * args.scale:.4g}")
            print(f"| {r} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
