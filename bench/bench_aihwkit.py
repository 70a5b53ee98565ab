"""imcsim against IBM's AIHWKit on the same noisy 512x512 analog layer at batch 256.

AIHWKit side (only when ``aihwkit`` is importable): ``AnalogLinear(512, 512)`` with the default
``InferenceRPUConfig`` forward (7-bit input DAC, 9-bit output ADC, output noise), its
programming noise applied once, timed on a batch of 256.

imcsim side (always): the closest single-step equivalent, :class:`sim.macros.CrossbarLayer`
on one 512-row crossbar group: signed inputs of 7 magnitude bits applied as two unsigned
single-step passes on a 7-bit multi-level DAC (positive and negative parts, subtracted
digitally; a sign step sharing the magnitude step's ADC range would lose the sign), 5-bit
weights in one 4-bit cell per polarity (differential
encoding), 5 % lognormal cell variation, a 9-bit ADC whose full scale is calibrated per column
on the data (99.9th percentile), and 0.5 LSB of conversion noise; seeded.

Both print the wall time per batch (best of ``--repeat`` after a warm-up) and the error against
the float product of the same (quantized, for imcsim) operands: RMS error over the RMS of the
exact product. imcsim is not AIHWKit: the noise models differ (AIHWKit's programming and
output noise against imcsim's cell variation and comparator noise), so compare the errors as
what each simulator reports for its default-like noisy layer, not as the same experiment.

AIHWKit has no wheel for this Python; to build it from source (CPU only, about 20 minutes on
two cores)::

    apt-get install -y cmake g++ libopenblas-dev pybind11-dev
    git clone https://github.com/IBM/aihwkit && cd aihwkit
    pip install -r requirements.txt scikit-build
    pip install -v . --no-build-isolation     # or: python setup.py install -DUSE_CUDA=OFF

Run: ``python bench/bench_aihwkit.py [--batch 256] [--repeat 5]``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from bench_kernels import best_time  # a sibling script: `python bench/bench_aihwkit.py`

from sim.config.loader import arch_from_dict, read_yaml
from sim.macros import CrossbarLayer

ROOT = Path(__file__).resolve().parents[1]
SIZE = 512




def rel_error(y: np.ndarray, exact: np.ndarray) -> float:
    """RMS error over the RMS of the exact product."""
    return float(np.sqrt(np.mean((y - exact) ** 2)) / np.sqrt(np.mean(exact**2)))


def imcsim_arch():
    """One 512-row group, 7-bit DAC, 4-bit cells, differential 5-bit weights, 9-bit ADC."""
    base = read_yaml(ROOT / "arch_configs" / "isaac_32nm.yaml")
    crossbar = {**base["crossbar"], "rows": SIZE, "columns": SIZE, "unit_column": False,
                "cell": {"technology": "reram", "bits": 4}, "dac": {"bits": 7},
                "adc": {**base["crossbar"]["adc"], "bits": 9, "range": "calibrated",
                        "calibration_percentile": 99.9, "clip": True}}
    data = dict(base, crossbar=crossbar,
                weights={"bits": 5, "encoding": "differential", "column_flip": False},
                inputs={"bits": 7, "signed": False},
                variation={"seed": 1, "cell": {"distribution": "lognormal", "sigma": 0.05},
                           "adc": {"noise_sigma_lsb": 0.5}})
    return arch_from_dict(data, "aihwkit-like single step")


def run_imcsim(x_float: np.ndarray, w_float: np.ndarray, repeat: int) -> tuple[float, float]:
    """Time and error of imcsim's layer on operands quantized to its formats."""
    sx = np.abs(x_float).max() / 127
    sw = np.abs(w_float).max() / 15
    x = np.clip(np.round(x_float / sx), -127, 127).astype(np.int64)
    w = np.clip(np.round(w_float / sw), -15, 15).astype(np.int64)
    pos, neg = np.maximum(x, 0), np.maximum(-x, 0)
    layer = CrossbarLayer(imcsim_arch(), w, seed=0)
    layer.calibrate(np.concatenate([pos[:64], neg[:64]]))

    def forward():
        return layer.matmul(pos, seed=1)[0] - layer.matmul(neg, seed=2)[0]

    t = best_time(forward, repeat)
    y = forward() * sx * sw
    return t, rel_error(y, x_float @ w_float)


def run_aihwkit(x_float: np.ndarray, w_float: np.ndarray, repeat: int):
    """Time and error of AIHWKit's ``AnalogLinear`` with the default inference config, or the
    reason it cannot run."""
    try:
        import torch
        from aihwkit.nn import AnalogLinear
        from aihwkit.simulator.configs import InferenceRPUConfig
    except ImportError as exc:
        return f"aihwkit not importable ({exc}); see this file's docstring to build it"
    torch.set_num_threads(2)
    layer = AnalogLinear(SIZE, SIZE, bias=False, rpu_config=InferenceRPUConfig())
    layer.set_weights(torch.from_numpy(w_float.T.copy()))
    layer.eval()
    layer.program_analog_weights()
    xt = torch.from_numpy(x_float)
    with torch.no_grad():
        t = best_time(lambda: layer(xt), repeat)
        y = layer(xt).numpy()
    return t, rel_error(y, x_float @ w_float)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch, SIZE)).astype(np.float32)
    w = (rng.standard_normal((SIZE, SIZE)) / np.sqrt(SIZE)).astype(np.float32)
    t_i, e_i = run_imcsim(x, w, args.repeat)
    print(f"{SIZE}x{SIZE} analog layer, batch {args.batch} (wall time per batch, best of "
          f"{args.repeat}; error = RMS error / RMS of the float product)")
    print(f"  imcsim   {t_i * 1e3:9.1f} ms   error {e_i:.4f}   ({imcsim_arch().source})")
    res = run_aihwkit(x, w, args.repeat)
    if isinstance(res, str):
        print(f"  aihwkit  skipped: {res}")
        return
    t_a, e_a = res
    print(f"  aihwkit  {t_a * 1e3:9.1f} ms   error {e_a:.4f}   (InferenceRPUConfig defaults)")
    print(f"  imcsim is {t_a / t_i:.2f}x the speed of aihwkit (target >= 5x at equal or "
          "better error)")


if __name__ == "__main__":
    main()
