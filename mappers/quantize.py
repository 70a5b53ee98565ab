"""Integer quantization of weights and activations for the bit-true pass.

Weights: symmetric, per output channel, ``bits``-bit signed (``[-(2**(b-1)-1), 2**(b-1)-1]``,
the most negative code unused so the range is symmetric). Activations: per tensor from a
calibration range: unsigned when the range is non-negative (after ReLU); otherwise signed
symmetric when the hardware takes signed inputs, or unsigned with a zero point when it does
not, the zero point's contribution removed digitally and exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def quantize_weights(w: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-output-channel symmetric quantization of ``w`` (out, ...).

    Returns integer-valued int64 ``q`` with ``w ~= q * scale[:, None...]`` and ``scale`` (out,).
    """
    qmax = 2 ** (bits - 1) - 1
    flat = w.detach().reshape(w.shape[0], -1).double()
    scale = flat.abs().amax(dim=1) / qmax
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.round(flat / scale[:, None]).clamp_(-qmax, qmax).to(torch.int64)
    return q.reshape(w.shape), scale


@dataclass(frozen=True, kw_only=True)
class ActQuant:
    """How one layer's input activations become hardware integers.

    ``x_int = clamp(round(x / scale), lo, hi) + zero_point`` is what the rows receive; the
    product with ``zero_point`` is subtracted digitally afterwards.
    """

    scale: float
    lo: int
    hi: int
    zero_point: int
    signed: bool

    def to_int(self, x: torch.Tensor) -> torch.Tensor:
        """Integer codes (without the zero point) of float ``x``, int64."""
        return torch.round(x.double() / self.scale).clamp_(self.lo, self.hi).to(torch.int64)


def activation_quant(lo: float, hi: float, bits: int, hw_signed: bool) -> ActQuant:
    """Choose the activation quantizer for a calibrated range ``[lo, hi]``."""
    if lo >= 0:
        qmax = 2**bits - 1
        return ActQuant(scale=max(hi, 1e-12) / qmax, lo=0, hi=qmax, zero_point=0, signed=False)
    if hw_signed:
        qmax = 2 ** (bits - 1) - 1
        amax = max(abs(lo), abs(hi), 1e-12)
        return ActQuant(scale=amax / qmax, lo=-qmax, hi=qmax, zero_point=0, signed=True)
    scale = max(hi - lo, 1e-12) / (2**bits - 1)
    zp = round(-lo / scale)
    return ActQuant(scale=scale, lo=-zp, hi=2**bits - 1 - zp, zero_point=zp, signed=False)
