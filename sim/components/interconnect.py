"""Interconnect: on-chip routers and links, off-chip links; ``transfer`` is per bit."""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar

from sim.components.base import Anchor, PerBitComponent
from sim.components.registry import register
from sim.components.scaling import area_factor, energy_factor
from sim.config.validate import Section

#: ISAAC (ISCA 2016) Table I router (flit 32, 8 ports, 42 mW, 0.151 mm^2; one router serves 4
#: tiles, which is why a tile's total counts a quarter of it): 20.74 pJ per 256 bits as
#: derived in hwcomponents-library ``isaac.py`` (IsaacRouter) -> 0.0810 pJ per bit.
ISAAC_ROUTER = Anchor(energy_pj=20.74 / 256, area_um2=151000.0, technology_nm=32.0,
                      source="ISAAC Table I router; hwcomponents-library IsaacRouter 20.74 pJ "
                             "per 256 bits")
#: ISAAC Table I eDRAM-to-IMA bus (384 wires, 7 mW, 0.090 mm^2 per tile): 0.054 pJ per bit as
#: derived in hwcomponents-library ``isaac.py`` (IsaacEDRAMBus); 90,000 um^2 / 384 wires.
ISAAC_BUS_WIRE = Anchor(energy_pj=0.054, area_um2=90000.0 / 384, technology_nm=32.0,
                        source="ISAAC Table I eDRAM-IMA bus 384 wires 0.090 mm2; "
                               "hwcomponents-library IsaacEDRAMBus 0.054 pJ/bit")
#: ISAAC Table I HyperTransport: 4 links, 1.6 GHz, 6.4 GB/s per link, 10.4 W, 22.88 mm^2:
#: 10.4 W / (4 x 51.2 Gb/s) = 50.78 pJ per bit; 5.72 mm^2 per 32-bit-per-clock link.
ISAAC_HT_LINK = Anchor(energy_pj=10.4 * 1e12 / (4 * 6.4e9 * 8), area_um2=22.88e6 / 4,
                       technology_nm=32.0,
                       source="ISAAC Table I HyperTransport 4 links 6.4 GB/s 10.4 W 22.88 mm2")
ISAAC_HT_WIDTH_BITS = 32


@register("router")
@dataclass(frozen=True, kw_only=True)
class Router(PerBitComponent):
    """Network-on-chip router; one ``transfer`` moves one bit through it.

    Parameters: ``width`` (flit bits, default 32).

    Model: ISAAC's router (:data:`ISAAC_ROUTER`: 0.0810 pJ per bit, 151,000 um^2 for 8 ports
    and 32-bit flits at 32 nm) times Stillmaker-Baas node factors; port count and flit width
    are not scaled, so it is valid near 8 ports / 32-bit flits, 22-130 nm. Latency: one flit
    per 1 GHz cycle (ISAAC's inter-tile link, 32 bits at 1 GHz) unless ``rate``.
    """

    actions: ClassVar[tuple[str, ...]] = ("transfer",)
    DEFAULT_WIDTH_BITS: ClassVar[int] = 32
    DEFAULT_RATE_HZ: ClassVar[float | None] = 1e9

    def _model_energy_pj(self, action: str) -> float:
        a = ISAAC_ROUTER
        return a.energy_pj * energy_factor(self.technology_nm, a.technology_nm)

    def _model_area_um2(self) -> float:
        a = ISAAC_ROUTER
        return a.area_um2 * area_factor(self.technology_nm, a.technology_nm)

    @classmethod
    def _read_params(cls, s: Section, *, need_energy: bool, need_area: bool) -> dict[str, Any]:
        return {"width_bits": cls._read_width(s)}


@register("noc_link")
@dataclass(frozen=True, kw_only=True)
class NocLink(PerBitComponent):
    """On-chip link or bus (ISAAC's eDRAM-to-IMA bus); one ``transfer`` moves one bit.

    Parameters: ``width`` (wires, default 256).

    Model: ISAAC's tile bus (:data:`ISAAC_BUS_WIRE`: 0.054 pJ per bit, 234 um^2 per wire at
    32 nm); energy per bit x Stillmaker-Baas energy factor, area = width x 234 um^2 x area
    factor. The bus length is not stated in ISAAC, so length is not a parameter: the model is
    valid for tile-span wires (~0.5 mm), 22-130 nm; state figures for longer links. Latency:
    one transfer per 1.2 GHz cycle unless ``rate``.
    """

    actions: ClassVar[tuple[str, ...]] = ("transfer",)
    EXAMPLE: ClassVar = MappingProxyType({"width": 256})
    DEFAULT_WIDTH_BITS: ClassVar[int] = 256
    DEFAULT_RATE_HZ: ClassVar[float | None] = 1.2e9

    def _model_energy_pj(self, action: str) -> float:
        a = ISAAC_BUS_WIRE
        return a.energy_pj * energy_factor(self.technology_nm, a.technology_nm)

    def _model_area_um2(self) -> float:
        a = ISAAC_BUS_WIRE
        return a.area_um2 * self.width_bits * area_factor(self.technology_nm, a.technology_nm)

    @classmethod
    def _read_params(cls, s: Section, *, need_energy: bool, need_area: bool) -> dict[str, Any]:
        return {"width_bits": cls._read_width(s)}


@register("offchip_link")
@dataclass(frozen=True, kw_only=True)
class OffchipLink(PerBitComponent):
    """Chip-to-chip link (ISAAC's HyperTransport); one ``transfer`` moves one bit.

    Parameters: ``width`` (bits per clock, default 32).

    Model: ISAAC's HyperTransport link (:data:`ISAAC_HT_LINK`: 50.78 pJ per bit, 5.72 mm^2 per
    32-bit-per-clock link). I/O energy is set by the channel, not the logic node, so neither
    energy nor area is scaled with the node; area is proportional to width. Latency: one
    transfer per 1.6 GHz clock unless ``rate``. (The Accelergy library's ISAAC chip-to-chip
    link uses 26 pJ per 128 bits at 65 nm instead; its source is not stated.)
    """

    actions: ClassVar[tuple[str, ...]] = ("transfer",)
    DEFAULT_WIDTH_BITS: ClassVar[int] = ISAAC_HT_WIDTH_BITS
    DEFAULT_RATE_HZ: ClassVar[float | None] = 1.6e9

    def _model_energy_pj(self, action: str) -> float:
        return ISAAC_HT_LINK.energy_pj

    def _model_area_um2(self) -> float:
        return ISAAC_HT_LINK.area_um2 * self.width_bits / ISAAC_HT_WIDTH_BITS

    @classmethod
    def _read_params(cls, s: Section, *, need_energy: bool, need_area: bool) -> dict[str, Any]:
        return {"width_bits": cls._read_width(s)}


@register("bus")
@dataclass(frozen=True, kw_only=True)
class Bus(NocLink):
    """A tile's shared bus (ISAAC's 384-wire eDRAM-to-IMA bus); ``transfer`` moves one bit.

    Model: the :class:`NocLink` tile-span wire (0.054 pJ/bit, 234 um^2 per wire at 32 nm,
    Stillmaker-Baas node factors). Parameters: ``width`` (wires, default 384).
    """

    EXAMPLE: ClassVar = MappingProxyType({"width": 384})
    DEFAULT_WIDTH_BITS: ClassVar[int] = 384
