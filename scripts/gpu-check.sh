#!/usr/bin/env bash
# The one prepared GPU check (issue 5): run on a GPU machine with PyTorch + transformers and no
# Rust, from the repository root, with the CUDA binary built here by scripts/build-cuda.sh and
# copied with the demo tokenizer into DIR (default .device, ignored by git):
#
#   DIR/neuronxa.xz      the binary (xz-compressed to travel light) or DIR/neuronxa
#   DIR/tokenizer.json   the demo model's tokenizer (scripts/gpu_check.py says how it is made)
#
#   scripts/gpu-check.sh [DIR] [OUT] [extra gpu_check.py arguments…]
set -uo pipefail
dir=${1:-.device}
out=${2:-${OUT:-/tmp/gpu-check-out}}
shift 2 2>/dev/null || shift $#
mkdir -p "$out" /tmp/gpucheck
if [ -f "$dir/neuronxa.xz" ]; then
  python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
    "$dir/neuronxa.xz" /tmp/gpucheck/neuronxa
else
  cp "$dir/neuronxa" /tmp/gpucheck/neuronxa
fi
chmod +x /tmp/gpucheck/neuronxa
# The CUDA libraries of PyTorch's pip install stand in for a system toolkit: every folder of
# the `nvidia` packages that holds the runtime, cuBLAS or NVRTC (cu13/lib in one wheel for
# CUDA 13, one package per library for CUDA 12).
cuda_lib=$(python3 - <<'PY' 2>/dev/null
import glob, os, nvidia
found = set()
for root in nvidia.__path__:
    for lib in glob.glob(os.path.join(root, "**", "lib*.so*"), recursive=True):
        if os.path.basename(lib).startswith(("libcudart", "libcublas", "libnvrtc", "libcurand")):
            found.add(os.path.dirname(lib))
print(":".join(sorted(found)))
PY
)
echo "CUDA libraries from: ${cuda_lib:-(none found)}" >"$out/cuda_libs.txt"
export LD_LIBRARY_PATH="${cuda_lib}:${LD_LIBRARY_PATH:-}"
export PYTHONUNBUFFERED=1
nvidia-smi >"$out/nvidia-smi.txt" 2>&1
/tmp/gpucheck/neuronxa inspect --model tests/fixtures/tiny/llama >"$out/inspect.txt" 2>&1
# A CUDA binary on a machine where no GPU is visible must fall back to the CPU and say so.
CUDA_VISIBLE_DEVICES= /tmp/gpucheck/neuronxa inspect --model tests/fixtures/tiny/llama \
  >"$out/inspect_no_gpu.txt" 2>&1
CUDA_VISIBLE_DEVICES= /tmp/gpucheck/neuronxa run --model tests/fixtures/tiny/llama --device cuda \
  --sentences 2 --no-cache >>"$out/inspect_no_gpu.txt" 2>&1
echo "exit code $?" >>"$out/inspect_no_gpu.txt"
# `inspect` on auto must have chosen the CPU and said why; a miss fails the whole check.
fallback=0
if grep -q "would run on: CPU.*(no usable GPU found)" "$out/inspect_no_gpu.txt"; then
  echo "fallback to the CPU without a visible GPU: PASS" | tee -a "$out/inspect_no_gpu.txt"
else
  echo "fallback to the CPU without a visible GPU: FAIL" | tee -a "$out/inspect_no_gpu.txt"
  fallback=1
fi
# A binary whose kernels were built for a newer GPU (DIR/neuronxa-cc100.xz, built with
# CUDA_COMPUTE_CAP=100, if present) must refuse this one in words, and `auto` fall back to the CPU.
if [ -f "$dir/neuronxa-cc100.xz" ]; then
  python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
    "$dir/neuronxa-cc100.xz" /tmp/gpucheck/neuronxa-cc100
  chmod +x /tmp/gpucheck/neuronxa-cc100
  {
    /tmp/gpucheck/neuronxa-cc100 inspect --model tests/fixtures/tiny/llama
    /tmp/gpucheck/neuronxa-cc100 run --model tests/fixtures/tiny/llama --device cuda --sentences 2 --no-cache
    echo "exit code $?"
  } >"$out/wrong_compute_capability.txt" 2>&1
  if grep -q "would run on: CPU.*built for 10.0" "$out/wrong_compute_capability.txt" \
    && grep -q "error: .*compute capability 9.0, but this program's CUDA kernels were built for 10.0" \
      "$out/wrong_compute_capability.txt"; then
    echo "a GPU older than the kernels refused in words: PASS" | tee -a "$out/wrong_compute_capability.txt"
  else
    echo "a GPU older than the kernels refused in words: FAIL" | tee -a "$out/wrong_compute_capability.txt"
    fallback=1
  fi
fi
python3 scripts/gpu_check.py --bin /tmp/gpucheck/neuronxa --tokenizer "$dir/tokenizer.json" \
  --out "$out" "$@" 2>&1 | tee "$out/gpu_check.log"
checks=$?
exit $((checks || fallback))
