"""Contention and per-step activity in the schedule; cases that fail if contention were
ignored or zero-skip were timed by its mean."""

from __future__ import annotations

import numpy as np
import pytest

from sim.engine.graph import NETWORK_INPUT, GraphNode, LayerGraph
from sim.engine.placement import LayerShape, geometry, place
from sim.engine.timing import groups_per_crossbar, schedule, step_cycles
from sim.engine.trace import trace_end_cycle
from sim.kernels.inputs import group_activity, split_inputs
from sim.macros.activity import StepActivity


def _parallel_graph(shapes):
    """Every layer reads the network input; every layer is an output."""
    nodes = tuple(GraphNode(name=s.name, kind="matmul", inputs=(NETWORK_INPUT,),
                            out_elements=s.vectors * s.n, in_elements=s.vectors * s.k,
                            vectors=s.vectors) for s in shapes)
    return LayerGraph(nodes=nodes, outputs=tuple(s.name for s in shapes), input_elements=16)


def test_two_layers_sharing_an_ima_take_longer_than_either_alone(make_arch):
    # One IMA of 4 crossbars; each layer needs all 4 (16 x 8 weights of 4 columns each):
    # with reprogramming both are placed on the same crossbars and their ADCs.
    shared = make_arch(**{"organization.tiles": 1, "organization.imas_per_tile": 1,
                          "organization.crossbars_per_ima": 4, "organization.reprogram": True})
    roomy = make_arch(**{"organization.tiles": 1, "organization.imas_per_tile": 2,
                         "organization.crossbars_per_ima": 4})
    a = LayerShape(name="a", k=16, n=8, vectors=20)
    b = LayerShape(name="b", k=16, n=8, vectors=30)

    def latency(arch, shapes):
        pl = place(arch, shapes, duplicate=False)
        return schedule(arch, pl, graph=_parallel_graph(shapes), inferences=1)

    alone_a, alone_b = latency(shared, [a]), latency(shared, [b])
    both = latency(shared, [a, b])
    apart = latency(roomy, [a, b])
    assert both.latency_cycles > max(alone_a.latency_cycles, alone_b.latency_cycles)
    # they take turns: one runs after the other
    assert both.latency_cycles >= alone_a.latency_cycles + alone_b.latency_cycles - 2 * 100
    assert sum(t.wait_resource_cycles for t in both.layers) > 0
    # on separate crossbars nothing is shared: both run at once
    assert apart.latency_cycles == max(alone_a.latency_cycles, alone_b.latency_cycles)


def _k256_arch(make_arch, mode="shared_step"):
    # 128-row crossbars, 16-bit signed inputs (16 one-bit steps), 32 ns crossbar step at 1 GHz
    return make_arch(**{"crossbar.rows": 128, "crossbar.adc.bits": 9,
                        "inputs.bits": 16, "inputs.zero_skip": True,
                        "inputs.zero_skip_timing": mode,
                        "clock.crossbar_cycle": "32ns", "clock.digital": "1GHz"})


def _activity(arch, x):
    xb = arch.crossbar
    g = geometry(arch, x.shape[1], 2)
    steps = split_inputs(x, arch.inputs.bits, xb.dac.bits, arch.inputs.signed,
                         g.row_groups * xb.group_rows)
    active, _ = group_activity(steps, xb.group_rows)  # (G, P, M)
    return StepActivity.from_active(np.transpose(active, (2, 1, 0)), groups_per_crossbar(arch))


def _k256_inputs(alternate: bool):
    """100 vectors of K = 256: every bit-plane of one 128-row half busy, the other half 0."""
    rng = np.random.default_rng(0)
    x = np.zeros((100, 256), np.int64)
    for v in range(100):
        half = (v % 2) if alternate else 0
        row = rng.integers(-(2**15), 2**15, size=128)
        row[:2] = (-(2**15), 2**15 - 1)  # all magnitude bits and the sign step in use
        x[v, half * 128:(half + 1) * 128] = row
    return x


def _busy(arch, act, vectors=100):
    shapes = [LayerShape(name="L", k=256, n=2, vectors=vectors)]
    t = schedule(arch, place(arch, shapes, duplicate=False), {"L": act}, inferences=1)
    return t.layers[0].busy_cycles


def test_zero_skip_schedule_and_trace_agree_k256(make_arch):
    """The issue's case: the second row tile is always idle. Both row tiles share the step
    clock, so no step is saved: 100 x 16 x 32 = 51,200 cycles, not the 25,600 that timing by
    the mean executed fraction (half the conversions were skipped) gave before per-step
    activity."""
    arch = _k256_arch(make_arch)
    x = _k256_inputs(alternate=False)
    act = _activity(arch, x)
    assert act.hist_tile[1, 0] == 100 * 16  # tile 1 idle at every step
    end = trace_end_cycle(arch, x, 2)
    assert end == 100 * 16 * 32 == 51_200
    assert _busy(arch, act) == end
    per_xbar = _k256_arch(make_arch, "per_crossbar")
    assert _busy(per_xbar, act) == trace_end_cycle(per_xbar, x, 2) == 51_200


def test_shift_control_choice_moves_the_schedule(make_arch):
    """Row tiles busy on alternate vectors: with a shared step clock nothing is skipped;
    with per-crossbar shift control each tile skips half of the steps."""
    x = _k256_inputs(alternate=True)
    shared = _k256_arch(make_arch)
    own = _k256_arch(make_arch, "per_crossbar")
    act = _activity(shared, x)
    assert _busy(shared, act) == trace_end_cycle(shared, x, 2) == 51_200
    assert _busy(own, act) == trace_end_cycle(own, x, 2) == 25_600


def _fragment_arch(make_arch, fragment_rows):
    # polarized 9-bit weights: 8 magnitude bits in four 2-bit cells; 16-row crossbars of
    # 8 columns; one ADC per crossbar at 100 MS/s (10 digital cycles a conversion) against a
    # 100 ns (100-cycle) crossbar read
    return make_arch(**{"weights.bits": 9, "weights.encoding": "polarized",
                        "crossbar.unit_column": False, "crossbar.fragment_rows": fragment_rows,
                        "crossbar.adc.rate": "100MHz", "inputs.zero_skip": True})


def test_fragment_conversions_set_the_step_time(make_arch):
    frag = _fragment_arch(make_arch, 4)  # 4 fragments per crossbar: 4 x 8 conversions a step
    whole = _fragment_arch(make_arch, 16)  # one group: 8 conversions a step
    assert step_cycles(frag, 8, 4) == 4 * 8 * 10 == 320  # conversions dominate the read
    assert step_cycles(whole, 8, 1) == 100  # the read dominates 8 conversions
    shapes = [LayerShape(name="L", k=16, n=2, vectors=10)]
    t_frag = schedule(frag, place(frag, shapes, duplicate=False), inferences=1).layers[0]
    t_whole = schedule(whole, place(whole, shapes, duplicate=False), inferences=1).layers[0]
    steps = geometry(frag, 16, 2).steps
    assert t_frag.busy_cycles == 10 * steps * 320
    assert t_whole.busy_cycles == 10 * steps * 100
    # One fragment active of four: its conversions (80 cycles) no longer dominate the read.
    one = StepActivity.from_active(
        np.broadcast_to(np.array([True, False, False, False]), (10, steps, 4)), 4)
    t_one = schedule(frag, place(frag, shapes, duplicate=False), {"L": one},
                     inferences=1).layers[0]
    assert t_one.busy_cycles == 10 * steps * 100


def test_stream_throughput_from_overlapping_inferences(make_arch):
    arch = make_arch()
    shapes = [LayerShape(name="a", k=16, n=2, vectors=16, out_width=4, kernel_height=1),
              LayerShape(name="b", k=2, n=2, vectors=64, out_width=8, kernel_height=1,
                         source="a")]
    pl = place(arch, shapes, duplicate=False)
    t = schedule(arch, pl, inferences=5)
    one = schedule(arch, pl, inferences=1)
    assert t.inferences == 5 and len(t.inference_end_cycles) == 5
    assert t.latency_cycles == one.latency_cycles
    # b is the slower stage: in steady state one inference leaves per b's busy time,
    # sooner than one per latency (the stages overlap)
    b = next(x for x in one.layers if x.name == "b")
    assert t.interval_cycles < t.latency_cycles
    assert t.interval_cycles == pytest.approx(b.busy_cycles, rel=0.05)
    assert t.inferences_per_s == pytest.approx(arch.clock.digital_hz / t.interval_cycles)
    seq = schedule(arch, pl, pipelined=False)
    assert seq.inferences == 1 and seq.inferences_per_s < t.inferences_per_s


def test_shared_noc_link_makes_transfers_wait(make_arch):
    """Transfers whose XY routes share a link queue on it; routes that share none do not."""
    arch = make_arch(**{"organization.tiles": 4, "organization.imas_per_tile": 1,
                        "organization.crossbars_per_ima": 4,
                        "noc": {"link_bits": 1, "frequency": "1GHz"}})
    names = ("p1", "p2", "c1", "c2")
    shapes = [LayerShape(name=n, k=16, n=8, vectors=40) for n in names]  # a tile each
    pl = place(arch, shapes, duplicate=False)  # tiles 0, 1 / 2, 3 of a 2 x 2 mesh

    def run(feeds):
        nodes = [GraphNode(name=n, kind="matmul", inputs=feeds.get(n, (NETWORK_INPUT,)),
                           out_elements=40 * 64, vectors=40) for n in names]
        t = schedule(arch, pl, graph=LayerGraph(nodes=tuple(nodes), outputs=("c1", "c2")),
                     inferences=1)
        return {x.name: x for x in t.layers}

    # p1 (tile 0) -> c2 (tile 3) over 0->1, 1->3; p2 (tile 1) -> c1 (tile 2) over 1->0, 0->2
    apart = run({"c1": ("p2",), "c2": ("p1",)})
    assert all(t.wait_resource_cycles == 0 for t in apart.values())
    # p1 (tile 0) and p2 (tile 1) both -> c2 (tile 3): both routes end on link 1->3
    shared = run({"c2": ("p1", "p2")})
    assert shared["c2"].wait_resource_cycles > 0
    assert shared["c2"].busy_cycles > apart["c2"].busy_cycles


def test_stream_through_shared_crossbars_is_serial(make_arch):
    """Layers reprogrammed onto the same crossbars cannot overlap, across inferences either:
    the steady interval is the sum of their busy times (a stream measured first-come-first-
    served would let later inferences overtake the first and understate it)."""
    arch = make_arch(**{"organization.tiles": 1, "organization.imas_per_tile": 1,
                        "organization.crossbars_per_ima": 2, "organization.reprogram": True})
    shapes = [LayerShape(name="c1", k=27, n=16, vectors=64, out_width=8, kernel_height=3),
              LayerShape(name="c2", k=144, n=32, vectors=16, out_width=4, kernel_height=3,
                         source="c1"),
              LayerShape(name="fc", k=512, n=10, vectors=1, source="c2")]
    t = schedule(arch, place(arch, shapes), inferences=4)
    assert t.interval_cycles == sum(x.busy_cycles for x in t.layers)
    assert t.inference_end_cycles[0] == t.latency_cycles  # the first is not overtaken


# ------------------------------------------------------------------- simulations shared by points
def _memo_case(make_arch, **overrides):
    """A 3-layer chain on 4 tiles with a buffer port and a NoC, so that every part of an
    operation (compute, ports, links) is timed, and its schedule."""
    # Each part bounds some operations: a 10 ns read, an ADC converting 5 columns in 12.5 ns,
    # a 2-bit buffer port and 2-bit NoC links.
    base = {"organization.tiles": 4, "organization.imas_per_tile": 2,
            "organization.crossbars_per_ima": 4, "noc": {"link_bits": 2, "frequency": "1GHz"},
            "tile_buffer": {"size": "4KiB", "bus_bits": 2}, "inputs.zero_skip": True,
            "clock.crossbar_cycle": "10ns", "crossbar.adc.rate": "0.4GS/s"}
    arch = make_arch(**{**base, **overrides})
    shapes = [LayerShape(name="c1", k=27, n=4, vectors=64, out_width=8, kernel_height=3),
              LayerShape(name="c2", k=36, n=4, vectors=16, out_width=4, kernel_height=3,
                         source="c1"),
              LayerShape(name="fc", k=64, n=4, vectors=1, source="c2")]
    pl = place(arch, shapes)
    rng = np.random.default_rng(0)
    act = {}
    for p in pl:  # half of the inputs zero: per-step activity that moves the step times
        x = rng.integers(0, 1 << (arch.inputs.bits - 1), size=(p.layer.vectors, p.layer.k))
        x[rng.random(x.shape) < 0.7] = 0
        act[p.layer.name] = _activity(arch, x) if p.layer.k <= 256 else None
    return arch, pl, act


# (override, whether it moves the schedule's figures): every arch field the schedule reads
# through its plans, and two it does not read (ADC resolution and energy: same simulation).
MEMO_CHANGES = [
    ({"crossbar.adc.rate": "0.1GS/s"}, True),
    ({"crossbar.adc.per_crossbar": 2}, True),
    ({"clock.crossbar_cycle": "30ns"}, True),
    ({"clock.digital": "2GHz"}, True),
    ({"tile_buffer.bus_bits": 1}, True),
    ({"noc.link_bits": 1}, True),
    ({"noc.frequency": "0.25GHz"}, True),
    ({"organization.tiles": 2, "organization.crossbars_per_ima": 8}, True),
    ({"organization.tiles": 8}, True),
    ({"inputs.zero_skip_timing": "per_crossbar"}, True),
    ({"inputs.bits": 4}, True),
    ({"outputs.bits": 32}, True),
    ({"crossbar.adc.bits": 7}, False),
    ({"energy.adc_conversion": "9pJ"}, False),
]


@pytest.mark.parametrize(("change", "moves"), MEMO_CHANGES)
def test_kept_simulation_is_used_only_for_the_same_inputs(make_arch, change, moves):
    from sim.engine import timing as timing_mod

    arch0, pl0, act0 = _memo_case(make_arch)
    arch1, pl1, act1 = _memo_case(make_arch, **change)
    timing_mod.clear_simulations()
    cold = schedule(arch1, pl1, act1)  # nothing kept
    assert timing_mod.SIMULATION_STATS == {"hits": 0, "misses": 2}  # one, then the stream
    timing_mod.clear_simulations()
    base = schedule(arch0, pl0, act0)
    warm = schedule(arch1, pl1, act1)  # after the base point's simulations were kept
    assert warm == cold  # a kept simulation never stands in for another's
    stats = timing_mod.SIMULATION_STATS
    if moves:
        assert warm != base
        assert stats == {"hits": 0, "misses": 4}
    else:
        assert warm == base
        assert stats == {"hits": 2, "misses": 2}
    again = schedule(arch1, pl1, act1)
    assert again == cold and stats["hits"] >= 2
    again.layers[0].busy_cycles += 1  # a returned result is a copy: the kept one stays
    assert schedule(arch1, pl1, act1) == cold


def test_kept_simulations_see_activity_placement_and_graph(make_arch):
    from sim.engine import timing as timing_mod

    arch, pl, act = _memo_case(make_arch)
    timing_mod.clear_simulations()
    base = schedule(arch, pl, act)
    dense = schedule(arch, pl, None)  # other step activity
    timing_mod.clear_simulations()
    assert dense == schedule(arch, pl, None) and dense != base
    one = schedule(arch, place(arch, [p.layer for p in pl], duplicate=False), act)
    timing_mod.clear_simulations()
    assert one == schedule(arch, place(arch, [p.layer for p in pl], duplicate=False), act)
    assert one != base
    layered = schedule(arch, pl, act, pipelined=False)
    assert layered != base and timing_mod.SIMULATION_STATS["misses"] >= 1
