#!/usr/bin/env bash
# Issue 16's targets for backlogs larger than RAM, measured in one run of one chuted:
#  1. resident memory per cold queued message: N messages of SIZE bytes published to queue
#     `cold` with no consumer, in 10 slices, VmRSS sampled at 0 and after each slice; the slope
#     is a least-squares fit over the samples after the first slice that find the payload
#     cache full (it fills first);
#  2. recovery after SIGKILL: exec to the `listening` line, the server's own `elapsed_ms`,
#     the restarted process's peak (VmHWM) and its VmRSS once recovered;
#  3. cold drain against warm consume: M messages consumed from a queue `warm` just published
#     (payloads in memory), then, with the data files dropped from the page cache, M messages
#     of `cold` whose payloads are on disk (one consumer each, `chute consume --quiet`; `cold`
#     is first consumed, untimed, until no payload of it is left in memory);
#  4. isolation: a paced publisher (`chute bench`) to a third queue `other`, alone and then
#     while `cold` drains.
# Usage: bench/backlog.sh [N (20000000)] [SIZE (256)]. One JSON line on stdout, progress on
# stderr. The data directory is under /var/tmp (N x SIZE plus ~8% on disk) and is deleted on
# exit. CHUTED=path measures another build of the broker; DRAIN=M (default min(N/10,
# 1000000)), OTHER_RATE (msgs/s, default 20000) and OTHER_SECONDS (default 5) change phases 3
# and 4; CHUTE_STORAGE_PAYLOAD_CACHE_BYTES the broker's payload cache (default 256 MiB).
# docs/BENCHMARKS.md, "Backlogs larger than RAM", says what each figure means.
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-20000000}
size=${2:-256}
# Payload bytes the cache may still hold once `cold` is skipped to its part on disk: the
# broker's two reads in flight per queue, 1 MiB each (READ_SPAN_BYTES_MAX), twice over.
HELD_AFTER_SKIP_BYTES_MAX=4194304
drain=${DRAIN:-$(( count / 10 < 1000000 ? count / 10 : 1000000 ))}
other_rate=${OTHER_RATE:-20000}
other_seconds=${OTHER_SECONDS:-5}
(( count >= 10 && drain >= 1 )) || { echo "backlog: N must be at least 10" >&2; exit 2; }

# A queue holds at most limits.queue_messages_max messages (10,000,000 by default).
export CHUTE_LIMITS_QUEUE_MESSAGES_MAX=${CHUTE_LIMITS_QUEUE_MESSAGES_MAX:-$(( count > 10000000 ? count : 10000000 ))}

target=${CARGO_TARGET_DIR:-target}
cargo build --release --quiet --bin chuted --bin chute
chuted=${CHUTED:-$target/release/chuted}
chute=$target/release/chute
dir=$(mktemp -d /var/tmp/chute-backlog.XXXXXX)
pid=
drainer=
cleanup() {
    for p in $drainer $pid; do
        { kill -9 "$p" && wait "$p"; } 2> /dev/null || true
    done
    rm -rf "$dir"
}
trap cleanup EXIT

say() { printf '%s backlog: %s\n' "$(date +%T)" "$*" >&2; }
fail() { say "FAILED: $*"; [ -s "$dir/log" ] && tail -5 "$dir/log" >&2; exit 1; }
now_ns() { date +%s%N; }
ms_since() { echo $(( ($(now_ns) - $1) / 1000000 )); }
ratio() { echo "scale=6; $1 / $2" | bc -l | sed 's/^\./0./'; }

# Starts chuted; sets pid, url, admin and started_ms (exec to the `listening` line).
start() {
    : > "$dir/out"
    local t0
    t0=$(now_ns)
    "$chuted" --data-dir "$dir/data" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
        > "$dir/out" 2> "$dir/log" &
    pid=$!
    until grep -q "listening on " "$dir/out" 2>/dev/null; do
        kill -0 "$pid" 2>/dev/null || fail "chuted exited before listening"
        sleep 0.01
    done
    started_ms=$(ms_since "$t0")
    until grep -q "admin on " "$dir/out" 2>/dev/null; do
        kill -0 "$pid" 2>/dev/null || fail "chuted exited before its admin endpoint listened"
        sleep 0.01
    done
    url="chute://$(awk '/listening on / {print $NF}' "$dir/out")"
    admin="http://$(awk '/admin on / {print $NF}' "$dir/out")"
}
status_bytes() { echo $(( $(awk -v k="$1:" '$1 == k {print $2}' "/proc/$pid/status") * 1024 )); }
metric() {
    local value
    value=$(curl -sf "$admin/metrics" | awk -v m="$1" '$1 == m {print $2}') \
        || fail "cannot read $1 from $admin/metrics"
    [ -n "$value" ] || fail "$admin/metrics has no $1"
    printf '%.0f\n' "$value"
}
# The CLI; what it says on stderr is shown only if it fails.
cli() {
    "$chute" --url "$url" "$@" 2> "$dir/cli.err" || { cat "$dir/cli.err" >&2; return 1; }
}
ready() { cli queue stats "$1" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["ready"])'; }
# Consumes $2 messages of queue $1 with one consumer, printing nothing; echoes msgs/s.
timed_consume() {
    local t0 elapsed
    t0=$(now_ns)
    cli consume "$1" --count "$2" --prefetch 1000 --quiet || fail "consume $1 --count $2"
    elapsed=$(( $(now_ns) - t0 ))
    echo $(( $2 * 1000000000 / elapsed ))
}
# Bytes of the data files in the page cache (-1 without fincore).
page_cache_bytes() {
    if command -v fincore > /dev/null; then
        find "$dir/data" -type f -exec fincore --bytes --noheadings --output RES {} + \
            | awk '{s += $1} END {print s + 0}'
    else
        echo -1
    fi
}
# Drops every data file from the page cache (no root needed: fadvise on each file), and echoes
# what is still cached.
drop_page_cache() {
    python3 - "$dir/data" <<'EOF'
import os, sys
for root, _, files in os.walk(sys.argv[1]):
    for name in files:
        fd = os.open(os.path.join(root, name), os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
EOF
    page_cache_bytes
}
# A paced publisher and its consumer on queue `other` (`chute bench`); echoes the JSON fields
# msgs_per_s, publish_confirm_p99_us, e2e_p99_us and max_send_lag_us, space-separated.
other_publisher() {
    "$chute" --url "$url" bench --queue other --producers 1 --consumers 1 --durable --size "$size" \
        --rate "$other_rate" --messages $(( other_rate * other_seconds )) --json \
        --admin-url off > "$dir/bench.out" 2> "$dir/bench.err" \
        || { cat "$dir/bench.err" >&2; fail "chute bench on queue other"; }
    tail -1 "$dir/bench.out" | python3 -c 'import json, sys
r = json.load(sys.stdin)
print(*(json.dumps(r[k]) for k in ("msgs_per_s", "publish_confirm_p99_us", "e2e_p99_us", "max_send_lag_us")))'
}

load1=$(cut -d' ' -f1 /proc/loadavg)
say "N=$count SIZE=$size, data in $dir, chuted $chuted"

# 1. Resident memory per cold queued message.
start
cache_bytes=$(metric chute_payload_cache_limit_bytes)
cli queue declare cold > /dev/null
samples="[0,$(status_bytes VmRSS)]"
fit=""
published=0
publish_t0=$(now_ns)
for slice in 1 2 3 4 5 6 7 8 9 10; do
    n=$(( count * slice / 10 - published ))
    cli publish cold --count "$n" --size "$size" --quiet > /dev/null || fail "publish to cold"
    published=$(( published + n ))
    rss=$(status_bytes VmRSS)
    samples="$samples,[$published,$rss]"
    # The fit takes the samples after the first slice, once the payload cache is full.
    (( slice > 1 && published * size >= cache_bytes )) && fit="$fit $published $rss"
    say "published $published, VmRSS $(( rss / 1048576 )) MiB"
done
publish_s=$(ratio "$(( $(now_ns) - publish_t0 ))" 1000000000)
# Least squares over those samples: bytes of RSS per queued message.
(( $(wc -w <<< "$fit") >= 4 )) \
    || fail "fewer than two samples after the first find the payload cache ($cache_bytes B) full: raise N"
fit_from=$(awk '{print $1}' <<< "$fit")
slope=$(echo "$fit" | awk '{
    for (i = 1; i < NF; i += 2) { n++; x = $i; y = $(i + 1); sx += x; sy += y; sxx += x * x; sxy += x * y }
    printf "%.2f", (n * sxy - sx * sy) / (n * sxx - sx * sx) }')
disk_bytes=$(du -sb "$dir/data" | cut -f1)
say "RSS per cold message ${slope} B (payload cache $cache_bytes B); $disk_bytes B on disk"

# 2. Recovery after SIGKILL.
kill -9 "$pid"; wait "$pid" 2>/dev/null || true
start
recovery_listening_ms=$started_ms
recovery_ms=$(grep -o 'elapsed_ms=[0-9]*' "$dir/log" | tail -1 | cut -d= -f2 || true)
recovery_peak=$(status_bytes VmHWM)
recovered_rss=$(status_bytes VmRSS)
[ "$(ready cold)" = "$count" ] || fail "cold holds $(ready cold) messages after recovery, not $count"
say "recovered in $recovery_listening_ms ms (server: ${recovery_ms:-?} ms), peak $(( recovery_peak / 1048576 )) MiB"

# 3. Warm consume, then the cold drain. Recovery put payloads of `cold` back in the payload
# cache, as many as it holds, the first it met in the log; compaction may have copied the
# queue's first messages to the log's end, so those are not always the first ones delivered.
# `cold` is consumed (untimed) until the cache holds no more than two reads' worth of payloads
# (those read back ahead of the consumer that stopped), so that the cold drain reads payloads
# that are on disk, and `warm` has the cache to itself.
skipped=0
skip_chunk=$(( count / 50 ))
while (( $(metric chute_payload_cache_held_bytes) > HELD_AFTER_SKIP_BYTES_MAX )); do
    (( count - skipped - skip_chunk >= 2 * drain )) \
        || fail "N too small: cold still has payloads in memory after $skipped messages"
    cli consume cold --count "$skip_chunk" --prefetch 1000 --quiet || fail "consume cold"
    skipped=$(( skipped + skip_chunk ))
done
say "consumed $skipped messages of cold until its payloads left the cache"
cli queue declare warm > /dev/null
cli publish warm --count "$drain" --size "$size" --quiet > /dev/null || fail "publish to warm"
reads0=$(metric chute_payload_reads_total)
warm_rate=$(timed_consume warm "$drain")
warm_reads=$(( $(metric chute_payload_reads_total) - reads0 ))
say "warm: $drain messages at $warm_rate msg/s ($warm_reads reads)"

cached_after_drop=$(drop_page_cache)
reads0=$(metric chute_payload_reads_total)
read_bytes0=$(metric chute_payload_read_bytes_total)
cold_rate=$(timed_consume cold "$drain")
cold_reads=$(( $(metric chute_payload_reads_total) - reads0 ))
cold_read_bytes=$(( $(metric chute_payload_read_bytes_total) - read_bytes0 ))
cached_after_cold=$(page_cache_bytes)
(( cold_reads > 0 )) || fail "the cold drain read nothing back: its payloads were in memory"
say "cold: $drain messages at $cold_rate msg/s ($cold_reads reads, $cold_read_bytes B;" \
    "page cache after the drop: $cached_after_drop B, after the drain: $cached_after_cold B)"

# 4. Isolation: the publisher alone, then while the rest of `cold` drains (page cache dropped
# again). The drain stops by itself after the publisher's run and a margin.
figures=$(other_publisher)
read -r alone_rate alone_confirm_p99 alone_e2e_p99 alone_lag <<< "$figures"
say "other alone: $alone_rate msg/s, confirm p99 $alone_confirm_p99 us, e2e p99 $alone_e2e_p99 us"
drop_page_cache > /dev/null
before=$(ready cold)
drain_t0=$(now_ns)
# The consumer stops at its --wait-ms, or sooner if `cold` runs dry; the subshell notes when.
( rc=0
  "$chute" --url "$url" consume cold --count "$before" --prefetch 1000 --quiet \
      --wait-ms $(( other_seconds * 1000 + 6000 )) 2> "$dir/drain.err" || rc=$?
  echo "$rc $(now_ns)" > "$dir/drained" ) &
drainer=$!
sleep 1
figures=$(other_publisher)
read -r during_rate during_confirm_p99 during_e2e_p99 during_lag <<< "$figures"
[ -e "$dir/drained" ] && drain_covered=false || drain_covered=true
wait "$drainer"
drainer=
read -r drain_rc drain_t1 < "$dir/drained"
(( drain_rc == 0 )) || { cat "$dir/drain.err" >&2; fail "the drain during the isolation run"; }
during_drain_rate=$(( (before - $(ready cold)) * 1000000000 / (drain_t1 - drain_t0) ))
say "other during the drain: $during_rate msg/s, confirm p99 $during_confirm_p99 us," \
    "e2e p99 $during_e2e_p99 us; the drain meanwhile $during_drain_rate msg/s" \
    "(still draining when the publisher ended: $drain_covered)"

printf '{"messages":%d,"size":%d,"payload_cache_bytes":%d,"disk_bytes":%d,"load1":%s,' \
    "$count" "$size" "$cache_bytes" "$disk_bytes" "$load1"
printf '"publish_seconds":%s,"rss_samples":[%s],"rss_fit_from_messages":%d,"rss_per_message_bytes":%s,' \
    "$publish_s" "$samples" "$fit_from" "$slope"
printf '"recovery_listening_ms":%d,"recovery_ms":%d,"recovery_peak_rss_bytes":%d,"recovered_rss_bytes":%d,' \
    "$recovery_listening_ms" "${recovery_ms:--1}" "$recovery_peak" "$recovered_rss"
printf '"skipped_messages":%d,"drain_messages":%d,' "$skipped" "$drain"
printf '"warm_msgs_per_s":%d,"warm_reads":%d,"cold_msgs_per_s":%d,"cold_reads":%d,"cold_read_bytes":%d,' \
    "$warm_rate" "$warm_reads" "$cold_rate" "$cold_reads" "$cold_read_bytes"
printf '"page_cache_after_drop_bytes":%d,"page_cache_after_cold_drain_bytes":%d,"cold_over_warm":%s,' \
    "$cached_after_drop" "$cached_after_cold" "$(ratio "$cold_rate" "$warm_rate")"
printf '"other_rate":%s,"other_alone_msgs_per_s":%s,"other_alone_confirm_p99_us":%s,"other_alone_e2e_p99_us":%s,"other_alone_max_send_lag_us":%s,' \
    "$other_rate" "$alone_rate" "$alone_confirm_p99" "$alone_e2e_p99" "$alone_lag"
printf '"other_during_msgs_per_s":%s,"other_during_confirm_p99_us":%s,"other_during_e2e_p99_us":%s,"other_during_max_send_lag_us":%s,' \
    "$during_rate" "$during_confirm_p99" "$during_e2e_p99" "$during_lag"
printf '"other_during_over_alone":%s,"drain_during_other_msgs_per_s":%d,"drain_covered_other":%s}\n' \
    "$(ratio "$during_rate" "$alone_rate")" "$during_drain_rate" "$drain_covered"
