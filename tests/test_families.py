"""Macro families: dispatch by ``crossbar.class``, the default, and a new family that plugs in
by registration alone (the engine calls its hooks)."""

from __future__ import annotations

import numpy as np
import pytest

from sim.config.loader import arch_from_dict
from sim.engine.placement import LayerShape, place
from sim.engine.rollup import peak
from sim.engine.timing import schedule
from sim.macros import CrossbarLayer
from sim.macros.family import FAMILIES, family_names, family_of, make_layer, register_family
from sim.macros.reram_crossbar import ReramCrossbar


def test_default_family_is_reram_crossbar(make_arch):
    implicit = make_arch()
    explicit = make_arch(**{"crossbar.class": "reram_crossbar"})
    assert implicit.macro_class == explicit.macro_class == "reram_crossbar"
    assert implicit == explicit
    assert isinstance(make_layer(implicit, np.ones((4, 2), np.int64)), CrossbarLayer)
    assert {"reram_crossbar", "cap_ram"} <= set(family_names())


def test_unknown_family_lists_the_registered_ones(make_arch):
    problems = make_arch.problems(**{"crossbar.class": "sram_magic"})
    assert problems[0][0] == "crossbar.class"
    assert "reram_crossbar" in problems[0][1] and "cap_ram" in problems[0][1]


@pytest.fixture
def toy_family():
    """A fourth family: ReRAM crossbars of which only one computes at a time."""

    @register_family("toy_serial")
    class ToySerial(ReramCrossbar):
        pipelines = False
        duplicates = False
        array_unit = "toy arrays"

        def serial_arrays(self, arch, arrays):
            return arrays

        def active_arrays(self, arch):
            return 1

    yield ToySerial
    del FAMILIES["toy_serial"]


def test_a_new_family_plugs_in_by_registration(make_arch, toy_family):
    base = make_arch()
    toy = arch_from_dict(make_arch.dict(**{"crossbar.class": "toy_serial"}), "toy")
    assert family_of(toy).class_name == "toy_serial"
    layers = [LayerShape(name="a", k=40, n=4, vectors=8)]    # 3 row x 2 column tiles
    placed = place(base, layers, duplicate=False)
    arrays = placed[0].geometry.crossbars
    assert arrays == 6
    t_base = schedule(base, placed, pipelined=False)
    toy_placed = place(toy, layers)                            # duplicate=True: no copies
    assert toy_placed[0].duplicates == 1
    t_toy = schedule(toy, toy_placed, pipelined=True)
    assert not t_toy.pipelined
    assert t_toy.layers[0].busy_cycles == arrays * t_base.layers[0].busy_cycles
    assert peak(toy).ops_per_s == pytest.approx(peak(base).ops_per_s / base.organization.crossbars)
    big = [LayerShape(name="b", k=16 * 40, n=64, vectors=1)]
    with pytest.raises(Exception, match="toy arrays"):
        place(toy, big)
