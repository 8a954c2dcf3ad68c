#!/usr/bin/env bash
# Resident memory of chuted holding N queued messages of SIZE bytes (issue: at most 1.5x the
# payload bytes), live after publishing and again after a restart (recovery from the log), with
# the restarted process's peak (VmHWM: recovery's high-water mark).
# Usage: bench/queued-memory.sh [N (1000000)] [SIZE (256)]. Prints one JSON line.
# CHUTED=path measures another build of the broker (e.g. an older commit's) the same way.
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-1000000}
size=${2:-256}
cargo build --release --quiet --bin chuted --bin chute
chuted=${CHUTED:-./target/release/chuted}
dir=$(mktemp -d /var/tmp/chute-memory.XXXXXX)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT

start() {
    "$chuted" --data-dir "$dir/data" --listen 127.0.0.1:0 --admin-listen off \
        > "$dir/out" 2> "$dir/log" &
    pid=$!
    until grep -q " on " "$dir/out" 2>/dev/null; do sleep 0.1; done
    url="chute://$(head -1 "$dir/out" | awk '{print $NF}')"
}
rss_bytes() { echo $(( $(awk '/VmRSS/ {print $2}' "/proc/$pid/status") * 1024 )); }
# The process's peak resident memory so far: after a restart, recovery's peak.
peak_bytes() { echo $(( $(awk '/VmHWM/ {print $2}' "/proc/$pid/status") * 1024 )); }

start
./target/release/chute --url "$url" queue declare mem > /dev/null
./target/release/chute --url "$url" publish mem --count "$count" --size "$size" > /dev/null
live=$(rss_bytes)
kill "$pid"; wait "$pid" || true
: > "$dir/out"
start
recovered=$(rss_bytes)
peak=$(peak_bytes)
# The server's own measure of recovery ("recovered ... elapsed_ms=N"); -1 if it logged none.
recovery_ms=$(grep -o 'elapsed_ms=[0-9]*' "$dir/log" | tail -1 | cut -d= -f2 || true)
payload=$(( count * size ))
printf '{"messages":%d,"size":%d,"payload_bytes":%d,"rss_live_bytes":%d,"rss_recovered_bytes":%d,"rss_recovery_peak_bytes":%d,"live_ratio":%.3f,"recovered_ratio":%.3f,"recovery_peak_ratio":%.3f,"recovery_ms":%d}\n' \
    "$count" "$size" "$payload" "$live" "$recovered" "$peak" \
    "$(echo "$live / $payload" | bc -l)" "$(echo "$recovered / $payload" | bc -l)" \
    "$(echo "$peak / $payload" | bc -l)" "${recovery_ms:--1}"
