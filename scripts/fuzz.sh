#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz (clang, ASan + UBSan) into build-fuzz/ and runs each
# one for its share of SECONDS_TOTAL on a copy of its seed corpus (the repo is left untouched).
# Exits non-zero when any target finds a crash, leak, UB, timeout or OOM, printing the reproducer
# and the start of the report.
#   scripts/fuzz.sh [SECONDS_TOTAL]      (default 60)
# Environment:
#   ANVIL_FUZZ_BUILD_DIR   build directory (default build-fuzz)
#   ANVIL_FUZZ_CXX         compiler (default clang++; must be clang with libFuzzer)
#   ANVIL_FUZZ_JOBS        build jobs (default 2)
#   ANVIL_FUZZ_TARGETS     space-separated subset, e.g. "gguf tokenizer"
#   ANVIL_FUZZ_PER_TARGET  seconds per target instead of SECONDS_TOTAL / targets
#   ANVIL_FUZZ_KEEP_GOING  1: after a finding, restart the target until its time is used, and
#                          exit 0 (bench/fuzz_long.sh); the findings are still listed
#   ANVIL_FUZZ_TABLE       file to which one line per target is written:
#                          target seconds execs exec/s corpus findings kinds
# Reproduce a finding: build-fuzz/fuzz_<target> <reproducer>   (ANVIL_FUZZ_VERBOSE=1 prints rejections)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

total=${1:-60}
build=${ANVIL_FUZZ_BUILD_DIR:-build-fuzz}
cxx=${ANVIL_FUZZ_CXX:-clang++}
jobs=${ANVIL_FUZZ_JOBS:-2}
keep_going=${ANVIL_FUZZ_KEEP_GOING:-0}

if ! command -v "$cxx" >/dev/null; then
  echo "fuzz.sh: $cxx not found (Debian: apt-get install clang)" >&2
  exit 2
fi

# Configure once; later runs are incremental (CMake re-reads lib/CMakeLists.txt when it changes).
if [[ ! -f $build/CMakeCache.txt ]]; then
  cmake -S tests/fuzz -B "$build" -DCMAKE_CXX_COMPILER="$cxx" >/dev/null
fi
start=$SECONDS
cmake --build "$build" -j"$jobs" >"$build/build.log" 2>&1 || { tail -n 40 "$build/build.log"; echo "fuzz.sh: build failed" >&2; exit 2; }
echo "fuzz.sh: built $build in $((SECONDS - start)) s"

if [[ -n ${ANVIL_FUZZ_TARGETS:-} ]]; then
  targets=($ANVIL_FUZZ_TARGETS)
else
  mapfile -t targets < <(sed 's/^fuzz_//' "$build/targets.txt" | grep .)
fi
[[ -f lib/model/adapter_config.h ]] || echo "fuzz.sh: note: lib/model/adapter_config.h is missing, adapter_config not fuzzed"

per=${ANVIL_FUZZ_PER_TARGET:-$((total / ${#targets[@]}))}
((per >= 1)) || per=1

# Inputs bigger than the seeds need are slower and find nothing new; binary formats get room.
max_len() {
  case $1 in
    safetensors | gguf | tokenizer) echo 65536 ;;
    safetensors_index) echo 16384 ;;
    *) echo 4096 ;;
  esac
}

work=$(mktemp -d "${TMPDIR:-/tmp}/anvil-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
artifacts=$root/$build/artifacts
mkdir -p "$artifacts" "$work/tmp"
findings_total=0
table=()
# Seeds made from the fixtures on every run (they are not committed), plus the committed
# regression seeds.
python3 tests/fuzz/make_seeds.py --shared "${ANVIL_SHARED:-$root/../shared}" --out "$work/seeds" >/dev/null

for t in "${targets[@]}"; do
  exe=$build/fuzz_$t
  [[ -x $exe ]] || { echo "fuzz.sh: $exe was not built" >&2; exit 2; }
  corpus=$work/corpus/$t
  mkdir -p "$corpus"
  [[ -d $work/seeds/$t ]] && cp "$work/seeds/$t"/* "$corpus/"
  [[ -d tests/fuzz/corpus/$t ]] && cp tests/fuzz/corpus/$t/* "$corpus/"
  dict=()
  [[ -f tests/fuzz/dict/$t.dict ]] && dict=(-dict="tests/fuzz/dict/$t.dict")

  execs=0 findings=0 kinds=""
  t_start=$SECONDS
  while :; do
    left=$((per - (SECONDS - t_start)))
    ((left >= 1)) || break
    log=$work/$t.$SECONDS.log
    rc=0
    ANVIL_FUZZ_TMP=$work/tmp ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} "$exe" "$corpus" "${dict[@]}" \
      -max_total_time="$left" -timeout=10 -rss_limit_mb=2048 -max_len="$(max_len "$t")" \
      -artifact_prefix="$artifacts/$t-" -print_final_stats=1 >"$log" 2>&1 || rc=$?
    n=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
    r=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n1)
    execs=$((execs + ${n:-0}))
    if ((rc == 0)); then break; fi
    findings=$((findings + 1))
    repro=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n1)
    kind=$(grep -m1 -o -E 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer|UndefinedBehaviorSanitizer): [a-zA-Z_-]+|runtime error: [^:]*|Assertion .* failed|invariant failed|terminate called after throwing an instance of [^ ]+|out-of-memory|Timeout|deadly signal' "$log" | head -n1 || true)
    kinds+="${kinds:+; }${kind:-exit $rc}"
    echo "=================================================================="
    echo "fuzz.sh: FINDING in $t (${kind:-exit status $rc})"
    echo "  reproducer: ${repro:-(none written)}"
    echo "  rerun:      $exe ${repro:-}"
    if [[ -n $repro && -f $repro ]]; then
      echo "  input ($(stat -c %s "$repro") bytes, first 256 as hex):"
      od -A x -t x1z -v -N 256 "$repro" | sed 's/^/    /'
    fi
    echo "  report:"
    # The first lines of the report, then only the stack frames in anvil and the target (the
    # whole report is in the log).
    awk '/==[0-9]+==|runtime error|Assertion .* failed|terminate called|invariant failed|ALARM|out-of-memory/ {p=1}
         p && !/^ *#[0-9]+ / && n < 8 {print "    " $0; n++}
         p && /^ *#[0-9]+ / && /anvil|\/lib\/|tests\/fuzz|LLVMFuzzerTestOneInput/ && f < 12 {print "    " substr($0, 1, 240); f++}
         /^SUMMARY/ {exit}' "$log"
    cp "$log" "$artifacts/$t-$(basename "$log")"
    echo "  full log:   $artifacts/$t-$(basename "$log")"
    ((keep_going)) || break
  done
  secs=$((SECONDS - t_start))
  rate=$((secs > 0 ? execs / secs : execs))
  size=$(ls "$corpus" | wc -l)
  findings_total=$((findings_total + findings))
  printf 'fuzz.sh: %-18s %4d s %10d execs %7d exec/s  corpus %4d  findings %d\n' "$t" "$secs" "$execs" "$rate" "$size" "$findings"
  table+=("$t $secs $execs $rate $size $findings ${kinds:--}")
done

if [[ -n ${ANVIL_FUZZ_TABLE:-} ]]; then printf '%s\n' "${table[@]}" >"$ANVIL_FUZZ_TABLE"; fi
if ((findings_total > 0)); then
  echo "fuzz.sh: $findings_total finding(s); reproducers in $artifacts" >&2
  ((keep_going)) || exit 1
fi
exit 0
