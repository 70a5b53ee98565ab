"""Run any ``torch.nn.Module`` with its Conv2d and Linear products on simulated crossbars.

:func:`map_model` copies the model, folds batch norm into the preceding convolution or linear
layer where a symbolic trace proves it safe, calibrates activation ranges on sample inputs,
quantizes each Conv2d/Linear to the workload's bits, programs it into a
:class:`~sim.macros.CrossbarLayer`, and swaps the module for a :class:`HardwareLayer` whose
forward pass quantizes its input, runs im2col (for convolutions) and the bit-true kernels, and
dequantizes. Everything else (activations, pooling, residual additions, unfolded batch norm)
stays in torch. Every executed operation is classified (:mod:`mappers.coverage`): on the
crossbars, in a costed digital unit, or in float; a matrix product we cannot map is a
:class:`MappingError` naming its module and source line.

It also records the model's dataflow graph for the engine (:func:`trace_graph`): a
``torch.fx`` trace of the folded model with shapes from one sample, turned into a
:class:`~sim.engine.graph.LayerGraph` of matrix products, adds, concatenations, pooling,
activations and flattens. A model ``torch.fx`` cannot trace falls back to execution order
(a chain), with a note saying so.

Recurrent layers (``nn.GRU``, ``nn.LSTM``, ``nn.RNN``) are first rewritten by
:func:`mappers.recurrent.unroll` into one ``nn.Linear`` per weight matrix and a step loop, so
their products map through this same path; see :mod:`mappers.recurrent`.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import operator
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mappers import recurrent, spiking
from mappers.coverage import Coverage, record_operations
from mappers.quantize import ActQuant, activation_quant, quantize_weights
from sim.config.schema import Arch
from sim.engine.graph import NETWORK_INPUT, GraphNode, LayerGraph
from sim.engine.placement import groups_per_pack, spike_arch
from sim.errors import MappingError
from sim.kernels import inputs as inputs_k
from sim.macros import CrossbarLayer, Events
from sim.macros.family import make_layer

log = logging.getLogger(__name__)

#: Modules that do matrix products the crossbar bridge cannot map yet.
UNMAPPABLE = (nn.Conv1d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
              nn.RNNBase, nn.RNNCellBase, nn.MultiheadAttention, nn.Bilinear)


@dataclass(frozen=True, kw_only=True)
class QuantRecipe:
    """Precision of the workload: integer bits of weights and of layer inputs.

    ``layer_weight_bits`` overrides ``weight_bits`` per layer (``(name, bits)`` pairs).
    ``packed``: map each Conv2d/Linear (without groups) as packed sub-layers stored at its own
    weight bits (:mod:`mappers.compress.mapping`): zero weights occupy no cell, row or
    conversion. Otherwise every layer is stored at the arch's ``weights.bits``, zeros included.
    """

    weight_bits: int = 8
    activation_bits: int = 8
    layer_weight_bits: tuple[tuple[str, int], ...] = ()
    packed: bool = False
    #: With ``packed``: a layer whose weights are unified per row group is stored as signs
    #: with a per-(row group, column) magnitude (:func:`mappers.compress.mapping.
    #: pack_unified`); unified blocks not aligned with the row groups are refused.
    unified: bool = False

    def bits_of(self, layer: str) -> int:
        """The weight bits of ``layer``."""
        return dict(self.layer_weight_bits).get(layer, self.weight_bits)


@dataclass
class LayerRecord:
    """One mapped matrix product: its module name, shape and accumulated events."""

    name: str
    kind: str
    k: int
    n: int
    weight_bits: int
    activation: ActQuant
    crossbars: int
    events: Events = field(default_factory=Events)
    #: Filled on the first forward pass: vectors per sample, output width, kernel height,
    #: and the position of the layer in execution order.
    vectors_per_sample: int = 0
    out_width: int = 1
    kernel_height: int = 1
    call_order: int = -1
    #: Convolution groups (``k`` is then the rows of one group).
    groups: int = 1
    #: Packed sub-layers ``(k_i, n_i)`` (empty: not packed) and the bits their weights are
    #: stored at (``None``: the arch's), see :mod:`mappers.compress.mapping`.
    parts: tuple[tuple[int, int], ...] = ()
    storage_bits: int | None = None
    #: Fewest cell rows any column-tile cut of the layer could map (packed layers only).
    rows_bound: int = 0
    #: Unified blocks stored as signs with a per-(row group, column) scale (packed only).
    scaled: bool = False
    #: Its ``vectors_per_sample`` are time steps that come one at a time: the recurrent
    #: product of a recurrent layer (``W_hh``), or the input product of one fed by another
    #: recurrent layer (set by :class:`mappers.recurrent.UnrolledRecurrent`); never copied.
    recurrent: bool = False
    #: Spiking networks (:mod:`mappers.spiking`): rows driven by 1-bit spikes, and the rows
    #: of the layer's input per sample (``T`` time steps folded into the batch, else 1).
    spike_inputs: bool = False
    time_steps: int = 1


class HardwareLayer(nn.Module):
    """A Conv2d or Linear whose product runs on crossbars.

    A grouped convolution packs ``per_pack`` groups block-diagonally into one crossbar set
    where that saves crossbars (:func:`sim.engine.placement.groups_per_pack`), else one set per
    group. With ``recipe.packed`` an ungrouped layer is a :class:`~mappers.compress.mapping.
    Packing` of sub-layers, each on its own crossbars: inputs gathered per sub-layer, outputs
    scatter-added (:attr:`packing`).
    """

    #: Global counter giving each layer its position in execution order on first use.
    _calls_seen = 0

    def __init__(self, name: str, module: nn.Conv2d | nn.Linear, arch: Arch,
                 recipe: QuantRecipe, act: ActQuant, seed: np.random.SeedSequence, *,
                 quantized: dict | None = None):
        super().__init__()
        self.layer_name = name
        self.is_conv = isinstance(module, nn.Conv2d)
        self.act = act
        self.arch = arch
        weight = module.weight.detach()
        self.register_buffer("bias", None if module.bias is None else module.bias.detach().clone())
        if self.is_conv:
            self.out_channels = module.out_channels
            self.kernel_size, self.stride = module.kernel_size, module.stride
            self.padding, self.dilation = module.padding, module.dilation
            self.groups = module.groups
        else:
            self.out_channels = module.out_features
            self.groups = 1
        bits = recipe.bits_of(name)
        # ``quantized`` keeps the result per (layer, bits, version of the weight tensor: an
        # in-place edit bumps it), for mappings of the same prepared model; ``q`` is only read.
        key = (name, bits, module.weight._version)
        got = quantized.get(key) if quantized is not None else None
        if got is None:
            got = quantize_weights(weight, bits)
            if quantized is not None:
                quantized[key] = got
        q, scale = got
        self.register_buffer("w_scale", scale.clone())
        per_group = self.out_channels // self.groups
        k_group = q[0].numel()
        #: The packed sub-layers (``None``: the layer maps densely).
        self.packing = None
        if recipe.packed and self.groups == 1:
            self._init_packed(name, type(module).__name__, q, bits, act, seed,
                              unified=recipe.unified)
            return
        # Groups share crossbars block-diagonally where that saves crossbars: the same rule
        # placement uses (sim.engine.placement.groups_per_pack), so both count alike.
        self.per_pack = groups_per_pack(arch, self.groups, k_group, per_group)
        self.crossbar_layers: list[CrossbarLayer] = []
        self.zero_point_terms: list[torch.Tensor] = []
        packs = [range(g0, min(g0 + self.per_pack, self.groups))
                 for g0 in range(0, self.groups, self.per_pack)]
        seeds = seed.spawn(len(packs))
        for pack, ss in zip(packs, seeds, strict=True):
            wq = torch.zeros(len(pack) * k_group, len(pack) * per_group, dtype=q.dtype)
            for j, gi in enumerate(pack):  # (K, N) block of group gi on the diagonal
                wq[j * k_group:(j + 1) * k_group, j * per_group:(j + 1) * per_group] = \
                    q[gi * per_group:(gi + 1) * per_group].reshape(per_group, -1).T
            label = name if len(packs) == 1 else (
                f"{name}[group {pack[0]}]" if len(pack) == 1
                else f"{name}[groups {pack[0]}-{pack[-1]}]")
            # The arch's macro family builds the layer (sim.macros.family).
            self.crossbar_layers.append(make_layer(arch, wq.numpy(), seed=ss, name=label))
            self.zero_point_terms.append(wq.sum(dim=0).double() * act.zero_point)
        self.record = LayerRecord(
            name=name, kind=type(module).__name__, k=k_group, n=self.out_channels,
            weight_bits=bits, activation=act,
            crossbars=sum(c.crossbars for c in self.crossbar_layers), groups=self.groups)
        self._init_calls()

    def _init_calls(self) -> None:
        self._columns: list[np.ndarray] | None = None  # see _conv_columns
        self.noise_seed = 0
        self.noise_call = 0
        #: Set to a list to capture the integer inputs (first group) of the next forward pass.
        self.capture: list | None = None

    def _init_packed(self, name: str, kind: str, q: torch.Tensor, bits: int, act: ActQuant,
                     seed: np.random.SeedSequence, *, unified: bool = False) -> None:
        """Program ``q`` as packed sub-layers stored at ``bits`` (see the class docstring);
        ``unified``: unified blocks stored as signs where cheaper (``pack_unified``)."""
        from mappers.compress.mapping import pack, pack_unified
        from sim.engine.placement import main_part, packed_arrays, storage_arch

        store = storage_arch(self.arch, bits)
        wq = q.reshape(self.out_channels, -1).T.contiguous()  # (K, N), as the dense path
        self.packing = (pack_unified if unified else pack)(wq.numpy(), store, name=name)
        if self.packing.weight_bits is not None:  # signs of unified blocks
            store = storage_arch(self.arch, self.packing.weight_bits)
        parts = self.packing.parts
        self.per_pack = 1
        self.crossbar_layers = [
            make_layer(store, p.weights, seed=ss, scale=p.scale,
                       name=name if len(parts) == 1 else f"{name}[part {i}]")
            for i, (p, ss) in enumerate(zip(parts, seed.spawn(len(parts)), strict=True))]
        # The zero-point term of each output: its effective weights (signs x scale) summed.
        self.zero_point_terms = [
            torch.from_numpy(c.effective_weights().sum(axis=0)).double() * act.zero_point
            for c in self.crossbar_layers]
        self._rows = [torch.from_numpy(p.rows) for p in parts]
        self._cols = [torch.from_numpy(p.cols) for p in parts]
        self._main = main_part(store, self.packing.shapes)
        used = np.unique(np.concatenate([p.rows for p in parts]))
        self._rows_used = int((used < wq.shape[0]).sum())  # index K: padding, not an input
        self._cols_used = int(np.unique(np.concatenate([p.cols for p in parts])).size)
        self.record = LayerRecord(
            name=name, kind=kind, k=wq.shape[0],
            n=self.out_channels, weight_bits=bits, activation=act,
            # Small sub-layers share arrays block-diagonally: the placement's own count.
            crossbars=packed_arrays(store, self.packing.shapes)[0],
            parts=self.packing.shapes, storage_bits=store.weights.bits,
            rows_bound=self.packing.rows_bound,
            scaled=self.packing.weight_bits is not None)
        self._init_calls()

    def combine_events(self, events: list[Events], hist_max: np.ndarray | None = None
                       ) -> Events:
        """The layer's events from those of its crossbar layers (in order).

        Counts add up, except three of a packed layer, which are the layer's: each input row
        it maps is read from the buffer once (and sent to the sub-layers holding it), each
        output it maps is written once (the sub-layers' partial outputs are added first), and
        its MACs are the layer's ``K x N`` per vector (so its GOPS count the product the
        layer computes, as a dense mapping's do; ``cell_macs`` stay the cells used).
        The per-step activity of a grouped layer's packs adds up (they share
        one geometry). A packed layer's sub-layers differ in shape; the schedule times the
        layer by its :func:`~sim.engine.placement.main_part`, whose activity is kept, with
        ``hist_max`` (when given: the busiest crossbar of *all* sub-layers per vector and step,
        :meth:`packed_hist_max`) in place of its own. Without zero-skipping every step is
        dense and this is exact; with it, ``per_crossbar`` skip timing sees the main
        sub-layer's crossbars only.
        """
        total = Events()
        for i, ev in enumerate(events):
            if self.packing is not None and i != self._main:
                ev = dataclasses.replace(ev, activity=None)
            total.add(ev)
        if hist_max is not None and total.activity is not None:
            total.activity.hist_max = hist_max
        if self.packing is not None and events:
            from sim.macros.family import family_of

            vectors = self._vectors(events)
            # (a family that never counts buffer traffic, CAP-RAM, keeps its zeros)
            if "input_buffer_read_bits" not in family_of(self.arch).never_counts:
                total.input_buffer_read_bits = vectors * self._rows_used * self.arch.inputs.bits
            if "output_buffer_write_bits" not in family_of(self.arch).never_counts:
                total.output_buffer_write_bits = (vectors * self._cols_used
                                                  * self.arch.outputs.bits)
            total.macs = vectors * self.record.k * self.record.n
        return total

    def _vectors(self, events: list[Events]) -> int:
        """Input vectors of a packed layer's call, from its first sub-layer's MACs."""
        k, n = self.packing.parts[0].shape
        return events[0].macs // (k * n)

    def packed_hist_max(self, mats: list[torch.Tensor]) -> np.ndarray:
        """(vector, step) pairs by the most active row groups of any crossbar of any
        sub-layer (``StepActivity.hist_max`` over the whole packed layer), from the inputs."""
        from sim.kernels.activity import tile_histograms
        from sim.kernels.inputs import input_activity

        xb, inp = self.arch.crossbar, self.arch.inputs
        gpc = xb.rows // xb.group_rows
        counts = []
        for layer, mat in zip(self.crossbar_layers, mats, strict=True):
            active, _ = input_activity(mat.numpy(), inp.bits, xb.dac.bits, inp.signed,
                                       layer.group_rows, layer.groups)
            counts += [active[t:t + gpc].sum(axis=0) for t in range(0, layer.groups, gpc)]
        return tile_histograms(np.stack(counts).astype(np.uint16), gpc)[0]

    def out_shape(self, x_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The leading shape of the layer's output for an input of ``x_shape``: ``(n, hout,
        wout)`` for a convolution, the input's leading dimensions otherwise. Its product is
        the number of input vectors."""
        if not self.is_conv:
            return tuple(x_shape[:-1])
        return (x_shape[0], *inputs_k.conv_out_size(x_shape[2:], self.kernel_size,
                                                    self.padding, self.stride, self.dilation))

    def input_key(self) -> tuple:
        """What :meth:`hw_inputs` depends on besides its input and the module's geometry: the
        activation quantizer, the groups per crossbar pack and a packed layer's sub-layer rows.
        Two mapped layers of one module with equal keys give equal input matrices (the
        analytical mode's input statistics are cached on it)."""
        rows = (None if self.packing is None else
                (self.packing.padded, tuple(r.numpy().tobytes() for r in self._rows)))
        return (self.act, self.per_pack, rows)

    def note_call(self, x_shape: tuple[int, ...]) -> None:
        """Record the layer's place in execution order and its vectors per sample on its first
        call with an input of ``x_shape`` (the forward pass does; the analytical mode calls it
        from the float model's pass instead of running a bit-true sample)."""
        rec = self.record
        if rec.call_order >= 0:
            return
        rec.call_order = HardwareLayer._calls_seen
        HardwareLayer._calls_seen += 1
        shape = self.out_shape(x_shape)
        # A spiking network folds its T time steps into the batch: a sample is T rows.
        n = (x_shape[0] if len(x_shape) > 1 else 1) // rec.time_steps
        rec.vectors_per_sample = math.prod(shape) // max(n, 1)
        if self.is_conv:
            rec.out_width, rec.kernel_height = shape[2], self.kernel_size[0]

    def hw_inputs(self, x: torch.Tensor, narrow: bool = False
                  ) -> tuple[list[torch.Tensor], tuple]:
        """Integer input matrices (one per crossbar pack of groups, zero point included) and
        the output shape. int64, or with ``narrow`` int16 where every value (zero point
        included) fits: the same values, with a quarter of the im2col and gather traffic
        (the crossbar kernels take int16 as it is)."""
        q = self.act.to_int(x)
        if narrow and max(abs(self.act.lo), abs(self.act.hi)) + abs(self.act.zero_point) \
                < 2**15:
            q = q.to(torch.int16)
        shape = self.out_shape(tuple(x.shape))
        if self.is_conv:  # each matrix's im2col columns gathered in one pass, zero point in
            qn = q.numpy()
            return [torch.from_numpy(inputs_k.conv_vectors(
                qn, self.kernel_size, self.padding, self.stride, self.dilation, cols,
                self.act.zero_point)) for cols in self._conv_columns(q.shape[1])], shape
        mats = [q.reshape(-1, x.shape[-1])]
        if self.act.zero_point:
            mats = [m + self.act.zero_point for m in mats]
        if self.packing is not None:  # each sub-layer's rows of the layer's input
            mat = mats[0]
            if self.packing.padded:  # padding rows (index K) of polarized fragments get 0
                mat = torch.cat([mat, mat.new_zeros(mat.shape[0], 1)], dim=1)
            mats = [mat.index_select(1, rows) for rows in self._rows]
        return mats, shape

    def _conv_columns(self, channels: int) -> list[np.ndarray]:
        """Which im2col columns (``F.unfold``'s order) each input matrix of the convolution
        takes: a pack's groups' columns side by side (groups' channels are contiguous), or
        a packed sub-layer's rows (``-1``: a polarized fragment's padding row, input 0)."""
        if self._columns is None:
            k_all = channels * self.kernel_size[0] * self.kernel_size[1]
            if self.packing is not None:  # row K: a padding row (Packing.padded)
                self._columns = [np.where(r.numpy() == k_all, -1, r.numpy()) for r in self._rows]
            else:
                k = k_all // self.groups * self.per_pack
                self._columns = [np.arange(a, min(a + k, k_all)) for a in range(0, k_all, k)]
        return self._columns

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        mats, shape = self.hw_inputs(x, narrow=True)
        self.note_call(tuple(x.shape))
        if self.capture is not None and not self.capture:
            self.capture.append(mats[0].numpy().astype(np.int64))
        outs, evs = [], []
        for xb, mat, zp in zip(self.crossbar_layers, mats, self.zero_point_terms, strict=True):
            y, ev = xb.matmul(mat.numpy(), seed=self.noise_seed * 1_000_003 + self.noise_call)
            evs.append(ev)
            y = torch.from_numpy(y)
            if self.act.zero_point:
                y = y - zp
            outs.append(y)
        exact_max = (self.packed_hist_max(mats) if self.packing is not None
                     and self.arch.inputs.zero_skip and len(mats) > 1 else None)
        self.record.events.add(self.combine_events(evs, exact_max))
        self.noise_call += 1
        if self.packing is not None:  # scatter-add each sub-layer's outputs into its columns
            y = torch.zeros(mats[0].shape[0], self.out_channels, dtype=torch.float64)
            for cols, out in zip(self._cols, outs, strict=True):
                y.index_add_(1, cols, out)
        else:
            y = torch.cat(outs, dim=1)
        y = y * (self.w_scale * self.act.scale)
        y = y.to(x.dtype)
        if self.bias is not None:
            y = y + self.bias
        if self.is_conv:
            n, hout, wout = shape
            return y.reshape(n, hout, wout, -1).permute(0, 3, 1, 2).contiguous()
        return y.reshape(*shape, -1)


@dataclass
class MappedModel:
    """A model whose Conv2d/Linear run on crossbars, with the per-layer records."""

    model: nn.Module
    layers: list[LayerRecord]
    folded_batchnorms: list[str]
    #: The traced dataflow graph, or ``None`` when the model could not be traced.
    graph: LayerGraph | None = None
    #: Why there is no traced graph (empty when there is one).
    graph_note: str = ""
    #: Every executed operation classified (crossbar / digital / float), in execution order.
    coverage: Coverage | None = None

    def layer_shapes(self):
        """The mapped layers as engine :class:`~sim.engine.placement.LayerShape` objects, in
        execution order. ``source`` is the nearest matrix product upstream in the traced graph
        (following first inputs through adds, pooling and activations); without a graph, the
        layer executed before. Needs one forward pass first."""
        from sim.engine.placement import LayerShape

        recs = sorted(self.layers, key=lambda r: r.call_order)
        if any(r.call_order < 0 for r in recs):
            raise RuntimeError("run a forward pass before asking for layer shapes")
        shapes, prev = [], None
        for r in recs:
            src = self.graph.nearest_matmul(r.name) if self.graph is not None else prev
            shapes.append(LayerShape(name=r.name, k=r.k, n=r.n,
                                     vectors=max(1, r.vectors_per_sample),
                                     out_width=r.out_width, kernel_height=r.kernel_height,
                                     source=src, groups=r.groups, parts=r.parts,
                                     weight_bits=r.storage_bits, recurrent=r.recurrent,
                                     spike_inputs=r.spike_inputs))
            prev = r.name
        return shapes

    def layer_graph(self) -> LayerGraph:
        """The graph the engine schedules: the traced one, or a chain in execution order
        (with a note) when the model could not be traced."""
        if self.graph is not None:
            return self.graph
        return LayerGraph.chain(self.layer_shapes(), note=self.graph_note)

    def reset_events(self) -> None:
        """Zero the accumulated event counts of every layer."""
        for rec in self.layers:
            rec.events = Events()  # each HardwareLayer holds the same record object

    def set_noise(self, seed: int, call: int = 0) -> None:
        """Select the per-access noise of the next forward pass: stream ``seed``, index ``call``.

        Later passes continue with ``call + 1``, ... A run that sets ``call`` to the batch index
        draws the same noise for a batch whether or not it was resumed part-way.
        """
        for m in self.model.modules():
            if isinstance(m, HardwareLayer):
                m.noise_seed = int(seed)
                m.noise_call = int(call)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.model(x)


def fold_batchnorm(model: nn.Module) -> tuple[nn.Module, list[str]]:
    """A copy of ``model`` with each BatchNorm that directly follows a Conv2d/Linear folded in.

    Folding is done only where ``torch.fx`` traces the model and shows the normalization's sole
    input is the layer's output, used nowhere else; other batch norms stay (in torch, exact).
    Returns the copy and the names of the folded batch-norm modules.
    """
    model = copy.deepcopy(model).eval()
    try:
        graph = recurrent.symbolic_trace(model).graph
    except Exception as exc:  # noqa: BLE001 - any trace failure just disables folding
        log.warning("batch norm not folded: model cannot be traced by torch.fx (%s)", exc)
        return model, []
    modules = dict(model.named_modules())
    uses: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            uses[node.target] = uses.get(node.target, 0) + 1
    folded = []
    for node in graph.nodes:
        if node.op != "call_module":
            continue
        bn = modules[node.target]
        if not isinstance(bn, nn.BatchNorm2d | nn.BatchNorm1d) or uses[node.target] != 1:
            continue
        prev = node.args[0] if node.args else None
        if not isinstance(prev, torch.fx.Node) or prev.op != "call_module":
            continue
        layer = modules[prev.target]
        ok = (isinstance(layer, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)) or \
             (isinstance(layer, nn.Linear) and isinstance(bn, nn.BatchNorm1d))
        if not ok or len(prev.users) != 1 or uses[prev.target] != 1 or not bn.track_running_stats:
            continue
        _fold(layer, bn)
        _set_module(model, node.target, nn.Identity())
        folded.append(node.target)
    return model, folded


def _fold(layer: nn.Conv2d | nn.Linear, bn: nn.BatchNorm1d | nn.BatchNorm2d) -> None:
    with torch.no_grad():
        inv = torch.rsqrt(bn.running_var + bn.eps)
        gamma = bn.weight if bn.affine else torch.ones_like(inv)
        beta = bn.bias if bn.affine else torch.zeros_like(inv)
        factor = gamma * inv
        layer.weight.mul_(factor.reshape(-1, *([1] * (layer.weight.dim() - 1))))
        bias = layer.bias if layer.bias is not None else torch.zeros_like(bn.running_mean)
        new_bias = (bias - bn.running_mean) * factor + beta
        layer.bias = nn.Parameter(new_bias)


def _set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def check_mappable(model: nn.Module) -> None:
    """Raise :class:`MappingError` naming every module whose product cannot be mapped.

    This is the check by module type; every executed operation is checked by
    :func:`mappers.coverage.record_operations` (see :func:`map_model`).
    """
    bad = [f"layer '{name}' ({type(m).__name__})" for name, m in model.named_modules()
           if isinstance(m, UNMAPPABLE)]
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d) and m.padding_mode != "zeros":
            bad.append(f"layer '{name}' (Conv2d with padding_mode={m.padding_mode!r})")
    if bad:
        raise MappingError(
            "cannot map onto crossbars: " + "; ".join(bad)
            + ". Supported matrix products: nn.Conv2d and nn.Linear modules, and nn.GRU, "
              "nn.LSTM and nn.RNN layers.")


#: Samples of the first calibration batch the operation recorder runs.
COVERAGE_SAMPLES = 4


@dataclass(frozen=True, eq=False)
class PreparedModel:
    """The part of :func:`map_model` that does not depend on the architecture: the folded
    model (never modified afterwards), the classified operations, the calibrated activation
    ranges and the traced graph. A sweep prepares a workload once per process and maps each
    design point with :func:`map_prepared`."""

    model: nn.Module
    folded: list[str]
    coverage: Coverage
    targets: tuple[str, ...]
    ranges: dict[str, tuple[float, float]]
    samples: dict[str, torch.Tensor]
    graph: LayerGraph | None
    graph_note: str
    #: Recurrent modules (unrolled): their matrices take the module's bits.
    cells: frozenset[str] = frozenset()
    #: Quantized weights ``(q, scale)`` per ``(layer, bits, weight version)``: every design
    #: point of a sweep maps the same folded weights (:class:`HardwareLayer` ``quantized``).
    quantized: dict = field(default_factory=dict, repr=False)


def prepare_model(model: nn.Module, recipe: QuantRecipe,
                  calibration: Iterable[torch.Tensor] | torch.Tensor, *,
                  allow_float_products: bool = False) -> PreparedModel:
    """Everything :func:`map_model` does before it looks at the arch (see there)."""
    if isinstance(model, nn.Conv2d | nn.Linear):  # a bare layer: give it a parent to swap in
        model = nn.Sequential(model)
    model = recurrent.unroll(model)  # GRU/LSTM/RNN: per-matrix nn.Linear and a step loop
    check_mappable(model)
    model, folded = fold_batchnorm(model)
    batches = [calibration] if isinstance(calibration, torch.Tensor) else list(calibration)
    coverage = record_operations(model, batches[0][:COVERAGE_SAMPLES],
                                 allow_float_products=allow_float_products)
    targets = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    if not targets:
        raise MappingError("the model has no nn.Conv2d or nn.Linear layer to map")
    ranges, samples = _calibrate_ranges(model, targets, batches)
    graph, graph_note = trace_graph(model, batches[0][:1], [n for n, _ in targets])
    if graph is None:  # torch.fx could not: the graph the recorder saw executing
        recorded, why = coverage.layer_graph([n for n, _ in targets], graph_note.split(";")[0])
        if recorded is not None:
            graph, graph_note = recorded, ""
        else:
            graph_note += f"; the recorded operations gave no graph either ({why})"
    return PreparedModel(model=model, folded=folded, coverage=coverage,
                         targets=tuple(n for n, _ in targets), ranges=ranges, samples=samples,
                         graph=graph, graph_note=graph_note,
                         cells=frozenset(n for n, m in model.named_modules()
                                         if isinstance(m, recurrent.UnrolledRecurrent)))


def map_model(model: nn.Module, arch: Arch, recipe: QuantRecipe,
              calibration: Iterable[torch.Tensor] | torch.Tensor, *, seed: int = 0,
              allow_float_products: bool = False) -> MappedModel:
    """Map ``model`` onto ``arch`` (see the module docstring).

    ``calibration`` is one input batch, or batches, used to fix activation ranges (and the ADC
    ranges when ``crossbar.adc.range: calibrated``). ``seed`` fixes every static draw (cell
    variation, stuck-at faults, ADC curves); each layer gets its own child seed.

    Every operation the folded model executes on the first calibration samples is classified
    (:func:`mappers.coverage.record_operations`, kept as :attr:`MappedModel.coverage`): a
    matrix product outside an ``nn.Conv2d``/``nn.Linear``, or an operator imcsim does not
    know, is a :class:`MappingError` naming its module and source line, unless
    ``allow_float_products`` (then it runs in float and the coverage lists it).

    The same as :func:`prepare_model` followed by :func:`map_prepared`.
    """
    _check_bits(arch, recipe)
    prepared = prepare_model(model, recipe, calibration,
                             allow_float_products=allow_float_products)
    return map_prepared(prepared, arch, recipe, seed=seed)


def map_prepared(prepared: PreparedModel, arch: Arch, recipe: QuantRecipe, *,
                 seed: int = 0) -> MappedModel:
    """Program a :class:`PreparedModel` onto ``arch``: each Conv2d/Linear of a copy of the
    folded model (sharing its parameters) becomes a :class:`HardwareLayer`."""
    # A recurrent layer's matrices take its bits (bits.weights_per_layer names the module).
    _check_bits(arch, recipe, list(prepared.targets) + sorted(prepared.cells))
    src = prepared.model
    # A copy of the module tree only: parameters and buffers are shared, never written. The
    # layers to map are not copied either: each is read, never written, and replaced in the
    # copy by its HardwareLayer below.
    targets = dict(src.named_modules())
    memo = {id(t): t for t in (*src.parameters(), *src.buffers(),
                               *(targets[name] for name in prepared.targets))}
    model = copy.deepcopy(src, memo)
    # The arch's variation.seed and the run seed together pick the chip: same pair, same bits.
    seeds = np.random.SeedSequence([arch.variation.seed, seed]).spawn(len(prepared.targets))
    records = []
    for name, ss in zip(prepared.targets, seeds, strict=True):
        lo, hi = prepared.ranges[name]
        act = activation_quant(lo, hi, recipe.activation_bits, arch.inputs.signed)
        parent = name.rpartition(".")[0]
        own_bits = parent not in prepared.cells or name in dict(recipe.layer_weight_bits)
        layer_recipe = recipe if own_bits \
            else dataclasses.replace(recipe, weight_bits=recipe.bits_of(parent))
        layer_arch = arch
        spikes = spiking.spike_driven(prepared.graph, name)
        if spikes:  # 1-bit rows: one read per step, zero-skip (mappers.spiking)
            spiking.check_spikes(name, prepared.samples[name])
            act, layer_arch = spiking.SPIKE_QUANT, spike_arch(arch)
        _check_input_range(layer_arch, act, name)
        hw = HardwareLayer(name, targets[name], layer_arch, layer_recipe, act, ss,
                           quantized=prepared.quantized)
        hw.record.spike_inputs = spikes
        hw.record.time_steps = spiking.time_steps(prepared.graph, name, hw.out_channels)
        if arch.crossbar.adc.range == "calibrated":
            mats, _ = hw.hw_inputs(prepared.samples[name])
            for xb, mat in zip(hw.crossbar_layers, mats, strict=True):
                xb.calibrate(mat.numpy())
        _set_module(model, name, hw)
        records.append(hw.record)
    return MappedModel(model=model, layers=records, folded_batchnorms=list(prepared.folded),
                       graph=prepared.graph, graph_note=prepared.graph_note,
                       coverage=prepared.coverage)


def _check_bits(arch: Arch, recipe: QuantRecipe, names: list[str] | None = None) -> None:
    if names is not None:
        unknown = sorted(set(dict(recipe.layer_weight_bits)) - set(names))
        if unknown:
            raise MappingError(f"bits.weights_per_layer names {', '.join(unknown)}, which "
                               "the model has no nn.Conv2d/nn.Linear of (it has: "
                               f"{', '.join(names)})")
        for name, bits in recipe.layer_weight_bits:
            if bits > arch.weights.bits:
                raise MappingError(f"bits.weights_per_layer.{name}: {bits}-bit weights do not "
                                   f"fit the {arch.weights.bits}-bit weights of arch "
                                   f"'{arch.name}' (weights.bits)")
    if recipe.weight_bits > arch.weights.bits:
        raise MappingError(f"workload weights of {recipe.weight_bits} bits do not fit the "
                           f"{arch.weights.bits}-bit weights of arch '{arch.name}' "
                           "(weights.bits)")
    if recipe.activation_bits > arch.inputs.bits:
        raise MappingError(f"workload activations of {recipe.activation_bits} bits do not fit "
                           f"the {arch.inputs.bits}-bit inputs of arch '{arch.name}' "
                           "(inputs.bits)")


def _check_input_range(arch: Arch, act: ActQuant, name: str) -> None:
    b = arch.inputs.bits
    lo_hw, hi_hw = (-(2 ** (b - 1)), 2 ** (b - 1) - 1) if arch.inputs.signed else (0, 2**b - 1)
    lo, hi = act.lo + act.zero_point, act.hi + act.zero_point
    if lo < lo_hw or hi > hi_hw:
        raise MappingError(
            f"layer '{name}': quantized inputs span [{lo}, {hi}] but the arch's "
            f"{'signed' if arch.inputs.signed else 'unsigned'} {b}-bit inputs hold "
            f"[{lo_hw}, {hi_hw}]; lower the workload's activation bits or raise inputs.bits")


def _calibrate_ranges(model, targets, batches):
    """Min/max of each target layer's input over the calibration batches, and a sample."""
    ranges: dict[str, list[float]] = {}
    samples: dict[str, torch.Tensor] = {}
    hooks = []

    def hook(name):
        def fn(_module, args):
            x = args[0].detach()
            lo, hi = float(x.min()), float(x.max())
            cur = ranges.setdefault(name, [lo, hi])
            cur[0], cur[1] = min(cur[0], lo), max(cur[1], hi)
            if name not in samples:
                samples[name] = x[:32]
        return fn

    for name, module in targets:
        hooks.append(module.register_forward_pre_hook(hook(name)))
    try:
        with torch.no_grad():
            for batch in batches:
                model(batch)
    finally:
        for h in hooks:
            h.remove()
    missing = [n for n, _ in targets if n not in ranges]
    if missing:
        raise MappingError(f"layers never called in forward(): {', '.join(missing)}")
    return {k: (v[0], v[1]) for k, v in ranges.items()}, samples


# ------------------------------------------------------------------------------ layer graph
_ACTIVATION_MODULES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.GELU, nn.SiLU,
                       nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid,
                       nn.Softmax, nn.LogSoftmax, nn.Mish)
_POOL_MODULES = (nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d,
                 nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d)
_ACTIVATION_FUNCTIONS = {F.relu, torch.relu, F.relu6, F.leaky_relu, F.elu, F.gelu, F.silu,
                         torch.sigmoid, F.sigmoid, torch.tanh, F.tanh, F.hardtanh, F.softmax,
                         F.log_softmax, torch.softmax}
_POOL_FUNCTIONS = {F.max_pool1d, F.max_pool2d, F.avg_pool1d, F.avg_pool2d,
                   F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_max_pool1d,
                   F.adaptive_max_pool2d}
_ADD_FUNCTIONS = {operator.add, operator.iadd, torch.add}
_CAT_FUNCTIONS = {torch.cat, torch.concat}
_FLATTEN_FUNCTIONS = {torch.flatten, torch.reshape}
_ACTIVATION_METHODS = {"relu", "relu_", "sigmoid", "tanh", "softmax"}
_FLATTEN_METHODS = {"view", "reshape", "flatten", "contiguous", "squeeze", "unsqueeze"}
_ADD_METHODS = {"add", "add_"}


def _numel(node) -> int | None:
    """Elements per sample of an fx node's tensor output (the trace ran on one sample)."""
    meta = node.meta.get("tensor_meta")
    if meta is None or not hasattr(meta, "shape"):
        return None
    return int(np.prod(meta.shape)) if len(meta.shape) else 1


def _spatial(node) -> tuple[int, int]:
    """(positions, row width) of a node's output: H x W and W for a feature map, else 1."""
    shape = tuple(node.meta["tensor_meta"].shape)
    if len(shape) == 4:
        return shape[2] * shape[3], shape[3]
    if len(shape) == 3:
        return shape[2], shape[2]
    return 1, 1


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[-1]))


def _classify(node, modules) -> tuple[str, str]:
    """(graph kind, op name) of one fx node."""
    if node.op == "call_module":
        mod = modules[node.target]
        name = type(mod).__name__
        if isinstance(mod, nn.Conv2d | nn.Linear):
            return "matmul", name
        if isinstance(mod, _ACTIVATION_MODULES):
            return "activation", name
        if isinstance(mod, _POOL_MODULES):
            return "pool", name
        if isinstance(mod, nn.Flatten | nn.Unflatten):
            return "flatten", name
        return "other", name
    if node.op == "call_function":
        fn = node.target
        name = getattr(fn, "__name__", str(fn))
        kind = getattr(fn, "imcsim_kind", None)  # a leaf function naming its graph kind
        if kind is not None:
            return kind, name
        tensors = [a for a in node.all_input_nodes if _numel(a) is not None]
        if fn in _ADD_FUNCTIONS:
            return ("add" if len(tensors) >= 2 else "other"), name
        if fn in _CAT_FUNCTIONS:
            return "concat", name
        if fn in _ACTIVATION_FUNCTIONS:
            return "activation", name
        if fn in _POOL_FUNCTIONS:
            return "pool", name
        if fn in _FLATTEN_FUNCTIONS:
            return "flatten", name
        return "other", name
    if node.op == "call_method":
        tensors = [a for a in node.all_input_nodes if _numel(a) is not None]
        if node.target in _ADD_METHODS:
            return ("add" if len(tensors) >= 2 else "other"), node.target
        if node.target in _ACTIVATION_METHODS:
            return "activation", node.target
        if node.target in _FLATTEN_METHODS:
            return "flatten", node.target
        return "other", node.target
    return "other", node.op


def _window_reads(node, modules, out_elements: int, in_elements: int) -> tuple[int, int]:
    """(elements read by a pooling node's windows, its kernel height)."""
    if node.op == "call_module":
        mod = modules[node.target]
        kernel = getattr(mod, "kernel_size", None)
    else:
        kernel = node.args[1] if len(node.args) > 1 else node.kwargs.get("kernel_size")
        if "adaptive" in getattr(node.target, "__name__", ""):
            kernel = None
    if kernel is None:  # adaptive: non-overlapping windows cover the input once
        shape = tuple(node.all_input_nodes[0].meta["tensor_meta"].shape)
        return in_elements, int(shape[2]) if len(shape) == 4 else 1
    kh, kw = _pair(kernel)
    return out_elements * kh * kw, kh


def trace_graph(model: nn.Module, example: torch.Tensor, layer_names: list[str]
                ) -> tuple[LayerGraph | None, str]:
    """The dataflow graph of ``model`` (Conv2d/Linear still in place) on one ``example``.

    Returns ``(graph, "")``, or ``(None, note)`` when ``torch.fx`` cannot trace the model or
    the trace does not show every mapped layer exactly once (a layer called twice); the
    engine then falls back to execution order.
    """
    from torch.fx.passes.shape_prop import ShapeProp

    try:
        gm = recurrent.symbolic_trace(model)
        with torch.no_grad():
            ShapeProp(gm).propagate(example)
    except Exception as exc:  # noqa: BLE001 - any trace failure means: fall back
        return None, (f"the model cannot be traced by torch.fx ({type(exc).__name__}: "
                      f"{str(exc)[:120]}); layers scheduled as a chain in execution order, "
                      "residual adds, pooling and activations not modelled")
    try:
        return _graph_of(gm, example, layer_names)
    except Exception as exc:  # noqa: BLE001 - an odd trace must not stop the run
        return None, (f"the torch.fx trace could not be read as a layer graph "
                      f"({type(exc).__name__}: {str(exc)[:120]}); layers scheduled as a chain "
                      "in execution order")


def _graph_of(gm, example: torch.Tensor, layer_names: list[str]
              ) -> tuple[LayerGraph | None, str]:
    """The :class:`LayerGraph` of a shape-propagated ``torch.fx`` graph module."""
    modules = dict(gm.named_modules())
    names: dict = {}  # fx node -> graph node name (or NETWORK_INPUT)
    nodes: list[GraphNode] = []
    used: dict[str, int] = {}
    input_elements = 0
    outputs: list[str] = []
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            names[node] = NETWORK_INPUT
            input_elements += _numel(node) or 0
            continue
        if node.op == "output":
            outputs = [names[a] for a in node.all_input_nodes if a in names]
            continue
        if node.op == "call_module" and isinstance(modules[node.target],
                                                   recurrent.UnrolledRecurrent):
            src = names.get(node.args[0], NETWORK_INPUT)
            cell = modules[node.target].graph_nodes(node.target, src,
                                                    node.args[0].meta["tensor_meta"].shape)
            nodes += cell
            names[node] = cell[-1].name  # its outputs (sequence, last state) leave the gates
            continue
        out = _numel(node)
        if out is None and node.target is operator.getitem and node.args[0] in names:
            names[node] = names[node.args[0]]  # a tuple picked apart (an LSTM's (h, c))
            continue
        if out is None or node.op == "get_attr":
            continue  # not a tensor (a size, a tuple), or a constant: not dataflow
        kind, op = _classify(node, modules)
        srcs = []
        for a in node.all_input_nodes:
            if a in names and names[a] not in srcs:
                srcs.append(names[a])
        if node.op == "call_module":
            k = used.get(node.target, 0)
            used[node.target] = k + 1
            if kind == "matmul" and k:
                return None, (f"layer '{node.target}' is called {k + 1} times in forward(); "
                              "layers scheduled as a chain in execution order")
            name = node.target if not k else f"{node.target}#{k}"
        else:
            name = node.name
        in_el = sum(_numel(a) or 0 for a in node.all_input_nodes if a in names)
        kh = 1
        if kind == "pool":
            in_el, kh = _window_reads(node, modules, out, in_el)
        vectors, width = _spatial(node)
        nodes.append(GraphNode(name=name, kind=kind, inputs=tuple(srcs), out_elements=out,
                               in_elements=in_el, vectors=vectors, out_width=width,
                               kernel_height=kh, op=op))
        names[node] = name
    found = {nd.name for nd in nodes if nd.kind == "matmul"}
    if found != set(layer_names):
        return None, ("the torch.fx trace does not show the mapped layers "
                      f"({sorted(found ^ set(layer_names))}); layers scheduled as a chain in "
                      "execution order")
    return LayerGraph(nodes=tuple(nodes), outputs=tuple(outputs),
                      input_elements=input_elements // max(1, int(example.shape[0])),
                      traced=True), ""
