"""Spiking networks on the crossbars: which layers spikes drive, and how many time steps.

A spiking model (:mod:`workloads.spiking`) folds its ``T`` time steps into the batch, so its
``nn.Conv2d``/``nn.Linear`` layers map through :func:`mappers.torch_bridge.map_model` like any
other; this module adds what differs, read from the traced layer graph:

- **spike-driven layers**: a layer whose input comes from a neuron layer (or the rate
  encoder), through nothing but flatten/reshape and max pooling (a max of spikes is a
  spike), takes 1-bit unsigned inputs (:func:`sim.engine.placement.spike_arch`): one
  crossbar read per input vector and time step, no bit-serial input cycles; rows without a
  spike are not driven and row groups (fragments) without one skip their conversions and
  their step time, counted from the real spike trains by the existing zero-skip path. Its
  activation quantizer is the identity on {0, 1} (scale 1). Other layers (a direct-coded
  first layer fed the analog image) stay multi-bit, as in an ANN.
- **time steps**: the rows one sample gives a layer (``T`` after the time axis is folded in,
  1 before it), so per-sample vectors, events and the schedule count all ``T`` steps.

The neurons' membrane updates are ``neuron`` nodes of the graph, costed by the engine's
``lif_neuron`` component (``neuron_updates``) and timed as digital work on the layer's output
path, like an activation.
"""

from __future__ import annotations

import torch

from mappers.quantize import ActQuant
from sim.engine.graph import NETWORK_INPUT, LayerGraph
from sim.errors import InvariantError

#: Graph ops that emit spikes without being a neuron layer (no membrane update to cost).
SPIKE_SOURCES = frozenset({"rate_encode"})
#: Graph ops a spike passes through unchanged in kind (still 0/1).
_SPIKE_PRESERVING_POOLS = frozenset({"MaxPool2d", "MaxPool1d", "max_pool2d", "max_pool1d",
                                     "AdaptiveMaxPool2d", "adaptive_max_pool2d"})
#: Activation quantizer of a spike-driven layer: spikes are the integers 0 and 1.
SPIKE_QUANT = ActQuant(scale=1.0, lo=0, hi=1, zero_point=0, signed=False)


def is_spiking(graph: LayerGraph | None) -> bool:
    """Whether the traced graph has a neuron layer."""
    return graph is not None and any(nd.kind == "neuron" for nd in graph.nodes)


def spike_driven(graph: LayerGraph | None, name: str) -> bool:
    """Whether matmul ``name``'s input is spikes (see the module docstring)."""
    if not is_spiking(graph):
        return False
    node = graph.node(name)
    src = node.inputs[0] if node.inputs else NETWORK_INPUT
    while src != NETWORK_INPUT:
        nd = graph.node(src)
        if nd.kind == "neuron" or nd.op in SPIKE_SOURCES:
            return True
        passes = (nd.kind == "flatten" or (nd.kind == "other" and nd.op == "Identity")
                  or (nd.kind == "pool" and nd.op in _SPIKE_PRESERVING_POOLS))
        if not passes:
            return False
        src = nd.inputs[0] if nd.inputs else NETWORK_INPUT
    return False


def time_steps(graph: LayerGraph | None, name: str, n: int) -> int:
    """Rows of layer ``name``'s input per sample: ``T`` for a layer after a spiking model's
    time axis is folded into the batch, else 1 (the graph was traced on one sample)."""
    if not is_spiking(graph) or name not in graph:
        return 1
    node = graph.node(name)
    per_row = max(1, node.vectors) * max(1, n)
    return max(1, node.out_elements // per_row)


def check_spikes(name: str, sample: torch.Tensor) -> None:
    """A spike-driven layer's calibration inputs must be 0 or 1."""
    bad = ~((sample == 0) | (sample == 1))
    if bool(bad.any()):
        raise InvariantError(f"layer '{name}' follows a neuron layer but its input holds "
                             f"values other than 0 and 1 (e.g. {float(sample[bad][0])})")
