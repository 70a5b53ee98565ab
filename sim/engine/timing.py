"""Cycle-level schedule of a stream of inferences over the layer graph: simpy at operation
granularity, shared hardware as simpy resources with queues.

Every *work node* of the :class:`~sim.engine.graph.LayerGraph` (a placed matrix product, or a
digital add / pooling / activation) is a simpy process. It works through its output row by
row (an *operation*: one output row of a feature map; more rows at once when a layer has more
copies than a row has vectors; the whole output of a flat node), inference after inference.
An operation

1. waits until every producer has made the inputs it needs: pipelined, the rows this row
   needs plus ``kernel_height - 1`` rows ahead (a line buffer); layer by layer, all of them.
   A residual add waits for both branches; a consumer of a pass-through node (flatten,
   concat) waits on that node's own producers;
2. then runs its parts concurrently and ends when the slowest ends:

   - crossbar compute (matmul): ``ceil(vectors / copies)`` vectors x the mean step time per
     vector of the layer's real per-step activity (:func:`cycles_per_vector`, numpy over the
     :class:`~sim.macros.activity.StepActivity` histograms). A step of a crossbar lasts the
     crossbar read or the time its ``adc.per_crossbar`` ADCs need to convert every column of
     every *active* row group (fragment) it holds, whichever is longer
     (:func:`step_cycles`); all row tiles of a layer share the step clock, so a step lasts as
     long as its busiest crossbar (``inputs.zero_skip_timing: shared_step``), or each
     crossbar skips on its own (``per_crossbar``);
   - the tile buffer's port (``tile_buffer.bus_bits`` per digital cycle) on every tile the
     node uses: a layer reads its inputs there (spread over its tiles by their share of its
     crossbars) and writes its outputs on its output tile; a digital node reads its inputs
     and writes its outputs through its tile's port, which is all its time (an activation
     right after a layer on its tile is on the layer's output path: no port use);
   - NoC transfers from each producer's output tile to this node's input tile along the XY
     route of the mesh (:class:`~sim.engine.placement.Mesh`), ``noc.link_bits`` per link
     cycle, holding every link of the route (wormhole) plus one cycle per hop.

Ports and links used by more than one node, and (with ``organization.reprogram``) the
crossbars of an IMA that several layers were placed on, are simpy resources with queues
(older inferences first, then first come first served), so the operations of different nodes
contend for them. A resource only one node (one flow, for links) uses cannot make anything
wait, so it is a plain delay (that keeps ResNet-18 fast). A layer sharing crossbars holds them
for a whole inference (its weights are written for it).

A recurrent layer (:mod:`mappers.recurrent`) is its input product, its recurrent product and
its ``gates`` node (the cell's digital work, timed like the other digital nodes by its buffer
traffic). The recurrent product runs its time steps one at a time (one vector per operation,
one copy): its step ``t`` waits until the gates have ended step ``t - 1``
(``GraphNode.state_from``), and each step's last conversion and shift-and-add drain before its
output counts as made; the gates' step ``t`` waits for step ``t`` of both products, pipelined
or not. So no two steps of one sequence overlap on a layer, while the input product runs
ahead, the next layer works on step ``t`` while this one does ``t + 1``, and the next sequence
enters as soon as the crossbars are free (the state is per sequence). Layer by layer, the
loop also waits until its input product has ended (one layer computes at a time).

Throughput comes from a stream: ``inferences`` inferences enter together and the steady
interval is the spacing of their completions; the latency and the per-node figures come from
one inference scheduled alone. Time is counted in whole digital clock cycles.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import simpy

from sim.config.schema import Arch
from sim.engine.graph import DIGITAL_WORK, NETWORK_INPUT, LayerGraph
from sim.engine.placement import (
    Geometry,
    Mesh,
    Placement,
    arrays_in_use,
    layer_arch,
    node_tiles,
)
from sim.errors import InvariantError
from sim.macros.activity import StepActivity

#: Inferences simulated in a pipelined stream to measure the steady-state interval.
STREAM_INFERENCES = 4

#: Simulations kept per process (:func:`_simulate_memo`): key -> result, oldest first.
_SIMULATIONS: OrderedDict[tuple, tuple] = OrderedDict()
#: Most simulations kept.
SIMULATIONS_KEPT = 64
_SIMULATIONS_LOCK = threading.Lock()
#: Hits and misses of :data:`_SIMULATIONS` (for tests and benchmarks).
SIMULATION_STATS = {"hits": 0, "misses": 0}


def clear_simulations() -> None:
    """Forget every kept simulation (benchmarks: a cold schedule)."""
    with _SIMULATIONS_LOCK:
        _SIMULATIONS.clear()
        SIMULATION_STATS.update(hits=0, misses=0)


@dataclass
class LayerTiming:
    """Cycles of one work node (a layer or a digital node) in the first inference."""

    name: str
    kind: str = "matmul"
    start_cycle: int = 0
    end_cycle: int = 0
    busy_cycles: int = 0
    wait_input_cycles: int = 0
    #: Cycles an operation spent queued for a port, link or crossbar another node held.
    wait_resource_cycles: int = 0
    buffer_limited_cycles: int = 0
    noc_limited_cycles: int = 0
    step_cycles: int = 0
    duplicates: int = 1
    executed_steps: float = 0.0
    operations: int = 0
    #: A recurrent layer's products (``LayerShape.recurrent``) and gates nodes: ``(start,
    #: end)`` cycle of each time step's operation in the first inference (else empty).
    step_spans: list[tuple[int, int]] = field(default_factory=list)

    @property
    def latency_cycles(self) -> int:
        """From the node's start to its last output."""
        return self.end_cycle - self.start_cycle


@dataclass
class Timing:
    """The schedule of a stream of inferences (figures of the first unless stated)."""

    digital_hz: float
    layers: list[LayerTiming]
    latency_cycles: int
    bottleneck_cycles: int
    pipelined: bool
    crossbars_used: int
    crossbars_total: int
    busy_crossbar_cycles: int
    notes: list[str] = field(default_factory=list)
    #: Digital work nodes (adds, pooling, activations), in execution order.
    nodes: list[LayerTiming] = field(default_factory=list)
    inferences: int = 1
    #: Steady-state cycles between completions of consecutive inferences of the stream.
    interval_cycles: int = 0
    #: Completion cycle of each inference of the stream.
    inference_end_cycles: list[int] = field(default_factory=list)

    @property
    def latency_s(self) -> float:
        """Latency of one inference in seconds."""
        return self.latency_cycles / self.digital_hz

    @property
    def inferences_per_s(self) -> float:
        """Steady-state throughput of the simulated stream (one inference per interval)."""
        cycles = self.interval_cycles or self.latency_cycles
        return self.digital_hz / cycles if cycles else math.inf

    @property
    def utilization(self) -> float:
        """Busy crossbar-cycles over (crossbars used x latency)."""
        denom = self.crossbars_used * self.latency_cycles
        return self.busy_crossbar_cycles / denom if denom else 0.0


def step_cycles(arch: Arch, columns_per_crossbar: int, active_groups: int = 1) -> int:
    """Digital cycles of one input step of a crossbar with ``active_groups`` converting row
    groups: the crossbar read, or the time its ADCs need to convert every column of every
    active group (each ADC converts its ``ceil(columns / adc.per_crossbar)`` columns once per
    active group), whichever is longer."""
    return int(step_cycles_by_groups(arch, columns_per_crossbar, active_groups)[-1])


def step_cycles_by_groups(arch: Arch, columns_per_crossbar: int, max_groups: int
                          ) -> np.ndarray:
    """:func:`step_cycles` for ``0..max_groups`` active groups (0 groups: a skipped step, no
    time)."""
    f = arch.clock.digital_hz
    xbar = max(1, math.ceil(arch.clock.crossbar_cycle_ns * 1e-9 * f - 1e-9))
    g = np.arange(max_groups + 1, dtype=np.int64)
    adc = arch.crossbar.adc
    out = np.full(max_groups + 1, xbar, dtype=np.int64)
    if adc.rate_hz is not None:
        per_adc = g * math.ceil(columns_per_crossbar / adc.per_crossbar)
        out = np.maximum(out, np.ceil(per_adc * f / adc.rate_hz - 1e-9).astype(np.int64))
    out[0] = 0
    return out


def crossbar_columns(arch: Arch, g: Geometry) -> int:
    """Columns one crossbar of a layer converts (data columns, plus the unit column)."""
    xb = arch.crossbar
    return min(xb.columns, g.data_columns) + (1 if xb.unit_column else 0)


def groups_per_crossbar(arch: Arch) -> int:
    """Row groups (fragments) one crossbar holds."""
    xb = arch.crossbar
    return xb.rows // xb.group_rows


def layer_activity(arch: Arch, g: Geometry, vectors: int,
                   given: StepActivity | None) -> StepActivity:
    """The activity the schedule uses for a layer.

    ``None``: dense, every group converts at every step; so is a :class:`StepActivity`
    without ``inputs.zero_skip`` (nothing is skipped).
    """
    gpc = groups_per_crossbar(arch)
    if given is None or not arch.inputs.zero_skip:
        return StepActivity.dense(g.steps, g.row_groups, gpc, vectors)
    if (given.steps, given.row_tiles, given.groups_per_crossbar) != (g.steps, g.row_tiles, gpc):
        raise InvariantError("step activity does not match the layer's geometry: "
                             f"{(given.steps, given.row_tiles, given.groups_per_crossbar)}"
                             f" vs {(g.steps, g.row_tiles, gpc)}")
    return given


def cycles_per_vector(arch: Arch, g: Geometry, act: StepActivity) -> tuple[float, float]:
    """Mean crossbar cycles per input vector and mean executed steps per vector.

    ``shared_step``: every (vector, step) lasts :func:`step_cycles` of the busiest row tile's
    active groups (``hist_max``). ``per_crossbar``: each row tile runs its own steps
    (``hist_tile[r]``) and the layer waits for the slowest tile.
    """
    from sim.macros.family import family_of

    sc = step_cycles_by_groups(arch, crossbar_columns(arch, g), act.groups_per_crossbar)
    # Arrays of one copy that compute one after another (CAP-RAM: one weight group per
    # operation) multiply every step.
    sc = sc * family_of(arch).serial_arrays(arch, g.crossbars)
    n = act.vectors or 1
    if arch.inputs.zero_skip_timing == "per_crossbar":
        per_tile = act.hist_tile @ sc
        r = int(np.argmax(per_tile))
        ran = act.hist_tile[r, 1:].sum()
        return float(per_tile[r]) / n, float(ran) / n
    return float(act.hist_max @ sc) / n, float(act.hist_max[1:].sum()) / n


# ------------------------------------------------------------------------------- the schedule
@dataclass
class _Plan:
    """Static per-node figures the process needs."""

    name: str
    kind: str
    vectors: int
    out_width: int
    kernel_height: int
    chunk: int
    producers: tuple[str, ...]
    duplicates: int = 1
    per_vector: float = 0.0
    drain: int = 0
    in_bits_per_vector: float = 0.0
    out_bits_per_vector: float = 0.0
    #: (tile, share of the node's input reads) and the tile its outputs are written on.
    port_shares: tuple[tuple[int, float], ...] = ()
    out_tile: int = 0
    #: Per producer: (route links, bits per own vector, hops).
    flows: tuple[tuple[str, tuple, float, int], ...] = ()
    conflicts: tuple[int, ...] = ()
    crossbars: int = 0
    #: A recurrent product: the node whose previous step it reads (one step at a time).
    state: str = ""
    #: Producers whose step ``t`` this node needs for its step ``t`` whether pipelined or
    #: not (a gates node's recurrent product: the two take turns).
    step_sources: tuple[str, ...] = ()
    #: Record each operation's span (:attr:`LayerTiming.step_spans`).
    spans: bool = False


_PLAN_FIELDS = tuple(f.name for f in dataclasses.fields(_Plan))


def schedule(arch: Arch, placements: list[Placement],
             activity: Mapping[str, StepActivity] | None = None, *,
             graph: LayerGraph | None = None, pipelined: bool = True,
             inferences: int | None = None) -> Timing:
    """Simulate a stream of inferences of the placed layers (see the module docstring).

    ``activity[name]`` is a layer's :class:`StepActivity` from the functional pass or the
    analytical mode (missing or ``None``: dense).
    ``graph`` is the model's layer graph (default: a chain following ``LayerShape.source``).
    ``inferences`` defaults to :data:`STREAM_INFERENCES` pipelined, 1 layer by layer.
    """
    activity = activity or {}
    notes: list[str] = []
    if graph is None:
        graph = LayerGraph.chain([p.layer for p in placements])
    by_place = {p.layer.name: p for p in placements}
    if set(graph.matmuls()) != set(by_place):
        raise InvariantError("layer graph and placements disagree on the matrix products: "
                             f"{sorted(set(graph.matmuls()) ^ set(by_place))}")
    from sim.macros.family import family_of

    if pipelined and not family_of(arch).pipelines:
        pipelined = False
        notes.append(f"{arch.macro_class}: one array computes at a time, so layers run layer "
                     "by layer (no pipelining)")
    n_inf = inferences if inferences is not None else (STREAM_INFERENCES if pipelined else 1)
    n_inf = max(1, int(n_inf))
    f = arch.clock.digital_hz
    org = arch.organization
    mesh = Mesh.of(org.tiles)
    sites = node_tiles(graph, placements)
    bus = arch.tile_buffer.bus_bits if arch.tile_buffer else 0
    link_cycle = (f / arch.noc.frequency_hz) if arch.noc else 0.0
    link_bits = arch.noc.link_bits if arch.noc else 0
    obits = arch.outputs.bits
    if not bus:
        notes.append("no tile_buffer: buffer ports and digital nodes are not timed")
    if not arch.noc:
        notes.append("no noc: transfers between tiles are not timed")

    plans: dict[str, _Plan] = {}
    work = [nd for nd in graph.nodes if graph.is_work(nd.name)]
    for nd in work:
        prods = graph.work_inputs(nd.name)
        flow_srcs = prods + ((nd.state_from,) if nd.state_from else ())
        if nd.state_from and not pipelined:
            # Layer by layer, a recurrent loop starts once its layer's input product is done
            # (one layer computes at a time); no data moves between the two.
            prods += tuple(s for s in graph.work_inputs(nd.state_from)
                           if s != nd.name and s not in prods)
        if nd.kind == "matmul":
            p = by_place[nd.name]
            ly, g = p.layer, p.geometry
            # A spike-driven layer's rows take 1-bit inputs with zero-skip (spike_arch).
            ly_arch = layer_arch(arch, ly)
            act = layer_activity(ly_arch, g, ly.vectors, activity.get(ly.name))
            per_vec, _ = cycles_per_vector(arch, g, act)
            row = max(1, ly.out_width)
            if nd.state_from and p.duplicates != 1:
                raise InvariantError(f"{ly.name}: a recurrent product has {p.duplicates} "
                                     "copies; its steps run one at a time on one")
            plan = _Plan(name=ly.name, kind="matmul", vectors=ly.vectors, out_width=row,
                         kernel_height=ly.kernel_height,
                         chunk=1 if nd.state_from else
                         row * max(1, math.ceil(p.duplicates / row)), producers=prods,
                         duplicates=p.duplicates, per_vector=per_vec,
                         drain=step_cycles(arch, crossbar_columns(arch, g)),
                         # k: one group's rows
                         in_bits_per_vector=ly.k * ly.groups * ly_arch.inputs.bits,
                         out_bits_per_vector=ly.n * obits,
                         port_shares=tuple(_tile_shares(arch, p).items()),
                         out_tile=sites[nd.name][1],
                         # Busy at once: a copy's arrays that take turns count once.
                         crossbars=p.crossbars // family_of(arch).serial_arrays(arch,
                                                                                g.crossbars),
                         state=nd.state_from, spans=ly.recurrent or bool(nd.state_from))
        else:
            v = max(1, nd.vectors)
            # An activation right after a layer, on its tile, is applied on the layer's output
            # path (ISAAC's sigmoid units sit between the output register and the eDRAM): it
            # moves no data through the buffer port of its own.
            fused = (nd.kind in ("activation", "neuron") and len(prods) == 1
                     and prods[0] in by_place
                     and sites[prods[0]][1] == sites[nd.name][0])
            bits = 0.0 if fused else obits / v
            plan = _Plan(name=nd.name, kind=nd.kind, vectors=v, out_width=max(1, nd.out_width),
                         kernel_height=nd.kernel_height, chunk=max(1, nd.out_width),
                         producers=prods, in_bits_per_vector=nd.in_elements * bits,
                         out_bits_per_vector=nd.out_elements * bits,
                         port_shares=() if fused else ((sites[nd.name][0], 1.0),),
                         out_tile=sites[nd.name][1],
                         step_sources=tuple(s for s in prods if s != NETWORK_INPUT
                                            and graph.node(s).state_from == nd.name),
                         spans=nd.kind == "gates")
        flows = []
        for src in flow_srcs:
            if src == NETWORK_INPUT:
                continue
            a, b = sites[src][1], sites[nd.name][0]
            bits = graph.node(src).out_elements * obits / plan.vectors
            flows.append((src, tuple(mesh.route(a, b)), bits, mesh.hops(a, b)))
        plan.flows = tuple(flows)
        plans[nd.name] = plan
    for name, ims in _crossbar_conflicts(arch, placements).items():
        plans[name].conflicts = ims

    # Which ports and links more than one node uses: only those can queue.
    port_users: dict[int, set[str]] = {}
    link_users: dict[tuple, set[tuple[str, str]]] = {}
    for pl in plans.values():
        for t, _ in pl.port_shares:
            port_users.setdefault(t, set()).add(pl.name)
        if pl.out_bits_per_vector:
            port_users.setdefault(pl.out_tile, set()).add(pl.name)
        for src, links, _, _ in pl.flows:
            for lk in links:  # per flow: two inputs of one node can queue on a link too
                link_users.setdefault(lk, set()).add((pl.name, src))

    shared_ports = {t for t, u in port_users.items() if len(u) > 1 and bus}
    shared_links = {lk for lk, u in link_users.items() if len(u) > 1 and link_bits}
    # Every operation's needs and durations, worked out once (the stream repeats them), when
    # a simulation is run (not for one that is kept, :func:`_simulate_memo`).
    op_specs: dict[str, list[_Op]] = {}

    def simulate(n_inf: int):
        if not op_specs:
            op_specs.update({name: _operations(pl, plans, pipelined, bus, link_bits, link_cycle,
                                               shared_ports, shared_links)
                             for name, pl in plans.items()})
        env = simpy.Environment()
        # Queues serve older inferences first (a pipeline works on its oldest data), then
        # in order of arrival.
        ports = {t: simpy.PriorityResource(env, 1) for t in shared_ports}
        links = {lk: simpy.PriorityResource(env, 1) for lk in shared_links}
        xbar_res = {i: simpy.PriorityResource(env, 1) for pl in plans.values()
                    for i in pl.conflicts}

        produced = {name: 0 for name in plans}
        progress = {name: env.event() for name in plans}
        timings = {name: LayerTiming(name=name, kind=pl.kind, duplicates=pl.duplicates)
                   for name, pl in plans.items()}
        inf_end = [0] * n_inf
        finished = {name: 0 for name in plans}
        busy_xbar = [0]

        def hold(res_list, cycles, inference):
            reqs = []
            for r in res_list:
                rq = r.request(priority=inference)
                yield rq
                reqs.append((r, rq))
            yield env.timeout(cycles)
            for r, rq in reqs:
                r.release(rq)

        def proc(pl: _Plan):
            t = timings[pl.name]
            if pl.kind == "matmul":
                t.step_cycles = pl.drain
            started = False
            for i in range(n_inf):
                held = []
                for op in op_specs[pl.name]:
                    wait_from = env.now
                    for src, need_local, src_vectors in op.needs:
                        need = i * src_vectors + need_local
                        while produced[src] < need:
                            yield progress[src]
                    if not started:
                        t.start_cycle, started = int(env.now), True
                    elif i == 0:
                        t.wait_input_cycles += int(env.now - wait_from)
                    if op.v0 == 0 and pl.conflicts:
                        asked = env.now
                        for ima in pl.conflicts:
                            rq = xbar_res[ima].request(priority=i)
                            yield rq
                            held.append((xbar_res[ima], rq))
                        if i == 0:
                            t.wait_resource_cycles += int(env.now - asked)
                    op_start = env.now
                    subs = [env.process(hold((ports[tile],), c, i))
                            for tile, c in op.port_holds]
                    subs += [env.process(hold([links[lk] for lk in route], c, i))
                             for route, c in op.link_holds]
                    if subs:
                        yield simpy.AllOf(env, [*subs, env.timeout(op.fixed)])
                    else:
                        yield env.timeout(op.fixed)
                    cycles = int(env.now - op_start)
                    if i == 0 and pl.spans:
                        t.step_spans.append((int(op_start), int(env.now)))
                    if i == 0:
                        intrinsic = max(op.compute, op.buf_max, op.noc_max, 1)
                        t.wait_resource_cycles += cycles - min(cycles, intrinsic)
                        t.buffer_limited_cycles += max(0, op.buf_max - max(op.compute,
                                                                           op.noc_max))
                        t.noc_limited_cycles += max(0, op.noc_max - max(op.compute,
                                                                        op.buf_max))
                        t.busy_cycles += cycles
                        t.operations += 1
                        busy_xbar[0] += op.compute * pl.crossbars
                    produced[pl.name] = i * pl.vectors + op.v1
                    ev, progress[pl.name] = progress[pl.name], env.event()
                    ev.succeed()
                for r, rq in held:
                    r.release(rq)
                # The last step's conversion and the shift-add/write stage drain after the op
                # (a recurrent product's steps each drained already).
                end = int(env.now) + (0 if pl.state else pl.drain)
                inf_end[i] = max(inf_end[i], end)
                if i == 0:
                    t.end_cycle = end
                finished[pl.name] = i + 1

        for pl in plans.values():
            env.process(proc(pl))
        env.run()
        return timings, inf_end, busy_xbar[0], finished

    # The simulation reads nothing but these (its operations are worked out from them by
    # _operations): design points that give the same ones (e.g. an ADC resolution that
    # changes energies but no time) share it (:func:`_simulate_memo`).
    inputs = (tuple((name, *(getattr(pl, f) for f in _PLAN_FIELDS))
                    for name, pl in plans.items()),
              pipelined, bus, link_bits, link_cycle,
              tuple(sorted(shared_ports)), tuple(sorted(shared_links)))
    timings, inf_end, busy, finished = _simulate_memo(inputs, 1, simulate)
    if n_inf > 1:
        _, stream_end, _, stream_finished = _simulate_memo(inputs, n_inf, simulate)
        finished = {k: min(v, stream_finished[k] // n_inf) for k, v in finished.items()}
    stuck = [n for n, k in finished.items() if k < 1]
    if stuck:
        raise InvariantError(f"schedule deadlocked: {', '.join(stuck)} never finished")
    for name, pl in plans.items():
        if pl.kind == "matmul":
            p = by_place[name]
            act = layer_activity(layer_arch(arch, p.layer), p.geometry, p.layer.vectors,
                                 activity.get(name))
            timings[name].executed_steps = cycles_per_vector(arch, p.geometry, act)[1]
    layers = [timings[p.layer.name] for p in placements]
    nodes = [timings[nd.name] for nd in work if nd.kind in DIGITAL_WORK]
    for t in layers + nodes:
        for fname in ("busy_cycles", "wait_input_cycles", "start_cycle", "end_cycle"):
            v = getattr(t, fname)
            if v < 0 or v != int(v):
                raise InvariantError(f"{t.name}: {fname} = {v} is not a whole, non-negative "
                                     "number of cycles")
    latency = inf_end[0]
    interval, ends = 0, [latency]
    if n_inf > 1:
        ends = list(stream_end)
        interval = math.ceil((ends[-1] - ends[0]) / (n_inf - 1))
    if graph.notes:
        notes += list(graph.notes)
    return Timing(digital_hz=f, layers=layers, nodes=nodes, latency_cycles=latency,
                  bottleneck_cycles=max((t.busy_cycles for t in layers + nodes), default=0),
                  pipelined=pipelined, crossbars_used=arrays_in_use(arch, placements),
                  crossbars_total=org.crossbars, busy_crossbar_cycles=busy,
                  notes=notes, inferences=n_inf, interval_cycles=interval,
                  inference_end_cycles=ends)


def _simulate_memo(inputs: tuple, n_inf: int, simulate):
    """``simulate(n_inf)``, or a copy of its result for the same ``inputs`` and ``n_inf``.

    ``inputs`` is everything the simulation reads, in the order it reads it: each node's
    plan (processes start in this order) and operations, and the shared ports and links. The
    simpy run is deterministic, so equal inputs give equal results; the key is built from
    the derived figures, not from the arch, so no arch field the schedule reads can be
    missing from it. Kept per process, at most :data:`SIMULATIONS_KEPT`, returned as copies.
    """
    key = (n_inf, inputs)
    try:
        with _SIMULATIONS_LOCK:
            hit = _SIMULATIONS.get(key)
            if hit is not None:
                SIMULATION_STATS["hits"] += 1
                _SIMULATIONS.move_to_end(key)
                return _copy_simulation(hit)
            SIMULATION_STATS["misses"] += 1
    except TypeError:  # an unhashable figure: simulate, keep nothing
        return simulate(n_inf)
    made = simulate(n_inf)
    with _SIMULATIONS_LOCK:
        _SIMULATIONS[key] = _copy_simulation(made)
        while len(_SIMULATIONS) > SIMULATIONS_KEPT:
            _SIMULATIONS.popitem(last=False)
    return made


def _copy_simulation(sim: tuple) -> tuple:
    """A copy of ``simulate``'s result that shares nothing mutable with it."""
    timings, inf_end, busy, finished = sim
    copies = {}
    for name, t in timings.items():
        c = copy.copy(t)
        c.step_spans = list(t.step_spans)
        copies[name] = c
    return copies, list(inf_end), busy, dict(finished)


@dataclass(frozen=True)
class _Op:
    """One operation of a node: its vectors, input needs and durations (cycles)."""

    v0: int
    v1: int
    #: (producer, vectors of it needed within one inference, its vectors per inference)
    needs: tuple[tuple[str, int, int], ...]
    compute: int
    #: Duration of the parts that cannot queue (at least 1).
    fixed: int
    buf_max: int
    noc_max: int
    port_holds: tuple[tuple[int, int], ...]
    link_holds: tuple[tuple[tuple, int], ...]


def _operations(pl: _Plan, plans: dict[str, _Plan], pipelined: bool, bus: int, link_bits: int,
                link_cycle: float, shared_ports: set, shared_links: set) -> list[_Op]:
    """The operations of one node (see the module docstring for what each part costs)."""
    ops = []
    for v0 in range(0, pl.vectors, pl.chunk):
        v1 = min(pl.vectors, v0 + pl.chunk)
        needs = tuple((src, v1 if src in pl.step_sources else
                       _need(plans[src], pl, v1, pipelined), plans[src].vectors)
                      for src in pl.producers if src != NETWORK_INPUT)
        if pl.state and v0:  # step v0 reads the state the gates made at step v0 - 1
            needs += ((pl.state, v0, plans[pl.state].vectors),)
        n_vec = v1 - v0
        compute = 0
        if pl.kind == "matmul":
            d = pl.duplicates
            # cumulative rounding: the operations of a layer add up to its exact cycles
            compute = (math.ceil(-(-v1 // d) * pl.per_vector - 1e-9)
                       - math.ceil(-(-v0 // d) * pl.per_vector - 1e-9))
            if pl.state:  # each step's output is needed at once: it drains every step
                compute += pl.drain
        fixed, buf_max, noc_max, port_holds, link_holds = compute, 0, 0, [], []
        if bus:
            uses: dict[int, float] = {}
            for tile, share in pl.port_shares:
                uses[tile] = uses.get(tile, 0.0) + n_vec * pl.in_bits_per_vector * share
            if pl.out_bits_per_vector:
                uses[pl.out_tile] = uses.get(pl.out_tile, 0.0) + n_vec * pl.out_bits_per_vector
            for tile, bits in uses.items():
                c = math.ceil(bits / bus - 1e-9)
                buf_max = max(buf_max, c)
                if tile in shared_ports:
                    port_holds.append((tile, c))
                else:
                    fixed = max(fixed, c)
        if link_bits:
            for _src, route, bits, hops in pl.flows:
                if not route:
                    continue
                c = math.ceil(n_vec * bits / link_bits * link_cycle - 1e-9) + hops
                noc_max = max(noc_max, c)
                shared = tuple(sorted(lk for lk in route if lk in shared_links))
                if shared:
                    link_holds.append((shared, c))
                else:
                    fixed = max(fixed, c)
        ops.append(_Op(v0=v0, v1=v1, needs=needs, compute=compute, fixed=max(fixed, 1),
                       buf_max=buf_max, noc_max=noc_max, port_holds=tuple(port_holds),
                       link_holds=tuple(link_holds)))
    return ops


def _need(src: _Plan, dst: _Plan, v1: int, pipelined: bool) -> int:
    """Vectors of ``src`` (one inference) that ``dst`` needs to make its first ``v1``."""
    if not pipelined:
        return src.vectors
    ahead = (dst.kernel_height - 1) * src.out_width
    return min(src.vectors, math.ceil(v1 * src.vectors / dst.vectors) + ahead)


def _crossbar_range(arch: Arch, p: Placement) -> list[tuple[int, int]]:
    """Crossbar index intervals ``[a, b)`` of a placement (two when it wraps the chip)."""
    cap = arch.organization.crossbars
    a, used = p.first_crossbar % cap, min(p.crossbars, cap)
    if a + used <= cap:
        return [(a, a + used)]
    return [(a, cap), (0, a + used - cap)]


def _tile_shares(arch: Arch, p: Placement) -> dict[int, float]:
    """Share of a layer's crossbars on each tile it uses."""
    org = arch.organization
    per_tile = org.imas_per_tile * org.crossbars_per_ima
    counts: dict[int, int] = {}
    for a, b in _crossbar_range(arch, p):
        for t in range(a // per_tile, (b - 1) // per_tile + 1):
            lo, hi = max(a, t * per_tile), min(b, (t + 1) * per_tile)
            counts[t] = counts.get(t, 0) + hi - lo
    total = sum(counts.values()) or 1
    return {t: c / total for t, c in counts.items()}


def _crossbar_conflicts(arch: Arch, placements: list[Placement]) -> dict[str, tuple[int, ...]]:
    """IMAs whose crossbars two or more layers were placed on (only with reprogramming),
    per layer, sorted (a global order, so acquiring them cannot deadlock)."""
    per_ima = arch.organization.crossbars_per_ima
    spans = {p.layer.name: _crossbar_range(arch, p) for p in placements}
    out: dict[str, set[int]] = {}
    names = list(spans)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            for a0, a1 in spans[a]:
                for b0, b1 in spans[b]:
                    lo, hi = max(a0, b0), min(a1, b1)
                    if lo < hi:
                        imas = set(range(lo // per_ima, (hi - 1) // per_ima + 1))
                        out.setdefault(a, set()).update(imas)
                        out.setdefault(b, set()).update(imas)
    return {k: tuple(sorted(v)) for k, v in out.items()}
