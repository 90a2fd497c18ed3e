#!/usr/bin/env bash
# The resilience tier's long form (`make test-chaos`): Ferry installed on the real single-node
# cluster (brought up if needed), then tests/e2e/chaos.rs with FERRY_CHAOS_FAULTS faults
# (default 20): the leader's pod deleted with and without grace, webhook storms of 1,000 signed
# pushes, the API server restarted, the registry frozen while a commit builds and the git server
# frozen for a minute, each at a random moment of the pipeline; then the invariants. `make test`
# runs the short form (5 faults) as one of its end-to-end steps.
#
#   e2e/chaos.sh                          # 20 faults
#   FERRY_CHAOS_FAULTS=40 e2e/chaos.sh    # more
#   FERRY_CHAOS_SEED=N e2e/chaos.sh       # the moments of an earlier run (its log prints N)
# Leaves the cluster up; `make cluster-down` removes it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
source "$here/cluster/lib.sh"
source "$here/lib/ferry.sh"

"$here/cluster/up.sh"
image=$(ferry_image)
install_ferry "$image"
FERRY_CHAOS_FAULTS=${FERRY_CHAOS_FAULTS:-20} e2e_scenarios chaos
