"""How CAP-RAM's headline figures move with each choice made where the paper is silent.

Prints, for the shipped ``arch_configs/cap_ram_65nm.yaml`` and for copies that change one
choice at a time, the model's figures at the paper's operating points (docs/validation.md,
CAP-RAM): peak GOPS (every MAC circuit one 1-bit MAC per operation), the component table's
peak power, TOPS/W at the 6.35 mW point (ternary differential weights, one operation per
input, dense; from the events and their calibrated energies), macro area and TOPS/mm2. The
table's peak power scales each row by its rate law (digital rows follow the digital clock, the
ADCs their rate), so it can differ from events x energies at a changed operation rate. The
shipped file is at every calibration point, so its row is the paper's (two are predictions:
49.4 TOPS/W and 3.4 TOPS/mm2); a changed copy is scaled by the component models, which is what
the figures' dependence on the choice means.

Run: ``python bench/capram_sensitivity.py``.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np

from sim.config.loader import arch_from_dict, read_yaml
from sim.engine.rollup import peak
from sim.macros.family import make_layer
from sim.stats import energy_by_event_pj

BASE = read_yaml(Path(__file__).resolve().parent.parent / "arch_configs" / "cap_ram_65nm.yaml")

#: (label, dotted path -> value); ``None`` removes the key.
CASES = [
    ("shipped", {}),
    ("SAR clock 0.56 GHz (op rate 17.5 MHz)", {"crossbar.adc.clock": "0.56GHz",
                                               "clock.digital": "140MHz"}),
    ("SAR clock 2.24 GHz (op rate 70 MHz)", {"crossbar.adc.clock": "2.24GHz",
                                             "clock.digital": "560MHz",
                                             "clock.crossbar_cycle": "5ns"}),
    ("64 ADCs (2 columns each)", {"crossbar.adc.count": 64}),
    ("128 ADCs (1 column each; MAC phase 10 ns binds)", {"crossbar.adc.count": 128}),
    ("MAC phase 40 ns", {"clock.crossbar_cycle": "40ns"}),
    ("4 cells per MAC circuit", {"crossbar.cells_per_mac": 4}),
    ("6-bit ciSAR", {"crossbar.adc.bits": 6, "crossbar.adc.cycles_per_conversion": 8}),
    ("2 input bits per operation", {"crossbar.dac.bits": 2}),
]

def differential(changes: dict) -> dict:
    """The 6.35 mW point: ternary differential weights, one operation per input vector."""
    dac = changes.get("crossbar.dac.bits", 1)
    return {"weights": {"bits": 2, "encoding": "differential"},
            "inputs": {"bits": dac, "signed": False}}


def event_tops_per_w(arch, operations: int = 32) -> float:
    """TOPS/W of dense operations through the functional layer and the calibrated event
    energies (the one energy path; the golden test's method)."""
    rng = np.random.default_rng(0)
    rows = arch.crossbar.rows
    w = rng.choice([-1, 1], size=(rows, arch.crossbar.columns // 2))
    x = np.full((operations, rows), (1 << arch.inputs.bits) - 1, np.int64)
    _, ev = make_layer(arch, w, seed=0).matmul(x)
    return 2 * ev.macs / sum(energy_by_event_pj(ev.counts(), arch.energy).values())


def _arch(changes: dict, extra: dict | None = None):
    d = copy.deepcopy(BASE)
    for key, value in (extra or {}).items():
        d[key] = value
    for path, value in changes.items():
        node = d
        *head, last = path.split(".")
        for k in head:
            node = node.setdefault(k, {})
        node[last] = value
    return arch_from_dict(d, "sensitivity")


def main() -> None:
    """Print one row per case."""
    head = (f"{'case':48s} {'peak GOPS':>10s} {'power mW':>9s} {'TOPS/W diff':>11s} "
            f"{'area mm2':>9s} {'TOPS/mm2':>9s}")
    print(head)
    print("-" * len(head))
    print(f"{'paper (JSSC 2021)':48s} {573.4:10.1f} {6.35:9.2f} {49.4:11.1f} {0.179:9.3f} "
          f"{3.4:9.2f}")
    for label, changes in CASES:
        cell = peak(_arch(changes), per_cell=True)
        tops_w = event_tops_per_w(_arch(changes, differential(changes)))
        print(f"{label:48s} {cell.ops_per_s / 1e9:10.1f} {cell.power_w * 1e3:9.2f} "
              f"{tops_w:11.1f} {cell.area_mm2:9.3f} "
              f"{cell.gops_per_mm2 / 1e3:9.2f}")


if __name__ == "__main__":
    main()
