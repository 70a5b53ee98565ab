"""``imcsim characterize``: linearity of one macro before and after ADC calibration.

Small sample counts keep these fast; the committed 524,288-sample run is in
docs/characterize.md.
"""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
import yaml

from analysis.characterize import MODES, characterize, column_table_csv, summary_markdown
from analysis.cli import main

MISMATCH = {"variation.adc.offset_sigma_lsb": 1.0, "variation.adc.gain_sigma": 0.03,
            "variation.adc.cap_mismatch_sigma": 0.03, "variation.adc.noise_sigma_lsb": 0.2}
SMALL = {"weights.encoding": "differential", "weights.bits": 5, "crossbar.unit_column": False,
         "inputs.signed": False, "crossbar.rows": 32, "crossbar.columns": 16,
         "crossbar.adc.per_crossbar": 4, "crossbar.adc.bits": 7}


def by(result, mode, chip="all"):
    return next(s for s in result.summary() if s["calibration"] == mode and s["chip"] == chip)


def test_calibration_lowers_the_measured_linearity_error(make_arch):
    arch = make_arch(**SMALL, **MISMATCH)
    res = characterize(arch, samples=8000, chips=2, progress=False)
    assert res.samples_per_chip == 4000
    assert [(r.calibration, r.chip) for r in res.runs] == [
        (m, c) for c in range(2) for m in MODES]
    for r in res.runs:
        assert r.ideal.size == 4000
        assert len(r.columns) == 16  # every column of the macro
        assert sum(c.samples for c in r.columns) == 4000
    before, after = by(res, "none"), by(res, "two_step")
    assert after["std_lsb"] < before["std_lsb"]
    assert abs(after["mean_lsb"]) < abs(before["mean_lsb"])
    assert after["max_abs_lsb"] < before["max_abs_lsb"]
    # the same chip in both settings: the raw codes' ideal values are the same
    assert np.array_equal(res.runs[0].ideal, res.runs[1].ideal)


def test_an_ideal_macro_has_no_error_and_mismatch_moves_it(make_arch):
    res = characterize(make_arch(**SMALL), samples=3000, chips=1, progress=False)
    for r in res.runs:
        assert np.array_equal(r.value, r.ideal)  # unit-step ideal ADC: exact
    worse = characterize(make_arch(**SMALL, **{"variation.adc.gain_sigma": 0.05}),
                         samples=3000, chips=1, progress=False)
    assert by(worse, "none")["max_abs_lsb"] > 0


def test_a_calibrated_range_is_set_before_the_sweep(make_arch):
    arch = make_arch(**{**SMALL, **MISMATCH, "crossbar.adc.range": "calibrated",
                        "crossbar.adc.clip": True, "crossbar.adc.bits": 5})
    res = characterize(arch, samples=2000, chips=1, progress=False)
    assert by(res, "two_step")["std_lsb"] < by(res, "none")["std_lsb"]


def test_seeded_and_more_chips_keep_the_earlier_ones(make_arch):
    arch = make_arch(**SMALL, **MISMATCH)
    one = characterize(arch, samples=2000, chips=1, progress=False)
    again = characterize(arch, samples=2000, chips=1, progress=False)
    two = characterize(arch, samples=4000, chips=2, progress=False)
    other = characterize(arch, samples=2000, chips=1, seed=5, progress=False)
    for a, b, c in zip(one.runs, again.runs, two.runs, strict=False):
        assert a.value.tobytes() == b.value.tobytes() == c.value.tobytes()
    assert not np.array_equal(one.runs[0].value, other.runs[0].value)
    assert not np.array_equal(two.runs[0].value, two.runs[2].value)  # chip 1 is another chip


def test_tables_carry_every_column(make_arch):
    res = characterize(make_arch(**SMALL, **MISMATCH), samples=2000, chips=1,
                       progress=False)
    rows = list(csv.DictReader(io.StringIO(column_table_csv(res))))
    assert len(rows) == 2 * 16
    assert {r["calibration"] for r in rows} == set(MODES)
    md = summary_markdown(res)
    assert "| two_step | all |" in md and "within 2 LSB" in md


def test_cli_writes_plot_and_tables(make_arch, tmp_path, capsys):
    path = tmp_path / "arch.yaml"
    path.write_text(yaml.safe_dump(make_arch.dict(**SMALL, **MISMATCH)))
    out = tmp_path / "out"
    rc = main(["characterize", str(path), "--samples", "1500", "--out", str(out), "--quiet"])
    assert rc == 0
    assert (out / "linearity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "columns.csv").is_file() and (out / "characterize.md").is_file()
    assert "two_step" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["characterize", "no_such_arch"], "not found"),
    (["characterize", "isaac_32nm", "--samples", "0"], "--samples"),
    (["characterize", "isaac_32nm", "--chips", "0"], "--chips"),
])
def test_cli_mistakes_get_one_message(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_bad_arch_names_the_yaml_path(make_arch, tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(make_arch.dict(**{"crossbar.adc.calibration": "magic"})))
    assert main(["characterize", str(path), "--quiet"]) == 2
    assert "crossbar.adc.calibration" in capsys.readouterr().err


def test_cap_ram_macro_is_all_its_weight_groups_and_calibration_helps():
    """The CAP-RAM family: the sweep covers the 8 weight groups (512 MAC-row view rows) of
    one macro through the family's own layer; with variation on, two-step calibration
    lowers the error; the attenuation (parasitic) moves the uncalibrated mean."""
    from analysis.characterize import _macro_layer, _macro_shape
    from tests.test_capram import capram

    var = {"crossbar.mac.parasitic_capacitance": "8fF",
           "variation.mac.capacitance_mismatch": 0.01,
           "variation.adc": {"offset": "5mV", "noise": "1mV", "unit_cap_mismatch": 0.01}}
    arch = capram(**var)
    k, n = _macro_shape(arch)
    assert (k, n) == (512, 16)  # 8 groups x 64 MAC rows; 8-bit weights in 8 of 128 columns
    layer = _macro_layer(arch, np.ones((k, n), np.int64), np.random.SeedSequence(0))
    assert type(layer).__name__ == "CapRamLayer"
    res = characterize(arch, samples=8192, chips=1, progress=False)
    assert res.rows == 512
    before, after = by(res, "none"), by(res, "two_step")
    assert after["std_lsb"] < before["std_lsb"]
    assert after["max_abs_lsb"] < before["max_abs_lsb"]
    ideal = by(characterize(capram(**{**var, "crossbar.mac.parasitic_capacitance": "0fF"}),
                            samples=8192, chips=1, progress=False), "none")
    assert before["mean_lsb"] < ideal["mean_lsb"]
