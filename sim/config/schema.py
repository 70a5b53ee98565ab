"""Frozen, keyword-only dataclasses for an architecture YAML, one per YAML section.

Nothing past :func:`sim.config.loader.load_arch` sees a raw dict. Quantities are stored in the
unit named by the field (``_ns``, ``_hz``, ``_pj``, ``_mw``, ``_um2``, ``_bytes``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: Signed weight encodings the kernels implement (see ``docs/kernels.md``).
WEIGHT_ENCODINGS = ("offset", "differential", "twos_complement", "polarized")
#: ADC input-range policies.
ADC_RANGES = ("fixed", "calibrated")
#: ADC rounding of the analog value to a code.
ADC_ROUNDING = ("nearest", "floor")
#: Distributions of static per-cell variation (multiplicative, mean 1).
VARIATION_DISTRIBUTIONS = ("normal", "lognormal")
#: Cell technologies.
CELL_TECHNOLOGIES = ("reram", "sram")
#: How zero-skipping shortens a step (``inputs.zero_skip_timing``; see ``docs/engine.md``).
ZERO_SKIP_TIMING = ("shared_step", "per_crossbar")


@dataclass(frozen=True, kw_only=True)
class Clock:
    """Timing: one crossbar read (an analog MVM step) and the digital clock."""

    crossbar_cycle_ns: float
    digital_hz: float


@dataclass(frozen=True, kw_only=True)
class Organization:
    """How many crossbars the chip has: chip -> tiles -> IMAs (macros) -> crossbars.

    ``reprogram`` allows a model larger than the chip: layers then run one after another with
    their weights written in between, instead of an error saying by how much it does not fit.
    """

    tiles: int
    imas_per_tile: int
    crossbars_per_ima: int
    reprogram: bool = False

    @property
    def crossbars(self) -> int:
        """Crossbars on the chip."""
        return self.tiles * self.imas_per_tile * self.crossbars_per_ima


@dataclass(frozen=True, kw_only=True)
class Cell:
    """One memory cell: ``bits`` per cell give ``2**bits`` conductance (or charge) levels."""

    technology: str
    bits: int

    @property
    def levels(self) -> int:
        """Number of programmable levels of one cell."""
        return 2**self.bits


@dataclass(frozen=True, kw_only=True)
class Dac:
    """Row driver: ``bits`` of input applied per crossbar cycle (1 = bit-serial)."""

    bits: int


@dataclass(frozen=True, kw_only=True)
class Adc:
    """Column ADC.

    ``full_scale`` is the largest analog partial sum (in units of one cell level times one
    DAC level) the ADC represents; the step between codes is ``full_scale / (2**bits - 1)``.
    ``rate_hz`` is conversions per second of one ADC (``None``: fast enough never to stall the
    crossbar cycle). ``None`` full scale with ``range: fixed`` means a unit step
    (``2**bits - 1``), which is exact for integer partial sums up to that value. With
    ``range: calibrated`` the full scale of each column is set from calibration data at the
    given percentile.
    """

    bits: int
    per_crossbar: int
    rate_hz: float | None
    range: str
    full_scale: float | None
    clip: bool
    rounding: str
    calibration_percentile: float

    @property
    def codes(self) -> int:
        """Number of output codes."""
        return 2**self.bits


@dataclass(frozen=True, kw_only=True)
class Crossbar:
    """One crossbar (or macro array) and its periphery."""

    rows: int
    columns: int
    unit_column: bool
    fragment_rows: int | None
    cell: Cell
    dac: Dac
    adc: Adc

    @property
    def group_rows(self) -> int:
        """Rows whose currents are summed into one ADC conversion (a fragment or all rows)."""
        return self.fragment_rows or self.rows


@dataclass(frozen=True, kw_only=True)
class WeightFormat:
    """How signed integer weights become cell levels."""

    bits: int
    encoding: str
    column_flip: bool


@dataclass(frozen=True, kw_only=True)
class InputFormat:
    """Integer inputs streamed into the rows.

    With ``zero_skip`` a crossbar cycle whose inputs to a row group are all zero is skipped:
    no rows are driven and no conversions are made for that group (FORMS).

    ``zero_skip_timing`` says when a skipped group saves time. ``shared_step`` (default): the
    row tiles of a layer share one step clock, so a step ends when its busiest crossbar ends
    and is saved only when every row group of the step skips. ``per_crossbar``: each crossbar
    has its own shift control and skips its idle steps on its own.
    """

    bits: int
    signed: bool
    zero_skip: bool = False
    zero_skip_timing: str = "shared_step"


@dataclass(frozen=True, kw_only=True)
class OutputFormat:
    """Digital outputs written back to buffers."""

    bits: int


@dataclass(frozen=True, kw_only=True)
class CellVariation:
    """Device non-idealities of the cells; all zero means ideal devices."""

    distribution: str = "lognormal"
    sigma: float = 0.0
    stuck_at_0: float = 0.0
    stuck_at_1: float = 0.0
    read_noise_sigma: float = 0.0

    @property
    def enabled(self) -> bool:
        """Whether any cell non-ideality is on."""
        return bool(self.sigma or self.stuck_at_0 or self.stuck_at_1 or self.read_noise_sigma)


@dataclass(frozen=True, kw_only=True)
class AdcVariation:
    """Per-instance static ADC transfer curve and conversion noise.

    ``offset_sigma_lsb`` (comparator offset, LSB) and ``gain_sigma`` (relative full-scale
    error) shift and stretch the curve; ``cap_mismatch_sigma`` is the relative sigma of one unit
    capacitor of a binary-weighted SAR capacitor DAC, from which each bit's weight and so the
    INL/DNL of the curve follow (Pelgrom: sigma of a 2**i-unit capacitor grows as sqrt(2**i)).
    ``noise_sigma_lsb`` is comparator noise drawn afresh at every conversion.
    """

    offset_sigma_lsb: float = 0.0
    gain_sigma: float = 0.0
    cap_mismatch_sigma: float = 0.0
    noise_sigma_lsb: float = 0.0

    @property
    def static(self) -> bool:
        """Whether a static transfer curve other than the ideal one is drawn."""
        return bool(self.offset_sigma_lsb or self.gain_sigma or self.cap_mismatch_sigma)


@dataclass(frozen=True, kw_only=True)
class Variation:
    """All non-idealities with the seed every draw derives from."""

    seed: int = 0
    cell: CellVariation = field(default_factory=CellVariation)
    adc: AdcVariation = field(default_factory=AdcVariation)


#: Event -> key of :class:`EventEnergy` (``None``: the event costs nothing, e.g. skipped).
EVENT_ENERGY_KEY = {
    "adc_conversions": "adc_conversion_pj",
    "adc_conversions_skipped": None,
    "dac_pulses": "dac_pulse_pj",
    "cell_reads": "cell_read_pj",
    "sample_holds": "sample_hold_pj",
    "shift_adds": "shift_add_pj",
    "input_buffer_read_bits": "buffer_read_bit_pj",
    "input_register_write_bits": "register_write_bit_pj",
    "output_buffer_write_bits": "buffer_write_bit_pj",
}


@dataclass(frozen=True, kw_only=True)
class EventEnergy:
    """Energy per event, in pJ, as stated (or derived and cited) in the YAML."""

    adc_conversion_pj: float = 0.0
    dac_pulse_pj: float = 0.0
    cell_read_pj: float = 0.0
    sample_hold_pj: float = 0.0
    shift_add_pj: float = 0.0
    buffer_read_bit_pj: float = 0.0
    buffer_write_bit_pj: float = 0.0
    register_write_bit_pj: float = 0.0


@dataclass(frozen=True, kw_only=True)
class Component:
    """One row of a published component table (group totals), kept for reports and area.

    ``level`` is where the group sits (``chip``, ``tile``, ``ima``); ``power_mw`` and
    ``area_um2`` are totals for the ``count`` instances of one group at that level.
    """

    name: str
    level: str
    component_class: str
    count: int
    power_mw: float
    area_um2: float
    shared_by: int = 1
    leakage_mw: float = 0.0
    spec: str = ""


@dataclass(frozen=True, kw_only=True)
class Noc:
    """Links between tiles: ``link_bits`` per link cycle at ``frequency_hz``."""

    link_bits: int
    frequency_hz: float


@dataclass(frozen=True, kw_only=True)
class TileBuffer:
    """A tile's input buffer: ``size_bytes`` read over a ``bus_bits`` bus per digital cycle."""

    size_bytes: int
    bus_bits: int


@dataclass(frozen=True, kw_only=True)
class Arch:
    """A whole architecture, as loaded from one YAML file."""

    name: str
    description: str
    technology_nm: float
    clock: Clock
    organization: Organization
    crossbar: Crossbar
    weights: WeightFormat
    inputs: InputFormat
    outputs: OutputFormat
    variation: Variation
    energy: EventEnergy
    components: tuple[Component, ...] = ()
    noc: Noc | None = None
    tile_buffer: TileBuffer | None = None
    source: str = ""


def magnitude_bits(weights: WeightFormat) -> int:
    """Bits of a weight held in cells as an unsigned number.

    ``offset`` stores all ``bits`` of the biased value; ``twos_complement`` stores the low
    ``bits - 1`` bits plus a separate sign cell; ``differential`` and ``polarized`` store the
    ``bits - 1`` magnitude bits (the sign picks the array or is kept per fragment).
    """
    return weights.bits if weights.encoding == "offset" else weights.bits - 1


def weight_slices(weights: WeightFormat, cell: Cell) -> int:
    """Cells (bit slices) of the unsigned part of one weight, rounded up."""
    return -(-magnitude_bits(weights) // cell.bits)


def columns_per_weight(weights: WeightFormat, cell: Cell) -> int:
    """Crossbar columns one weight occupies (slices, twice for differential, + sign cell)."""
    s = weight_slices(weights, cell)
    if weights.encoding == "differential":
        return 2 * s
    if weights.encoding == "twos_complement":
        return s + 1
    return s


def input_steps(inputs: InputFormat, dac: Dac) -> int:
    """Crossbar cycles (DAC steps) per input vector; signed inputs add a sign step."""
    mag = inputs.bits - 1 if inputs.signed else inputs.bits
    return -(-mag // dac.bits) + (1 if inputs.signed else 0)


def max_partial_sum(arch: Arch) -> int:
    """Largest ideal analog partial sum one ADC conversion can see, in level units.

    ``group_rows x (cell levels - 1) x (DAC levels - 1)``, halved (rounded down) when ISAAC's
    column flipping keeps every column's weight sum at most half of its maximum.
    """
    xb = arch.crossbar
    per_row = (xb.cell.levels - 1) * (2**xb.dac.bits - 1)
    if arch.weights.column_flip:
        cell_sum = (xb.group_rows * (xb.cell.levels - 1)) // 2
        worst = cell_sum * (2**xb.dac.bits - 1)
    else:
        worst = xb.group_rows * per_row
    if xb.unit_column:
        worst = max(worst, xb.group_rows * (2**xb.dac.bits - 1))
    return worst


def adc_full_scale(arch: Arch) -> float:
    """The fixed full scale of the ADC in level units (unit step when not stated)."""
    adc = arch.crossbar.adc
    return adc.full_scale if adc.full_scale is not None else float(adc.codes - 1)
