#!/usr/bin/env bash
# Builds anvil (every target, tests included) against a CUDA LibTorch, with the local nvcc, so
# that a CUDA code path that does not compile is found before a GPU is ever lent (issue #19).
# Nothing runs: these machines have the CUDA toolkit but no GPU.
#
# The LibTorch is the one PyPI's torch wheel ships (with its CMake files), installed into a
# virtual environment outside the repository on first use.
#   ANVIL_CUDA_VENV        the environment (default: ~/.cache/anvil/cuda-torch-venv)
#   ANVIL_CUDA_TORCH       the torch version to install there (default: 2.15.0)
#   ANVIL_CUDA_BUILD_DIR   build directory (default: build-cuda)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${ANVIL_CUDA_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/anvil/cuda-torch-venv}
build=${ANVIL_CUDA_BUILD_DIR:-build-cuda}

command -v nvcc >/dev/null || { echo "check-cuda-build: nvcc not found (the CUDA toolkit)" >&2; exit 2; }
if ! "$venv/bin/python" -c 'import torch' 2>/dev/null; then
  echo "check-cuda-build: installing torch ${ANVIL_CUDA_TORCH:-2.15.0} into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "torch==${ANVIL_CUDA_TORCH:-2.15.0}"
fi
read -r torch_version torch_cuda prefix < <("$venv/bin/python" -c \
  'import torch; print(torch.__version__, torch.version.cuda, torch.utils.cmake_prefix_path)')
[[ $torch_cuda != None ]] || { echo "check-cuda-build: $venv's torch $torch_version has no CUDA" >&2; exit 2; }
nvcc_version=$(nvcc --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')
echo "check-cuda-build: LibTorch $torch_version (CUDA $torch_cuda) with nvcc $nvcc_version into $build"

# libtorch_cuda.so needs the NCCL, cuDNN, ... that came with the wheel (nvidia/*/lib), not the
# system's: the linker is pointed at them.
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
rpath_link=$(find "$site/nvidia" -maxdepth 3 -type d -name lib 2>/dev/null | paste -sd: -)
# TORCH_CUDA_ARCH_LIST: without it Caffe2's CMake runs a probe for the installed GPU, which there is
# none of; 9.0 (Hopper) is the kind of GPU this project is lent. anvil has no .cu files, so the
# CUDA dialect only matters to LibTorch's probes: C++17, which CMake 3.25 knows for nvcc 13.
mkdir -p "$build"
TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_LIBRARY_PATH="$prefix/../../lib" \
  -DCMAKE_CUDA_COMPILER="$(command -v nvcc)" -DCMAKE_CUDA_STANDARD=17 \
  -DCMAKE_EXE_LINKER_FLAGS="-Wl,-rpath-link,$rpath_link -Wl,-rpath,$rpath_link" \
  >"$build/configure.log" 2>&1 ||
  { tail -n 30 "$build/configure.log"; echo "check-cuda-build: configure failed" >&2; exit 1; }
# The CUDA LibTorch must be the one found, headers and libraries, not Debian's CPU build in
# /usr (TorchConfig's find_library would take /usr/lib first: CMAKE_LIBRARY_PATH comes before it).
grep -q "^TORCH_LIBRARY:FILEPATH=$venv" "$build/CMakeCache.txt" ||
  { grep "^TORCH_LIBRARY:" "$build/CMakeCache.txt"; echo "check-cuda-build: CMake did not pick the CUDA LibTorch" >&2; exit 1; }
cmake --build "$build" -j"${ANVIL_CUDA_JOBS:-$(nproc)}"
echo "check-cuda-build: OK: every target builds against LibTorch $torch_version (CUDA $torch_cuda), nvcc $nvcc_version"
