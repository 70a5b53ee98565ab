"""Every operation a model executes, classified: on the crossbars, in a digital unit, or in float.

:func:`record_operations` runs one forward pass of the model under a
:class:`~torch.utils._python_dispatch.TorchDispatchMode`. At that level every torch call has
been lowered to a small, closed set of ATen operators (``torch.einsum``, ``tensordot``,
``inner``, ``@``, ``F.linear`` and ``F.scaled_dot_product_attention`` all arrive as
``mm``/``bmm``/``addmm``/...), so the check does not depend on how the model spells a product,
and it works for models ``torch.fx`` cannot trace (data-dependent control flow): only the path
the sample took is recorded, which is the path the run executes for that sample.

Each operator is classified by an ALLOW-list (:data:`DIGITAL`, :data:`FLOAT`, :data:`LAYOUT`):

- inside a mapped ``nn.Conv2d``/``nn.Linear``: ``crossbar`` (the bridge swaps that module for
  a :class:`~mappers.torch_bridge.HardwareLayer`);
- activation, softmax, pooling, add/sub of tensors, concatenation: ``digital``, costed by the
  engine's digital components (``activation_ops``, ``pooling_ops``, ``add_ops``; a
  concatenation is data movement, costed as the NoC transfers of its producers' outputs);
- element-wise gate arithmetic inside a mapped recurrent layer
  (:class:`mappers.recurrent.UnrolledRecurrent`): ``digital`` (category ``cell``, costed as
  the layer's ``gates`` node);
- element-wise gate arithmetic elsewhere (a product of two activations of the same shape),
  normalization that was not folded, reductions and other element-wise maths: ``float`` (run
  in torch, listed, not costed: the engine has no component for them yet);
- views, reshapes, transposes, copies: layout (addressing, no work), not listed;
- a matrix product outside a mapped module (:data:`PRODUCTS`), an element-wise product whose
  broadcast makes an outer product, and any operator on none of the lists: refused with a
  :class:`~sim.errors.MappingError` naming the module and the source line, unless the caller
  passes ``allow_float_products=True``; then they run in float and are returned in
  :attr:`Coverage.float_products` so the result can say its energy is incomplete.
"""

from __future__ import annotations

import linecache
import sys
import weakref
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from sim.engine.graph import NETWORK_INPUT, GraphNode, LayerGraph
from sim.errors import InvariantError, MappingError

#: ATen operators that multiply two tensors (a matrix product or a convolution).
PRODUCTS = frozenset({
    "mm", "bmm", "addmm", "addbmm", "baddbmm", "addmv", "mv", "dot", "vdot", "matmul",
    "linear", "addr", "outer", "ger", "inner", "tensordot", "einsum", "bilinear", "_trilinear",
    "convolution", "_convolution", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
    "conv_transpose2d", "conv_transpose3d", "mkldnn_convolution", "_mps_convolution",
    "cudnn_convolution", "slow_conv2d_forward", "thnn_conv2d", "_slow_conv2d_forward",
    "_scaled_dot_product_attention_math", "_scaled_dot_product_flash_attention",
    "_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_efficient_attention",
    "_scaled_dot_product_cudnn_attention", "scaled_dot_product_attention", "_int_mm",
    "_weight_int8pack_mm", "_weight_int4pack_mm", "chain_matmul", "linalg_multi_dot",
    "_addmm_activation", "cdist", "_cdist_forward", "_euclidean_dist", "cosine_similarity",
    "_fused_rms_norm",
})

#: Digital units the engine costs, by ATen operator name: the category says which.
DIGITAL = {
    **dict.fromkeys(("relu", "relu_", "hardtanh", "hardtanh_", "clamp", "clamp_", "clamp_min",
                     "clamp_min_", "clamp_max", "clamp_max_", "sigmoid", "sigmoid_", "tanh",
                     "tanh_", "gelu", "gelu_", "silu", "silu_", "elu", "elu_", "leaky_relu",
                     "leaky_relu_", "hardswish", "hardswish_", "hardsigmoid", "hardsigmoid_",
                     "mish", "mish_", "softplus", "threshold", "threshold_", "_prelu_kernel",
                     "prelu", "log_sigmoid_forward", "celu", "selu", "rrelu_with_noise"),
                    "activation"),
    **dict.fromkeys(("_softmax", "softmax", "_log_softmax", "log_softmax", "_safe_softmax"),
                    "softmax"),
    **dict.fromkeys(("max_pool1d", "max_pool2d", "max_pool2d_with_indices",
                     "max_pool3d_with_indices", "avg_pool1d", "avg_pool2d", "avg_pool3d",
                     "_adaptive_avg_pool2d", "adaptive_avg_pool1d", "_adaptive_avg_pool3d",
                     "adaptive_max_pool2d", "adaptive_max_pool1d", "adaptive_max_pool3d"),
                    "pooling"),
    **dict.fromkeys(("add", "add_", "sub", "sub_", "rsub"), "add"),
    **dict.fromkeys(("cat", "concat", "stack", "hstack", "vstack"), "concat"),
}

#: Operators that run in torch without a costed unit: listed, not costed.
FLOAT = {
    **dict.fromkeys(("mul", "mul_", "div", "div_", "addcmul", "addcmul_", "addcdiv", "lerp"),
                    "gate"),
    **dict.fromkeys(("native_batch_norm", "_native_batch_norm_legit_no_training",
                     "_native_batch_norm_legit", "native_layer_norm", "native_group_norm",
                     "_batch_norm_with_update", "_batch_norm_no_update", "batch_norm",
                     "layer_norm", "group_norm", "instance_norm", "_fused_rms_norm_forward",
                     "rms_norm", "norm", "linalg_vector_norm", "renorm"),
                    "normalization"),
    **dict.fromkeys(("mean", "sum", "amax", "amin", "max", "min", "argmax", "argmin", "var",
                     "std", "var_mean", "std_mean", "prod", "logsumexp", "cumsum", "all",
                     "any", "topk", "sort"), "reduction"),
    **dict.fromkeys(("exp", "exp_", "log", "log_", "sqrt", "rsqrt", "pow", "reciprocal",
                     "neg", "abs", "sign", "round", "floor", "ceil", "trunc", "frac", "erf",
                     "sin", "cos", "log1p", "expm1", "square", "where", "masked_fill",
                     "masked_fill_", "maximum", "minimum", "fmod", "remainder", "gt", "ge",
                     "lt", "le", "eq", "ne", "logical_not", "logical_and", "logical_or",
                     "bitwise_not", "isnan", "isinf", "nan_to_num", "_to_copy", "to", "copy_",
                     "copy", "native_dropout", "dropout", "bernoulli_", "bernoulli", "rand",
                     "_local_scalar_dense", "is_nonzero", "item",
                     "fake_quantize_per_tensor_affine", "fake_quantize_per_channel_affine",
                     "fake_quantize_per_tensor_affine_cachemask",
                     "fake_quantize_per_channel_affine_cachemask",
                     "_fake_quantize_per_tensor_affine_cachemask_tensor_qparams",
                     "_fake_quantize_learnable_per_tensor_affine", "constant_pad_nd", "pad",
                     "reflection_pad2d", "replication_pad2d", "upsample_nearest2d",
                     "upsample_bilinear2d", "_upsample_nearest_exact2d", "gather", "index",
                     "index_select", "embedding"),
                    "elementwise"),
}

#: Views and data layout: no arithmetic.
LAYOUT = frozenset({
    "view", "_unsafe_view", "reshape", "flatten", "unflatten", "t", "transpose", "transpose_",
    "permute", "expand", "expand_as", "squeeze", "squeeze_", "unsqueeze", "unsqueeze_",
    "contiguous", "select", "slice", "split", "split_with_sizes", "unsafe_split", "chunk",
    "unbind", "alias", "as_strided", "narrow", "movedim", "view_as", "repeat",
    "_reshape_alias", "flip", "roll", "split_copy", "detach", "lift_fresh", "clone",
    # creating a tensor is not arithmetic either
    "empty", "empty_strided", "empty_like", "zeros", "zeros_like", "ones", "ones_like", "full",
    "full_like", "fill_", "zero_", "arange", "scalar_tensor", "new_zeros", "new_ones",
    "new_empty", "new_full", "new_empty_strided",
})

#: Placement of each classified category.
PLACEMENT = {"crossbar": "crossbar", "activation": "digital", "softmax": "digital",
             "pooling": "digital", "add": "digital", "concat": "digital", "gate": "float",
             "cell": "digital",
             "normalization": "float", "reduction": "float", "elementwise": "float",
             "product": "float", "unknown": "float"}

_TORCH_DIR = str(Path(torch.__file__).parent)
_THIS_FILE = __file__


@dataclass(frozen=True)
class Operation:
    """One executed operation (a mapped layer's whole call counts as one)."""

    #: Position in execution order (views and copies are not listed).
    index: int
    #: ATen operator (``addmm``, ``hardtanh``...) or, for ``crossbar``, the module type.
    op: str
    #: ``crossbar``, ``activation``, ``softmax``, ``pooling``, ``add``, ``concat``, ``gate``,
    #: ``normalization``, ``reduction``, ``elementwise``, ``product``, ``unknown``.
    category: str
    #: ``crossbar``, ``digital`` (a costed digital unit) or ``float`` (torch, not costed).
    placement: str
    #: Innermost named module running it (``""`` for the model's own forward) and its type.
    module: str
    module_type: str
    #: ``file:line`` of the model code that called it, and that line's text.
    source: str
    code: str
    #: Output elements (of the recorded batch).
    elements: int = 0

    def where(self) -> str:
        """``module 'attention' (TinyAttention), tests/x.py:12: <code>`` for messages."""
        mod = f"module '{self.module}' ({self.module_type})" if self.module else \
            f"the model's forward ({self.module_type})"
        return f"{mod} at {self.source}: {self.code}"


@dataclass
class Coverage:
    """What :func:`record_operations` saw, in execution order."""

    operations: list[Operation] = field(default_factory=list)
    #: Products (and unknown operators) allowed to run in float by ``allow_float_products``.
    float_products: list[Operation] = field(default_factory=list)
    #: The dataflow seen while recording (per sample), for :meth:`layer_graph`.
    nodes: tuple[GraphNode, ...] = ()
    outputs: tuple[str, ...] = ()
    input_elements: int = 0
    graph_problem: str = ""

    def layer_graph(self, layer_names: list[str], why: str = ""
                    ) -> tuple[LayerGraph | None, str]:
        """The recorded dataflow as a :class:`LayerGraph` (for models ``torch.fx`` cannot
        trace), or ``(None, why not)``: a layer called twice, a mapped layer not seen, or a
        graph that does not validate."""
        if self.graph_problem:
            return None, self.graph_problem
        found = {nd.name for nd in self.nodes if nd.kind == "matmul"}
        if found != set(layer_names):
            return None, ("the recording does not show the mapped layers "
                          f"{sorted(found ^ set(layer_names))}")
        try:
            return LayerGraph(nodes=self.nodes, outputs=self.outputs,
                              input_elements=self.input_elements, traced=True,
                              notes=(f"{why}; the layer graph was recorded from the "
                                     "operations the calibration samples executed instead "
                                     "(data-dependent branches as those samples took them)",
                                     )), ""
        except InvariantError as exc:
            return None, str(exc)

    def counts(self) -> dict[str, int]:
        """Operations per placement."""
        out: dict[str, int] = {}
        for op in self.operations:
            out[op.placement] = out.get(op.placement, 0) + 1
        return out

    def to_json(self) -> list[dict]:
        """The operations as plain mappings, for ``result.json``: ``dataclasses.asdict`` of
        each, made field by field (every field is a scalar; a tenth of ``asdict``'s time,
        which an analytical sweep paid once a point)."""
        return [{k: getattr(op, k) for k in _OPERATION_FIELDS} for op in self.operations]


#: :class:`Operation`'s field names, in order (:meth:`Coverage.to_json`).
_OPERATION_FIELDS = tuple(f.name for f in fields(Operation))


def _source() -> tuple[str, str]:
    """``file:line`` and text of the innermost frame outside torch and this module."""
    f = sys._getframe(2)
    while f is not None:
        fn = f.f_code.co_filename
        if not (fn.startswith(_TORCH_DIR) or fn == _THIS_FILE or fn.startswith("<")):
            return f"{_short(fn)}:{f.f_lineno}", linecache.getline(fn, f.f_lineno).strip()
        f = f.f_back
    return "<unknown>", ""


def _short(path: str) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return path


def _is_global_pool(args, kwargs) -> bool:
    """Whether ``aten.mean(x, dims, keepdim)`` averages each feature map of a 4-D ``x`` to one
    value with the dims kept: what ``adaptive_avg_pool2d(x, 1)`` lowers to."""
    x = args[0] if args else None
    dims = args[1] if len(args) > 1 else kwargs.get("dim")
    keep = args[2] if len(args) > 2 else kwargs.get("keepdim", False)
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or not keep or dims is None:
        return False
    return sorted(int(d) % 4 for d in dims) == [2, 3]


def _numel(out) -> int:
    if isinstance(out, torch.Tensor):
        return int(out.numel())
    if isinstance(out, list | tuple):
        return sum(_numel(o) for o in out)
    return 0


#: Graph node kind of each category (others are pass-through ``other`` nodes).
_KIND = {"activation": "activation", "softmax": "activation", "pooling": "pool", "add": "add",
         "concat": "concat"}


class _Recorder(TorchDispatchMode):
    """Records operations and, for :func:`dataflow_graph`, which recorded operation produced
    each tensor (views pass their producer through)."""

    def __init__(self, stack: list, model_type: str, batch: int):
        super().__init__()
        self.stack = stack
        self.model_type = model_type
        self.batch = max(1, batch)
        self.ops: list[Operation] = []
        self.last_key = None
        #: id(tensor) -> (weak reference, producing node name): a dead or reused id misses.
        self.producer: dict[int, tuple[weakref.ref, str]] = {}
        self.nodes: list[GraphNode] = []
        self.graph_problem = ""
        self.seen_names: set[str] = set()

    def source_of(self, t: torch.Tensor) -> str | None:
        """The recorded node that produced ``t`` (``None``: a parameter or constant)."""
        entry = self.producer.get(id(t))
        return entry[1] if entry is not None and entry[0]() is t else None

    def produced(self, out, name: str) -> None:
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self.producer[id(t)] = (weakref.ref(t), name)

    def _sources(self, args) -> tuple[str, ...]:
        srcs: list[str] = []
        for t in tree_leaves(args):
            if isinstance(t, torch.Tensor):
                s = self.source_of(t)
                if s is not None and s not in srcs:
                    srcs.append(s)
        return tuple(srcs)

    def _node(self, name: str, kind: str, op: str, args, out, kernel=None) -> None:
        first = next((t for t in tree_leaves(out) if isinstance(t, torch.Tensor)), None)
        if first is None:
            return
        per = self.batch
        out_el = -(-first.numel() // per)
        ins = [t for t in tree_leaves(args) if isinstance(t, torch.Tensor)]
        in_el = sum(-(-t.numel() // per) for t in ins if self.source_of(t) is not None)
        shape = tuple(first.shape)
        vectors, width = ((shape[2] * shape[3], shape[3]) if len(shape) == 4 else
                          (shape[2], shape[2]) if len(shape) == 3 else (1, 1))
        kh = 1
        if kind == "pool":
            if kernel is None:  # adaptive: its windows cover the input once
                kh = int(ins[0].shape[2]) if ins and ins[0].dim() == 4 else 1
            else:
                kh, kw = (kernel, kernel) if isinstance(kernel, int) else \
                    (int(kernel[0]), int(kernel[-1]))
                in_el = out_el * kh * kw
        if name in self.seen_names:
            self.graph_problem = f"'{name}' runs more than once"
            return
        self.seen_names.add(name)
        self.nodes.append(GraphNode(name=name, kind=kind, inputs=self._sources(args) or
                                    (NETWORK_INPUT,), out_elements=out_el, in_elements=in_el,
                                    vectors=vectors, out_width=width, kernel_height=kh, op=op))

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        mapped = next((s for s in reversed(self.stack) if s[2]), None)
        if mapped is not None:  # inside a mapped Conv2d/Linear: one operation per call
            if self.last_key == mapped[3]:
                return out
            self.last_key = mapped[3]
            self.ops.append(self._op("crossbar", mapped[1], mapped[0], mapped[1], out))
            return out
        self.last_key = None
        category = self._category(name, args, out)
        if category == "reduction" and name == "mean" and _is_global_pool(args, kwargs or {}):
            # adaptive_avg_pool2d(x, 1) lowers to this mean: the same pooling unit's work
            category = "pooling"
        if category == "layout":
            # Views and copies: no work, and their number depends on strides; the output
            # carries its input's producer.
            src = next((self.source_of(t) for t in tree_leaves(args)
                        if isinstance(t, torch.Tensor) and self.source_of(t) is not None), None)
            if src is not None:
                self.produced(out, src)
            return out
        module, mtype = (self.stack[-1][0], self.stack[-1][1]) if self.stack else \
            ("", self.model_type)
        if category == "gate" and mtype == "UnrolledRecurrent":
            category = "cell"  # a recurrent cell's products: its gates node costs them
        op = self._op(category, name, module, mtype, out)
        self.ops.append(op)
        node = f"{name}_{op.index}"
        kernel = (args[1] if len(args) > 1 else None) if category == "pooling" and \
            "pool" in name and "adaptive" not in name else None
        self._node(node, _KIND.get(category, "other"), name, args, out, kernel)
        self.produced(out, node)
        return out

    @staticmethod
    def _category(name: str, args, out) -> str:
        if name in PRODUCTS:
            return "product"
        if name in LAYOUT:
            return "layout"  # not in PLACEMENT: never listed
        if name in DIGITAL:
            if DIGITAL[name] == "add":
                tensors = [a for a in args if isinstance(a, torch.Tensor) and a.numel() > 1]
                return "add" if len(tensors) >= 2 else "elementwise"
            return DIGITAL[name]
        if name in FLOAT:
            if name.startswith("mul"):
                tensors = [a for a in args if isinstance(a, torch.Tensor) and a.numel() > 1]
                # Broadcasting two tensors into more elements than either has is an outer
                # product, i.e. a matrix product in disguise.
                if len(tensors) >= 2 and _numel(out) > max(t.numel() for t in tensors):
                    return "product"
            return FLOAT[name]
        return "unknown"

    def _op(self, category, op, module, mtype, out) -> Operation:
        src, code = _source()
        return Operation(index=len(self.ops), op=op, category=category,
                         placement=PLACEMENT[category], module=module, module_type=mtype,
                         source=src, code=code, elements=_numel(out))


def record_operations(model: nn.Module, example: torch.Tensor, *,
                      allow_float_products: bool = False,
                      mapped_types: tuple[type, ...] = (nn.Conv2d, nn.Linear)) -> Coverage:
    """Run ``model`` once on ``example`` and classify every executed operation (see the module
    docstring). Raises :class:`MappingError` naming each refused operation's module and source
    line, unless ``allow_float_products``."""
    names = {id(m): n for n, m in model.named_modules()}
    stack: list[tuple[str, str, bool, int]] = []
    calls = [0]

    def pre(module, args):
        calls[0] += 1
        mapped = isinstance(module, mapped_types) and not any(s[2] for s in stack)
        stack.append((names.get(id(module), ""), type(module).__name__, mapped, calls[0]))

    def post(module, args, out):
        if stack:
            name, _, mapped, _ = stack.pop()
            if mapped:  # the product's node, fed by the module's inputs
                rec._node(name, "matmul", type(module).__name__, args, out)
                rec.produced(out, name)

    handles = []
    for _, m in model.named_modules():
        if m is model:
            continue
        handles.append(m.register_forward_pre_hook(pre))
        handles.append(m.register_forward_hook(post))
    rec = _Recorder(stack, type(model).__name__, int(example.shape[0]) if example.dim() else 1)
    rec.produced(example, NETWORK_INPUT)
    try:
        with torch.no_grad(), rec:
            output = model(example)
    finally:
        for h in handles:
            h.remove()
    ops = rec.ops
    refused = [o for o in ops if o.category in ("product", "unknown")]
    if refused and not allow_float_products:
        raise MappingError(
            "cannot map onto crossbars: "
            + "; ".join(_describe(o) for o in _first_per_site(refused))
            + ". Supported matrix products: nn.Conv2d and nn.Linear modules (mapped onto "
              "crossbars); pass allow_float_products=True (imcsim run --allow-float-products) "
              "to run them in float, with the result's energy marked incomplete.")
    outputs = tuple(dict.fromkeys(rec.source_of(t) for t in tree_leaves(output)
                                  if isinstance(t, torch.Tensor) and rec.source_of(t)))
    per = max(1, rec.batch)
    return Coverage(operations=ops, float_products=refused, nodes=tuple(rec.nodes),
                    outputs=outputs, input_elements=-(-example.numel() // per),
                    graph_problem=rec.graph_problem)


def _first_per_site(ops: list[Operation]) -> list[Operation]:
    seen, out = set(), []
    for o in ops:
        key = (o.op, o.module, o.source)
        if key not in seen:
            seen.add(key)
            out.append(o)
    return out


def _describe(o: Operation) -> str:
    what = (f"a matrix product ({o.op}) outside a mapped nn.Conv2d/nn.Linear"
            if o.category == "product" else
            f"operator '{o.op}', which imcsim does not know (it may be a product)")
    return f"{what} in {o.where()}"
