"""ADC transfer curves and the fused convert-and-accumulate kernel.

Every ADC instance has a static transfer curve: the analog partial sum ``y`` (in level units)
is mapped to code units ``u = y / step x (1 + gain) + offset``, then to the code
``#{k >= 1 : T[k-1] <= u}`` clipped to ``[0, codes-1]``. The thresholds ``T`` of an ideal ADC
are ``k - 0.5`` (rounding to nearest) or ``k`` (floor). A mismatched SAR ADC's thresholds come
from its capacitor DAC: bit ``i`` weighs ``W_i = 2**i + e_i`` LSB instead of ``2**i``; the SAR
search is monotone, so its curve is again a threshold list (possibly with missing codes). The
hot kernel finds a code by walking the SAR's bit weights in fixed point, vectorized over
columns, and looks it up in the threshold list only where the walk passed within its rounding
bound of a trial level (:func:`walk_tables`); the codes are those of the list. Conversion
noise is added to ``u``.
"""

from __future__ import annotations

import numpy as np

from sim.kernels import noise as noise_k
from sim.kernels._jit import jit, jit_inline


def sar_thresholds(bit_weights: np.ndarray, half: float) -> np.ndarray:
    """Thresholds ``T`` (shape ``(n, codes-1)``) of SAR ADCs with the given bit weights.

    ``bit_weights`` is ``(n, bits)`` in LSB, LSB first; ``half`` is 0.5 for rounding to nearest,
    0 for floor. A code ``k`` is produced for ``u`` in ``[L_k, U_k)`` where ``L_k`` is the
    largest trial level of its 1-bits and ``U_k`` the smallest of its 0-bits; the threshold of
    code ``k`` is the least ``L_k'`` over reachable codes ``k' >= k``.
    """
    bw = np.asarray(bit_weights, dtype=np.float64)
    n, bits = bw.shape
    codes = 1 << bits
    k = np.arange(codes)
    b = ((k[:, None] >> np.arange(bits)[None, :]) & 1).astype(np.float64)  # (codes, bits)
    lower = np.full((n, codes), -np.inf)
    upper = np.full((n, codes), np.inf)
    for i in range(bits - 1, -1, -1):
        higher = b[:, i + 1:] @ bw[:, i + 1:].T if i + 1 < bits else np.zeros((codes, n))
        trial = higher.T + bw[:, i][:, None] - half  # (n, codes)
        one = b[:, i].astype(bool)[None, :]
        lower = np.where(one, np.maximum(lower, trial), lower)
        upper = np.where(~one, np.minimum(upper, trial), upper)
    reachable = lower < upper
    lo = np.where(reachable, lower, np.inf)
    # least lower edge over reachable codes >= k: a reversed running minimum
    t = np.minimum.accumulate(lo[:, ::-1], axis=1)[:, ::-1]
    return t[:, 1:].astype(np.float64)


def ideal_thresholds(bits: int, rounding: str) -> np.ndarray:
    """Thresholds of one ideal ADC, shape ``(codes-1,)``."""
    half = 0.5 if rounding == "nearest" else 0.0
    return np.arange(1, 1 << bits, dtype=np.float64) - half


def threshold_lut(thr: np.ndarray):
    """Per-LSB lookup tables of threshold curves ``thr`` ``(n, codes-1)``.

    For bin ``b`` (``b <= u < b+1``): ``base[i, b]`` thresholds are ``<= b`` and ``t1``, ``t2``
    are the first two thresholds inside the bin (``inf`` if none), so the code of ``u`` is
    ``base + (u >= t1) + (u >= t2)``, exactly the count of thresholds ``<= u``. An instance
    with more than two thresholds in some bin has ``ok`` false and is walked instead.
    Returns ``(base, t1, t2, ok)``; empty arrays when ``thr`` is empty.
    """
    n = thr.shape[0]
    if n == 0:
        return (np.zeros((0, 0), np.int32), np.zeros((0, 0)), np.zeros((0, 0)),
                np.zeros(0, np.bool_))
    codes = thr.shape[1] + 1
    bins = np.arange(codes, dtype=np.float64)
    base = np.empty((n, codes), np.int32)
    t1 = np.full((n, codes), np.inf)
    t2 = np.full((n, codes), np.inf)
    ok = np.ones(n, np.bool_)
    for i in range(n):
        row = thr[i]
        start = np.searchsorted(row, bins, side="right")  # thresholds <= b
        stop = np.searchsorted(row, bins + 1.0, side="left")  # thresholds < b + 1
        base[i] = start
        inside = stop - start
        ok[i] = inside.max() <= 2
        has1 = inside >= 1
        has2 = inside >= 2
        t1[i, has1] = row[start[has1]]
        t2[i, has2] = row[start[has2] + 1]
    return base, t1, t2, ok


#: Widest SAR ADC whose codes the vectorized walk finds (its steps are unrolled when compiled);
#: a wider one's codes are looked up in its threshold tables.
WALK_BITS = 8
#: How close (in units of the walk's fixed point) to a trial level a walk may pass before its
#: code is taken from the threshold list: twice the walk's rounding bound, plus one unit for
#: the list's own float64 rounding (see :func:`walk_tables`).
WALK_NEAR = WALK_BITS + 3


def walk_tables(bit_weights: np.ndarray, half: float):
    """Per-instance tables of the vectorized SAR walk: ``(step, scale, x_max, near_e)``.

    The walk runs in 32-bit fixed point: a value ``x = u + half`` is clamped to ``[0, x_max]``
    and floored to whole units of ``2**-s`` LSB; its word is ``r = X * 256`` (``X``: the value
    in units, the low 8 bits hold the code), ``scale = 2**s * 256`` words per LSB. ``step``
    ``(n, WALK_BITS)`` uint32 are the words ``W * 256 - 2**bit`` of the rounded bit weights
    ``W``, MSB first (unused top steps ``2**32 - 1``: they never set a bit), so one step is
    ``r = min(r - step, r)`` unsigned: the value falls by ``W`` and the bit is set exactly
    when ``X >= W`` (otherwise ``r - step`` wraps above ``r``). ``near_e`` ``(n,)`` is the
    bound on ``step - r`` up to which a cleared bit counts as close (``2**32 - 1``: every
    code from the list, for an instance with a weight ``<= 0``). Empty arrays without weights
    or with more than :data:`WALK_BITS` bits.

    Why the codes are those of :func:`sar_thresholds`' list: the SAR sets bit ``i`` when
    ``d = x - A - W_i >= 0`` (``A``: the weights of the bits set so far), and the list holds
    the jump points of exactly this walk (to float64 rounding, far below one unit). In fixed
    point ``d`` is exact up to the rounding of ``x`` (< 1 unit) and of the weights (1/2 unit
    each): at most ``1 + bits / 2`` units, less than half of :data:`WALK_NEAR`; beyond
    ``x_max = M = sum|W| + |half| + 1`` and below 0 every decision is forced (all bits set,
    or none), in both. So a walk whose every ``|d|`` exceeds ``WALK_NEAR`` units took
    the exact walk's path, no jump point lies between ``u`` and the nearest trial level it
    compared, and its code is the count of thresholds ``<= u``. The kernel checks this with
    two numbers: the value left (the least ``d`` of a set bit: with positive weights ``d``
    only falls) and the least ``step - r`` (the distance below the trial level of a cleared
    bit, times 256, minus the code bits; for a set bit it wraps to at least ``2**32`` minus
    the largest word, far above ``near_e``). ``s`` is the largest with
    ``x_max * 2**s * 256 <= 2**32 - 2**13``.
    """
    bw = np.asarray(bit_weights, np.float64)
    if bw.size == 0 or bw.shape[1] > WALK_BITS:
        return (np.zeros((0, 0), np.uint32), np.zeros(0), np.zeros(0),
                np.zeros(0, np.uint32))
    n, bits = bw.shape
    m = np.abs(bw).sum(axis=1) + abs(half) + 1.0
    good = (bw > 0).all(axis=1) & np.isfinite(m)
    x_max = np.where(good, m, 1.0)
    unit = 2.0 ** np.floor(np.log2((2.0**32 - 2.0**13) / 256.0 / x_max))  # units per LSB
    units = np.rint(bw * unit[:, None])  # rounded weights, in units
    good &= (units >= 1).all(axis=1)
    step = np.full((n, WALK_BITS), 2**32 - 1, np.uint64)
    bit = 1 << np.arange(bits - 1, -1, -1)
    words = units[:, ::-1].astype(np.int64) * 256 - bit[None, :]
    step[:, WALK_BITS - bits:] = np.where(good[:, None], words, 2**32 - 1)
    near_e = np.where(good, (WALK_NEAR + 1) * 256, 2**32 - 1)
    return (step.astype(np.uint32), unit * 256.0, x_max, near_e.astype(np.uint32))


def draw_adc_instances(n: int, bits: int, rounding: str, *, offset_sigma_lsb: float,
                       gain_sigma: float, cap_mismatch_sigma: float,
                       rng: np.random.Generator):
    """Static curves of ``n`` ADC instances: ``(gain, offset, thresholds, bit_weights)``.

    ``gain`` and ``offset`` are ``(n,)``; ``thresholds`` is ``(n, codes-1)`` and
    ``bit_weights`` (the SAR DAC's, LSB first, the curve's cause) ``(n, bits)`` when capacitor
    mismatch is on, both ``(0, 0)`` otherwise (the kernel then rounds arithmetically).
    """
    gain = 1.0 + gain_sigma * rng.standard_normal(n) if gain_sigma else np.ones(n)
    offset = offset_sigma_lsb * rng.standard_normal(n) if offset_sigma_lsb else np.zeros(n)
    if cap_mismatch_sigma:
        nominal = 2.0 ** np.arange(bits)
        err = cap_mismatch_sigma * np.sqrt(nominal) * rng.standard_normal((n, bits))
        bw = nominal[None, :] + err
        thr = sar_thresholds(bw, 0.5 if rounding == "nearest" else 0.0)
    else:
        thr = bw = np.zeros((0, 0))
    return gain.astype(np.float64), offset.astype(np.float64), thr, bw


@jit
def _code(u, thr_row, codes, half, use_table):
    if use_table:
        lo = 0
        hi = thr_row.shape[0]
        while lo < hi:  # number of thresholds <= u
            mid = (lo + hi) >> 1
            if thr_row[mid] <= u:
                lo = mid + 1
            else:
                hi = mid
        return lo
    c = np.floor(u + half)
    if c < 0.0:
        return 0
    if c > codes - 1:
        return codes - 1
    return int(c)


@jit
def convert(u, thr, inst, codes, half):
    """Codes of code-unit values ``u`` (1-D) through instance ``inst[i]`` of table ``thr``."""
    out = np.empty(u.shape[0], dtype=np.int64)
    use_table = thr.shape[0] > 0
    for i in range(u.shape[0]):
        row = thr[inst[i]] if use_table else thr.reshape(-1)[:0]
        out[i] = _code(u[i], row, codes, half, use_table)
    return out


@jit
def _threshold_code(u, i, thr, lut_base, lut_t1, lut_t2, lut_ok, top, half):
    """Code of ``u`` through instance ``i``'s threshold table."""
    if u >= 0.0 and u < top and lut_ok[i]:
        # Branch-free lookup: the code at the bin's start plus the (at most two) thresholds
        # inside the one-LSB bin that u has passed.
        b = int(u)
        return lut_base[i, b] + (u >= lut_t1[i, b]) + (u >= lut_t2[i, b])
    # Outside the table (clipping, negative) or a badly mismatched curve: walk from the
    # ideal code to the number of thresholds <= u.
    return _count_le(u, thr, i, top, half)


@jit
def _convert_row(psum, r, lin_a, lin_b, thr, lut_base, lut_t1, lut_t2, lut_ok, cal, col_inst,
                 codes, half, noise, recon_step, v):
    """Digitize row ``r`` of ``psum`` into ``v`` (the loops are unswitched by hand).

    With a calibration table ``cal`` (``(instances, codes)``, else empty) the value of code
    ``k`` of instance ``i`` is ``cal[i, k]`` instead of ``k`` (the digital correction).
    """
    n_cols = psum.shape[1]
    top = codes - 1
    has_noise = noise.shape[0] > 0
    if cal.shape[0] > 0:
        for c in range(n_cols):
            u = psum[r, c] * lin_a[c] + lin_b[c]
            if has_noise:
                u += noise[r, c]
            i = col_inst[c]
            if thr.shape[0] > 0:
                k = _threshold_code(u, i, thr, lut_base, lut_t1, lut_t2, lut_ok, top, half)
            else:
                k = int(min(max(np.floor(u + half), 0.0), top))
            v[c] = cal[i, k] * recon_step[c]
    elif thr.shape[0] > 0:
        # The table lookup of _threshold_code, written out: as a call it ran 2x slower
        # (measured); the rare walk outside the table stays a call.
        for c in range(n_cols):
            u = psum[r, c] * lin_a[c] + lin_b[c]
            if has_noise:
                u += noise[r, c]
            i = col_inst[c]
            if u >= 0.0 and u < top and lut_ok[i]:
                b = int(u)
                v[c] = (lut_base[i, b] + (u >= lut_t1[i, b]) + (u >= lut_t2[i, b])) \
                    * recon_step[c]
                continue
            v[c] = _count_le(u, thr, i, top, half) * recon_step[c]
    else:
        _round_span(psum, noise, r, 0, 0, n_cols, lin_a, lin_b, top, half, recon_step, v)


@jit
def _round_span(ps, ns, row, off, noff, cnt, a, b, top, half, recon, v):
    """Ideal-ADC conversions ``e < cnt``: ``floor(ps[row, off + e] * a[e] + b[e] (+ ns[row,
    noff + e] when ``ns`` has rows) + half)`` clipped to ``[0, top]``, times ``recon[e]``, into
    ``v``. The one rounding expression of the row path (:func:`_convert_row`) and the block
    path (:func:`_convert_blocks`)."""
    p = ps[row, off:off + cnt]
    if ns.shape[0] > 0:
        q_n = ns[row, noff:noff + cnt]
        for e in range(cnt):
            q = np.floor(p[e] * a[e] + b[e] + q_n[e] + half)
            q = min(max(q, 0.0), top)
            v[e] = q * recon[e]
    else:
        for e in range(cnt):
            q = np.floor(p[e] * a[e] + b[e] + half)
            q = min(max(q, 0.0), top)
            v[e] = q * recon[e]


@jit
def _count_le(u, thr, i, top, half):
    """Number of instance ``i``'s thresholds ``<= u``, walked from the ideal code."""
    k = np.floor(u + half)
    lo = int(min(max(k, 0.0), top))
    while lo < top and thr[i, lo] <= u:
        lo += 1
    while lo > 0 and thr[i, lo - 1] > u:
        lo -= 1
    return lo


_U32 = np.uint32
#: A walk word with its code bits (the low 8) cleared.
_CODE_MASK = _U32(0xFFFFFF00)


@jit
def _walk_one(x, step, near_e, c):
    """The SAR walk of fixed-point word ``x`` through column ``c``'s step words ``step[:, c]``
    (MSB first, see :func:`walk_tables`): its code and whether it passed within
    :data:`WALK_NEAR` units of a trial level. Two unsigned integer operations per step and no
    branch, so a loop over columns calling it is vectorized."""
    r = x
    gap = _U32(0xFFFFFFFF)
    for i in range(WALK_BITS):
        w = step[i, c]
        d = _U32(r - w)
        e = _U32(w - r)
        r = d if d < r else r
        gap = e if e < gap else gap
    k = r & _U32(255)
    near = (gap <= near_e[c]) | ((_U32(r >> _U32(8)) <= _U32(WALK_NEAR)) & (k > _U32(0)))
    return k, near


@jit
def _walk_codes(x, step, near_e, code, near):
    """Codes (into ``code``) and closeness (into ``near``) of the walks of words ``x``, one
    per column (:func:`_walk_one`); returns how many walks were close."""
    n_near = 0
    for c in range(x.shape[0]):
        k, f = _walk_one(x[c], step, near_e, c)
        code[c] = k
        near[c] = f
        n_near += f
    return n_near


@jit
def _walk_span(ps, ns, row, off, noff, cnt, a, b, x_max, scale, recon, step, near_e, half, v,
               near):
    """Walk the conversions ``e < cnt`` of ``ps[row, off + e] * a[e] + b[e]`` (``+ ns[row,
    noff + e]`` when ``ns`` has rows) ``+ half``, clipped to ``[0, x_max[e]]``, in the fixed point
    of ``scale[e]`` through step words ``step[:, e]`` (:func:`_walk_one`): values (code x
    ``recon[e]``) into ``v``, closeness into ``near``; returns how many walks were close. The
    one conversion expression of the row path (:func:`_convert_walk`) and the block path
    (:func:`_convert_blocks`), summed left to right as both always did."""
    n_near = 0
    # Row slices: indexed by the loop counter alone, the loads are contiguous (``off + e``
    # with a signed ``off`` made the compiler gather them).
    p = ps[row, off:off + cnt]
    if ns.shape[0] > 0:
        q = ns[row, noff:noff + cnt]
        for e in range(cnt):
            t = p[e] * a[e] + b[e] + q[e] + half
            k, f = _walk_one(_U32(min(max(t, 0.0), x_max[e]) * scale[e]) & _CODE_MASK, step,
                             near_e, e)
            v[e] = k * recon[e]
            near[e] = f
            n_near += f
    else:
        for e in range(cnt):
            t = p[e] * a[e] + b[e] + half
            k, f = _walk_one(_U32(min(max(t, 0.0), x_max[e]) * scale[e]) & _CODE_MASK, step,
                             near_e, e)
            v[e] = k * recon[e]
            near[e] = f
            n_near += f
    return n_near


@jit
def _walk_span_cal(ps, ns, row, off, noff, cnt, a, b, x_max, scale, recon, step, near_e, half,
                   inst, cal, x, code, near, v):
    """:func:`_walk_span` with a calibration table: the words of ``ps[row, off + e] * a[e] +
    b[e]`` (``+ ns[row, noff + e]`` when ``ns`` has rows) ``+ half`` into ``x``, their walks'
    codes into ``code`` and closeness into ``near`` (:func:`_walk_codes`), values
    ``cal[inst[e], code] x recon[e]`` into ``v`` for ``e < cnt``; returns how many walks were
    close (their values are redone by :func:`_redo_close`). The calibrated conversion of the
    row path (:func:`_convert_walk`) and the block path (:func:`_convert_blocks`)."""
    p = ps[row, off:off + cnt]
    if ns.shape[0] > 0:
        q = ns[row, noff:noff + cnt]
        for e in range(cnt):
            t = p[e] * a[e] + b[e]
            t += q[e]
            x[e] = _U32(min(max(t + half, 0.0), x_max[e]) * scale[e]) & _CODE_MASK
    else:
        for e in range(cnt):
            t = p[e] * a[e] + b[e]
            x[e] = _U32(min(max(t + half, 0.0), x_max[e]) * scale[e]) & _CODE_MASK
    n_near = _walk_codes(x[:cnt], step, near_e, code, near)
    for e in range(cnt):
        v[e] = cal[inst[e], code[e]] * recon[e]
    return n_near


@jit
def _convert_walk(psum, r, lin_a, lin_b, thr, step, scale, x_max, near_e, cal, col_inst,
                  codes, half, noise, recon_step, x, code, near, v):
    """Row ``r`` through threshold curves by the vectorized SAR walk (:func:`walk_tables`,
    its tables per column), with the codes of the rare walks that passed close to a trial
    level counted in the list ``thr``: the codes of :func:`_convert_row`. With a calibration
    table ``cal`` a code's value is looked up there. ``x``, ``code``, ``near`` are scratch
    rows."""
    n_cols = psum.shape[1]
    # The word of x: floor(x * scale) units, times 256 (scale * 256 is a power of two, so the
    # product is exact; the mask clears the code bits). One loop per case, each vectorized.
    if cal.shape[0] > 0:
        n_near = _walk_span_cal(psum, noise, r, 0, 0, n_cols, lin_a, lin_b, x_max, scale,
                                recon_step, step, near_e, half, col_inst, cal, x, code, near, v)
    else:
        n_near = _walk_span(psum, noise, r, 0, 0, n_cols, lin_a, lin_b, x_max, scale,
                            recon_step, step, near_e, half, v, near)
    if n_near:
        _redo_close(psum, noise, r, 0, 0, n_cols, lin_a, lin_b, recon_step, col_inst, cal,
                    thr, codes - 1, half, near, v)


@jit
def _redo_close(ps, ns, row, off, noff, cnt, a, b, recon, inst, cal, thr, top, half, near,
                v):
    """The conversions ``e < cnt`` of :func:`_walk_span` whose walk was close (``near[e]``):
    their codes counted in instance ``inst[e]``'s threshold list, their values (code, or
    ``cal[inst[e], code]`` with a calibration table, x ``recon[e]``) into ``v``. Blocks of 64
    without a close walk are skipped after a vectorized count."""
    p = ps[row, off:off + cnt]
    for c0 in range(0, cnt, 64):
        c1 = min(c0 + 64, cnt)
        blk = near[c0:c1]  # indexed from 0: a contiguous load (near[c] with c from c0 was not)
        hit = 0
        for e in range(blk.shape[0]):
            hit += blk[e]
        if hit == 0:
            continue
        for e in range(c0, c1):
            if near[e]:
                u = p[e] * a[e] + b[e]
                if ns.shape[0] > 0:
                    u += ns[row, noff + e]
                i = inst[e]
                k = _count_le(u, thr, i, top, half)
                v[e] = (cal[i, k] if cal.shape[0] > 0 else k) * recon[e]


@jit
def _instance_runs(col_inst, thr, lut_ok, codes):
    """Starts of the runs of adjacent columns converted by one ADC instance (plus the end),
    and per instance whether its curve converts branch-free (:func:`_convert_runs`): at most
    two thresholds per one-LSB bin and every threshold inside ``(0, codes)``, so that a value
    clamped into ``[0, codes - 1]`` finds its code in the tables."""
    n_cols = col_inst.shape[0]
    n_runs = 1
    for c in range(1, n_cols):
        if col_inst[c] != col_inst[c - 1]:
            n_runs += 1
    starts = np.empty(n_runs + 1, np.int64)
    starts[0] = 0
    s = 1
    for c in range(1, n_cols):
        if col_inst[c] != col_inst[c - 1]:
            starts[s] = c
            s += 1
    starts[n_runs] = n_cols
    last = thr.shape[1] - 1
    fast = np.empty(thr.shape[0], np.bool_)
    for i in range(thr.shape[0]):
        fast[i] = lut_ok[i] and thr[i, 0] > 0.0 and thr[i, last] < codes
    return starts, fast


@jit
def _convert_runs(psum, r, lin_a, lin_b, thr, lut_base, lut_t1, lut_t2, starts, fast,
                  col_inst, codes, half, noise, recon_step, v):
    """Row ``r`` through threshold curves without a calibration table, one run of columns of
    one ADC instance at a time: for a branch-free instance the inner loop has no branch (the
    value is clamped into the table's range; outside it the count of thresholds below is 0 or
    all, as the table says there), else the walk of :func:`_convert_row`. The same codes as
    :func:`_convert_row`."""
    top = codes - 1
    has_noise = noise.shape[0] > 0
    for s in range(starts.shape[0] - 1):
        c0 = starts[s]
        c1 = starts[s + 1]
        i = col_inst[c0]
        if fast[i]:
            base = lut_base[i]
            t1 = lut_t1[i]
            t2 = lut_t2[i]
            if has_noise:
                for c in range(c0, c1):
                    u = psum[r, c] * lin_a[c] + lin_b[c] + noise[r, c]
                    b = int(min(max(u, 0.0), top))
                    v[c] = (base[b] + (u >= t1[b]) + (u >= t2[b])) * recon_step[c]
            else:
                for c in range(c0, c1):
                    u = psum[r, c] * lin_a[c] + lin_b[c]
                    b = int(min(max(u, 0.0), top))
                    v[c] = (base[b] + (u >= t1[b]) + (u >= t2[b])) * recon_step[c]
            continue
        for c in range(c0, c1):
            u = psum[r, c] * lin_a[c] + lin_b[c]
            if has_noise:
                u += noise[r, c]
            v[c] = _count_le(u, thr, i, top, half) * recon_step[c]


@jit
def adc_accumulate(psum, row_of, n_samples, active, skip, lin_a, lin_b, thr, lut, cal, col_inst,
                   codes, half, noise_key, noise_sigma, noise_p0, noise_m0, noise_buf, recon_step,
                   direct, units, coef, step_weight, out, by_runs, walk, blocks):
    """Convert one row group's partial sums and shift-add them into the outputs.

    ``psum`` (rows, C) float32 (or int32 from an integer GEMM) holds the analog partial sums
    of every column (data columns ``0..J-1`` then unit columns) for step ``p`` and sample ``m``
    at row ``p*M + m``, or at row ``row_of[p*M + m]`` when ``row_of`` is not empty (``-1``:
    an all-zero block that converts to code 0 everywhere, so it adds nothing and is skipped).
    Column ``c`` is converted by ADC instance ``col_inst[c]``: ``u = psum*lin_a[c] + lin_b[c]``
    (+ comparator noise when ``noise_sigma`` > 0), coded, and reconstructed as ``v = code x
    recon_step[c]``. The noise of step ``p``, sample ``m`` is the row of stream ``noise_key``
    for step ``noise_p0 + p`` and sample ``noise_m0 + m`` (the chunk's first sample in the
    call), times ``noise_sigma``
    (:func:`sim.kernels.noise.comparator_noise`'s draws): drawn a block of rows at a time
    into a small buffer on the block path, into ``noise_buf`` (rows x C float32, at least
    ``psum``'s rows) for the row path.
    With a threshold table ``thr`` the code is looked up in ``lut`` (see :func:`threshold_lut`).
    With a calibration table ``cal`` (``(instances, codes)`` float64; ``(0, 0)``: none) the
    reconstructed value is ``cal[col_inst[c], code] x recon_step[c]`` (see
    :func:`two_step_tables`).
    Output ``n`` owns the ``per = J / N`` adjacent data columns ``n*per ...`` and adds, times
    ``step_weight[p]``::

        sum_j direct[j] v[j] + sum_t coef[n, t] v[units[n, t]]

    where the unit-column terms carry the offset bias and the flipped columns' ``top x unit``
    parts (see :func:`combine_coefficients`). A (step, sample) whose group inputs are all zero
    is skipped when ``skip``.

    ``by_runs``: threshold curves are converted by the vectorized SAR walk when ``walk``
    (its tables per instance, :func:`walk_tables`) is not empty, else (without a calibration
    table) one run of same-instance columns at a time (:func:`_convert_runs`); all give the
    bits of the column-by-column conversion, which ``False`` keeps only to test that.
    ``blocks``: rows narrower than :data:`WALK_BLOCK` columns are converted (by the walk, with
    or without a calibration table, or by an ideal ADC without one) over blocks of whole rows
    (:func:`_convert_blocks`, same bits) where every row is computed; ``False`` converts row
    by row (for tests).
    """
    n_steps = step_weight.shape[0]
    n_cols = psum.shape[1]
    v = np.empty(n_cols, dtype=np.float64)
    has_units = _has_units(coef)
    walks = by_runs and thr.shape[0] > 0 and walk[0].shape[0] > 0
    runs = by_runs and thr.shape[0] > 0 and cal.shape[0] == 0 and not walks
    starts, fast = _instance_runs(col_inst, thr, lut[3], codes) if runs else (
        np.zeros(1, np.int64), np.zeros(0, np.bool_))
    # The walk's tables per column; its scratch rows.
    n_walk = n_cols if walks else 0
    step_col = np.empty((WALK_BITS, n_walk), np.uint32)
    scale_col = np.empty(n_walk)
    x_max_col = np.empty(n_walk)
    near_col = np.empty(n_walk, np.uint32)
    for c in range(n_walk):
        i = col_inst[c]
        scale_col[c] = walk[1][i]
        x_max_col[c] = walk[2][i]
        near_col[c] = walk[3][i]
        for b in range(WALK_BITS):
            step_col[b, c] = walk[0][i, b]
    x_row = np.empty(n_walk, np.uint32)
    code_row = np.empty(n_walk, np.uint32)
    near_row = np.empty(n_walk, np.bool_)
    if blocks and (walks or (thr.shape[0] == 0 and cal.shape[0] == 0)) \
            and row_of.shape[0] == 0 and not skip and 0 < 2 * n_cols <= WALK_BLOCK:
        _convert_blocks(psum, n_samples, lin_a, lin_b, thr, col_inst, codes, half, noise_key,
                        noise_sigma, noise_p0, noise_m0, recon_step, direct, units, coef,
                        step_weight, out, walks, step_col, scale_col, x_max_col, near_col,
                        has_units, cal)
        return
    noise = noise_buf[:0]
    if noise_sigma > 0.0 and psum.shape[0] > 0:
        if noise_buf.shape[0] < psum.shape[0] or noise_buf.shape[1] != n_cols:
            raise ValueError("noise_buf must hold psum's rows and columns")
        noise = noise_buf[:psum.shape[0]]
        noise_k.fill_comparator(noise_key, noise_sigma, row_of, n_steps * n_samples,
                                n_samples, noise_p0, noise_m0, noise)
    # Steps outer, samples inner: partial sums are read in row order (prefetch-friendly); each
    # output still adds its steps in the order p = 0, 1, ... (same bits as samples outer).
    for p in range(n_steps):
        for m in range(n_samples):
            if skip and not active[p, m]:
                continue
            row = p * n_samples + m
            if row_of.shape[0] > 0:
                row = row_of[row]
                if row < 0:
                    continue
            if walks:
                _convert_walk(psum, row, lin_a, lin_b, thr, step_col, scale_col, x_max_col,
                              near_col, cal, col_inst, codes, half, noise, recon_step, x_row,
                              code_row, near_row, v)
            elif runs:
                _convert_runs(psum, row, lin_a, lin_b, thr, lut[0], lut[1], lut[2], starts,
                              fast, col_inst, codes, half, noise, recon_step, v)
            else:
                _convert_row(psum, row, lin_a, lin_b, thr, lut[0], lut[1], lut[2],
                             lut[3], cal, col_inst, codes, half, noise, recon_step, v)
            _add_outputs(v, 0, 0, out, m, 1, direct, units, coef, step_weight[p], has_units)


@jit_inline
def _unit_terms(coef, units, v, j, n):
    """``0.0 + sum_k coef[n, k] * v[j + units[n, k]]``, added in ``k`` order."""
    t = 0.0
    for k in range(units.shape[1]):
        t += coef[n, k] * v[j + units[n, k]]
    return t


@jit_inline
def _add_four(t, direct, d, v, j):
    """``t`` plus ``direct[d + q] * v[j + q]`` for ``q`` 0..3, added in that order, written
    out (no loop of unknown length: see :func:`_add_outputs`)."""
    t += direct[d] * v[j]
    t += direct[d + 1] * v[j + 1]
    t += direct[d + 2] * v[j + 2]
    t += direct[d + 3] * v[j + 3]
    return t


@jit
def _add_outputs(v, j0, stride, out, m0, n_rows, direct, units, coef, sw, has_units):
    """Shift-add ``n_rows`` converted rows into their outputs: row ``r`` of ``v`` starts at
    ``j0 + r x stride`` and belongs to output row ``out[m0 + r]``; output ``n`` adds
    ``sw x t`` with ``t = 0.0 + sum_k coef[n, k] v[units[n, k]] + sum_q direct[n*per + q]
    v[n*per + q]`` (offsets within the row), each output's terms added left to right.
    Without unit terms (``has_units`` false: every ``coef`` zero, :func:`_has_units`) the
    sum starts at ``0.0`` itself: ``0.0 + 0.0 x v`` is ``+0.0`` for every finite ``v``.

    With ``per`` 8 or 4 (16- or 8-bit weights in 2-bit cells) the ``q`` terms are written
    out: the same additions in the same order, but without an inner loop of unknown length
    the processor overlaps the outputs' addition chains (measured: 0.82 -> 0.41 ns per
    conversion for ``per`` 8 on a cache-resident row). The row path's; the block path adds
    many rows at once by :func:`_add_block_outputs` (same bits)."""
    n_out = out.shape[1]
    per = direct.shape[0] // n_out
    for r in range(n_rows):
        # The output row as a 1-D view: indexed by n alone (out[m0 + r, n] measured 4-11 %
        # slower on ISAAC's wide rows).
        acc = out[m0 + r]
        j0r = j0 + r * stride
        if per == 8:
            for n in range(n_out):
                t = _unit_terms(coef, units, v, j0r, n) if has_units else 0.0
                t = _add_four(t, direct, n * 8, v, j0r + n * 8)
                acc[n] += sw * _add_four(t, direct, n * 8 + 4, v, j0r + n * 8 + 4)
        elif per == 4:
            for n in range(n_out):
                t = _unit_terms(coef, units, v, j0r, n) if has_units else 0.0
                acc[n] += sw * _add_four(t, direct, n * 4, v, j0r + n * 4)
        else:
            d = 0
            for n in range(n_out):
                t = _unit_terms(coef, units, v, j0r, n) if has_units else 0.0
                for _ in range(per):
                    t += direct[d] * v[j0r + d]
                    d += 1
                acc[n] += sw * t


@jit
def _add_block_outputs(v, j0, stride, out, m0, n_rows, direct, units, coef, sw, has_units,
                       t):
    """:func:`_add_outputs` for a block of ``n_rows`` rows, output by output: each output's
    sums of all rows advance one term at a time (``t``: a scratch of at least ``n_rows``),
    so the rows' addition chains are independent and overlap, where the row order waits on
    one chain of ``per`` additions per output (narrow rows: 24 conversions, 3 outputs). Each
    output's terms are added in the same order: the same bits (measured on the CAP-RAM
    ResNet-20's 24-column rows: 1.8 -> 0.7 ns per conversion)."""
    n_out = out.shape[1]
    per = direct.shape[0] // n_out
    for n in range(n_out):
        if has_units:
            for r in range(n_rows):
                t[r] = _unit_terms(coef, units, v, j0 + r * stride, n)
        else:
            for r in range(n_rows):
                t[r] = 0.0
        for q in range(per):
            d = direct[n * per + q]
            # Indexed by an unsigned stride from a slice's start: no sign check per element.
            vq = v[j0 + n * per + q:]
            for r in range(n_rows):
                t[r] += d * vq[np.uint64(r) * np.uint64(stride)]
        o = out[m0:m0 + n_rows, n]
        for r in range(n_rows):
            o[r] += sw * t[r]


@jit
def _has_units(coef):
    """Whether any unit-column coefficient is nonzero (else the shift-add skips them)."""
    for n in range(coef.shape[0]):
        for k in range(coef.shape[1]):
            if coef[n, k] != 0.0:
                return True
    return False


#: Conversions per block of :func:`_convert_blocks` (whole rows of narrow layers).
WALK_BLOCK = 2048
#: Rows per block from which :func:`_convert_blocks` shift-adds output by output
#: (:func:`_add_block_outputs`); fewer (wider rows) keep the row order (:func:`_add_outputs`).
BLOCK_ROWS_BY_OUTPUT = 32


@jit
def _convert_blocks(psum, n_samples, lin_a, lin_b, thr, col_inst, codes, half, noise_key,
                    noise_sigma, noise_p0, noise_m0, recon_step, direct, units, coef,
                    step_weight, out, walks, step_col, scale_col, x_max_col, near_col,
                    has_units, cal):
    """:func:`adc_accumulate`'s path for rows narrower than :data:`WALK_BLOCK` columns, every
    row computed (no dropped rows, no skipping), by the SAR walk (``walks``; with a
    calibration table ``cal`` the codes' values are looked up there, as in
    :func:`_convert_walk`) or an ideal ADC (no threshold list, no calibration table): the
    conversions run over blocks of whole
    consecutive rows as one flat loop (the per-column tables tiled over the block), so they
    vectorize across rows where a row alone is a few vectors long, and the block's rows are
    shift-added in one call. Each conversion is the expression of the row path
    (:func:`_walk_span`, :func:`_round_span`) on the same values and each output adds its
    terms in the same order (:func:`_add_block_outputs`): the same bits. A block's comparator
    noise is drawn into a buffer of the block's size just before it is converted (the
    row path's draws; no array of a whole chunk's draws written and read back)."""
    n_cols = psum.shape[1]
    top = codes - 1
    has_noise = noise_sigma > 0.0
    sigma = np.float32(noise_sigma)
    # The caller takes this path only for 2 x n_cols <= WALK_BLOCK; no more rows per block
    # than there are (the tables below are filled per call).
    rows_blk = max(1, min(WALK_BLOCK // n_cols, n_samples))
    nb = rows_blk * n_cols
    nw = nb if walks else 0
    a_t = np.empty(nb)
    b_t = np.empty(nb)
    rs_t = np.empty(nb)
    sc_t = np.empty(nw)
    xm_t = np.empty(nw)
    ne_t = np.empty(nw, np.uint32)
    in_t = np.empty(nw, col_inst.dtype)
    st_t = np.empty((WALK_BITS, nw), np.uint32)
    for e in range(nb):
        c = e % n_cols
        a_t[e] = lin_a[c]
        b_t[e] = lin_b[c]
        rs_t[e] = recon_step[c]
    for e in range(nw):
        c = e % n_cols
        in_t[e] = col_inst[c]
        sc_t[e] = scale_col[c]
        xm_t[e] = x_max_col[c]
        ne_t[e] = near_col[c]
        for b in range(WALK_BITS):
            st_t[b, e] = step_col[b, c]
    v = np.empty(nb)
    near = np.empty(nw, np.bool_)
    t_out = np.empty(rows_blk)
    # Output by output where a block has many rows (narrow rows with few outputs each: their
    # addition chains are what a row waits on); wide rows keep the row order, whose many
    # outputs per row already overlap (measured: ISAAC's 129-513-column rows ran 10-15 %
    # slower output by output, 15 rows a block). The same bits either way.
    by_output = rows_blk >= BLOCK_ROWS_BY_OUTPUT
    with_cal = cal.shape[0] > 0
    x_blk = np.empty(nw if with_cal else 0, np.uint32)
    code_blk = np.empty(nw if with_cal else 0, np.uint32)
    pf = np.ascontiguousarray(psum).reshape(psum.shape[0] * n_cols)
    pf2 = pf.reshape((1, pf.shape[0]))
    nf2 = np.empty((1 if has_noise else 0, nb if has_noise else 0), np.float32)
    nf = nf2.reshape(-1)
    no_cal = np.zeros((0, 0))
    for p in range(step_weight.shape[0]):
        sw = step_weight[p]
        for m0 in range(0, n_samples, rows_blk):
            m1 = min(n_samples, m0 + rows_blk)
            cnt = (m1 - m0) * n_cols
            base = (p * n_samples + m0) * n_cols
            if has_noise:
                noise_k.draw_rows(noise_key, noise_p0 + p, noise_m0 + m0, m1 - m0, n_cols, nf,
                                  sigma)
            if walks and with_cal:
                n_near = _walk_span_cal(pf2, nf2, 0, base, 0, cnt, a_t, b_t, xm_t, sc_t, rs_t,
                                        st_t, ne_t, half, in_t, cal, x_blk, code_blk, near, v)
                if n_near:
                    _redo_close(pf2, nf2, 0, base, 0, cnt, a_t, b_t, rs_t, in_t, cal, thr,
                                top, half, near, v)
            elif walks:
                n_near = _walk_span(pf2, nf2, 0, base, 0, cnt, a_t, b_t, xm_t, sc_t, rs_t, st_t,
                                    ne_t, half, v, near)
                if n_near:
                    _redo_close(pf2, nf2, 0, base, 0, cnt, a_t, b_t, rs_t, in_t, no_cal, thr,
                                top, half, near, v)
            else:
                _round_span(pf2, nf2, 0, base, 0, cnt, a_t, b_t, top, half, rs_t, v)
            if by_output:
                _add_block_outputs(v, 0, n_cols, out, m0, m1 - m0, direct, units, coef, sw,
                                   has_units, t_out)
            else:
                _add_outputs(v, 0, n_cols, out, m0, m1 - m0, direct, units, coef, sw,
                             has_units)


def combine_coefficients(col_out, col_weight, flip, ref_col, flip_top, bias_weight, n_out):
    """Fold flips and the offset bias into per-output unit-column coefficients.

    A flipped column ``j`` contributes ``w (top x unit - v)``: its ``-w`` goes to ``direct`` and
    its ``w x top`` to the unit column ``ref_col[j]`` of its crossbar. The ``per`` adjacent
    columns of one output lie in consecutive crossbars (column tiles) whose unit columns are
    consecutive too: ``units[n, t]`` is the unit column of the ``t``-th crossbar of output ``n``
    and ``coef[n, t]`` its coefficient. The offset bias ``bias_weight x sum(inputs)`` is
    measured on the first. Without unit columns (``ref_col`` empty) there are no such terms.
    Returns ``(direct, units, coef)``.
    """
    direct = np.where(flip, -col_weight, col_weight).astype(np.float64)
    if ref_col.shape[0] == 0:
        return direct, np.zeros((n_out, 1), np.int32), np.zeros((n_out, 1))
    per = col_out.shape[0] // n_out
    refs = ref_col.reshape(n_out, per)
    first = refs[:, :1]
    span = int((refs[:, -1] - refs[:, 0]).max()) + 1
    offset = refs - first  # which of the output's crossbars each column is in
    c = np.where(flip, flip_top * col_weight, 0.0).reshape(n_out, per)
    coef = np.zeros((n_out, span))
    rows = np.repeat(np.arange(n_out), per)
    np.add.at(coef, (rows, offset.reshape(-1)), c.reshape(-1))
    coef[:, 0] += bias_weight
    units = np.minimum(first + np.arange(span)[None, :], refs[:, -1:]).astype(np.int32)
    return direct, np.ascontiguousarray(units), coef


#: Fraction bits of a calibrated code: the correction tables hold multiples of 1/16 LSB. Whole
#: codes were tried first: rounding the corrected value to the ADC's own LSB adds an error of
#: up to 1/2 LSB per conversion that does not cancel between columns, and made the output
#: error of some mismatched macros larger than without calibration (measured, notes of
#: issue 11).
TABLE_FRACTION_BITS = 4


def two_step_tables(ideal: np.ndarray, code: np.ndarray, inst: np.ndarray, n_inst: int,
                    codes: int) -> tuple[np.ndarray, dict]:
    """CAP-RAM's two-step calibration: per-instance correction tables ``(n_inst, codes)``.

    ``ideal`` are the known ideal values (code units) of calibration conversions, ``code``
    the codes the ADCs gave for them, ``inst`` which instance converted each (all 1-D).
    Only unsaturated conversions (``0 < code < codes-1``) enter the fits.

    1. **Per-ADC linear fit**: least squares ``code = a_i x ideal + b_i`` per instance, so
       the linear estimate of code ``k`` is ``(k - b_i) / a_i`` (gain and offset removed).
    2. **Master curve**: the residual ``ideal - (k - b_i) / a_i`` averaged over every
       instance, per one-LSB bin of the linear estimate (empty bins interpolated): the
       nonlinearity common to the ADCs. It is added to each instance's linear estimate.

    Code 0 of a fitted instance takes the mean ideal value of its calibration conversions
    that gave code 0 (the end of the range, where the line does not hold). The corrected
    value of each code is rounded to :data:`TABLE_FRACTION_BITS` fraction bits
    (a digital word a few bits wider than the code). An instance with fewer than two
    distinct calibration values keeps the identity. Returns ``(table, info)``; ``info``
    holds ``gain`` and ``offset`` (``a_i``, ``b_i``, shape ``(n_inst,)``), ``master``
    (``(codes,)`` LSB), ``fitted`` (bool per instance) and ``samples`` (conversions used).
    """
    ideal = np.asarray(ideal, np.float64).reshape(-1)
    code = np.asarray(code, np.float64).reshape(-1)
    inst = np.asarray(inst, np.int64).reshape(-1)
    top = codes - 1
    ok = (code > 0) & (code < top)
    t, c, i = ideal[ok], code[ok], inst[ok]
    n = np.bincount(i, minlength=n_inst).astype(np.float64)
    st = np.bincount(i, t, n_inst)
    sc = np.bincount(i, c, n_inst)
    stt = np.bincount(i, t * t, n_inst)
    stc = np.bincount(i, t * c, n_inst)
    den = n * stt - st * st
    fitted = (n >= 2) & (den > 1e-9 * np.maximum(n * stt, 1.0))
    gain = np.ones(n_inst)
    offset = np.zeros(n_inst)
    gain[fitted] = (n * stc - st * sc)[fitted] / den[fitted]
    fitted &= gain > 0  # a falling fit is no transfer curve: keep the identity
    gain[~fitted] = 1.0
    offset[fitted] = (sc[fitted] - gain[fitted] * st[fitted]) / n[fitted]
    # Step 2: the common residual nonlinearity, per one-LSB bin of the linear estimate
    # (from the fitted instances only).
    keep = fitted[i]
    t, c, i = t[keep], c[keep], i[keep]
    est = (c - offset[i]) / gain[i]
    bins = np.clip(np.rint(est), 0, top).astype(np.int64)
    cnt = np.bincount(bins, minlength=codes)
    res = np.bincount(bins, t - est, codes)
    have = cnt > 0
    grid = np.arange(codes, dtype=np.float64)
    master = (np.interp(grid, grid[have], res[have] / cnt[have]) if have.any()
              else np.zeros(codes))
    lin = (grid[None, :] - offset[:, None]) / gain[:, None]
    scale = float(1 << TABLE_FRACTION_BITS)
    table = np.rint((lin + np.interp(lin, grid, master)) * scale) / scale + 0.0
    # Code 0 stands for every input at or below the first threshold (a dead zone when the
    # offset is negative) and zero MACs are common: its value is the mean ideal value of the
    # instance's calibration conversions that gave code 0, not the extrapolated line.
    zero = code == 0
    n0 = np.bincount(inst[zero], minlength=n_inst)
    s0 = np.bincount(inst[zero], ideal[zero], n_inst)
    use = fitted & (n0 > 0)
    table[use, 0] = np.rint(s0[use] / n0[use] * scale) / scale + 0.0
    table[~fitted] = grid
    info = {"gain": gain, "offset": offset, "master": master, "fitted": fitted,
            "samples": int(ok.sum())}
    return table, info
