#!/usr/bin/env python3
"""One wave of connection churn against a running chuted, for bench/soak.sh.

A wave of N connections, opened at once and all gone by the end of the wave:
- WORKERS run the `chute` CLI: half publish --messages each to the queue, half consume as
  many (acking each), so the queue ends the wave as it began;
- DROPPED connect and close mid-handshake: half after part of the preface, half after the
  preface and part of Hello; half of each close with a reset (SO_LINGER 0) instead of a FIN;
- the rest IDLE: they complete Hello and then send nothing, and wait until the server closes
  them (three heartbeat intervals of silence); the wave fails if one is not closed in time.

Prints one JSON line: how many connections of each kind, and how many idle ones the server
closed.
"""

import argparse
import json
import selectors
import socket
import struct
import subprocess
import sys
import time

from chute_wire import PREFACE, hello_frame


def connect(host, port):
    sock = socket.create_connection((host, port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def drop_mid_handshake(host, port, index):
    sock = connect(host, port)
    partial = PREFACE[:4] if index % 2 == 0 else PREFACE + hello_frame("soak")[:5]
    sock.sendall(partial)
    if index % 4 >= 2:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def open_idle(host, port, count):
    selector = selectors.DefaultSelector()
    for _ in range(count):
        sock = connect(host, port)
        sock.sendall(PREFACE + hello_frame("soak"))
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
    return selector


def wait_closed_by_server(selector, deadline_s):
    """Reads (HelloOk, heartbeats) until the server closes each socket; returns how many it
    closed before the deadline. Those still open are closed by us and not counted."""
    closed = 0
    while selector.get_map() and time.monotonic() < deadline_s:
        for key, _ in selector.select(timeout=0.5):
            try:
                data = key.fileobj.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                data = b""
            if not data:
                selector.unregister(key.fileobj)
                key.fileobj.close()
                closed += 1
    for key in list(selector.get_map().values()):
        key.fileobj.close()
    return closed


def start_workers(chute, url, queue, count, messages):
    commands = []
    for index in range(count):
        if index % 2 == 0:
            args = ["publish", queue, "--count", str(messages), "--size", "256", "--quiet"]
        else:
            args = ["consume", queue, "--count", str(messages), "--wait-ms", "20000"]
        commands.append([chute, "--url", url] + args)
    return [subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for c in commands]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--addr", required=True, help="HOST:PORT of the client listener")
    parser.add_argument("--chute", required=True, help="the chute CLI")
    parser.add_argument("--queue", default="soak")
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=100)
    parser.add_argument("--dropped", type=int, default=400)
    parser.add_argument("--messages", type=int, default=5, help="per worker")
    parser.add_argument("--idle-timeout-s", type=float, default=30,
                        help="how long idle connections may wait to be closed by the server")
    args = parser.parse_args()
    host, port = args.addr.rsplit(":", 1)
    port = int(port)
    idle = args.connections - args.workers - args.dropped
    workers = start_workers(args.chute, f"chute://{args.addr}", args.queue, args.workers, args.messages)
    selector = open_idle(host, port, idle)
    for index in range(args.dropped):
        drop_mid_handshake(host, port, index)
    closed = wait_closed_by_server(selector, time.monotonic() + args.idle_timeout_s)
    failed = 0
    for worker in workers:
        _, err = worker.communicate(timeout=60)
        if worker.returncode != 0:
            failed += 1
            sys.stderr.write(err.decode(errors="replace"))
    print(json.dumps({"workers": args.workers, "workers_failed": failed, "dropped": args.dropped,
                      "idle": idle, "idle_closed_by_server": closed}))
    sys.exit(0 if failed == 0 and closed == idle else 1)


if __name__ == "__main__":
    main()
