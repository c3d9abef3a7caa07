#!/usr/bin/env bash
# Quantize throughput: `anvil quantize` to Q8_0 and Q4_K_M (2 threads) on base's F32 GGUF (the
# input llama-quantize was timed on: ~0.10 s for Q8_0, ~0.37 s for Q4_K_M on this machine kind,
# ../shared/README.md) and on a synthetic Llama-3.2-1B-shaped model, against the physical floor
# (reading the input and writing the output bytes with cat).
#   BENCH_DIR  scratch directory (default: /tmp/anvil-bench; the 1B model is made as in merge_speed.sh)
source "$(dirname "$0")/common.sh"
dir=${BENCH_DIR:-/tmp/anvil-bench}
mkdir -p "$dir"

wall() { /usr/bin/time -f "%e" -o "$dir/t" "$@" > "$dir/out"; cat "$dir/t"; }
median() { printf "%s\n" "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# anvil's median wall time of BENCH_REPEAT=3 runs (this machine's disk timings swing), and the
# work time it reported in that run.
quantize() {  # input type -> "work process"
  local runs=() works=()
  for _ in $(seq "${BENCH_REPEAT:-3}"); do
    sync
    runs+=("$(wall $anvil quantize "$1" -o "$dir/q.gguf" --type "$2" --threads 2)")
    works+=("$(sed -n 's/.* in \([0-9.]*\) s .*/\1/p' "$dir/out")")
  done
  echo "$(median "${works[@]}") $(median "${runs[@]}")"
}

echo "| input | type | anvil (work) | anvil (process) | floor: cat in > out | peer |"
echo "|---|---|---|---|---|---|"
$anvil convert "$shared/models/base" -o "$dir/base-f32.gguf" --type f32 >/dev/null
declare -A peer=([Q8_0]="llama-quantize ~0.10 s" [Q4_K_M]="llama-quantize ~0.37 s")
for t in Q8_0 Q4_K_M; do
  cat "$dir/base-f32.gguf" > /dev/null
  read -r work w < <(quantize "$dir/base-f32.gguf" $t)
  floor=$(wall sh -c "cat $dir/base-f32.gguf > $dir/floor && cat $dir/q.gguf > $dir/floor2")
  echo "| base F32 GGUF (33.7 MB) | $t | $work s | $w s | $floor s | ${peer[$t]} |"
done
if [ -f "$dir/syn-a/model.safetensors" ]; then
  # The synthetic model has no tokenizer of its own: lend it base's (only its metadata is copied).
  mkdir -p "$dir/syn-q"
  ln -sf "$dir/syn-a/model.safetensors" "$dir/syn-q/model.safetensors"
  cp "$dir/syn-a/config.json" "$dir/syn-q/config.json"
  cp "$shared/models/base/tokenizer.json" "$dir/syn-q/tokenizer.json"
  for t in Q8_0 Q4_K_M; do
    read -r work w < <(quantize "$dir/syn-q" $t)
    floor=$(wall sh -c "cat $dir/syn-a/model.safetensors > $dir/floor && cat $dir/q.gguf > $dir/floor2")
    echo "| synthetic 1B bf16 (2.5 GB) | $t | $work s | $w s | $floor s | — |"
  done
fi
rm -f "$dir/q.gguf" "$dir/floor" "$dir/floor2"
