"""Converters: ADCs (SAR, charge-injection SAR, flash), row DACs, sample-and-hold.

The ADC energy and area model follows the ADC performance survey of B. Murmann ("ADC
Performance Survey 1997-2023", github.com/bmurmann/ADC-survey) as fitted by T. Andrulis,
R. Chen, H.-S. Lee, J. S. Emer, V. Sze, "Modeling Analog-Digital-Converter Energy and Area for
Compute-In-Memory Accelerator Design", arXiv:2404.06553 (2024), whose open-source fit is the
Accelergy/CiMLoop ADC plug-in (PyPI ``hwcomponents-adc`` 1.0.21, ``adc_data/model.yaml``,
``model.py``; earlier ``Accelergy-Project/accelergy-adc-plug-in``). The equations below are
written from that description; the constants are the published fit's, cited one by one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar

from sim.components.base import Anchor, Component
from sim.components.registry import register
from sim.components.scaling import area_factor, energy_factor
from sim.config.validate import Section, join

# ----------------------------------------------------------------------------- survey model
# Constants of the survey fit, hwcomponents-adc 1.0.21 adc_data/model.yaml ("FOMS_hf [dB]" and
# "area (um^2)" blocks). Frequencies, nodes, energies and areas enter as natural logarithms.
#: Speed bound on the Schreier figure of merit: FOM_S <= A + B ln(f_s / Hz)   [dB].
FOMS_SPEED_INTERCEPT_DB = 213.7806687348118
FOMS_SPEED_SLOPE_DB = -2.8719030399529957
#: Resolution bound: FOM_S <= C0 + C1 * ceil(ENOB), ceil(ENOB) clamped to 0..20. The published
#: ``max_by_enob`` list (21 entries) is exactly this straight line.
FOMS_ENOB_CAP0_DB = 128.3068287398817
FOMS_ENOB_CAP_STEP_DB = 3.2205115109775657
FOMS_ENOB_CAP_MAX_INDEX = 20
#: Correction of the bound to the survey's energies: exp(k0 + kT ln(node/nm) + kB ln(ENOB) + r)
#: (k0 also turns J into pJ: the regression target was pJ per conversion).
ENERGY_TECH_INTERCEPT = 26.0496215686518
ENERGY_TECH_SLOPE = 1.8800369206815004
ENERGY_ENOB_SLOPE = -2.8291256050594527
ENERGY_RESIDUAL = -1.4702022133784405
#: Area fit: ln(A/um^2) = a0 + aT ln(node/nm) + af ln(f_s/Hz) + aE ln(E/pJ).
AREA_INTERCEPT = 1.3461916439910742
AREA_TECH_SLOPE = 0.9932794744745022
AREA_FREQ_SLOPE = 0.18071538424508238
AREA_ENERGY_SLOPE = 0.29912426192653485
#: Range of the 215 survey designs behind the fit (adc_data/adc_list.csv of the same package).
SURVEY_ENOB_RANGE = (3.4, 17.2)
SURVEY_NODE_RANGE_NM = (4.0, 1000.0)
SURVEY_RATE_RANGE_HZ = (1e3, 9e10)


#: Lowest ENOB at which the survey fit is used; below it the comparator-count model takes over.
#: 4 bits: the survey has designs down to ENOB 3.4 (its 10th percentile is 4.8), and the fit
#: is monotone from 4 bits up, while below ~3 bits its energy rises again (2.5 x at 1 bit vs
#: 3 bits), which no converter does.
LOW_ENOB_LIMIT = 4.0


def comparator_ratio(enob: float, ref_enob: float) -> float:
    """Energy ratio of a flash-style converter at ``enob`` vs ``ref_enob``: comparator count.

    A flash (or any converter whose energy is dominated by its comparator decisions) of N
    bits has ``2^N - 1`` comparators firing per conversion, so its energy per conversion scales
    as ``(2^N - 1)``; the ADC model uses it below :data:`LOW_ENOB_LIMIT` bits, anchored to the
    survey fit at 4 bits (continuous there; 1 bit costs 1/15 of 4 bits).
    """
    return (2.0**enob - 1.0) / (2.0**ref_enob - 1.0)


def check_survey_range(enob: float, rate_hz: float, technology_nm: float) -> None:
    """Refuse a rate or node outside the survey's designs (ENOB is handled by the model)."""
    lo, hi = SURVEY_RATE_RANGE_HZ
    if not lo <= rate_hz <= hi:
        raise ValueError(f"ADC rate {rate_hz:.4g} S/s is outside the ADC survey model's range "
                         f"({lo:.0e}-{hi:.0e} S/s); state the ADC's figures instead")
    lo, hi = SURVEY_NODE_RANGE_NM
    if not lo <= technology_nm <= hi:
        raise ValueError(f"technology {technology_nm:g} nm is outside the ADC survey model's "
                         f"range ({lo:g}-{hi:g} nm)")
    if enob > SURVEY_ENOB_RANGE[1]:
        raise ValueError(f"ENOB {enob:g} is above the ADC survey model's range "
                         f"(up to {SURVEY_ENOB_RANGE[1]:g})")


def ideal_sndr_db(enob: float) -> float:
    """SNDR of an ideal ``enob``-bit quantizer with a full-scale sine: 6.02 N + 1.76 dB."""
    return 20.0 * math.log10(2.0) * enob + 10.0 * math.log10(1.5)


def survey_foms_db(enob: float, rate_hz: float) -> float:
    """Best Schreier FOM reachable at ``rate_hz`` and ``enob``: the lower of the two bounds.

    At low resolution the resolution bound binds: FOM_S rises 3.22 dB per bit, so the bound
    on energy grows only 10^((6.02 - 3.22)/10) = 1.91 x per bit (Walden-like). Above the knee
    where it meets the speed bound, FOM_S is constant and the energy bound grows 4 x per bit
    (thermal-noise limited, Schreier). The knee moves to lower ENOB as the rate rises (about
    10 bits at 100 MS/s, 8 bits at 1.28 GS/s).
    """
    speed = FOMS_SPEED_INTERCEPT_DB + FOMS_SPEED_SLOPE_DB * math.log(rate_hz)
    index = min(max(math.ceil(enob), 0), FOMS_ENOB_CAP_MAX_INDEX)
    return min(speed, FOMS_ENOB_CAP0_DB + FOMS_ENOB_CAP_STEP_DB * index)


def survey_adc_energy_pj(enob: float, rate_hz: float, technology_nm: float) -> float:
    """Energy of one conversion, in pJ, of the best survey ADC at these parameters.

    ``E = 10^((SNDR - FOM_S)/10) / 2 x exp(k0 + kT ln T + kB ln ENOB + r)``: the first factor
    inverts FOM_S = SNDR + 10 log10(f_s / (2 P)) into energy per sample (J); the second is the
    survey regression of the remaining error on node and resolution (and J -> pJ).
    """
    if enob <= 0 or rate_hz <= 0 or technology_nm <= 0:
        raise ValueError("ADC model needs positive enob, rate and technology node, got "
                         f"{enob!r}, {rate_hz!r}, {technology_nm!r}")
    check_survey_range(enob, rate_hz, technology_nm)
    if enob < LOW_ENOB_LIMIT:
        # Below the fitted range the fit turns up again (its ln ENOB correction grows faster
        # than the bound falls): use the comparator-count model instead.
        return (survey_adc_energy_pj(LOW_ENOB_LIMIT, rate_hz, technology_nm)
                * comparator_ratio(enob, LOW_ENOB_LIMIT))
    bound = 10.0 ** ((ideal_sndr_db(enob) - survey_foms_db(enob, rate_hz)) / 10.0) / 2.0
    correction = math.exp(ENERGY_TECH_INTERCEPT + ENERGY_TECH_SLOPE * math.log(technology_nm)
                          + ENERGY_ENOB_SLOPE * math.log(enob) + ENERGY_RESIDUAL)
    return bound * correction


def survey_adc_area_um2(rate_hz: float, technology_nm: float, energy_pj: float) -> float:
    """Area of one ADC, in um^2, from the survey's regression (lowest-area 10 % of designs).

    ``A = exp(a0) x T^aT x f_s^af x E^aE`` (paper Eq. 1: about 21 x T^1.0 x f^0.2 x E^0.3).
    """
    if rate_hz <= 0 or technology_nm <= 0 or energy_pj <= 0:
        raise ValueError("ADC area model needs positive rate, node and energy")
    return math.exp(AREA_INTERCEPT + AREA_TECH_SLOPE * math.log(technology_nm)
                    + AREA_FREQ_SLOPE * math.log(rate_hz)
                    + AREA_ENERGY_SLOPE * math.log(energy_pj))


# ----------------------------------------------------------------------------- ADCs
@dataclass(frozen=True, kw_only=True)
class _SurveyAdc(Component):
    """An ADC whose model is the survey bound (see the module docstring).

    Parameters (YAML): ``bits`` (resolution, 1..16), ``rate`` (conversions per second of one
    ADC), ``enob`` (effective bits, default ``bits``; the survey model is in ENOB).

    Model: energy per conversion = :func:`survey_adc_energy_pj` at (ENOB, rate, node); area =
    :func:`survey_adc_area_um2` at (rate, node, energy), with the stated energy when one is
    given (energy is a regressor of the fit); latency = 1 / rate; leakage 0 (the survey
    energies are total power / rate, so static power is already inside; hwcomponents-adc books
    20 % of it as leakage instead). Valid where the survey has designs: ENOB 4-17.2, nodes
    4-1000 nm, 1 kS/s-90 GS/s (a rate or node outside is refused); it is a best-case
    (optimistic) bound, not a specific design. Below 4 bits the comparator-count model
    (:func:`comparator_ratio`, anchored to the fit at 4 bits) gives the energy.
    """

    actions: ClassVar[tuple[str, ...]] = ("convert",)
    EXAMPLE: ClassVar = MappingProxyType({"bits": 8, "rate": "1.2GS/s"})

    bits: int | None = None
    enob: float | None = None

    @property
    def effective_bits(self) -> float | None:
        """ENOB used by the model (``enob`` if given, else ``bits``)."""
        return self.enob if self.enob is not None else self.bits

    def _model_energy_pj(self, action: str) -> float:
        self._need(bits=self.effective_bits, rate=self.rate_hz)
        return survey_adc_energy_pj(self.effective_bits, self.rate_hz, self.technology_nm)

    def _model_area_um2(self) -> float:
        self._need(rate=self.rate_hz)
        return survey_adc_area_um2(self.rate_hz, self.technology_nm, self.energy_pj("convert"))

    def _model_latency_ns(self, action: str) -> float:
        return 0.0  # the rate is required by the model; without it nothing is known

    @classmethod
    def _read_params(cls, s: Section, *, need_energy: bool, need_area: bool) -> dict[str, Any]:
        bits = s.get("bits", int, None, lo=1, hi=16)
        enob = s.get("enob", float, None, lo=0.5, hi=24)
        if bits is not None and enob is not None and enob > bits:
            s.problems.add(join(s.path, "enob"), f"{enob:g} effective bits exceed bits ({bits})")
        cls._require(s, "bits", bits if enob is None else enob, need_energy, cls.class_name)
        # The base class has read ``rate``; here it only becomes required.
        cls._require(s, "rate", None, need_energy or need_area, cls.class_name)
        return {"bits": bits, "enob": enob}


@register("sar_adc")
@dataclass(frozen=True, kw_only=True)
class SarAdc(_SurveyAdc):
    """Successive-approximation ADC (ISAAC's 8-bit 1.2 GS/s ADC; FORMS's 4-bit ADCs).

    Model: the survey bound (see :class:`_SurveyAdc`).
    """


@register("flash_adc")
@dataclass(frozen=True, kw_only=True)
class FlashAdc(_SurveyAdc):
    """Flash ADC (2^bits - 1 comparators, one conversion per clock).

    Model: the survey bound (see :class:`_SurveyAdc`), which spans every architecture in the
    survey; a flash design above ~6 bits sits well above it. State figures for a given design.
    """

    EXAMPLE: ClassVar = MappingProxyType({"bits": 4, "rate": "2GS/s"})


#: CAP-RAM's 7-bit ciSAR ADC, 65 nm: 429 um^2 (paper-card transcription of Chen et al., JSSC
#: 2021; papers.md section 1.2). Its energy was not found, so only the area is anchored.
CISAR_AREA_ANCHOR = Anchor(energy_pj=0.0, area_um2=429.0, technology_nm=65.0,
                           source="CAP-RAM (JSSC 2021) ciSAR ADC, 7 bits, 65 nm, 429 um^2")
CISAR_ANCHOR_BITS = 7
#: SAR ADC area relative to 8 bits at 4..10 bits, 32 nm (hwcomponents-library isaac.py: ISAAC's
#: ADC scaled per M. Saberi et al., "Analysis of power consumption and linearity in capacitive
#: DACs used in SAR ADCs", 2011): 361, 477, 627, 845, 1200, 1828, 3002 um^2.
SAR_AREA_BY_BITS = {4: 361.04, 5: 476.91, 6: 626.91, 7: 845.18, 8: 1200.0, 9: 1827.911647,
                    10: 3002.008032}


def sar_area_ratio(bits: float, ref_bits: int) -> float:
    """SAR area at ``bits`` over that at ``ref_bits`` from :data:`SAR_AREA_BY_BITS`.

    Interpolated geometrically; outside 4..10 bits extended with the end steps' ratios.
    """

    def area(b: float) -> float:
        lo, hi = min(SAR_AREA_BY_BITS), max(SAR_AREA_BY_BITS)
        if b <= lo:
            return SAR_AREA_BY_BITS[lo] * (SAR_AREA_BY_BITS[lo + 1] / SAR_AREA_BY_BITS[lo]) ** (
                b - lo)
        if b >= hi:
            return SAR_AREA_BY_BITS[hi] * (SAR_AREA_BY_BITS[hi] / SAR_AREA_BY_BITS[hi - 1]) ** (
                b - hi)
        k = math.floor(b)
        t = b - k
        return SAR_AREA_BY_BITS[k] ** (1 - t) * SAR_AREA_BY_BITS[k + 1] ** t if t else \
            SAR_AREA_BY_BITS[k]

    return area(bits) / area(ref_bits)


@register("cisar_adc")
@dataclass(frozen=True, kw_only=True)
class CisarAdc(_SurveyAdc):
    """Charge-injection SAR ADC without sample-and-hold or buffers (CAP-RAM, JSSC 2021).

    The charge-domain MAC result is converted in place: no separate ``sample_hold`` instance
    belongs with it.

    Model: energy per conversion = the survey bound (no ciSAR energy was found). Area is
    anchored to CAP-RAM's measured 429 um^2 at 7 bits, 65 nm, scaled by resolution with the
    SAR area ratios of :data:`SAR_AREA_BY_BITS` and by node with Stillmaker-Baas area factors:
    ``A = 429 um^2 x r(bits)/r(7) x area_factor(node, 65 nm)``; valid 4-10 bits, 22-130 nm.
    The survey's area fit (standalone ADCs with buffers) gives 11,000-17,000 um^2 at 7 bits,
    65 nm: 25-40 x CAP-RAM's in-array converter, which is why it is not used here.
    """

    EXAMPLE: ClassVar = MappingProxyType({"bits": 7, "rate": "100MS/s"})

    def _model_area_um2(self) -> float:
        self._need(bits=self.bits)
        a = CISAR_AREA_ANCHOR
        return (a.area_um2 * sar_area_ratio(self.bits, CISAR_ANCHOR_BITS)
                * area_factor(self.technology_nm, a.technology_nm))

    @classmethod
    def _read_params(cls, s: Section, *, need_energy: bool, need_area: bool) -> dict[str, Any]:
        values = super()._read_params(s, need_energy=need_energy, need_area=False)
        cls._require(s, "bits", values["bits"], need_area, cls.class_name)
        return values


# ----------------------------------------------------------------------------- DAC, S+H
#: ISAAC (ISCA 2016) Table I, per IMA: 1,024 1-bit DACs, 4 mW, 0.00017 mm^2, one drive per
#: 100 ns crossbar cycle: 4 mW / (1024 x 10 MHz) = 0.390625 pJ; 170 um^2 / 1024 = 0.166 um^2.
ISAAC_DAC = Anchor(energy_pj=4.0 * 1e9 / (1024 * 10e6), area_um2=170.0 / 1024, technology_nm=32.0,
                   source="ISAAC Table I: DAC 1 bit, 8 x 128, 4 mW, 0.00017 mm2, 10 MHz")
#: ISAAC Table I, per IMA: 1,024 S+H, 10 uW, 0.00004 mm^2, one sample per 100 ns cycle.
ISAAC_SAMPLE_HOLD = Anchor(energy_pj=0.01 * 1e9 / (1024 * 10e6), area_um2=40.0 / 1024,
                           technology_nm=32.0,
                           source="ISAAC Table I: S+H 8 x 128, 10 uW, 0.00004 mm2, 10 MHz")


@register("dac")
@dataclass(frozen=True, kw_only=True)
class Dac(Component):
    """Row driver / DAC applying ``bits`` of input per crossbar cycle (1 = bit-serial).

    Parameters: ``bits`` (1..16, default 1).

    Model: ISAAC's 1-bit DAC (0.390625 pJ per drive, 0.166 um^2 at 32 nm; :data:`ISAAC_DAC`)
    times ``2^bits - 1`` unit elements for a multi-bit DAC (the switched capacitance of a
    binary-weighted capacitive DAC grows as 2^N: Saberi et al. 2011), times Stillmaker-Baas
    energy / area factors for the node: ``E = 0.390625 pJ x (2^b - 1) x ef(node, 32 nm)``,
    ``A = 0.166 um^2 x (2^b - 1) x af(node, 32 nm)``. Latency: one 100 ns crossbar cycle
    (ISAAC) unless ``rate`` is given. Valid 1-8 bits; for multi-bit row drivers whose energy is
    dominated by the row wire (not the DAC) it is an upper bound: state figures there.
    """

    actions: ClassVar[tuple[str, ...]] = ("drive",)
    EXAMPLE: ClassVar = MappingProxyType({"bits": 1})
    DEFAULT_RATE_HZ: ClassVar[float | None] = 10e6

    bits: int = 1

    def _units(self) -> int:
        return 2**self.bits - 1

    def _model_energy_pj(self, action: str) -> float:
        a = ISAAC_DAC
        return a.energy_pj * self._units() * energy_factor(self.technology_nm, a.technology_nm)

    def _model_area_um2(self) -> float:
        a = ISAAC_DAC
        return a.area_um2 * self._units() * area_factor(self.technology_nm, a.technology_nm)

    @classmethod
    def _read_params(cls, s: Section, *, need_energy: bool, need_area: bool) -> dict[str, Any]:
        return {"bits": s.get("bits", int, 1, lo=1, hi=16)}


@register("sample_hold")
@dataclass(frozen=True, kw_only=True)
class SampleHold(Component):
    """Sample-and-hold latching one bit-line value for a shared ADC (ISAAC).

    Model: ISAAC's S+H (:data:`ISAAC_SAMPLE_HOLD`: 0.977 fJ per sample, 0.039 um^2 at 32 nm)
    scaled by node with Stillmaker-Baas factors. Latency: one 100 ns cycle unless ``rate``.
    Valid for ISAAC-like bit-line S+H feeding ~8-bit ADCs, 22-130 nm.
    """

    actions: ClassVar[tuple[str, ...]] = ("sample",)
    DEFAULT_RATE_HZ: ClassVar[float | None] = 10e6

    def _model_energy_pj(self, action: str) -> float:
        a = ISAAC_SAMPLE_HOLD
        return a.energy_pj * energy_factor(self.technology_nm, a.technology_nm)

    def _model_area_um2(self) -> float:
        a = ISAAC_SAMPLE_HOLD
        return a.area_um2 * area_factor(self.technology_nm, a.technology_nm)
