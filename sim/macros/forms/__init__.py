"""The FORMS family: fine-grained polarized ReRAM crossbars (Yuan et al., ISCA 2021).

``crossbar: {class: forms, ...}``. The crossbar is ISAAC's ReRAM array cut along its rows into
*fragments* of ``fragment_rows`` rows (FORMS's "sub-array columns"): every fragment-column
(``fragment_rows`` cells of one column) holds weights of one sign, stores only their
magnitudes, and is converted on its own (its own sample-and-hold and conversion by a small
ADC); one *sign indicator* bit per fragment-column tells the shift-and-add whether to add or
subtract the converted value. Inputs are bit-serial through 1-bit DACs, and FORMS's
"on-the-fly shift control" skips a fragment's bit-cycle when all its inputs have that bit
zero (``inputs.zero_skip``): no rows driven, no conversion, no sign read.

Nothing here is a second model of the array: the schema is the ReRAM crossbar's
(``docs/arch_yaml.md``), the functional layer is :class:`sim.macros.CrossbarLayer` with the
shared ``polarized`` encoding (one row group per fragment, so conversions, zero-skip counts
and the per-step activity the schedule times come from the one existing path), and the
timing is the shared schedule: a step lasts the crossbar read or its ADCs converting the
active fragments' columns, whichever is longer (:func:`sim.engine.timing.step_cycles_by_groups`),
so a skipped fragment saves ADC time and, when every fragment of a step skips, the step.
What the family adds: its rules (polarized magnitudes, a fragment height, no unit column or
offset), the sign-indicator event (one read per conversion, ``sign_indicator_reads``), one
sample-and-hold per fragment-column in the component scaling, and a clear refusal of weights
whose fragments mix signs. Choices where the paper is silent: ``docs/forms.md``.
"""

from __future__ import annotations

from sim.config.schema import Arch
from sim.config.validate import Problems
from sim.errors import MappingError
from sim.macros.family import register_family
from sim.macros.reram_crossbar import ReramCrossbar


def sign_indicator_bits(arch: Arch) -> int:
    """Sign-indicator bits one crossbar holds: one per fragment-column."""
    xb = arch.crossbar
    return (xb.rows // xb.group_rows) * xb.columns


@register_family("forms")
class Forms(ReramCrossbar):
    """FORMS (see the module docstring): the ReRAM crossbar schema, polarized fragments."""

    #: FORMS counts sign-indicator reads (a component row must perform them).
    never_counts = ()

    def cross_checks(self, arch: Arch, problems: Problems) -> None:  # noqa: D102
        xb, w = arch.crossbar, arch.weights
        if not problems.bad("weights.encoding") and w.encoding != "polarized":
            problems.add("weights.encoding",
                         f"FORMS stores polarized magnitudes (one sign per fragment-column); "
                         f"set weights.encoding: polarized, not {w.encoding}")
        if not problems.bad("crossbar.fragment_rows") and xb.fragment_rows is None:
            problems.add("crossbar.fragment_rows",
                         "FORMS needs the fragment height (rows of one sub-array column; the "
                         "paper studies 4-16)")
        if not problems.bad("crossbar.unit_column") and xb.unit_column:
            problems.add("crossbar.unit_column",
                         "FORMS has no offset or unit column: signs come from the sign "
                         "indicators; set crossbar.unit_column: false")
        if not problems.bad("crossbar.dac.bits") and xb.dac.bits != 1:
            problems.add("crossbar.dac.bits",
                         f"FORMS's zero-skipping shifts bit-serial inputs (1-bit DACs); got "
                         f"{xb.dac.bits}")

    def layer(self, arch, weights, *, seed=0, name="layer", **kw):  # noqa: D102
        from sim.kernels.weights import fragment_signs
        from sim.macros.crossbar import CrossbarLayer

        try:
            fragment_signs(weights, arch.crossbar.group_rows)
        except ValueError as e:
            raise MappingError(
                f"{name}: FORMS needs every fragment-column of {arch.crossbar.group_rows} rows "
                f"to hold weights of one sign: {e}; compress it with imcsim compress and "
                f"polarize: {{fragment_rows: {arch.crossbar.group_rows}}} (its workload maps "
                f"packed)") from None
        return CrossbarLayer(arch, weights, seed=seed, name=name, **kw)

    def own_params(self, class_name, arch, own):
        """One sample-and-hold per fragment-column: a column holds ``rows / fragment_rows``
        of them (each fragment's bit-line charge is held for its own conversion). The SRAM
        of the sign indicators (the family's one ``sram_buffer``; the tile buffer is eDRAM)
        holds one bit per fragment-column of the IMA's crossbars and reads one fragment's
        signs (a crossbar row of ``columns`` bits) per access."""
        own = dict(own)
        xb = arch.crossbar
        if class_name == "sample_hold" and "columns" in own:
            own["columns"] = own["columns"] * (xb.rows // xb.group_rows)
        if class_name == "sram_buffer":
            bits = sign_indicator_bits(arch) * arch.organization.crossbars_per_ima
            own["size"] = -(-bits // 8)
            own["width"] = xb.columns
        return own

    def periphery_counts(self, events) -> None:
        """Every conversion's value is added or subtracted by its fragment-column's sign
        indicator: one sign read per conversion (skipped fragments read none)."""
        events.sign_indicator_reads = events.adc_conversions
