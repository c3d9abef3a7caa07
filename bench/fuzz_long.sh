#!/usr/bin/env bash
# The long fuzzing run (issue #11): every target of tests/fuzz for SECONDS_PER_TARGET on a copy of
# its seed corpus, restarted after each finding until its time is used, then a table of execs and
# findings per target. Reproducers and logs: build-fuzz/artifacts/. Exits 1 if anything was found.
#   bench/fuzz_long.sh [SECONDS_PER_TARGET]     (default 600; about 80 minutes for all targets)
# ANVIL_FUZZ_TARGETS="gguf tokenizer" limits it to some targets (see scripts/fuzz.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
per=${1:-600}
table=$(mktemp)
trap 'rm -f "$table"' EXIT
rc=0
ANVIL_FUZZ_PER_TARGET=$per ANVIL_FUZZ_KEEP_GOING=1 ANVIL_FUZZ_TABLE=$table bash scripts/fuzz.sh || rc=$?
((rc == 0)) || exit "$rc"
echo
printf '| %-18s | %7s | %12s | %8s | %7s | %8s | %s\n' target seconds execs exec/s corpus findings kinds
printf '|%s|%s|%s|%s|%s|%s|%s\n' -------------------- --------- -------------- ---------- --------- ---------- ------
found=0
while read -r t secs execs rate size findings kinds; do
  printf '| %-18s | %7s | %12s | %8s | %7s | %8s | %s\n' "$t" "$secs" "$execs" "$rate" "$size" "$findings" "$kinds"
  found=$((found + findings))
done <"$table"
((found == 0))
