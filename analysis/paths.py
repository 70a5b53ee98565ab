"""Where the shipped architecture and workload files are, and name-or-path resolution."""

from __future__ import annotations

from pathlib import Path

from sim.errors import UserError

#: Repository root (the ``arch_configs/`` folder lives here in a checkout or editable install).
ROOT = Path(__file__).resolve().parents[1]
ARCH_DIR = ROOT / "arch_configs"
WORKLOAD_DIR = ROOT / "workloads"


def resolve(name_or_path: str, folder: Path, what: str) -> Path:
    """A YAML path given as a path or as the stem of a shipped file in ``folder``."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    shipped = folder / f"{name_or_path}.yaml"
    if shipped.is_file():
        return shipped
    known = sorted(f.stem for f in folder.glob("*.yaml")) if folder.is_dir() else []
    raise UserError(f"{what} {name_or_path!r} not found: no such file, and no shipped {what} "
                    f"of that name (shipped: {', '.join(known) or 'none'})")
