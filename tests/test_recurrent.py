"""Recurrent layers (nn.GRU, nn.LSTM, nn.RNN) on crossbars: bit-true against a quantized
float reference written here, the recurrent schedule, BSP savings, sequence length, and the
options that are refused (mappers/recurrent.py, docs/snn_rnn.md)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from mappers import QuantRecipe, map_model
from sim.engine.graph import GATE_OPS, LayerGraph, graph_events
from sim.engine.placement import geometry, place
from sim.engine.timing import schedule
from sim.errors import MappingError, UserError


class SeqModel(nn.Module):
    """A user's recurrent classifier: an RNN module and a linear head on the last output."""

    def __init__(self, cell: type[nn.RNNBase], features=6, hidden=8, layers=2,
                 batch_first=True, **kw):
        super().__init__()
        self.rnn = cell(features, hidden, num_layers=layers, batch_first=batch_first, **kw)
        self.head = nn.Linear(hidden, 3)
        self.batch_first = batch_first

    def forward(self, x):
        out, _ = self.rnn(x)
        last = out[:, -1] if self.batch_first else out[-1]
        return self.head(last)


# ------------------------------------------------------------------ the quantized float reference
def _qweights(w: torch.Tensor, bits: int = 8):
    """Symmetric per-output-row integer weights and their scales."""
    qmax = 2 ** (bits - 1) - 1
    w = w.detach().double()
    s = w.abs().amax(dim=1) / qmax
    s = torch.where(s > 0, s, torch.ones_like(s))
    return torch.round(w / s[:, None]).clamp(-qmax, qmax), s


def _fake_quant(x: torch.Tensor, lo: float, hi: float, bits: int = 8) -> torch.Tensor:
    """Round ``x`` to the activation grid of a calibrated range on signed-input hardware."""
    if lo >= 0:
        qmax = 2**bits - 1
        scale = max(hi, 1e-12) / qmax
        return torch.round(x / scale).clamp(0, qmax) * scale
    qmax = 2 ** (bits - 1) - 1
    scale = max(abs(lo), abs(hi), 1e-12) / qmax
    return torch.round(x / scale).clamp(-qmax, qmax) * scale


def _cell(mode, gi, gh, h, c):
    if mode == "GRU":
        r = torch.sigmoid(gi[:, :h.shape[1]] + gh[:, :h.shape[1]])
        z = torch.sigmoid(gi[:, h.shape[1]:2 * h.shape[1]] + gh[:, h.shape[1]:2 * h.shape[1]])
        n = torch.tanh(gi[:, 2 * h.shape[1]:] + r * gh[:, 2 * h.shape[1]:])
        return (1 - z) * n + z * h, None
    if mode == "LSTM":
        i, f, g, o = (gi + gh).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c
    return torch.tanh(gi + gh), None


def _reference(rnn: nn.RNNBase, x: torch.Tensor, calib: torch.Tensor) -> torch.Tensor:
    """The model's last-layer outputs with 8-bit weights and 8-bit activations at every
    product's input (ranges from the float module on ``calib``), all in float64.
    ``x`` and ``calib`` are ``(N, T, F)``."""
    with torch.no_grad():
        seq_c = calib.double()
        seq = x.double()
        for k in range(rnn.num_layers):
            w_ih, s_ih = _qweights(getattr(rnn, f"weight_ih_l{k}"))
            w_hh, s_hh = _qweights(getattr(rnn, f"weight_hh_l{k}"))
            b_ih = getattr(rnn, f"bias_ih_l{k}").double()
            b_hh = getattr(rnn, f"bias_hh_l{k}").double()
            # calibration: this layer's float outputs on calib give the state's range
            sub = type(rnn)(rnn.input_size if k == 0 else rnn.hidden_size, rnn.hidden_size,
                            batch_first=True).double()
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(sub, f"{name}_l0").data = getattr(rnn, f"{name}_l{k}").double()
            out_c, _ = sub(seq_c)
            states = torch.cat([torch.zeros(1), out_c[:, :-1].reshape(-1)])
            h_lo, h_hi = float(states.min()), float(states.max())
            x_lo, x_hi = float(seq_c.min()), float(seq_c.max())
            gi = _fake_quant(seq, x_lo, x_hi) @ (w_ih * s_ih[:, None]).T + b_ih
            h = torch.zeros(seq.shape[0], rnn.hidden_size, dtype=torch.float64)
            c = torch.zeros_like(h) if rnn.mode == "LSTM" else None
            outs = []
            for t in range(seq.shape[1]):
                gh = _fake_quant(h, h_lo, h_hi) @ (w_hh * s_hh[:, None]).T + b_hh
                h, c = _cell(rnn.mode, gi[:, t], gh, h, c)
                outs.append(h)
            seq, seq_c = torch.stack(outs, dim=1), out_c
        return seq


@pytest.mark.parametrize("cell,batch_first,kw", [
    (nn.GRU, True, {}), (nn.GRU, False, {"dropout": 0.3}), (nn.LSTM, False, {}),
    (nn.RNN, True, {})], ids=["gru", "gru-seq-first-dropout", "lstm", "rnn"])
def test_bit_true_equals_the_quantized_float_reference(isaac_arch, cell, batch_first, kw):
    torch.manual_seed(0)
    model = SeqModel(cell, batch_first=batch_first, **kw).eval()
    calib = torch.randn(32, 5, 6)
    x = torch.randn(7, 5, 6)
    order = (lambda t: t) if batch_first else (lambda t: t.transpose(0, 1))
    mapped = map_model(model, isaac_arch, QuantRecipe(), order(calib))
    captured = {}
    rnn_hw = mapped.model.rnn
    rnn_hw.register_forward_hook(lambda m, a, out: captured.update(seq=out[0]))
    mapped(order(x))
    got = order(captured["seq"]).double()
    ref = _reference(model.rnn, x, calib)
    # Ideal ISAAC devices: the crossbars compute the integer products exactly.
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-5)
    # Quantization is really there: the float module differs from the reference.
    with torch.no_grad():
        plain = order(model.rnn(order(x))[0]).double()
    assert (plain - ref).abs().max() > 1e-3
    # Every matrix is on crossbars, and the recurrent ones ran one step per call.
    names = {r.name: r for r in mapped.layers}
    assert set(names) == {"head"} | {f"rnn.{p}_l{k}" for p in ("ih", "hh") for k in (0, 1)}
    assert names["rnn.hh_l0"].recurrent and names["rnn.hh_l0"].vectors_per_sample == 5
    assert names["rnn.ih_l1"].recurrent and not names["rnn.ih_l0"].recurrent
    assert all(r.events.adc_conversions > 0 for r in mapped.layers)


# ------------------------------------------------------------------------------- the schedule
def _scheduled(arch, model, steps, n=4, **kw):
    torch.manual_seed(1)
    x = torch.randn(16, steps, 6)
    mapped = map_model(model, arch, QuantRecipe(), x)
    mapped.reset_events()
    mapped(x[:n])
    graph = mapped.layer_graph()
    placements = place(arch, mapped.layer_shapes())
    return mapped, graph, placements, schedule(arch, placements, graph=graph, **kw)


def _overlaps(timing, layers: int) -> list[str]:
    """Steps of one sequence that overlap on a layer's recurrent loop."""
    spans = {t.name: t.step_spans for t in timing.layers + timing.nodes}
    bad = []
    for k in range(layers):
        hh, gates = spans[f"rnn.hh_l{k}"], spans[f"rnn.gates_l{k}"]
        for t in range(len(hh)):
            if gates[t][0] < hh[t][1]:
                bad.append(f"layer {k}: gates of step {t} start before its product ends")
            if t and hh[t][0] < gates[t - 1][1]:
                bad.append(f"layer {k}: step {t} starts before step {t - 1} ends")
    return bad


@pytest.mark.parametrize("pipelined", [True, False])
def test_no_two_steps_of_a_sequence_overlap(isaac_arch, pipelined):
    model = SeqModel(nn.GRU).eval()
    _, graph, placements, timing = _scheduled(isaac_arch, model, 5, pipelined=pipelined)
    spans = {t.name: t.step_spans for t in timing.layers + timing.nodes}
    assert len(spans["rnn.hh_l0"]) == len(spans["rnn.gates_l1"]) == 5
    assert _overlaps(timing, 2) == []
    dup = {p.layer.name: p.duplicates for p in placements}
    assert dup["rnn.hh_l0"] == dup["rnn.hh_l1"] == dup["rnn.ih_l1"] == 1
    if not pipelined:  # one layer at a time: a loop starts after its input product
        ih0 = next(t for t in timing.layers if t.name == "rnn.ih_l0")
        assert spans["rnn.hh_l0"][0][0] >= ih0.start_cycle + ih0.busy_cycles > 0
        assert spans["rnn.hh_l1"][0][0] >= spans["rnn.gates_l0"][-1][1]
    if pipelined:
        # Across layers the loops pipeline: layer 1 works on step 0 before layer 0 ends,
        # and the next sequence enters before this one leaves.
        assert spans["rnn.gates_l1"][0][1] < spans["rnn.gates_l0"][-1][1]
        assert timing.interval_cycles < timing.latency_cycles
    # The check above can fail: the same graph without the state dependency overlaps.
    loose = LayerGraph(nodes=tuple(
        nd if not nd.state_from else type(nd)(**{**nd.__dict__, "state_from": ""})
        for nd in graph.nodes), outputs=graph.outputs, input_elements=graph.input_elements)
    bad = schedule(isaac_arch, placements, graph=loose, pipelined=pipelined)
    assert _overlaps(bad, 2) != []


def test_sequence_length_scales_events_and_latency(isaac_arch):
    model = SeqModel(nn.GRU).eval()
    runs = {}
    for steps in (6, 12):
        mapped, graph, placements, timing = _scheduled(isaac_arch, model, steps, n=1)
        ev = {r.name: r.events.counts() for r in mapped.layers}
        gev = graph_events(isaac_arch, graph, placements)
        spans = {t.name: t.step_spans for t in timing.layers + timing.nodes}
        runs[steps] = ev, gev, timing, spans
    (ev6, g6, t6, s6), (ev12, g12, t12, s12) = runs[6], runs[12]
    for name in ("rnn.ih_l0", "rnn.hh_l0", "rnn.ih_l1", "rnn.hh_l1"):
        assert ev12[name]["adc_conversions"] == 2 * ev6[name]["adc_conversions"] > 0
        assert ev12[name]["macs"] == 2 * ev6[name]["macs"]
    for key in ("adc_conversions", "macs"):  # the head reads the last step only
        assert ev12["head"][key] == ev6["head"][key]
    ops = GATE_OPS["GRU"]
    for k in (0, 1):
        g = f"rnn.gates_l{k}"
        assert g6[g]["gate_multiplies"] == 6 * 8 * ops["gate_multiplies"]
        assert g12[g]["activation_ops"] == 2 * g6[g]["activation_ops"]
    # The loop is periodic: the six extra steps add six periods to the latency.
    period = s12["rnn.hh_l0"][1][0] - s12["rnn.hh_l0"][0][0]
    assert period == s6["rnn.hh_l0"][1][0] - s6["rnn.hh_l0"][0][0] > 0
    assert t12.latency_cycles - t6.latency_cycles == 6 * period
    assert t12.interval_cycles == pytest.approx(2 * t6.interval_cycles, rel=0.02)


# ----------------------------------------------------------------------------------- BSP
def test_bsp_pruned_gru_saves_what_the_mask_predicts(make_arch):
    arch = make_arch()  # 16 x 8 crossbars, 8-bit offset weights in 4 columns + unit column
    torch.manual_seed(2)
    model = SeqModel(nn.GRU, features=24, hidden=8, layers=1).eval()
    with torch.no_grad():  # BSP columns: inputs 12..23 pruned in every gate
        model.rnn.weight_ih_l0[:, 12:] = 0
    x = torch.randn(8, 4, 24)
    runs = {}
    for packed in (False, True):
        mapped = map_model(model, arch, QuantRecipe(packed=packed), x)
        mapped.reset_events()
        mapped(x[:2])
        runs[packed] = {r.name: r for r in mapped.layers}
    dense, pk = runs[False]["rnn.ih_l0"], runs[True]["rnn.ih_l0"]
    g_dense, g_packed = geometry(arch, 24, 24), geometry(arch, 12, 24)
    assert dense.crossbars == g_dense.crossbars == 2 * g_packed.crossbars
    assert pk.crossbars == g_packed.crossbars
    # Conversions: every row group converts every column once per input step.
    per_vector = {False: g_dense.steps * g_dense.row_groups * g_dense.columns_total,
                  True: g_packed.steps * g_packed.row_groups * g_packed.columns_total}
    vectors = 2 * 4
    assert dense.events.adc_conversions == vectors * per_vector[False]
    assert pk.events.adc_conversions == vectors * per_vector[True]
    # The recurrent matrix was not pruned: same cost packed or not.
    assert runs[True]["rnn.hh_l0"].crossbars == runs[False]["rnn.hh_l0"].crossbars


# ------------------------------------------------------------------------- refused options
@pytest.mark.parametrize("kw,fragment", [
    ({"bidirectional": True}, "GRU with bidirectional=True"),
])
def test_unsupported_options_are_named(isaac_arch, kw, fragment):
    model = SeqModel(nn.GRU, **kw).eval()
    with pytest.raises(MappingError, match=fragment) as info:
        map_model(model, isaac_arch, QuantRecipe(), torch.randn(4, 5, 6))
    assert "layer 'rnn'" in str(info.value)
    assert isinstance(info.value, UserError)


def test_lstm_projection_is_refused(isaac_arch):
    model = nn.Sequential(nn.LSTM(6, 8, proj_size=4))
    with pytest.raises(MappingError, match="LSTM with proj_size=4"):
        map_model(model, isaac_arch, QuantRecipe(), torch.randn(5, 4, 6))


BIGRU = """
from torch import nn


class BiGRU(nn.Module):
    input_shape = (1, 8, 8)

    def __init__(self, num_classes=10):
        super().__init__()
        self.gru = nn.GRU(8, 8, bidirectional=True)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x):
        out, _ = self.gru(x.reshape(x.shape[0], 8, 8).transpose(0, 1))
        return self.fc(out[-1])
"""


def test_cli_refuses_a_bidirectional_gru_without_a_traceback(tmp_path, capsys):
    from analysis.cli import main

    (tmp_path / "bigru.py").write_text(BIGRU)
    spec = tmp_path / "bigru.yaml"
    spec.write_text("name: bigru\nmodel: bigru.py:BiGRU\ndataset: digits\n"
                    "bits: {weights: 8, activations: 8}\ncheckpoint: bigru.pt\n"
                    "calibration_samples: 16\n")
    model = nn.Module()
    exec(compile(BIGRU, "bigru", "exec"), ns := {})  # noqa: S102 - the user's file
    model = ns["BiGRU"]()
    torch.save(model.state_dict(), tmp_path / "bigru.pt")
    code = main(["run", "isaac_32nm", str(spec), "--samples", "2", "--quiet",
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "layer 'gru' (GRU with bidirectional=True" in err
    assert "Traceback" not in err


def test_gru_workload_maps_on_isaac_with_per_sequence_figures(isaac_arch):
    """The row-MNIST GRU of the compression work, from its YAML (random data, no checkpoint
    needed for the shapes): 28 steps of 28 features, 128 units."""
    from workloads.models import build_model

    model = build_model("row_gru").eval()
    x = torch.rand(8, 1, 28, 28)
    mapped = map_model(model, isaac_arch, QuantRecipe(), x)
    mapped.reset_events()
    mapped(x[:1])
    graph = mapped.layer_graph()
    assert json.dumps(graph.to_json())  # plain JSON, state edge included
    assert graph.node("gru.hh_l0").state_from == "gru.gates_l0"
    placements = place(isaac_arch, mapped.layer_shapes())
    timing = schedule(isaac_arch, placements, graph=graph)
    hh = next(t for t in timing.layers if t.name == "gru.hh_l0")
    assert len(hh.step_spans) == 28 and hh.duplicates == 1
    # At least 28 recurrent steps of 16 input bit-steps of one crossbar read each.
    read = math.ceil(isaac_arch.clock.crossbar_cycle_ns * 1e-9 * isaac_arch.clock.digital_hz)
    assert timing.latency_cycles >= 28 * 16 * read


def test_a_chain_fallback_still_runs_recurrent_steps_one_at_a_time(isaac_arch):
    model = SeqModel(nn.GRU, layers=1).eval()
    mapped, _, placements, _ = _scheduled(isaac_arch, model, 5)
    chain = LayerGraph.chain(mapped.layer_shapes(), note="not traced")
    timing = schedule(isaac_arch, placements, graph=chain)
    spans = next(t for t in timing.layers if t.name == "rnn.hh_l0").step_spans
    assert len(spans) == 5
    assert all(spans[t][0] >= spans[t - 1][1] for t in range(1, 5))


@pytest.mark.parametrize("cell", [nn.GRU, nn.LSTM, nn.RNN])
@pytest.mark.parametrize("batch_first", [True, False])
def test_unrolled_module_computes_what_torch_does(cell, batch_first):
    """The float rewrite the bridge maps: same outputs and final states as the torch module,
    with a given initial state and for an unbatched sequence."""
    from mappers.recurrent import UnrolledRecurrent

    torch.manual_seed(0)
    rnn = cell(5, 7, num_layers=2, batch_first=batch_first).eval()
    unrolled = UnrolledRecurrent(rnn)
    x = torch.randn(3, 4, 5)
    h = torch.randn(2, 3 if batch_first else 4, 7)
    hx = (h, torch.randn_like(h)) if cell is nn.LSTM else h
    with torch.no_grad():
        for args in ((x, hx), (x[0],)):
            want, got = rnn(*args), unrolled(*args)
            torch.testing.assert_close(got[0], want[0], rtol=0, atol=1e-6)
            for a, b in zip(got[1] if cell is nn.LSTM else (got[1],),
                            want[1] if cell is nn.LSTM else (want[1],), strict=True):
                torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_analytical_mode_counts_the_recurrent_steps_as_bit_true_does(isaac_arch):
    """``imcsim.estimate`` on a GRU: every step's state is in the statistics, so the counts
    of the recurrent product equal the bit-true pass's (exact without zero-skip)."""
    import imcsim

    torch.manual_seed(4)
    model = SeqModel(nn.GRU, layers=1).eval()
    x, y = torch.randn(6, 5, 6), torch.randint(0, 3, (6,))
    est = imcsim.estimate(model, isaac_arch, (x, y), x, samples=6)
    hw = imcsim.simulate(model, isaac_arch, (x, y), x, samples=6)
    for name in ("rnn.ih_l0", "rnn.hh_l0", "head"):
        a = next(lr for lr in est.layers if lr.name == name).events
        b = next(lr for lr in hw.layers if lr.name == name).events
        assert a["adc_conversions"] == b["adc_conversions"] > 0, name
        assert a["macs"] == b["macs"], name
    assert est.latency_per_inference_s == pytest.approx(hw.latency_per_inference_s, rel=0.01)
