#!/usr/bin/env bash
# Builds the CUDA binary of neuronxa on a machine without a system CUDA toolkit, with NVIDIA's
# CUDA 13.0 compiler and libraries from PyPI wheels (see ../shared/GPU.md for why 13.0).
# On a machine with the toolkit installed, `cargo build --release --features cuda` is enough.
#
#   scripts/build-cuda.sh [PREFIX]      # PREFIX: where the wheels go (default: .cuda-toolchain)
#
# Output: target/cuda/release/neuronxa (kernels for compute capability $CUDA_COMPUTE_CAP, 90 =
# H100/H200 by default). At run time the real driver's libcuda.so.1 and the CUDA libraries
# (e.g. PyTorch's nvidia/cu13/lib on LD_LIBRARY_PATH) replace the build-time stubs.
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=$(realpath -m "${1:-.cuda-toolchain}")
mkdir -p "$prefix/wheels" "$prefix/root" "$prefix/link"

packages=(nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88
  nvidia-cuda-runtime==13.0.96 nvidia-cuda-nvrtc==13.0.88 nvidia-cuda-cccl==13.0.85
  nvidia-curand==10.4.0.35 nvidia-cublas==13.1.0.3)
python3 -m pip download --quiet --no-deps -d "$prefix/wheels" "${packages[@]}"
for wheel in "$prefix"/wheels/*.whl; do
  python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$wheel" "$prefix/root"
done
cuda="$prefix/root/nvidia/cu13"
chmod +x "$cuda"/bin/* "$cuda"/nvvm/bin/* 2>/dev/null || true

# Unversioned names for the linker.
for lib in cudart cublas cublasLt curand nvrtc; do
  found=$(ls "$cuda"/lib/lib$lib.so.* 2>/dev/null | head -n 1)
  [ -n "$found" ] || { echo "missing lib$lib in $cuda/lib" >&2; exit 1; }
  ln -sf "$found" "$prefix/link/lib$lib.so"
done

# A stub libcuda.so (SONAME libcuda.so.1) defining every driver function cudarc declares.
cargo fetch --quiet
cudarc=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-* | sort -V | tail -n 1)
grep -rhoE '\bcu[A-Z][A-Za-z0-9_]*\b' "$cudarc/src/driver/sys" | sort -u \
  | awk '{print "void " $1 "(void) {}"}' >"$prefix/link/libcuda_stub.c"
gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$prefix/link/libcuda.so" "$prefix/link/libcuda_stub.c"

export CUDA_ROOT="$cuda" CUDA_PATH="$cuda" PATH="$cuda/bin:$PATH"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
export RUSTFLAGS="${RUSTFLAGS:-} -L native=$prefix/link -L native=$cuda/lib"
cargo build --release --features cuda --target-dir target/cuda
strip target/cuda/release/neuronxa
echo "built target/cuda/release/neuronxa (compute capability $CUDA_COMPUTE_CAP)"
