#!/usr/bin/env bash
# Connection-churn soak (issue 12): one release chuted, WAVES waves of PER_WAVE connections
# opened and closed against it (bench/soak_churn.py: a tenth publish and consume through the
# `chute` CLI, four tenths dropped mid-handshake, half left idle until the server's heartbeat
# timeout closes them), sampling resident memory (VmRSS), open fds and threads before, during
# and after. After the churn and SETTLE_S seconds of quiet, fds and threads must be back to the
# baseline and RSS within 10 % of it: prints a table and exits 1 if not.
#
# Two baselines. The cold one is taken before any churn; the warm one after a first wave of the
# same shape (not counted among WAVES) has come and gone. The first burst costs the server
# memory once that it keeps in use or cannot hand back, however many bursts follow (the log
# channel's ring of 8,192 lines, 256 KiB, resident once that many lines have passed; the
# broker's output queue at its largest; heap pages the trim cannot free because a live
# allocation sits in them): about 1 MB, about 10 % of so small a process (docs/BENCHMARKS.md).
# A leak grows with the waves, so the verdict compares against the warm baseline; the cold
# ratio is printed beside it.
#
# Usage: bench/soak.sh   (WAVES=10 PER_WAVE=1000 SETTLE_S=20 by default)
# CHUTED=path soaks another build of the server; the server inherits the environment, so
# MALLOC_ARENA_MAX=2 bench/soak.sh tries a glibc tunable; EXTRA_CONFIG='[server]...' (TOML
# lines) is added to the configuration file.
# Not a CI test: it takes a few minutes and its figures depend on the machine.
set -euo pipefail
cd "$(dirname "$0")/.."
waves=${WAVES:-10}
per_wave=${PER_WAVE:-1000}
settle_s=${SETTLE_S:-20}
target=${CARGO_TARGET_DIR:-target}
# Half of each wave is open at once, plus the CLI's sockets and the server's own files.
ulimit -n "$(ulimit -Hn)"
cargo build --release --quiet --bin chuted --bin chute
chuted=${CHUTED:-$target/release/chuted}
chute=$target/release/chute
dir=$(mktemp -d /tmp/chute-soak.XXXXXX)
pid=
sampler=
trap '[ -n "$sampler" ] && kill "$sampler" 2>/dev/null; [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$dir"' EXIT

# Short timeouts, so idle and half-open connections go in seconds, not minutes: three silent
# heartbeat intervals close an idle connection, handshake_timeout_ms one that never says Hello.
cat > "$dir/chute.toml" <<TOML
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
data_dir = "$dir/data"
[timeouts]
heartbeat_ms = 1000
handshake_timeout_ms = 1000
${EXTRA_CONFIG:-}
TOML
"$chuted" --config "$dir/chute.toml" > "$dir/out" 2> "$dir/log" &
pid=$!
until grep -q " admin on " "$dir/out" 2>/dev/null; do
    kill -0 "$pid" || { cat "$dir/log"; exit 1; }
    sleep 0.1
done
addr=$(grep " listening on " "$dir/out" | awk '{print $NF}')
admin=$(grep " admin on " "$dir/out" | awk '{print $NF}')
url="chute://$addr"

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$pid/status"; }
threads() { awk '/^Threads:/ {print $2}' "/proc/$pid/status"; }
fds() { ls "/proc/$pid/fd" | wc -l; }
connections() { curl -s "http://$admin/metrics" | awk '$1 == "chute_connections" {print $2}'; }
row() { printf '%-22s %10s %6s %8s %12s\n' "$1" "$2" "$3" "$4" "$5"; }
sample() { row "$1" "$(rss_kib)" "$(fds)" "$(threads)" "$(connections)"; }

# The baseline is taken after one publish and consume, so what the first client sets up for
# good (the queue, the log's first segment, buffers kept for reuse) is not counted as churn.
"$chute" --url "$url" queue declare soak > /dev/null
"$chute" --url "$url" publish soak --count 5 --size 256 --quiet > /dev/null 2>&1
"$chute" --url "$url" consume soak --count 5 > /dev/null
sleep 2
row phase rss_kib fds threads connections
sample "baseline (cold)" | tee "$dir/cold"

# Peaks during the churn, sampled every 200 ms.
(
    while kill -0 "$pid" 2>/dev/null; do
        echo "$(rss_kib) $(fds) $(threads)"
        sleep 0.2
    done > "$dir/samples"
) &
sampler=$!

churn() {
    python3 bench/soak_churn.py --addr "$addr" --chute "$chute" --connections "$per_wave" \
        > "$dir/wave" || { cat "$dir/wave"; echo "wave $1 failed" >&2; exit 1; }
}
settle() {
    for _ in $(seq 1 600); do [ "$(connections)" = 0 ] && break; sleep 0.1; done
    sleep "$settle_s"
}

churn warm-up
sample "after warm-up wave"
settle
sample "baseline (warm)" | tee "$dir/baseline"

start_s=$(date +%s)
for wave in $(seq 1 "$waves"); do
    churn "$wave"
    sample "after wave $wave"
done
churn_s=$(( $(date +%s) - start_s ))
kill "$sampler"; sampler=
peak() { sort -n -k"$1" "$dir/samples" | tail -1 | awk -v k="$1" '{print $k}'; }
row "peak during churn" "$(peak 1)" "$(peak 2)" "$(peak 3)" "-"

# Settled: every connection gone, then SETTLE_S seconds of quiet.
settle
sample "settled (+${settle_s} s)" | tee "$dir/after"

read -r _ _ cold_rss cold_fds cold_threads _ < "$dir/cold"
read -r _ _ base_rss base_fds base_threads _ < "$dir/baseline"
read -r _ _ _ after_rss after_fds after_threads _ < "$dir/after"
echo "churn: $waves waves of $per_wave connections in ${churn_s} s; $(cat "$dir/wave")"
verdict=0
[ "$after_fds" -le "$cold_fds" ] || { echo "FAIL: fds $cold_fds -> $after_fds"; verdict=1; }
[ "$after_threads" -le "$cold_threads" ] || { echo "FAIL: threads $cold_threads -> $after_threads"; verdict=1; }
echo "RSS after / cold baseline: $(echo "scale=3; $after_rss / $cold_rss" | bc) (the first burst's one-time cost included)"
rss_ratio=$(echo "scale=3; $after_rss / $base_rss" | bc)
if [ "$(echo "$after_rss * 100 <= $base_rss * 110" | bc)" = 1 ]; then
    echo "RSS after / warm baseline: $rss_ratio (within 10 %)"
else
    echo "FAIL: RSS after / warm baseline: $rss_ratio (more than 10 % above)"; verdict=1
fi
exit "$verdict"
