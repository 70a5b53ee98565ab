"""Spiking networks on the crossbars (mappers/spiking.py through the torch bridge)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import imcsim
from mappers.quantize import quantize_weights
from mappers.torch_bridge import HardwareLayer, QuantRecipe, fold_batchnorm, map_model
from sim.config.schema import columns_per_weight
from sim.engine.placement import spike_arch
from workloads.spiking import SpikingLeNet


def _model(encoding: str = "direct", time_steps: int = 3, v_threshold: float = 0.2,
           seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    m = SpikingLeNet(time_steps=time_steps, encoding=encoding)
    for mod in m.modules():
        if hasattr(mod, "v_threshold"):
            mod.v_threshold = v_threshold
    return m.eval()


def _inputs(n: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


class _Reference(nn.Module):
    """A Conv2d/Linear as the quantized float reference: the layer's integer inputs times its
    integer weights in float64, rescaled as the hardware rescales (no crossbars)."""

    def __init__(self, module: nn.Module, act):
        super().__init__()
        self.module, self.act = module, act
        self.wq, self.scale = quantize_weights(module.weight.detach(), 8)

    def forward(self, x):  # noqa: D102
        q = self.act.to_int(x).double()
        m = self.module
        if isinstance(m, nn.Conv2d):
            y = F.conv2d(q, self.wq.double(), stride=m.stride, padding=m.padding)
            y = (y * (self.scale * self.act.scale)[None, :, None, None]).to(x.dtype)
            return y + m.bias[None, :, None, None] if m.bias is not None else y
        y = (F.linear(q, self.wq.double()) * (self.scale * self.act.scale)).to(x.dtype)
        return y + m.bias if m.bias is not None else y


def _reference_model(model: nn.Module, mapped) -> nn.Module:
    folded, _ = fold_batchnorm(model)
    acts = {r.name: r.activation for r in mapped.layers}
    for name, mod in list(folded.named_modules()):
        if isinstance(mod, nn.Conv2d | nn.Linear):
            setattr(folded, name, _Reference(mod, acts[name]))
    return folded


@pytest.mark.parametrize("encoding", ["direct", "rate"])
def test_bit_true_snn_equals_quantized_reference(isaac_arch, encoding):
    model = _model(encoding)
    x = _inputs(6)
    mapped = map_model(model, isaac_arch, QuantRecipe(), _inputs(16, seed=2), seed=0)
    spikes = {r.name: r.spike_inputs for r in mapped.layers}
    assert spikes == {"conv1": encoding == "rate", "conv2": True, "fc1": True, "fc2": True}
    ref = _reference_model(model, mapped)
    got = mapped(x)
    with torch.no_grad():
        want = ref(x)
    assert torch.equal(got, want)
    assert all(r.events.adc_conversions > 0 for r in mapped.layers)


def _slow_events(x: np.ndarray, arch, n: int) -> dict[str, int]:
    """Count a spike-driven layer's events one (vector, row group) at a time."""
    xb = arch.crossbar
    j = n * columns_per_weight(arch.weights, xb.cell)
    tiles = -(-j // xb.columns)
    columns = j + (tiles if xb.unit_column else 0)
    out = dict.fromkeys(("adc_conversions", "adc_conversions_skipped", "dac_pulses",
                         "cell_reads"), 0)
    for vec in x:
        for g0 in range(0, len(vec), xb.group_rows):
            driven = 0
            for v in vec[g0:g0 + xb.group_rows]:
                assert v in (0, 1)
                driven += int(v)
            out["dac_pulses"] += driven * tiles
            out["cell_reads"] += driven * columns
            if driven:
                out["adc_conversions"] += columns
            else:
                out["adc_conversions_skipped"] += columns
    return out


@pytest.mark.parametrize("arch_name", ["isaac_32nm", "forms_32nm"])
def test_spike_driven_events_match_slow_loop(arch_name):
    arch = imcsim.load_arch(arch_name)
    model = _model()
    if arch_name == "forms_32nm":  # FORMS holds one sign per fragment: all-positive weights
        with torch.no_grad():
            for mod in model.modules():
                if isinstance(mod, nn.Conv2d | nn.Linear):
                    mod.weight.abs_()
    mapped = map_model(model, arch, QuantRecipe(), _inputs(8, seed=2), seed=0)
    layers = {m.layer_name: m for m in mapped.model.modules() if isinstance(m, HardwareLayer)}
    for hw in layers.values():
        hw.capture = []
    mapped.reset_events()
    mapped(_inputs(3))
    checked = 0
    for rec in mapped.layers:
        if not rec.spike_inputs:
            continue
        x = layers[rec.name].capture[0]
        want = _slow_events(x, spike_arch(arch), rec.n)
        got = {k: getattr(rec.events, k) for k in want}
        assert got == want, rec.name
        assert rec.events.input_buffer_read_bits == x.shape[0] * rec.k  # one bit per row
        checked += 1
    assert checked == 3


def test_time_steps_multiply_vectors_and_neuron_updates(isaac_arch):
    counts = {}
    for t in (2, 4):
        r = imcsim.simulate(_model(time_steps=t), isaac_arch,
                            (_inputs(4), torch.zeros(4, dtype=torch.long)), _inputs(8, 2),
                            batch_size=4, progress=False)
        counts[t] = r
    by = {t: {ly.name: ly for ly in r.layers} for t, r in counts.items()}
    # conv1 (direct coding) runs once; the spike-driven layers once per time step (events
    # are totals over the 4 samples)
    assert by[4]["conv1"].events["macs"] == by[2]["conv1"].events["macs"]
    assert by[4]["conv2"].events["macs"] == 2 * by[2]["conv2"].events["macs"]
    assert by[4]["multistep_neuron"].events["neuron_updates"] == \
        2 * by[2]["multistep_neuron"].events["neuron_updates"] == 2 * 4 * 2 * 16 * 28 * 28
    assert by[2]["multistep_neuron"].energy_total_pj > 0


def test_spike_activity_moves_events_and_energy(isaac_arch):
    """Fewer spikes (a higher threshold): fewer driven rows and conversions, less energy,
    fewer executed steps; the neuron updates stay (every neuron updates every step)."""
    data = (_inputs(4), torch.zeros(4, dtype=torch.long))
    results = {}
    for th in (0.2, 0.5):
        results[th] = imcsim.simulate(_model(v_threshold=th), isaac_arch, data, _inputs(8, 2),
                                      batch_size=4, progress=False)
    lo, hi = ({ly.name: ly for ly in results[th].layers} for th in (0.2, 0.5))
    for name in ("conv2", "fc1"):
        assert hi[name].events["dac_pulses"] < lo[name].events["dac_pulses"]
        assert hi[name].events["adc_conversions"] < lo[name].events["adc_conversions"]
        assert hi[name].energy_total_pj < lo[name].energy_total_pj
    # steps with no spike on any crossbar of the layer are skipped in the schedule
    assert hi["conv2"].executed_input_steps < lo["conv2"].executed_input_steps <= 1.0
    assert hi["conv1"].events == lo["conv1"].events  # analog input: not spike-driven
    assert hi["multistep_neuron_1"].events["neuron_updates"] == \
        lo["multistep_neuron_1"].events["neuron_updates"]
    assert results[0.5].energy_per_inference_nj < results[0.2].energy_per_inference_nj


def test_non_spiking_model_unchanged(isaac_arch):
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 26 * 26, 3))
    mapped = map_model(model, isaac_arch, QuantRecipe(), _inputs(4))
    mapped(_inputs(2))
    assert not any(r.spike_inputs for r in mapped.layers)
    assert all(r.time_steps == 1 for r in mapped.layers)


def test_spike_layer_on_unsigned_multibit_arch_uses_one_step(make_arch):
    arch = make_arch(**{"inputs.signed": False, "inputs.bits": 8})
    model = _model()
    mapped = map_model(model, arch, QuantRecipe(), _inputs(8, seed=2))
    mapped(_inputs(2))
    recs = {r.name: r for r in mapped.layers}
    # conv2 converts once per active row group and vector; conv1 once per input bit step
    ev = recs["conv2"].events
    assert ev.activity.steps == 1
    assert recs["conv1"].events.activity.steps == 8
    mapped2 = copy.deepcopy(mapped)
    assert mapped2 is not mapped


def test_neuron_unit_energy_follows_width_and_node(make_arch):
    """The lif_neuron model: linear in the membrane width, scaled by the node; the arch's
    ``outputs.bits`` sets the width and so the price of a neuron update."""
    from sim.components.digital import LIFNeuron

    e16 = LIFNeuron(width_bits=16, technology_nm=32.0).energy_pj("update")
    assert LIFNeuron(width_bits=32, technology_nm=32.0).energy_pj("update") == \
        pytest.approx(2 * e16)
    assert LIFNeuron(width_bits=16, technology_nm=65.0).energy_pj("update") > e16
    narrow = make_arch(**{"outputs.bits": 8})
    wide = make_arch(**{"outputs.bits": 16})
    assert narrow.energy.pj("neuron_updates") == pytest.approx(
        wide.energy.pj("neuron_updates") / 2)


def test_analytical_mode_counts_spike_layers(isaac_arch):
    """``estimate`` counts spike-driven layers from the float model's spikes at one bit per
    row: the same MACs as the bit-true pass and conversions within a few percent (the float
    and the hardware membranes may cross the threshold differently)."""
    data = (_inputs(4), torch.zeros(4, dtype=torch.long))
    e = imcsim.estimate(_model(), isaac_arch, data, _inputs(8, 2), samples=4)
    s = imcsim.simulate(_model(), isaac_arch, data, _inputs(8, 2), batch_size=4,
                        progress=False)
    est, sim = ({ly.name: ly.events for ly in r.layers} for r in (e, s))
    for name in ("conv1", "conv2", "fc1"):
        assert est[name]["macs"] == sim[name]["macs"]
        assert est[name]["adc_conversions"] == pytest.approx(sim[name]["adc_conversions"],
                                                             rel=0.05)
    assert est["conv2"]["adc_conversions_skipped"] > 0
