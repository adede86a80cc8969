#!/usr/bin/env python3
"""Writes the seed corpus of tests/fuzz/fuzz_wsframe.c into
tests/fuzz/corpus/wsframe/ (run from anywhere; rewrites the files it knows).
Each seed is one control byte (low 3 bits: the message limit, high 5 bits:
how the input is split into reads, see fuzz_wsframe.c) followed by client
frames."""
import os
import struct

KEY = bytes([0x37, 0xFA, 0x21, 0x3D])
FIN = 0x80
CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

# Control byte: limit index | split << 3. Limits: 0, 1, 16, 125, 126, 1000, 65536, 1 MiB.
WHOLE, BYTES, RANDOM = 0, 1 << 3, 5 << 3
L1000, L64K, L1M, L16 = 5, 6, 7, 2


def frame(b0, payload=b"", masked=True, form=None, declared=None):
    n = len(payload) if declared is None else declared
    if form is None:
        form = 0 if n < 126 else 126 if n <= 0xFFFF else 127
    m = 0x80 if masked else 0
    if form == 0:
        head = bytes([b0, m | n])
    elif form == 126:
        head = bytes([b0, m | 126]) + struct.pack(">H", n)
    else:
        head = bytes([b0, m | 127]) + struct.pack(">Q", n)
    if not masked:
        return head + payload
    return head + KEY + bytes(c ^ KEY[i & 3] for i, c in enumerate(payload))


def close(code, reason=b""):
    return frame(FIN | CLOSE, struct.pack(">H", code) + reason)


SEEDS = {
    "text_masked": (L1000 | WHOLE, frame(FIN | TEXT, b"hello")),
    "text_bytewise": (L1000 | BYTES, frame(FIN | TEXT, b"hello, byte by byte")),
    "text_empty": (L1000 | RANDOM, frame(FIN | TEXT)),
    "two_texts": (L16 | RANDOM, frame(FIN | TEXT, b"one") + frame(FIN | TEXT, b"two")),
    "fragmented_ping": (
        L1000 | RANDOM,
        frame(TEXT, b"Hel") + frame(FIN | PING, b"p1") + frame(CONT, b"lo ")
        + frame(FIN | PONG, b"p2") + frame(FIN | CONT, b"world"),
    ),
    "fragmented_bytewise": (
        L1000 | BYTES,
        frame(TEXT, b"ab") + frame(FIN | PING) + frame(FIN | CONT, b"cd"),
    ),
    "close_code": (L1000 | WHOLE, close(1000, b"bye")),
    "close_empty": (L1000 | WHOLE, frame(FIN | CLOSE)),
    "close_1byte": (L1000 | WHOLE, frame(FIN | CLOSE, b"\x03")),
    "close_bad_code": (L1000 | WHOLE, close(1005)),
    "close_bad_reason": (L1000 | BYTES, close(4000, b"\xff\xfe")),
    "len126": (L1000 | RANDOM, frame(FIN | TEXT, b"x" * 200)),
    "len126_limit": (L16 | WHOLE, frame(FIN | TEXT, b"y" * 130)),
    "len64_small": (L1000 | BYTES, frame(FIN | TEXT, b"long5", form=127)),
    "len64_header_only": (L64K | WHOLE, frame(FIN | TEXT, form=127, declared=1 << 40)),
    "len64_top_bit": (L1M | WHOLE, frame(FIN | TEXT, form=127, declared=1 << 63)),
    "len64_300": (L1000 | RANDOM, frame(FIN | TEXT, b"z" * 300, form=127)),
    "utf8_split_valid": (
        L1000 | RANDOM,
        frame(TEXT, b"\xe2") + frame(CONT, b"\x82") + frame(FIN | CONT, b"\xac"),
    ),
    "utf8_split_invalid": (
        L1000 | RANDOM,
        frame(TEXT, b"ok \xe2\x82") + frame(FIN | PING) + frame(FIN | CONT, b"x"),
    ),
    "binary": (L1000 | WHOLE, frame(FIN | BINARY, b"\x00\x01")),
    "unmasked": (L1000 | WHOLE, frame(FIN | TEXT, b"hi", masked=False)),
    "rsv_bits": (L1000 | WHOLE, frame(FIN | 0x40 | TEXT, b"hi")),
    "unknown_opcode": (L1000 | WHOLE, frame(FIN | 0xB, b"hi")),
    "ping_125": (L1000 | RANDOM, frame(FIN | PING, bytes(range(125)))),
    "ping_126": (L1000 | WHOLE, frame(FIN | PING, bytes(126))),
    "ping_no_fin": (L1000 | WHOLE, frame(PING, b"p")),
    "cont_no_message": (L1000 | WHOLE, frame(FIN | CONT, b"c")),
    "text_in_message": (L1000 | WHOLE, frame(TEXT, b"a") + frame(FIN | TEXT, b"b")),
    "fragments_too_large": (
        L16 | RANDOM,
        frame(TEXT, b"0123456789") + frame(FIN | CONT, b"0123456789"),
    ),
}


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "wsframe")
    os.makedirs(out, exist_ok=True)
    for name, (ctl, data) in SEEDS.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(bytes([ctl]) + data)


if __name__ == "__main__":
    main()
