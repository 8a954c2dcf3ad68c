#!/usr/bin/env bash
# One measurement block, as docs/BENCHMARKS.md "Comparing in one session" describes: the
# machine's ceilings, chute before and after (alternating per workload), the memory figure,
# the peers, chute after again, the core benchmark, the ceilings again.
#
# Usage: bench/compare.sh BEFORE_BIN_DIR AFTER_BIN_DIR [RESULTS_DIR]
#   *_BIN_DIR hold `chuted` and `chute` of each build (e.g. another worktree's
#   target/release); for the core benchmark, also `core_cycle` (copy it from
#   target/release/deps/core_cycle-* after `cargo bench -p chute-core --no-run`), if present.
# Needs ../shared/peerbench (built, brokers installed) and ../shared/limits (built). Compiles
# nothing while it measures. Takes about 20 minutes; results go to RESULTS_DIR as JSON lines.
set -uo pipefail
cd "$(dirname "$0")/.."
before=$(realpath "$1"); after=$(realpath "$2")
results=$(realpath -m "${3:-/var/tmp/chute-compare-$(date +%Y%m%d-%H%M%S)}")
shared=$(realpath ../shared)
mkdir -p "$results"
log() { echo "[$(date +%T)] $*" >&2; }
stop_brokers() {
    [[ -n "${pid:-}" ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    pid=
}
trap stop_brokers EXIT

ceilings() { # suffix
    log "fsync probe, limits"
    (cd "$shared/peerbench" && OUT="$results/fsync$1.jsonl" ./run.sh fsync > /dev/null 2>&1)
    "$shared/limits/target/release/limits" --messages 2000000 > "$results/limits-memory$1.json"
    local dir; dir=$(mktemp -d /var/tmp/chute-limits.XXXXXX)
    "$shared/limits/target/release/limits" --durable --messages 1000000 --dir "$dir" \
        > "$results/limits-durable$1.json"
    rm -rf "$dir"
}

chute_pass() { # label bin_dir...
    local label=$1; shift
    for workload in W1 W2 W3 W4; do
        for bin in "$@"; do
            local side; side=$([[ $bin == "$before" ]] && echo before || echo after)
            local data; data=$(mktemp -d /var/tmp/chute-compare.XXXXXX)
            "$bin/chuted" --data-dir "$data" --listen 127.0.0.1:4770 \
                --admin-listen 127.0.0.1:4771 > /dev/null 2>&1 &
            pid=$!
            for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/4770) 2>/dev/null && break; sleep 0.1; done
            log "chute $label $side $workload"
            "$bin/chute" bench --workload "$workload" --reps 3 --json 2> /dev/null \
                > "$results/chute-$label-$side-$workload.jsonl"
            stop_brokers
            rm -rf "$data"
        done
    done
}

ceilings ""
chute_pass 1 "$before" "$after"
log "memory"
CHUTED="$before/chuted" bench/queued-memory.sh > "$results/memory-before.json"
CHUTED="$after/chuted" bench/queued-memory.sh > "$results/memory-after.json"
for peer in redis nats rabbitmq; do
    log "$peer"
    (cd "$shared/peerbench" && OUT="$results/$peer.jsonl" REPS=3 ./run.sh "$peer" > /dev/null 2>&1)
done
chute_pass 2 "$after"
for side in before after; do
    bin=$([[ $side == before ]] && echo "$before" || echo "$after")
    if [[ -x "$bin/core_cycle" ]]; then
        log "core benchmark $side"
        "$bin/core_cycle" --bench > "$results/core-$side.txt" 2>&1
    fi
done
ceilings 2
log "done: $results (peers: $shared/peerbench/target/release/peerbench report FILE)"
