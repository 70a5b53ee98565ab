"""Recurrent layers (``nn.GRU``, ``nn.LSTM``, ``nn.RNN``) on crossbars, step by step.

:func:`unroll` replaces each ``nn.RNNBase`` of a model by an :class:`UnrolledRecurrent`: the
same computation written as one ``nn.Linear`` per weight matrix (``ih_l{k}``: the input
matrix ``W_ih`` with ``b_ih``, all gates side by side; ``hh_l{k}``: the recurrent matrix
``W_hh`` with ``b_hh``) and the cell's gate arithmetic in torch. The bridge then maps those
``nn.Linear`` like any other (:class:`mappers.torch_bridge.HardwareLayer`: quantized inputs,
bit-true crossbars, packed sub-layers of a compressed model), so there is one mapping path.

The loop runs the crossbars as the hardware does: ``W_ih`` of a layer on all the steps of its
input sequence (they are known before the loop), then for ``t = 0 .. T-1`` the recurrent
product ``W_hh h_{t-1}`` with ``h_{t-1}`` quantized to the hardware's inputs, and the gates
(sigmoid / tanh, element-wise products, the state update) in digital units. ``h_0`` is the
given initial state (zeros by default) and is read through the crossbar too (step 0 costs a
crossbar read like every other step).

For the engine each recurrent layer is three graph nodes (:meth:`UnrolledRecurrent.
graph_nodes`): the ``ih`` product (``T`` vectors per sequence), the ``hh`` product (``T``
vectors, one at a time: its step ``t`` reads the output of step ``t - 1`` of the gates,
``GraphNode.state_from``) and the ``gates`` node (kind ``gates``: the cell's digital work,
costed per element by :func:`sim.engine.graph.digital_ops`). The schedule never overlaps two
steps of one sequence on a layer; other layers and other sequences pipeline.

Not supported (a :class:`~sim.errors.MappingError` naming the module and the option):
``bidirectional=True``, ``proj_size > 0`` (LSTM projections), ``PackedSequence`` inputs, and
``nn.GRUCell`` / ``nn.LSTMCell`` / ``nn.RNNCell`` (refused by the bridge's module check).
Dropout between layers is inactive at inference and ignored.
"""

from __future__ import annotations

import copy

import torch
import torch.fx
from torch import nn

from sim.engine.graph import GraphNode
from sim.errors import MappingError

#: Gate matrices stacked in ``W_ih`` / ``W_hh`` per cell mode.
GATES = {"GRU": 3, "LSTM": 4, "RNN_TANH": 1, "RNN_RELU": 1}


def unsupported(name: str, rnn: nn.RNNBase) -> list[str]:
    """What of ``rnn`` (module ``name``) the crossbar mapping does not support, in words."""
    kind = type(rnn).__name__
    bad = []
    if rnn.bidirectional:
        bad.append(f"layer '{name}' ({kind} with bidirectional=True: only one direction "
                   "is mapped; use two modules, one on the reversed sequence)")
    if getattr(rnn, "proj_size", 0):
        bad.append(f"layer '{name}' ({kind} with proj_size={rnn.proj_size}: LSTM "
                   "projections are not mapped)")
    if rnn.mode not in GATES:
        bad.append(f"layer '{name}' ({kind} with mode {rnn.mode!r})")
    return bad


def unroll(model: nn.Module) -> nn.Module:
    """``model`` with each ``nn.GRU`` / ``nn.LSTM`` / ``nn.RNN`` replaced by an
    :class:`UnrolledRecurrent` (a copy; ``model`` itself when it has none). Options the
    mapping does not support raise one :class:`MappingError` naming every such module."""
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.RNNBase)]
    if not found:
        return model
    bad = [b for n, m in found for b in unsupported(n, m)]
    if bad:
        raise MappingError("cannot map onto crossbars: " + "; ".join(bad) + ". Supported "
                           "recurrent layers: nn.GRU, nn.LSTM and nn.RNN, one direction, "
                           "any number of layers, batch_first or not.")
    if isinstance(model, nn.RNNBase):  # a bare layer: give it a parent to swap in
        return nn.Sequential(UnrolledRecurrent(model))
    model = copy.deepcopy(model)
    for name, m in [(n, m) for n, m in model.named_modules() if isinstance(m, nn.RNNBase)]:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, UnrolledRecurrent(m))
    return model


class UnrolledRecurrent(nn.Module):
    """An ``nn.RNNBase`` as per-layer ``nn.Linear`` products and a step loop (see the module
    docstring). Same inputs, outputs and float results as the module it replaces."""

    def __init__(self, rnn: nn.RNNBase):
        super().__init__()
        self.mode = rnn.mode
        self.cell = type(rnn).__name__
        self.hidden_size = rnn.hidden_size
        self.num_layers = rnn.num_layers
        self.batch_first = rnn.batch_first
        gates = GATES[self.mode]
        for k in range(self.num_layers):
            for part in ("ih", "hh"):
                w = getattr(rnn, f"weight_{part}_l{k}").detach()
                b = getattr(rnn, f"bias_{part}_l{k}", None) if rnn.bias else None
                lin = nn.Linear(w.shape[1], gates * self.hidden_size, bias=b is not None)
                with torch.no_grad():
                    lin.weight.copy_(w)
                    if b is not None:
                        lin.bias.copy_(b.detach())
                self.add_module(f"{part}_l{k}", lin)

    def extra_repr(self) -> str:  # noqa: D102
        return (f"{self.cell}, hidden_size={self.hidden_size}, num_layers={self.num_layers}, "
                f"batch_first={self.batch_first}")

    def _cell(self, gi: torch.Tensor, gh: torch.Tensor, h: torch.Tensor, c: torch.Tensor | None
              ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One step of the cell from the two products (biases included): ``(h_t, c_t)``."""
        if self.mode == "GRU":
            ir, iz, inn = gi.chunk(3, dim=-1)
            hr, hz, hn = gh.chunk(3, dim=-1)
            r = torch.sigmoid(ir + hr)
            z = torch.sigmoid(iz + hz)
            n = torch.tanh(inn + r * hn)
            return n + z * (h - n), None
        if self.mode == "LSTM":
            i, f, g, o = (gi + gh).chunk(4, dim=-1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            return torch.sigmoid(o) * torch.tanh(c), c
        pre = gi + gh
        return (torch.tanh(pre) if self.mode == "RNN_TANH" else torch.relu(pre)), None

    def forward(self, x, hx=None):  # noqa: D102 - nn.RNNBase's signature and results
        if isinstance(x, nn.utils.rnn.PackedSequence):
            raise MappingError(f"{self.cell}: PackedSequence inputs are not supported on the "
                               "crossbars; pad the sequences to one length instead")
        batched = x.dim() == 3
        if not batched:
            x = x.unsqueeze(1 if not self.batch_first else 0)
        seq = x if self.batch_first else x.transpose(0, 1)  # (N, T, F)
        n, steps = seq.shape[0], seq.shape[1]
        h0 = c0 = None
        if hx is not None:
            h0, c0 = hx if self.mode == "LSTM" else (hx, None)
            if not batched:
                h0 = h0.unsqueeze(1)
                c0 = c0.unsqueeze(1) if c0 is not None else None
        hs, cs = [], []
        for k in range(self.num_layers):
            ih, hh = getattr(self, f"ih_l{k}"), getattr(self, f"hh_l{k}")
            gi = ih(seq)  # every step's input product at once: the inputs are all known
            h = seq.new_zeros(n, self.hidden_size) if h0 is None else h0[k]
            c = None
            if self.mode == "LSTM":
                c = seq.new_zeros(n, self.hidden_size) if c0 is None else c0[k]
            base = getattr(hh, "noise_call", None)
            outs = []
            for t in range(steps):
                if base is not None:  # each step its own noise draw, none shared by batches
                    hh.noise_call = base * steps + t
                h, c = self._cell(gi[:, t], hh(h), h, c)
                outs.append(h)
            if base is not None:
                hh.noise_call = base + 1
            self.note_steps(k, steps)
            seq = torch.stack(outs, dim=1)
            hs.append(h)
            cs.append(c)
        out = seq if self.batch_first else seq.transpose(0, 1)
        h_n = torch.stack(hs)
        c_n = torch.stack(cs) if self.mode == "LSTM" else None
        if not batched:
            out = out.squeeze(0 if self.batch_first else 1)
            h_n = h_n.squeeze(1)
            c_n = c_n.squeeze(1) if c_n is not None else None
        return out, ((h_n, c_n) if self.mode == "LSTM" else h_n)

    def note_steps(self, k: int, steps: int) -> None:
        """The engine's view of layer ``k`` on a sequence of ``steps`` (the forward pass
        records it; the analytical mode, which runs no bit-true pass, from the float pass's
        step count): ``hh`` takes T vectors a sequence, one at a time, and so does ``ih`` of a
        layer fed by the layer below. A no-op on a module not mapped (no records)."""
        ih, hh = getattr(self, f"ih_l{k}"), getattr(self, f"hh_l{k}")
        rec = getattr(hh, "record", None)
        if rec is not None:
            rec.vectors_per_sample = steps
            rec.recurrent = True
        if k and getattr(ih, "record", None) is not None:
            ih.record.recurrent = True

    def graph_nodes(self, name: str, source: str, input_shape) -> list[GraphNode]:
        """The engine's nodes of this module called ``name`` on a tensor of ``input_shape``
        (one sample) produced by ``source``: per layer ``ih``, ``hh`` and ``gates``, in that
        order (see the module docstring). The last node is the module's output."""
        shape = tuple(input_shape)
        steps = int(shape[1] if self.batch_first and len(shape) == 3 else shape[0])
        h, g = self.hidden_size, GATES[self.mode]
        nodes: list[GraphNode] = []
        for k in range(self.num_layers):
            ih, hh, gates = (f"{name}.ih_l{k}", f"{name}.hh_l{k}", f"{name}.gates_l{k}")
            width = getattr(self, f"ih_l{k}").in_features
            nodes.append(GraphNode(name=ih, kind="matmul", inputs=(source,),
                                   out_elements=steps * g * h, in_elements=steps * width,
                                   vectors=steps, op="Linear"))
            nodes.append(GraphNode(name=hh, kind="matmul", inputs=(), state_from=gates,
                                   out_elements=steps * g * h, in_elements=steps * h,
                                   vectors=steps, op="Linear"))
            # Reads both products and the state (h, and c for an LSTM); writes h (and c).
            state = 2 if self.mode == "LSTM" else 1
            nodes.append(GraphNode(name=gates, kind="gates", inputs=(ih, hh),
                                   out_elements=steps * h,
                                   in_elements=steps * (2 * g * h + state * h),
                                   vectors=steps, op=self.mode))
            source = gates
        return nodes


class _Tracer(torch.fx.Tracer):
    """``torch.fx``'s tracer with :class:`UnrolledRecurrent` kept as one call (a leaf)."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:  # noqa: D102
        return isinstance(m, UnrolledRecurrent) or super().is_leaf_module(m, qualname)


def symbolic_trace(model: nn.Module) -> torch.fx.GraphModule:
    """``torch.fx.symbolic_trace`` keeping each :class:`UnrolledRecurrent` as one node."""
    tracer = _Tracer()
    graph = tracer.trace(model)
    name = model.__class__.__name__
    return torch.fx.GraphModule(tracer.root, graph, name)
