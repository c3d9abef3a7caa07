# Sourced by every bench script: strict mode, the repository root as the working directory,
# the fixtures (ANVIL_SHARED, default ../shared) and the binary (ANVIL, default build/tools/anvil).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
shared=${ANVIL_SHARED:-$(cd .. && pwd)/shared}
anvil=${ANVIL:-$PWD/build/tools/anvil}
