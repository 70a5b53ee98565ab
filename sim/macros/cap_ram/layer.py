"""CAP-RAM's functional layer: the shared crossbar pipeline with the macro's physics.

:class:`CapRamLayer` is :class:`sim.macros.CrossbarLayer` (same constructor, ``matmul``,
``calibrate``, ``crossbars``, :class:`~sim.macros.Events`) over the engine view of the macro
(64 MAC rows x 128 columns per weight group, 1-bit cells, the ciSAR's step and full scale), with
what differs:

- static non-idealities belong to the *chip*, not to the layer: every layer's row ``k`` and
  column ``j`` run on MAC circuit ``(k mod N, j mod columns)`` (the weight groups share the
  MAC circuits), and column ``j`` is converted by ADC ``(j mod columns) // columns_per_adc``
  (its slice). Both are drawn from the chip's seed (the root of the layer's seed sequence:
  the arch's ``variation.seed`` with the run seed), so all layers of one chip see the same
  circuits and ADCs;
- per MAC circuit, a factor ``a (1 + e)`` (charge-sharing attenuation, capacitor mismatch);
- no sample-and-hold (ciSAR) and no tile buffer or bus: those counts are zero
  (:meth:`sim.macros.cap_ram.CapRam.periphery_counts`, shared with the analytical mode).
"""

from __future__ import annotations

import numpy as np

from sim.macros.crossbar import CrossbarLayer


def chip_seed(ss: np.random.SeedSequence) -> np.random.SeedSequence:
    """The seed of the chip a layer's seed sequence belongs to (its root), for the draws
    that all layers on one chip share."""
    root = np.random.SeedSequence(ss.entropy)
    return np.random.SeedSequence([*root.generate_state(4), 0xCA9])


class CapRamLayer(CrossbarLayer):
    """One weight matrix in CAP-RAM weight groups (see the module docstring)."""

    def __init__(self, arch, weights, *, seed=0, name: str = "layer", **kw):
        ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
        self._mac_ss, self._adc_chip_ss = chip_seed(ss).spawn(2)
        super().__init__(arch, weights, seed=ss, name=name, **kw)

    def _cell_factors(self, shape, rng):
        macro = self.arch.macro
        f = macro.circuit_factors(np.random.default_rng(self._mac_ss))
        if f is None:
            return None
        rows = np.arange(shape[0]) % macro.mac_rows
        cols = np.arange(shape[1]) % macro.columns
        return f[rows][:, cols].astype(np.float32)

    def _adc_layout(self, row_tile, col_tile, pos, adc_ss):
        macro = self.arch.macro
        slice_of = (pos % macro.columns) // macro.columns_per_adc
        inst = np.broadcast_to(slice_of[None, :], (row_tile.shape[0], pos.shape[0]))
        return (np.ascontiguousarray(inst, dtype=np.int32), macro.adcs,
                np.random.default_rng(self._adc_chip_ss))
