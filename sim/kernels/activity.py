"""Per-step row-group activity: histograms for the schedule, and activity from bit-planes.

Two producers feed one histogram kernel (:func:`tile_histograms`):

- the bit-true pass counts, per (row tile, step, vector), the active row groups it saw
  (:func:`sim.kernels.inputs.group_activity`) and hands the counts over;
- the analytical mode keeps the non-zero bit-planes of a layer's real integer inputs packed
  64 rows to a word (:func:`pack_planes`, arch-independent) and derives the same counts for
  any DAC width, row-group height and crossbar height (:func:`planes_tile_counts`).

Arrays and scalars in, arrays out; :class:`sim.macros.activity.StepActivity` is built by the
callers.
"""

from __future__ import annotations

import numpy as np

from sim.kernels._jit import jit


@jit
def _tile_histograms(tile_count, gpc, hist_max, hist_tile):
    row_tiles, n_steps, m_count = tile_count.shape
    for p in range(n_steps):
        for m in range(m_count):
            best = 0
            for r in range(row_tiles):
                c = tile_count[r, p, m]
                hist_tile[r, c] += 1
                if c > best:
                    best = c
            hist_max[best] += 1


def tile_histograms(tile_count: np.ndarray, groups_per_crossbar: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Histograms of active row groups per (vector, step) from per-tile counts.

    ``tile_count[r, p, m]`` is the number of active row groups of row tile ``r`` at step
    ``p`` of vector ``m`` (at most ``groups_per_crossbar``). Returns ``hist_max``
    ``(groups_per_crossbar + 1,)`` (pairs by the busiest tile's count) and ``hist_tile``
    ``(row_tiles, groups_per_crossbar + 1)``, both int64 (see
    :class:`sim.macros.activity.StepActivity`).
    """
    tile_count = np.ascontiguousarray(tile_count)
    g = int(groups_per_crossbar)
    if tile_count.size and int(tile_count.max()) > g:
        raise ValueError(f"a row tile counts more than its {g} row groups")
    hist_max = np.zeros(g + 1, np.int64)
    hist_tile = np.zeros((tile_count.shape[0], g + 1), np.int64)
    _tile_histograms(tile_count, g, hist_max, hist_tile)
    return hist_max, hist_tile


def plane_bits(lo: int, hi: int) -> int:
    """The fewest two's-complement bits that hold every value in ``[lo, hi]`` (a sign bit
    included when ``lo < 0``; at least one)."""
    if lo < 0:
        return max(hi.bit_length(), (-lo - 1).bit_length()) + 1
    return max(hi.bit_length(), 1)


def pack_planes(x: np.ndarray, bits: int | None = None) -> np.ndarray:
    """The non-zero bit-planes of integer inputs ``x`` ``(M, K)``, packed along ``K``.

    Returns uint64 ``(M, bits, ceil(K / 64))``, whose word ``w`` bit ``j`` of plane ``b`` is
    bit ``b`` of ``x[m, 64 w + j]`` in ``bits``-bit two's complement (default: the fewest
    that hold ``x``, :func:`plane_bits`; wider words repeat the top plane when values can be
    negative, and are zero above it when not).
    """
    x = np.asarray(x, dtype=np.int64)
    if x.ndim != 2:
        raise ValueError(f"inputs must be a (vectors, K) matrix, got shape {x.shape}")
    m, k = x.shape
    lo = int(x.min()) if x.size else 0
    hi = int(x.max()) if x.size else 0
    need = plane_bits(lo, hi)
    nb = need if bits is None else int(bits)
    if nb < need:
        raise ValueError(f"inputs in [{lo}, {hi}] need {need} bit-planes, not {nb}")
    planes = np.zeros((m, nb, -(-k // 64)), dtype=np.uint64)
    _pack_planes(np.ascontiguousarray(x), planes)
    return planes


@jit
def _pack_planes(x, planes):
    m_count, k_count = x.shape
    n_planes = planes.shape[1]
    for m in range(m_count):
        for k in range(k_count):
            v = x[m, k]
            if v == 0:
                continue
            w = k >> 6
            bit = np.uint64(1) << np.uint64(k & 63)
            for b in range(n_planes):
                if (v >> b) & 1:
                    planes[m, b, w] |= bit


def row_segments(k: int, group_rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The packed words and bit masks covering each row group of ``group_rows`` rows.

    Returns ``ptr`` int64 ``(G + 1,)`` and per segment ``word`` int64 and ``mask`` uint64:
    row group ``g`` is rows ``[g r, min((g + 1) r, K))``, made of segments
    ``ptr[g] .. ptr[g + 1]``.
    """
    groups = -(-k // group_rows)
    ptr, word, mask = [0], [], []
    for g in range(groups):
        a, b = g * group_rows, min((g + 1) * group_rows, k)
        while a < b:
            w = a // 64
            e = min(b, (w + 1) * 64)
            bits = e - a
            mask.append(((1 << bits) - 1) << (a - w * 64))
            word.append(w)
            a = e
        ptr.append(len(word))
    return (np.array(ptr, np.int64), np.array(word, np.int64),
            np.array(mask, dtype=np.uint64))


@jit
def _planes_tile_counts(planes, step_mask, ptr, word, mask, gpc, out):
    m_count, n_planes, _ = planes.shape
    n_steps = step_mask.shape[0]
    groups = ptr.shape[0] - 1
    # Per vector, each group's non-zero planes as one bit-mask; then a step is active in a
    # group when the group's mask meets the step's planes: one AND per (step, group).
    group_planes = np.empty(groups, np.uint64)
    for m in range(m_count):
        for g in range(groups):
            acc = np.uint64(0)
            for b in range(n_planes):
                for s in range(ptr[g], ptr[g + 1]):
                    if planes[m, b, word[s]] & mask[s]:
                        acc |= np.uint64(1) << np.uint64(b)
                        break
            group_planes[g] = acc
        for p in range(n_steps):
            sm = step_mask[p]
            for g in range(groups):
                if group_planes[g] & sm:
                    out[g // gpc, p, m] += 1


def planes_tile_counts(planes: np.ndarray, step_planes: np.ndarray, k: int, group_rows: int,
                       groups_per_crossbar: int) -> np.ndarray:
    """Active row groups per (row tile, step, vector) from packed bit-planes.

    ``step_planes[p, b]`` says whether plane ``b`` feeds DAC step ``p`` (a step is active in
    a row when any of its planes is non-zero there). Returns uint16 ``(row_tiles, P, M)``,
    the same counts the bit-true pass takes from its DAC steps.
    """
    step_planes = np.asarray(step_planes, dtype=np.bool_)
    if step_planes.shape[1] != planes.shape[1] or planes.shape[1] > 64:
        raise ValueError("step_planes must name each of the (at most 64) stored planes")
    step_mask = (step_planes.astype(np.uint64)
                 << np.arange(step_planes.shape[1], dtype=np.uint64)).sum(axis=1,
                                                                          dtype=np.uint64)
    ptr, word, mask = row_segments(k, group_rows)
    groups = ptr.shape[0] - 1
    row_tiles = -(-groups // groups_per_crossbar)
    out = np.zeros((row_tiles, step_planes.shape[0], planes.shape[0]), np.uint16)
    _planes_tile_counts(planes, step_mask, ptr, word, mask, int(groups_per_crossbar), out)
    return out
