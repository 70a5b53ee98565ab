"""The CAP-RAM family: a charge-domain 6T-SRAM macro (Chen et al., IEEE JSSC 2021).

``crossbar: {class: cap_ram, ...}``. ``rows`` x ``columns`` standard 6T cells; every
``cells_per_mac`` cells of a column share one charge-domain MAC circuit, so the macro holds
``cells_per_mac`` *weight groups* of ``rows / cells_per_mac`` x ``columns`` bits and computes
with one selected group per operation. The engine places a layer's tiles in groups (the
``organization``'s "crossbars" are the groups of ``organization.macros`` macros), runs the
groups of a layer one after another and the layers one after another (the paper's
layer-by-layer execution). Physics and its translation: :mod:`sim.macros.cap_ram.physics`;
the functional layer: :class:`sim.macros.cap_ram.layer.CapRamLayer`; choices where the paper
is silent: ``docs/validation.md`` (CAP-RAM).

YAML (all errors at once, with paths)::

    organization: {macros: 1}
    crossbar:
      class: cap_ram
      rows: 512                  # 6T cells per column
      columns: 128
      cells_per_mac: 8           # weight groups
      dac: {bits: 1}             # input bits applied per operation (multi-level charge)
      mac: {capacitance: 1.2fF, parasitic_capacitance: 0fF, supply_voltage: 1.2V,
            temperature: 25C, ktc_noise: true}
      adc: {bits: 7, count: 32, clock: 1.12GHz, cycles_per_conversion: 8}   # or rate:
    variation:
      seed: 0
      mac: {capacitance_mismatch: 0.0}          # relative sigma of one MAC capacitor
      adc: {offset: 0mV, noise: 0mV, unit_cap_mismatch: 0.0}
"""

from __future__ import annotations

from dataclasses import replace

from sim.components import quantities as q
from sim.config import units
from sim.config.schema import (
    ADC_CALIBRATIONS,
    ADC_ROUNDING,
    Adc,
    Arch,
    Cell,
    Crossbar,
    Dac,
    Organization,
    Variation,
)
from sim.config.validate import Problems, Section, join
from sim.macros.cap_ram.physics import CapRamMacro, temperature_k
from sim.macros.family import MacroFamily, register_family

#: Weight bit-widths the macro supports with both encodings. The paper says "up to six
#: levels of bit-width" without listing them; chosen (docs/validation.md, CAP-RAM).
WEIGHT_BITS = (2, 3, 4, 5, 6, 8)
#: Weight encodings: differential (two column sets, ternary at 2 bits) and two's complement
#: (a sign column of weight -2^(B-1)): the paper's two schemes, as the shared kernels apply
#: them (sim.kernels.weights).
ENCODINGS = ("differential", "twos_complement")
#: Input precisions ("eight levels of input activations": 1..8 bits, unsigned).
INPUT_BITS = (1, 8)


@register_family("cap_ram")
class CapRam(MacroFamily):
    """CAP-RAM (see the module docstring)."""

    events = ("adc_conversions", "cell_reads", "dac_pulses", "shift_adds",
              "input_register_write_bits", "output_register_write_bits")
    #: No S+H, tile buffer or bus (:meth:`periphery_counts`); every macro sits on one tile,
    #: so no NoC or router either.
    never_counts = ("sample_holds", "input_buffer_read_bits", "output_buffer_write_bits",
                    "bus_transfer_bits", "noc_bit_hops", "router_bits", "sign_indicator_reads")
    pipelines = False
    duplicates = False
    array_unit = "weight groups"

    # ------------------------------------------------------------------ schema
    def read_organization(self, o: Section) -> Organization:  # noqa: D102
        return Organization(tiles=1, imas_per_tile=o.get("macros", int, 1, lo=1, hi=1024),
                            crossbars_per_ima=1, reprogram=o.get("reprogram", bool, False))

    def read_crossbar(self, s: Section) -> tuple[Crossbar, CapRamMacro]:  # noqa: D102
        rows = s.get("rows", int, lo=8, hi=1 << 16)
        columns = s.get("columns", int, lo=1, hi=1 << 16)
        cpm = s.get("cells_per_mac", int, lo=1, hi=64)
        if rows is not None and cpm is not None and rows % cpm:
            s.problems.add(join(s.path, "cells_per_mac"),
                           f"{cpm} does not divide crossbar.rows ({rows})")
        d = s.section("dac", required=True)
        dac = Dac(bits=d.get("bits", int, lo=1, hi=8))
        d.finish()
        m = s.section("mac", required=True)
        cap = m.get("capacitance", q.capacitance_ff)
        par = m.get("parasitic_capacitance", q.capacitance_ff, 0.0)
        vdd = m.get("supply_voltage", q.voltage_v)
        temp = m.get("temperature", temperature_k, 298.15)
        ktc = m.get("ktc_noise", bool, True)
        if cap is not None and cap <= 0:
            s.problems.add(join(m.path, "capacitance"), "must be positive")
        if par is not None and par < 0:
            s.problems.add(join(m.path, "parasitic_capacitance"), "must not be negative")
        if vdd is not None and vdd <= 0:
            s.problems.add(join(m.path, "supply_voltage"), "must be positive")
        m.finish()
        a = s.section("adc", required=True)
        bits = a.get("bits", int, lo=1, hi=16)
        count = a.get("count", int, lo=1)
        # Conversion time: a stated rate, or the SAR's bit clock over its cycles per
        # conversion (one decision per bit plus the charge-injection reset by default).
        rate = a.get("rate", units.frequency_hz, None, lo=1.0)
        sar_clock = a.get("clock", units.frequency_hz, None, lo=1.0)
        cycles = a.get("cycles_per_conversion", int, None, lo=1, hi=64)
        rounding = a.get("rounding", str, "nearest", choices=ADC_ROUNDING)
        # CAP-RAM's two-step calibration (per-ADC linear fit, then a master curve), shared
        # with every family's ADC (docs/kernels.md 3.1).
        calibration = a.get("calibration", str, "none", choices=ADC_CALIBRATIONS)
        calibration_samples = a.get("calibration_samples", int, 256, lo=8, hi=1 << 20)
        a.finish()
        if rate is not None and (sar_clock is not None or cycles is not None):
            s.problems.add(join(a.path, "rate"), "give either rate or clock (with "
                                                 "cycles_per_conversion), not both")
        elif rate is None and sar_clock is None and not s.problems.bad(join(a.path, "rate"),
                                                                       join(a.path, "clock")):
            s.problems.add(join(a.path, "rate"), "is required (or clock with "
                                                 "cycles_per_conversion)")
        elif rate is None and sar_clock is not None and bits is not None:
            rate = sar_clock / (cycles if cycles is not None else bits + 1)
        if count is not None and columns is not None and count > columns:
            s.problems.add(join(a.path, "count"), f"{count} ADCs for {columns} columns")
        macro = CapRamMacro(
            cell_rows=rows or 1, cells_per_mac=cpm or 1, mac_capacitance_ff=cap or 1.0,
            parasitic_capacitance_ff=par or 0.0, supply_voltage_v=vdd or 1.0,
            temperature_k=temp or 298.15, adcs=count or 1, columns=columns or 1,
            ktc_noise=bool(ktc))
        fs = macro.full_scale_units(bits or 1, dac.bits or 1)
        adc = Adc(bits=bits, per_crossbar=count, rate_hz=rate, range="fixed", full_scale=fs,
                  clip=True, rounding=rounding, calibration_percentile=100.0,
                  calibration=calibration, calibration_samples=calibration_samples)
        xb = Crossbar(rows=macro.mac_rows, columns=columns, unit_column=False,
                      fragment_rows=None, cell=Cell(technology="sram", bits=1), dac=dac,
                      adc=adc)
        return xb, macro

    def finish_organization(self, org, crossbar, params):  # noqa: D102
        # Placement fills weight groups: one macro holds ``cells_per_mac`` of them.
        return replace(org, crossbars_per_ima=params.cells_per_mac if params else 1)

    def read_variation(self, s: Section, macro: CapRamMacro | None, adc_bits: int | None
                       ) -> tuple[Variation, CapRamMacro | None]:
        """``variation:`` in physical units: ``seed``; ``mac.capacitance_mismatch``
        (relative sigma of one MAC capacitor); ``adc.offset`` and ``adc.noise`` (comparator,
        mV), ``adc.unit_cap_mismatch`` (relative sigma of one ciSAR DAC unit capacitor)."""
        seed = s.get("seed", int, 0, lo=0)
        m = s.section("mac")
        mm = m.get("capacitance_mismatch", float, 0.0, lo=0.0, hi=1.0)
        m.finish()
        a = s.section("adc")
        off = a.get("offset", q.voltage_v, 0.0)
        noise = a.get("noise", q.voltage_v, 0.0)
        ucm = a.get("unit_cap_mismatch", float, 0.0, lo=0.0, hi=1.0)
        a.finish()
        for key, v in (("offset", off), ("noise", noise)):
            if v is not None and v < 0:
                s.problems.add(join(a.path, key), "must not be negative")
        s.finish()
        if macro is None or adc_bits is None:
            return Variation(seed=seed or 0), macro
        macro = replace(macro, mac_mismatch_sigma=mm or 0.0, adc_offset_mv=(off or 0.0) * 1e3,
                        adc_noise_mv=(noise or 0.0) * 1e3, adc_cap_mismatch_sigma=ucm or 0.0)
        return macro.kernel_variation(seed or 0, adc_bits), macro

    def cross_checks(self, arch: Arch, problems: Problems) -> None:  # noqa: D102
        w, i = arch.weights, arch.inputs
        if not problems.bad("weights.encoding") and w.encoding not in ENCODINGS:
            problems.add("weights.encoding", f"CAP-RAM stores weights as one of "
                                             f"{', '.join(ENCODINGS)}; got {w.encoding}")
        if not problems.bad("weights.bits") and w.bits not in WEIGHT_BITS:
            problems.add("weights.bits", f"CAP-RAM supports {', '.join(map(str, WEIGHT_BITS))}"
                                         f"-bit weights; got {w.bits}")
        if not problems.bad("weights.column_flip") and w.column_flip:
            problems.add("weights.column_flip", "CAP-RAM has no unit column to flip against")
        if not problems.bad("inputs.signed") and i.signed:
            problems.add("inputs.signed", "CAP-RAM's MAC circuits charge with unsigned input "
                                          "levels; set inputs.signed: false (a zero point "
                                          "shifts signed activations)")
        if not problems.bad("inputs.bits") and not INPUT_BITS[0] <= i.bits <= INPUT_BITS[1]:
            problems.add("inputs.bits", f"CAP-RAM takes {INPUT_BITS[0]}..{INPUT_BITS[1]}-bit "
                                        f"inputs; got {i.bits}")
        if not problems.bad("inputs.zero_skip") and i.zero_skip:
            problems.add("inputs.zero_skip", "CAP-RAM does not skip operations")

    # ------------------------------------------------------------------ function
    def layer(self, arch, weights, *, seed=0, name="layer", **kw):  # noqa: D102
        from sim.macros.cap_ram.layer import CapRamLayer

        return CapRamLayer(arch, weights, seed=seed, name=name, **kw)

    def own_params(self, class_name, arch, own):
        """The weight groups of a macro share one periphery (ADCs, drivers, MAC circuits,
        registers), so component counts are per macro (``crossbars_per_ima`` 1); the SRAM
        array's rows are its physical cell rows."""
        own = dict(own)
        if "crossbars_per_ima" in own:
            own["crossbars_per_ima"] = 1
        if class_name == "sram_array" and arch.macro is not None:
            own["rows"] = arch.macro.cell_rows
        return own

    def periphery_counts(self, events) -> None:
        """The ciSAR converts the shared charge in place (no S+H); the macro has no tile
        buffer or bus (its inputs and outputs are its registers)."""
        events.sample_holds = 0
        events.input_buffer_read_bits = events.output_buffer_write_bits = 0
        events.bus_transfer_bits = 0

    # ------------------------------------------------------------------ timing
    def serial_arrays(self, arch: Arch, arrays: int) -> int:
        """One weight group computes per operation: a layer's groups take turns."""
        return max(1, arrays)

    def active_arrays(self, arch: Arch) -> int:
        """One group per macro computes at a time."""
        return arch.organization.imas_per_tile * arch.organization.tiles
