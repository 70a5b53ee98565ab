"""Cycle-level schedule of one inference: simpy at operation granularity.

Each placed layer is a simpy process that works through its input vectors in operations of
one output row (a convolution's ``out_width`` vectors; all vectors of a fully connected
layer). An operation waits until its producer has made the inputs it needs (a line buffer of
``kernel_height - 1`` rows ahead when pipelined; the whole producer when layer-by-layer),
then occupies the layer's crossbar copies for

    ceil(vectors / copies) x executed steps x step cycles

where a step is one crossbar cycle, or longer when the ADCs shared by a crossbar's columns
cannot convert them all in one cycle (``crossbar.adc.rate``), and executed steps are the input
steps less those the functional pass skipped (zero-skip). The operation also cannot be faster
than its input buffer reads (``tile_buffer.bus_bits`` per digital cycle) or, when producer and
consumer sit on different tiles, its NoC transfer (``noc.link_bits`` per link cycle). Time is
counted in whole digital clock cycles.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import simpy

from sim.config.schema import Arch
from sim.engine.placement import Placement
from sim.errors import InvariantError


@dataclass
class LayerTiming:
    """Cycles of one layer in one inference."""

    name: str
    start_cycle: int = 0
    end_cycle: int = 0
    busy_cycles: int = 0
    wait_input_cycles: int = 0
    buffer_limited_cycles: int = 0
    noc_limited_cycles: int = 0
    step_cycles: int = 0
    duplicates: int = 1
    executed_steps: float = 0.0
    operations: int = 0

    @property
    def latency_cycles(self) -> int:
        """From the layer's start to its last output."""
        return self.end_cycle - self.start_cycle


@dataclass
class Timing:
    """The schedule of one inference."""

    digital_hz: float
    layers: list[LayerTiming]
    latency_cycles: int
    bottleneck_cycles: int
    pipelined: bool
    crossbars_used: int
    crossbars_total: int
    busy_crossbar_cycles: int
    notes: list[str] = field(default_factory=list)

    @property
    def latency_s(self) -> float:
        """Latency of one inference in seconds."""
        return self.latency_cycles / self.digital_hz

    @property
    def inferences_per_s(self) -> float:
        """Steady-state throughput: one inference per bottleneck-layer time when pipelined."""
        cycles = self.bottleneck_cycles if self.pipelined else self.latency_cycles
        return self.digital_hz / cycles if cycles else math.inf

    @property
    def utilization(self) -> float:
        """Busy crossbar-cycles over (crossbars used x latency)."""
        denom = self.crossbars_used * self.latency_cycles
        return self.busy_crossbar_cycles / denom if denom else 0.0


def step_cycles(arch: Arch, columns_per_crossbar: int) -> int:
    """Digital cycles of one input step: a crossbar read, or the ADCs' conversion time."""
    f = arch.clock.digital_hz
    xbar = math.ceil(arch.clock.crossbar_cycle_ns * 1e-9 * f - 1e-9)
    adc = arch.crossbar.adc
    if adc.rate_hz is None:
        return max(1, xbar)
    per_adc = math.ceil(columns_per_crossbar / adc.per_crossbar)
    return max(1, xbar, math.ceil(per_adc * f / adc.rate_hz - 1e-9))


def schedule(arch: Arch, placements: list[Placement], executed_fraction: dict[str, float],
             *, pipelined: bool = True) -> Timing:
    """Simulate one inference of the placed layers (see the module docstring).

    ``executed_fraction[name]`` is the share of input steps the layer really ran (1 without
    zero-skip), from the functional pass or the analytical estimate.
    """
    env = simpy.Environment()
    f = arch.clock.digital_hz
    by_name = {p.layer.name: p for p in placements}
    produced = {p.layer.name: 0 for p in placements}
    progress = {p.layer.name: env.event() for p in placements}
    timings = {p.layer.name: LayerTiming(name=p.layer.name) for p in placements}
    buffer_bits = arch.tile_buffer.bus_bits if arch.tile_buffer else 0
    noc_bits_per_cycle = (arch.noc.link_bits * arch.noc.frequency_hz / f) if arch.noc else 0.0
    xb = arch.crossbar
    busy_xbar = [0]

    def layer_proc(p: Placement):
        ly, g = p.layer, p.geometry
        t = timings[ly.name]
        t.duplicates = p.duplicates
        cols = min(xb.columns, g.data_columns) + (1 if xb.unit_column else 0)
        t.step_cycles = step_cycles(arch, cols)
        frac = executed_fraction.get(ly.name, 1.0)
        if not 0.0 <= frac <= 1.0:
            raise InvariantError(f"{ly.name}: executed step fraction {frac} outside [0, 1]")
        t.executed_steps = g.steps * frac
        per_vector = math.ceil(g.steps * frac * t.step_cycles - 1e-9)
        # One operation per output row; with more copies than a row has vectors, several rows
        # at once so that the copies are not idle.
        row = max(1, ly.out_width)
        chunk = row * max(1, math.ceil(p.duplicates / row))
        src = by_name.get(ly.source) if ly.source else None
        t.start_cycle = -1
        for v0 in range(0, ly.vectors, chunk):
            v1 = min(ly.vectors, v0 + chunk)
            if src is not None:
                m_src = src.layer.vectors
                if pipelined:
                    ahead = (ly.kernel_height - 1) * src.layer.out_width
                    need = min(m_src, math.ceil(v1 * m_src / ly.vectors) + ahead)
                else:
                    need = m_src
                wait_from = env.now
                while produced[src.layer.name] < need:
                    yield progress[src.layer.name]
                t.wait_input_cycles += int(env.now - wait_from) if t.start_cycle >= 0 else 0
            if t.start_cycle < 0:
                t.start_cycle = int(env.now)
            n_vec = v1 - v0
            compute = math.ceil(n_vec / p.duplicates) * per_vector
            in_bits = n_vec * ly.k * arch.inputs.bits
            buf = math.ceil(in_bits / buffer_bits) if buffer_bits else 0
            noc = 0
            if src is not None and noc_bits_per_cycle and src.last_tile != p.first_tile:
                noc = math.ceil(in_bits / noc_bits_per_cycle)
            cycles = max(compute, buf, noc, 1)
            t.buffer_limited_cycles += max(0, buf - max(compute, noc))
            t.noc_limited_cycles += max(0, noc - max(compute, buf))
            t.busy_cycles += cycles
            t.operations += 1
            busy_xbar[0] += compute * p.crossbars
            yield env.timeout(cycles)
            produced[ly.name] = v1
            ev, progress[ly.name] = progress[ly.name], env.event()
            ev.succeed()
        # drain: the last step's conversion and the shift-add/write stage of the pipeline
        yield env.timeout(t.step_cycles)
        t.end_cycle = int(env.now)

    for p in placements:
        env.process(layer_proc(p))
    env.run()
    layers = [timings[p.layer.name] for p in placements]
    for t in layers:
        for name in ("busy_cycles", "wait_input_cycles", "start_cycle", "end_cycle"):
            v = getattr(t, name)
            if v < 0 or v != int(v):
                raise InvariantError(f"{t.name}: {name} = {v} is not a whole, non-negative "
                                     "number of cycles")
    latency = max((t.end_cycle for t in layers), default=0)
    return Timing(digital_hz=f, layers=layers, latency_cycles=latency,
                  bottleneck_cycles=max((t.busy_cycles for t in layers), default=0),
                  pipelined=pipelined, crossbars_used=sum(p.crossbars for p in placements),
                  crossbars_total=arch.organization.crossbars,
                  busy_crossbar_cycles=busy_xbar[0])
