"""Monte Carlo with ``--disjoint-samples``: chip ``i`` on its own slice of the test split.

The slices, their pairing across ``--vary`` levels, the equality of a chip with a plain run
on its slice, the pooled statistics, the refusal of slices that do not fit, and resumption
(a changed slicing never reuses a stored chip).
"""

from __future__ import annotations

import json
import math
import sqlite3

import pytest
import yaml
from conftest import ISAAC_YAML, REPO

from analysis import run as run_module
from analysis.cli import main
from analysis.montecarlo import (
    disjoint_slices,
    format_montecarlo,
    pooled_accuracy,
    run_montecarlo,
)
from analysis.report import _variation
from analysis.sweep_spec import set_path
from sim.config.loader import read_yaml
from sim.errors import UserError

DIGITS = REPO / "workloads" / "digits_cnn.yaml"
SPLIT = 360  # scikit-learn digits: the fixed test split
CHIPS, SAMPLES = 3, 40
VARY = "variation.cell.sigma=0,0.1"


def test_windows_of_the_chips_are_disjoint_and_cover_their_prefix():
    windows = [run_module._test_window(SPLIT, SAMPLES, i * SAMPLES) for i in range(CHIPS)]
    covered = [k for w in windows for k in range(SPLIT)[w]]
    assert covered == list(range(CHIPS * SAMPLES))  # disjoint, in order, nothing skipped
    assert run_module._test_window(SPLIT, None, 0) == slice(0, SPLIT)
    assert run_module._test_window(SPLIT, 50, 340) == slice(340, SPLIT)  # cut at the end
    assert run_module._test_window(SPLIT, 5, 400) == slice(SPLIT, SPLIT)  # past the end: none


def test_a_run_takes_its_samples_from_the_first_sample_on():
    _, _, x_all, y_all, _, _ = run_module._prepare(DIGITS, None, None)
    _, _, x, y, _, _ = run_module._prepare(DIGITS, SAMPLES, None, 2 * SAMPLES)
    assert len(y) == SAMPLES
    assert (y == y_all[2 * SAMPLES:3 * SAMPLES]).all()
    assert (x == x_all[2 * SAMPLES:3 * SAMPLES]).all()
    with pytest.raises(UserError, match="past the end of the digits test split"):
        run_module.simulate(ISAAC_YAML, DIGITS, samples=5, first_sample=SPLIT, progress=False)


def test_samples_per_chip_and_the_refusal_of_too_many():
    assert disjoint_slices(20, 500, 10_000) == 500
    assert disjoint_slices(20, None, 10_000) == 500
    assert disjoint_slices(7, None, SPLIT) == 51  # 3 left out
    with pytest.raises(UserError, match=r"4 chips x 91 samples = 364 test samples, but the "
                                        r"test split has 360; give at most --samples 90"):
        disjoint_slices(4, 91, SPLIT)
    with pytest.raises(UserError, match="at least one test sample each"):
        disjoint_slices(400, None, SPLIT)


def test_pooled_accuracy_and_the_split_spread():
    chips = [{"hardware_accuracy": p, "float_accuracy": f}
             for p, f in ((0.5, 0.6), (0.7, 0.8), (0.9, 0.9))]
    pooled = pooled_accuracy(chips, 10)
    assert pooled["images"] == 30
    assert pooled["hardware_accuracy"] == pytest.approx(21 / 30)
    assert pooled["float_accuracy"] == pytest.approx(23 / 30)
    observed = 0.04  # sample variance of 0.5, 0.7, 0.9
    sampling = (0.25 + 0.21 + 0.09) / 3 / 10  # mean p (1 - p) / samples
    assert pooled["observed_std"] == pytest.approx(math.sqrt(observed))
    assert pooled["sampling_std"] == pytest.approx(math.sqrt(sampling))
    assert pooled["chip_std"] == pytest.approx(math.sqrt(observed - sampling))
    # Ten times the images per chip: sampling explains a tenth as much, the chips the rest.
    more = pooled_accuracy(chips, 100)
    assert more["chip_std"] == pytest.approx(math.sqrt(observed - sampling / 10))
    # A spread smaller than sampling alone predicts: no chip-to-chip spread is left.
    close = [{"hardware_accuracy": p, "float_accuracy": p} for p in (0.5, 0.52)]
    assert pooled_accuracy(close, 10)["chip_std"] == 0.0


@pytest.fixture(scope="module")
def mc(tmp_path_factory):
    out = tmp_path_factory.mktemp("mc_disjoint")
    report = run_montecarlo(ISAAC_YAML, DIGITS, chips=CHIPS, samples=SAMPLES, vary=VARY,
                            batch_size=SAMPLES, out_dir=out, workers=0, progress=False,
                            disjoint_samples=True)
    return report, out


def test_each_chip_has_its_own_slice_and_levels_are_paired(mc):
    report, _ = mc
    assert report["disjoint_samples"] and report["test_split"] == SPLIT
    assert report["samples"] == SAMPLES and report["samples_left_out"] == SPLIT - 120
    for level in report["levels"]:
        assert [c["seed"] for c in level["chips"]] == [0, 1, 2]
        assert [c["first_sample"] for c in level["chips"]] == [0, 40, 80]
    ideal = report["levels"][0]["chips"]
    # The slices differ in difficulty: the float model's accuracy is not the same on all.
    assert len({c["float_accuracy"] for c in ideal}) > 1
    # Paired: chip i sees the same images at every level, so the float model agrees.
    for a, b in zip(*(lv["chips"] for lv in report["levels"]), strict=True):
        assert a["float_accuracy"] == b["float_accuracy"]
    text = format_montecarlo(report)
    assert "each chip its own (samples 0..119 of 360, 240 left out)" in text
    assert "pooled hw %" in text and "chip = sqrt(max(0, observed^2 - sampling^2))" in text


def test_a_chip_is_a_plain_run_on_its_slice(mc, tmp_path):
    """Chip 2 at sigma 0.1 is ``imcsim run`` of that arch (variation seed 2) on samples
    80..119, bit for bit."""
    report, _ = mc
    chip = report["levels"][1]["chips"][2]
    data = read_yaml(ISAAC_YAML)
    set_path(data, "variation.cell.sigma", 0.1)
    set_path(data, "variation.seed", 2)
    arch = tmp_path / "isaac_chip2.yaml"
    arch.write_text(yaml.safe_dump(data))
    out = tmp_path / "run"
    assert main(["run", str(arch), str(DIGITS), "--samples", str(SAMPLES), "--first-sample",
                 "80", "--batch-size", str(SAMPLES), "--out", str(out), "--quiet"]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["first_sample"] == 80 and result["samples"] == SAMPLES
    for metric in ("hardware_accuracy", "float_accuracy", "energy_per_inference_nj",
                   "latency_per_inference_s"):
        assert result[metric] == chip[metric], metric


def test_pooled_figures_of_a_run(mc):
    report, _ = mc
    for level in report["levels"]:
        chips, pooled = level["chips"], level["pooled"]
        correct = sum(round(c["hardware_accuracy"] * SAMPLES) for c in chips)
        assert pooled["images"] == CHIPS * SAMPLES
        assert pooled["hardware_accuracy"] == correct / (CHIPS * SAMPLES)
        weighted = sum(c["hardware_accuracy"] * SAMPLES for c in chips) / (CHIPS * SAMPLES)
        assert pooled["hardware_accuracy"] == pytest.approx(weighted, abs=1e-12)
        drops = [c["float_accuracy"] - c["hardware_accuracy"] for c in chips]
        assert [c["accuracy_drop"] for c in chips] == drops
        assert level["summary"]["accuracy_drop"]["mean"] == pytest.approx(
            pooled["float_accuracy"] - pooled["hardware_accuracy"], abs=1e-12)
    text = _variation(report, {"arch": report["arch"], "workload": report["workload"]})
    assert "its own slice of the test split" in str(text.blocks[0])
    assert "chip-to-chip std" in str(text.blocks[0])


def test_resume_and_a_changed_slicing_is_not_reused(tmp_path):
    def mc(**kw):
        args = {"chips": 2, "samples": 20, "batch_size": 20, "out_dir": tmp_path,
                "workers": 0, "progress": False, "fixed": {"variation.cell.sigma": 0.1},
                "disjoint_samples": True, **kw}
        return run_montecarlo(ISAAC_YAML, DIGITS, **args)

    def stored():
        """(rows in montecarlo.db, rows the latest invocation computed)."""
        con = sqlite3.connect(tmp_path / "montecarlo.db")
        total = con.execute("SELECT COUNT(*) FROM points").fetchone()[0]
        latest = con.execute("SELECT COUNT(*) FROM points WHERE run = "
                             "(SELECT MAX(id) FROM runs)").fetchone()[0]
        con.close()
        return total, latest

    first = mc()
    assert stored() == (2, 2)
    assert mc() == first and stored() == (2, 0)  # the same options: resumed, nothing computed
    shared = mc(disjoint_samples=False)  # every chip on samples 0..19: new rows
    assert stored() == (4, 2)
    assert [c["first_sample"] for c in shared["levels"][0]["chips"]] == [0, 0]
    assert "pooled" not in shared["levels"][0]
    assert mc(samples=10) and stored() == (6, 2)  # other slices: new rows
    assert mc() == first and stored() == (6, 0)  # the first slicing: still stored


def test_default_samples_split_the_test_set(tmp_path):
    report = run_montecarlo(ISAAC_YAML, DIGITS, chips=2, samples=None, batch_size=180,
                            out_dir=tmp_path, workers=0, progress=False, disjoint_samples=True)
    assert report["samples"] == 180 and report["samples_left_out"] == 0
    assert [c["first_sample"] for c in report["levels"][0]["chips"]] == [0, 180]
    assert report["levels"][0]["pooled"]["images"] == SPLIT


def test_cli_refuses_slices_that_do_not_fit(tmp_path, capsys):
    code = main(["montecarlo", str(ISAAC_YAML), str(DIGITS), "--chips", "4", "--samples", "91",
                 "--disjoint-samples", "--out", str(tmp_path), "--workers", "0", "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert "4 chips x 91 samples = 364 test samples" in err and "Traceback" not in err
    assert not (tmp_path / "montecarlo.db").exists()  # refused before any chip ran
