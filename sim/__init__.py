"""imcsim engine: configuration, components, bit-true kernels, macros and rollups.

``sim`` depends on numpy, numba and simpy only; torch models reach it as integer arrays
through :mod:`mappers`.
"""

__version__ = "0.1.0"
