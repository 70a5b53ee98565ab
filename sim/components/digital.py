"""Digital periphery: shift-and-add units, flip-flop registers, multipliers."""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar

from sim.components.base import Anchor, Component, PerBitComponent
from sim.components.registry import register
from sim.components.scaling import area_factor, energy_factor
from sim.config import units
from sim.config.validate import Section, join

#: ISAAC (ISCA 2016) Table I, per IMA: 4 shift-and-add units, 0.2 mW, 0.00024 mm^2, one add per
#: ADC conversion of the IMA's 8 ADCs at 1.2 GS/s: 0.2 mW / (8 x 1.2 GS/s) = 0.0208 pJ per 16-bit
#: add (the same derivation as hwcomponents-library IsaacShiftAdd); 240 um^2 / 4 units.
ISAAC_SHIFT_ADD = Anchor(energy_pj=0.2 * 1e9 / (8 * 1.2e9), area_um2=240.0 / 4, technology_nm=32.0,
                         source="ISAAC Table I: S+A (IMA) x4, 0.2 mW, 0.00024 mm2; 9.6 G adds/s")
ISAAC_SHIFT_ADD_WIDTH_BITS = 16

#: Aladdin (Shao et al., ISCA 2014) register, 40 nm, per bit: 0.009 pJ per read, 5.98 um^2,
#: as tabulated in hwcomponents-library ``aladdin.py`` (AladdinRegister).
ALADDIN_REGISTER_BIT = Anchor(energy_pj=0.009, area_um2=5.98, technology_nm=40.0,
                              source="Aladdin (ISCA 2014) register, 40 nm, per bit")


@register("shift_add")
@dataclass(frozen=True, kw_only=True)
class ShiftAdd(Component):
    """Shift-and-add unit accumulating bit-sliced partial sums (one ``add`` per ADC output).

    Parameters: ``width`` (bits of the accumulated value, default 16).

    Model: ISAAC's IMA shift-and-add (:data:`ISAAC_SHIFT_ADD`: 0.0208 pJ per 16-bit add,
    60 um^2 per unit at 32 nm), energy and area proportional to width (a ripple adder and
    register per bit), times Stillmaker-Baas node factors. Latency: one 1.2 GHz cycle unless
    ``rate``. Valid 8-32 bits, 22-130 nm.
    """

    actions: ClassVar[tuple[str, ...]] = ("add",)
    EXAMPLE: ClassVar = MappingProxyType({"width": 16})
    DEFAULT_RATE_HZ: ClassVar[float | None] = 1.2e9

    width_bits: int = ISAAC_SHIFT_ADD_WIDTH_BITS

    def _model_energy_pj(self, action: str) -> float:
        a = ISAAC_SHIFT_ADD
        return (a.energy_pj * self.width_bits / ISAAC_SHIFT_ADD_WIDTH_BITS
                * energy_factor(self.technology_nm, a.technology_nm))

    def _model_area_um2(self) -> float:
        a = ISAAC_SHIFT_ADD
        return (a.area_um2 * self.width_bits / ISAAC_SHIFT_ADD_WIDTH_BITS
                * area_factor(self.technology_nm, a.technology_nm))

    @classmethod
    def _read_params(cls, s: Section, *, need_energy: bool, need_area: bool) -> dict[str, Any]:
        return {"width_bits": s.get("width", int, ISAAC_SHIFT_ADD_WIDTH_BITS, lo=1, hi=256)}


@register("register")
@dataclass(frozen=True, kw_only=True)
class Register(PerBitComponent):
    """Flip-flop register (pipeline and output latches), per-bit ``read`` and ``write``.

    Parameters: ``width`` (bits per access, default 16), ``size`` (bytes held; default one
    access, ``width / 8``).

    Model: Aladdin's register (:data:`ALADDIN_REGISTER_BIT`: 0.009 pJ per bit read, 5.98 um^2
    per bit at 40 nm); a write is charged as a read (Aladdin tabulates reads only); area =
    ``8 x size x 5.98 um^2``; both x Stillmaker-Baas node factors. Latency: one 1 GHz cycle
    unless ``rate``. Valid for flip-flop storage up to a few hundred bits; ISAAC's kilobyte
    "registers" are SRAM arrays: use ``sram_buffer`` or state their figures.
    """

    actions: ClassVar[tuple[str, ...]] = ("read", "write")
    EXAMPLE: ClassVar = MappingProxyType({"width": 16})
    DEFAULT_WIDTH_BITS: ClassVar[int] = 16
    DEFAULT_RATE_HZ: ClassVar[float | None] = 1e9

    size_bytes: int | None = None

    def _model_energy_pj(self, action: str) -> float:
        a = ALADDIN_REGISTER_BIT
        return a.energy_pj * energy_factor(self.technology_nm, a.technology_nm)

    def _model_area_um2(self) -> float:
        a = ALADDIN_REGISTER_BIT
        bits = 8 * self.size_bytes if self.size_bytes is not None else self.width_bits
        return a.area_um2 * bits * area_factor(self.technology_nm, a.technology_nm)

    @classmethod
    def _read_params(cls, s: Section, *, need_energy: bool, need_area: bool) -> dict[str, Any]:
        size = s.get("size", units.size_bytes, None)
        if size == 0:
            s.problems.add(join(s.path, "size"), "must be at least 1 byte")
        return {"size_bytes": size, "width_bits": cls._read_width(s)}


#: ISAAC (ISCA 2016) Table I, per tile: 2 sigmoid units, 0.52 mW, 0.0006 mm^2; one activation
#: per unit per 1.2 GHz digital cycle: 0.52 mW / (2 x 1.2 GHz) = 0.2167 pJ; 300 um^2 each.
ISAAC_SIGMOID = Anchor(energy_pj=0.52 * 1e9 / (2 * 1.2e9), area_um2=600.0 / 2, technology_nm=32.0,
                       source="ISAAC Table I: sigmoid x2, 0.52 mW, 0.0006 mm2, 1.2 GHz")
#: ISAAC Table I, per tile: one max-pool unit, 0.4 mW, 0.00024 mm^2; one element compared per
#: 1.2 GHz cycle: 0.4 mW / 1.2 GHz = 0.333 pJ per element read.
ISAAC_MAXPOOL = Anchor(energy_pj=0.4 * 1e9 / 1.2e9, area_um2=240.0, technology_nm=32.0,
                       source="ISAAC Table I: max-pool, 0.4 mW, 0.00024 mm2, 1.2 GHz")


@dataclass(frozen=True, kw_only=True)
class _AnchoredUnit(Component):
    """A digital unit whose one action costs its anchor's energy, scaled by node only."""

    ANCHOR: ClassVar[Anchor]
    DEFAULT_RATE_HZ: ClassVar[float | None] = 1.2e9

    def _model_energy_pj(self, action: str) -> float:
        a = self.ANCHOR
        return a.energy_pj * energy_factor(self.technology_nm, a.technology_nm)

    def _model_area_um2(self) -> float:
        a = self.ANCHOR
        return a.area_um2 * area_factor(self.technology_nm, a.technology_nm)


@register("sigmoid")
@dataclass(frozen=True, kw_only=True)
class Sigmoid(_AnchoredUnit):
    """Activation unit (ISAAC's sigmoid/ReLU unit); ``activate`` is one element.

    Model: ISAAC's unit (:data:`ISAAC_SIGMOID`: 0.2167 pJ per element, 300 um^2 at 32 nm)
    times Stillmaker-Baas node factors. Valid for 16-bit look-up/compare units, 22-130 nm.
    """

    actions: ClassVar[tuple[str, ...]] = ("activate",)
    ANCHOR: ClassVar[Anchor] = ISAAC_SIGMOID


@register("maxpool")
@dataclass(frozen=True, kw_only=True)
class MaxPool(_AnchoredUnit):
    """Pooling unit (ISAAC's max-pool); ``pool`` is one element read by a window.

    Model: ISAAC's unit (:data:`ISAAC_MAXPOOL`: 0.333 pJ per element, 240 um^2 at 32 nm)
    times Stillmaker-Baas node factors. Valid for 16-bit comparators, 22-130 nm.
    """

    actions: ClassVar[tuple[str, ...]] = ("pool",)
    ANCHOR: ClassVar[Anchor] = ISAAC_MAXPOOL


#: Horowitz, "Computing's energy problem (and what we can do about it)", ISSCC 2014, 45 nm
#: table of operation energies and areas: 8-bit integer multiply 0.2 pJ and 282 um^2 (32-bit:
#: 3.1 pJ, 3495 um^2, i.e. about (32/8)^2 = 16x: an array multiplier's cost grows with the
#: product of its operand widths).
HOROWITZ_MULT_8BIT = Anchor(energy_pj=0.2, area_um2=282.0, technology_nm=45.0,
                            source="Horowitz ISSCC 2014: 8-bit int multiply, 0.2 pJ, 282 um2, "
                                   "45 nm")
HOROWITZ_MULT_WIDTH_BITS = 8


@register("multiplier")
@dataclass(frozen=True, kw_only=True)
class Multiplier(Component):
    """Integer multiplier of a partial output by a small integer scale (``multiply``).

    Used after the ADC when unified weight blocks are stored as signs: each (row group,
    output) partial output is multiplied by its block's magnitude
    (:class:`sim.macros.CrossbarLayer` ``scale``).

    Parameters: ``width`` (bits of the partial output, default 16) and ``scale_width`` (bits
    of the scale, default 8).

    Model: Horowitz's 8 x 8-bit multiplier (:data:`HOROWITZ_MULT_8BIT`: 0.2 pJ, 282 um^2 at
    45 nm), energy and area proportional to ``width x scale_width`` (an array multiplier; his
    32-bit figure, 3.1 pJ, is 15.5x the 8-bit one, the product rule says 16x), times
    Stillmaker-Baas node factors. Latency: one 1.2 GHz cycle unless ``rate``.
    """

    actions: ClassVar[tuple[str, ...]] = ("multiply",)
    EXAMPLE: ClassVar = MappingProxyType({"width": 16, "scale_width": 8})
    DEFAULT_RATE_HZ: ClassVar[float | None] = 1.2e9

    width_bits: int = 16
    scale_width_bits: int = 8

    def _ratio(self) -> float:
        return self.width_bits * self.scale_width_bits / HOROWITZ_MULT_WIDTH_BITS**2

    def _model_energy_pj(self, action: str) -> float:
        a = HOROWITZ_MULT_8BIT
        return a.energy_pj * self._ratio() * energy_factor(self.technology_nm, a.technology_nm)

    def _model_area_um2(self) -> float:
        a = HOROWITZ_MULT_8BIT
        return a.area_um2 * self._ratio() * area_factor(self.technology_nm, a.technology_nm)

    @classmethod
    def _read_params(cls, s: Section, *, need_energy: bool, need_area: bool) -> dict[str, Any]:
        return {"width_bits": s.get("width", int, 16, lo=1, hi=256),
                "scale_width_bits": s.get("scale_width", int, 8, lo=1, hi=64)}


@register("lif_neuron")
@dataclass(frozen=True, kw_only=True)
class LIFNeuron(Component):
    """Digital spiking-neuron unit: one ``update`` is one neuron's membrane step.

    Per update: read the membrane from its register, add the input current (integrate), a
    shift-and-subtract for the leak (LIF; an IF neuron pays it too: an upper bound), compare
    with the threshold (a subtraction), write the membrane back (reset or not). Parameters:
    ``width`` (membrane bits, default 16; bound to ``outputs.bits``).

    Model: three ``width``-bit adds of ISAAC's shift-and-add (:data:`ISAAC_SHIFT_ADD`, 0.0208
    pJ per 16-bit add, proportional to width) plus a ``width``-bit register read and write
    (Aladdin, :data:`ALADDIN_REGISTER_BIT`, 0.009 pJ per bit at 40 nm), each times its
    Stillmaker-Baas node factor; area: three adders and one ``width``-bit register. Latency:
    one 1.2 GHz cycle unless ``rate``. A composition of the two calibrated models, not a
    published neuron circuit: valid as far as they are (8-32 bits, 22-130 nm).
    """

    actions: ClassVar[tuple[str, ...]] = ("update",)
    EXAMPLE: ClassVar = MappingProxyType({"width": 16})
    DEFAULT_RATE_HZ: ClassVar[float | None] = 1.2e9
    ADDS: ClassVar[int] = 3

    width_bits: int = ISAAC_SHIFT_ADD_WIDTH_BITS

    def _model_energy_pj(self, action: str) -> float:
        a, r = ISAAC_SHIFT_ADD, ALADDIN_REGISTER_BIT
        add = (a.energy_pj * self.width_bits / ISAAC_SHIFT_ADD_WIDTH_BITS
               * energy_factor(self.technology_nm, a.technology_nm))
        reg = 2 * self.width_bits * r.energy_pj * energy_factor(self.technology_nm,
                                                                r.technology_nm)
        return self.ADDS * add + reg

    def _model_area_um2(self) -> float:
        a, r = ISAAC_SHIFT_ADD, ALADDIN_REGISTER_BIT
        add = (a.area_um2 * self.width_bits / ISAAC_SHIFT_ADD_WIDTH_BITS
               * area_factor(self.technology_nm, a.technology_nm))
        return self.ADDS * add + self.width_bits * r.area_um2 * area_factor(self.technology_nm,
                                                                             r.technology_nm)

    @classmethod
    def _read_params(cls, s: Section, *, need_energy: bool, need_area: bool) -> dict[str, Any]:
        return {"width_bits": s.get("width", int, ISAAC_SHIFT_ADD_WIDTH_BITS, lo=1, hi=256)}
