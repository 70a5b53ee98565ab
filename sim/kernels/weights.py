"""Signed integer weights into cell levels: bit slices, signed encodings, column flipping.

Logical column ``j`` of a layer holds one bit slice (or sign cell) of output ``n = col_out[j]``
and contributes ``col_weight[j] x (digitized partial sum)`` to it. Encodings (``B`` weight
bits, ``c`` bits per cell):

``offset``
    ISAAC: store ``w + 2**(B-1)`` unsigned in ``B/c`` slices; subtract
    ``2**(B-1) x sum(inputs)``, measured by the unit column (``bias_weight``).
``differential``
    Two column sets hold ``max(w, 0)`` and ``max(-w, 0)`` in ``(B-1)/c`` slices each; the
    negative set has negative column weights (digital subtraction after the ADC).
``twos_complement``
    The low ``B-1`` bits of the two's complement in ``(B-1)/c`` slices plus one sign cell whose
    column weight is ``-2**(B-1)`` (the MSB slice weighted negative).
``polarized``
    FORMS: magnitudes ``|w|`` in ``(B-1)/c`` slices; every fragment-column (the ``group_rows``
    rows of one row group in one output column) holds weights of one sign, applied digitally to
    the fragment's converted partial sum.
"""

from __future__ import annotations

import numpy as np


def weight_range(bits: int) -> tuple[int, int]:
    """The signed ``bits``-bit range ``[-2**(bits-1), 2**(bits-1) - 1]``."""
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def _slices(u: np.ndarray, n_slices: int, cell_bits: int) -> list[np.ndarray]:
    mask = (1 << cell_bits) - 1
    return [((u >> (cell_bits * s)) & mask).astype(np.uint8) for s in range(n_slices)]


def encode_weights(w: np.ndarray, bits: int, cell_bits: int, encoding: str,
                   group_rows: int | None = None):
    """Cell levels and column bookkeeping for integer weights ``w`` of shape ``(K, N)``.

    Returns ``(levels, col_out, col_weight, bias_weight, fragment_sign)``:
    ``levels`` uint8 ``(K, J)`` with the slices of output ``n`` in adjacent columns;
    ``col_out`` int32 ``(J,)``; ``col_weight`` float64 ``(J,)``; ``bias_weight`` float (the
    factor of the sum of inputs added to every output, 0 unless ``offset``); and
    ``fragment_sign`` int8 ``(G, N)`` for ``polarized`` (else ``None``).

    Raises ``ValueError`` for weights out of range, or unpolarized fragments.
    """
    w = np.asarray(w, dtype=np.int64)
    if w.ndim != 2:
        raise ValueError(f"weights must be a 2-D (K, N) matrix, got shape {w.shape}")
    lo, hi = weight_range(bits)
    if w.size and (w.min() < lo or w.max() > hi):
        raise ValueError(f"weights outside the signed {bits}-bit range [{lo}, {hi}]: "
                         f"found [{w.min()}, {w.max()}]")
    if encoding in ("differential", "polarized") and w.size and w.min() == lo:
        raise ValueError(f"{encoding} weights keep |w| in {bits - 1} magnitude bits, so "
                         f"{lo} cannot be stored; use [{lo + 1}, {hi}] (symmetric quantization)")
    k, n = w.shape
    sign = None
    bias = 0.0
    if encoding == "offset":
        s = -(-bits // cell_bits)
        parts = _slices(w + (1 << (bits - 1)), s, cell_bits)
        weights = [float(1 << (cell_bits * i)) for i in range(s)]
        bias = -float(1 << (bits - 1))
    elif encoding == "differential":
        s = -(-(bits - 1) // cell_bits)
        parts = (_slices(np.maximum(w, 0), s, cell_bits)
                 + _slices(np.maximum(-w, 0), s, cell_bits))
        weights = ([float(1 << (cell_bits * i)) for i in range(s)]
                   + [-float(1 << (cell_bits * i)) for i in range(s)])
    elif encoding == "twos_complement":
        s = -(-(bits - 1) // cell_bits)
        low = w & ((1 << (bits - 1)) - 1)
        parts = _slices(low, s, cell_bits) + [(w < 0).astype(np.uint8)]
        weights = [float(1 << (cell_bits * i)) for i in range(s)] + [-float(1 << (bits - 1))]
    elif encoding == "polarized":
        if not group_rows:
            raise ValueError("polarized encoding needs group_rows (the fragment height)")
        sign = fragment_signs(w, group_rows)
        s = -(-(bits - 1) // cell_bits)
        parts = _slices(np.abs(w), s, cell_bits)
        weights = [float(1 << (cell_bits * i)) for i in range(s)]
    else:
        raise ValueError(f"unknown weight encoding {encoding!r}")
    per = len(parts)
    levels = np.empty((k, n * per), dtype=np.uint8)
    for r, part in enumerate(parts):
        levels[:, r::per] = part
    col_out = np.repeat(np.arange(n, dtype=np.int32), per)
    col_weight = np.tile(np.array(weights, dtype=np.float64), n)
    return levels, col_out, col_weight, bias, sign


def fragment_signs(w: np.ndarray, group_rows: int) -> np.ndarray:
    """The one sign of each fragment-column of ``w`` (K, N), int8 ``(G, N)`` of +1/-1.

    A fragment holding both signs cannot be polarized: ``ValueError`` says how many.
    """
    k, n = w.shape
    g = -(-k // group_rows)
    pad = np.zeros((g * group_rows, n), dtype=np.int64)
    pad[:k] = w
    frag = pad.reshape(g, group_rows, n)
    has_pos = (frag > 0).any(axis=1)
    has_neg = (frag < 0).any(axis=1)
    mixed = int((has_pos & has_neg).sum())
    if mixed:
        raise ValueError(f"{mixed} of {g * n} fragment-columns ({group_rows} rows each) hold "
                         "weights of both signs; polarized encoding needs sign-polarized "
                         "weights (polarize the model first)")
    return np.where(has_neg, -1, 1).astype(np.int8)


def polarize(w: np.ndarray, group_rows: int) -> np.ndarray:
    """Project ``w`` (K, N) onto sign-polarized fragments: in each fragment-column keep the
    sign with the larger sum of squares and zero the weights of the other sign.

    That is the Euclidean projection (the Z-step of ADMM polarization): zeroing one sign
    costs the sum of its squares, so the nearest polarized point drops the sign whose
    squares sum less (a larger sum of magnitudes is not enough: [3, -2, -2] keeps the 3).
    """
    w = np.asarray(w)
    k, n = w.shape
    g = -(-k // group_rows)
    pad = np.zeros((g * group_rows, n), dtype=w.dtype)
    pad[:k] = w
    frag = pad.reshape(g, group_rows, n)
    sq = frag.astype(np.float64) ** 2
    pos = np.where(frag > 0, sq, 0.0).sum(axis=1)
    neg = np.where(frag < 0, sq, 0.0).sum(axis=1)
    keep_pos = (pos >= neg)[:, None, :]
    out = np.where(keep_pos, np.maximum(frag, 0), np.minimum(frag, 0))
    return out.reshape(g * group_rows, n)[:k]


def flip_columns(levels: np.ndarray, group_rows: int, cell_levels: int):
    """ISAAC's column flipping, per row group and column.

    Where a column's sum of levels over a row group's rows exceeds half its maximum, the cells
    store ``(cell_levels - 1) - level`` instead; the true partial sum is then recovered as
    ``(cell_levels - 1) x sum(inputs) - flipped partial sum``. Every stored column's level sum
    (and so its partial sum for 1-bit inputs) is at most half the unflipped maximum.

    Returns ``(levels, flipped)`` with ``flipped`` bool ``(G, J)``.
    """
    k, j = levels.shape
    g = -(-k // group_rows)
    out = levels.copy()
    flipped = np.zeros((g, j), dtype=np.bool_)
    top = cell_levels - 1
    for gi in range(g):
        rows = slice(gi * group_rows, min(k, (gi + 1) * group_rows))
        n_rows = rows.stop - rows.start
        sums = levels[rows].sum(axis=0, dtype=np.int64)
        f = 2 * sums > n_rows * top
        flipped[gi] = f
        out[rows, f] = top - levels[rows][:, f]
    return out, flipped
