"""ISAAC-CE reproduced from its component table (golden numbers, each with its citation).

Source: Shafiee et al., "ISAAC: A Convolutional Neural Network Accelerator with In-Situ Analog
Arithmetic in Crossbars", ISCA 2016, DOI 10.1109/ISCA.2016.12: Table I (component power and
area, ISAAC-CE at 32 nm) and Table IV (CE, PE), as transcribed in
``../shared/reference/papers.md`` section 3 ([READ-2nd]). Our figures are sums over the
component rows of ``arch_configs/isaac_32nm.yaml`` and the engine's peak-throughput model; see
``docs/validation.md`` for how the paper's numbers reconcile.
"""

from __future__ import annotations

import numpy as np
import pytest

from sim.engine import rollup
from sim.macros import CrossbarLayer

#: The paper prints 3 significant figures for totals; summing its rounded rows can drift 1 %.
TABLE_TOL = 0.01
#: Issue target for the Table IV efficiencies.
TABLE_IV_TOL = 0.03


def test_tile_power_and_area(isaac_arch):
    # Table I: "1 tile total 330 mW, 0.372 mm2"
    power = rollup.per_level_total(isaac_arch, "tile", rollup.power_by_component_mw(isaac_arch))
    area = rollup.per_level_total(isaac_arch, "tile", rollup.area_by_component_um2(isaac_arch))
    assert power == pytest.approx(330.0, rel=TABLE_TOL)
    assert area / 1e6 == pytest.approx(0.372, rel=TABLE_TOL)


def test_chip_power_and_area(isaac_arch):
    # Table I: "Chip total 65.8 W, 85.4 mm2" (168 tiles + HyperTransport)
    assert sum(rollup.power_by_component_mw(isaac_arch).values()) / 1e3 == \
        pytest.approx(65.8, rel=TABLE_TOL)
    assert sum(rollup.area_by_component_um2(isaac_arch).values()) / 1e6 == \
        pytest.approx(85.4, rel=TABLE_TOL)


def test_table_iv_efficiencies(isaac_arch):
    # Table IV, ISAAC-CE: CE 478.95 GOPS/(s mm2), PE 627.5 GOPS/W, 16-bit ops, HT included
    p = rollup.peak(isaac_arch)
    assert p.gops_per_mm2 == pytest.approx(478.95, rel=TABLE_IV_TOL)
    assert p.gops_per_w == pytest.approx(627.5, rel=TABLE_IV_TOL)


def test_adc_share_of_tile(isaac_arch):
    # Sec. 6 text: ADCs are 58 % of tile power and 31 % of tile area
    pw = rollup.power_by_component_mw(isaac_arch)
    ar = rollup.area_by_component_um2(isaac_arch)
    tile_p = rollup.per_level_total(isaac_arch, "tile", pw)
    tile_a = rollup.per_level_total(isaac_arch, "tile", ar)
    adc_p = pw["adc"] / isaac_arch.organization.tiles
    adc_a = ar["adc"] / isaac_arch.organization.tiles
    assert adc_p / tile_p == pytest.approx(0.58, abs=0.01)
    assert adc_a / tile_a == pytest.approx(0.31, abs=0.01)


def test_one_conversion_per_16bit_mac(isaac_arch):
    # Sec. 3 arithmetic: (16/2 cells) x (16/1 input bits) / 128 rows = 1 conversion per MAC.
    # We also convert the unit column (129 per 128), so 1 + 1/128.
    rng = np.random.default_rng(0)
    w = rng.integers(-(2**15), 2**15, size=(128, 16))
    x = rng.integers(-(2**15), 2**15, size=(4, 128))
    _, ev = CrossbarLayer(isaac_arch, w).matmul(x)
    assert ev.adc_conversions / ev.macs == pytest.approx(1 + 1 / 128, rel=1e-12)
    assert ev.adc_conversions / ev.macs == pytest.approx(1.0, rel=0.01)
