#!/usr/bin/env bash
# The device check of the cuda array backend, for a machine with a CUDA GPU (none has been
# available to the developers, so the cuda path is untested on a device; its code is tested on
# torch's CPU device). Run from the repository root, in an environment whose torch sees the
# GPU (`make install TORCH_SPEC=...` with a CUDA build of torch 2.13, or an existing one):
#
#     bash bench/gpu_check.sh            # about 2-4 minutes
#
# 1. the device and torch's view of it;
# 2. the bit-true oracle, property and backend tests on every backend this machine has (the
#    test variants add `cuda` automatically where torch sees a device): the cuda backend must
#    give numpy's bits on every case it takes;
# 3. a `digits_cnn` run with `--backend cuda` (no exact fast path, so the integer partial
#    sums run on the GPU) against `--backend numpy`: result.json equal but for the time and
#    the backend;
# 4. `bench/bench_kernels.py --backend cuda`: each row against the GPU's own fp32 rate.
set -euo pipefail
PY=${PY:-.venv/bin/python}
export PYTHONPATH=${PYTHONPATH:-$PWD}
$PY - <<'PYEOF'
import torch
assert torch.cuda.is_available(), "torch sees no CUDA device"
print("device:", torch.cuda.get_device_name(0), "| torch", torch.__version__)
PYEOF
$PY -m pytest -q -p no:cacheprovider tests/test_kernels_oracle.py tests/test_property.py \
    tests/test_backend.py
out=$(mktemp -d)
for b in numpy cuda; do
    IMCSIM_EXACT_FAST_PATH=0 $PY -m analysis.cli run isaac_32nm digits_cnn --samples 60 \
        --batch-size 30 --workers 1 --quiet --backend "$b" --out "$out/$b" > /dev/null
done
$PY - "$out" <<'PYEOF'
import json, sys
a, b = (json.load(open(f"{sys.argv[1]}/{n}/result.json")) for n in ("numpy", "cuda"))
assert b["backend"] == "cuda", b["backend"]
for r in (a, b):
    r.pop("backend"), r.pop("wall_time_s")
assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True), "results differ"
print("digits_cnn on ISAAC without the exact fast path: cuda result == numpy result")
PYEOF
$PY bench/bench_kernels.py --backend cuda --repeat 3
