#!/usr/bin/env bash
# Merge straight to GGUF against merge-then-quantize, and MoE assembly memory, on the synthetic
# Llama-3.2-1B-shaped pair (bf16, ~2.5 GB each; written by make_synthetic_model.py, needs
# python3-numpy). Prints a markdown table: wall time (median of BENCH_REPEAT=3) and peak RSS, and
# checks that the one-pass file equals the two-step one byte for byte.
#   BENCH_DIR  scratch directory with ~15 GB free (default: /tmp/anvil-bench)
#   TYPE       GGUF type (default Q4_K_M)
source "$(dirname "$0")/common.sh"
dir=${BENCH_DIR:-/tmp/anvil-bench}
type=${TYPE:-Q4_K_M}
mkdir -p "$dir"
/usr/bin/python3 -c 'import numpy' 2>/dev/null || { echo "merge_to_gguf: needs python3-numpy" >&2; exit 2; }
for m in a:1 b:2 base:3; do
  d="$dir/syn-${m%%:*}"
  [ -f "$d/model.safetensors" ] || /usr/bin/python3 bench/make_synthetic_model.py "$d" --seed "${m##*:}"
  # No tokenizer of its own: lend it base's (ids < the synthetic vocabulary; GGUF metadata only).
  cp "$shared/models/base/tokenizer.json" "$d/tokenizer.json"
done

reset_outputs() { rm -rf "$dir/out" "$dir/out.gguf" "$dir/two.gguf" "$dir/moe"; }

cat > "$dir/ties.yaml" <<YAML
merge_method: ties
base_model: $dir/syn-base
models:
  - model: $dir/syn-a
    parameters: {weight: 0.7, density: 0.7}
  - model: $dir/syn-b
    parameters: {weight: 0.7, density: 0.7}
dtype: bfloat16
YAML
cat > "$dir/moe.yaml" <<YAML
base_model: $dir/syn-base
gate_mode: random
dtype: bfloat16
experts_per_token: 2
experts:
  - source_model: $dir/syn-a
  - source_model: $dir/syn-b
YAML
cat "$dir"/syn-*/model.safetensors > /dev/null  # warm the page cache for every run alike
echo "| run (1B-shaped pair, 2 threads) | time | peak RSS |"
echo "|---|---|---|"
measure "merge ties -> $type GGUF, one pass" sh -c "$anvil merge $dir/ties.yaml -o $dir/out.gguf --type $type --threads 2 && sync"
measure "merge ties -> bf16 directory, then quantize -> $type" sh -c \
  "$anvil merge $dir/ties.yaml -o $dir/out --threads 2 && $anvil quantize $dir/out -o $dir/two.gguf --type $type --threads 2 && sync"
measure "  of which: merge ties -> bf16 directory" sh -c "$anvil merge $dir/ties.yaml -o $dir/out --threads 2 && sync"
measure "moe (2 experts, random gates) -> Mixtral directory" sh -c "$anvil moe $dir/moe.yaml -o $dir/moe && sync"
# The same bytes: the two-step file is named like the one-pass one (general.name is the output's name).
rm -rf "$dir/out" "$dir/out.gguf" "$dir/cmp" && mkdir -p "$dir/cmp"
$anvil merge "$dir/ties.yaml" -o "$dir/out.gguf" --type "$type" --threads 2 >/dev/null
$anvil merge "$dir/ties.yaml" -o "$dir/cmp/out" --threads 2 >/dev/null
$anvil quantize "$dir/cmp/out" -o "$dir/cmp/out.gguf" --type "$type" --threads 2 >/dev/null
cmp "$dir/out.gguf" "$dir/cmp/out.gguf" && echo "one pass = merge then quantize, byte for byte ($(stat -c %s "$dir/out.gguf") bytes)"
