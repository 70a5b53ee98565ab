"""bench/forms_variation_study.py pools montecarlo runs of disjoint chips into one study."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from analysis.montecarlo import confidence_interval

ROOT = Path(__file__).resolve().parent.parent


def _study():
    spec = importlib.util.spec_from_file_location(
        "forms_variation_study", ROOT / "bench" / "forms_variation_study.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _mc(folder: Path, seeds, accs, samples=50):
    folder.mkdir(parents=True)
    chips = [{"seed": s, "hardware_accuracy": a} for s, a in zip(seeds, accs, strict=True)]
    level = {"label": "as configured", "param": None, "value": None, "chips": chips,
             "summary": {"hardware_accuracy": confidence_interval(np.array(accs), 0.95)}}
    (folder / "montecarlo.json").write_text(json.dumps({
        "arch": "forms_32nm", "workload": "w", "samples": samples, "run_seed": 0,
        "fixed": {"variation.cell.sigma": 0.1}, "confidence": 0.95, "levels": [level]}))
    return str(folder)


def test_pooled_chips_give_the_statistics_of_all_chips(tmp_path):
    study = _study()
    a = _mc(tmp_path / "a", [0, 1, 2], [0.80, 0.84, 0.82])
    b = _mc(tmp_path / "b", [3, 4], [0.70, 0.90])
    pooled = study.pooled(f"{a}+{b}")
    chips = pooled["levels"][0]["chips"]
    assert [c["seed"] for c in chips] == [0, 1, 2, 3, 4]
    want = confidence_interval(np.array([0.80, 0.84, 0.82, 0.70, 0.90]), 0.95)
    assert pooled["levels"][0]["summary"]["hardware_accuracy"] == want
    # the pooled figures differ from either run's own: the extra chips move them
    assert want["std"] != json.loads((Path(a) / "montecarlo.json").read_text())[
        "levels"][0]["summary"]["hardware_accuracy"]["std"]
    ideal = tmp_path / "ideal"
    ideal.mkdir()
    (ideal / "result.json").write_text(json.dumps(
        {"arch": "forms_32nm", "samples": 50, "seed": 0, "hardware_accuracy": 0.86}))
    line = study.row("x", str(ideal), f"{a}+{b}")
    assert "| 5 |" in line and f"**{100 * (0.86 - want['mean']):.2f}**" in line


def test_pooling_refuses_repeated_chips_or_different_studies(tmp_path):
    study = _study()
    a = _mc(tmp_path / "a", [0, 1], [0.8, 0.9])
    same_seeds = _mc(tmp_path / "b", [1, 2], [0.8, 0.9])
    other = _mc(tmp_path / "c", [5, 6], [0.8, 0.9], samples=100)
    with pytest.raises(SystemExit, match="repeats"):
        study.pooled(f"{a}+{same_seeds}")
    with pytest.raises(SystemExit, match="not the same study"):
        study.pooled(f"{a}+{other}")
