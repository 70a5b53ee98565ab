"""Frozen, keyword-only dataclasses for an architecture YAML, one per YAML section.

Nothing past :func:`sim.config.loader.load_arch` sees a raw dict. Quantities are stored in the
unit named by the field (``_ns``, ``_hz``, ``_pj``, ``_mw``, ``_um2``, ``_bytes``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Signed weight encodings the kernels implement (see ``docs/kernels.md``).
WEIGHT_ENCODINGS = ("offset", "differential", "twos_complement", "polarized")
#: ADC input-range policies.
ADC_RANGES = ("fixed", "calibrated")
#: ADC rounding of the analog value to a code.
ADC_ROUNDING = ("nearest", "floor")
#: Digital linearity calibration of the ADC codes (CAP-RAM's two-step calibration).
ADC_CALIBRATIONS = ("none", "two_step")
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

    ``calibration: two_step`` corrects every conversion's code digitally before the
    shift-and-add (CAP-RAM, JSSC 2021): a per-ADC linear fit (gain, offset), then a master
    curve of the residual nonlinearity common to the ADCs of a layer, fitted from
    ``calibration_samples`` seeded known input vectors run through the layer's own macro
    (never the test data; ``docs/kernels.md`` section 3.1).
    """

    bits: int
    per_crossbar: int
    rate_hz: float | None
    range: str
    full_scale: float | None
    clip: bool
    rounding: str
    calibration_percentile: float
    calibration: str = "none"
    calibration_samples: int = 256

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


@dataclass(frozen=True)
class EventKind:
    """How one counted event is charged: by which component classes, with which action.

    ``key`` is the event's key in the YAML ``energy:`` section (a stated per-event figure);
    ``classes`` are the component classes that perform it, the first one the model uses when
    no table row performs it. Per-bit events (``*_bits``) use per-bit actions.
    """

    key: str
    classes: tuple[str, ...]
    action: str


#: Every name an event count may carry -> how it is charged (``None``: not an energy event:
#: a skipped conversion costs nothing, ``macs`` and ``cell_macs`` are counters). The rollup
#: raises on a name that is not here, so no counted event is dropped silently.
EVENTS: dict[str, EventKind | None] = {
    "adc_conversions": EventKind("adc_conversion", ("sar_adc", "cisar_adc", "flash_adc"),
                                 "convert"),
    "adc_conversions_skipped": None,
    "dac_pulses": EventKind("dac_pulse", ("dac",), "drive"),
    "cell_reads": EventKind("cell_read", ("reram_crossbar", "sram_array", "capacitor_array"),
                            "read"),
    "sample_holds": EventKind("sample_hold", ("sample_hold",), "sample"),
    "shift_adds": EventKind("shift_add", ("shift_add",), "add"),
    # FORMS: one sign-indicator bit read per fragment-column conversion (sim.macros.forms).
    "sign_indicator_reads": EventKind("sign_read", ("sram_buffer", "register"), "read"),
    "input_buffer_read_bits": EventKind("buffer_read_bit", ("edram_buffer", "sram_buffer"),
                                        "read"),
    "output_buffer_write_bits": EventKind("buffer_write_bit", ("edram_buffer", "sram_buffer"),
                                          "write"),
    "input_register_write_bits": EventKind("register_write_bit", ("register",), "write"),
    "output_register_write_bits": EventKind("output_register_write_bit", ("register",),
                                            "write"),
    "bus_transfer_bits": EventKind("bus_bit", ("bus", "noc_link"), "transfer"),
    "noc_bit_hops": EventKind("noc_link_bit", ("noc_link",), "transfer"),
    "router_bits": EventKind("router_bit", ("router",), "transfer"),
    "activation_ops": EventKind("activation", ("sigmoid",), "activate"),
    "pooling_ops": EventKind("pooling", ("maxpool",), "pool"),
    "add_ops": EventKind("add", ("shift_add",), "add"),
    "offchip_bits": EventKind("offchip_bit", ("offchip_link",), "transfer"),
    "scale_multiplies": EventKind("scale_multiply", ("multiplier",), "multiply"),
    # Element-wise products of a recurrent cell's gates (mappers.recurrent, graph.GATE_OPS).
    "gate_multiplies": EventKind("gate_multiply", ("multiplier",), "multiply"),
    # Spiking networks: one membrane update (integrate, leak, threshold, reset) per neuron
    # and time step (a ``neuron`` node of the layer graph, sim.engine.graph).
    "neuron_updates": EventKind("neuron_update", ("lif_neuron",), "update"),
    "macs": None,
    "cell_macs": None,
}

#: Events only some mappings count (``scale_multiplies``: unified blocks stored as signs,
#: :mod:`mappers.compress.mapping`; ``gate_multiplies``: recurrent cells,
#: :mod:`mappers.recurrent`; ``neuron_updates``: spiking networks, :mod:`mappers.spiking`).
#: A config needs no components row for them: without one they are priced by their class's
#: model at the config's point.
OPTIONAL_EVENTS = frozenset({"scale_multiplies", "gate_multiplies", "neuron_updates"})


@dataclass(frozen=True, kw_only=True)
class EventEnergy:
    """Energy per event, in pJ, at the config's own operating point, and who is charged.

    Built by :func:`sim.components.calibrate.calibrate`: each figure is a stated calibration
    point scaled by its component model, or the model itself. ``per_event_pj`` and
    ``component`` are ``(event, value)`` pairs for every event of :data:`EVENTS` that costs
    energy.
    """

    per_event_pj: tuple[tuple[str, float], ...] = ()
    component: tuple[tuple[str, str], ...] = ()

    def pj(self, event: str) -> float:
        """Energy of one ``event``, in pJ."""
        return dict(self.per_event_pj)[event]

    def component_of(self, event: str) -> str:
        """Name of the component (table row, or ``<class> (model)``) charged for ``event``."""
        return dict(self.component)[event]


@dataclass(frozen=True, kw_only=True)
class Component:
    """One row of the component table at the config's own operating point.

    ``level`` is where the group sits (``chip``, ``tile``, ``ima``); ``power_mw`` and
    ``area_um2`` are totals for the ``count`` instances of one group at that level, after
    calibration: the row's stated figures (``stated_*``, which held at the parameters ``at``)
    scaled by its component model to the config's parameters. ``events`` names the events
    charged to this row explicitly (otherwise by class).
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
    at: tuple[tuple[str, object], ...] = ()
    events: tuple[str, ...] = ()
    stated_count: int = 0
    stated_power_mw: float = 0.0
    stated_area_um2: float = 0.0
    stated_leakage_mw: float = 0.0


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
    #: Node at which the stated figures (``energy:``, ``components:``) hold.
    stated_technology_nm: float | None = None
    #: How the stated figures were scaled to this config's point (copied into results).
    notes: tuple[str, ...] = ()
    #: The macro family (``crossbar.class``; :mod:`sim.macros.family`) and its own frozen
    #: parameters beyond the engine's view in ``crossbar`` (``None`` for ReRAM crossbars).
    macro_class: str = "reram_crossbar"
    macro: Any = None


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


@dataclass(frozen=True, kw_only=True)
class PrecisionPadding:
    """How much of the arch's fixed weight and input precision a workload leaves unused.

    The crossbars always store ``weights.bits``-bit weights and stream ``inputs.bits``-bit
    inputs; a workload of fewer bits is padded into them (upper cell slices hold the offset,
    sign or zero bits; upper input steps carry sign-extension or zero bits) and costs what the
    full precision costs. ``*_needed`` is what the same encoding would need at the workload's
    precision.

    Attributes:
        weight_bits: the workload's weight bits.
        weight_columns, weight_columns_needed: crossbar columns per weight, at the arch's
            precision and at the workload's.
        input_bits_needed: bits the widest integer layer input needs in the arch's
            signedness (an unsigned 8-bit ReLU output needs 9 signed bits).
        input_steps, input_steps_needed: crossbar cycles per input vector, at the arch's
            precision and at ``input_bits_needed``.
    """

    weight_bits: int
    weight_columns: int
    weight_columns_needed: int
    input_bits_needed: int
    input_steps: int
    input_steps_needed: int

    @property
    def padded(self) -> bool:
        """Whether any column or input step carries only padding."""
        return (self.weight_columns > self.weight_columns_needed
                or self.input_steps > self.input_steps_needed)

    @property
    def conversion_ratio(self) -> float:
        """ADC conversions (one per column and input step) at the arch's precision over those
        at the workload's; approximate (unit columns, crossbar tiling, zero-skipping)."""
        return (self.weight_columns * self.input_steps
                / (self.weight_columns_needed * self.input_steps_needed))

    @property
    def column_ratio(self) -> float:
        """Cell columns per weight (and so cell reads per driven row) at the arch's precision
        over those at the workload's."""
        return self.weight_columns / self.weight_columns_needed


def integer_bits(lo: int, hi: int, signed: bool) -> int:
    """Fewest bits of an integer format (two's complement if ``signed``) holding ``[lo, hi]``."""
    if not signed:
        return max(1, int(hi).bit_length())
    need_hi = int(hi).bit_length() + 1 if hi > 0 else 1
    need_lo = (-int(lo) - 1).bit_length() + 1 if lo < 0 else 1
    return max(need_hi, need_lo)


def precision_padding(arch: Arch, weight_bits: int, input_lo: int, input_hi: int
                      ) -> PrecisionPadding:
    """The padding of ``weight_bits``-bit weights and inputs spanning ``[input_lo, input_hi]``
    (the integers the rows receive, zero point included) on ``arch``."""
    from dataclasses import replace

    xb = arch.crossbar
    need_in = min(integer_bits(input_lo, input_hi, arch.inputs.signed), arch.inputs.bits)
    return PrecisionPadding(
        weight_bits=weight_bits,
        weight_columns=columns_per_weight(arch.weights, xb.cell),
        weight_columns_needed=columns_per_weight(replace(arch.weights, bits=weight_bits),
                                                 xb.cell),
        input_bits_needed=need_in,
        input_steps=input_steps(arch.inputs, xb.dac),
        input_steps_needed=input_steps(replace(arch.inputs, bits=need_in), xb.dac),
    )
