#!/usr/bin/env bash
# The second command of the README (and what CI runs): set up, build, run every test.
#   ANVIL_SHARED  fixtures directory (default: ../shared beside the repo)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export ANVIL_SHARED=${ANVIL_SHARED:-$(cd .. && pwd)/shared}
(cd "${ANVIL_BUILD_DIR:-build}" && ctest --output-on-failure -j"$(nproc)")
# Every fuzz target briefly (a minute in all), so that a reader regression fails the run;
# bench/fuzz_long.sh is the long run.
bash scripts/fuzz.sh 60
