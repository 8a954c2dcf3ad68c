#!/usr/bin/env python3
"""Slow senders against a running chuted: resident memory stays under the partial-frame
budget, and a well-behaved client keeps its latency.

Each attacking connection sends the preface and Hello, then the header of a Publish frame
announcing FRAME bytes and all but a little of its body, then one byte every few seconds:
without a frame timeout and a budget, each would pin a frame's worth of memory for as long as
it liked (400 such connections held 1.56 GB before the fix).

    bench/slow-frames.py --addr 127.0.0.1:4770 --pid $(pidof chuted) --chute target/release/chute

Prints the server's resident memory before, at its peak during the attack and after, and the
`chute bench --workload W3` latency of a good client without and with the attack running.
This is a benchmark script, not a test: nothing here asserts a number.
"""

import argparse
import socket
import struct
import subprocess
import threading
import time

from chute_wire import KIND_PUBLISH, PREFACE, hello_frame


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def attacker(addr, frame_bytes, sent_bytes, interval_s, stop, sockets):
    host, port = addr.rsplit(":", 1)
    try:
        sock = socket.create_connection((host, int(port)), timeout=10)
        sock.sendall(PREFACE + hello_frame("slow-frames"))
        sock.sendall(struct.pack(">IBB", frame_bytes, KIND_PUBLISH, 0))
        chunk = b"\0" * 65536
        left = sent_bytes
        while left > 0 and not stop.is_set():
            n = min(left, len(chunk))
            sock.sendall(chunk[:n])
            left -= n
        sockets.append(sock)
        while not stop.wait(interval_s):
            sock.send(b"\0")
    except OSError:
        pass  # closed by the server (slow-frame), or refused: both are the point


def w3(chute, url):
    result = subprocess.run(
        [chute, "--url", url, "bench", "--workload", "W3", "--messages", "3000", "--rate", "1000"],
        capture_output=True,
        text=True,
    )
    lines = [l for l in result.stdout.splitlines() if "p50" in l or "p99" in l or "latency" in l]
    return "\n    ".join(lines) or result.stdout.strip() or result.stderr.strip()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--addr", default="127.0.0.1:4770")
    parser.add_argument("--pid", type=int, required=True, help="the chuted process")
    parser.add_argument("--chute", default="target/release/chute")
    parser.add_argument("--connections", type=int, default=400)
    parser.add_argument("--frame-bytes", type=int, default=4_000_000)
    parser.add_argument("--sent-bytes", type=int, default=3_999_000)
    parser.add_argument("--dribble-s", type=float, default=3.0)
    parser.add_argument("--hold-s", type=float, default=20.0, help="how long the attack lasts")
    args = parser.parse_args()
    url = "chute://" + args.addr

    print(f"rss before: {rss_bytes(args.pid) / 2**20:.1f} MiB")
    print(f"W3 without attack:\n    {w3(args.chute, url)}")

    stop, sockets, threads = threading.Event(), [], []
    for _ in range(args.connections):
        thread = threading.Thread(
            target=attacker,
            args=(args.addr, args.frame_bytes, args.sent_bytes, args.dribble_s, stop, sockets),
            daemon=True,
        )
        thread.start()
        threads.append(thread)

    peak, deadline = 0, time.time() + args.hold_s
    latency = None
    while time.time() < deadline:
        peak = max(peak, rss_bytes(args.pid))
        if latency is None and time.time() > deadline - args.hold_s / 2:
            latency = w3(args.chute, url)
        time.sleep(0.5)
    stop.set()
    for sock in sockets:
        sock.close()
    print(f"attackers: {args.connections} x {args.sent_bytes} bytes of a {args.frame_bytes}-byte frame")
    print(f"rss peak during attack: {peak / 2**20:.1f} MiB")
    print(f"W3 during attack:\n    {latency}")
    time.sleep(2)
    print(f"rss after: {rss_bytes(args.pid) / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
