"""Storage and compute-in-memory elements: ReRAM and 6T-SRAM cells, MAC capacitors, buffers.

Cells and capacitors have physical models (energy from charge or Ohm's law, with the device
figures as parameters); the buffers are scaled from ISAAC's published figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar

from sim.components import quantities as q
from sim.components.base import Anchor, Component, PerBitComponent
from sim.components.registry import register
from sim.components.scaling import area_factor, energy_factor
from sim.config import units
from sim.config.validate import Section, join

# ----------------------------------------------------------------------------- cells
#: ReRAM device figures of the Accelergy ISAAC cell (Accelergy-Project/accelergy-library-plug-in
#: ``library/isaac/isaac.cell``, after Hu et al., DAC 2016), chosen there to reproduce ISAAC's
#: 2.4 mW array power: R_on 2 kohm, R_off 3 Mohm, 20 kohm access transistor, 0.3 V, 1 ns pulse.
RERAM_DEFAULTS = MappingProxyType({"read_voltage_v": 0.3, "r_on_ohm": 2e3, "r_off_ohm": 3e6,
                                   "r_access_ohm": 20e3, "read_pulse_ns": 1.0})
#: Footprint of a single-layer crosspoint cell: one word-line and one bit-line pitch of 2F.
CROSSPOINT_CELL_AREA_F2 = 4.0


@register("reram_cell")
@dataclass(frozen=True, kw_only=True)
class ReramCell(Component):
    """One ReRAM (1T1R or crosspoint) cell read by a row voltage pulse.

    Parameters: ``bits`` (levels = 2^bits, default 1), ``read_voltage`` (V), ``r_on``,
    ``r_off``, ``r_access`` (ohm; 0 for a selector-less crosspoint), ``read_pulse`` (time),
    ``cell_area`` (area; default 4 F^2). Defaults: :data:`RERAM_DEFAULTS`.

    Model (Ohm's law): energy of one read = ``V^2 x t_pulse x mean_k G_k`` where the 2^bits
    conductance levels are evenly spaced between 1/r_off and 1/r_on and each is in series with
    the access transistor, ``G_k = 1 / (r_access + 1/g_k)`` (uniformly used levels). Area =
    ``cell_area`` or 4 F^2 (F = node). Latency = ``read_pulse``. With the defaults a 2-bit cell
    reads at 2.87 fJ against ISAAC's 1.83 fJ (Table I: 2.4 mW / (8 x 128 x 128 x 10 MHz)):
    real weight distributions sit mostly at low conductance, which uniform levels overstate.
    Valid for linear (ohmic) reads, pulse >> RC of the line.
    """

    actions: ClassVar[tuple[str, ...]] = ("read",)
    EXAMPLE: ClassVar = MappingProxyType({"bits": 2})

    bits: int = 1
    read_voltage_v: float = RERAM_DEFAULTS["read_voltage_v"]
    r_on_ohm: float = RERAM_DEFAULTS["r_on_ohm"]
    r_off_ohm: float = RERAM_DEFAULTS["r_off_ohm"]
    r_access_ohm: float = RERAM_DEFAULTS["r_access_ohm"]
    read_pulse_ns: float = RERAM_DEFAULTS["read_pulse_ns"]
    cell_area_um2: float | None = None

    @property
    def mean_conductance_s(self) -> float:
        """Mean conductance of the levels with the access transistor in series, in S."""
        levels = 2**self.bits
        g_off, g_on = 1.0 / self.r_off_ohm, 1.0 / self.r_on_ohm
        total = 0.0
        for k in range(levels):
            g = g_off + (g_on - g_off) * k / (levels - 1)
            total += 1.0 / (self.r_access_ohm + 1.0 / g)
        return total / levels

    def _model_energy_pj(self, action: str) -> float:
        joules = self.read_voltage_v**2 * self.read_pulse_ns * 1e-9 * self.mean_conductance_s
        return joules * 1e12

    def _model_area_um2(self) -> float:
        if self.cell_area_um2 is not None:
            return self.cell_area_um2
        feature_um = self.technology_nm * 1e-3
        return CROSSPOINT_CELL_AREA_F2 * feature_um**2

    def _model_latency_ns(self, action: str) -> float:
        return self.read_pulse_ns

    @classmethod
    def _read_params(cls, s: Section, *, need_energy: bool, need_area: bool) -> dict[str, Any]:
        d = RERAM_DEFAULTS
        values = {
            "bits": s.get("bits", int, 1, lo=1, hi=8),
            "read_voltage_v": s.get("read_voltage", q.voltage_v, d["read_voltage_v"]),
            "r_on_ohm": s.get("r_on", q.resistance_ohm, d["r_on_ohm"]),
            "r_off_ohm": s.get("r_off", q.resistance_ohm, d["r_off_ohm"]),
            "r_access_ohm": s.get("r_access", q.resistance_ohm, d["r_access_ohm"]),
            "read_pulse_ns": s.get("read_pulse", units.time_ns, d["read_pulse_ns"]),
            "cell_area_um2": s.get("cell_area", units.area_um2, None),
        }
        r_on, r_off = values["r_on_ohm"], values["r_off_ohm"]
        if r_on is not None and r_off is not None and not 0 < r_on < r_off:
            s.problems.add(join(s.path, "r_on"), f"must be positive and below r_off "
                                                 f"({r_off:g} ohm), got {r_on:g} ohm")
        return values


#: CAP-RAM (JSSC 2021): the 8 KB 6T array is 62.6 % of the 0.179 mm^2 macro, 1.71 um^2 per bit
#: including array overhead, 65 nm (papers.md section 1.2, derived from the paper card).
CAPRAM_SRAM_BIT = Anchor(energy_pj=0.0, area_um2=0.626 * 0.179e6 / 65536, technology_nm=65.0,
                         source="CAP-RAM: 0.626 x 0.179 mm2 / 65,536 bits, 65 nm")


@register("sram_cell")
@dataclass(frozen=True, kw_only=True)
class SramCell(Component):
    """One 6T SRAM cell read onto a bit line (charge-domain or current-domain IMC).

    Parameters: ``capacitance`` (bit-line capacitance charged per cell read, fF),
    ``supply_voltage`` (V), ``swing`` (bit-line voltage swing, V; default the supply),
    ``cell_area`` (area; default CAP-RAM's).

    Model: energy of one read = ``C x V_dd x V_swing`` (charge C x V_swing drawn from the
    supply). No published per-cell figure of CAP-RAM was found, so C and V have no defaults.
    Area = ``cell_area`` or CAP-RAM's 1.71 um^2 per bit at 65 nm with its array overhead
    (:data:`CAPRAM_SRAM_BIT`) scaled by Stillmaker-Baas area factors. Latency: the macro's
    clock (0.0) unless ``rate``. Valid 22-130 nm for the area.
    """

    actions: ClassVar[tuple[str, ...]] = ("read",)
    EXAMPLE: ClassVar = MappingProxyType({"capacitance": "0.2fF", "supply_voltage": "1.2V"})

    capacitance_ff: float | None = None
    supply_voltage_v: float | None = None
    swing_v: float | None = None
    cell_area_um2: float | None = None

    def _model_energy_pj(self, action: str) -> float:
        self._need(capacitance=self.capacitance_ff, supply_voltage=self.supply_voltage_v)
        swing = self.swing_v if self.swing_v is not None else self.supply_voltage_v
        return self.capacitance_ff * self.supply_voltage_v * swing * 1e-3  # fF V^2 = fJ

    def _model_area_um2(self) -> float:
        if self.cell_area_um2 is not None:
            return self.cell_area_um2
        a = CAPRAM_SRAM_BIT
        return a.area_um2 * area_factor(self.technology_nm, a.technology_nm)

    @classmethod
    def _read_params(cls, s: Section, *, need_energy: bool, need_area: bool) -> dict[str, Any]:
        values = {
            "capacitance_ff": s.get("capacitance", q.capacitance_ff, None),
            "supply_voltage_v": s.get("supply_voltage", q.voltage_v, None),
            "swing_v": s.get("swing", q.voltage_v, None),
            "cell_area_um2": s.get("cell_area", units.area_um2, None),
        }
        cls._require(s, "capacitance", values["capacitance_ff"], need_energy, cls.class_name)
        cls._require(s, "supply_voltage", values["supply_voltage_v"], need_energy,
                     cls.class_name)
        v, sw = values["supply_voltage_v"], values["swing_v"]
        if v is not None and sw is not None and sw > v:
            s.problems.add(join(s.path, "swing"),
                           f"{sw:g} V exceeds supply_voltage ({v:g} V)")
        return values


@register("capacitor_array")
@dataclass(frozen=True, kw_only=True)
class CapacitorArray(Component):
    """One charge-domain MAC capacitor (CAP-RAM: eight 6T cells share one MAC circuit).

    Parameters: ``capacitance`` (fF), ``supply_voltage`` (V), ``density`` (fF/um^2 of the
    capacitor structure, for the area).

    Model: one ``charge`` = the capacitor charged from the supply to ``V`` and then shared,
    ``E = C x V^2`` (half stored, half dissipated in the switch; the stored half is lost in
    the share). Area = ``C / density``. Latency: the macro's clock (0.0) unless ``rate``.
    CAP-RAM's capacitor values were not found, so nothing is defaulted. Valid for full-swing
    charging; a partial swing scales the energy by (swing / V).
    """

    actions: ClassVar[tuple[str, ...]] = ("charge",)
    EXAMPLE: ClassVar = MappingProxyType({"capacitance": "1fF", "supply_voltage": "1.2V",
                                          "density": "2fF/um2"})

    capacitance_ff: float | None = None
    supply_voltage_v: float | None = None
    density_ff_per_um2: float | None = None

    def _model_energy_pj(self, action: str) -> float:
        self._need(capacitance=self.capacitance_ff, supply_voltage=self.supply_voltage_v)
        return self.capacitance_ff * self.supply_voltage_v**2 * 1e-3

    def _model_area_um2(self) -> float:
        self._need(capacitance=self.capacitance_ff, density=self.density_ff_per_um2)
        return self.capacitance_ff / self.density_ff_per_um2

    @classmethod
    def _read_params(cls, s: Section, *, need_energy: bool, need_area: bool) -> dict[str, Any]:
        values = {
            "capacitance_ff": s.get("capacitance", q.capacitance_ff, None),
            "supply_voltage_v": s.get("supply_voltage", q.voltage_v, None),
            "density_ff_per_um2": s.get("density", q.capacitance_density_ff_per_um2, None),
        }
        cls._require(s, "capacitance", values["capacitance_ff"], need_energy or need_area,
                     cls.class_name)
        cls._require(s, "supply_voltage", values["supply_voltage_v"], need_energy,
                     cls.class_name)
        cls._require(s, "density", values["density_ff_per_um2"], need_area, cls.class_name)
        if values["density_ff_per_um2"] == 0:
            s.problems.add(join(s.path, "density"), "must be positive")
        return values


# ----------------------------------------------------------------------------- buffers
#: Energy per access grows as (depth ratio)^0.78 at a fixed width, area linearly: the CACTI
#: fit used by Accelergy (hwcomponents/scaling/scalefuncs.py ``cacti_depth_energy``,
#: "energy scales with depth to the power of (1.56 / 2)").
CACTI_DEPTH_ENERGY_EXPONENT = 1.56 / 2
#: ISAAC (ISCA 2016) IMA input register, 2 KB, 1.24 mW, 0.0021 mm^2, read 1,024 bits (8 x 128
#: rows, one bit each) per 100 ns: 1.24 mW x 100 ns / 1,024 bits = 0.121 pJ per bit (as in
#: arch_configs/isaac_32nm.yaml); 2,100 um^2 / 16,384 bits.
ISAAC_IR_BIT = Anchor(energy_pj=1.24e-3 * 100e-9 / 1024 * 1e12, area_um2=2100.0 / (2048 * 8),
                      technology_nm=32.0,
                      source="ISAAC Table I: IR 2 KB, 1.24 mW, 0.0021 mm2; 1,024 bits / 100 ns")
ISAAC_IR_BYTES = 2048
#: ISAAC tile eDRAM, 64 KB, 256-bit bus, 20.7 mW, 0.083 mm^2: 20.45 pJ per 256-bit access as
#: derived in hwcomponents-library ``isaac.py`` (IsaacEDRAM) -> 0.0799 pJ per bit.
ISAAC_EDRAM_BIT = Anchor(energy_pj=20.45 / 256, area_um2=83000.0 / (65536 * 8),
                         technology_nm=32.0,
                         source="ISAAC Table I eDRAM 64 KB; hwcomponents-library IsaacEDRAM "
                                "20.45 pJ / 256-bit access, 83,000 um2")
ISAAC_EDRAM_BYTES = 65536


@dataclass(frozen=True, kw_only=True)
class _Buffer(PerBitComponent):
    """A buffer read and written per bit, scaled from an anchor by size and node.

    Model: ``E_bit = E_anchor x (size / size_anchor)^0.78 x ef(node)``,
    ``A = A_bit_anchor x 8 x size x af(node)``.
    """

    actions: ClassVar[tuple[str, ...]] = ("read", "write")
    ANCHOR: ClassVar[Anchor]
    ANCHOR_BYTES: ClassVar[int]
    DEFAULT_WIDTH_BITS: ClassVar[int] = 256
    DEFAULT_RATE_HZ: ClassVar[float | None] = 1.2e9  # ISAAC's digital clock

    size_bytes: int | None = None

    def _model_energy_pj(self, action: str) -> float:
        self._need(size=self.size_bytes)
        a = self.ANCHOR
        depth = (self.size_bytes / self.ANCHOR_BYTES) ** CACTI_DEPTH_ENERGY_EXPONENT
        return a.energy_pj * depth * energy_factor(self.technology_nm, a.technology_nm)

    def _model_area_um2(self) -> float:
        self._need(size=self.size_bytes)
        a = self.ANCHOR
        return a.area_um2 * 8 * self.size_bytes * area_factor(self.technology_nm,
                                                              a.technology_nm)

    @classmethod
    def _read_params(cls, s: Section, *, need_energy: bool, need_area: bool) -> dict[str, Any]:
        size = s.get("size", units.size_bytes, None)
        if size == 0:
            s.problems.add(join(s.path, "size"), "must be at least 1 byte")
        cls._require(s, "size", size, need_energy or need_area, cls.class_name)
        return {"size_bytes": size, "width_bits": cls._read_width(s)}


@register("sram_buffer")
@dataclass(frozen=True, kw_only=True)
class SramBuffer(_Buffer):
    """SRAM buffer (input/output buffers, ISAAC's IR/OR), per-bit ``read`` and ``write``.

    Parameters: ``size`` (bytes, e.g. ``2KiB``), ``width`` (bits per access, default 256).

    Model: anchored to ISAAC's 2 KB input register (:data:`ISAAC_IR_BIT`: 0.121 pJ per bit,
    0.128 um^2 per bit at 32 nm), energy per bit x (size / 2 KiB)^0.78 (CACTI depth fit), area
    proportional to size, both x Stillmaker-Baas node factors. Reads and writes cost the same.
    Latency: one access per 1.2 GHz cycle unless ``rate``. Valid 0.5-32 KiB, 22-130 nm; the
    0.78 exponent overstates banked large arrays (state figures beyond 32 KiB).
    """

    ANCHOR: ClassVar[Anchor] = ISAAC_IR_BIT
    ANCHOR_BYTES: ClassVar[int] = ISAAC_IR_BYTES
    EXAMPLE: ClassVar = MappingProxyType({"size": "2KiB"})


@register("edram_buffer")
@dataclass(frozen=True, kw_only=True)
class EdramBuffer(_Buffer):
    """eDRAM buffer (ISAAC's 64 KB tile buffer), per-bit ``read`` and ``write``.

    Parameters: ``size`` (bytes, e.g. ``64KiB``), ``width`` (bits per access, default 256).

    Model: anchored to ISAAC's tile eDRAM (:data:`ISAAC_EDRAM_BIT`: 20.45 pJ per 256-bit
    access = 0.0799 pJ per bit, 83,000 um^2 per 64 KiB at 32 nm), energy per bit x
    (size / 64 KiB)^0.78 (CACTI depth fit, the same rule Accelergy applies to this eDRAM), area
    proportional to size, both x Stillmaker-Baas node factors; refresh is not modelled. Latency:
    one access per 1.2 GHz cycle unless ``rate``. Valid 16 KiB-1 MiB, 22-130 nm.
    """

    ANCHOR: ClassVar[Anchor] = ISAAC_EDRAM_BIT
    ANCHOR_BYTES: ClassVar[int] = ISAAC_EDRAM_BYTES
    EXAMPLE: ClassVar = MappingProxyType({"size": "64KiB"})


# ----------------------------------------------------------------------------- arrays
@register("reram_crossbar")
@dataclass(frozen=True, kw_only=True)
class ReramCrossbar(Component):
    """One ReRAM crossbar array (ISAAC's 128 x 128 2-bit arrays); ``read`` reads one cell.

    Parameters: ``rows``, ``columns`` (every column with cells, the unit column included),
    ``bits`` (per cell, default 1).

    Model: a cell read is the :class:`ReramCell` Ohm's-law read at ``bits`` with its default
    device figures (node independent: the energy is set by the device's conductances and the
    read voltage, not by the CMOS node); area = ``rows x columns x 4 F^2`` (F = node), so the
    node moves the area as F^2. Valid for 1T1R / crosspoint arrays whose peripheral drivers are
    counted separately (DACs, S+H, ADCs). Used as a ratio against a stated table row: the
    cell-read energy ratio between two cell resolutions and the area ratio between two sizes.
    """

    actions: ClassVar[tuple[str, ...]] = ("read",)
    EXAMPLE: ClassVar = MappingProxyType({"rows": 128, "columns": 129, "bits": 2})

    rows: int = 128
    columns: int = 128
    bits: int = 1

    def _model_energy_pj(self, action: str) -> float:
        return ReramCell(technology_nm=self.technology_nm, bits=self.bits).energy_pj("read")

    def _model_area_um2(self) -> float:
        feature_um = self.technology_nm * 1e-3
        return self.rows * self.columns * CROSSPOINT_CELL_AREA_F2 * feature_um**2

    @classmethod
    def _read_params(cls, s: Section, *, need_energy: bool, need_area: bool) -> dict[str, Any]:
        return {"rows": s.get("rows", int, 128, lo=1, hi=1 << 16),
                "columns": s.get("columns", int, 128, lo=1, hi=1 << 16),
                "bits": s.get("bits", int, 1, lo=1, hi=8)}


@register("sram_array")
@dataclass(frozen=True, kw_only=True)
class SramArray(Component):
    """One 6T-SRAM compute array; ``read`` reads one cell onto its bit line.

    Parameters: ``rows``, ``columns``, ``capacitance`` and ``supply_voltage`` (as
    :class:`SramCell`; required only when the energy is not stated).

    Model: cell read energy of :class:`SramCell` (``C x V_dd x V_swing``, no default: CAP-RAM
    publishes none); area = ``rows x columns x`` CAP-RAM's 1.71 um^2 per bit at 65 nm scaled by
    Stillmaker-Baas area factors. Valid 22-130 nm for the area.
    """

    actions: ClassVar[tuple[str, ...]] = ("read",)
    EXAMPLE: ClassVar = MappingProxyType({"rows": 512, "columns": 128,
                                          "capacitance": "0.2fF", "supply_voltage": "1.2V"})

    rows: int = 128
    columns: int = 128
    capacitance_ff: float | None = None
    supply_voltage_v: float | None = None

    def _model_energy_pj(self, action: str) -> float:
        self._need(capacitance=self.capacitance_ff, supply_voltage=self.supply_voltage_v)
        return self.capacitance_ff * self.supply_voltage_v**2 * 1e-3

    def _model_area_um2(self) -> float:
        a = CAPRAM_SRAM_BIT
        return (self.rows * self.columns * a.area_um2
                * area_factor(self.technology_nm, a.technology_nm))

    @classmethod
    def _read_params(cls, s: Section, *, need_energy: bool, need_area: bool) -> dict[str, Any]:
        values = {"rows": s.get("rows", int, 128, lo=1, hi=1 << 16),
                  "columns": s.get("columns", int, 128, lo=1, hi=1 << 16),
                  "capacitance_ff": s.get("capacitance", q.capacitance_ff, None),
                  "supply_voltage_v": s.get("supply_voltage", q.voltage_v, None)}
        cls._require(s, "capacitance", values["capacitance_ff"], need_energy, cls.class_name)
        cls._require(s, "supply_voltage", values["supply_voltage_v"], need_energy,
                     cls.class_name)
        return values
