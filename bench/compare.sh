#!/usr/bin/env bash
# One measurement block, as docs/BENCHMARKS.md "Comparing in one session" describes: the
# machine's ceilings, `chute bench` before and after (alternating per workload, W1-W6), the
# memory figure, then the peer harness for chute (the after build) and the peers back to back,
# chute in the harness again, `chute bench` after again, the core benchmark, the ceilings again.
#
# Every ratio against a peer comes from the peer harness for both sides (its `chute-*` configs
# against its peers' configs, in this one block); `chute bench` figures are chute's own tool,
# for before/after and for the W5 fairness and W6 disk fraction, never divided by a peer's.
#
# Usage: bench/compare.sh BEFORE_BIN_DIR AFTER_BIN_DIR [RESULTS_DIR]
#   *_BIN_DIR hold `chuted` and `chute` of each build (e.g. another worktree's
#   target/release); for the core benchmark, also `core_cycle` (copy it from
#   target/release/deps/core_cycle-* after `cargo bench -p chute-core --no-run`), if present.
#   A build whose `chute bench` has no W5/W6 runs W1-W4 only.
# Needs the peer harness (built, brokers installed; PEERBENCH names it, default
# ../shared/peerbench) and ../shared/limits (built). The harness's chute driver runs the
# after build's chuted, but its client is the chute-client it was built with (a path
# dependency, see its Cargo.toml): build it against the after checkout's client when the
# client changed (results/peerbench-client.txt records which). Compiles nothing while it
# measures. With W1-W6, chute in the harness twice and every peer, the block took 20 minutes
# on the project's 2-vCPU machine (2026-12-07). Results go to RESULTS_DIR as JSON lines.
set -uo pipefail
cd "$(dirname "$0")/.."
before=$(realpath "$1"); after=$(realpath "$2")
results=$(realpath -m "${3:-/var/tmp/chute-compare-$(date +%Y%m%d-%H%M%S)}")
shared=$(realpath ../shared)
peerbench=$(realpath "${PEERBENCH:-$shared/peerbench}")
mkdir -p "$results"
log() { echo "[$(date +%T)] $*" >&2; }
stop_brokers() {
    [[ -n "${pid:-}" ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    pid=
}
trap stop_brokers EXIT

ceilings() { # suffix
    log "fsync probe, limits"
    (cd "$peerbench" && OUT="$results/fsync$1.jsonl" ./run.sh fsync > /dev/null 2>&1)
    "$shared/limits/target/release/limits" --messages 2000000 > "$results/limits-memory$1.json"
    local dir; dir=$(mktemp -d /var/tmp/chute-limits.XXXXXX)
    "$shared/limits/target/release/limits" --durable --messages 1000000 --dir "$dir" \
        > "$results/limits-durable$1.json"
    rm -rf "$dir"
}

# Whether the build in $1 has `chute bench --workload W5|W6`.
has_w5_w6() { "$1/chute" bench --help 2>/dev/null | grep -q 'W5|W6'; }

chute_pass() { # label bin_dir...
    local label=$1; shift
    for workload in W1 W2 W3 W4 W5 W6; do
        for bin in "$@"; do
            local side; side=$([[ $bin == "$before" ]] && echo before || echo after)
            if [[ $workload == W[56] ]] && ! has_w5_w6 "$bin"; then continue; fi
            local data; data=$(mktemp -d /var/tmp/chute-compare.XXXXXX)
            "$bin/chuted" --data-dir "$data" --listen 127.0.0.1:4770 \
                --admin-listen 127.0.0.1:4771 > /dev/null 2>&1 &
            pid=$!
            for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/4770) 2>/dev/null && break; sleep 0.1; done
            # W6 reads its MB/s against the disk's sequential write rate, measured in the
            # broker's data directory just before each run.
            local disk=(); [[ $workload == W6 ]] && disk=(--disk-dir "$data")
            log "chute bench $label $side $workload"
            "$bin/chute" bench --workload "$workload" --reps 3 --json "${disk[@]}" 2> /dev/null \
                > "$results/chute-$label-$side-$workload.jsonl"
            stop_brokers
            rm -rf "$data"
        done
    done
}

# chute in the peer harness: its W1-W6 and the `none` and `interval` variants, the after build.
harness_chute() { # label
    log "peer harness: chute $1"
    (cd "$peerbench" && OUT="$results/peerbench-chute-$1.jsonl" CHUTED="$after/chuted" REPS=3 \
        ./run.sh chute > /dev/null 2>&1) || log "peer harness: chute $1 failed"
}

ceilings ""
chute_pass 1 "$before" "$after"
log "memory"
CHUTED="$before/chuted" bench/queued-memory.sh > "$results/memory-before.json"
CHUTED="$after/chuted" bench/queued-memory.sh > "$results/memory-after.json"
# Which chute-client the harness was built with: its path dependency, and that checkout's commit.
client=$(sed -n 's/^chute-client *= *{ *path *= *"\([^"]*\)".*/\1/p' "$peerbench/Cargo.toml")
client=$(cd "$peerbench" && realpath -m "${client:-unknown}")
echo "peer harness $peerbench; chute-client from $client at" \
    "$(git -C "$client" describe --always --dirty 2>/dev/null || echo unknown)" \
    > "$results/peerbench-client.txt"
# chute in the harness on both sides of the peers, so that a drift of the host shows.
harness_chute 1
for peer in redis nats rabbitmq; do
    log "$peer"
    (cd "$peerbench" && OUT="$results/$peer.jsonl" REPS=3 ./run.sh "$peer" > /dev/null 2>&1)
done
harness_chute 2
chute_pass 2 "$after"
for side in before after; do
    bin=$([[ $side == before ]] && echo "$before" || echo "$after")
    if [[ -x "$bin/core_cycle" ]]; then
        log "core benchmark $side"
        "$bin/core_cycle" --bench > "$results/core-$side.txt" 2>&1
    fi
done
ceilings 2
log "done: $results (tables: $peerbench/target/release/peerbench report $results/peerbench-chute-1.jsonl $results/redis.jsonl $results/nats.jsonl $results/rabbitmq.jsonl $results/peerbench-chute-2.jsonl)"
