"""Bit-true functional model of one layer's weight matrix programmed into crossbars.

:class:`CrossbarLayer` takes an integer weight matrix ``(K, N)`` and an :class:`~sim.config.Arch`,
encodes the weights into cell levels, tiles them over crossbars (``rows`` x ``columns`` plus an
optional unit column each), draws the static non-idealities of its cells and ADC instances from
its seed, and multiplies integer input matrices ``(M, K)`` exactly as the hardware would:
DAC steps, analog partial sums per (row group, column, step), ADC conversion, shift-and-add.
It returns the outputs and the exact event counts.

Partial sums come from float32 BLAS GEMMs; with ideal cells they are integers below 2**24 and
so exact. Outputs accumulate in float64, exact for integers below 2**53.
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from threadpoolctl import ThreadpoolController

from sim.config.schema import Arch, adc_full_scale
from sim.kernels import activity as activity_k
from sim.kernels import adc as adc_k
from sim.kernels import backend as backend_k
from sim.kernels import inputs as inputs_k
from sim.kernels import noise as noise_k
from sim.kernels import variation as var_k
from sim.kernels import weights as weights_k
from sim.kernels.adc import draw_adc_instances
from sim.macros.activity import StepActivity

#: Budget for one chunk's partial sums (bytes); bounds peak memory on large layers.
#: Small enough to stay in the last-level cache between the GEMM that writes a chunk and the
#: ADC kernel that reads it; large enough for BLAS to run near its peak.
PSUM_CHUNK_BYTES = 8 * 2**20


@dataclass
class Events:
    """Exact event counts of one or more matrix products (see ``docs/kernels.md``)."""

    adc_conversions: int = 0
    adc_conversions_skipped: int = 0
    dac_pulses: int = 0
    cell_reads: int = 0
    sample_holds: int = 0
    shift_adds: int = 0
    #: FORMS's sign-indicator reads (one per fragment-column conversion; 0 elsewhere).
    sign_indicator_reads: int = 0
    input_buffer_read_bits: int = 0
    input_register_write_bits: int = 0
    output_buffer_write_bits: int = 0
    output_register_write_bits: int = 0
    bus_transfer_bits: int = 0
    macs: int = 0
    cell_macs: int = 0
    #: Digital multiplies of a (row group, output) partial output by its integer scale
    #: (:class:`CrossbarLayer` ``scale``: unified blocks stored as signs); 0 without a scale.
    scale_multiplies: int = 0
    #: Per-step activity of the crossbars (for the schedule); not a count, so not in
    #: :meth:`counts`. ``None`` until a producer fills it.
    activity: StepActivity | None = field(default=None, compare=False, repr=False)

    def add(self, other: Events) -> None:
        """Accumulate ``other`` into this record."""
        for name in self.counts():
            setattr(self, name, getattr(self, name) + getattr(other, name))
        if other.activity is not None:
            if self.activity is None:
                self.activity = StepActivity.empty(other.activity.steps,
                                                   other.activity.row_tiles,
                                                   other.activity.groups_per_crossbar)
            self.activity.add(other.activity)

    def counts(self) -> dict[str, int]:
        """The counts as a plain mapping (name -> count)."""
        return {k: int(v) for k, v in self.__dict__.items() if k != "activity"}

    def set_fixed(self, arch: Arch, vectors: int, k: int, n: int, column_tiles: int,
                  rows_padded: int, columns_total: int, steps: int) -> None:
        """Set the counts that follow from the shapes alone, given the conversions.

        One sample-and-hold and one shift-and-add per conversion; every input bit read from
        the buffer once and written into the input register of each column tile; every
        output written once; MACs of the layer and of the padded cell array over all steps.
        Shared by the bit-true pass and the analytical mode so the two cannot drift apart.

        Output registers: each row tile (crossbar rows holding a slice of K) shift-adds its
        partial output of every output column into its IMA's output register, one write of
        ``outputs.bits`` per output per row tile. The tile bus carries the inputs to the IMAs
        (as written into their input registers) and those partial outputs back.
        """
        self.sample_holds = self.shift_adds = self.adc_conversions
        bx = arch.inputs.bits
        row_tiles = -(-k // arch.crossbar.rows)
        self.input_buffer_read_bits = vectors * k * bx
        self.input_register_write_bits = vectors * k * bx * column_tiles
        self.output_buffer_write_bits = vectors * n * arch.outputs.bits
        self.output_register_write_bits = vectors * n * arch.outputs.bits * row_tiles
        self.bus_transfer_bits = self.input_register_write_bits + self.output_register_write_bits
        self.macs = vectors * k * n
        self.cell_macs = vectors * rows_padded * columns_total * steps
        # A macro family whose periphery differs (no S+H, no tile buffer) adjusts them.
        from sim.macros.family import family_of

        family_of(arch).periphery_counts(self)


class CrossbarLayer:
    """One weight matrix mapped onto crossbars of ``arch`` (see module docstring).

    Args:
        arch: the architecture.
        weights: integer weights ``(K, N)`` within the signed ``arch.weights.bits`` range.
        seed: an int or ``numpy.random.SeedSequence``; static cell and ADC draws and per-call
            noise all derive from it.
        name: used in messages.
        backend: the array backend of the partial-sum GEMMs (:mod:`sim.kernels.backend`;
            default ``IMCSIM_BACKEND`` or ``auto``). Every backend gives the same bits.
        exact_fast_path: when the config is provably exact (see :attr:`exact`), compute the
            outputs as one integer product and count the events from the inputs; ``False``
            forces the per-row-group model (the tests compare the two). Default: on unless
            the environment sets ``IMCSIM_EXACT_FAST_PATH=0``.
        scale: optional integers ``(groups, N)``, one per (row group of ``group_rows`` rows,
            output column): the layer computes ``x @ (weights x scale)`` with each row group's
            partial output of each column multiplied by its scale digitally after the ADC, in
            the shift-and-add (one counted ``scale_multiplies`` event per vector, row group
            and output). Used for unified blocks stored as signs
            (:mod:`mappers.compress.mapping`): the cells hold only ``weights`` (here
            -1/0/+1), the block's magnitude is the scale.
    """

    #: Drop all-zero (group, step, sample) blocks from the GEMMs and conversions where that
    #: cannot change the result; ``False`` only to test that it does not.
    drop_zero_blocks = True
    #: Convert through threshold curves (capacitor mismatch) by a vectorized path: the SAR
    #: walk (``adc_walk``), else one run of same-instance columns at a time; ``False``: column
    #: by column (the reference), only to test that the bits are the same.
    adc_by_runs = True
    #: The vectorized path is the SAR walk of :func:`sim.kernels.adc.walk_tables` (ADCs of up
    #: to ``WALK_BITS`` bits); ``False``: the instance runs, only to test and measure.
    adc_walk = True
    #: Narrow rows convert (SAR walk or ideal ADC) over blocks of whole rows
    #: (:func:`sim.kernels.adc._convert_blocks`); ``False``: row by row, only to test that
    #: the bits are the same.
    adc_walk_blocks = True

    def __init__(self, arch: Arch, weights: np.ndarray, *, seed=0, name: str = "layer",
                 backend: str | None = None, exact_fast_path: bool | None = None,
                 scale: np.ndarray | None = None):
        self.arch = arch
        self.name = name
        xb, wf = arch.crossbar, arch.weights
        w = np.asarray(weights)
        if w.ndim != 2:
            raise ValueError(f"{name}: weights must be (K, N), got shape {w.shape}")
        self.k, self.n = w.shape
        self._weights_int = w  # the integer weights as given (effective_weights)
        self.group_rows = r = xb.group_rows
        self.groups = g = -(-self.k // r)
        self.rows_padded = g * r
        #: Integer scale per (row group, output), or ``None`` (see the ``scale`` argument).
        self.scale = None
        if scale is not None:
            sc = np.asarray(scale)
            if sc.shape != (g, self.n) or not np.issubdtype(sc.dtype, np.integer):
                raise ValueError(f"{name}: scale must be integers of shape (row groups, N) = "
                                 f"({g}, {self.n}), got {sc.dtype} {sc.shape}")
            self.scale = sc.astype(np.int64)
        ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
        self._seeds = ss.spawn(3)  # cells, ADC instances, per-call noise
        self._call_ss = self._seeds[2]

        # Encoding checks the weights (a bad matrix fails here, at mapping) and gives the
        # geometry; the cells and ADC instances are programmed on first use (_program).
        self._encoded = weights_k.encode_weights(w, wf.bits, xb.cell.bits, wf.encoding, r)
        j = self._encoded[0].shape[1]
        self.data_columns = j
        self.column_tiles = nc = -(-j // xb.columns)
        self.columns_total = j + (nc if xb.unit_column else 0)
        groups_per_tile = xb.rows // r
        self.row_tiles, self.groups_per_crossbar = -(-g // groups_per_tile), groups_per_tile
        self.crossbars = self.row_tiles * nc
        # Resolved now: an unknown or absent backend fails at mapping, and the environment is
        # read when the layer is made, as before.
        self._backend_name = backend_k.resolve(backend)
        if exact_fast_path is None:
            exact_fast_path = os.environ.get("IMCSIM_EXACT_FAST_PATH", "1") != "0"
        self._exact_fast_path = exact_fast_path
        self._programmed = False

    def __getattr__(self, attr: str):
        # Only reached for an attribute not set yet: the programmed state, made on first use.
        if attr.startswith("__") or self.__dict__.get("_programmed", True):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {attr!r}")
        self._program()
        return getattr(self, attr)

    def _program(self) -> None:
        """Program the cells and draw the ADC instances: what the bit-true pass, calibration
        and characterization read. Deferred from the constructor to first use so the
        analytical mode (geometry and events only) never pays for it; the draws come from
        the seeds spawned in the constructor, so when it runs changes no bit."""
        self._programmed = True
        arch = self.arch
        xb, wf = arch.crossbar, arch.weights
        r, g = self.group_rows, self.groups
        cell_ss, adc_ss, _ = self._seeds
        levels, col_out, col_weight, bias, sign = self._encoded
        del self._encoded
        top = xb.cell.levels - 1
        j = levels.shape[1]
        if wf.column_flip:
            levels, flipped = weights_k.flip_columns(levels, r, xb.cell.levels)
        else:
            flipped = np.zeros((g, j), dtype=np.bool_)
        ct = self.columns_total
        n_unit = ct - j
        tile_of = np.arange(j) // xb.columns

        full = np.zeros((self.rows_padded, ct), dtype=np.uint8)
        full[: self.k, :j] = levels
        if n_unit:
            full[: self.k, j:] = 1
        rng_cell = np.random.default_rng(cell_ss)
        cv = arch.variation.cell
        #: The levels as programmed (before stuck-at faults): the known weights that the
        #: ideal partial sums of calibration and characterization are computed from.
        self.levels_programmed = full.copy()
        full[: self.k] = var_k.stuck_at(full[: self.k], cv.stuck_at_0, cv.stuck_at_1, top,
                                        rng_cell)
        self.levels = full
        self.conductance = full.astype(np.float32)
        factors = self._cell_factors(full.shape, rng_cell)
        if factors is not None:
            self.conductance *= factors
        self.conductance[self.k:] = 0.0
        self._conductance_sq = self.conductance**2 if cv.read_noise_sigma else None

        # Column bookkeeping, per row group where it can differ.
        self.col_out = col_out.astype(np.int32)
        self.flip = flipped
        self.ref_col = (j + tile_of).astype(np.int32) if n_unit else np.zeros(j, np.int32)
        self.col_weight = np.repeat(col_weight[None, :], g, axis=0)
        if sign is not None:
            self.col_weight = self.col_weight * sign[:, col_out].astype(np.float64)
        self.bias_weight = bias
        bias_g = [bias] * g
        if self.scale is not None:
            # The scale multiplies the whole partial output of its (row group, output): every
            # slice column's weight and the offset bias measured on the unit column.
            self.col_weight = self.col_weight * self.scale[:, col_out].astype(np.float64)
            bias_g = [bias * self.scale[gi].astype(np.float64) for gi in range(g)]
        # Per row group: the data-column weights after flipping and the unit-column terms.
        self.combine = [adc_k.combine_coefficients(
            self.col_out, self.col_weight[gi], self.flip[gi],
            self.ref_col if n_unit else np.zeros(0, np.int32), float(top), bias_g[gi], self.n)
            for gi in range(g)]

        # ADC instances: ``per_crossbar`` per crossbar (row tile, column tile).
        adc = xb.adc
        groups_per_tile = self.groups_per_crossbar
        pos = np.concatenate([np.arange(j) - tile_of * xb.columns,
                              np.full(n_unit, xb.columns)])
        col_tile = np.concatenate([tile_of, np.arange(n_unit)])
        rt = np.arange(g) // groups_per_tile
        self.col_inst, n_adcs, adc_rng = self._adc_layout(rt, col_tile, pos, adc_ss)
        #: ADC instances of this layer (``col_inst`` indexes them).
        self.adc_instances = n_adcs
        av = arch.variation.adc
        gain, offset, thr, bit_weights = draw_adc_instances(
            n_adcs, adc.bits, adc.rounding, offset_sigma_lsb=av.offset_sigma_lsb,
            gain_sigma=av.gain_sigma, cap_mismatch_sigma=av.cap_mismatch_sigma,
            rng=adc_rng)
        self.adc_gain, self.adc_offset, self.adc_thresholds = gain, offset, thr
        self.adc_lut = adc_k.threshold_lut(thr)
        self.half = 0.5 if adc.rounding == "nearest" else 0.0
        self.adc_walk_tables = adc_k.walk_tables(bit_weights, self.half)
        # Two-step calibration (crossbar.adc.calibration): its known inputs and their noise
        # come from a child of the ADC seed, apart from every other stream.
        self._adc_cal_ss = adc_ss.spawn(1)[0]
        #: Digital correction of each instance's codes, ``(instances, codes)``; empty when
        #: calibration is off or measured to be the identity. See :meth:`calibrate_adcs`.
        self.adc_table = np.zeros((0, 0))
        #: What the last two-step calibration fitted (``None`` when off).
        self.adc_calibration: dict | None = None
        self.step = None
        if adc.range == "fixed":
            self._set_steps(np.full((g, ct), adc_full_scale(arch) / (adc.codes - 1)))

        self.step_weight = inputs_k.step_weights(arch.inputs.bits, xb.dac.bits,
                                                 arch.inputs.signed)
        self.steps = len(self.step_weight)
        noisy = arch.variation.adc.noise_sigma_lsb or arch.variation.cell.read_noise_sigma
        if noisy and self.steps * (self.columns_total + 1) >= noise_k.MAX_STEP_COLUMNS:
            raise ValueError(f"{self.name}: {self.steps} input steps x {self.columns_total} "
                             "columns are more than the noise streams address (steps x "
                             f"(columns + 1) < {noise_k.MAX_STEP_COLUMNS})")

        # Work that cannot change the result is not done (docs/kernels.md section 6).
        inp = arch.inputs
        mag_bits = inp.bits - 1 if inp.signed else inp.bits
        dac_max = max((1 << min(xb.dac.bits, mag_bits)) - 1, 1 if inp.signed else 0)
        ideal_cells = factors is None and not cv.read_noise_sigma
        no_stuck = not (cv.stuck_at_0 or cv.stuck_at_1)
        # Largest partial sum of any (group, column) when every product is an integer.
        self._integer_bound = None
        if ideal_cells:
            col_sums = np.add.reduceat(full.astype(np.int64), np.arange(0, self.rows_padded, r),
                                       axis=0) if full.size else np.zeros(1, np.int64)
            self._integer_bound = int(col_sums.max(initial=0)) * dac_max
        # Rows of each group's GEMM: only the rows that hold weights (the zero padding of the
        # last group multiplies zero inputs: it adds exactly nothing). For float32 partial sums
        # this changed the last bits once (docs/kernels.md section 6).
        self._span = [(gi * r, min(self.k, (gi + 1) * r)) for gi in range(g)]
        self.backend = backend_k.make(self._backend_name, dac_max=dac_max)
        self._binary_steps = dac_max <= 1
        self._gemm_w = [self.backend.prepare(self.conductance[a:b], self._integer_bound)
                        for a, b in self._span]
        # Read noise needs sum(x^2 g^2) beside each partial sum. With 0/1 DAC steps x^2 = x,
        # so one GEMM by [g | g^2] gives both (numpy: read noise makes the sums non-integer).
        self._gemm_w_noise = None
        if cv.read_noise_sigma:
            self._gemm_w_noise = [np.ascontiguousarray(
                np.hstack([self.conductance[a:b], self._conductance_sq[a:b]])
                if self._binary_steps else self._conductance_sq[a:b], dtype=np.float32)
                for a, b in self._span]
        #: True when the outputs provably equal the integer product ``x @ w``: ideal cells, an
        #: ideal noiseless unit-step ADC whose codes hold every partial sum of these weights,
        #: and float64 holding every output exactly. Then :meth:`matmul` does one GEMM and
        #: counts the events from the inputs (the same counts, see tests/test_backend.py).
        adc_ideal = not (av.offset_sigma_lsb or av.gain_sigma or av.cap_mismatch_sigma
                         or av.noise_sigma_lsb)
        self.exact = bool(
            self._exact_fast_path and ideal_cells and no_stuck and adc_ideal
            and adc.range == "fixed" and self.step is not None and np.all(self.step == 1.0)
            and self._integer_bound <= adc.codes - 1
            and self.k * (1 << inp.bits) * (1 << wf.bits) * self._scale_max() < 2**53)
        self._w64 = self.effective_weights().astype(np.float64) if self.exact else None
        if self.step is not None:
            self.calibrate_adcs()

    # ------------------------------------------------------------------ set-up
    def scale_multiplies(self, vectors: int) -> int:
        """Digital scale multiplies of ``vectors`` input vectors: one per vector, row group
        and output with a scale (every group's partial output is scaled before it is added,
        zero or not); 0 without a scale. The bit-true pass and the analytical mode both
        count them here."""
        return 0 if self.scale is None else vectors * self.groups * self.n

    def _scale_max(self) -> int:
        return 1 if self.scale is None else max(1, int(np.abs(self.scale).max(initial=1)))

    def held_bytes(self) -> int:
        """Bytes of the layer's weights as given and, before programming, their encoded
        cell levels (what a kept, never programmed mapping holds; the analytical mode's
        mapping cache sizes its entries by it)."""
        encoded = self.__dict__.get("_encoded")
        return int(self._weights_int.nbytes + (encoded[0].nbytes if encoded else 0))

    def effective_weights(self) -> np.ndarray:
        """The integer ``(K, N)`` matrix the layer multiplies by: the programmed weights,
        times the scale of each one's (row group, output) when the layer has a scale."""
        w = self._weights_int.astype(np.int64)
        if self.scale is None:
            return w
        return w * np.repeat(self.scale, self.group_rows, axis=0)[:self.k]

    def _cell_factors(self, shape: tuple[int, int], rng: np.random.Generator
                      ) -> np.ndarray | None:
        """Static multiplicative factors of the programmed cells ``(rows_padded, columns)``,
        or ``None`` for ideal cells. A family whose analog elements are not one per cell
        (CAP-RAM's MAC circuits) overrides this."""
        cv = self.arch.variation.cell
        if not cv.sigma:
            return None
        return var_k.cell_factors(shape, cv.distribution, cv.sigma, rng)

    def _adc_layout(self, row_tile: np.ndarray, col_tile: np.ndarray, pos: np.ndarray,
                    adc_ss: np.random.SeedSequence
                    ) -> tuple[np.ndarray, int, np.random.Generator]:
        """Which ADC instance converts each (row group, column), how many instances there
        are, and the generator their static curves are drawn from.

        ``row_tile`` (per row group), ``col_tile`` and ``pos`` (per column: its crossbar column
        tile and its position in that crossbar) locate the columns. Default:
        ``adc.per_crossbar`` instances per crossbar, columns sharing them round-robin.
        """
        a = self.arch.crossbar.adc.per_crossbar
        inst = (((row_tile[:, None] * self.column_tiles + col_tile[None, :]) * a)
                + (pos[None, :] % a)).astype(np.int32)
        return inst, self.crossbars * a, np.random.default_rng(adc_ss)

    def _set_steps(self, step: np.ndarray) -> None:
        inst = self.col_inst
        self.step = np.ascontiguousarray(step, dtype=np.float64)
        self.lin_a = (self.adc_gain[inst] / step).astype(np.float64)
        self.lin_b = self.adc_offset[inst].astype(np.float64)
        self.adc_table = np.zeros((0, 0))
        self._set_zero_to_zero()

    def _set_zero_to_zero(self) -> None:
        inst = self.col_inst
        # Groups where an all-zero input block converts to code 0 on every column (no
        # comparator noise): such blocks add nothing, so their GEMM rows and conversions are
        # not computed even without zero-skipping hardware.
        if self.arch.variation.adc.noise_sigma_lsb:
            self._zero_to_zero = np.zeros(self.groups, np.bool_)
        else:
            codes = adc_k.convert(self.lin_b.reshape(-1), self.adc_thresholds,
                                  inst.reshape(-1), self.arch.crossbar.adc.codes, self.half)
            if self.adc_table.shape[0]:
                codes = self.adc_table[inst.reshape(-1), codes]
            self._zero_to_zero = ~codes.reshape(inst.shape).any(axis=1)

    # ------------------------------------------------------------------ compute
    def _chunk_rows(self, m: int) -> int:
        per_sample = self.steps * max(self.columns_total, self.rows_padded) * 4
        return max(1, min(m, PSUM_CHUNK_BYTES // max(per_sample, 1)))

    def _group_psums(self, x: np.ndarray, m0: int, noise_seed, active_all=None, steps=None):
        """Yield ``(group, psum, row_of)`` for the samples ``x`` (one chunk).

        ``psum`` holds the partial sums of (step ``p``, sample ``m``) at row ``p*M + m``, or,
        when ``row_of`` is not empty, at row ``row_of[p*M + m]`` (``-1``: not computed, the
        block's inputs are all zero and it converts to nothing). Blocks are dropped only when
        ``active_all`` (``(G, P, M)``, see :func:`sim.kernels.inputs.input_activity`) is given
        and the group may drop them (zero-skipping, or zero converting to code 0 noiselessly).
        ``steps`` are the inputs' DAC steps when already split (``(P, M, K)``).
        ``psum`` is a reused buffer, valid until the next item is requested.
        """
        inp = self.arch.inputs
        if steps is None:
            steps = inputs_k.split_inputs(x, inp.bits, self.arch.crossbar.dac.bits, inp.signed)
        n_rows = steps.shape[0] * x.shape[0]
        sigma_r = self.arch.variation.cell.read_noise_sigma
        skip = inp.zero_skip
        no_rows = np.zeros(0, dtype=np.int32)
        # One buffer per chunk: a fresh 8 MiB array per GEMM would page-fault every time.
        ct = self.columns_total
        buf = np.empty((n_rows, ct), dtype=np.float32)
        buf2 = (np.empty((n_rows, 2 * ct if self._binary_steps else ct), dtype=np.float32)
                if sigma_r and noise_seed is not None else None)
        as_f32 = self.backend.name == "numpy"
        xbuf = (np.empty(n_rows * max(b - a for a, b in self._span), dtype=np.float32)
                if as_f32 else None)
        for gi, (a, b) in enumerate(self._span):
            # One copy of the strided rows, straight into the GEMM's input type.
            xg = (backend_k.rows_float32(steps, a, b, xbuf) if as_f32
                  else steps[:, :, a:b].reshape(n_rows, b - a))
            row_of = no_rows
            if (active_all is not None and self.drop_zero_blocks
                    and (skip or self._zero_to_zero[gi])):
                act = active_all[gi].reshape(-1)
                if not act.all():
                    # Only the blocks that drive a row are multiplied (float32 partial sums:
                    # one-time change of their last bits, docs/kernels.md section 6).
                    row_of = np.full(n_rows, -1, dtype=np.int32)
                    sel = np.flatnonzero(act)
                    row_of[sel] = np.arange(sel.shape[0], dtype=np.int32)
                    xg = xg[sel]
            if sigma_r and noise_seed is not None:
                xf = xg if xg.dtype == np.float32 else xg.astype(np.float32)
                n = xf.shape[0]
                if self._binary_steps:
                    src = power = np.matmul(xf, self._gemm_w_noise[gi], out=buf2[:n])
                    power_col = ct
                else:
                    src = self.backend.gemm(xg, self._gemm_w[gi], buf)
                    power = np.matmul(xf * xf, self._gemm_w_noise[gi], out=buf2[:n])
                    power_col = 0
                # Drawn in the compiled kernel, one draw per computed partial sum, each a
                # function of (call, group, sample, step, column) alone (sim.kernels.noise).
                psum = noise_k.add_read_noise(
                    buf[:n], src, power, sigma_r, noise_k.stream_key(*noise_seed, gi, 0),
                    row_of, x.shape[0], m0, power_col=power_col)
            else:
                psum = self.backend.gemm(xg, self._gemm_w[gi], buf)
            yield gi, psum, row_of

    def _chunks(self, m: int) -> list[tuple[int, int]]:
        size = self._chunk_rows(m)
        return [(m0, min(m, m0 + size)) for m0 in range(0, m, size)]

    def calibrate(self, x: np.ndarray) -> None:
        """Set each column's ADC full scale from the partial sums of calibration inputs ``x``.

        Used with ``crossbar.adc.range: calibrated``: the full scale of column ``c`` in row group
        ``g`` is the ``calibration_percentile`` of its ideal-ADC partial sums over all steps and
        samples, and its step that full scale over ``codes - 1`` rounded up to a power of two
        of at least one level (exact when the range fits the codes).
        """
        adc = self.arch.crossbar.adc
        x = np.asarray(x)
        per_group: list[list[np.ndarray]] = [[] for _ in range(self.groups)]
        for m0, m1 in self._chunks(x.shape[0]):
            for gi, psum, _rows in self._group_psums(x[m0:m1], m0, None):
                per_group[gi].append(psum.copy())
        full = np.stack([np.percentile(np.concatenate(ps), adc.calibration_percentile, axis=0)
                         for ps in per_group])
        # The step is a power of two of at least one level: the digital side reconstructs by
        # shifting, and a column whose range fits the codes converts exactly (a finer step
        # would only add rounding error to the integer partial sums).
        need = np.maximum(full, 1.0) / (adc.codes - 1)
        self._set_steps(2.0 ** np.maximum(np.ceil(np.log2(need)), 0.0))
        self.calibrate_adcs()

    def calibrate_adcs(self) -> None:
        """CAP-RAM's two-step calibration of this layer's ADCs (``crossbar.adc.calibration``).

        Runs ``calibration_samples`` known input vectors (seeded from the layer's ADC seed;
        never test data) through the macro as programmed, pairs each conversion's code with
        its ideal value (from the programmed weights and the known inputs), and fits
        :func:`sim.kernels.adc.two_step_tables`. Called when the ADC range is set (at
        construction with ``range: fixed``, by :meth:`calibrate` otherwise); a no-op with
        ``calibration: none``. A fitted table that is the identity is dropped (measured, so
        an ideal ADC converts through exactly the uncalibrated path).
        """
        adc = self.arch.crossbar.adc
        if adc.calibration == "none":
            return
        rng = np.random.default_rng(self._adc_cal_ss)
        x = self._calibration_inputs(rng, adc.calibration_samples)
        call_seed = tuple(int(v) for v in self._adc_cal_ss.generate_state(3))
        ideal, code = self._conversions(x, call_seed, np.zeros((0, 0)))
        inst = np.broadcast_to(self.col_inst[:, None, :], ideal.shape)
        table, info = adc_k.two_step_tables(ideal, code, inst, self.adc_gain.shape[0],
                                            adc.codes)
        info["identity"] = bool(np.array_equal(table, np.broadcast_to(
            np.arange(adc.codes, dtype=np.float64), table.shape)))
        self.adc_calibration = info
        if not info["identity"]:
            self.adc_table = table
            self.exact = False
            self._set_zero_to_zero()

    def _calibration_inputs(self, rng: np.random.Generator, m: int) -> np.ndarray:
        """Known calibration inputs ``(m, K)`` covering the ADC range: per vector a density
        ``d ~ U(0, 1)``; each input is nonzero with probability ``d``, then the largest
        positive value or a uniform value of the input range (even odds)."""
        inp = self.arch.inputs
        lo = -(1 << (inp.bits - 1)) if inp.signed else 0
        hi = (1 << (inp.bits - 1)) - 1 if inp.signed else (1 << inp.bits) - 1
        density = rng.random((m, 1))
        on = rng.random((m, self.k)) < density
        top = rng.random((m, self.k)) < 0.5
        uniform = rng.integers(lo, hi + 1, size=(m, self.k), dtype=np.int64)
        return np.where(on, np.where(top, hi, uniform), 0).astype(np.int64)

    def _conversions(self, x: np.ndarray, call_seed: tuple,
                     table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Ideal values and converted values (code units) of every conversion of ``x``.

        Both ``(groups, steps x M, columns_total)``, row ``p*M + m``. The values go through
        the same fused kernel as :meth:`matmul` (one output per column, unit weights), with
        calibration table ``table`` (empty: raw codes) and the comparator noise of
        ``call_seed``.
        """
        arch = self.arch
        inp, adc = arch.inputs, arch.crossbar.adc
        steps = inputs_k.split_inputs(x, inp.bits, arch.crossbar.dac.bits, inp.signed)
        n_rows = steps.shape[0] * x.shape[0]
        ct = self.columns_total
        ideal = np.empty((self.groups, n_rows, ct))
        value = np.zeros((self.groups, n_rows, ct))
        active = np.ones((1, n_rows), np.bool_)
        readout = (np.ones(ct), np.zeros((ct, 1), np.int32), np.zeros((ct, 1)))
        noise_sigma = arch.variation.adc.noise_sigma_lsb
        m = x.shape[0]
        noise_buf = np.empty((m if noise_sigma else 0, ct), np.float32)
        for gi, psum, _rows in self._group_psums(x, 0, call_seed, None, steps):
            a, b = self._span[gi]
            sx = steps[:, :, a:b].reshape(n_rows, b - a).astype(np.float64)
            ideal[gi] = (sx @ self.levels_programmed[a:b].astype(np.float64)) / self.step[gi]
            key = noise_k.stream_key(*call_seed, gi, 1)
            # One step at a time, each conversion a row of the outputs (unit weights): the
            # comparator noise of step p and sample m is matmul's (stream row (p, m)).
            for p in range(steps.shape[0]):
                rows = slice(p * m, (p + 1) * m)
                adc_k.adc_accumulate(
                    psum[rows], np.zeros(0, np.int32), m, active[:, rows], False,
                    self.lin_a[gi], self.lin_b[gi], self.adc_thresholds, self.adc_lut, table,
                    self.col_inst[gi], adc.codes, self.half, key, noise_sigma, p, 0, noise_buf,
                    np.ones(ct), *readout, np.ones(1), value[gi][rows], self.adc_by_runs,
                    self._walk(), self.adc_walk_blocks)
        return ideal, value

    def column_conversions(self, x: np.ndarray, *, seed: int = 0) -> dict[str, np.ndarray]:
        """Every ADC conversion of inputs ``x`` (M, K), column by column (characterization).

        Returns arrays of shape ``(groups, steps, M, columns_total)`` in code units:
        ``ideal`` (the ideal partial sum of the programmed weights over the ADC step),
        ``code`` (the raw ADC code) and ``value`` (the calibrated code, equal to ``code``
        without calibration), plus ``instance`` ``(groups, columns_total)``, the ADC instance
        of each column. ``seed`` selects the comparator and read noise, as in :meth:`matmul`.
        """
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.k:
            raise ValueError(f"{self.name}: inputs must be (M, {self.k}), got {x.shape}")
        if self.step is None:
            raise RuntimeError(f"{self.name}: ADC range is 'calibrated'; call calibrate() first")
        call_seed = (*(int(v) for v in self._call_ss.generate_state(2)), int(seed))
        ideal, code = self._conversions(x, call_seed, np.zeros((0, 0)))
        value = (self._conversions(x, call_seed, self.adc_table)[1] if self.adc_table.shape[0]
                 else code)
        shape = (self.groups, self.steps, x.shape[0], self.columns_total)
        return {"ideal": ideal.reshape(shape), "code": code.reshape(shape),
                "value": value.reshape(shape), "instance": self.col_inst.copy()}

    def _run_chunk(self, x: np.ndarray, m0: int, call_seed: tuple, out: np.ndarray) -> Events:
        """Simulate samples ``x`` (a chunk starting at sample ``m0``) into ``out``."""
        arch = self.arch
        adc = arch.crossbar.adc
        inp = arch.inputs
        skip = inp.zero_skip
        noise_sigma = arch.variation.adc.noise_sigma_lsb
        ct = self.columns_total
        # Which (group, step, sample) blocks drive any row, and how many: from the inputs alone.
        if self.exact:
            active_all, nnz_all = inputs_k.input_activity(
                x, inp.bits, arch.crossbar.dac.bits, inp.signed, self.group_rows, self.groups)
            # Provably exact config: the outputs are the integer product (float64 holds every
            # product and sum exactly; + 0.0 turns BLAS's -0.0 into the model's +0.0).
            np.matmul(x.astype(np.float64), self._w64, out=out)
            out += 0.0
            psums = None
        else:
            steps, active_all, nnz_all = inputs_k.split_inputs_activity(
                x, inp.bits, arch.crossbar.dac.bits, inp.signed, self.group_rows, self.groups)
            psums = self._group_psums(x, m0, call_seed, active_all, steps)
        ev = Events()
        noise_buf = None
        # Per-step activity (sim.macros.activity): active row groups per (row tile, step, sample).
        tile_count = (np.zeros((self.row_tiles, self.steps, x.shape[0]), np.uint16)
                      if skip else None)
        for gi in range(self.groups):
            active, nnz = active_all[gi], nnz_all[gi]
            if psums is not None:
                _, psum, row_of = next(psums)
                # Comparator noise is drawn by the kernel (sim.kernels.noise's stream: each
                # conversion's draw a function of (call, group, step, sample, column) alone),
                # into a small buffer per block of rows, or into ``noise_buf`` on its row path.
                if noise_buf is None:
                    noise_buf = np.empty((active.size if noise_sigma else 0, ct), np.float32)
                adc_k.adc_accumulate(
                    psum, row_of, x.shape[0], active, skip, self.lin_a[gi], self.lin_b[gi],
                    self.adc_thresholds, self.adc_lut, self.adc_table, self.col_inst[gi],
                    adc.codes, self.half, noise_k.stream_key(*call_seed, gi, 1), noise_sigma,
                    0, m0, noise_buf, self.step[gi], *self.combine[gi], self.step_weight, out,
                    self.adc_by_runs, self._walk(), self.adc_walk_blocks)
            total = active.size
            done = int(active.sum()) if skip else total
            ev.adc_conversions += done * ct
            ev.adc_conversions_skipped += (total - done) * ct
            driven = int(nnz.sum(dtype=np.int64))
            ev.dac_pulses += driven * self.column_tiles
            ev.cell_reads += driven * ct
            if tile_count is not None:
                tile_count[gi // self.groups_per_crossbar] += active
        ev.activity = self._step_activity(tile_count, x.shape[0])
        return ev

    def _walk(self) -> tuple:
        """The SAR walk's tables for the ADC kernel (empty: convert by the tables)."""
        return self.adc_walk_tables if self.adc_walk else _NO_WALK

    def _step_activity(self, tile_count: np.ndarray | None, vectors: int) -> StepActivity:
        """The chunk's :class:`StepActivity`: from the per-tile counts of active row groups,
        or every pair fully active without zero-skip (``tile_count`` ``None``)."""
        gpc = self.groups_per_crossbar
        if tile_count is None:
            return StepActivity.dense(self.steps, self.groups, gpc, vectors)
        hist_max, hist_tile = activity_k.tile_histograms(tile_count, gpc)
        return StepActivity(steps=self.steps, row_tiles=self.row_tiles, groups_per_crossbar=gpc,
                            vectors=vectors, hist_max=hist_max, hist_tile=hist_tile)

    def matmul(self, x: np.ndarray, *, seed: int = 0) -> tuple[np.ndarray, Events]:
        """Multiply integer inputs ``x`` (M, K) by the programmed weights, bit-true.

        ``seed`` selects the per-access noise (read noise, comparator noise) of this call; the
        static variation was fixed when the layer was made. Returns float64 outputs ``(M, N)``
        (integers when every stage is ideal) and the :class:`Events` of the call.

        Chunks of samples run in a thread pool (GIL-free kernels, one BLAS thread each); each
        output row is computed by one chunk, in a fixed order, so results do not depend on the
        number of threads.
        """
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.k:
            raise ValueError(f"{self.name}: inputs must be (M, {self.k}), got {x.shape}")
        if self.step is None:
            raise RuntimeError(f"{self.name}: ADC range is 'calibrated'; call calibrate() first")
        m_total = x.shape[0]
        out = np.zeros((m_total, self.n), dtype=np.float64)
        call_seed = (*(int(v) for v in self._call_ss.generate_state(2)), int(seed))
        chunks = self._chunks(m_total)
        workers = min(len(chunks), threads())
        with _blas_controller().limit(limits=1, user_api="blas"):
            if workers <= 1:
                parts = [self._run_chunk(x[a:b], a, call_seed, out[a:b]) for a, b in chunks]
            else:
                with ThreadPoolExecutor(max_workers=workers) as pool:
                    parts = list(pool.map(
                        lambda ab: self._run_chunk(x[ab[0]:ab[1]], ab[0], call_seed,
                                                   out[ab[0]:ab[1]]), chunks))
        ev = Events()
        for part in parts:
            ev.add(part)
        ev.set_fixed(self.arch, m_total, self.k, self.n, self.column_tiles, self.rows_padded,
                     self.columns_total, self.steps)
        ev.scale_multiplies = self.scale_multiplies(m_total)
        return out, ev


_NO_WALK = (np.zeros((0, 0), np.uint32), np.zeros(0), np.zeros(0), np.zeros(0, np.uint32))


_CONTROLLER: list = [None, -1]  # [ThreadpoolController, len(sys.modules) when it was made]


def _blas_controller() -> ThreadpoolController:
    """The thread-pool controller that :meth:`CrossbarLayer.matmul` limits BLAS to one thread
    with, made once: ``threadpool_limits`` scans every loaded library on each call (measured
    1.8 ms per call, 20 % of a 512x512 batch-256 layer). Made again when modules were imported
    since, so a BLAS loaded later (torch's) is limited too. Thread limits change no bit."""
    if _CONTROLLER[0] is None or _CONTROLLER[1] != len(sys.modules):
        _CONTROLLER[:] = [ThreadpoolController(), len(sys.modules)]
    return _CONTROLLER[0]


def threads() -> int:
    """Worker threads for one matrix product: ``IMCSIM_THREADS`` or the usable cores."""
    env = os.environ.get("IMCSIM_THREADS")
    if env:
        return max(1, int(env))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)
