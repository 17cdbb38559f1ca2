#!/usr/bin/env bash
# Build verity with the `cuda` feature on a machine without a CUDA toolkit (and without a GPU).
#
#   scripts/build-cuda.sh [extra cargo args...]
#
# NVIDIA's compiler and libraries come from PyPI as wheels (CUDA 13.4, the newest release
# cudarc 0.19 knows), installed into a virtual environment at $VERITY_CUDA_VENV (default
# ~/.cache/verity/cuda-13.4). The driver library (libcuda) only exists where a GPU driver is
# installed, so the link uses a stub with the driver's symbols; on a GPU machine the real
# driver is loaded at run time. CUDA_COMPUTE_CAP picks the GPU generation the kernels are
# compiled for (default 90: Hopper). candle's kernels take about 30 minutes on 2 cores.
#
# The last line printed is the path of the built binary. To run it on a GPU machine, put the
# printed library folder on LD_LIBRARY_PATH unless that machine has CUDA 13 libraries of its own.
set -euo pipefail

die() { echo "build-cuda: $*" >&2; exit 2; }

cd "$(dirname "$0")/.."
venv=${VERITY_CUDA_VENV:-$HOME/.cache/verity/cuda-13.4}
toolkit="cuda-toolkit[nvcc,cudart,crt,nvvm,nvrtc,cublas,curand,cccl]==13.4.3"

command -v python3 >/dev/null || die "python3 is missing (needed to install NVIDIA's wheels)"
command -v cargo >/dev/null || die "cargo is missing"
command -v gcc >/dev/null || die "gcc is missing (nvcc needs a host compiler)"

if [ ! -f "$venv/.toolkit-installed" ]; then
    echo "build-cuda: installing $toolkit into $venv" >&2
    python3 -m venv "$venv" || die "cannot create a virtual environment at $venv"
    "$venv/bin/pip" install --quiet "$toolkit" || die "pip could not install $toolkit"
    touch "$venv/.toolkit-installed"
fi

root=$("$venv/bin/python" -c 'import nvidia, os; print(os.path.join(nvidia.__path__[0], "cu13"))')
[ -x "$root/bin/nvcc" ] || die "no nvcc at $root/bin/nvcc: remove $venv and run again"

# The linker wants unversioned names (libcublas.so); the wheels carry only versioned ones.
for lib in "$root"/lib/lib*.so.*; do
    base=${lib##*/}
    ln -sf "$base" "$root/lib/${base%%.so.*}.so"
done

# A stub libcuda with every driver entry point cudarc declares, so the binary links here and
# binds to the real driver (libcuda.so.1) on a GPU machine.
cudarc_dir=$(cargo metadata --format-version 1 --features cuda --manifest-path crates/verity/Cargo.toml 2>/dev/null |
    "$venv/bin/python" -c 'import json, sys, os
meta = json.load(sys.stdin)
print(next(os.path.dirname(p["manifest_path"]) for p in meta["packages"] if p["name"] == "cudarc"))') ||
    die "cannot find the cudarc crate (is the registry reachable?)"
mkdir -p "$root/lib/stubs"
grep -oE 'pub unsafe fn cu[A-Za-z0-9_]+\(' "$cudarc_dir/src/driver/sys/mod.rs" |
    sed -E 's/pub unsafe fn (.*)\(/int \1(void) { return 999; }/' | sort -u >"$root/lib/stubs/cuda_stub.c"
[ -s "$root/lib/stubs/cuda_stub.c" ] || die "found no driver functions in $cudarc_dir/src/driver/sys/mod.rs"
gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$root/lib/stubs/libcuda.so" "$root/lib/stubs/cuda_stub.c"

export PATH="$root/bin:$PATH"
export CUDA_ROOT="$root"
export CUDA_PATH="$root"
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
export LIBRARY_PATH="$root/lib:$root/lib/stubs${LIBRARY_PATH:+:$LIBRARY_PATH}"
echo "build-cuda: nvcc $(nvcc --version | sed -n 's/.*release \([0-9.]*\).*/\1/p'), compute capability $CUDA_COMPUTE_CAP" >&2

cargo build --release --features cuda "$@"
echo "build-cuda: CUDA libraries: $root/lib" >&2
echo "${CARGO_TARGET_DIR:-$PWD/target}/release/verity"
