"""CAP-RAM headline figures as golden tests, each at its own operating point.

Source: Z. Chen et al., "CAP-RAM: A Charge-Domain In-Memory Computing 6T-SRAM for Accurate
and Precision-Programmable CNN Inference", IEEE JSSC vol. 56, 2021, DOI
10.1109/JSSC.2021.3056447 (arXiv 2107.02388). [abstract]: read in the abstract; [card]: read in
a full-text paper card (``2021_Chen_CAP-RAM_JSSC.md``, Sec. IV and Table III), see
``../shared/reference/papers.md`` section 1.

What each test is worth (docs/validation.md, CAP-RAM):

- 573.4 GOPS: the op rate (35 MHz) was INFERRED from this figure (every one of the 8,192 MAC
  circuits doing one 1-bit x 1-bit MAC per operation; the clock is not published), so this
  test checks the peak path (one group per operation, ADC-limited step, 2 ops per MAC), not
  the clock;
- 6.35 mW, 0.179 mm2, 62.6 %, 429 um2 are calibration points: the tests check that the
  component table, the calibration and the rollup reproduce them through the one energy and
  area path (including the event path at the operating point the power was stated at);
- 49.4 TOPS/W and 3.4 TOPS/mm2 are predictions of the model at their operating points; they
  disagree with the paper by -8.6 % and -5.8 % (likely causes in docs/validation.md), and the
  tests hold the model inside a tolerance that states the disagreement, not a tuned figure.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from sim.components.registry import REGISTRY, _load_families
from sim.config.loader import arch_from_dict, read_yaml
from sim.engine.rollup import area_by_component_um2, peak
from sim.macros.family import make_layer
from sim.stats import energy_by_event_pj
from tests.conftest import REPO

BASE = read_yaml(REPO / "arch_configs" / "cap_ram_65nm.yaml")


def _arch(weights=None, inputs=None):
    d = copy.deepcopy(BASE)
    if weights:
        d["weights"] = weights
    if inputs:
        d["inputs"] = inputs
    return arch_from_dict(d, "cap_ram_golden")


#: The operating point of the 6.35 mW figure: differential mode (ternary weights, two cells
#: each), all 32 slices converting, one input bit per operation, dense inputs. [card]
DIFFERENTIAL = {"weights": {"bits": 2, "encoding": "differential"},
                "inputs": {"bits": 1, "signed": False}}


def _dense_operation(arch, operations=64):
    """Events and energy of ``operations`` dense operations of one full weight group."""
    rng = np.random.default_rng(0)
    w = rng.choice([-1, 1], size=(arch.crossbar.rows, 64))  # 64 ternary weights x 2 columns
    x = np.ones((operations, arch.crossbar.rows), np.int64)
    y, ev = make_layer(arch, w, seed=0).matmul(x)
    assert np.array_equal(y, x @ w)
    e_pj = sum(energy_by_event_pj(ev.counts(), arch.energy).values())
    return ev, e_pj


def test_peak_throughput_573_4_gops():
    """573.4 GOPS peak [abstract]: 8,192 MAC circuits x 1-bit MAC x 2 ops at 35 MHz
    (the op rate is inferred from this figure: a consistency check of the peak path)."""
    p = peak(_arch(), per_cell=True)
    assert p.ops_per_s / 1e9 == pytest.approx(573.4, rel=1e-3)


def test_power_6_35_mw_differential_all_slices():
    """6.35 mW in differential mode with all 32 slices on [card]: the table's peak power and
    the event path (events x calibrated energies) at that point give the same figure."""
    arch = _arch(**DIFFERENTIAL)
    assert peak(arch).power_w * 1e3 == pytest.approx(6.35, rel=1e-6)
    ops = 64
    _, e_pj = _dense_operation(arch, ops)
    op_s = 8 / arch.clock.digital_hz  # one operation: 8 cycles at 280 MHz
    assert e_pj * 1e-12 / (ops * op_s) * 1e3 == pytest.approx(6.35, rel=1e-6)


def test_energy_efficiency_49_4_tops_per_w():
    """49.4 TOPS/W [abstract] (49.3 in the conclusion [card]). Modelled at the point the
    power was measured (differential mode, ternary weights, 1-bit inputs): 45.2 TOPS/W, 8.6 %
    below the paper; the paper's precision for this figure is not in what we read. The
    single-ended 1-bit figure at the same power is 90.3 TOPS/W: 573.4 GOPS, 49.4 TOPS/W and
    6.35 mW are not one operating point."""
    arch = _arch(**DIFFERENTIAL)
    ev, e_pj = _dense_operation(arch)
    tops_per_w = 2 * ev.macs / e_pj  # ops per pJ = TOPS/W
    assert tops_per_w == pytest.approx(peak(arch).gops_per_w / 1e3, rel=1e-9)
    assert tops_per_w == pytest.approx(49.4, rel=0.10)
    assert tops_per_w < 49.4                         # the reported disagreement: -8.6 %
    cell = peak(_arch(), per_cell=True)
    assert cell.gops_per_w / 1e3 == pytest.approx(573.4 / 6.35, rel=2e-3)  # 90.3, not 49.4


def test_macro_area_0_179_mm2_array_62_6_percent():
    """Macro 0.179 mm2 with the 8 KB array 62.6 % of it [card]."""
    arch = _arch()
    area = area_by_component_um2(arch)
    total = sum(area.values())
    assert total / 1e6 == pytest.approx(0.179, rel=1e-3)
    assert area["sram_array"] / total == pytest.approx(0.626, abs=5e-4)


def test_compute_density_3_4_tops_per_mm2():
    """3.4 TOPS/mm2 "for convolution" at 1.2 V [card]. The model's peak over the macro
    area is 3.20 TOPS/mm2, 5.8 % below (573.4 / 0.179 = 3.20: the paper's figure needs 0.169
    mm2 or 608.6 GOPS; what it counts is not in what we read)."""
    p = peak(_arch(), per_cell=True)
    assert p.gops_per_mm2 / 1e3 == pytest.approx(3.4, rel=0.07)
    assert p.gops_per_mm2 / 1e3 == pytest.approx(573.4 / 179, rel=1e-3)


def test_cisar_adc_area_429_um2():
    """7-bit ciSAR ADC, 429 um2 [card]: the cisar_adc model at 7 bits, 65 nm, and the
    table's row per instance."""
    _load_families()
    model = REGISTRY["cisar_adc"](technology_nm=65.0, bits=7, rate_hz=140e6)
    assert model.area_um2 == pytest.approx(429.0, rel=1e-6)
    arch = _arch()
    row = next(c for c in arch.components if c.name == "cisar_adc")
    assert row.area_um2 / row.count == pytest.approx(429.0, rel=1e-6)
    # The model moves with resolution (a 6-bit ciSAR is smaller).
    assert REGISTRY["cisar_adc"](technology_nm=65.0, bits=6, rate_hz=140e6).area_um2 < 429.0
