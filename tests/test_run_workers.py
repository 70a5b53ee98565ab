"""``imcsim run --workers N``: whole batches in worker processes give the same result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from analysis.cli import main

REPO = Path(__file__).resolve().parents[1]
NOISY = str(REPO / "examples" / "isaac_32nm_adc_mismatch.yaml")  # variation, ADC noise


def _result(out: Path) -> dict:
    result = json.loads((out / "result.json").read_text())
    result.pop("wall_s", None)
    result.pop("seconds", None)
    return {k: v for k, v in result.items() if "wall" not in k and k != "out_dir"}


def test_workers_give_the_same_bits_and_resume(tmp_path):
    """A noisy run (cell variation, mismatched ADCs, comparator noise fresh per batch) over
    four batches: two worker processes give the result of this process, events, activity,
    energy and accuracies alike; a run stopped after two batches resumes in workers to the
    same result. A different seed moves it (the comparison can fail)."""
    base = ["run", NOISY, "digits_cnn", "--samples", "40", "--batch-size", "10", "--quiet"]
    one, two, other = tmp_path / "one", tmp_path / "two", tmp_path / "other"
    assert main(base + ["--out", str(one), "--workers", "1"]) == 0
    assert main(base + ["--out", str(two), "--workers", "2"]) == 0
    assert _result(one) == _result(two)
    assert main(base + ["--out", str(other), "--seed", "1"]) == 0
    assert _result(other)["events_total"] != _result(one)["events_total"]

    progress = json.loads((one / "progress.json").read_text())
    partial = tmp_path / "partial"
    assert main(["run", NOISY, "digits_cnn", "--samples", "20", "--batch-size", "10",
                 "--quiet", "--out", str(partial)]) == 0
    staged = json.loads((partial / "progress.json").read_text())
    assert staged["done"] == 2
    staged["key"] = progress["key"]  # pretend the 40-sample run stopped after batch 2
    (partial / "progress.json").write_text(json.dumps(staged))
    (partial / "result.json").unlink()
    assert main(base + ["--out", str(partial), "--workers", "2"]) == 0
    assert _result(partial) == _result(one)


@pytest.mark.parametrize("bad", ["0", "x"])
def test_workers_must_be_a_whole_number_of_at_least_one(bad, capsys):
    assert main(["run", NOISY, "digits_cnn", "--workers", bad]) == 2
    assert "--workers: must be auto or a whole number from 1 to 1,024" in capsys.readouterr().err


def _worker_args(workload, files_key=None):
    from analysis.run import _files_key
    from sim.config import load_arch
    from workloads.spec import load_workload

    key = files_key if files_key is not None else _files_key(load_workload(workload))
    return (load_arch(NOISY), workload, 40, None, 0, 0, False, 1, key)


def test_a_worker_start_failure_is_raised_as_itself(tmp_path):
    """A worker whose start fails raises its own error in the parent (a missing file, or
    the workload's files changed since the parent read them), not a broken pool."""
    from analysis.run import _batch_results
    from sim.errors import UserError

    digits = REPO / "workloads" / "digits_cnn.yaml"
    with pytest.raises(UserError, match="changed on disk during the run"):
        list(_batch_results(None, range(2), 2, _worker_args(digits, files_key="stale")))
    gone = tmp_path / "gone.yaml"
    with pytest.raises(UserError, match="gone.yaml"):
        list(_batch_results(None, range(2), 2, _worker_args(gone, files_key="")))


def test_a_dead_worker_is_one_clear_error():
    """A worker process killed mid-run ends the run with one UserError naming the remedy,
    not a traceback from the process pool."""
    import multiprocessing
    import os
    import signal

    from analysis.run import _batch_results
    from sim.errors import UserError

    results = _batch_results(None, range(40), 2,
                             _worker_args(REPO / "workloads" / "digits_cnn.yaml"))
    next(results)  # the workers are up
    for child in multiprocessing.active_children():
        os.kill(child.pid, signal.SIGKILL)
    with pytest.raises(UserError, match="batch worker process died.*fewer --workers"):
        list(results)


def test_auto_workers_start_only_for_long_runs(tmp_path, monkeypatch, caplog):
    """``--workers auto`` (the default): a short run stays in this process; one whose
    remaining batches would take longer than ``AUTO_WORKERS_SECONDS`` runs them in worker
    processes after the first; both give the one-process result."""
    import logging

    from analysis import run

    base = ["run", NOISY, "digits_cnn", "--samples", "30", "--batch-size", "10", "--quiet"]
    one, short, long_ = tmp_path / "one", tmp_path / "short", tmp_path / "long"
    assert main(base + ["--out", str(one), "--workers", "1"]) == 0
    with caplog.at_level(logging.INFO, logger="analysis.run"):
        monkeypatch.setattr(run, "AUTO_WORKERS_SECONDS", float("inf"))
        assert main(base + ["--out", str(short)]) == 0
        assert "worker processes" not in caplog.text
        monkeypatch.setattr(run, "AUTO_WORKERS_SECONDS", 0.0)
        monkeypatch.setattr(run, "_cores", lambda: 2)
        assert main(base + ["--out", str(long_)]) == 0
        assert "2 batches left" in caplog.text and "in 2 worker processes" in caplog.text
    assert _result(one) == _result(short) == _result(long_)


def test_trace_is_the_same_with_workers(tmp_path):
    """``--trace`` runs the first sample with batch 0's noise whoever ran the batches: the
    trace CSV is the same with one process and with two workers."""
    base = ["run", NOISY, "digits_cnn", "--samples", "20", "--batch-size", "10", "--quiet",
            "--trace", "fc"]
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(base + ["--out", str(one), "--workers", "1"]) == 0
    assert main(base + ["--out", str(two), "--workers", "2"]) == 0
    assert (one / "trace_fc.csv").read_bytes() == (two / "trace_fc.csv").read_bytes()


def test_workers_that_map_the_model_themselves_give_the_same_bits(tmp_path, monkeypatch):
    """The workers start from this process's mapping (pickled into a temporary file, removed
    after the run); when it does not pickle, each worker loads the workload and maps the
    model itself. Both give the one-process result."""
    from analysis import run

    base = ["run", NOISY, "digits_cnn", "--samples", "30", "--batch-size", "10", "--quiet"]
    one, state, own = tmp_path / "one", tmp_path / "state", tmp_path / "own"
    assert main(base + ["--out", str(one), "--workers", "1"]) == 0
    made = []
    real = run._mapping_state
    monkeypatch.setattr(run, "_mapping_state", lambda r: made.append(real(r)) or made[-1])
    assert main(base + ["--out", str(state), "--workers", "2"]) == 0
    assert made and made[0] is not None and not Path(made[0]).exists()  # pickled, removed
    monkeypatch.setattr(run, "_mapping_state", lambda r: None)  # as if it did not pickle
    assert main(base + ["--out", str(own), "--workers", "2"]) == 0
    assert _result(one) == _result(state) == _result(own)


@pytest.mark.parametrize("entry", ["wnets/net.py:Net", "wnets.net:Net"])
def test_workers_run_a_users_model(tmp_path, entry):
    """A user's model class (a file, or a module found from the YAML's folder) unpickles in
    the workers, which import its code first: the same result as one process. (A package
    name no other test uses: a package of that name imported from another test's folder
    stays in ``sys.modules``.)"""
    import torch

    from workloads.spec import load_workload

    (tmp_path / "wnets").mkdir()
    (tmp_path / "wnets" / "__init__.py").write_text("")
    (tmp_path / "wnets" / "net.py").write_text(
        "import torch\nfrom torch import nn\n\n\nclass Net(nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n"
        "        self.fc1 = nn.Linear(64, 16)\n        self.fc2 = nn.Linear(16, 10)\n\n"
        "    def forward(self, x):\n        return self.fc2(torch.relu(self.fc1(x.flatten(1))))\n")
    spec = tmp_path / "w.yaml"
    spec.write_text(f"name: w\nmodel: {entry}\ndataset: digits\n"
                    "bits: {weights: 8, activations: 8}\ncheckpoint: w.pt\n")
    torch.manual_seed(0)
    torch.save(load_workload(spec).build_model().state_dict(), tmp_path / "w.pt")
    base = ["run", NOISY, str(spec), "--samples", "20", "--batch-size", "10", "--quiet"]
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(base + ["--out", str(one), "--workers", "1"]) == 0
    assert main(base + ["--out", str(two), "--workers", "2"]) == 0
    assert _result(one) == _result(two)
    assert _result(one)["events_total"]["adc_conversions"] > 0
