"""Design-space sweeps: spec validation, scaling, Pareto fronts, resumption, executors."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import ISAAC_YAML, REPO

from analysis.pareto import pareto_mask
from analysis.sweep import run_sweep
from analysis.sweep_spec import check_against_base, load_sweep, set_path
from sim.components.converters import survey_adc_energy_pj
from sim.config.loader import arch_from_dict, read_yaml
from sim.errors import ConfigError, UserError

# Two ADC resolutions x two crossbar sizes on the digits CNN: the 4-bit points cannot hold
# ISAAC's partial sums with a fixed, non-clipping range (invalid), the 128x128 point breaks
# the area constraint (ISAAC's 85.4 mm2; 64x64 crossbars give 84.9 mm2: a quarter of the array
# area, half the DACs and S+Hs, the ADCs unchanged at ISAAC's stated 1.28 GS/s), one point is ok.
SMALL = {
    "name": "small",
    "arch": str(ISAAC_YAML),
    "workload": "digits_cnn",
    "samples": 40,
    "batch_size": 40,
    "parameters": {
        "crossbar.adc.bits": [4, 8],
        "crossbar.size": {"paths": ["crossbar.rows", "crossbar.columns"], "values": [64, 128]},
    },
    "constraints": ["area_mm2 <= 85"],
    "objectives": {"hardware_accuracy": "max", "tops_per_w": "max"},
}


def write_spec(tmp_path: Path, spec: dict, name: str = "sweep.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def problems_of(tmp_path: Path, **changes) -> list[tuple[str, str]]:
    spec = copy.deepcopy(SMALL)
    spec.update(changes)
    with pytest.raises(ConfigError) as info:
        parsed = load_sweep(write_spec(tmp_path, spec))
        check_against_base(parsed, read_yaml(parsed.arch_path))
    return info.value.problems


# ----------------------------------------------------------------------------- the YAML
def test_grid_points_and_linked_parameter(tmp_path):
    spec = load_sweep(write_spec(tmp_path, SMALL))
    points = spec.design_points()
    assert len(points) == 4
    assert points[0] == {"crossbar.adc.bits": 4, "crossbar.size": 64}
    assert spec.parameters[1].paths == ("crossbar.rows", "crossbar.columns")


def test_random_sampling_is_seeded_and_in_range(tmp_path):
    spec = dict(SMALL, sampling={"method": "random", "points": 5, "seed": 3},
                parameters={"variation.cell.sigma": {"low": 0.01, "high": 0.2, "log": True},
                            "crossbar.adc.bits": [6, 7, 8]})
    a = load_sweep(write_spec(tmp_path, spec)).design_points()
    b = load_sweep(write_spec(tmp_path, spec)).design_points()
    assert a == b and len(a) == 5
    assert all(0.01 <= p["variation.cell.sigma"] <= 0.2 for p in a)
    assert {p["crossbar.adc.bits"] for p in a} <= {6, 7, 8}


@pytest.mark.parametrize(("changes", "path", "words"), [
    ({"parameters": {"crossbar.adc.bitz": [4, 8]}}, "parameters.crossbar.adc.bitz",
     "not an arch setting"),
    ({"objectives": {"topsw": "max"}}, "objectives.topsw", "unknown metric"),
    ({"objectives": {"tops_per_w": "up"}}, "objectives.tops_per_w", "max or min"),
    ({"constraints": ["area < lots"]}, "constraints[0]", "unknown metric"),
    ({"constraints": ["area_mm2 <= lots"]}, "constraints[0]", "not a number"),
    ({"parameters": {}}, "parameters", "at least one"),
    ({"parameters": {"crossbar.rows": {"low": 1, "high": 2}}}, "parameters.crossbar.rows",
     "needs 'points'"),
    ({"parameters": {"components[nope].power": ["1mW"]}}, "parameters.components[nope].power",
     "no components entry named 'nope'"),
    ({"workload": "no_such_workload"}, "workload", "file not found"),
    ({"samplez": 3}, "samplez", "unknown key"),
])
def test_spec_mistakes_name_their_yaml_path(tmp_path, changes, path, words):
    problems = problems_of(tmp_path, **changes)
    assert any(p == path and words in m for p, m in problems), problems


def test_set_path_addresses_component_rows_by_name():
    data = read_yaml(ISAAC_YAML)
    set_path(data, "components[adc].power", "8mW")
    set_path(data, "variation.cell.sigma", 0.1)
    arch = arch_from_dict(data)
    assert next(c for c in arch.components if c.name == "adc").power_mw == 8.0
    assert arch.variation.cell.sigma == 0.1


# ----------------------------------------------------------------------------- calibration
def _point(**changes):
    base = read_yaml(ISAAC_YAML)
    data = copy.deepcopy(base)
    for k, v in changes.items():
        set_path(data, k, v)
    return arch_from_dict(base), arch_from_dict(data)


def test_sweep_points_are_calibrated_by_the_loader():
    # No sweep-only rescaling: a point's arch is loaded like any config, and the loader
    # scales the stated figures to the point's own parameters (tests/test_calibration.py).
    base, arch = _point(**{"crossbar.adc.bits": 4, "crossbar.adc.clip": True})
    ratio = survey_adc_energy_pj(4, 1.28e9, 32) / survey_adc_energy_pj(8, 1.28e9, 32)
    assert arch.energy.pj("adc_conversions") == pytest.approx(
        base.energy.pj("adc_conversions") * ratio, rel=1e-12)
    adc0 = next(c for c in base.components if c.name == "adc")
    adc1 = next(c for c in arch.components if c.name == "adc")
    assert adc1.power_mw == pytest.approx(adc0.power_mw * ratio, rel=1e-12)
    assert adc1.area_um2 < adc0.area_um2
    assert any(n.startswith("adc (sar_adc) stated at bits=8") for n in arch.notes)


def test_sweep_point_notes_come_from_the_calibration(tmp_path):
    from analysis.sweep import _build_point

    spec = load_sweep(write_spec(tmp_path, {**SMALL, "parameters": {"crossbar.adc.bits": [4]},
                                            "fixed": {"crossbar.adc.clip": True}}))
    task, notes, reason = _build_point(spec, read_yaml(ISAAC_YAML), 0,
                                       {"crossbar.adc.bits": 4}, "k")
    assert reason == "" and task is not None
    assert any("adc (sar_adc) stated at bits=8" in n for n in notes)


def test_scaling_key_is_refused_with_the_reason(tmp_path):
    problems = problems_of(tmp_path, scaling="survey")
    assert any(p == "scaling" and "always on" in m for p, m in problems)


# ----------------------------------------------------------------------------- Pareto
def test_pareto_mask_dominance_ties_and_directions():
    v = np.array([[1.0, 5.0], [2.0, 4.0], [1.0, 4.0], [2.0, 4.0], [0.5, 6.0]])
    # maximize both: (1,4) is dominated by (1,5) and (2,4); equal rows stay together.
    assert pareto_mask(v, ["max", "max"]).tolist() == [True, True, False, True, True]
    # maximize x, minimize y: the two (2, 4) rows beat every other row in both.
    assert pareto_mask(v, ["max", "min"]).tolist() == [False, True, False, True, False]


# ----------------------------------------------------------------------------- a real sweep
@pytest.fixture(scope="module")
def small_sweep(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("small")
    spec = load_sweep(write_spec(tmp, SMALL))
    return spec, run_sweep(spec, tmp / "out", workers=0, progress=False), tmp / "out"


def test_sweep_statuses_and_reasons(small_sweep):
    _, outcome, _ = small_sweep
    status = {(r.params["crossbar.adc.bits"], r.params["crossbar.size"]): r
              for r in outcome.rows}
    assert status[4, 64].status == status[4, 128].status == "invalid"
    assert "crossbar.adc" in status[4, 64].reason and "cannot hold" in status[4, 64].reason
    assert status[8, 128].status == "infeasible"
    assert "area_mm2 <= 85" in status[8, 128].reason
    assert status[8, 128].metrics["area_mm2"] > 85
    assert status[8, 64].status == "ok"
    assert [r.idx for r in outcome.front] == [status[8, 64].idx]
    assert outcome.computed == 4 and outcome.resumed == 0


def test_sweep_outputs(small_sweep):
    _, outcome, out = small_sweep
    for name in ("sweep.db", "points.csv", "pareto.csv", "pareto.md", "pareto.png",
                 "sweep.json"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "sweep.json").read_text())
    assert summary["counts"] == {"invalid": 2, "infeasible": 1, "ok": 1}
    assert len((out / "points.csv").read_text().strip().splitlines()) == 5
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rerun_recomputes_nothing(small_sweep, tmp_path):
    spec, first, out = small_sweep
    again = run_sweep(spec, out, workers=0, progress=False)
    assert again.computed == 0 and again.resumed == 4
    assert [(r.key, r.metrics) for r in again.rows] == [(r.key, r.metrics) for r in first.rows]


def test_edited_constraints_reclassify_stored_points_without_recomputing(small_sweep,
                                                                         tmp_path):
    spec, _, out = small_sweep
    looser = dataclasses.replace(spec, constraints=())
    outcome = run_sweep(looser, out, workers=0, progress=False)
    assert outcome.computed == 0
    assert outcome.by_status() == {"invalid": 2, "ok": 2}
    assert len(outcome.front) >= 1


def test_linked_paths_are_part_of_the_point_identity(small_sweep):
    spec, _, out = small_sweep
    rows_only = dataclasses.replace(spec, parameters=(
        spec.parameters[0],
        dataclasses.replace(spec.parameters[1], paths=("crossbar.rows",))))
    keys = {r.key for r in run_sweep(rows_only, out, workers=0, progress=False).rows}
    assert keys.isdisjoint({r.key for r in small_sweep[1].rows})


def test_duplicate_values_and_component_field_typos_are_spec_mistakes(tmp_path):
    problems = problems_of(tmp_path, parameters={"crossbar.adc.bits": [4, 4, 8],
                                                 "components[adc].powr": ["8mW"]})
    paths = dict(problems)
    assert "values repeat" in paths["parameters.crossbar.adc.bits"]
    assert "not an arch setting" in paths["parameters.components[adc].powr"]


def test_a_missing_data_set_stops_the_sweep_and_stores_nothing(tmp_path):
    spec = dict(SMALL, workload=str(REPO / "workloads" / "lenet5_mnist.yaml"),
                data_dir=str(tmp_path / "nothing_here"), constraints=[],
                parameters={"crossbar.adc.bits": [8]})
    with pytest.raises(UserError, match="mnist"):
        run_sweep(load_sweep(write_spec(tmp_path, spec)), tmp_path / "o", workers=0,
                  progress=False)
    con = sqlite3.connect(tmp_path / "o" / "sweep.db")
    assert con.execute("SELECT COUNT(*) FROM points").fetchone() == (0,)
    con.close()


def test_mapping_errors_are_invalid_points_not_failures(tmp_path):
    spec = dict(SMALL, parameters={"inputs.bits": [4, 16]}, constraints=[])
    outcome = run_sweep(load_sweep(write_spec(tmp_path, spec)), tmp_path / "o", workers=0,
                        progress=False)
    by = {r.params["inputs.bits"]: r for r in outcome.rows}
    assert by[4].status == "invalid" and "activation" in by[4].reason
    assert by[16].status == "ok"


# ----------------------------------------------------------------------------- kill -9
KILL_SPEC = {
    "name": "kill",
    "arch": str(ISAAC_YAML),
    "workload": "digits_cnn",
    "samples": 360,
    "batch_size": 120,
    "parameters": {"crossbar.cell.bits": [1, 2],
                   "crossbar.size": {"paths": ["crossbar.rows", "crossbar.columns"],
                                     "values": [32, 64, 128]}},
    "objectives": {"hardware_accuracy": "max", "energy_per_inference_nj": "min"},
}


def _rows(db: Path) -> dict[str, tuple]:
    con = sqlite3.connect(db)
    try:
        return {k: (run, finished) for k, run, finished in
                con.execute("SELECT key, run, finished FROM points")}
    except sqlite3.OperationalError:  # the sweep is still creating its tables
        return {}
    finally:
        con.close()


@pytest.mark.slow
def test_kill_minus_nine_then_resume(tmp_path):
    spec = write_spec(tmp_path, KILL_SPEC)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "analysis.cli", "sweep", str(spec), "--out", str(out),
           "--workers", "1", "--quiet"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = out / "sweep.db"
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:
            if db.is_file() and len(_rows(db)) >= 2:
                break
            if proc.poll() is not None:
                pytest.fail("the sweep finished before it could be killed")
            time.sleep(0.2)
        else:
            pytest.fail("no point finished in time")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    before = _rows(db)
    assert 2 <= len(before) < 6
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    after = _rows(db)
    assert len(after) == 6
    con = sqlite3.connect(db)
    assert con.execute("SELECT COUNT(*), COUNT(DISTINCT key) FROM points").fetchone() == (6, 6)
    con.close()
    for key, stored in before.items():
        assert after[key] == stored  # finished before the kill: kept, not recomputed
    new_runs = {after[k][0] for k in after if k not in before}
    assert len(new_runs) == 1 and new_runs.isdisjoint({r for r, _ in before.values()})
    assert f"{len(before)} were already in" in done.stdout
    assert f"{6 - len(before)} evaluated now" in done.stdout


# ----------------------------------------------------------------------------- executors
DASK_SPEC = dict(SMALL, name="dask", constraints=[],
                 parameters={"crossbar.cell.bits": [1, 2],
                             "variation.cell.sigma": [0.0, 0.05]})


@pytest.mark.slow
def test_dask_local_cluster_matches_local_pool(tmp_path):
    distributed = pytest.importorskip("distributed")
    spec = load_sweep(write_spec(tmp_path, DASK_SPEC))
    local = run_sweep(spec, tmp_path / "local", workers=2, progress=False)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        remote = run_sweep(spec, tmp_path / "dask", scheduler=cluster.scheduler_address,
                           progress=False)
    assert remote.computed == local.computed == 4
    assert all(r.status == "ok" for r in local.rows)
    assert [(r.key, r.status, r.metrics) for r in remote.rows] == \
        [(r.key, r.status, r.metrics) for r in local.rows]
    # the points differ from each other, so the comparison is not vacuous: cell bits change
    # the energy, cell variation (drawn per point from the seed) the accuracy
    acc = {(r.params["crossbar.cell.bits"], r.params["variation.cell.sigma"]):
           r.metrics["hardware_accuracy"] for r in local.rows}
    assert acc[1, 0.0] != acc[1, 0.05] and acc[2, 0.0] != acc[2, 0.05]
    assert len({r.metrics["energy_per_inference_nj"] for r in local.rows}) >= 2


def test_cli_sweep_reports_spec_mistakes_with_exit_2(tmp_path, capsys):
    from analysis.cli import main

    spec = dict(SMALL, objectives={"topsw": "max"})
    code = main(["sweep", str(write_spec(tmp_path, spec)), "--out", str(tmp_path / "o"),
                 "--workers", "0", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert "objectives.topsw" in err and "Traceback" not in err
    assert not (tmp_path / "o" / "sweep.db").exists()


# ----------------------------------------------------------------------------- analytical
def test_analytical_mode_agrees_with_bit_true_and_skips_accuracy(tmp_path):
    spec = dict(SMALL, constraints=[], mode="analytical",
                objectives={"tops_per_w": "max", "area_mm2": "min"},
                parameters={"crossbar.cell.bits": [1, 2]})
    fast = run_sweep(load_sweep(write_spec(tmp_path, spec)), tmp_path / "a", workers=0,
                     progress=False)
    exact = run_sweep(load_sweep(write_spec(tmp_path, dict(spec, mode="bit_true"), "b.yaml")),
                      tmp_path / "b", workers=0, progress=False)
    for a, b in zip(fast.rows, exact.rows, strict=True):
        assert a.params == b.params and a.key != b.key
        assert np.isnan(a.metrics["hardware_accuracy"])
        # events from the float model's activations vs the hardware's own: within 1 %
        assert a.metrics["energy_per_inference_nj"] == pytest.approx(
            b.metrics["energy_per_inference_nj"], rel=0.01)
        assert a.metrics["area_mm2"] == b.metrics["area_mm2"]
        assert a.metrics["latency_per_inference_s"] == pytest.approx(
            b.metrics["latency_per_inference_s"], rel=0.01)
    summary = json.loads((tmp_path / "a" / "sweep.json").read_text())  # strict JSON: no NaN
    assert summary["points"][0]["metrics"]["hardware_accuracy"] is None


def test_analytical_mode_refuses_accuracy_goals(tmp_path):
    problems = problems_of(tmp_path, mode="analytical")
    assert ("objectives.hardware_accuracy" in dict(problems))


def test_point_keys_follow_a_user_models_code(tmp_path):
    """Editing a user's model file (``model: nets/net.py:Net``) changes every point's key, so
    a resumed sweep recomputes instead of reusing results of the old code; the checkpoint's
    bytes count the same way."""
    from analysis.sweep import _workload_digest
    from workloads.spec import load_workload

    (tmp_path / "nets").mkdir()
    code = ("from torch import nn\n\n\nclass Net(nn.Linear):\n"
            "    def __init__(self):\n        super().__init__(64, 10)\n")
    (tmp_path / "nets" / "net.py").write_text(code)
    spec = tmp_path / "w.yaml"
    spec.write_text("name: w\nmodel: nets/net.py:Net\ndataset: digits\n"
                    "bits: {weights: 8, activations: 8}\ncheckpoint: w.pt\n")
    before = _workload_digest(load_workload(spec))
    assert _workload_digest(load_workload(spec)) == before  # deterministic
    (tmp_path / "nets" / "net.py").write_text(code + "\n# a change to the model's code\n")
    edited = _workload_digest(load_workload(spec))
    assert edited != before
    (tmp_path / "w.pt").write_bytes(b"weights")
    assert _workload_digest(load_workload(spec)) != edited


def test_worker_runs_the_arch_the_coordinator_built(tmp_path, monkeypatch):
    """Each point's arch is built (validated, calibrated) once, by the coordinator; the worker
    runs that arch: a task whose built arch differs gives that arch's metrics, and one without
    it gives the same metrics as with it (the worker builds the same arch from the mapping)."""
    import analysis.sweep as sweep_mod
    from analysis.executors import evaluate_point

    spec = load_sweep(write_spec(tmp_path, dict(
        SMALL, constraints=[], mode="analytical", samples=12,
        objectives={"tops_per_w": "max", "area_mm2": "min"},
        parameters={"crossbar.cell.bits": [1, 2]})))
    built = []
    real = sweep_mod.arch_from_dict

    def counting(data, **kw):
        built.append(kw.get("source"))
        return real(data, **kw)

    monkeypatch.setattr(sweep_mod, "arch_from_dict", counting)
    base = read_yaml(spec.arch_path)
    tasks = [sweep_mod._build_point(spec, base, i, {"crossbar.cell.bits": b}, f"k{b}")[0]
             for i, b in enumerate((1, 2))]
    assert len(built) == 2
    with_built = evaluate_point(tasks[0])
    rebuilt = evaluate_point({k: v for k, v in tasks[0].items() if k != "built"})
    assert with_built["status"] == rebuilt["status"] == "ok"
    np.testing.assert_equal(with_built["metrics"], rebuilt["metrics"])  # NaN accuracy too
    swapped = evaluate_point(dict(tasks[0], built=tasks[1]["built"]))
    np.testing.assert_equal(swapped["metrics"], evaluate_point(tasks[1])["metrics"])
    assert swapped["metrics"]["energy_per_inference_nj"] != \
        with_built["metrics"]["energy_per_inference_nj"]
    run_sweep(spec, tmp_path / "o", workers=0, progress=False)
    points = [s for s in built[2:] if s != str(spec.arch_path)]  # (and the base arch once)
    assert len(points) == 2  # one build per point of the sweep


def test_analytical_sweep_with_kept_work_equals_one_without(tmp_path, monkeypatch):
    """An analytical sweep over ADC bits x crossbar size x cell bits gives the same metrics,
    point by point and bit for bit, with the per-point memos (kept mappings, placement
    copies, simpy runs) as with none of them; the kept mappings are used."""
    from analysis import run
    from sim.engine import placement
    from sim.engine import timing as timing_mod

    spec = load_sweep(write_spec(tmp_path, dict(
        SMALL, constraints=[], mode="analytical", samples=16,
        objectives={"tops_per_w": "max", "area_mm2": "min"}, fixed={"crossbar.adc.clip": True},
        parameters={"crossbar.adc.bits": [5, 8],
                    "crossbar.size": {"paths": ["crossbar.rows", "crossbar.columns"],
                                      "values": [64, 128]},
                    "crossbar.cell.bits": [1, 2]})))

    def metrics(out):
        rows = run_sweep(spec, tmp_path / out, workers=0, progress=False).rows
        assert [r.status for r in rows] == ["ok"] * 8
        (wl,) = run._ANALYTICAL.values()
        return [json.dumps(r.metrics, sort_keys=True) for r in rows], dict(wl.mapping_stats)

    run._ANALYTICAL.clear()
    timing_mod.clear_simulations()
    kept, stats = metrics("kept")
    assert stats == {"hits": 4, "misses": 4}
    monkeypatch.setattr(run._AnalyticalWorkload, "MAPPINGS_KEPT", 0)
    monkeypatch.setattr(placement, "_copies", placement._copies.__wrapped__)
    monkeypatch.setattr(timing_mod, "SIMULATIONS_KEPT", 0)
    timing_mod.clear_simulations()
    run._ANALYTICAL.clear()
    fresh, stats = metrics("fresh")
    assert stats == {"hits": 0, "misses": 8}
    assert kept == fresh
    assert len(set(kept)) == 8


def test_sweep_tasks_carry_the_backend_option(tmp_path, monkeypatch):
    # `imcsim sweep --backend X`: each task carries X to workers that do not share this
    # environment (tests/test_backend.py: the worker applies it for the point only).
    from analysis.sweep import _build_point

    spec = load_sweep(write_spec(tmp_path, {**SMALL, "parameters": {"crossbar.adc.bits": [4]},
                                            "fixed": {"crossbar.adc.clip": True}}))
    monkeypatch.setenv("IMCSIM_BACKEND", "torch")  # exported, not asked for: not carried
    for name in ("numpy", "torch", None):
        task, _, _ = _build_point(spec, read_yaml(ISAAC_YAML), 0, {"crossbar.adc.bits": 4}, "k",
                                  name)
        assert task["backend"] == name


def test_points_are_built_as_the_executor_takes_them(tmp_path, monkeypatch):
    # A pool's workers start on the first points while the coordinator builds the next: the
    # tasks are a lazy sequence. With the serial executor, building and running interleave.
    import analysis.sweep as sweep_mod

    events = []
    build = sweep_mod._build_point

    def built(spec, base, idx, values, key, backend=None):
        events.append(("build", idx))
        return build(spec, base, idx, values, key, backend)

    def evaluated(task):
        events.append(("run", task["idx"]))
        return {"key": task["key"], "status": "invalid", "reason": "stub", "seconds": 0.0}

    monkeypatch.setattr(sweep_mod, "_build_point", built)
    monkeypatch.setattr(sweep_mod, "evaluate_point", evaluated)
    spec = dict(SMALL, parameters={"crossbar.adc.bits": [4, 5, 6, 8], "inputs.bits": [4, 16]},
                constraints=[], fixed={"crossbar.adc.clip": True})
    outcome = run_sweep(load_sweep(write_spec(tmp_path, spec)), tmp_path / "o", workers=0,
                        progress=False)
    assert len(outcome.rows) == 8 and {r.status for r in outcome.rows} == {"invalid"}
    builds = [i for kind, i in events if kind == "build"]
    assert sorted(builds) == list(range(8))
    assert events.index(("run", builds[0])) < events.index(("build", builds[-1]))


ANALYTICAL = dict(SMALL, mode="analytical", samples=16, constraints=[],
                  objectives={"tops_per_w": "max", "area_mm2": "min"},
                  parameters={"crossbar.adc.bits": [4, 5, 6, 8],
                              "crossbar.size": {"paths": ["crossbar.rows", "crossbar.columns"],
                                                "values": [64, 128]}},
                  fixed={"crossbar.adc.clip": True})


def _metrics(outcome):
    return json.dumps([(r.idx, r.status, r.metrics) for r in outcome.rows], sort_keys=True)


def test_analytical_sweep_without_workers_runs_here_while_short(tmp_path, monkeypatch):
    import analysis.executors as ex

    def no_pool(*args, **kwargs):
        raise AssertionError("a short analytical sweep started a pool")

    monkeypatch.setattr(ex, "LocalPool", no_pool)
    spec = load_sweep(write_spec(tmp_path, ANALYTICAL))
    auto = run_sweep(spec, tmp_path / "auto", progress=False)
    serial = run_sweep(spec, tmp_path / "serial", workers=0, progress=False)
    assert len(auto.rows) == 8 and _metrics(auto) == _metrics(serial)
    runs = sqlite3.connect(tmp_path / "auto" / "sweep.db").execute(
        "SELECT executor FROM runs").fetchall()
    assert runs and runs[0][0].startswith("auto")


def test_analytical_sweep_hands_the_rest_to_a_pool_once_long(tmp_path, monkeypatch):
    # The rest's estimate above the threshold (here 0 s, the rate taken after one warm point):
    # the remaining points run on a local pool; the same results as in one process.
    import analysis.executors as ex

    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one usable core: the pool is never started")
    made = []
    pool_cls = ex.LocalPool

    def counted(*args, **kwargs):
        made.append(pool_cls(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(ex, "LocalPool", counted)
    monkeypatch.setattr(ex, "AUTO_POOL_SECONDS", 0.0)
    monkeypatch.setattr(ex, "AUTO_RATE_POINTS", 1)
    spec = load_sweep(write_spec(tmp_path, ANALYTICAL))
    auto = run_sweep(spec, tmp_path / "auto", progress=False)
    serial = run_sweep(spec, tmp_path / "serial", workers=0, progress=False)
    assert len(made) == 1 and _metrics(auto) == _metrics(serial)
    runs = sqlite3.connect(tmp_path / "auto" / "sweep.db").execute(
        "SELECT executor FROM runs").fetchall()
    assert runs[0][0].startswith("auto")  # the first points ran here
    # an explicit worker count is a pool from the start, bit-true sweeps too
    assert isinstance(ex.make_executor(2, None, 8), pool_cls)
    assert isinstance(ex.make_executor(None, None, None), pool_cls)
    for e in made:
        e.close()


def test_points_run_here_leave_the_callers_threads_alone(tmp_path, monkeypatch):
    # A point run in this process is single-threaded; the caller's settings come back after.
    import torch

    monkeypatch.setenv("IMCSIM_THREADS", "2")
    before = torch.get_num_threads()
    spec = load_sweep(write_spec(tmp_path, ANALYTICAL))
    for workers in (None, 0):
        run_sweep(spec, tmp_path / f"o{workers}", workers=workers, progress=False)
        assert os.environ["IMCSIM_THREADS"] == "2" and torch.get_num_threads() == before
