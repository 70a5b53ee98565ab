"""The committed compressed ResNet-20 workloads (issue 10 deliverable 7, issue 12's variation
study): each checkpoint is the one its manifest describes, meets every constraint of the
recipe it records (each method's own ``satisfied`` check, on the weights as committed), and
its per-layer figures are the ones counted from the weights. A PatDNN model's rate follows
from its structure (4 of 9 entries per kept kernel, ``ceil(kernels / rate)`` kernels kept).
No training, no data: a few seconds."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from mappers.compress.admm import Compressor
from mappers.compress.spec import parse_compression
from workloads.spec import load_workload

ROOT = Path(__file__).resolve().parent.parent
COMPRESSED = ROOT / "workloads" / "compressed"
NAMES = sorted(p.stem for p in COMPRESSED.glob("resnet20_*.json"))

pytestmark = pytest.mark.skipif(not NAMES, reason="no compressed ResNet-20 committed")


def _load(name: str):
    manifest = json.loads((COMPRESSED / f"{name}.json").read_text())
    workload = load_workload(COMPRESSED / f"{name}.yaml")
    model = workload.load_model()
    library = [sum(int(b) << i for i, b in enumerate(code))
               for code in manifest.get("pattern_library") or []]
    spec = parse_compression(manifest["compression"], model)
    return manifest, model, Compressor(model, spec, library=library or None)


@pytest.mark.parametrize("name", NAMES)
def test_checkpoint_is_the_one_its_manifest_describes(name):
    manifest = json.loads((COMPRESSED / f"{name}.json").read_text())
    ckpt = COMPRESSED / manifest["checkpoint"]
    assert hashlib.sha256(ckpt.read_bytes()).hexdigest() == manifest["checkpoint_sha256"]
    assert manifest["workload"] == name == load_workload(COMPRESSED / f"{name}.yaml").name
    assert manifest["base_workload_builtin"] == "resnet20_cifar10"


@pytest.mark.parametrize("name", NAMES)
def test_weights_meet_the_recorded_recipe_and_figures(name):
    manifest, model, comp = _load(name)
    assert comp.targets, name
    for t in comp.targets:
        w = t.param.detach()
        assert all(comp.check(t, w).values()), (name, t.key, comp.check(t, w))
        rec = manifest["layers"][t.key]
        assert rec["nonzero"] == int((w != 0).sum()) and rec["weights"] == w.numel()
    totals = manifest["totals"]
    nonzero = sum(int((t.param != 0).sum()) for t in comp.targets)
    assert totals["compressed_nonzero"] == nonzero
    # The check can fail: a weight moved off its constraint is caught.
    t = comp.targets[0]
    w = t.param.detach().clone()
    flat = w.reshape(-1)
    zeros = torch.nonzero(flat == 0).flatten()
    if zeros.numel():  # every method here prunes or polarizes: some weight is zero
        flat[zeros[0]] = 0.37 * float(flat.abs().max())
        assert not all(comp.check(t, w).values()), (name, t.key)


@pytest.mark.parametrize("name", [n for n in NAMES if "_patdnn_c" in n])
def test_patdnn_rate_follows_from_patterns_and_connectivity(name):
    """Every compressed 3x3 conv keeps ceil(out x in / rate) kernels of at most 4 entries:
    its rate is at least 9/4 x rate, and equals it unless a kept entry is exactly zero."""
    manifest, model, comp = _load(name)
    rate = int(name.rsplit("_c", 1)[1])
    for t in comp.targets:
        w = t.param.detach()
        kernels = w.reshape(-1, 9)
        kept = int((kernels != 0).any(dim=1).sum())
        assert kept <= math.ceil(kernels.shape[0] / rate), t.key
        assert int((kernels != 0).sum(dim=1).max()) <= 4
        predicted = w.numel() / (4 * math.ceil(kernels.shape[0] / rate))
        achieved = manifest["layers"][t.key]["pruning_rate"]
        assert predicted <= achieved <= predicted * 1.01, (t.key, predicted, achieved)


@pytest.mark.parametrize("name", [n for n in NAMES if "_patdnn_c" in n])
def test_packed_patdnn_layers_cost_what_their_masks_predict(name, isaac_arch):
    """Each stage conv of a committed PatDNN ResNet-20, packed on ISAAC at 8 bits (4 cell
    columns of 2 bits per weight, 1 unit column per crossbar, 16 input steps, 128-row
    crossbars): the sub-layers partition the nonzero weights; each holds only rows and
    columns that carry a nonzero weight of it; and the conversions per input vector are
    counted from those live columns: 16 x (4 x columns + 1) per sub-layer, against
    16 x row tiles x (4 x columns + 1) per column tile for the same weights dense."""
    from mappers.compress.mapping import pack, savings, weights_per_tile
    from mappers.quantize import quantize_weights
    from sim.engine.placement import storage_arch

    _, model, comp = _load(name)
    store = storage_arch(isaac_arch, 8)
    per_tile = weights_per_tile(store)
    assert per_tile == 32
    total = {"packed": 0, "dense": 0}
    for t in comp.targets:
        q, _ = quantize_weights(t.param.detach(), 8)
        w = q.reshape(q.shape[0], -1).T.contiguous().numpy()
        k, n = w.shape
        p = pack(w, store, name=t.key)
        seen = np.zeros(w.shape, dtype=int)
        predicted = 0
        for part in p.parts:
            sub = w[np.ix_(part.rows, part.cols)]
            np.testing.assert_array_equal(part.weights, sub)
            assert len(part.rows) <= 128 and len(part.cols) <= per_tile
            assert (sub != 0).any(axis=1).all() and (sub != 0).any(axis=0).all()
            seen[np.ix_(part.rows, part.cols)] += sub != 0
            predicted += 16 * (4 * len(part.cols) + 1)
        np.testing.assert_array_equal(seen, w != 0)  # a partition of the nonzero weights
        fig = savings(isaac_arch, k, n, p.shapes, 8, p.rows_bound)
        tiles = [min(per_tile, n - c) for c in range(0, n, per_tile)]
        dense = 16 * math.ceil(k / 128) * sum(4 * c + 1 for c in tiles)
        assert fig["conversions_per_vector"] == predicted <= dense
        assert fig["dense_at_bits_conversions_per_vector"] == dense
        assert fig["rows_lower_bound"] <= fig["rows_mapped"] <= fig["dense_at_bits_rows_mapped"]
        total["packed"] += predicted
        total["dense"] += dense
    assert total["packed"] < total["dense"]  # pruned kernels free columns of some crossbars
