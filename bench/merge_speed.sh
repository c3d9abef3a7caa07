#!/usr/bin/env bash
# Merge speed and memory: wall time (median of BENCH_REPEAT=3 runs: this disk's writeback speed
# swings a lot between runs) and peak RSS of `anvil merge` against plain `cp` of the same
# input bytes on the same disk (the physical floor: every input byte read, one model written).
# Pairs: the fixture pair (ft-fortune + ft-changelog) and two synthetic Llama-3.2-1B-shaped bf16
# models (~2.5 GB each, written by make_synthetic_model.py; needs python3-numpy).
#   BENCH_DIR  scratch directory with ~12 GB free (default: /tmp/anvil-bench)
source "$(dirname "$0")/common.sh"
dir=${BENCH_DIR:-/tmp/anvil-bench}
mkdir -p "$dir"
command -v /usr/bin/python3 >/dev/null && /usr/bin/python3 -c 'import numpy' 2>/dev/null ||
  { echo "merge_speed: needs python3-numpy (apt-get install python3-numpy)" >&2; exit 2; }

reset_outputs() { rm -rf "$dir/out" "$dir/cp" && mkdir -p "$dir/cp"; }

pair() {  # name, model A, model B, base
  local name=$1 a=$2 b=$3 base=$4
  cat "$a"/*.safetensors "$b"/*.safetensors > /dev/null  # warm the page cache for both runs alike
  measure "$name: cp of both inputs" sh -c "cat $a/*.safetensors > $dir/cp/a.st && cat $b/*.safetensors > $dir/cp/b.st && sync"
  for method in ${METHODS:-linear slerp ties dare_ties breadcrumbs della sce}; do
    case $method in
      linear) params="parameters: {weight: 0.5}" ;;
      slerp | sce) params="" ;;
      ties | dare_ties) params="parameters: {weight: 0.7, density: 0.7}" ;;
      breadcrumbs) params="parameters: {weight: 0.7, density: 0.9, gamma: 0.01}" ;;
      della) params="parameters: {weight: 0.7, density: 0.7, epsilon: 0.15}" ;;
    esac
    cat > "$dir/$method.yaml" <<YAML
merge_method: $method
base_model: $(case $method in linear | slerp) echo "$a" ;; *) echo "$base" ;; esac)
parameters: {t: 0.5, normalize: false, select_topk: 0.7}
models:
  - model: $a
    $params
  - model: $b
    $params
YAML
    measure "$name: anvil merge $method (2 threads)" sh -c "$anvil merge $dir/$method.yaml -o $dir/out --threads 2 && sync"
  done
}

echo "| run | time | peak RSS |"
echo "|---|---|---|"
pair fixture "$shared/models/ft-fortune" "$shared/models/ft-changelog" "$shared/models/base"
[ -f "$dir/syn-a/model.safetensors" ] || /usr/bin/python3 bench/make_synthetic_model.py "$dir/syn-a" --seed 1
[ -f "$dir/syn-b/model.safetensors" ] || /usr/bin/python3 bench/make_synthetic_model.py "$dir/syn-b" --seed 2
[ -f "$dir/syn-base/model.safetensors" ] || /usr/bin/python3 bench/make_synthetic_model.py "$dir/syn-base" --seed 3
pair "1B" "$dir/syn-a" "$dir/syn-b" "$dir/syn-base"
rm -rf "$dir/out" "$dir/cp"
