"""imcsim against IBM's AIHWKit on the same noisy 512x512 analog layer at batch 256.

Both sides multiply the same float operands (seed 0: ``x`` standard normal ``(batch, 512)``,
``w`` normal with variance 1/512) and report the error against their float product ``x @ w``:
RMS error over the RMS of the product. Time is per batch, forward only (programming,
calibration and warm-up excluded), best of ``--repeat``, as wall time and as CPU seconds of the
process (the machine is shared: CPU seconds are the robust figure; with ``--threads 1`` they
are comparable across the two). ``--threads`` bounds both sides (``IMCSIM_THREADS``;
``torch.set_num_threads`` and ``OMP_NUM_THREADS`` for AIHWKit's OpenMP loops).

AIHWKit side (only when ``aihwkit`` is importable): ``AnalogLinear(512, 512, bias=False)``
with the default ``InferenceRPUConfig``: forward IO 7-bit inputs (``inp_res`` 1/126, abs-max
noise management per sample), one signed pass, output noise 0.06 added before a 9-bit ADC
(``out_res`` 1/510 of +-12, iterative bound management), PCM-like programming noise applied
once by ``program_analog_weights()``. Two rows: the defaults as they are (mapping
``weight_scaling_omega`` 0: the weights, abs-max 0.2 here, use a fifth of the conductance
range), and the same with ``weight_scaling_omega`` 1.0 (abs-max mapped to the full range, the
mapping AIHWKit documents for inference; IO untouched), which is the fairer error.

imcsim side (always): the closest single-step equivalent, :class:`sim.macros.CrossbarLayer`
on one 512-row crossbar group: inputs quantized to 7 magnitude bits (one scale per tensor)
and applied as two unsigned single-step passes on a 7-bit multi-level DAC (positive and
negative parts, subtracted digitally: imcsim's DACs are unsigned, and a two's-complement sign
step sharing the magnitude step's ADC range would lose the sign), 5-bit weights in one 4-bit
cell per polarity (differential encoding: 1024 columns, subtracted after the ADC), 5 %
lognormal cell variation, a 9-bit ADC per column whose full scale is calibrated on the data
(99.9th percentile), and AIHWKit's output noise expressed in its own ADC's LSBs as comparator
noise (``out_noise / (2 out_bound out_res)`` = 1.275 LSB); seeded. imcsim is not AIHWKit: it
converts each of the 1024 columns in each of the two passes (4 conversions and 4x the array
MACs of AIHWKit's one signed 512x512 product per output), its weights are 16-level cells
(AIHWKit's are analog: weight quantization alone is 0.088 of imcsim's 0.11 error), and the
noise models differ, so compare the errors as what each simulator reports for its
default-like noisy layer, not as the same experiment.

AIHWKit has no wheel for Python 3.11 on PyPI; built from the PyPI sdist (1.2.0), CPU only, in
a virtual environment of its own (never imcsim's), about 27 minutes with one compile job on a
shared 2-core machine (Dec 1 2026, torch 2.13.0+cpu, no source patch needed)::

    apt-get install -y libopenblas-dev            # cmake, g++ and OpenMP were there
    python3 -m venv /work/aihw-venv && . /work/aihw-venv/bin/activate
    pip install torch==2.13.0                     # the CPU wheel (a plain `torch` pulls CUDA)
    pip install 'scikit-build>=0.18.1' 'pybind11>=3.0.1' ninja 'cmake>=4.2.1' \
        'setuptools>=77' wheel mypy 'requests>=2.32,<3' protobuf tqdm scipy
    pip download aihwkit==1.2.0 --no-binary :all: --no-deps && tar xzf aihwkit-1.2.0.tar.gz
    cd aihwkit-1.2.0 && USE_CUDA=OFF CMAKE_BUILD_PARALLEL_LEVEL=1 \
        pip install -v . --no-build-isolation --no-deps
    pip install numpy==2.4.6 numba==0.68.1 PyYAML==6.0.4 simpy==4.1.2 threadpoolctl==3.8.0

``mypy`` is needed for its ``stubgen``, which the link step runs (without it the build fails
at the last step: ``stubgen: not found``); ``--no-deps`` keeps pip from replacing torch
(aihwkit also lists torchvision and scikit-learn, which this layer does not import); the last
line is imcsim's own dependencies, the versions of imcsim's environment.

Run (from the repository root, ``PYTHONPATH=.``):
``python bench/bench_aihwkit.py [--batch 256] [--repeat 5] [--threads 1]``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time
from pathlib import Path

import numpy as np
from bench_kernels import best_time  # a sibling script: `python bench/bench_aihwkit.py`

from sim.config.loader import arch_from_dict, read_yaml
from sim.macros import CrossbarLayer

ROOT = Path(__file__).resolve().parents[1]
SIZE = 512
#: AIHWKit's ``IOParameters`` forward defaults (read from aihwkit when it is importable):
#: input bound and resolution, output bound, resolution and noise (normalized units).
AIHW_IO = {"inp_bound": 1.0, "inp_res": 1 / (2**7 - 2), "out_bound": 12.0,
           "out_res": 1 / (2**9 - 2), "out_noise": 0.06}


def aihw_io() -> dict[str, float]:
    """AIHWKit's default forward IO: from the installed aihwkit, else :data:`AIHW_IO`."""
    try:
        from aihwkit.simulator.parameters.io import IOParameters
    except ImportError:
        return dict(AIHW_IO)
    io = IOParameters()
    return {key: float(getattr(io, key)) for key in AIHW_IO}


def noise_lsb(io: dict[str, float]) -> float:
    """AIHWKit's output noise in its ADC's LSBs: it adds ``out_noise`` before quantizing to
    steps of ``out_res x 2 out_bound`` (its C++ ``checkAndSetRes``); 1.275 by default."""
    return io["out_noise"] / (io["out_res"] * 2 * io["out_bound"])


def rel_error(y: np.ndarray, exact: np.ndarray) -> float:
    """RMS error over the RMS of the exact product."""
    return float(np.sqrt(np.mean((y - exact) ** 2)) / np.sqrt(np.mean(exact**2)))


def timed(fn, repeat: int) -> tuple[float, float]:
    """Best wall seconds and best CPU seconds (this process, all threads) of ``fn``."""
    return best_time(fn, repeat), best_time(fn, repeat, clock=time.process_time)


def imcsim_arch(noise: float):
    """One 512-row group, 7-bit DAC, 4-bit cells, differential 5-bit weights, 9-bit ADC with
    ``noise`` LSB of comparator noise."""
    base = read_yaml(ROOT / "arch_configs" / "isaac_32nm.yaml")
    crossbar = {**base["crossbar"], "rows": SIZE, "columns": SIZE, "unit_column": False,
                "cell": {"technology": "reram", "bits": 4}, "dac": {"bits": 7},
                "adc": {**base["crossbar"]["adc"], "bits": 9, "range": "calibrated",
                        "calibration_percentile": 99.9, "clip": True}}
    data = dict(base, crossbar=crossbar,
                weights={"bits": 5, "encoding": "differential", "column_flip": False},
                inputs={"bits": 7, "signed": False},
                variation={"seed": 1, "cell": {"distribution": "lognormal", "sigma": 0.05},
                           "adc": {"noise_sigma_lsb": noise}})
    return arch_from_dict(data, "aihwkit-like single step")


def run_imcsim(x_float: np.ndarray, w_float: np.ndarray, repeat: int,
               noise: float, profile: bool = False) -> tuple[float, float, float]:
    """Wall and CPU seconds and error of imcsim's layer on operands quantized to its formats
    (with ``profile``, first the CPU seconds of each stage of its forward pass, printed)."""
    sx = np.abs(x_float).max() / 127
    sw = np.abs(w_float).max() / 15
    x = np.clip(np.round(x_float / sx), -127, 127).astype(np.int64)
    w = np.clip(np.round(w_float / sw), -15, 15).astype(np.int64)
    pos, neg = np.maximum(x, 0), np.maximum(-x, 0)
    layer = CrossbarLayer(imcsim_arch(noise), w, seed=0)
    layer.calibrate(np.concatenate([pos[:64], neg[:64]]))

    def forward():
        return layer.matmul(pos, seed=1)[0] - layer.matmul(neg, seed=2)[0]

    if profile:
        _profile(forward, max(repeat, 10))
    wall, cpu = timed(forward, repeat)
    y = forward() * sx * sw
    return wall, cpu, rel_error(y, x_float @ w_float)


def run_aihwkit(x_float: np.ndarray, w_float: np.ndarray, repeat: int, threads: int,
                omega: float):
    """Wall and CPU seconds and error of AIHWKit's ``AnalogLinear`` with the default
    ``InferenceRPUConfig`` (``omega`` > 0: its weights mapped to that abs-max, the mapping
    AIHWKit documents for inference; the IO untouched), or the reason it cannot run."""
    try:
        import torch
        from aihwkit.nn import AnalogLinear
        from aihwkit.simulator.configs import InferenceRPUConfig
    except ImportError as exc:
        return f"aihwkit not importable ({exc}); see this file's docstring to build it"
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    config = InferenceRPUConfig()
    config.mapping.weight_scaling_omega = omega
    layer = AnalogLinear(SIZE, SIZE, bias=False, rpu_config=config)
    layer.set_weights(torch.from_numpy(w_float.T.copy()))
    layer.eval()
    layer.program_analog_weights()
    xt = torch.from_numpy(x_float)
    with torch.no_grad():
        wall, cpu = timed(lambda: layer(xt), repeat)
        y = layer(xt).numpy()
    return wall, cpu, rel_error(y, x_float @ w_float)


def _profile(forward, batches: int) -> None:
    """CPU seconds per batch of each stage of imcsim's forward pass (the stage wrappers of
    ``bench/profile_bittrue.py``; with ``--threads 1`` they add up to the process's time)."""
    import profile_bittrue as pb  # a sibling script

    from sim.macros import crossbar as cb

    for backend in (cb.backend_k.NumpyBackend, cb.backend_k.TorchCpuBackend):
        pb._timed(backend, "gemm", "float32 partial-sum GEMMs", pb.STAGES)
    pb._timed(cb.adc_k, "adc_accumulate", "ADC kernel with its noise draws", pb.STAGES)
    pb._timed(cb.inputs_k, "split_inputs_activity", "input split", pb.STAGES)
    forward()
    pb.STAGES.clear()
    c = time.process_time()
    for _ in range(batches):
        forward()
    total = time.process_time() - c
    print(f"imcsim forward, profiled: {total / batches * 1e3:.2f} ms CPU per batch "
          f"({batches} batches, the stage wrappers included)")
    for key, t in sorted(pb.STAGES.items(), key=lambda kv: -kv[1]):
        print(f"  {key:<34}{t / batches * 1e3:7.2f} ms  {100 * t / total:5.1f} %")


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                              capture_output=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--profile", action="store_true",
                    help="first print the CPU time of each stage of imcsim's forward pass")
    ap.add_argument("--threads", type=int, default=1,
                    help="threads of each simulator (IMCSIM_THREADS, torch.set_num_threads)")
    args = ap.parse_args()
    os.environ["IMCSIM_THREADS"] = str(args.threads)
    # AIHWKit's C++ tiles run OpenMP loops that torch.set_num_threads does not bound: its
    # thread count is read when torch first loads libgomp (imported lazily, below).
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch, SIZE)).astype(np.float32)
    w = (rng.standard_normal((SIZE, SIZE)) / np.sqrt(SIZE)).astype(np.float32)
    io = aihw_io()
    noise = noise_lsb(io)
    print(f"{SIZE}x{SIZE} analog layer, batch {args.batch}, {args.threads} thread(s) each; "
          f"best of {args.repeat} (wall and CPU time per batch); error = RMS error / RMS of "
          "the float product")
    print(f"commit {_commit()}, load average {os.getloadavg()[0]:.2f} at start")
    rows = [("imcsim", run_imcsim(x, w, args.repeat, noise, args.profile),
             f"{imcsim_arch(noise).source}, comparator noise {noise:.3f} LSB")]
    for omega, label in ((0.0, "InferenceRPUConfig defaults"),
                         (1.0, "defaults + mapping.weight_scaling_omega 1.0")):
        res = run_aihwkit(x, w, args.repeat, args.threads, omega)
        if isinstance(res, str):
            print(f"  aihwkit  skipped: {res}")
            break
        rows.append(("aihwkit", res, label))
    for name, (wall, cpu, err), label in rows:
        print(f"  {name:8s} wall {wall * 1e3:8.2f} ms  CPU {cpu * 1e3:8.2f} ms  error "
              f"{err:.4f}   ({label})")
    print(f"load average {os.getloadavg()[0]:.2f} at end")
    t_i = rows[0][1]
    for _name, (wall, cpu, err), label in rows[1:]:
        better = "equal or better" if t_i[2] <= err else "WORSE"
        print(f"  against {label}: imcsim {wall / t_i[0]:.2f}x faster by wall time, "
              f"{cpu / t_i[1]:.2f}x by CPU time, error {better} (target >= 5x at equal or "
              "better error)")


if __name__ == "__main__":
    main()
