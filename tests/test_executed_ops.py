"""Effective (dense-equivalent) against executed throughput of a pruned, packed workload.

A packed layer's ``macs`` count its dense ``K x N`` product (the effective figure papers quote);
the executed figure counts the sub-layers' ``sum(k_i x n_i)`` the crossbars perform. Oracle:
the packing of the mapped model (mappers.map_model's records), not the result's own code.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from analysis import run
from mappers import map_model
from sim.config import load_arch
from sim.errors import DataError

REPO = Path(__file__).resolve().parents[1]
ISAAC = REPO / "arch_configs" / "isaac_32nm.yaml"
CAPRAM = REPO / "arch_configs" / "cap_ram_65nm.yaml"
SAMPLES = 4


def _packing_ratio(arch: Path, workload: Path, result) -> float:
    """Dense over packed MACs of the whole model, weighted by each layer's input vectors."""
    _, model, _, _, calib, recipe = run._prepare(workload, SAMPLES, None)
    mapped = map_model(model, load_arch(arch), recipe, calib, seed=0)
    macs = {lr.name: lr.events.get("macs", 0) for lr in result.layers}
    dense = packed = 0
    for rec in mapped.layers:
        vectors, rest = divmod(macs[rec.name], rec.k * rec.n)
        assert rest == 0
        dense += vectors * rec.k * rec.n
        packed += vectors * (sum(k * n for k, n in rec.parts) if rec.parts else rec.k * rec.n)
    return dense / packed


@pytest.mark.parametrize(("arch", "workload", "pruned"), [
    # RTMobile BSP 80x GRU: 84.6 effective GOPS against CAP-RAM's 8.96 GOPS peak
    (CAPRAM, REPO / "workloads" / "compressed" / "gru_bsp_80x.yaml", True),
    (ISAAC, REPO / "workloads" / "compressed" / "digits_cnn_forms.yaml", True),
    (ISAAC, REPO / "workloads" / "digits_cnn.yaml", False)],
    ids=["gru_bsp_80x", "digits_forms", "digits_dense"])
def test_executed_gops_stay_under_peak_and_effective_over_executed_is_the_packing(
        arch, workload, pruned):
    try:
        result = run.simulate(arch, workload, samples=SAMPLES, batch_size=SAMPLES,
                              progress=False)
    except DataError as err:
        pytest.skip(f"data set not available: {err}")
    ratio = _packing_ratio(arch, workload, result)
    assert (ratio > 1.0) == pruned and ratio >= 1.0
    assert result.gops_executed <= result.peak_gops
    assert result.gops / result.gops_executed == pytest.approx(ratio, rel=1e-12)
    assert result.tops_per_w / result.tops_per_w_executed == pytest.approx(ratio, rel=1e-12)
    assert result.tops_per_mm2 / result.tops_per_mm2_executed == pytest.approx(ratio,
                                                                               rel=1e-12)
    assert 2 * result.executed_macs_per_inference * result.inferences_per_s / 1e9 == \
        pytest.approx(result.gops_executed, rel=1e-12)
    text = run.format_result(result)
    assert "effective (dense-equivalent)" in text and "executed" in text
