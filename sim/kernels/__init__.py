"""Pure numba/BLAS kernels of the bit-true IMC model: arrays and scalars in, arrays out.

``inputs``: inputs into DAC steps; ``weights``: weights into cell levels; ``adc``: transfer
curves and the fused convert-and-shift-add kernel; ``variation``: device non-idealities;
``noise``: normal draws inside compiled kernels (read noise).
The one module owning the JIT options is ``_jit``.
"""
