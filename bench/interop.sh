#!/usr/bin/env bash
# anvil's outputs in the real peers (issue #19; not part of tests/run.sh): installs the peers from
# PyPI into virtual environments outside the repository (first run only; they hold a CUDA torch
# wheel, ~6 GB each), then runs bench/interop.py, which prints one row per check and a table.
#   bench/interop.sh                 (ANVIL_SHARED: fixtures, default ../shared)
#   ANVIL_PEERS_VENV      the peers' environment (default ~/.cache/anvil/peers-venv)
#   ANVIL_MERGEKIT_VENV   mergekit's own (it pins its own transformers; default ~/.cache/anvil/mergekit-venv)
#   ANVIL_LLAMA_CPP       llama.cpp's bin/ (llama-perplexity, llama-quantize, llama-tokenize), built outside
#                         the repo from the tree PyPI's llama-cpp-python sdist vendors; unset: its rows say so
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${XDG_CACHE_HOME:-$HOME/.cache}/anvil
peers=${ANVIL_PEERS_VENV:-$cache/peers-venv}
mergekit=${ANVIL_MERGEKIT_VENV:-$cache/mergekit-venv}
# The versions the README's table was measured with.
pins=(torch==2.15.0 transformers==5.24.0 peft==0.21.2 safetensors==0.8.0 gguf==0.19.0 compressed-tensors==0.20.1
      tokenizers==0.23.3 sentencepiece==0.2.3 protobuf==7.36.2 numpy==2.4.6 accelerate==1.15.0)
mergekit_pin=${ANVIL_MERGEKIT_PIN:-mergekit==0.1.5}

[[ -x build/tools/anvil ]] || bash scripts/setup.sh
if ! "$peers/bin/python" -c 'import transformers, peft, gguf, compressed_tensors' 2>/dev/null; then
  echo "interop: installing ${pins[*]} into $peers"
  python3 -m venv "$peers"
  "$peers/bin/pip" install -q "${pins[@]}"
fi
if ! [[ -x $mergekit/bin/mergekit-yaml ]]; then
  echo "interop: installing $mergekit_pin into $mergekit"
  python3 -m venv "$mergekit"
  "$mergekit/bin/pip" install -q "$mergekit_pin" || echo "interop: mergekit did not install; its rows are explained"
fi
echo "interop: mergekit $("$mergekit/bin/pip" show mergekit 2>/dev/null | sed -n 's/^Version: //p')"
args=()
[[ -x $mergekit/bin/mergekit-yaml ]] && args+=(--mergekit-yaml "$mergekit/bin/mergekit-yaml")
[[ -n ${ANVIL_LLAMA_CPP:-} ]] && args+=(--llama-cpp "$ANVIL_LLAMA_CPP")
exec "$peers/bin/python" bench/interop.py --anvil build/tools/anvil --shared "${ANVIL_SHARED:-../shared}" "${args[@]}"
