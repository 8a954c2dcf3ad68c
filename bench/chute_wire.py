"""The little of chute's wire protocol (docs/PROTOCOL.md) the bench scripts speak by hand."""

import struct

PREFACE = b"\x89CHUTE\r\n"
KIND_HELLO = 0x01
KIND_PUBLISH = 0x20


def varint(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def hello_frame(client_name):
    """A version-1 Hello, anonymous, asking for the server's heartbeat interval (0)."""
    name = client_name.encode()
    # version_min, version_max, client_name, credentials Anonymous (variant 0), heartbeat 0
    body = varint(1) + varint(1) + varint(len(name)) + name + varint(0) + varint(0)
    return struct.pack(">IBB", len(body), KIND_HELLO, 0) + body
