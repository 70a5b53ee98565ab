"""Inputs into DAC steps: bit-serial (``dac_bits`` per crossbar cycle) or multi-level.

An unsigned ``B``-bit input ``x`` is split into steps of ``d`` bits, step ``p`` carrying
weight ``2**(d*p)``. A signed input uses two's complement: the low ``B-1`` bits are split the
same way and one more step applies the sign bit with weight ``-2**(B-1)`` (ISAAC's last-cycle
shift-and-subtract). With ``d >= B`` (multi-level DAC) an unsigned input is one step.
"""

from __future__ import annotations

import numpy as np

from sim.kernels._jit import jit


def step_weights(bits: int, dac_bits: int, signed: bool) -> np.ndarray:
    """Digital weight of each DAC step, shape ``(P,)`` float64."""
    mag = bits - 1 if signed else bits
    n = -(-mag // dac_bits)
    w = [float(2 ** (dac_bits * p)) for p in range(n)]
    if signed:
        w.append(-float(2 ** (bits - 1)))
    return np.array(w, dtype=np.float64)


@jit
def _split_steps(x, bits, dac_bits, signed, n_steps, rows_padded, out, group_rows, nnz):
    """Steps of ``x`` into ``out`` (and, when ``nnz`` is not empty, the driven rows per
    (group, step, sample)). The inner loops run along contiguous rows so they vectorize."""
    m_count, k_count = x.shape
    mask = (1 << dac_bits) - 1
    mag_bits = bits - 1 if signed else bits
    low_mask = (1 << mag_bits) - 1
    n_mag = n_steps - 1 if signed else n_steps
    count = nnz.shape[0] > 0
    for m in range(m_count):
        row = x[m]
        for p in range(n_steps):
            dst = out[p, m]
            if p < n_mag:
                shift = dac_bits * p
                for k in range(k_count):
                    dst[k] = ((row[k] & low_mask) >> shift) & mask
            else:
                for k in range(k_count):
                    dst[k] = 1 if row[k] < 0 else 0
            for k in range(k_count, rows_padded):
                dst[k] = 0
            if count:
                for g in range(nnz.shape[0]):
                    # A slice indexed from 0: a contiguous, vectorized count (indexed by a
                    # signed offset the loop was scalar, with a sign check per element).
                    seg = dst[g * group_rows:min(k_count, (g + 1) * group_rows)]
                    c = 0
                    for k in range(seg.shape[0]):
                        c += seg[k] != 0
                    nnz[g, p, m] = c


#: Integer input types the kernels take as they are (the values, not the type, matter); any
#: other input is converted to int64.
_NARROW = (np.dtype(np.int16), np.dtype(np.int32))


def _checked(x: np.ndarray, bits: int, signed: bool, dac_bits: int) -> np.ndarray:
    """``x`` as contiguous int64 (int16 and int32 stay as they are: the bridge's narrow
    im2col), checked to lie in the ``bits``-bit range."""
    x = np.asarray(x)
    x = np.ascontiguousarray(x, dtype=x.dtype if x.dtype in _NARROW else np.int64)
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if x.size and (x.min() < lo or x.max() > hi):
        raise ValueError(f"inputs outside the {'signed' if signed else 'unsigned'} {bits}-bit "
                         f"range [{lo}, {hi}]: found [{x.min()}, {x.max()}]")
    if dac_bits > 16:
        raise ValueError("DAC steps are stored as uint16; dac_bits must be <= 16")
    return x


def split_inputs(x: np.ndarray, bits: int, dac_bits: int, signed: bool,
                 rows_padded: int | None = None) -> np.ndarray:
    """DAC step values of integer inputs ``x`` (M, K): array ``(P, M, rows_padded)``.

    uint8 for DACs of up to 8 bits, else uint16.

    Values must already lie in the ``bits``-bit range (checked); padding rows are zero.
    """
    x = _checked(x, bits, signed, dac_bits)
    n = len(step_weights(bits, dac_bits, signed))
    kp = x.shape[1] if rows_padded is None else rows_padded
    # uint8 keeps the common 1..8-bit DAC steps small; wider multi-level DACs need uint16.
    out = np.empty((n, x.shape[0], kp), dtype=np.uint8 if dac_bits <= 8 else np.uint16)
    _split_steps(x, bits, dac_bits, signed, n, kp, out, 1, np.zeros((0, 0, 0), np.int32))
    return out


def split_inputs_activity(x: np.ndarray, bits: int, dac_bits: int, signed: bool,
                          group_rows: int, groups: int, rows_padded: int | None = None):
    """:func:`split_inputs` and :func:`input_activity` in one pass over ``x``.

    Returns ``(steps, active, nnz)``; ``steps`` is ``(P, M, rows_padded or K)``.
    """
    x = _checked(x, bits, signed, dac_bits)
    n = len(step_weights(bits, dac_bits, signed))
    kp = x.shape[1] if rows_padded is None else rows_padded
    steps = np.empty((n, x.shape[0], kp), dtype=np.uint8 if dac_bits <= 8 else np.uint16)
    nnz = np.empty((groups, n, x.shape[0]), dtype=np.int32)
    _split_steps(x, bits, dac_bits, signed, n, kp, steps, group_rows, nnz)
    return steps, nnz > 0, nnz


@jit
def _group_activity(steps, group_rows, active, nnz):
    n_steps, m_count, kp = steps.shape
    n_groups = kp // group_rows
    for m in range(m_count):
        for g in range(n_groups):
            for p in range(n_steps):
                c = 0
                for k in range(g * group_rows, (g + 1) * group_rows):
                    if steps[p, m, k] != 0:
                        c += 1
                active[g, p, m] = c > 0
                nnz[g, p, m] = c


def group_activity(steps: np.ndarray, group_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Per (row group, step, sample): whether any row is driven, and how many rows are.

    Returns ``active`` bool ``(G, P, M)`` and ``nnz`` int32 ``(G, P, M)``.
    """
    p, m, kp = steps.shape
    if kp % group_rows:
        raise ValueError("padded rows must be a multiple of group_rows")
    g = kp // group_rows
    active = np.empty((g, p, m), dtype=np.bool_)
    nnz = np.empty((g, p, m), dtype=np.int32)
    _group_activity(steps, group_rows, active, nnz)
    return active, nnz


@jit
def _input_activity(x, bits, dac_bits, signed, n_steps, group_rows, active, nnz):
    m_count, k_count = x.shape
    n_groups = nnz.shape[0]
    mask = (1 << dac_bits) - 1
    mag_bits = bits - 1 if signed else bits
    low_mask = (1 << mag_bits) - 1
    n_mag = n_steps - 1 if signed else n_steps
    for m in range(m_count):
        row = x[m]
        for g in range(n_groups):
            k0 = g * group_rows
            k1 = min(k_count, k0 + group_rows)
            # Branch-free counts along contiguous rows (they vectorize).
            for p in range(n_mag):
                shift = dac_bits * p
                c = 0
                for k in range(k0, k1):
                    c += (((row[k] & low_mask) >> shift) & mask) != 0
                nnz[g, p, m] = c
            if signed:
                c = 0
                for k in range(k0, k1):
                    c += row[k] < 0
                nnz[g, n_mag, m] = c
    for g in range(n_groups):
        for p in range(n_steps):
            for m in range(m_count):
                active[g, p, m] = nnz[g, p, m] > 0


def input_activity(x: np.ndarray, bits: int, dac_bits: int, signed: bool, group_rows: int,
                   groups: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`group_activity` of the DAC steps of ``x`` (M, K), computed from ``x`` directly.

    Same ``active`` bool ``(G, P, M)`` and ``nnz`` int32 ``(G, P, M)`` as
    ``group_activity(split_inputs(x, bits, dac_bits, signed, groups * group_rows), group_rows)``
    without materializing the steps (the exact fast path needs only these counts).
    """
    x = _checked(x, bits, signed, dac_bits)
    n = len(step_weights(bits, dac_bits, signed))
    active = np.empty((groups, n, x.shape[0]), dtype=np.bool_)
    nnz = np.empty((groups, n, x.shape[0]), dtype=np.int32)
    _input_activity(x, bits, dac_bits, signed, n, group_rows, active, nnz)
    return active, nnz


def conv_out_size(size: tuple, kernel: tuple, padding: tuple, stride: tuple,
                  dilation: tuple) -> tuple[int, int]:
    """Output height and width of a convolution over an input of ``size`` ``(H, W)``
    (PyTorch's ``Conv2d`` arithmetic)."""
    return tuple((size[i] + 2 * padding[i] - dilation[i] * (kernel[i] - 1) - 1) // stride[i] + 1
                 for i in range(2))


@jit
def _conv_vectors(q, ho, wo, stride_h, stride_w, pad_h, pad_w, chan, dy, dx, zero_point, out):
    """``out[m, j]``: input ``chan[j]`` at offset ``(dy[j], dx[j])`` of output position ``m``'s
    window, plus ``zero_point`` (``zero_point`` alone in the zero padding of the image, ``0``
    for a column with ``chan[j] < 0``)."""
    n, _, h, w = q.shape
    cols = chan.shape[0]
    for b in range(n):
        for oh in range(ho):
            y0 = oh * stride_h - pad_h
            for ow in range(wo):
                x0 = ow * stride_w - pad_w
                dst = out[(b * ho + oh) * wo + ow]
                for j in range(cols):
                    c = chan[j]
                    y = y0 + dy[j]
                    x = x0 + dx[j]
                    if c < 0:
                        dst[j] = 0
                    elif 0 <= y < h and 0 <= x < w:
                        dst[j] = q[b, c, y, x] + zero_point
                    else:
                        dst[j] = zero_point


def conv_vectors(q: np.ndarray, kernel: tuple, padding: tuple, stride: tuple,
                 dilation: tuple, columns: np.ndarray, zero_point: int = 0) -> np.ndarray:
    """Selected columns of a convolution's input vectors (im2col), gathered in one pass.

    ``q`` is the integer input ``(n, C, H, W)`` (int16 or int64: the result has its type).
    Column ``i`` of the full im2col matrix is channel ``i // (kh*kw)`` at kernel offset
    ``(i // kw % kh, i % kw)`` (``F.unfold``'s order); ``columns`` lists the ones wanted, in
    order, and ``-1`` asks for a column of zeros. Rows are the output positions in order
    (sample, then output row, then output column). Every entry is ``zero_point`` plus the
    input under the window, or ``zero_point`` alone where the window lies on the zero padding
    (the input is padded with zeros before the zero point is added).
    """
    q = np.ascontiguousarray(q)
    n, _, h, w = q.shape
    kh, kw = kernel
    ho, wo = conv_out_size((h, w), kernel, padding, stride, dilation)
    columns = np.asarray(columns, np.int64)
    k_all = q.shape[1] * kh * kw
    if columns.size and (columns.min() < -1 or columns.max() >= k_all):
        raise ValueError(f"im2col columns must lie in -1 .. {k_all - 1} (C x kh x kw - 1), "
                         f"got {columns.min()} .. {columns.max()}")
    inside = np.maximum(columns, 0)
    chan = np.where(columns >= 0, inside // (kh * kw), -1)
    dy = (inside // kw % kh) * dilation[0]
    dx = (inside % kw) * dilation[1]
    out = np.empty((n * ho * wo, columns.size), q.dtype)
    _conv_vectors(q, ho, wo, stride[0], stride[1], padding[0], padding[1], chan, dy, dx,
                  q.dtype.type(zero_point), out)
    return out
