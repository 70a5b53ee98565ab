"""Layers onto crossbars: tiling, ISAAC-style duplication, and placement on tiles.

A layer is a weight matrix ``K x N`` applied to ``vectors`` input vectors per inference
(output pixels of a convolution, 1 for a fully connected layer). Its weights need
``row_tiles x col_tiles`` crossbars; ``duplicates`` copies of them process different vectors
in parallel. Duplication goes greedily to the layer that is the pipeline's bottleneck (most
vectors per copy), as ISAAC replicates its early layers, while crossbars remain.
"""

from __future__ import annotations

import functools
import heapq
import math
from dataclasses import dataclass, replace

from sim.config.schema import Arch, columns_per_weight, input_steps
from sim.errors import MappingError


@dataclass(frozen=True, kw_only=True)
class LayerShape:
    """What the engine needs to know of one matrix-product layer."""

    name: str
    k: int
    n: int
    vectors: int
    #: For convolutions: output width and kernel height, so the next layer's line buffer can
    #: start after ``(kernel_height - 1) x width`` vectors rather than the whole feature map.
    out_width: int = 1
    kernel_height: int = 1
    #: Name of the layer whose output is this layer's input (``None``: the network input).
    source: str | None = None
    #: Convolution groups: ``k`` is then the rows of one group (``C / groups x kh x kw``) and
    #: ``n`` all output channels; see :func:`layer_geometry`.
    groups: int = 1
    #: A compressed layer mapped as packed sub-layers (:mod:`mappers.compress.mapping`): the
    #: ``(k_i, n_i)`` of each, side by side on the same input vector; empty: one ``k x n``.
    parts: tuple[tuple[int, int], ...] = ()
    #: Bits the layer's weights are stored at (:func:`mappers.compress.mapping.storage_arch`);
    #: ``None``: the arch's ``weights.bits``.
    weight_bits: int | None = None
    #: Its ``vectors`` are time steps that come one after another: a recurrent product
    #: (``W_hh h_{t-1}``), or the input product of a recurrent layer fed by the layer below.
    #: It is never duplicated (a copy would have nothing to work on).
    recurrent: bool = False
    #: Rows driven by 1-bit spikes (a spiking network's layer after a neuron layer): one
    #: crossbar read per input vector, no bit-serial steps, see :func:`spike_arch`.
    spike_inputs: bool = False


@dataclass(frozen=True, kw_only=True)
class Geometry:
    """Crossbars of one copy of a layer's weights and its columns."""

    row_groups: int
    row_tiles: int
    col_tiles: int
    data_columns: int
    columns_total: int
    steps: int
    #: Crossbar sets of a grouped layer (see :func:`layer_geometry`); the other fields
    #: describe one set, and the sets work side by side on the same input vector.
    packs: int = 1
    #: Crossbars of a layer of packed sub-layers of different sizes (0: the product above).
    packed_crossbars: int = 0
    #: Of those, the arrays shared block-diagonally by several small sub-layers
    #: (:func:`copack`): the ``(rows, columns)`` each one's sub-layers occupy, so that a
    #: layer-by-layer family can let other layers' sub-layers share them (:func:`place`).
    shared_arrays: tuple[tuple[int, int], ...] = ()

    @property
    def crossbars(self) -> int:
        """Crossbars holding one copy of the weights."""
        return self.packed_crossbars or self.row_tiles * self.col_tiles * self.packs


def geometry(arch: Arch, k: int, n: int) -> Geometry:
    """The same tiling :class:`sim.macros.CrossbarLayer` programs, from the shape alone."""
    xb = arch.crossbar
    groups = -(-k // xb.group_rows)
    row_tiles = -(-groups // (xb.rows // xb.group_rows))
    j = n * columns_per_weight(arch.weights, xb.cell)
    col_tiles = -(-j // xb.columns)
    return Geometry(row_groups=groups, row_tiles=row_tiles, col_tiles=col_tiles,
                    data_columns=j, columns_total=j + (col_tiles if xb.unit_column else 0),
                    steps=input_steps(arch.inputs, xb.dac))


def groups_per_pack(arch: Arch, groups: int, k_group: int, n_group: int) -> int:
    """How many groups of a grouped convolution share one crossbar (block-diagonal packing).

    The most groups whose block-diagonal weight matrix (``p x k_group`` rows,
    ``p x n_group`` weights wide, zeros off the diagonal blocks) still fits one crossbar; 1
    (a crossbar set per group) when not even two fit. Packing only happens where it saves
    crossbars: ``p`` groups on one crossbar instead of ``p`` crossbars. A depthwise 3x3
    (``k_group = 9``, ``n_group = 1``) on ISAAC's 128 x 128 crossbars packs 14 groups per
    crossbar (126 of its 128 rows; the rows are the limit).
    """
    if groups <= 1 or geometry(arch, 2 * k_group, 2 * n_group).crossbars > 1:
        return 1
    lo, hi = 2, groups  # geometry is monotonic in p: the largest p that fits one crossbar
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if geometry(arch, mid * k_group, mid * n_group).crossbars == 1:
            lo = mid
        else:
            hi = mid - 1
    return lo


def array_rect(arch: Arch, k: int, n: int) -> tuple[int, int] | None:
    """The ``(rows, columns)`` block a ``k x n`` sub-layer occupies in one array, or ``None``
    when it needs more than one array (it then keeps whole arrays of its own).

    Rows are cell rows (whole ADC fragments where ``crossbar.fragment_rows`` is set, since a
    fragment's rows share conversions); columns are its data columns (the unit column of an
    offset-encoded crossbar is driven by the active rows only, so block-diagonal sub-layers
    share it).
    """
    g = geometry(arch, k, n)
    if g.crossbars != 1:
        return None
    xb = arch.crossbar
    rows = k if xb.fragment_rows is None else g.row_groups * xb.group_rows
    return rows, g.data_columns


def copack(arch: Arch, rects, *, keep_apart=None, strips: bool = False) -> list[list[int]]:
    """Share arrays among ``rects`` (``(rows, columns)`` blocks) block-diagonally.

    Blocks on one array take disjoint rows and disjoint columns (as :func:`groups_per_pack`
    packs a grouped convolution), so one block's product only drives its own rows and only
    its own columns are converted: the sum of rows and the sum of columns of an array's
    blocks stay within ``crossbar.rows`` and ``crossbar.columns``. First fit, blocks in
    decreasing (rows, columns) order, ties by index: deterministic. ``keep_apart[i]`` (a
    label per block, optional): blocks with the same label never share an array. Returns
    the arrays as lists of block indices (in placement order).

    ``strips=True``: blocks that never compute at the same time (different layers of a
    family that runs layer by layer, kept apart by ``keep_apart``) need only disjoint
    *cells*: a block may share rows with another (the other's columns are not converted
    while it computes) or columns (the other's rows are not driven). Each array is then cut
    into vertical strips side by side (widths summing to at most ``crossbar.columns``); a
    strip takes the width of its first block and stacks blocks no wider than it while their
    rows sum to at most ``crossbar.rows``. First fit, blocks in decreasing (columns, rows)
    order, ties by index.
    """
    xb = arch.crossbar
    if strips:
        return _strip_pack(xb.rows, xb.columns, rects, keep_apart)
    order = sorted(range(len(rects)), key=lambda i: (-rects[i][0], -rects[i][1], i))
    bins: list[list[int]] = []
    used: list[list[int]] = []
    for i in order:
        r, c = rects[i]
        for b, (ur, uc) in enumerate(used):
            apart = keep_apart is not None and any(keep_apart[j] == keep_apart[i]
                                                   for j in bins[b])
            if not apart and ur + r <= xb.rows and uc + c <= xb.columns:
                bins[b].append(i)
                used[b] = [ur + r, uc + c]
                break
        else:
            bins.append([i])
            used.append([r, c])
    return bins


def _strip_pack(rows: int, columns: int, rects, keep_apart) -> list[list[int]]:
    """:func:`copack` with ``strips=True``."""
    order = sorted(range(len(rects)), key=lambda i: (-rects[i][1], -rects[i][0], i))
    bins: list[list[int]] = []
    strips: list[list[list[int]]] = []  # per array: [width, rows used] per strip
    for i in order:
        r, c = rects[i]
        for b, members in enumerate(bins):
            if keep_apart is not None and any(keep_apart[j] == keep_apart[i] for j in members):
                continue
            fit = next((s for s in strips[b] if c <= s[0] and s[1] + r <= rows), None)
            if fit is None and sum(s[0] for s in strips[b]) + c <= columns:
                fit = [c, 0]
                strips[b].append(fit)
            if fit is not None:
                fit[1] += r
                members.append(i)
                break
        else:
            bins.append([i])
            strips.append([[c, r]])
    return bins


def packed_arrays(arch: Arch, shapes) -> tuple[int, tuple[tuple[int, int], ...]]:
    """Arrays of one copy of sub-layers ``shapes`` stored on ``arch``: those needing several
    arrays keep their own, the others share arrays block-diagonally (:func:`copack`).
    Returns (arrays in all, the shared arrays' occupied ``(rows, columns)``)."""
    own, rects = 0, []
    for k, n in shapes:
        rect = array_rect(arch, k, n)
        if rect is None:
            own += geometry(arch, k, n).crossbars
        else:
            rects.append(rect)
    bins = copack(arch, rects)
    shared = tuple((sum(rects[i][0] for i in b), sum(rects[i][1] for i in b)) for b in bins)
    return own + len(bins), shared


def storage_arch(arch: Arch, bits: int | None) -> Arch:
    """``arch`` with ``bits``-bit weights (``None`` or the arch's bits: ``arch`` itself).

    The weight format of a layer stored at its own precision: the encoding stays, the cell
    slices become what ``bits`` need (``columns_per_weight``); ADC, DACs and shift-and-add are
    the arch's. ``bits`` above the arch's is a :class:`MappingError`.
    """
    if bits is None or bits == arch.weights.bits:
        return arch
    if bits > arch.weights.bits:
        raise MappingError(f"{bits}-bit weights do not fit the {arch.weights.bits}-bit "
                           f"weights of arch '{arch.name}' (weights.bits)")
    return replace(arch, weights=replace(arch.weights, bits=int(bits)))


def spike_arch(arch: Arch) -> Arch:
    """``arch`` as a layer whose rows are driven by spikes sees it: 1-bit unsigned inputs
    (one crossbar read per input vector and time step, no bit-serial input cycles), and
    zero-skipping on: a row without a spike is not driven, and a row group (fragment) without
    a spike does not convert and takes no step time (the existing zero-skip path:
    :func:`sim.kernels.inputs.input_activity` counts it from the real spikes)."""
    inp = arch.inputs
    if inp.bits == 1 and not inp.signed and inp.zero_skip:
        return arch
    return replace(arch, inputs=replace(inp, bits=1, signed=False, zero_skip=True))


def layer_arch(arch: Arch, layer: LayerShape) -> Arch:
    """The arch as ``layer`` uses it: its weights' storage bits (:func:`storage_arch`) and,
    for a spike-driven layer, 1-bit inputs (:func:`spike_arch`)."""
    arch = storage_arch(arch, layer.weight_bits)
    return spike_arch(arch) if layer.spike_inputs else arch


def main_part(arch: Arch, parts) -> int:
    """Index of the packed sub-layer with the most row groups (ties: the first), whose tiling
    and step activity stand for a layer of packed sub-layers in the schedule."""
    r = arch.crossbar.group_rows
    return max(range(len(parts)), key=lambda i: (-(-parts[i][0] // r), -i))


def layer_geometry(arch: Arch, layer: LayerShape) -> Geometry:
    """The geometry of one copy of ``layer``, grouped convolutions included: the one the
    functional model (:class:`mappers.torch_bridge.HardwareLayer`) programs, placement
    duplicates and the fit check counts.

    A grouped layer is ``ceil(groups / p)`` packs of ``p`` groups (:func:`groups_per_pack`),
    each a block-diagonal ``p x k`` by ``p x n / groups`` matrix on its own crossbars; the
    geometry's tiling fields describe the largest pack.

    A layer of packed sub-layers (``layer.parts``, stored at ``layer.weight_bits``) has one
    pack per sub-layer; sub-layers that fit one array share arrays block-diagonally
    (:func:`packed_arrays`), the others keep their own; its tiling fields are those of
    :func:`main_part` and its columns per crossbar the widest sub-layer's.
    """
    arch = layer_arch(arch, layer)
    if layer.parts:
        geos = [geometry(arch, k, n) for k, n in layer.parts]
        main = geos[main_part(arch, layer.parts)]
        arrays, shared = packed_arrays(arch, layer.parts)
        return Geometry(row_groups=main.row_groups, row_tiles=main.row_tiles,
                        col_tiles=main.col_tiles,
                        data_columns=max(g.data_columns for g in geos),
                        columns_total=main.columns_total, steps=main.steps, packs=len(geos),
                        packed_crossbars=arrays, shared_arrays=shared)
    if layer.groups <= 1:
        return geometry(arch, layer.k, layer.n)
    n_group = layer.n // layer.groups
    p = groups_per_pack(arch, layer.groups, layer.k, n_group)
    one = geometry(arch, p * layer.k, p * n_group)
    return Geometry(row_groups=one.row_groups, row_tiles=one.row_tiles, col_tiles=one.col_tiles,
                    data_columns=one.data_columns, columns_total=one.columns_total,
                    steps=one.steps, packs=-(-layer.groups // p))


def arrays_needed(arch: Arch, geos: list[Geometry]) -> tuple[int, bool]:
    """Arrays one copy of every layer of ``geos`` occupies together, and whether layers
    share arrays.

    A family that runs layer by layer (no pipeline) lets the arrays its layers' small
    packed sub-layers share (:attr:`Geometry.shared_arrays`) hold other layers' sub-layers
    too (:func:`copack`, never two arrays of the same layer): only one layer computes at a
    time, so one array's blocks never contend. A pipelining family keeps each layer's
    arrays its own (two pipeline stages would contend for one array's ADCs).
    """
    from sim.macros.family import family_of

    need = sum(g.crossbars for g in geos)
    cross = (not family_of(arch).pipelines and sum(len(g.shared_arrays) for g in geos) > 1)
    if cross:
        rects = [r for g in geos for r in g.shared_arrays]
        owner = [i for i, g in enumerate(geos) for _ in g.shared_arrays]
        need += len(copack(arch, rects, keep_apart=owner, strips=True)) - len(rects)
    return need, cross


def arrays_in_use(arch: Arch, placements: list[Placement]) -> int:
    """Arrays the placed layers occupy, all copies together, arrays shared by several
    layers counted once (:func:`arrays_needed`)."""
    need, cross = arrays_needed(arch, [p.geometry for p in placements])
    if cross and all(p.duplicates == 1 for p in placements):
        return need
    return sum(p.crossbars for p in placements)


@dataclass(frozen=True, kw_only=True)
class Placement:
    """Where one layer went: its geometry, copies, and first/last tile."""

    layer: LayerShape
    geometry: Geometry
    duplicates: int
    first_crossbar: int
    first_tile: int
    last_tile: int

    @property
    def crossbars(self) -> int:
        """Crossbars used, all copies together."""
        return self.geometry.crossbars * self.duplicates


def place(arch: Arch, layers: list[LayerShape], *, duplicate: bool = True) -> list[Placement]:
    """Place ``layers`` on the chip in order, duplicating bottlenecks while crossbars remain.

    Raises :class:`MappingError` saying by how much the model does not fit, unless
    ``organization.reprogram`` is set (then every layer gets one copy and may reuse crossbars).
    """
    from sim.macros.family import family_of

    org = arch.organization
    capacity = org.crossbars
    family = family_of(arch)
    geos = [layer_geometry(arch, ly) for ly in layers]
    need, cross = arrays_needed(arch, geos)
    if need > capacity and not org.reprogram:
        unit = family.array_unit
        raise MappingError(
            f"the model needs {need} {unit} but arch '{arch.name}' has {capacity} "
            f"(short by {need - capacity}, {100 * (need - capacity) / capacity:.1f} %); use a "
            "larger organization or set organization.reprogram: true")
    dup = [1] * len(layers)
    if duplicate and family.duplicates and need <= capacity:
        dup = _duplicates(layers, [g.crossbars for g in geos], capacity - need)
    per_tile = org.imas_per_tile * org.crossbars_per_ima
    result, cursor = [], 0
    for ly, g, d in zip(layers, geos, dup, strict=True):
        # Layers sharing arrays (cross) overlap on the chip: keep each inside it.
        used = g.crossbars * d
        start = (cursor % capacity if org.reprogram
                 else min(cursor, max(0, capacity - used)) if cross else cursor)
        result.append(Placement(layer=ly, geometry=g, duplicates=d, first_crossbar=start,
                                first_tile=start // per_tile,
                                last_tile=(start + used - 1) // per_tile))
        cursor += used
    return result


def _duplicates(layers: list[LayerShape], crossbars: list[int], spare: int) -> list[int]:
    """Copies per layer (:func:`_copies` of the only figures it reads: each layer's vectors
    and whether it is recurrent, the crossbars of one copy, the spare crossbars)."""
    return list(_copies(tuple((ly.vectors, ly.recurrent) for ly in layers), tuple(crossbars),
                        spare))


#: Results of :func:`_copies` kept per process (a sweep's design points that differ only in
#: what placement does not read, e.g. ADC bits or energies, share one). An entry is three
#: tuples of the layers' length: 256 entries of a 100-layer model take well under 1 MB.
COPIES_KEPT = 256


@functools.lru_cache(maxsize=COPIES_KEPT)
def _copies(layers: tuple[tuple[int, bool], ...], crossbars: tuple[int, ...], spare: int
            ) -> tuple[int, ...]:
    """Copies per layer of ``layers`` (``(vectors, recurrent)`` each): greedily, one more
    copy to the layer with the most vectors per copy (ties: the earlier layer) that still has
    vectors to spare and fits the spare crossbars, until none does or the busiest layer (of
    all) has at most one vector per copy. A recurrent product takes no copy (its steps run
    one after another) and is never counted as the busiest.

    A heap over the layers that may still take a copy: a layer that cannot (all its vectors
    have a copy, or it no longer fits) never can again, since copies only grow and the spare
    crossbars only shrink; it leaves the heap but still counts as the busiest layer.
    """
    vectors = [v for v, _ in layers]
    dup = [1] * len(layers)
    heap = [(-v / 1, i) for i, (v, recurrent) in enumerate(layers) if not recurrent]
    heapq.heapify(heap)
    done = None  # the busiest of the layers that left the heap: (key, index)
    while True:
        while heap and not (dup[heap[0][1]] < vectors[heap[0][1]]
                            and crossbars[heap[0][1]] <= spare):
            out = heapq.heappop(heap)
            done = out if done is None or out < done else done
        if not heap:
            break
        top = heap[0] if done is None or heap[0] < done else done
        _, i = heapq.heappop(heap)
        dup[i] += 1
        spare -= crossbars[i]
        heapq.heappush(heap, (-vectors[i] / dup[i], i))
        t = top[1]
        if vectors[t] / dup[t] <= 1:
            break
    return tuple(dup)


# ---------------------------------------------------------------------------- mesh and routes
@dataclass(frozen=True, kw_only=True)
class Mesh:
    """Tiles on a 2-D mesh, numbered row-major: tile ``t`` sits at ``(t % width, t // width)``.

    The shape is the most nearly square factorization of the tile count (ISAAC's 168 tiles:
    14 x 12); when that is more than twice as wide as tall (a prime count), a
    ``ceil(sqrt(tiles))``-wide grid with empty router slots at the end of its last row.
    """

    width: int
    height: int

    @classmethod
    def of(cls, tiles: int) -> Mesh:
        """The mesh of ``tiles`` tiles (see the class docstring)."""
        tiles = max(1, tiles)
        h = max(d for d in range(1, int(tiles**0.5) + 1) if tiles % d == 0)
        w = tiles // h
        if w > 2 * h:
            w = math.isqrt(tiles - 1) + 1  # ceil(sqrt(tiles))
            h = -(-tiles // w)
        return cls(width=w, height=h)

    def xy(self, tile: int) -> tuple[int, int]:
        """Mesh position of ``tile``."""
        return tile % self.width, tile // self.width

    def hops(self, a: int, b: int) -> int:
        """Links between tiles ``a`` and ``b`` on the XY route (Manhattan distance)."""
        (xa, ya), (xb, yb) = self.xy(a), self.xy(b)
        return abs(xa - xb) + abs(ya - yb)

    def route(self, a: int, b: int) -> list[tuple[int, int]]:
        """Directed links ``(from, to)`` (router slots) of the XY route from ``a`` to ``b``:
        along the row first, then along the column. Empty when ``a == b``."""
        (x, y), (xb, yb) = self.xy(a), self.xy(b)
        links = []
        while x != xb:
            nx = x + (1 if xb > x else -1)
            links.append((y * self.width + x, y * self.width + nx))
            x = nx
        while y != yb:
            ny = y + (1 if yb > y else -1)
            links.append((y * self.width + x, ny * self.width + x))
            y = ny
        return links


def input_tile(p: Placement) -> int:
    """Where a layer's inputs arrive: its first tile."""
    return p.first_tile


def output_tile(p: Placement) -> int:
    """Where a layer's outputs leave from: its last tile (partial sums of its row tiles
    are combined there)."""
    return p.last_tile


def node_tiles(graph, placements: list[Placement]) -> dict[str, tuple[int, int]]:
    """``(input tile, output tile)`` of every node of ``graph``.

    A matmul node is where it was placed; a node without crossbars (add, pool, activation,
    flatten...) runs on the tile where its first producer's outputs are (tile 0 for a node
    reading the network input).
    """
    from sim.engine.graph import NETWORK_INPUT

    by = {p.layer.name: p for p in placements}
    sites: dict[str, tuple[int, int]] = {}
    for nd in graph.nodes:
        if nd.kind == "matmul":
            p = by[nd.name]
            sites[nd.name] = (input_tile(p), output_tile(p))
        else:
            first = nd.inputs[0] if nd.inputs else NETWORK_INPUT
            t = 0 if first == NETWORK_INPUT else sites[first][1]
            sites[nd.name] = (t, t)
    return sites
