"""One Euclidean projection (the ADMM Z-step) and one independent constraint check per method.

Every projection works on one *piece*: a Conv2d weight ``(out, in, kh, kw)`` or a 2-D matrix
``(out, in)`` (a Linear weight, or one gate matrix of a GRU weight). Two views of a piece
are used, and each method says which:

* the torch matrix ``m = w.reshape(out, -1)`` (rows = outputs, columns = inputs), and
* the crossbar matrix ``v = m.T`` of shape ``(K, N)``, exactly as the torch bridge programs
  it (row ``k`` = input line, in ``(c, kh, kw)`` order for convolutions; column ``n`` =
  output). Fragments (polarization) and unification blocks live on this view because that
  is what the crossbar sees.

A projection returns the point of its constraint set nearest to ``w`` (Euclidean) where that
is tractable; where it is not, the docstring says what it computes instead. ``satisfied``
checks the constraint by counting, independently of ``project``, so tests can hold one
against the other.

Methods compose by applying their projections sequentially in :data:`ORDER` (support-
reducing methods first, then unification, polarization and quantization). Every later step
only zeros weights, keeps signs, or maps equal magnitudes to equal magnitudes, so it never
breaks the constraint of an earlier step; ``tests/test_compress.py`` checks every composed
constraint on random weights.
"""

from __future__ import annotations

import heapq
import math
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from sim.kernels.weights import fragment_signs, polarize

#: Order in which the projections of one layer are applied (see the module docstring).
ORDER = ("pattern", "connectivity", "structured", "bsp", "unstructured", "unify", "polarize",
         "quantize")


def keep_count(n: int, rate: float) -> int:
    """How many of ``n`` groups a pruning rate keeps: ``ceil(n / rate)`` (all at rate 1)."""
    return min(n, max(1, math.ceil(n / rate - 1e-9))) if n else 0


def top_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask of the ``k`` largest ``scores``; ties go to the lower flat index."""
    flat = scores.reshape(-1)
    order = torch.sort(flat, descending=True, stable=True).indices
    mask = torch.zeros(flat.numel(), dtype=torch.bool)
    mask[order[:k]] = True
    return mask.reshape(scores.shape)


def matrix(w: torch.Tensor) -> torch.Tensor:
    """The torch matrix view ``(out, fan_in)`` of a piece."""
    return w.reshape(w.shape[0], -1)


def group_energy(w: torch.Tensor, axis: str) -> torch.Tensor:
    """Squared L2 norm of each filter (``axis: filter``, dim 0) or each input channel
    (``axis: channel``, dim 1) of a piece."""
    sq = w.pow(2)
    if axis == "filter":
        return matrix(sq).sum(1)
    return sq.sum(dim=[d for d in range(w.dim()) if d != 1])


class Projection(ABC):
    """The constraint of one compression method on one piece."""

    #: Key of the method in the compression YAML.
    method: str = ""

    @abstractmethod
    def project(self, w: torch.Tensor) -> torch.Tensor:
        """The (Euclidean-nearest, where tractable) point of the constraint set."""

    @abstractmethod
    def satisfied(self, w: torch.Tensor) -> bool:
        """Whether ``w`` meets the constraint (checked by counting, not by projecting)."""

    def freeze(self, w: torch.Tensor) -> Projection:
        """A projection with this one's discrete choices on ``w`` fixed (for fine-tuning)."""
        return self

    def stats(self, w: torch.Tensor) -> dict[str, Any]:
        """Achieved figures of the constraint on ``w`` (for the manifest)."""
        return {}


@dataclass(frozen=True)
class Unstructured(Projection):
    """Keep the ``ceil(numel / rate)`` weights of largest magnitude (exactly nearest)."""

    rate: float
    method = "unstructured"

    def project(self, w):  # noqa: D102
        keep = top_mask(w.abs(), keep_count(w.numel(), self.rate))
        return torch.where(keep, w, torch.zeros_like(w))

    def satisfied(self, w):  # noqa: D102
        return int((w != 0).sum()) <= keep_count(w.numel(), self.rate)


@dataclass(frozen=True)
class Structured(Projection):
    """Keep the ``ceil(n / rate)`` filters (outputs) or channels (inputs) of largest L2 norm.

    A filter is an output channel (a crossbar column); a channel is an input channel (the
    ``kh x kw`` crossbar rows of one input channel, one row for a Linear). Exactly nearest.
    ``axis: both`` keeps ``ceil(filters / rate)`` filters, then, of what they hold,
    ``ceil(channels / rate)`` channels (a kept block of whole rows and whole columns: the
    packed mapping then maps ``rate**2`` times fewer cells; nearest per step, not jointly).

    ``filters`` / ``channels``: kept sets fixed from outside (a coupling between a layer's
    filters and the next layer's channels, chosen jointly by
    :func:`coupled_keep`); they are applied first, then the free axes of ``axis`` keep their
    largest groups among what is left.
    """

    rate: float
    axis: str = "filter"
    filters: tuple[int, ...] | None = None
    channels: tuple[int, ...] | None = None
    method = "structured"

    @staticmethod
    def _expand(keep, w, axis):
        shape = [1] * w.dim()
        shape[0 if axis == "filter" else 1] = -1
        return keep.reshape(shape).expand_as(w)

    def _free_axes(self):
        axes = ("filter", "channel") if self.axis == "both" else (self.axis,)
        fixed = {"filter": self.filters, "channel": self.channels}
        return [a for a in axes if fixed[a] is None]

    def _fixed(self):
        return [(a, s) for a, s in (("filter", self.filters), ("channel", self.channels))
                if s is not None]

    def project(self, w):  # noqa: D102
        for axis, kept in self._fixed():
            n = w.shape[0 if axis == "filter" else 1]
            keep = torch.zeros(n, dtype=torch.bool)
            keep[list(kept)] = True
            w = torch.where(self._expand(keep, w, axis), w, torch.zeros_like(w))
        for axis in self._free_axes():
            scores = group_energy(w, axis)
            keep = top_mask(scores, keep_count(scores.numel(), self.rate))
            w = torch.where(self._expand(keep, w, axis), w, torch.zeros_like(w))
        return w

    def satisfied(self, w):  # noqa: D102
        axes = ("filter", "channel") if self.axis == "both" else (self.axis,)
        fixed = dict(self._fixed())
        for axis in set(axes) | set(fixed):
            nonzero = group_energy(w, axis) > 0
            if int(nonzero.sum()) > keep_count(nonzero.numel(), self.rate) and axis in axes:
                return False
            if axis in fixed and not set(torch.nonzero(nonzero).flatten().tolist()) <= set(
                    fixed[axis]):
                return False
        return True

    def stats(self, w):  # noqa: D102
        out = {}
        for axis in ("filter", "channel"):
            out[f"kept_{axis}s"] = int((group_energy(w, axis) > 0).sum())
        return out


def coupled_keep(producer: torch.Tensor, consumers: list[torch.Tensor], k: int
                 ) -> tuple[int, ...]:
    """The ``k`` channels kept jointly as the producer's filters and the consumers' channels.

    The producer's filter ``c`` feeds channel ``c`` of each consumer (the next convolution
    or Linear), so pruning one without the other wastes cells: a kept channel whose filter is
    pruned reads a constant map, a kept filter whose channel is pruned is computed for
    nothing. Removing channel ``c`` from all of them costs ``||P[c]||^2 + sum ||C[:, c]||^2``,
    so keeping the ``k`` largest sums is the exactly nearest point of the coupled constraint
    alone (ties to the lower index).
    """
    score = coupled_score(producer, consumers)
    return tuple(sorted(torch.nonzero(top_mask(score, k)).flatten().tolist()))


def coupled_score(producer: torch.Tensor, consumers: list[torch.Tensor]) -> torch.Tensor:
    """Per channel ``c``: ``||P[c]||^2 + sum ||C[:, c]||^2``, what removing it costs (zero
    exactly when the filter and every consumer's channel ``c`` are zero)."""
    score = group_energy(producer, "filter").double()
    for c in consumers:
        score = score + group_energy(c, "channel").double()
    return score


@dataclass(frozen=True)
class Quantize(Projection):
    """Symmetric ``bits``-bit grid per output channel, ``{A x q / qmax : |q| <= qmax}``.

    ``scale: max`` (default): the top level ``A`` is the channel's largest magnitude, the same
    grid as the torch bridge's :func:`mappers.quantize.quantize_weights`, and the projection
    is the nearest point of that grid (the scale itself is not optimized). At 2 bits this grid
    is ``{-max, 0, +max}``: every weight below ``max / 2`` becomes zero.

    ``scale: fit``: ``A`` is chosen per channel to minimize ``||w - A q / qmax||^2`` (a
    search over 96 candidate top levels ``max|w| / t``, ``t`` geometric in
    ``[(qmax - 0.49) / qmax, 8]``, then alternating refinement ``A = qmax sum(w q) / sum(q^2)``
    while it strictly lowers the error: the least-squares scale of TWN-style ternary and
    Lloyd-style multi-bit quantizers; near-optimal, not proven optimal). ``A`` is kept where
    the top code ``qmax`` is used, so the largest projected magnitude is ``A`` and the bridge's
    max-scale re-quantization reproduces the codes exactly.

    Both write values as ``A x (q / qmax)`` so the top level is kept bit for bit and the
    projection is exactly idempotent; ``satisfied`` is the same check for both (on the grid
    of the channel's own largest magnitude).
    """

    bits: int
    scale: str = "max"
    method = "quantize"

    #: Candidate top levels of ``scale: fit`` per channel.
    FIT_CANDIDATES = 96

    def _codes(self, w):
        m = matrix(w).double()
        qmax = 2 ** (self.bits - 1) - 1
        amax = m.abs().amax(dim=1, keepdim=True)
        safe = torch.where(amax > 0, amax, torch.ones_like(amax))
        q = torch.round(m / (safe / qmax)).clamp(-qmax, qmax)
        return q, safe, qmax

    def _fit(self, w):
        """Codes and per-channel top level of ``scale: fit``."""
        q, amax, qmax = self._codes(w)  # candidate t = 1 (the max-scale grid) first
        m = matrix(w).double()

        def codes(top):
            return torch.round(m / (top / qmax)).clamp(-qmax, qmax)

        def error(top, c):
            return (m - top * (c / qmax)).pow(2).sum(1, keepdim=True)

        best_top, best_q = amax, q
        best = error(amax, q)
        lo = math.log((qmax - 0.49) / qmax)
        for t in torch.logspace(lo, math.log(8.0), self.FIT_CANDIDATES, base=math.e,
                                dtype=torch.float64).tolist():
            top = amax / t
            c = codes(top)
            err = error(top, c)
            better = err < best
            best = torch.where(better, err, best)
            best_top = torch.where(better, top, best_top)
            best_q = torch.where(better, c, best_q)
        tol = 1e-9 * m.pow(2).sum(1, keepdim=True)  # below float32 rounding: not a gain
        for _ in range(8):  # alternating least squares: scale for the codes, codes for it
            qq = best_q.pow(2).sum(1, keepdim=True)
            top = qmax * (m * best_q).sum(1, keepdim=True) / torch.where(qq > 0, qq, 1.0)
            top = torch.where(qq > 0, top, best_top)
            c = codes(top)
            err = error(top, c)
            uses_top = (c.abs() == qmax).any(1, keepdim=True)
            better = (err < best - tol) & uses_top & (top > 0)
            if not bool(better.any()):
                break
            best = torch.where(better, err, best)
            best_top = torch.where(better, top, best_top)
            best_q = torch.where(better, c, best_q)
        return best_q, best_top, qmax

    def project(self, w):  # noqa: D102
        q, top, qmax = self._fit(w) if self.scale == "fit" else self._codes(w)
        top = top.to(w.dtype).double()  # the stored top level, which ``satisfied`` reads back
        # "+ 0.0" turns the -0.0 of negative weights rounded to zero into 0.0
        return (top * (q / qmax) + 0.0).to(w.dtype).reshape(w.shape)

    def satisfied(self, w):  # noqa: D102
        q, amax, qmax = self._codes(w)
        on_grid = (amax * (q / qmax)).to(w.dtype).reshape(w.shape) == w
        levels = [torch.unique(row).numel() for row in q]
        return bool(on_grid.all()) and max(levels, default=0) <= 2 * qmax + 1

    def stats(self, w):  # noqa: D102
        return {"bits": self.bits, "scale": self.scale}


def kernel_pattern_codes(w: torch.Tensor) -> torch.Tensor:
    """PatDNN's natural pattern of every 3x3 kernel: centre plus its 3 largest others.

    Returns int64 9-bit codes (bit ``i`` = position ``i`` of the row-major 3x3 kernel).
    """
    mag = w.detach().reshape(-1, 9).abs().double().clone()
    mag[:, 4] = math.inf  # the centre is always kept
    order = torch.sort(mag, dim=1, descending=True, stable=True).indices[:, :4]
    bits = torch.zeros_like(mag, dtype=torch.int64)
    bits.scatter_(1, order, 1)
    return (bits * (1 << torch.arange(9))).sum(1)


def pattern_library(weights: list[torch.Tensor], size: int) -> list[int]:
    """The ``size`` most frequent natural patterns over all kernels of ``weights``.

    Ties in frequency go to the smaller code, so the library is deterministic.
    """
    counts: Counter[int] = Counter()
    for w in weights:
        counts.update(kernel_pattern_codes(w).tolist())
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [code for code, _ in ranked[:size]]


def _code_masks(codes: list[int]) -> torch.Tensor:
    return torch.tensor([[(c >> i) & 1 for i in range(9)] for c in codes], dtype=torch.bool)


@dataclass(frozen=True)
class Pattern(Projection):
    """PatDNN: every 3x3 kernel keeps only the 4 entries of one library pattern.

    Each kernel gets the library pattern keeping the most L2 norm, which is exactly the
    nearest point of the set (ties go to the earlier library entry).
    """

    library: tuple[int, ...]
    method = "pattern"

    def project(self, w):  # noqa: D102
        masks = _code_masks(list(self.library)).to(w.dtype)  # (P, 9)
        kernels = w.reshape(-1, 9)
        kept = kernels.pow(2) @ masks.T  # (kernels, P)
        best = torch.argmax(kept, dim=1)  # first maximum
        return (kernels * masks[best]).reshape(w.shape)

    def satisfied(self, w):  # noqa: D102
        support = (w.reshape(-1, 9) != 0)
        masks = _code_masks(list(self.library))
        fits = ~(support[:, None, :] & ~masks[None, :, :]).any(dim=2)  # (kernels, P)
        return bool(fits.any(dim=1).all())

    def stats(self, w):  # noqa: D102
        return {"library": [f"{c:09b}"[::-1] for c in self.library]}


@dataclass(frozen=True)
class Connectivity(Projection):
    """PatDNN connectivity pruning: keep ``ceil(out*in / rate)`` whole kernels by L2 norm.

    Exactly nearest. Applied after :class:`Pattern`, the pair is the exact projection onto
    both constraints together: each kernel's best pattern fixes its kept norm, then the
    kernels of largest kept norm survive.
    """

    rate: float
    method = "connectivity"

    def project(self, w):  # noqa: D102
        norms = w.pow(2).sum(dim=(2, 3))
        keep = top_mask(norms, keep_count(norms.numel(), self.rate))
        return w * keep[:, :, None, None].to(w.dtype)

    def satisfied(self, w):  # noqa: D102
        alive = (w != 0).any(dim=3).any(dim=2)
        return int(alive.sum()) <= keep_count(alive.numel(), self.rate)

    def stats(self, w):  # noqa: D102
        alive = (w != 0).any(dim=3).any(dim=2)
        return {"kernels": alive.numel(), "kernels_kept": int(alive.sum())}


def _blocks(rows: int, cols: int, br: int, bc: int):
    for r in range(0, rows, br):
        for c in range(0, cols, bc):
            yield slice(r, min(r + br, rows)), slice(c, min(c + bc, cols))


@dataclass(frozen=True)
class BlockStructured(Projection):
    """RTMobile BSP on the torch matrix ``(out, in)``: in every ``block[0] x block[1]``
    block, prune whole columns (inputs), then whole rows (outputs).

    Within a block of ``c`` columns the ``ceil(c / column_rate)`` columns of largest L2 norm
    survive; then, of the column-pruned block's ``r`` rows, the ``ceil(r / row_rate)`` of
    largest L2 norm. Column-only or row-only, this is exactly nearest; with both it is the
    paper's two-step order (a joint row-and-column choice is combinatorial), not
    guaranteed nearest.
    """

    block: tuple[int, int]
    column_rate: float = 1.0
    row_rate: float = 1.0
    method = "bsp"

    def project(self, w):  # noqa: D102
        m = matrix(w).clone()
        for rs, cs in _blocks(*m.shape, *self.block):
            b = m[rs, cs]
            cols = top_mask(b.pow(2).sum(0), keep_count(b.shape[1], self.column_rate))
            b = b * cols[None, :].to(b.dtype)
            rows = top_mask(b.pow(2).sum(1), keep_count(b.shape[0], self.row_rate))
            m[rs, cs] = b * rows[:, None].to(b.dtype)
        return m.reshape(w.shape)

    def satisfied(self, w):  # noqa: D102
        m = matrix(w) != 0
        for rs, cs in _blocks(*m.shape, *self.block):
            b = m[rs, cs]
            if int(b.any(0).sum()) > keep_count(b.shape[1], self.column_rate):
                return False
            if int(b.any(1).sum()) > keep_count(b.shape[0], self.row_rate):
                return False
        return True

    def stats(self, w):  # noqa: D102
        m = matrix(w) != 0
        empty = sum(not bool(m[rs, cs].any()) for rs, cs in _blocks(*m.shape, *self.block))
        total = sum(1 for _ in _blocks(*m.shape, *self.block))
        return {"blocks": total, "empty_blocks": empty}


#: Block states of a unification assignment.
FREE, UNIFIED, ZERO = 0, 1, 2


def _common_integers(*costs: np.ndarray) -> list[list[int]]:
    """Finite non-negative float64 costs as Python integers on one binary scale, so sums
    and comparisons of them are exact (``x = m * 2**e`` with a 53-bit integer ``m``)."""
    flat = np.concatenate([np.asarray(c, dtype=np.float64).ravel() for c in costs])
    if not np.isfinite(flat).all() or (flat < 0).any():
        raise ValueError("unification block costs must be finite and non-negative "
                         "(non-finite weights?)")
    mant, exp = np.frexp(flat)
    m = (mant * 2.0 ** 53).astype(np.int64)  # exact: a float64 mantissa has 53 bits
    e = exp.astype(np.int64) - 53
    low = int(e[m != 0].min()) if (m != 0).any() else 0
    ints = [int(mi) << int(ei - low) if mi else 0 for mi, ei in zip(m, e, strict=True)]
    out, start = [], 0
    for c in costs:
        out.append(ints[start:start + np.size(c)])
        start += np.size(c)
    return out


def _smallest_sums(values: list[int], order: list[int], k: int) -> list[int | None]:
    """``out[p]``: the sum of the ``k`` smallest ``values`` (ties to the lower index) among
    the first ``p`` indices of ``order``; ``None`` while fewer than ``k`` are seen."""
    out: list[int | None] = [None] * (len(order) + 1)
    if k == 0:
        return [0] * (len(order) + 1)
    heap: list[tuple[int, int]] = []  # max-heap of the kept (value, index), negated
    total = 0
    for p, i in enumerate(order, 1):
        if len(heap) < k:
            heapq.heappush(heap, (-values[i], -i))
            total += values[i]
        elif (values[i], i) < (-heap[0][0], -heap[0][1]):
            total += values[i] + heapq.heapreplace(heap, (-values[i], -i))[0]
        if len(heap) == k:
            out[p] = total
    return out


def choose_blocks(zero_cost: np.ndarray, unify_cost: np.ndarray, n_zero: int,
                  n_unify: int) -> np.ndarray:
    """The exact minimum-cost block states: ``n_zero`` blocks ``ZERO``, ``n_unify`` others
    ``UNIFIED``, the rest ``FREE`` (cost 0), minimizing the summed costs.

    Exact, in ``O(n log n)``: order the blocks by ``d = zero_cost - unify_cost`` (ties by
    index). Some optimal choice zeroes only blocks ordered before every unified one (if a
    zeroed block ``i`` came after a unified ``j``, swapping their states changes the cost
    by ``d_j - d_i <= 0``). So for the best split ``p`` of that order, the zeroed blocks are
    the ``n_zero`` cheapest to zero among the first ``p`` and the unified ones the
    ``n_unify`` cheapest to unify among the others; every split is tried with two running
    heaps. Costs are summed as exact integers (each float64 cost is an integer multiple of
    a common power of two), so the minimum is the true one of the given costs, not one
    subject to rounding. Ties go to the smallest split, then to the lower block index.
    """
    n = len(zero_cost)
    if len(unify_cost) != n or n_zero < 0 or n_unify < 0 or n_zero + n_unify > n:
        raise ValueError(f"cannot choose {n_zero} zero and {n_unify} unified blocks of {n}")
    state = np.full(n, FREE, dtype=np.int64)
    if n_zero + n_unify == 0:
        return state
    z, u = _common_integers(zero_cost, unify_cost)
    order = sorted(range(n), key=lambda i: (z[i] - u[i], i))
    head = _smallest_sums(z, order, n_zero)
    tail = _smallest_sums(u, order[::-1], n_unify)[::-1]
    split = min((p for p in range(n_zero, n - n_unify + 1)),
                key=lambda p: (head[p] + tail[p], p))
    zeroed = sorted(order[:split], key=lambda i: (z[i], i))[:n_zero]
    unified = sorted(order[split:], key=lambda i: (u[i], i))[:n_unify]
    state[zeroed] = ZERO
    state[unified] = UNIFIED
    return state


@dataclass(frozen=True)
class Unify(Projection):
    """Micro-structured weight unification on the crossbar matrix ``(K, N)``.

    The matrix is cut into ``block[0]`` rows x ``block[1]`` columns blocks (edge blocks may
    be smaller). ``round(zero_fraction x blocks)`` blocks are set to zero (micro-structured
    pruning) and ``round(unify_fraction x blocks)`` others are unified: every nonzero weight
    of the block takes the block's mean ``|w|`` with its sign kept (the Euclidean-optimal
    shared value for fixed signs). Zeros inside a unified block stay zero, so the method
    composes with pruning and polarization applied before or after it.

    Blocks are selected by an exact minimum-cost choice (:func:`choose_blocks`): zeroing a
    block costs ``sum w**2``, unifying it costs ``sum (|w| - mean|w|)**2``, leaving it free
    costs nothing. The result is the nearest point of the set on weights without exact
    zeros.
    """

    block: tuple[int, int]
    zero_fraction: float = 0.0
    unify_fraction: float = 0.0
    #: Fixed block states (``FREE``/``UNIFIED``/``ZERO``, one per block in row-major block
    #: order) of a frozen projection; ``None`` chooses them on every call.
    assignment: tuple[int, ...] | None = field(default=None, compare=False)
    method = "unify"

    def _tiles(self, w):
        """The crossbar view cut into blocks: ``(Kb, Nb, br*bc)`` (zero-padded), float64."""
        v = matrix(w).T.double()
        br, bc = self.block
        kb, nb = -(-v.shape[0] // br), -(-v.shape[1] // bc)
        pad = torch.zeros(kb * br, nb * bc, dtype=torch.float64)
        pad[:v.shape[0], :v.shape[1]] = v
        return pad.reshape(kb, br, nb, bc).permute(0, 2, 1, 3).reshape(kb, nb, br * bc)

    def _untile(self, tiles, w):
        br, bc = self.block
        kb, nb, _ = tiles.shape
        k, n = matrix(w).T.shape
        v = tiles.reshape(kb, nb, br, bc).permute(0, 2, 1, 3).reshape(kb * br, nb * bc)
        return v[:k, :n].T.reshape(w.shape).to(w.dtype)

    @staticmethod
    def _shared(tiles):
        """Per block: the shared magnitude (mean of nonzero ``|w|``; an already-shared value
        as is, for exact idempotence), and whether the nonzero magnitudes are all equal."""
        mag = tiles.abs()
        nz = mag != 0
        count = nz.sum(-1)
        top = mag.amax(-1)
        low = torch.where(nz, mag, torch.full_like(mag, math.inf)).amin(-1)
        equal = (top == low) | (count == 0)
        mean = mag.sum(-1) / count.clamp(min=1)
        return torch.where(equal, top, mean), equal, count

    def counts(self, blocks: int) -> tuple[int, int]:
        """Blocks zeroed and blocks unified (beyond the zeroed ones) out of ``blocks``."""
        n_zero = int(math.floor(self.zero_fraction * blocks + 0.5))
        n_unify = int(math.floor(self.unify_fraction * blocks + 0.5))
        return n_zero, min(n_unify, blocks - n_zero)

    def choose(self, w: torch.Tensor) -> tuple[int, ...]:
        """The state of every block in the nearest assignment."""
        tiles = self._tiles(w)
        a, _, _ = self._shared(tiles)
        mag = tiles.abs()
        zero = mag.pow(2).sum(-1).reshape(-1).numpy()
        unify = torch.where(mag != 0, mag - a[..., None], torch.zeros_like(mag)).pow(2).sum(-1)
        unify = unify.reshape(-1).numpy()
        return tuple(int(s) for s in choose_blocks(zero, unify, *self.counts(len(zero))))

    def project(self, w):  # noqa: D102
        state = self.assignment if self.assignment is not None else self.choose(w)
        tiles = self._tiles(w)
        a, _, _ = self._shared(tiles)
        state_t = torch.tensor(state, dtype=torch.int64).reshape(tiles.shape[:2])[..., None]
        unified = torch.sign(tiles) * a[..., None]
        out = torch.where(state_t == UNIFIED, unified, tiles)
        out = torch.where(state_t == ZERO, torch.zeros_like(tiles), out)
        return self._untile(out, w)

    def freeze(self, w):  # noqa: D102
        return Unify(self.block, self.zero_fraction, self.unify_fraction,
                     assignment=self.choose(w))

    def _states(self, w):
        _, equal, count = self._shared(self._tiles(w))
        zeros = int((count == 0).sum())
        unified = int((equal & (count > 0)).sum())
        return zeros, unified, count.numel()

    def satisfied(self, w):  # noqa: D102
        zeros, unified, total = self._states(w)
        n_zero, n_unify = self.counts(total)
        return zeros >= n_zero and zeros + unified >= n_zero + n_unify

    def stats(self, w):  # noqa: D102
        _, equal, count = self._shared(self._tiles(w))
        zeros, unified, total = self._states(w)
        free_nonzero = int(count[~equal].sum())
        stored = free_nonzero + unified  # one magnitude per unified block
        return {"blocks": total, "zero_blocks": zeros, "unified_blocks": unified,
                "stored_magnitudes": stored,
                "storage_rate": w.numel() / stored if stored else math.inf}


@dataclass(frozen=True)
class Polarize(Projection):
    """FORMS polarization: every fragment-column of the crossbar matrix ``(K, N)`` (the
    ``fragment_rows`` consecutive rows of one column) holds weights of one sign.

    The Z-step is :func:`sim.kernels.weights.polarize` itself (keeps, per fragment, the sign
    with the larger *sum of magnitudes*). The Euclidean-nearest choice would compare sums of
    *squares*; on most fragments the two agree, but not always (see
    ``docs/compression.md``), and the engine's function is reused rather than duplicated.
    """

    fragment_rows: int
    method = "polarize"

    def project(self, w):  # noqa: D102
        v = matrix(w).T.detach().cpu().numpy()
        out = polarize(v, self.fragment_rows)
        return torch.from_numpy(np.ascontiguousarray(out.T)).to(w.dtype).reshape(w.shape)

    def satisfied(self, w):  # noqa: D102
        v = np.sign(matrix(w).T.detach().cpu().numpy()).astype(np.int64)
        try:
            fragment_signs(v, self.fragment_rows)
        except ValueError:
            return False
        return True

    def stats(self, w):  # noqa: D102
        k, n = matrix(w).T.shape
        return {"fragment_rows": self.fragment_rows,
                "fragments": -(-k // self.fragment_rows) * n}


def compose(projections: list[Projection]) -> list[Projection]:
    """``projections`` sorted into :data:`ORDER`, the order they are applied in."""
    return sorted(projections, key=lambda p: ORDER.index(p.method))


def project_all(projections: list[Projection], w: torch.Tensor) -> torch.Tensor:
    """Apply the composed projections of one piece in :data:`ORDER`."""
    for p in compose(projections):
        w = p.project(w)
    return w
