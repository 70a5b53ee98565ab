"""The ReRAM crossbar family (ISAAC, ISCA 2016; FORMS's fragments via ``fragment_rows``).

``crossbar: {class: reram_crossbar, ...}`` or no ``class:`` at all (the default). Its YAML
schema is the one documented in ``docs/arch_yaml.md``; its functional layer is
:class:`sim.macros.CrossbarLayer`: every crossbar of a layer computes at each input step, layers
on different crossbars pipeline, and copies of a layer run side by side.
"""

from __future__ import annotations

from sim.config import units
from sim.config.schema import (
    ADC_CALIBRATIONS,
    ADC_RANGES,
    ADC_ROUNDING,
    CELL_TECHNOLOGIES,
    Adc,
    Cell,
    Crossbar,
    Dac,
    Organization,
)
from sim.config.validate import Section
from sim.macros.family import MacroFamily, register_family


def read_adc(a: Section, *, per_crossbar_default: int | None = 1) -> Adc:
    """An ``adc:`` mapping (shared by the families that use a column ADC)."""
    adc = Adc(
        bits=a.get("bits", int, lo=1, hi=16),
        per_crossbar=a.get("per_crossbar", int, per_crossbar_default, lo=1),
        rate_hz=a.get("rate", units.frequency_hz, None, lo=1.0),
        range=a.get("range", str, "fixed", choices=ADC_RANGES),
        full_scale=a.get("full_scale", float, None, lo=1e-9),
        clip=a.get("clip", bool, False),
        rounding=a.get("rounding", str, "nearest", choices=ADC_ROUNDING),
        calibration_percentile=a.get("calibration_percentile", float, 100.0, lo=50.0,
                                     hi=100.0),
        calibration=a.get("calibration", str, "none", choices=ADC_CALIBRATIONS),
        calibration_samples=a.get("calibration_samples", int, 256, lo=8, hi=1 << 20),
    )
    return adc


@register_family("reram_crossbar")
class ReramCrossbar(MacroFamily):
    """ReRAM crossbars with a DAC per row and ADCs shared by columns (see module docstring)."""

    def read_organization(self, o: Section) -> Organization:  # noqa: D102
        return Organization(
            tiles=o.get("tiles", int, lo=1), imas_per_tile=o.get("imas_per_tile", int, lo=1),
            crossbars_per_ima=o.get("crossbars_per_ima", int, lo=1),
            reprogram=o.get("reprogram", bool, False))

    def read_crossbar(self, s: Section) -> tuple[Crossbar, None]:  # noqa: D102
        cell_s = s.section("cell", required=True)
        cell = Cell(technology=cell_s.get("technology", str, choices=CELL_TECHNOLOGIES),
                    bits=cell_s.get("bits", int, lo=1, hi=8))
        cell_s.finish()
        dac_s = s.section("dac", required=True)
        dac = Dac(bits=dac_s.get("bits", int, lo=1, hi=16))
        dac_s.finish()
        a = s.section("adc", required=True)
        adc = read_adc(a)
        a.finish()
        xb = Crossbar(rows=s.get("rows", int, lo=1, hi=1 << 16),
                      columns=s.get("columns", int, lo=1, hi=1 << 16),
                      unit_column=s.get("unit_column", bool, False),
                      fragment_rows=s.get("fragment_rows", int, None, lo=1),
                      cell=cell, dac=dac, adc=adc)
        return xb, None

    def layer(self, arch, weights, *, seed=0, name="layer", **kw):  # noqa: D102
        from sim.macros.crossbar import CrossbarLayer

        return CrossbarLayer(arch, weights, seed=seed, name=name, **kw)
