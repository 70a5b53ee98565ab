"""The CAP-RAM ResNet-20 (issue 11 deliverable 6) fits ONE macro: every layer in its 8 groups.

Runs in CI without data (the checkpoint is committed; calibration is a seeded random batch,
which fixes activation ranges only: placement depends on the weights' zero pattern alone):

- the committed workload maps (``map_model``, the path ``imcsim run`` takes) and every one of
  its 22 matrix layers is placed inside the macro's 8 weight groups;
- the recipe's worst case (every weight its structured pruning keeps nonzero, on a seeded
  random model) still fits, while block-diagonal sharing (disjoint rows AND columns, the
  pipelining families' rule) or one more kept channel per stage-3 convolution would not:
  the fit moves with its cause.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from analysis.run import _recipe
from mappers import map_model
from mappers.compress.mapping import pack, storage_arch
from mappers.compress.spec import load_compression
from sim.config import load_arch
from sim.engine.placement import (
    LayerShape,
    arrays_in_use,
    arrays_needed,
    copack,
    layer_geometry,
    place,
)
from sim.errors import MappingError
from workloads.spec import load_workload

ROOT = Path(__file__).resolve().parents[1]
ARCH = ROOT / "arch_configs" / "cap_ram_65nm.yaml"
RECIPE = ROOT / "examples" / "compress_resnet20_capram_fit.yaml"
GROUPS = 8


def test_committed_model_maps_into_one_macro():
    arch = load_arch(ARCH)
    workload = load_workload("resnet20_cifar10_capram")
    assert workload.checkpoint_path.is_file()  # committed: never a skip
    model = workload.load_model().eval()
    calib = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    mapped = map_model(model, arch, _recipe(workload.bits, workload.mapping), calib, seed=0)
    with torch.no_grad():
        mapped(calib)
    shapes = mapped.layer_shapes()
    assert len(shapes) == 22  # stem, 18 convolutions, 2 shortcuts, fc
    assert all(s.parts for s in shapes)  # every layer packed
    placed = place(arch, shapes)  # raises MappingError when the model does not fit
    used = arrays_in_use(arch, placed)
    assert used <= GROUPS == arch.organization.crossbars
    assert all(0 <= p.first_crossbar and p.first_crossbar + p.crossbars <= GROUPS
               for p in placed)


def _worst_case(spec_layers, arch, model):
    """LayerShapes of ``model`` with the recipe's structured pruning, every kept weight
    nonzero (quantization could only zero more)."""
    layers = {ls.name: ls for ls in spec_layers.layers}
    shapes = []
    for name, m in model.named_modules():
        if not isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            continue
        w = m.weight.detach()
        ls = layers[name]
        for p in spec_layers.projections(ls):
            if p.method != "quantize":
                w = p.project(w)
        mat = (w.reshape(w.shape[0], -1).T.numpy() != 0).astype(np.int64)
        bits = ls.methods["quantize"]["bits"]
        parts = pack(mat, storage_arch(arch, bits), name=name).shapes
        shapes.append(LayerShape(name=name, k=mat.shape[0], n=mat.shape[1], vectors=1,
                                 parts=parts, weight_bits=bits))
    return shapes


def test_recipe_worst_case_fits_and_the_fit_moves_with_its_cause():
    arch = load_arch(ARCH)
    workload = load_workload("resnet20_cifar10")
    torch.manual_seed(0)
    model = workload.build_model()
    spec = load_compression(RECIPE, model)
    assert len(spec.layers) == 22  # every matrix layer of ResNet-20 is in the recipe
    shapes = _worst_case(spec, arch, model)
    geos = [layer_geometry(arch, s) for s in shapes]
    need, cross = arrays_needed(arch, geos)
    assert cross and need == 7  # 42 sub-layers, 52,736 cells (header arithmetic)
    assert len(place(arch, shapes)) == 22
    cells = sum(k * n * s.weight_bits for s in shapes for k, n in s.parts)
    assert cells == 52_736
    # Block-diagonal sharing only (disjoint rows and columns): far from one macro.
    rects = [r for g in geos for r in g.shared_arrays]
    owner = [i for i, g in enumerate(geos) for _ in g.shared_arrays]
    assert len(copack(arch, rects, keep_apart=owner)) > GROUPS
    # Stage 3 keeping 20 of 64 channels and filters instead of 16: does not fit.
    wider = replace(spec, layers=tuple(
        replace(ls, methods={**ls.methods, "structured": {"rate": 3.2, "axis": "both"}})
        if ls.name.startswith("layer3") else ls for ls in spec.layers))
    with pytest.raises(MappingError, match="weight groups"):
        place(arch, _worst_case(wider, arch, model))
