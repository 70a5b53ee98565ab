"""CAP-RAM's physical parameters and their one translation into the shared kernels' terms.

Everything the YAML states in physical units (capacitances in fF, voltages, temperature,
comparator offset and noise in mV, relative capacitor mismatch) becomes, here and only here,
what the shared kernels take: a multiplicative factor per MAC circuit (mismatch x charge-sharing
attenuation), the ADC step and full scale in partial-sum units, and comparator offset / noise
in LSB (``sim.config.schema.AdcVariation``), with kT/C noise folded into the per-conversion noise.

The analog chain of one operation (one weight group selected, ``N = rows / cells_per_mac``
MAC circuits per column): MAC circuit ``i`` charges its capacitor ``C_i = C (1 + e_i)`` to
``V_dd x x_i / (2^d - 1)`` when its cell holds a 1 (``x_i``: the input level of its row, ``d``
DAC bits); the column's N capacitors and the parasitic ``C_p`` of the shared line and ADC
input then share charge, so the column voltage is

    V = V_dd / (2^d - 1) x sum_i C_i x_i w_i / (N C + C_p)      (sum C_i ~ N C)

i.e. the ideal ``V_dd x P / (N (2^d - 1))`` of the integer partial sum ``P`` times the
attenuation ``a = N C / (N C + C_p)`` and each circuit's ``1 + e_i``. The ciSAR ADC converts
``V`` against ``V_dd`` with ``2^b`` codes (LSB ``V_dd / 2^b``, rail to rail, no buffers), so one
code is ``N (2^d - 1) / 2^b`` partial-sum units. The sampled charge carries kT/C noise of
``sqrt(kT / (N C + C_p))`` volts per conversion.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sim.config.schema import AdcVariation, Variation

#: Boltzmann constant, J/K.
BOLTZMANN_J_PER_K = 1.380649e-23


def temperature_k(text: object) -> float:
    """Temperature in kelvin from ``"300K"`` or ``"25C"`` (a unit is required)."""
    if isinstance(text, bool) or not isinstance(text, str):
        raise ValueError(f"expected a temperature with its unit, e.g. '25C' or '300K', got "
                         f"{text!r}")
    t = text.strip()
    try:
        if t.endswith("K"):
            value = float(t[:-1])
        elif t.endswith("C"):
            value = float(t[:-1]) + 273.15
        else:
            raise ValueError
    except ValueError:
        raise ValueError(f"expected a temperature like '25C' or '300K', got {text!r}") from None
    if not value > 0:
        raise ValueError(f"must be above absolute zero, got {text!r}")
    return value


@dataclass(frozen=True, kw_only=True)
class CapRamMacro:
    """CAP-RAM's own parameters (``arch.macro``), in physical units.

    Attributes:
        cell_rows: 6T cells per column (512).
        cells_per_mac: cells sharing one MAC circuit (8): the weight groups of the macro.
        mac_capacitance_ff: one MAC capacitor.
        parasitic_capacitance_ff: the shared column line plus the ADC input, per column.
        supply_voltage_v: the charging (and ADC reference) voltage.
        temperature_k: for kT/C noise.
        adcs: ciSAR ADCs per macro; each converts ``columns / adcs`` adjacent columns (a
            slice) in turn.
        mac_mismatch_sigma: relative sigma of one MAC capacitor (static, per circuit).
        adc_offset_mv, adc_noise_mv: comparator offset sigma (static, per ADC) and noise
            sigma (per conversion), mV.
        adc_cap_mismatch_sigma: relative sigma of one unit capacitor of the ciSAR's capacitor
            DAC (static, per ADC; gives each ADC its INL/DNL).
        ktc_noise: whether the sampled charge carries kT/C noise.
    """

    cell_rows: int
    cells_per_mac: int
    mac_capacitance_ff: float
    parasitic_capacitance_ff: float
    supply_voltage_v: float
    temperature_k: float
    adcs: int
    columns: int
    mac_mismatch_sigma: float = 0.0
    adc_offset_mv: float = 0.0
    adc_noise_mv: float = 0.0
    adc_cap_mismatch_sigma: float = 0.0
    ktc_noise: bool = True

    @property
    def mac_rows(self) -> int:
        """MAC circuits per column: the rows one operation sums."""
        return self.cell_rows // self.cells_per_mac

    @property
    def columns_per_adc(self) -> int:
        """Adjacent columns one ADC converts per operation (a slice)."""
        return -(-self.columns // self.adcs)

    @property
    def column_capacitance_ff(self) -> float:
        """Capacitance on which a column's charge is shared: ``N C + C_p``."""
        return self.mac_rows * self.mac_capacitance_ff + self.parasitic_capacitance_ff

    @property
    def attenuation(self) -> float:
        """Charge-sharing attenuation ``N C / (N C + C_p)`` of the column voltage."""
        return self.mac_rows * self.mac_capacitance_ff / self.column_capacitance_ff

    def lsb_mv(self, adc_bits: int) -> float:
        """One ADC code in mV (``V_dd / 2^b``)."""
        return self.supply_voltage_v * 1e3 / 2**adc_bits

    @property
    def ktc_noise_mv(self) -> float:
        """RMS kT/C noise of the shared column voltage, mV (0 when switched off)."""
        if not self.ktc_noise:
            return 0.0
        c_f = self.column_capacitance_ff * 1e-15
        return math.sqrt(BOLTZMANN_J_PER_K * self.temperature_k / c_f) * 1e3

    def step_units(self, adc_bits: int, dac_bits: int) -> float:
        """Partial-sum units (one input level x one weight bit) per ADC code."""
        return self.mac_rows * (2**dac_bits - 1) / 2**adc_bits

    def full_scale_units(self, adc_bits: int, dac_bits: int) -> float:
        """The ADC's top code in partial-sum units (``(2^b - 1)`` codes)."""
        return self.step_units(adc_bits, dac_bits) * (2**adc_bits - 1)

    def kernel_variation(self, seed: int, adc_bits: int) -> Variation:
        """The shared kernels' :class:`~sim.config.schema.Variation`: comparator offset and
        noise (with kT/C noise in quadrature) in LSB, the ciSAR's unit-capacitor mismatch.
        The MAC mismatch and attenuation act through :meth:`circuit_factors` instead."""
        lsb = self.lsb_mv(adc_bits)
        noise = math.hypot(self.adc_noise_mv, self.ktc_noise_mv) / lsb
        return Variation(seed=seed, adc=AdcVariation(
            offset_sigma_lsb=self.adc_offset_mv / lsb, gain_sigma=0.0,
            cap_mismatch_sigma=self.adc_cap_mismatch_sigma, noise_sigma_lsb=noise))

    def circuit_factors(self, rng: np.random.Generator) -> np.ndarray | None:
        """Static factor of every MAC circuit ``(mac_rows, columns)``: ``a (1 + e)``, or
        ``None`` when both are ideal (``a = 1``, no mismatch)."""
        if not self.mac_mismatch_sigma and self.parasitic_capacitance_ff == 0:
            return None
        shape = (self.mac_rows, self.columns)
        f = np.full(shape, self.attenuation)
        if self.mac_mismatch_sigma:
            f = f * np.maximum(1.0 + self.mac_mismatch_sigma * rng.standard_normal(shape), 0.0)
        return f
