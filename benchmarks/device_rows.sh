#!/usr/bin/env bash
# The GPU row path's device run (`statistics.row_two_pass`, layer norm over the last axis on a
# CUDA GPU): its tests on the device, its kernels and time against flax, the drop-in layers'
# times, and the float32 error at large offsets. From the repository root of the device
# machine's copy, nothing installed, results under $OUT (about 5 minutes on an H200: 45 s,
# 117 s, 101 s, 24 s; gpu_fusion ran past its first limit of 90 s, and was rerun alone).
# `bash benchmarks/device_rows.sh --quick` is the CPU smoke run (tiny shapes, one round).
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 PYTHONPATH=. JAX_PLATFORMS=''  # '': the device, not conftest's CPU
out=${OUT:?set OUT to the output folder}
quick=()
rounds=(--rounds 7)
if [[ ${1:-} == --quick ]]; then quick=(--quick); rounds=(--rounds 1); fi
step() {  # step SECONDS NAME COMMAND...: run one part within its limit, log how it ended
  local limit=$1 name=$2 start=$SECONDS; shift 2
  timeout "$limit" "$@"
  echo "[$((SECONDS))s] $name: exit $? after $((SECONDS - start)) s" >> "$out/run.log"
}
{ date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1
  python3 -c "import jax, flax; print('jax', jax.__version__, 'flax', flax.__version__,
    jax.default_backend(), jax.devices()[0].device_kind)"; } > "$out/run.log" 2>&1
step 150 pytest python3 -m pytest -q -p no:cacheprovider --durations=15 tests/test_gpu_rows.py \
  tests/test_edges.py tests/test_presets.py tests/test_linen.py tests/test_nnx.py \
  tests/test_equinox.py -k "gpu_rows or layer_norm or LayerNorm" > "$out/pytest_rows.txt" 2>&1
step 150 gpu_fusion python3 -m benchmarks.gpu_fusion --out "$out" "${quick[@]}" >> "$out/run.log" 2>&1
step 150 dropin python3 -m benchmarks.dropin "${rounds[@]}" --nnx "${quick[@]}" \
  > "$out/dropin.md" 2>&1
step 60 numerics python3 -m benchmarks.numerics "${quick[@]}" > "$out/numerics.md" 2>&1
