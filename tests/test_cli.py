"""The ``imcsim`` command line end to end: validate, run (with resume), and clear errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from analysis.cli import main

REPO = Path(__file__).resolve().parents[1]
ISAAC = str(REPO / "arch_configs" / "isaac_32nm.yaml")


def test_installed_entry_point_validates_isaac():
    exe = shutil.which("imcsim") or str(Path(sys.executable).parent / "imcsim")
    proc = subprocess.run([exe, "validate", ISAAC], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "valid: isaac_ce_32nm" in proc.stdout
    assert "largest partial sum 192" in proc.stdout


def test_validate_reports_every_problem_and_exits_2(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    text = Path(ISAAC).read_text()
    text = text.replace("rows: 128", "rows: 128\n  colour: red").replace("bits: 8", "bits: 0")
    bad.write_text(text)
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "crossbar.colour: unknown key" in err
    assert "crossbar.adc.bits: must be in 1..16, got 0" in err
    assert "Traceback" not in err


def test_run_digits_writes_result_and_resumes(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["run", ISAAC, "digits_cnn", "--samples", "40", "--batch-size", "10", "--out",
            str(out), "--quiet"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "float accuracy" in printed and "hardware accuracy" in printed
    assert "comparison with the published design (Shafiee et al., ISAAC" in printed
    result = json.loads((out / "result.json").read_text())
    for key in ("float_accuracy", "hardware_accuracy", "layers", "events_total",
                "energy_total_pj", "energy_per_inference_nj", "energy_by_event_pj"):
        assert key in result
    assert result["samples"] == 40
    assert abs(result["float_accuracy"] - result["hardware_accuracy"]) <= 0.05
    # layers and the graph's digital nodes, in execution order
    assert [layer["name"] for layer in result["layers"]] == ["conv1", "relu1", "conv2", "relu2",
                                                             "pool", "fc"]
    total = sum(layer["energy_total_pj"] for layer in result["layers"])
    assert total == pytest.approx(result["energy_total_pj"], rel=1e-12)

    # A run killed after two of four batches resumes from progress.json and ends identical.
    progress = json.loads((out / "progress.json").read_text())
    assert progress["done"] == 4
    partial = tmp_path / "partial"
    partial.mkdir()
    assert main(args[:-3] + ["--out", str(partial), "--quiet", "--samples", "20"]) == 0
    staged = json.loads((partial / "progress.json").read_text())
    staged["key"] = progress["key"]  # pretend the 40-sample run stopped after batch 2
    (partial / "progress.json").write_text(json.dumps(staged))
    (partial / "result.json").unlink()
    assert main(args[:-3] + ["--out", str(partial), "--quiet"]) == 0
    resumed = json.loads((partial / "result.json").read_text())
    for key in ("float_accuracy", "hardware_accuracy", "events_total", "energy_total_pj"):
        assert resumed[key] == result[key]
    # the wall time counts the batches the first invocation ran too
    assert resumed["wall_time_s"] > staged["wall_s"] > 0


def test_missing_dataset_is_one_clear_error(tmp_path, capsys):
    code = main(["run", ISAAC, "lenet5_mnist", "--data-dir", str(tmp_path), "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("imcsim: error:")
    assert "t10k-images-idx3-ubyte" in err
    assert "Traceback" not in err


def test_unknown_arch_name_lists_shipped(capsys):
    assert main(["validate", "no_such_arch"]) == 2
    assert "isaac_32nm" in capsys.readouterr().err


def test_help_and_bad_arguments_return_codes_instead_of_exiting(capsys):
    # main() returns argparse's codes (0 for --help, 2 for a bad argument), so that callers
    # and in-process tests see a code, never a SystemExit.
    assert main(["--help"]) == 0
    assert "validate" in capsys.readouterr().out
    assert main(["run", "isaac_32nm", "digits_cnn", "--samples", "0"]) == 2
    assert "--samples: must be a whole number of at least 1, got 0" in capsys.readouterr().err


def test_an_os_error_nobody_named_is_still_one_message(monkeypatch, capsys):
    import analysis.cli as cli

    def vanished(_args):
        raise FileNotFoundError(2, "No such file or directory", "/gone/file")

    monkeypatch.setattr(cli, "_cmd_validate", vanished)  # main() builds its parser anew
    assert main(["validate", "x"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "imcsim: error: /gone/file: No such file or directory"


@pytest.mark.parametrize("report", [False, True], ids=["plain", "with_report"])
def test_run_into_a_closed_pipe_still_saves_the_result(tmp_path, report):
    """`imcsim run ... | head`: stdout closed before the report is printed. The result (and
    the report file) are written first; no traceback, exit 141 as a shell reports SIGPIPE."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "analysis.cli", "run", ISAAC, "digits_cnn", "--samples",
           "10", "--batch-size", "10", "--out", str(out), "--quiet"]
    if report:
        cmd += ["--report", "md"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    proc.stdout.close()  # the reader exits at once, before imcsim prints anything
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=600) == 141, err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert "stdout was closed" in err and str(out / "result.json") in err
    result = json.loads((out / "result.json").read_text())
    assert result["samples"] == 10
    assert (out / "report.md").is_file() == report
