"""The layer graph: what the bridge records from torch.fx, and the graph-level events."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from mappers import QuantRecipe, fold_batchnorm, map_model
from mappers.torch_bridge import trace_graph
from sim.engine.graph import NETWORK_INPUT, GraphNode, LayerGraph, graph_events
from sim.engine.placement import LayerShape, Mesh, node_tiles, place
from sim.engine.timing import schedule
from sim.errors import InvariantError
from workloads.models import ResNet20


def _resnet20_graph():
    torch.manual_seed(0)
    model, _ = fold_batchnorm(ResNet20().eval())
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    graph, note = trace_graph(model, torch.randn(1, 3, 32, 32), names)
    assert graph is not None, note
    return graph


def _expected_resnet20_feeds():
    """Who feeds whom in ResNet-20, written out from He et al.'s block structure (not from
    the trace): block input -> conv1 -> relu1 -> conv2; the add joins conv2 with the
    shortcut (a 1x1 conv of the block input at a stage change, else the block input itself);
    relu2 of the add is the next block's input."""
    feeds = {"conv1": {NETWORK_INPUT}, "relu1": {"conv1"}}
    block_in = "relu1"
    for stage in (1, 2, 3):
        for b in range(3):
            p = f"layer{stage}.{b}"
            feeds[f"{p}.conv1"] = {block_in}
            feeds[f"{p}.relu1"] = {f"{p}.conv1"}
            feeds[f"{p}.conv2"] = {f"{p}.relu1"}
            if stage > 1 and b == 0:
                feeds[f"{p}.shortcut.0"] = {block_in}
                feeds[(p, "add")] = {f"{p}.conv2", f"{p}.shortcut.0"}
            else:
                feeds[(p, "add")] = {f"{p}.conv2", block_in}
            feeds[f"{p}.relu2"] = {(p, "add")}
            block_in = f"{p}.relu2"
    feeds["pool"] = {block_in}
    feeds["fc"] = {"pool"}
    return feeds


def test_resnet20_every_node_fed_by_its_true_producer():
    g = _resnet20_graph()
    adds = [nd for nd in g.nodes if nd.kind == "add"]
    assert len(adds) == 9
    # The add of block p is the add feeding p.relu2.
    add_of = {}
    for nd in g.nodes:
        if nd.name.endswith(".relu2"):
            (src,) = nd.inputs
            add_of[src] = nd.name.rsplit(".", 1)[0]
    expected = _expected_resnet20_feeds()
    for nd in g.nodes:
        if not g.is_work(nd.name):
            continue
        key = (add_of[nd.name], "add") if nd.kind == "add" else nd.name
        want = {(add_of[s], "add") if s in add_of else s for s in g.work_inputs(nd.name)}
        assert want == expected[key], f"{nd.name} fed by {want}, expected {expected[key]}"
    # the case the execution-order chain got wrong
    assert g.work_inputs("layer2.0.shortcut.0") == ("layer1.2.relu2",)
    assert g.nearest_matmul("layer2.0.shortcut.0") == "layer1.2.conv2"
    # a layer may feed several consumers: the block input feeds conv1 and the shortcut
    assert {"layer2.0.conv1", "layer2.0.shortcut.0"} <= set(g.consumers("layer1.2.relu2"))
    assert g.work_outputs() == ("fc",)


def test_resnet20_adds_wait_for_both_branches(isaac_arch):
    g = _resnet20_graph()
    shapes = [LayerShape(name=nd.name, k=_k(nd, g), n=nd.out_elements // nd.vectors,
                         vectors=nd.vectors, out_width=nd.out_width,
                         kernel_height=1 if nd.name.endswith("shortcut.0") or nd.name == "fc"
                         else 3) for nd in g.nodes if nd.kind == "matmul"]
    placements = place(isaac_arch, shapes)
    for pipelined in (True, False):
        t = schedule(isaac_arch, placements, graph=g, pipelined=pipelined, inferences=1)
        by = {x.name: x for x in t.layers + t.nodes}
        for nd in g.nodes:
            if nd.kind != "add":
                continue
            srcs = g.work_inputs(nd.name)
            assert len(srcs) == 2
            add = by[nd.name]
            for s in srcs:
                # its last output needs the last output of both branches
                assert add.end_cycle >= by[s].end_cycle - by[s].step_cycles
                assert add.start_cycle >= by[s].start_cycle
            if not pipelined:
                assert add.start_cycle >= max(by[s].end_cycle - by[s].step_cycles
                                              for s in srcs)


def _k(nd: GraphNode, g: LayerGraph) -> int:
    """Rows K of a ResNet-20 matmul node (input channels x kernel area)."""
    (src,) = g.work_inputs(nd.name)
    c_in = (g.input_elements // 1024 if src == NETWORK_INPUT
            else g.node(src).out_elements // g.node(src).vectors)
    if nd.name == "fc":
        return 64
    return c_in * (1 if nd.name.endswith("shortcut.0") else 9)


class _DataDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(6, 5)
        self.b = nn.Linear(5, 3)

    def forward(self, x):
        y = self.a(x)
        if y.sum() > 0:  # data-dependent control flow: torch.fx cannot trace this
            y = torch.relu(y)
        return self.b(y)


def test_untraceable_model_gets_the_graph_its_operations_recorded(make_arch):
    """torch.fx cannot trace it; the operation recorder saw the dataflow (issue 9.3)."""
    torch.manual_seed(0)
    x = torch.randn(8, 6)
    model = _DataDependent().eval()
    with torch.no_grad():
        took_branch = bool(model.a(x[:4]).sum() > 0)  # the recorder runs the first 4 samples
    mapped = map_model(model, make_arch(), QuantRecipe(), x)
    g = mapped.graph
    assert g is not None and g.traced and mapped.graph_note == ""
    assert "cannot be traced by torch.fx" in g.notes[0] and "recorded" in g.notes[0]
    kinds = [(nd.kind, nd.op) for nd in g.nodes]
    assert kinds == [("matmul", "Linear"), ("other", "sum"), ("other", "gt")] + (
        [("activation", "relu")] if took_branch else []) + [("matmul", "Linear")]
    relu = [nd.name for nd in g.nodes if nd.kind == "activation"]
    assert g.work_inputs("b") == (tuple(relu) or ("a",)) and g.work_inputs("a") == (NETWORK_INPUT,)
    assert g.node("a").out_elements == 5 and g.node("b").in_elements == 5
    mapped(torch.randn(2, 6))
    t = schedule(make_arch(), place(make_arch(), mapped.layer_shapes()), graph=g)
    assert g.notes[0] in t.notes


class _TwiceUntraceable(_DataDependent):
    def forward(self, x):
        y = self.a(x)
        if y.sum() > 0:
            y = torch.relu(y)
        return self.b(y) + self.b(y)


def test_untraceable_model_without_a_graph_falls_back_to_execution_order(make_arch):
    torch.manual_seed(0)
    mapped = map_model(_TwiceUntraceable().eval(), make_arch(), QuantRecipe(), torch.randn(8, 6))
    assert mapped.graph is None and "cannot be traced by torch.fx" in mapped.graph_note
    assert "'b' runs more than once" in mapped.graph_note
    mapped(torch.randn(2, 6))
    g = mapped.layer_graph()
    assert not g.traced and g.notes == (mapped.graph_note,)
    assert g.work_inputs("b") == ("a",) and g.work_inputs("a") == (NETWORK_INPUT,)
    shapes = mapped.layer_shapes()
    t = schedule(make_arch(), place(make_arch(), shapes), graph=g)
    assert mapped.graph_note in t.notes


class _Small(nn.Module):
    """conv -> relu -> maxpool 2 -> (conv, identity) -> add -> flatten -> linear."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.c2 = nn.Conv2d(4, 4, 3, padding=1)
        self.flat = nn.Flatten()
        self.fc = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x):
        y = self.pool(self.relu(self.c1(x)))
        return self.fc(self.flat(self.c2(y) + y))


def test_small_graph_counts_digital_and_offchip_events(make_arch):
    arch = make_arch()
    graph, note = trace_graph(_Small().eval(), torch.randn(1, 1, 8, 8), ["c1", "c2", "fc"])
    assert graph is not None, note
    kinds = {nd.name: nd.kind for nd in graph.nodes}
    assert kinds == {"c1": "matmul", "relu": "activation", "pool": "pool", "c2": "matmul",
                     "add": "add", "flat": "flatten", "fc": "matmul"}
    assert graph.work_inputs("fc") == ("add",)  # through the flatten
    assert graph.work_inputs("add") == ("c2", "pool")
    shapes = [LayerShape(name="c1", k=9, n=4, vectors=64, out_width=8, kernel_height=3),
              LayerShape(name="c2", k=36, n=4, vectors=16, out_width=4, kernel_height=3),
              LayerShape(name="fc", k=64, n=3, vectors=1)]
    ev = graph_events(arch, graph, place(arch, shapes))
    assert list(ev) == ["c1", "relu", "pool", "c2", "add", "fc"]  # execution order
    assert ev["relu"]["activation_ops"] == 4 * 8 * 8
    assert ev["pool"]["pooling_ops"] == 4 * 4 * 4 * 2 * 2  # outputs x window
    assert ev["add"]["add_ops"] == 4 * 4 * 4
    assert ev["c1"]["offchip_bits"] == 64 * arch.inputs.bits  # the network input, once
    assert ev["fc"]["offchip_bits"] == 3 * arch.outputs.bits  # the final output
    assert sum(e["offchip_bits"] for e in ev.values()) == 64 * 8 + 3 * 16


def test_noc_events_follow_mesh_hops(make_arch):
    """bits x hops between the producer's output tile and the consumer's input tile; moves
    when the placement puts the layers further apart."""
    def run(tiles: int, first_k: int):
        arch = make_arch(**{"organization.tiles": tiles})
        shapes = [LayerShape(name="a", k=first_k, n=2, vectors=10),
                  LayerShape(name="b", k=2, n=3, vectors=10, source="a")]
        placements = place(arch, shapes, duplicate=False)
        g = LayerGraph.chain(shapes)
        sites = node_tiles(g, placements)
        hops = Mesh.of(tiles).hops(sites["a"][1], sites["b"][0])
        return graph_events(arch, g, placements)["b"], hops

    near, h0 = run(4, 16)  # a: 1 crossbar on tile 0; b right after it on tile 0
    assert h0 == 0 and near["noc_bit_hops"] == 0 and near["router_bits"] == 0
    # a layer placed between them (16 crossbars = 2 tiles of 8) pushes b two tiles away
    arch = make_arch(**{"organization.tiles": 4})
    shapes = [LayerShape(name="a", k=16, n=2, vectors=10),
              LayerShape(name="x", k=16 * 16, n=2, vectors=10),
              LayerShape(name="b", k=2, n=3, vectors=10, source="a")]
    placements = place(arch, shapes, duplicate=False)
    g = LayerGraph.chain(shapes)
    sites = node_tiles(g, placements)
    hops = Mesh.of(4).hops(sites["a"][1], sites["b"][0])
    assert hops >= 1
    bits = 10 * 2 * arch.outputs.bits
    ev = graph_events(arch, g, placements)["b"]
    assert ev["noc_bit_hops"] == bits * hops
    assert ev["router_bits"] == bits * (hops + 1)


def test_graph_rejects_a_reference_to_a_later_node():
    a = GraphNode(name="a", kind="matmul", inputs=("b",), out_elements=1)
    b = GraphNode(name="b", kind="activation", inputs=(NETWORK_INPUT,), out_elements=1)
    with pytest.raises(InvariantError, match="not an earlier node"):
        LayerGraph(nodes=(a, b), outputs=("a",))


def test_run_counts_graph_events_per_node(isaac_arch):
    """A run's per-layer list has the digital nodes in execution order with their events,
    scaled to the samples like every other count."""
    from analysis.run import simulate

    n = 4
    workload = Path(__file__).resolve().parents[1] / "workloads" / "digits_cnn.yaml"
    r = simulate(isaac_arch, workload, samples=n, progress=False)
    by = {lr.name: lr for lr in r.layers}
    assert [lr.name for lr in r.layers] == ["conv1", "relu1", "conv2", "relu2", "pool", "fc"]
    assert by["relu1"].events["activation_ops"] == n * 16 * 8 * 8
    assert by["pool"].events["pooling_ops"] == n * 32 * 8 * 8  # 2x2 windows read every input
    assert by["pool"].kind == "pool" and by["pool"].crossbars == 0
    assert by["conv1"].events["offchip_bits"] == n * 64 * isaac_arch.inputs.bits
    assert by["fc"].events["offchip_bits"] == n * 10 * isaac_arch.outputs.bits
    assert r.events_total["offchip_bits"] == n * (64 * 16 + 10 * 16)
    assert r.inferences_simulated == 4 and r.interval_cycles > 0
    assert r.layer_graph["traced"] and [nd["kind"] for nd in r.layer_graph["nodes"]][:3] == [
        "matmul", "other", "activation"]  # conv1, its folded batch norm, relu1


def test_mesh_shape_and_xy_routes():
    assert (Mesh.of(168).width, Mesh.of(168).height) == (14, 12)  # ISAAC's 14 x 12 tiles
    assert (Mesh.of(7).width, Mesh.of(7).height) == (3, 3)  # a prime: square with holes
    m = Mesh.of(16)
    route = m.route(1, 14)  # (1, 0) -> (2, 3): along the row, then the column
    assert route == [(1, 2), (2, 6), (6, 10), (10, 14)]
    assert len(route) == m.hops(1, 14) == 4 and m.route(5, 5) == []
