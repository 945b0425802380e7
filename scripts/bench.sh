#!/usr/bin/env bash
# make bench: every benchmark in benches/, one after the other, each on its own cluster and
# printing its own table against the baseline it names. Set-up included; timings never fail it,
# only a wrong result does.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
setup
status=0
for bench in "$REPO"/benches/*.sh; do
    log "benchmark $(basename "$bench" .sh)"
    bash "$bench" || status=1
done
exit $status
