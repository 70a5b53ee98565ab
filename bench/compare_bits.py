"""Outputs and event counts of many crossbar configs, saved or compared bit for bit.

A speed change must not move a single bit. Run ``save`` on the old tree and ``check`` on the
new one (same machine, same BLAS)::

    git archive <old> | tar -x -C /tmp/old
    (cd /tmp/old && PYTHONPATH=/tmp/old python /path/to/compare_bits.py save /tmp/bits.npz)
    PYTHONPATH=$PWD python bench/compare_bits.py check /tmp/bits.npz

Covers ISAAC-CE ideal and with zero-skipping, cell variation, mismatched ADC curves (with and
without cell variation, also with 8- and 6-bit weights), read noise, comparator noise,
clipping 6-bit ADC, stuck cells, offsets, a calibrated range and a 2-bit DAC, on
K = 27/144/300/512 with full-range 16-bit and 8-bit ReLU-like inputs. Quantized outputs can
hide a last-ulp change of a float32 partial sum; ``--psums`` compares the raw partial sums of
the cell-variation configs too.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import numpy as np

from sim.config.loader import arch_from_dict, read_yaml
from sim.macros import CrossbarLayer

ROOT = Path(__file__).resolve().parents[1]
CELL = {"distribution": "lognormal", "sigma": 0.05}
CURVES = {"offset_sigma_lsb": 0.3, "gain_sigma": 0.01, "cap_mismatch_sigma": 0.02}
SKIP = {"inputs.zero_skip": True}
CLIP = {"crossbar.adc.clip": True}


def _var(**v):
    return {**CLIP, "variation": {"seed": 1, **v}}


#: name -> dotted overrides of the ISAAC-CE YAML.
CONFIGS = {
    "ideal": {},
    "ideal_skip": SKIP,
    "var": _var(cell=CELL),
    "curves": _var(cell=CELL, adc=CURVES),
    "curves_ideal_cells": _var(adc=CURVES),
    "readnoise": _var(cell={**CELL, "read_noise_sigma": 0.05}),
    "adcnoise": _var(adc={"noise_sigma_lsb": 0.5}),
    "adc6clip": {**CLIP, "crossbar.adc.bits": 6},
    "adc6clip_skip": {**CLIP, "crossbar.adc.bits": 6, **SKIP},
    "stuck": _var(cell={"stuck_at_0": 0.01, "stuck_at_1": 0.01}),
    "offsetonly": _var(adc={"offset_sigma_lsb": 0.3}),
    "calib": {**_var(cell=CELL), "crossbar.adc.range": "calibrated",
              "crossbar.adc.calibration_percentile": 99.0},
    "adcnoise_var_skip": {**_var(cell=CELL, adc={"noise_sigma_lsb": 0.5}), **SKIP},
    "adcnoise_skip": {**_var(adc={"noise_sigma_lsb": 0.5}), **SKIP},
    "readnoise_skip": {**_var(cell={**CELL, "read_noise_sigma": 0.05}), **SKIP},
    "curves_skip": {**_var(cell=CELL, adc=CURVES), **SKIP},
    "dac2": {**_var(cell=CELL), "crossbar.dac.bits": 2},
    # 8- and 6-bit weights: 4 and 3 cells per weight (the shift-add's written-out case for 4
    # columns per output, and its general loop)
    "var_w8": {**_var(cell=CELL), "weights.bits": 8},
    "curves_w8": {**_var(cell=CELL, adc=CURVES), "weights.bits": 8},
    "curves_w6_skip": {**_var(cell=CELL, adc=CURVES), "weights.bits": 6, **SKIP},
}
SHAPES = [(27, 16, 300), (144, 32, 200), (300, 70, 90), (512, 200, 64)]


def make_arch(name: str, changes: dict):
    """ISAAC-CE with dotted-path ``changes``."""
    data = copy.deepcopy(read_yaml(ROOT / "arch_configs" / "isaac_32nm.yaml"))
    for path, value in changes.items():
        node = data
        *parents, leaf = path.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return arch_from_dict(data, name)


def inputs(rng, kind: str, m: int, k: int) -> np.ndarray:
    """Full-range signed 16-bit inputs, or 8-bit ReLU-like ones (half zero)."""
    if kind == "full":
        return rng.integers(-2**15, 2**15, size=(m, k))
    return np.maximum(rng.integers(-255, 256, size=(m, k)), 0)


def outputs() -> dict[str, np.ndarray]:
    """Outputs and event counts of every (config, shape, input kind)."""
    rng = np.random.default_rng(123)
    res = {}
    for name, changes in CONFIGS.items():
        arch = make_arch(name, changes)
        half = 2 ** (arch.weights.bits - 1)
        for k, n, m in SHAPES:
            w = rng.integers(-half, half, size=(k, n))
            for kind in ("full", "relu8"):
                x = inputs(rng, kind, m, k)
                layer = CrossbarLayer(arch, w, seed=5)
                if arch.crossbar.adc.range == "calibrated":
                    layer.calibrate(x[: max(1, m // 2)])
                out, ev = layer.matmul(x, seed=3)
                key = f"{name}|{k}x{n}x{m}|{kind}"
                res[key + "|out"] = out
                res[key + "|ev"] = np.array(list(ev.counts().values()), dtype=np.int64)
    return res


def psums() -> dict[str, np.ndarray]:
    """Raw float32 partial sums (read noise included) of cell-variation configs."""
    rng = np.random.default_rng(1)
    res = {}
    for name, cell in (("var", CELL), ("rn", {**CELL, "read_noise_sigma": 0.05})):
        for dac in (1, 2):
            arch = make_arch(name, {**_var(cell=cell), "crossbar.dac.bits": dac})
            for k, n, m in SHAPES:
                w = rng.integers(-2**15, 2**15, size=(k, n))
                x = inputs(rng, "relu8", m, k)
                layer = CrossbarLayer(arch, w, seed=5)
                for m0, m1 in layer._chunks(m):
                    for item in layer._group_psums(x[m0:m1], m0, (1, 2, 3)):
                        res[f"{name}{dac}|{k}|{m0}|{item[0]}"] = item[1].copy()
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=("save", "check"))
    ap.add_argument("file")
    ap.add_argument("--psums", action="store_true", help="raw partial sums instead")
    args = ap.parse_args()
    res = psums() if args.psums else outputs()
    if args.mode == "save":
        np.savez(args.file, **res)
        print(f"saved {len(res)} arrays")
        return
    ref = np.load(args.file)
    bad = [k for k, v in res.items() if k not in ref or ref[k].tobytes() != v.tobytes()]
    for k in bad:
        print("DIFFERS", k)
    print(f"checked {len(res)} arrays, {len(bad)} differ")


if __name__ == "__main__":
    main()
