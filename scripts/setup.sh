#!/usr/bin/env bash
# Installs anvil's Debian build dependencies (when missing), makes OpenBLAS the system BLAS, and
# builds anvil in Release into ./build. Safe to run repeatedly: it only does what is missing.
#
#   ANVIL_BUILD_DIR   build directory (default: build)
#   CMAKE_PREFIX_PATH e.g. a CUDA PyTorch's cmake prefix to build against its LibTorch
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  build-essential cmake ccache pkg-config
  libtorch-dev          # tensors, autograd (Debian's LibTorch 1.13, CPU)
  libopenblas0-pthread  # fast BLAS for LibTorch's CPU GEMMs (the reference BLAS is ~10x slower)
  libtbb-dev            # CPU parallelism across windows / tensors
  libcxxopts-dev        # command line
  libyaml-cpp-dev       # recipes and merge configs
  libssl-dev            # SHA-256 of a command's inputs for its model card (libcrypto)
  nlohmann-json3-dev    # JSON headers, configs, tokenizer.json
  libpcre2-dev          # Unicode regex for the tokenizer's pre-tokenizer
  libutf8proc-dev       # Unicode normalization (NFC/NFKC) for tokenizers that ask for it
  libsentencepiece-dev  # tokenizer.model files, read and run by the reference implementation
  libgtest-dev          # tests
  python3               # the hostile-input corpus and the kill test (standard library only)
  clang libclang-rt-14-dev  # libFuzzer + ASan/UBSan for the fuzz targets (tests/fuzz)
)

sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo_if_needed apt-get update -qq
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# LibTorch links libblas.so.3, which Debian resolves through the alternatives system.
for lib in libblas.so.3 liblapack.so.3; do
  target=/usr/lib/x86_64-linux-gnu/openblas-pthread/$lib
  if [ -e "$target" ] && [ "$(readlink -f /usr/lib/x86_64-linux-gnu/$lib)" != "$(readlink -f "$target")" ]; then
    sudo_if_needed update-alternatives --set "$lib-x86_64-linux-gnu" "$target" >/dev/null
  fi
done

build_dir=${ANVIL_BUILD_DIR:-build}
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build_dir" -j"$(nproc)"
