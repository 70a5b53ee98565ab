"""Monte Carlo over chips: statistics, determinism, resumption and the CLI."""

from __future__ import annotations

import json
import math
import sqlite3

import pytest
from conftest import ISAAC_YAML, REPO

from analysis.cli import main
from analysis.montecarlo import confidence_interval, parse_set, parse_vary, run_montecarlo
from sim.errors import UserError

DIGITS = REPO / "workloads" / "digits_cnn.yaml"


def test_confidence_interval_is_student_t():
    s = confidence_interval([1.0, 2.0, 3.0], 0.95)
    half = 4.302652729911275 / math.sqrt(3)  # t(0.975, 2 dof) x std 1 / sqrt(3)
    assert s["mean"] == 2.0 and s["std"] == 1.0 and s["n"] == 3
    assert s["ci_low"] == pytest.approx(2.0 - half) and s["ci_high"] == pytest.approx(2 + half)
    one = confidence_interval([0.5], 0.95)
    assert one["mean"] == 0.5 and math.isnan(one["ci_low"]) and math.isnan(one["std"])


def test_parse_vary():
    assert parse_vary("variation.cell.sigma=0,0.05") == ("variation.cell.sigma", (0, 0.05))
    assert parse_vary("variation.cell.sigma=1e-2") == ("variation.cell.sigma", (0.01,))
    with pytest.raises(UserError, match="PATH=VALUE"):
        parse_vary("variation.cell.sigma")


def test_parse_set():
    assert parse_set(["variation.cell.sigma=0.1", "weights.encoding=differential"]) == {
        "variation.cell.sigma": 0.1, "weights.encoding": "differential"}
    assert parse_set(None) == {}
    with pytest.raises(UserError, match="PATH=VALUE"):
        parse_set(["variation.cell.sigma"])


@pytest.fixture(scope="module")
def mc(tmp_path_factory):
    out = tmp_path_factory.mktemp("mc")
    report = run_montecarlo(ISAAC_YAML, DIGITS, chips=3, samples=40, vary="variation.cell.sigma="
                            "0,0.03", batch_size=40, out_dir=out, workers=0, progress=False)
    return report, out


def test_chips_differ_only_where_variation_is_on(mc):
    report, _ = mc
    ideal, varied = report["levels"]
    assert ideal["value"] == 0 and varied["value"] == 0.03
    assert [c["seed"] for c in varied["chips"]] == [0, 1, 2]
    assert ideal["summary"]["hardware_accuracy"]["std"] == 0.0
    energies = {c["energy_per_inference_nj"] for c in varied["chips"]}
    accs = [c["hardware_accuracy"] for c in varied["chips"]]
    assert len(energies) > 1 or len(set(accs)) > 1  # three different chips
    s = varied["summary"]["hardware_accuracy"]
    assert s["ci_low"] <= s["mean"] <= s["ci_high"] and s["n"] == 3


def test_same_seeds_same_bits_and_resume(mc, tmp_path):
    report, out = mc
    again = run_montecarlo(ISAAC_YAML, DIGITS, chips=3, samples=40,
                           vary="variation.cell.sigma=0,0.03", batch_size=40, out_dir=out,
                           workers=0, progress=False)
    assert again == report  # resumed from montecarlo.db: identical numbers ...
    con = sqlite3.connect(out / "montecarlo.db")
    runs = con.execute("SELECT DISTINCT run FROM points").fetchall()
    con.close()
    assert runs == [(1,)]  # ... and nothing recomputed: every chip is from the first run
    fresh = run_montecarlo(ISAAC_YAML, DIGITS, chips=3, samples=40,
                           vary="variation.cell.sigma=0,0.03", batch_size=40,
                           out_dir=tmp_path, workers=0, progress=False)
    assert fresh["levels"] == report["levels"]  # recomputed: the same bits
    assert json.loads((out / "montecarlo.json").read_text())["kind"] == "imcsim-montecarlo"


def test_cli_reports_a_bad_vary_path(tmp_path, capsys):
    code = main(["montecarlo", str(ISAAC_YAML), str(DIGITS), "--chips", "2", "--samples", "10",
                 "--vary", "variation.cell.sigmaa=0.1", "--out", str(tmp_path), "--workers",
                 "0", "--quiet"])
    assert code == 2
    assert "variation.cell.sigmaa" in capsys.readouterr().err


def test_set_applies_to_every_chip(mc, tmp_path):
    """``--set`` (``fixed``) sets a path on every chip: sigma 0.03 set for all chips gives
    the chips of the ``--vary`` level 0.03 (same seeds, same bits), not the ideal ones."""
    report, _ = mc
    fixed = run_montecarlo(ISAAC_YAML, DIGITS, chips=3, samples=40, batch_size=40,
                           out_dir=tmp_path, workers=0, progress=False,
                           fixed={"variation.cell.sigma": 0.03})
    assert fixed["fixed"] == {"variation.cell.sigma": 0.03}
    assert fixed["levels"][0]["chips"] == report["levels"][1]["chips"]
    assert fixed["levels"][0]["chips"] != report["levels"][0]["chips"]


def test_cli_reports_a_bad_set_path(tmp_path, capsys):
    code = main(["montecarlo", str(ISAAC_YAML), str(DIGITS), "--chips", "2", "--samples", "10",
                 "--set", "weights.encodingg=differential", "--out", str(tmp_path),
                 "--workers", "0", "--quiet"])
    assert code == 2
    assert "weights.encodingg" in capsys.readouterr().err


def test_one_chip_is_refused(tmp_path):
    with pytest.raises(UserError, match="at least 2"):
        run_montecarlo(ISAAC_YAML, DIGITS, chips=1, samples=10, out_dir=tmp_path, workers=0,
                       progress=False)


def test_montecarlo_writes_only_its_own_outputs(mc):
    _, out = mc
    assert not (out / "points.csv").exists() and not (out / "sweep.json").exists()
