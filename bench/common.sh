# Sourced by every bench script: strict mode, the repository root as the working directory,
# the fixtures (ANVIL_SHARED, default ../shared) and the binary (ANVIL, default build/tools/anvil).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
shared=${ANVIL_SHARED:-$(cd .. && pwd)/shared}
anvil=${ANVIL:-$PWD/build/tools/anvil}

# measure LABEL COMMAND...: one markdown row, "| label | median s (runs: ...) | peak RSS |", over
# BENCH_REPEAT (default 3) runs. Before each run it calls the script's reset_outputs (removing
# the previous run's outputs) and syncs, so that no writeback from one run lands in the next.
# Scratch files go to $dir.
measure() {
  local label=$1; shift
  local times=() kb=0
  for _ in $(seq "${BENCH_REPEAT:-3}"); do
    reset_outputs
    sync
    /usr/bin/time -f "%e %M" -o "$dir/time" "$@" >/dev/null
    read -r secs k < "$dir/time"
    times+=("$secs"); [ "$k" -gt "$kb" ] && kb=$k
  done
  local median; median=$(printf "%s\n" "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  printf "| %s | %.2f s (runs: %s) | %.0f MiB |\n" "$label" "$median" "${times[*]}" "$((kb / 1024))"
}
