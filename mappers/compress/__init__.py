"""Model compression for IMC mapping: one ADMM framework, one projection per method.

Methods (see ``docs/compression.md``): unstructured and structured (filter/channel) pruning,
PatDNN pattern and connectivity pruning, micro-structured weight unification, RTMobile
block-based structured pruning (BSP), FORMS polarization and quantization, composable per
layer. ``imcsim compress WORKLOAD COMPRESSION.yaml`` runs :func:`compress`.
"""

from mappers.compress.admm import Compressor, compress, fit, manifest_source, state_digest
from mappers.compress.projections import (
    ORDER,
    BlockStructured,
    Connectivity,
    Pattern,
    Polarize,
    Projection,
    Quantize,
    Structured,
    Unify,
    Unstructured,
    pattern_library,
    project_all,
)
from mappers.compress.spec import CompressionSpec, load_compression, parse_compression

__all__ = ["ORDER", "BlockStructured", "CompressionSpec", "Compressor", "Connectivity",
           "Pattern", "Polarize", "Projection", "Quantize", "Structured", "Unify",
           "Unstructured", "compress", "fit", "load_compression", "manifest_source",
           "parse_compression",
           "pattern_library", "project_all", "state_digest"]
