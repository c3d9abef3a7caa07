#!/usr/bin/env bash
# Quantize throughput, side by side: `anvil quantize` and llama-quantize to Q8_0 and Q4_K_M
# (2 threads, the same input GGUF for both) on base's F32 GGUF and on a synthetic
# Llama-3.2-1B-shaped model's F16 GGUF, with the physical floor (cat of the input and output
# bytes). Median of BENCH_REPEAT=3 runs (this machine's disk timings swing).
#   LLAMA_CPP  llama.cpp's build/bin (llama-quantize), built outside this repository; without it
#              the peer column is empty
#   BENCH_DIR  scratch directory (default: /tmp/anvil-bench; the 1B model is made as in merge_speed.sh)
#   ANVIL_SIMD avx2 | generic times anvil's narrower builds on this CPU (set the peer's build to match)
source "$(dirname "$0")/common.sh"
dir=${BENCH_DIR:-/tmp/anvil-bench}
mkdir -p "$dir"
peer_bin=${LLAMA_CPP:+$LLAMA_CPP/llama-quantize}

median() { printf "%s\n" "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
timed() {  # command... -> median wall seconds
  local runs=()
  for _ in $(seq "${BENCH_REPEAT:-3}"); do
    sync
    /usr/bin/time -f "%e" -o "$dir/t" "$@" > /dev/null 2>&1
    runs+=("$(cat "$dir/t")")
  done
  median "${runs[@]}"
}
row() {  # label, input gguf, type
  local a p="—" ratio="—" floor
  cat "$2" > /dev/null
  a=$(timed "$anvil" quantize "$2" -o "$dir/q.gguf" --type "$3" --threads 2)
  floor=$(timed sh -c "cat $2 > $dir/floor && cat $dir/q.gguf > $dir/floor2")
  if [ -n "$peer_bin" ]; then
    p=$(timed "$peer_bin" "$2" "$dir/p.gguf" "$3" 2)
    ratio=$(awk -v a="$a" -v p="$p" 'BEGIN { printf "%.1fx", p / a }')
    p="$p s"
  fi
  echo "| $1 | $3 | $a s | $p | $ratio | $floor s |"
}

echo "anvil scale searches: ${ANVIL_SIMD:-best for this CPU} ($(grep -o 'avx512[a-z_]*' /proc/cpuinfo | sort -u | tr '\n' ' '))"
echo "| input | type | anvil | llama-quantize | anvil's speed-up | floor: cat in > out |"
echo "|---|---|---|---|---|---|"
$anvil convert "$shared/models/base" -o "$dir/base-f32.gguf" --type f32 >/dev/null
for t in Q8_0 Q4_K_M; do row "base F32 GGUF (33.7 MB)" "$dir/base-f32.gguf" $t; done
if [ -f "$dir/syn-a/model.safetensors" ]; then
  # The synthetic model has no tokenizer of its own: lend it base's (only its metadata is copied).
  mkdir -p "$dir/syn-q"
  ln -sf "$dir/syn-a/model.safetensors" "$dir/syn-q/model.safetensors"
  cp "$dir/syn-a/config.json" "$dir/syn-q/config.json"
  cp "$shared/models/base/tokenizer.json" "$dir/syn-q/tokenizer.json"
  [ -f "$dir/syn-f16.gguf" ] || $anvil convert "$dir/syn-q" -o "$dir/syn-f16.gguf" --type f16 >/dev/null
  for t in Q8_0 Q4_K_M; do row "synthetic 1B F16 GGUF (2.5 GB)" "$dir/syn-f16.gguf" $t; done
fi
rm -f "$dir/q.gguf" "$dir/p.gguf" "$dir/floor" "$dir/floor2"
