"""The mapping that cashes compression in: a layer's integer weights as packed sub-layers.

A compressed layer's integer weight matrix ``W (K, N)`` (crossbar view: row ``k`` an input
line, column ``n`` an output) becomes a **partition into packed sub-layers**: each a set of
rows, a set of columns and the dense sub-matrix ``W[rows][:, cols]``, programmed into its own
:class:`~sim.macros.CrossbarLayer`. The bridge (:class:`mappers.torch_bridge.HardwareLayer`)
gathers ``x[:, rows]`` for each sub-layer and scatter-adds its outputs into ``y[:, cols]``;
every nonzero weight lies in exactly one sub-layer, so the result is ``x @ W`` bit for bit on an
exact arch (``tests/test_compress_mapping.py``). Zero weights outside the sub-matrices occupy
no cell, drive no row and cost no conversion.

How :func:`pack` cuts the matrix (one mechanism for every compression method):

1. **Pruned filters**: columns without a nonzero weight are dropped.
2. **Column order**: the live columns are cut, in an order, into column tiles of as many
   weights as one crossbar's columns hold (``crossbar.columns // columns_per_weight``). Two
   orders are tried and the cheaper kept (fewer crossbars, then fewer conversions per input
   vector, then fewer cell rows): the natural order, and a greedy **support clustering** (the
   PatDNN filter-kernel reordering): each tile starts from the free filter with the most
   nonzero rows and adds, one at a time, the filter whose nonzero rows add the fewest rows
   not yet in the tile (ties: the one sharing the most rows with the tile). Filters with the
   same pattern in a channel share a tile, so the pruned positions of that channel's kernels
   become whole rows that are not mapped; a connectivity-pruned kernel frees all its rows.
3. **Row compaction per column tile**: a tile maps only the rows nonzero in some column of the
   tile. With ``weights.encoding: polarized`` the packed fragments (``group_rows`` consecutive
   packed rows) must hold one sign per column. The compacted rows are used when their
   fragments are; else the fewer rows of two polarity-keeping layouts: (a) whole row groups of
   the original matrix, kept or dropped (all zero in the tile), which keeps the original
   fragments; (b) **sign-aware fragments**: rows placed first-fit (rows with most nonzeros
   first) into fragments whose sign per column they agree with, each fragment filled up to
   ``group_rows`` with padding rows (no weights, no input: row index ``K``, a zero input).
   Weights whose original fragments are not polarized are refused with a message.
4. **Column compaction per crossbar**: a tile's kept rows are cut into crossbar-high chunks
   (``crossbar.rows``); each chunk is a sub-layer holding only the tile's columns nonzero in
   its rows (RTMobile BSP: rows pruned inside a block are outputs not converted there, and an
   empty block is a crossbar never allocated). When a tile needs 2 to
   :data:`ROW_CLUSTER_CROSSBARS` crossbars (and the encoding is not polarized), its rows are
   also tried clustered by the columns they use (the same greedy clustering), which is kept
   when its chunks hold fewer columns.

The per-layer weight format (:func:`sim.engine.placement.storage_arch`) stores ``bits``-bit
weights in as many cell slices as those bits need.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.config.schema import Arch, columns_per_weight
from sim.engine.placement import geometry, packed_arrays, storage_arch
from sim.errors import MappingError

__all__ = ["SIGN_BITS", "Packing", "SubLayer", "pack", "pack_unified", "packing_cost",
           "rows_lower_bound", "savings", "storage_arch", "unified_magnitudes",
           "weights_per_tile"]


#: Rows of a column tile are clustered (step 4 of the module docstring) only when the tile
#: needs at most this many crossbars: the greedy clustering is quadratic in the rows.
ROW_CLUSTER_CROSSBARS = 8


def weights_per_tile(arch: Arch) -> int:
    """Weights (output columns) one crossbar column tile holds (at least one)."""
    xb = arch.crossbar
    return max(1, xb.columns // columns_per_weight(arch.weights, xb.cell))


@dataclass(frozen=True, eq=False)
class SubLayer:
    """One packed sub-layer: rows and columns of the layer's matrix and their weights."""

    rows: np.ndarray
    cols: np.ndarray
    #: ``(len(rows), len(cols))`` integer weights ``W[rows][:, cols]`` (signs -1/0/+1 in a
    #: unified packing, whose ``scale`` holds the magnitudes).
    weights: np.ndarray
    #: Unified packing only: the integer magnitude of each (row group, column) of the
    #: sub-layer, ``(ceil(len(rows) / group_rows), len(cols))``; ``weights x scale`` (per row
    #: group) is ``W[rows][:, cols]``. ``None``: the weights are stored as they are.
    scale: np.ndarray | None = None
    #: Rows of one row group of ``scale`` (the storage arch's ``crossbar.group_rows``).
    scale_rows: int = 0

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, columns)`` of the sub-matrix."""
        return int(self.rows.size), int(self.cols.size)


@dataclass(frozen=True, eq=False)
class Packing:
    """A layer's ``(K, N)`` matrix as a partition into :class:`SubLayer` objects."""

    k: int
    n: int
    parts: tuple[SubLayer, ...]
    #: ``natural`` or ``clustered`` (see the module docstring).
    order: str = "natural"
    #: A lower bound on the cell rows of any cut into column tiles (:func:`rows_lower_bound`).
    rows_bound: int = 0
    #: Bits the sub-layers' weights are stored at when the packing chose its own format
    #: (:data:`SIGN_BITS` for unified blocks stored as signs, :func:`pack_unified`);
    #: ``None``: the storage arch given to :func:`pack`.
    weight_bits: int | None = None

    @property
    def shapes(self) -> tuple[tuple[int, int], ...]:
        """``(k_i, n_i)`` of every sub-layer: what placement needs."""
        return tuple(p.shape for p in self.parts)

    @property
    def padded(self) -> bool:
        """Whether a sub-layer has padding rows (row index ``K``: zero input, no weights)."""
        return any(bool((p.rows == self.k).any()) for p in self.parts)

    def dense(self) -> np.ndarray:
        """The ``(K, N)`` matrix the sub-layers hold (scatter-added)."""
        w = np.zeros((self.k + 1, self.n), dtype=np.int64)
        for p in self.parts:
            w[np.ix_(p.rows, p.cols)] += p.weights if p.scale is None else p.weights * \
                np.repeat(p.scale, p.scale_rows, axis=0)[:p.rows.size]
        if w[self.k].any():
            raise AssertionError("a padding row holds weights")
        return w[:self.k]

    def gather(self, x: np.ndarray) -> list[np.ndarray]:
        """Each sub-layer's inputs ``x[:, rows]`` from the layer's ``x (M, K)`` (a padding
        row gets zero)."""
        if self.padded:
            x = np.concatenate([x, np.zeros((x.shape[0], 1), dtype=x.dtype)], axis=1)
        return [np.ascontiguousarray(x[:, p.rows]) for p in self.parts]

    def scatter(self, outs: list[np.ndarray], m: int) -> np.ndarray:
        """The layer's ``(M, N)`` outputs: each sub-layer's outputs added into its columns."""
        y = np.zeros((m, self.n), dtype=np.float64)
        for p, out in zip(self.parts, outs, strict=True):
            y[:, p.cols] += out
        return y


def pack(w: np.ndarray, arch: Arch, *, name: str = "layer", reorder: bool = True) -> Packing:
    """The packed sub-layers of integer weights ``w (K, N)`` on ``arch`` (module docstring).

    ``arch`` is the layer's storage arch (:func:`storage_arch`). ``reorder=False`` keeps the
    natural column and row orders. A matrix without a nonzero weight maps as one 1 x 1 zero
    sub-layer (the layer still exists on the chip).
    """
    w = np.asarray(w)
    if w.ndim != 2:
        raise ValueError(f"{name}: weights must be (K, N), got shape {w.shape}")
    k, n = w.shape
    nz = w != 0
    live = np.flatnonzero(nz.any(axis=0))
    if live.size == 0:
        z = np.zeros(1, dtype=np.int64)
        return Packing(k=k, n=n, parts=(SubLayer(rows=z, cols=z, weights=w[:1, :1] * 0),),
                       rows_bound=1)
    orders = [("natural", live)]
    if reorder and live.size > weights_per_tile(arch):
        orders.append(("clustered", _cluster(nz, live, weights_per_tile(arch))))
    best = None
    for label, order in orders:
        parts = _tile(w, nz, order, arch, name, reorder)
        cost = packing_cost(arch, [p.shape for p in parts])
        if best is None or cost < best[0]:
            best = (cost, label, parts)
    _, label, parts = best
    return Packing(k=k, n=n, parts=tuple(parts), order=label,
                   rows_bound=rows_lower_bound(nz, weights_per_tile(arch)))


def rows_lower_bound(nz: np.ndarray, per_tile: int) -> int:
    """Fewest cell rows any cut of the columns into tiles of ``per_tile`` could map.

    A tile maps at least the nonzero rows of its fullest column, so the sum over tiles of the
    largest column count is at least the sum of every ``per_tile``-th count in descending
    order (the best grouping puts the largest counts together). For PatDNN kernels of 4
    entries it is 4 rows per kept kernel of the fullest filter of each tile: the bound
    pattern and connectivity pruning could reach if filters shared patterns perfectly.
    """
    counts = np.sort(nz.sum(axis=0))[::-1]
    return int(counts[::per_tile].sum())


def packing_cost(arch: Arch, shapes) -> tuple[int, int, int]:
    """(crossbars, conversions per input vector, cell rows) of sub-layers of ``shapes``."""
    xbars = packed_arrays(arch, shapes)[0]  # small sub-layers share arrays (placement)
    conv = rows = 0
    for k, n in shapes:
        g = geometry(arch, k, n)
        conv += g.steps * g.row_groups * g.columns_total
        rows += k * g.col_tiles
    return xbars, conv, rows


def _cluster(nz: np.ndarray, live: np.ndarray, per_tile: int) -> np.ndarray:
    """Greedy support clustering of the live columns into tiles of ``per_tile`` columns."""
    return live[_greedy_groups(nz[:, live].T, per_tile)]


def _greedy_groups(support: np.ndarray, size: int) -> np.ndarray:
    """An order of the items of ``support`` (items, features) bool whose consecutive groups
    of ``size`` share features: each group starts from the free item with the most features
    and adds the item adding the fewest features new to the group (ties: the most shared,
    then the lowest index)."""
    # Supports as bit sets, 64 features to a word: counting new features is a popcount.
    bits = np.packbits(support, axis=1)  # (items, ceil(features / 8)) uint8
    pad = -bits.shape[1] % 8
    words = np.ascontiguousarray(np.pad(bits, ((0, 0), (0, pad)))).view(np.uint64)
    count = np.bitwise_count(words).sum(axis=1, dtype=np.int64)
    cand = np.arange(support.shape[0])  # the free items, ascending
    order: list[int] = []
    while cand.size:
        seed = int(np.argmax(count[cand]))  # first maximum: the lowest index
        order.append(int(cand[seed]))
        union = words[cand[seed]].copy()
        cand = np.delete(cand, seed)
        for _ in range(min(size - 1, cand.size)):
            added = np.bitwise_count(words[cand] & ~union).sum(axis=1, dtype=np.int64)
            best = np.flatnonzero(added == added.min())
            # shared = count - added, largest first; ties: the lowest index (first maximum)
            pick = int(best[np.argmax(count[cand[best]])])
            order.append(int(cand[pick]))
            union |= words[cand[pick]]
            cand = np.delete(cand, pick)
    return np.array(order, dtype=np.int64)


def _tile(w: np.ndarray, nz: np.ndarray, order: np.ndarray, arch: Arch, name: str,
          reorder: bool) -> list[SubLayer]:
    xb = arch.crossbar
    per_tile = weights_per_tile(arch)
    w_pad = np.concatenate([w, np.zeros((1, w.shape[1]), dtype=w.dtype)])  # row K: padding
    parts = []
    for t0 in range(0, order.size, per_tile):
        cols = order[t0:t0 + per_tile]
        rows = _kept_rows(w[:, cols], nz[:, cols], arch, name)
        if (reorder and xb.rows < rows.size <= ROW_CLUSTER_CROSSBARS * xb.rows
                and arch.weights.encoding != "polarized"):
            rows = _chunk_order(rows, nz[np.ix_(rows, cols)], arch)
        for c0 in range(0, rows.size, xb.rows):
            rr = rows[c0:c0 + xb.rows]
            block = w_pad[np.ix_(rr, cols)]
            keep = (block != 0).any(axis=0)
            if not keep.any():
                continue  # an empty block: a crossbar never allocated
            parts.append(SubLayer(rows=rr, cols=cols[keep], weights=block[:, keep]))
    return parts


def _chunk_order(rows: np.ndarray, nz: np.ndarray, arch: Arch) -> np.ndarray:
    """``rows`` (more than a crossbar holds) in the order of fewer conversions: the given
    order or rows clustered by the tile columns they use (:func:`_greedy_groups`), so that a
    crossbar-high chunk holds fewer columns (each chunk converts only its columns)."""
    r = arch.crossbar.rows

    def columns(order):
        return sum(int(nz[order[c:c + r]].any(axis=0).sum()) for c in range(0, order.size, r))

    clustered = _greedy_groups(nz, r)
    natural = np.arange(rows.size)
    return rows[clustered] if columns(clustered) < columns(natural) else rows


def _polarized(w: np.ndarray, group_rows: int) -> bool:
    """Whether every fragment-column of ``w`` holds one sign."""
    k, n = w.shape
    g = -(-k // group_rows)
    pad = np.zeros((g * group_rows, n), dtype=np.int64)
    pad[:k] = w
    frag = pad.reshape(g, group_rows, n)
    return not bool(((frag > 0).any(axis=1) & (frag < 0).any(axis=1)).any())


def _kept_rows(sub: np.ndarray, nz: np.ndarray, arch: Arch, name: str) -> np.ndarray:
    """Rows of a column tile that hold a nonzero weight (whole row groups where the
    polarized encoding needs the original fragments)."""
    rows = np.flatnonzero(nz.any(axis=1))
    if arch.weights.encoding != "polarized" or _polarized(sub[rows], arch.crossbar.group_rows):
        return rows
    r = arch.crossbar.group_rows
    k = sub.shape[0]
    groups = np.unique(rows // r)
    whole = np.concatenate([np.arange(g * r, min((g + 1) * r, k)) for g in groups])
    if not _polarized(sub[whole], r):
        raise MappingError(
            f"layer '{name}': weights are not sign-polarized in fragments of {r} rows "
            "(crossbar.group_rows), which weights.encoding: polarized needs; compress the "
            f"layer with polarize: {{fragment_rows: {r}}} or use another encoding")
    signed = _sign_fragments(np.sign(sub[rows]).astype(np.int8), rows, r, k)
    return signed if signed.size < whole.size else whole


def _sign_fragments(signs: np.ndarray, rows: np.ndarray, r: int, pad: int) -> np.ndarray:
    """Rows ``rows`` (sign pattern ``signs`` over the tile's columns) placed first-fit into
    fragments of ``r`` rows of one sign per column, every fragment but the last padded to
    ``r`` rows with the padding row ``pad``."""
    order = np.lexsort((rows, -(signs != 0).sum(axis=1)))  # most nonzeros first, then index
    frags: list[list[int]] = []
    frag_sign: list[np.ndarray] = []
    for i in order:
        s = signs[i]
        for f, fs in zip(frags, frag_sign, strict=True):
            if len(f) < r and not ((fs * s) < 0).any():
                f.append(int(rows[i]))
                fs[s != 0] = s[s != 0]
                break
        else:
            frags.append([int(rows[i])])
            frag_sign.append(s.copy())
    out = []
    for j, f in enumerate(frags):
        out.extend(f)
        if j < len(frags) - 1:
            out.extend([pad] * (r - len(f)))
    return np.array(out, dtype=np.int64)


def savings(arch: Arch, k: int, n: int, shapes, bits: int | None,
            rows_bound: int | None = None, *, stored_bits: int | None = None,
            scaled: bool = False) -> dict[str, int]:
    """Dense against packed figures of one layer, from the geometry alone.

    ``dense_*``: ``(K, N)`` at the arch's weight bits, as the dense mapping stores it;
    ``dense_at_bits_*``: ``(K, N)`` at the layer's storage ``bits`` (what the precision alone
    saves); the rest: the packed sub-layers ``shapes`` at ``bits`` (what packing adds).
    ``rows`` counts cell rows (a row of a sub-layer once per column tile it spans);
    conversions are per input vector without zero-skipping. ``rows_bound``
    (:attr:`Packing.rows_bound`) is reported as ``rows_lower_bound`` when given.
    ``stored_bits``: the bits the sub-layers are stored at when not ``bits``
    (:data:`SIGN_BITS`: unified blocks stored as signs); ``scaled``: the sub-layers have a
    per-(row group, column) scale, reported as ``unified`` with its
    ``scale_multiplies_per_vector``.
    """
    store = storage_arch(arch, bits)
    d_x, d_c, d_r = packing_cost(arch, [(k, n)])
    b_x, b_c, b_r = packing_cost(store, [(k, n)])
    stored = store if stored_bits is None else storage_arch(arch, stored_bits)
    p_x, p_c, p_r = packing_cost(stored, shapes)
    extra = {}
    if scaled:
        r = arch.crossbar.group_rows
        extra = {"unified": True, "scale_multiplies_per_vector":
                 sum(-(-ki // r) * ni for ki, ni in shapes)}
    return {"sub_layers": len(shapes), "weight_bits_stored": stored.weights.bits, **extra,
            "dense_crossbars": d_x, "dense_at_bits_crossbars": b_x, "crossbars": p_x,
            "dense_rows_mapped": d_r, "dense_at_bits_rows_mapped": b_r, "rows_mapped": p_r,
            "dense_conversions_per_vector": d_c, "dense_at_bits_conversions_per_vector": b_c,
            "conversions_per_vector": p_c,
            **({"rows_lower_bound": rows_bound} if rows_bound is not None else {})}


# ------------------------------------------------------------------ unified blocks as signs
#: Bits a unified block's weights are stored at: a sign and a 1-bit magnitude (-1, 0, +1),
#: in the arch's signed encoding (:func:`storage_arch`).
SIGN_BITS = 2


def unified_magnitudes(w: np.ndarray, band_rows: int) -> np.ndarray | None:
    """The shared magnitude of each (band of ``band_rows`` rows, column) of ``w``, or
    ``None`` when some band-column's nonzero weights do not share one magnitude.

    Bands start at row 0 (the unification projection's blocks do too,
    :class:`mappers.compress.projections.Unify`); an all-zero band-column has magnitude 0.
    """
    a = np.abs(np.asarray(w, dtype=np.int64))
    k, n = a.shape
    g = -(-k // band_rows)
    pad = np.zeros((g * band_rows, n), dtype=np.int64)
    pad[:k] = a
    bands = pad.reshape(g, band_rows, n)
    top = bands.max(axis=1)
    low = np.where(bands > 0, bands, np.iinfo(np.int64).max).min(axis=1)
    return top if bool(((top == 0) | (low == top)).all()) else None


def _unified_band(w: np.ndarray, limit: int) -> int | None:
    """The tallest band height below ``limit`` (at least 2) at which ``w`` is unified with
    some band-column holding two nonzero weights (evidence of unified blocks), or ``None``."""
    nz = np.asarray(w) != 0
    for b in range(min(limit - 1, 64), 1, -1):
        if unified_magnitudes(w, b) is None:
            continue
        k, n = nz.shape
        pad = np.zeros((-(-k // b) * b, n), dtype=np.int64)
        pad[:k] = nz
        if (pad.reshape(-1, b, n).sum(axis=1) >= 2).any():
            return b
    return None


def pack_unified(w: np.ndarray, arch: Arch, *, name: str = "layer") -> Packing:
    """Pack ``w`` with its unified blocks stored as signs, when that is cheaper.

    A layer compressed with weight unification (every block unified or zeroed, block rows a
    multiple of ``crossbar.group_rows``) has one magnitude per (row group, column): its
    sub-layers then store only the signs (:data:`SIGN_BITS`-bit weights: fewer cell slices,
    so fewer cell columns, crossbars and conversions) and carry the magnitudes as a
    per-(row group, column) ``scale`` that :class:`~sim.macros.CrossbarLayer` applies after
    the ADC (one counted ``scale_multiplies`` per vector, row group and output). Sub-layers
    keep whole row groups of ``w`` (rows compacted group by group, never mixed), so each of
    their row groups is one row group of ``w``. The sign packing is used when it costs fewer
    (crossbars, conversions, cell rows) than :func:`pack` at ``arch``'s bits; otherwise, or
    when ``w`` is not unified per row group, :func:`pack`'s result is returned.

    Unified blocks whose rows do not align with the row groups (``w`` unified in bands of
    fewer rows, not in row groups) are a :class:`MappingError` naming the layer and the
    block height needed.
    """
    w = np.asarray(w)
    plain = pack(w, arch, name=name)
    if arch.weights.bits <= SIGN_BITS or not (w != 0).any():
        return plain
    xb = arch.crossbar
    r = xb.group_rows
    if xb.rows % r:
        return plain  # row groups straddle crossbars: no per-(group, column) scale
    mags = unified_magnitudes(w, r)
    if mags is None:
        band = _unified_band(w, r)
        if band is not None:
            raise MappingError(
                f"layer '{name}': its weights are unified in blocks of {band} rows, which do "
                f"not align with the crossbar's row groups of {r} rows (crossbar."
                f"{'fragment_rows' if xb.fragment_rows else 'rows'}); a unified block is "
                "stored as signs with one magnitude per (row group, column), so unify with "
                f"block rows a multiple of {r} (unify: {{block: [{r}, ...]}}), or map the "
                "layer with mapping: packed (full-bit weights)")
        return plain
    signs = np.sign(w).astype(np.int64)
    sign_arch = storage_arch(arch, SIGN_BITS)
    parts = _tile_groups(signs, mags, sign_arch)
    if packing_cost(sign_arch, [p.shape for p in parts]) >= packing_cost(
            arch, [p.shape for p in plain.parts]):
        return plain
    return Packing(k=plain.k, n=plain.n, parts=tuple(parts), order="unified",
                   rows_bound=plain.rows_bound, weight_bits=SIGN_BITS)


def _tile_groups(signs: np.ndarray, mags: np.ndarray, arch: Arch) -> list[SubLayer]:
    """Sub-layers of sign matrix ``signs`` keeping whole row groups of ``group_rows`` rows:
    column tiles in :func:`pack`'s clustered or natural order (fewer crossbars kept), per
    tile the row groups holding a nonzero weight, cut into crossbar-high chunks each keeping
    its nonzero columns; ``scale`` = ``mags`` of each chunk's row groups and columns."""
    xb = arch.crossbar
    r = xb.group_rows
    k = signs.shape[0]
    nz = signs != 0
    live = np.flatnonzero(nz.any(axis=0))
    per_tile = weights_per_tile(arch)
    orders = [live]
    if live.size > per_tile:
        orders.append(_cluster(nz, live, per_tile))
    best = None
    for order in orders:
        parts = []
        for t0 in range(0, order.size, per_tile):
            cols = order[t0:t0 + per_tile]
            groups = np.flatnonzero(mags[:, cols].any(axis=1))
            rows = np.concatenate([np.arange(q * r, min((q + 1) * r, k)) for q in groups])
            for c0 in range(0, rows.size, xb.rows):
                rr = rows[c0:c0 + xb.rows]
                block = signs[np.ix_(rr, cols)]
                keep = (block != 0).any(axis=0)
                if not keep.any():
                    continue
                chunk_groups = rr[::r] // r  # whole groups: each starts every r rows
                parts.append(SubLayer(rows=rr, cols=cols[keep], weights=block[:, keep],
                                      scale=mags[np.ix_(chunk_groups, cols[keep])],
                                      scale_rows=r))
        cost = packing_cost(arch, [p.shape for p in parts])
        if best is None or cost < best[0]:
            best = (cost, parts)
    return best[1]
