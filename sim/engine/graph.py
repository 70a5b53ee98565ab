"""The model's dataflow graph as the engine sees it (no torch here; :mod:`mappers` fills it).

A :class:`LayerGraph` lists nodes in execution (topological) order. Each node has a kind:

- ``matmul``: a Conv2d/Linear product placed on crossbars (its shape is a
  :class:`~sim.engine.placement.LayerShape` of the same name);
- ``add``: element-wise sum of two or more tensors (a residual join);
- ``pool``: max/average pooling (``in_elements`` = elements read by its windows);
- ``activation``: ReLU, sigmoid, ... (``out_elements`` pass through it);
- ``gates``: the digital work of one recurrent layer's cell per time step (sigmoid / tanh,
  element-wise products, the state update; ``op`` is the cell mode, ``GRU``, ``LSTM``,
  ``RNN_TANH`` or ``RNN_RELU``), fed by its input and recurrent products;
- ``neuron``: spiking neurons (``out_elements`` over all time steps: one membrane update
  each, in the digital neuron units);
- ``concat``, ``flatten``, ``other``: no digital work (addressing), but ``concat`` still joins
  its inputs, so a consumer waits for all of them.

A recurrent product (``W_hh h_{t-1}``) names in ``state_from`` the node whose previous step
it reads (its layer's ``gates``, a later node): the schedule runs its ``vectors`` (time steps)
one at a time, step ``t`` after step ``t - 1`` of that node has ended.

``inputs`` name the producers of a node, :data:`NETWORK_INPUT` for the model's input. A node
may feed several consumers. Element counts are per inference.

Nodes without digital work are *pass-through* for the schedule: a consumer of a ``flatten``
waits on the flatten's own producers (:meth:`LayerGraph.work_inputs`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sim.errors import InvariantError

#: Name standing for the network's input in :attr:`GraphNode.inputs`.
NETWORK_INPUT = "<input>"
#: Node kinds.
KINDS = ("matmul", "add", "pool", "activation", "gates", "neuron", "concat", "flatten", "other")
#: Kinds that do digital work the schedule times and the events count.
DIGITAL_WORK = ("add", "pool", "activation", "gates", "neuron")
#: Graph-level events (counted per node by :func:`graph_events`).
GRAPH_EVENTS = ("noc_bit_hops", "router_bits", "activation_ops", "pooling_ops", "add_ops",
                "gate_multiplies", "neuron_updates", "offchip_bits")
#: Digital operations of one recurrent cell per hidden unit and time step, by cell mode.
#: GRU: r = s(a_r), z = s(a_z), n = tanh(a_n + r h_n), h = n + z (h - n): the sums a_r, a_z,
#: a_n of the two products, h - n and the final add (5 adds), 2 sigmoids and a tanh, 2
#: products. LSTM: 4 gate sums, c = f c + i g (1 add, 2 products), h = o tanh(c) (1 product),
#: 3 sigmoids and 2 tanh. RNN: the sum and the nonlinearity. (The biases are added with the
#: products, as for every mapped layer.)
GATE_OPS: dict[str, dict[str, int]] = {
    "GRU": {"add_ops": 5, "activation_ops": 3, "gate_multiplies": 2},
    "LSTM": {"add_ops": 5, "activation_ops": 5, "gate_multiplies": 3},
    "RNN_TANH": {"add_ops": 1, "activation_ops": 1},
    "RNN_RELU": {"add_ops": 1, "activation_ops": 1},
}


@dataclass(frozen=True, kw_only=True)
class GraphNode:
    """One node of the dataflow graph (see the module docstring)."""

    name: str
    kind: str
    inputs: tuple[str, ...]
    #: Output elements per inference.
    out_elements: int
    #: Elements read per inference (pooling: summed over windows; others: their inputs).
    in_elements: int = 0
    #: Output positions (height x width of a feature map; 1 when flat) and row width: the
    #: schedule streams a node row by row.
    vectors: int = 1
    out_width: int = 1
    #: Rows of its input a node needs ahead of an output row (a pooling or conv window).
    kernel_height: int = 1
    #: What it came from (``relu``, ``MaxPool2d``, ``operator.add``...), for reports; the
    #: cell mode for ``gates``.
    op: str = ""
    #: A recurrent product: the node whose output of the previous time step it reads (see
    #: the module docstring); empty otherwise.
    state_from: str = ""

    def __post_init__(self):
        if self.kind not in KINDS:
            raise InvariantError(f"graph node {self.name}: unknown kind {self.kind!r}")
        if self.kind == "gates" and self.op not in GATE_OPS:
            raise InvariantError(f"graph node {self.name}: unknown cell {self.op!r}")


@dataclass(frozen=True, kw_only=True)
class LayerGraph:
    """Nodes in execution order, the nodes whose outputs leave the chip, and provenance."""

    nodes: tuple[GraphNode, ...]
    outputs: tuple[str, ...]
    #: Elements of one network input (one sample).
    input_elements: int = 0
    #: True for the model's dataflow (a ``torch.fx`` trace, or the operations recorded while
    #: the model ran when ``torch.fx`` cannot trace it); False for the execution-order chain.
    traced: bool = True
    notes: tuple[str, ...] = ()
    _by_name: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self):
        seen: dict[str, GraphNode] = {}
        for nd in self.nodes:
            if nd.name in seen or nd.name == NETWORK_INPUT:
                raise InvariantError(f"graph: duplicate node name {nd.name!r}")
            for src in nd.inputs:
                if src != NETWORK_INPUT and src not in seen:
                    raise InvariantError(f"graph: {nd.name} reads {src!r}, which is not an "
                                         "earlier node")
            seen[nd.name] = nd
        for nd in self.nodes:
            if nd.state_from and nd.state_from not in seen:
                raise InvariantError(f"graph: {nd.name} reads the state of "
                                     f"{nd.state_from!r}, which is not a node")
        for out in self.outputs:
            if out not in seen and out != NETWORK_INPUT:
                raise InvariantError(f"graph: output {out!r} is not a node")
        self._by_name.update(seen)

    def node(self, name: str) -> GraphNode:
        """The node called ``name``."""
        return self._by_name[name]

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    def consumers(self, name: str) -> list[str]:
        """Nodes reading ``name`` (or :data:`NETWORK_INPUT`), in execution order."""
        return [nd.name for nd in self.nodes if name in nd.inputs]

    def is_work(self, name: str) -> bool:
        """Whether the schedule times this node (a matmul or a digital-work node)."""
        kind = self._by_name[name].kind
        return kind == "matmul" or kind in DIGITAL_WORK

    def work_inputs(self, name: str) -> tuple[str, ...]:
        """Producers of ``name`` with pass-through nodes (flatten, concat...) looked through:
        work nodes or :data:`NETWORK_INPUT`, each once, in order."""
        out: list[str] = []
        stack = list(reversed(self._by_name[name].inputs))
        while stack:
            src = stack.pop()
            if src == NETWORK_INPUT or self.is_work(src):
                if src not in out:
                    out.append(src)
            else:
                stack.extend(reversed(self._by_name[src].inputs))
        return tuple(out)

    def work_outputs(self) -> tuple[str, ...]:
        """The work nodes (or the input) whose results leave the chip."""
        out: list[str] = []
        for name in self.outputs:
            srcs = (name,) if name == NETWORK_INPUT or self.is_work(name) else \
                self.work_inputs(name)
            out += [s for s in srcs if s not in out]
        return tuple(out)

    def nearest_matmul(self, name: str) -> str | None:
        """The matrix product upstream of ``name``, following first inputs through other
        nodes (``None``: the network input). For the single ``LayerShape.source``."""
        src = self._by_name[name].inputs[0] if self._by_name[name].inputs else NETWORK_INPUT
        while src != NETWORK_INPUT and self._by_name[src].kind != "matmul":
            nd = self._by_name[src]
            src = nd.inputs[0] if nd.inputs else NETWORK_INPUT
        return None if src == NETWORK_INPUT else src

    def matmuls(self) -> list[str]:
        """Matrix-product nodes in execution order."""
        return [nd.name for nd in self.nodes if nd.kind == "matmul"]

    @classmethod
    def chain(cls, layers, *, note: str = "") -> LayerGraph:
        """A graph of matmul nodes fed as ``LayerShape.source`` says (the fallback when the
        model cannot be traced, and for callers that only have layer shapes)."""
        nodes = []
        for ly in layers:
            # A recurrent layer's steps still run one at a time (its own previous step is
            # the state); its gates are not in a chain.
            nodes.append(GraphNode(name=ly.name, kind="matmul",
                                   inputs=(ly.source or NETWORK_INPUT,),
                                   out_elements=ly.vectors * ly.n,
                                   in_elements=ly.vectors * ly.k, vectors=ly.vectors,
                                   out_width=ly.out_width, kernel_height=ly.kernel_height,
                                   op="matmul",
                                   state_from=ly.name if getattr(ly, "recurrent", False)
                                   else ""))
        fed = {src for nd in nodes for src in nd.inputs}
        outputs = tuple(nd.name for nd in nodes if nd.name not in fed)
        first = layers[0] if layers else None
        return cls(nodes=tuple(nodes), outputs=outputs,
                   input_elements=first.k * first.vectors if first else 0, traced=False,
                   notes=(note,) if note else ())

    def to_json(self) -> dict:
        """Plain-JSON form (for ``result.json``)."""
        return {"traced": self.traced, "notes": list(self.notes),
                "input_elements": self.input_elements, "outputs": list(self.outputs),
                "nodes": [{"name": nd.name, "kind": nd.kind, "op": nd.op,
                           "inputs": list(nd.inputs), "out_elements": nd.out_elements,
                           "in_elements": nd.in_elements,
                           **({"state_from": nd.state_from} if nd.state_from else {})}
                          for nd in self.nodes]}


def digital_ops(node: GraphNode) -> dict[str, int]:
    """The digital-unit events of one node per inference (empty for matmul/pass-through)."""
    if node.kind == "add":
        return {"add_ops": node.out_elements}
    if node.kind == "pool":
        return {"pooling_ops": node.in_elements}
    if node.kind == "activation":
        return {"activation_ops": node.out_elements}
    if node.kind == "gates":  # out_elements: hidden units x time steps
        return {k: v * node.out_elements for k, v in GATE_OPS[node.op].items()}
    if node.kind == "neuron":
        return {"neuron_updates": node.out_elements}
    return {}


def graph_events(arch, graph: LayerGraph, placements) -> dict[str, dict[str, int]]:
    """Graph-level events of one inference, per work node (matmul or digital), in execution
    order (see :data:`GRAPH_EVENTS`):

    - ``noc_bit_hops`` / ``router_bits``: for every producer -> consumer edge whose tiles
      differ, the producer's output bits (``outputs.bits`` each) x mesh hops of the XY route
      between the producer's output tile and the consumer's input tile / x routers traversed
      (hops + 1); charged to the consumer. Data that stays on its tile uses no router.
    - the same for a recurrent product's state, read from its ``state_from`` node's output
      tile at every step;
    - ``add_ops`` / ``pooling_ops`` / ``activation_ops`` / ``gate_multiplies`` /
      ``neuron_updates``:
      :func:`digital_ops`.
    - ``offchip_bits``: the network input (``inputs.bits`` per element), charged to the
      first node reading it, and each final output (``outputs.bits`` per element), charged
      to the node producing it.

    The schedule (:mod:`sim.engine.timing`) moves the same bits over the same routes.
    """
    from sim.engine.placement import Mesh, node_tiles

    mesh = Mesh.of(arch.organization.tiles)
    sites = node_tiles(graph, placements)
    obits = arch.outputs.bits
    out: dict[str, dict[str, int]] = {}
    input_charged = False
    finals = set(graph.work_outputs())
    for nd in graph.nodes:
        if not graph.is_work(nd.name):
            continue
        ev = dict.fromkeys(GRAPH_EVENTS, 0)
        ev.update(digital_ops(nd))
        for src in graph.work_inputs(nd.name) + ((nd.state_from,) if nd.state_from else ()):
            if src == NETWORK_INPUT:
                if not input_charged:
                    ev["offchip_bits"] += graph.input_elements * arch.inputs.bits
                    input_charged = True
                continue
            hops = mesh.hops(sites[src][1], sites[nd.name][0])
            if hops:
                bits = graph.node(src).out_elements * obits
                ev["noc_bit_hops"] += bits * hops
                ev["router_bits"] += bits * (hops + 1)
        if nd.name in finals:
            ev["offchip_bits"] += nd.out_elements * obits
        out[nd.name] = ev
    return out
