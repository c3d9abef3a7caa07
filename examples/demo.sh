#!/usr/bin/env bash
# The first command of the README: set up, build, then check the shipped base model against
# transformers' numbers and let it write a little.
#   ANVIL_SHARED  fixtures directory (default: ../shared beside the repo)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
shared=${ANVIL_SHARED:-$(cd .. && pwd)/shared}
anvil=./build/tools/anvil
[ -d "$shared/models/base" ] || { echo "demo: no fixtures at $shared (set ANVIL_SHARED)" >&2; exit 2; }

echo; echo "== anvil env"; $anvil env
echo; echo "== anvil inspect base"; $anvil inspect "$shared/models/base" --no-tensors
echo; echo "== anvil eval base (transformers: pkg.val 14.7356, fortune.val 552.331)"
$anvil eval "$shared/models/base" --data "$shared/data/pkg.val.txt" "$shared/data/fortune.val.txt"
echo; echo "== anvil eval ft-fortune, compared with base"
$anvil eval "$shared/models/ft-fortune" --data "$shared/data/fortune.val.txt" --compare "$shared/models/base"
echo; echo "== anvil generate"
$anvil generate "$shared/models/base" --prompt "This package provides" -n 40

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
echo; echo "== anvil quantize base to Q4_K_M (llama-quantize's bytes), scored against the original"
$anvil quantize "$shared/models/base" -o "$out/base-Q4_K_M.gguf" --type Q4_K_M
$anvil eval "$out/base-Q4_K_M.gguf" --data "$shared/data/fortune.val.txt" --compare "$shared/models/base"
echo; echo "== anvil merge: TIES of the two fine-tunes (configs/ties.yaml with these paths); both skills kept?"
sed "s|\.\./\.\./shared|$shared|" configs/ties.yaml > "$out/ties.yaml"
$anvil merge "$out/ties.yaml" -o "$out/merged" --eval "$shared/data/fortune.val.txt" "$shared/data/changelog.val.txt"
