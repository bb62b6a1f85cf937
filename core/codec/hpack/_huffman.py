"""HPACK Huffman coding (RFC 7541 §5.2, Appendix B), compiled with mypyc.

Theory of operation: encoding appends each byte's code to a small bit
accumulator and flushes whole octets as they fill, then pads the last octet
with the most significant bits of EOS (all ones).

Decoding is table-driven, one input octet per step. At import, the code tree
is built from :data:`CODES`; its 256 internal nodes are the decoder's states
(0 is the root). A 4-bit transition table is derived by walking each state
through each nibble (a nibble completes at most one symbol: the shortest code
is 5 bits), and two nibble steps are composed into a 256 x 256 octet table
held in four ``bytes`` objects indexed by ``state << 8 | octet``: the next
state, how many symbols the octet completes (0-2, or :data:`_FAIL` when it
reaches EOS), and the first and second symbol. A string is valid when it never
reaches EOS and ends in an accepting state: the root, or a node reached from it
by at most seven 1 bits (the padding rule of §5.2).

Invariant: :func:`decode` raises :class:`HuffmanError` and nothing else for
any input.
"""

from __future__ import annotations

from typing import Final

__all__ = ["HuffmanError", "decode", "encode", "encode_into", "encoded_length"]


class HuffmanError(ValueError):
    """A Huffman string that decodes to EOS, or is padded with other than 0-7 one bits."""


# fmt: off
CODES: Final[tuple[int, ...]] = (
    0x1ff8, 0x7fffd8, 0xfffffe2, 0xfffffe3, 0xfffffe4, 0xfffffe5,
    0xfffffe6, 0xfffffe7, 0xfffffe8, 0xffffea, 0x3ffffffc, 0xfffffe9,
    0xfffffea, 0x3ffffffd, 0xfffffeb, 0xfffffec, 0xfffffed, 0xfffffee,
    0xfffffef, 0xffffff0, 0xffffff1, 0xffffff2, 0x3ffffffe, 0xffffff3,
    0xffffff4, 0xffffff5, 0xffffff6, 0xffffff7, 0xffffff8, 0xffffff9,
    0xffffffa, 0xffffffb, 0x14, 0x3f8, 0x3f9, 0xffa,
    0x1ff9, 0x15, 0xf8, 0x7fa, 0x3fa, 0x3fb,
    0xf9, 0x7fb, 0xfa, 0x16, 0x17, 0x18,
    0x0, 0x1, 0x2, 0x19, 0x1a, 0x1b,
    0x1c, 0x1d, 0x1e, 0x1f, 0x5c, 0xfb,
    0x7ffc, 0x20, 0xffb, 0x3fc, 0x1ffa, 0x21,
    0x5d, 0x5e, 0x5f, 0x60, 0x61, 0x62,
    0x63, 0x64, 0x65, 0x66, 0x67, 0x68,
    0x69, 0x6a, 0x6b, 0x6c, 0x6d, 0x6e,
    0x6f, 0x70, 0x71, 0x72, 0xfc, 0x73,
    0xfd, 0x1ffb, 0x7fff0, 0x1ffc, 0x3ffc, 0x22,
    0x7ffd, 0x3, 0x23, 0x4, 0x24, 0x5,
    0x25, 0x26, 0x27, 0x6, 0x74, 0x75,
    0x28, 0x29, 0x2a, 0x7, 0x2b, 0x76,
    0x2c, 0x8, 0x9, 0x2d, 0x77, 0x78,
    0x79, 0x7a, 0x7b, 0x7ffe, 0x7fc, 0x3ffd,
    0x1ffd, 0xffffffc, 0xfffe6, 0x3fffd2, 0xfffe7, 0xfffe8,
    0x3fffd3, 0x3fffd4, 0x3fffd5, 0x7fffd9, 0x3fffd6, 0x7fffda,
    0x7fffdb, 0x7fffdc, 0x7fffdd, 0x7fffde, 0xffffeb, 0x7fffdf,
    0xffffec, 0xffffed, 0x3fffd7, 0x7fffe0, 0xffffee, 0x7fffe1,
    0x7fffe2, 0x7fffe3, 0x7fffe4, 0x1fffdc, 0x3fffd8, 0x7fffe5,
    0x3fffd9, 0x7fffe6, 0x7fffe7, 0xffffef, 0x3fffda, 0x1fffdd,
    0xfffe9, 0x3fffdb, 0x3fffdc, 0x7fffe8, 0x7fffe9, 0x1fffde,
    0x7fffea, 0x3fffdd, 0x3fffde, 0xfffff0, 0x1fffdf, 0x3fffdf,
    0x7fffeb, 0x7fffec, 0x1fffe0, 0x1fffe1, 0x3fffe0, 0x1fffe2,
    0x7fffed, 0x3fffe1, 0x7fffee, 0x7fffef, 0xfffea, 0x3fffe2,
    0x3fffe3, 0x3fffe4, 0x7ffff0, 0x3fffe5, 0x3fffe6, 0x7ffff1,
    0x3ffffe0, 0x3ffffe1, 0xfffeb, 0x7fff1, 0x3fffe7, 0x7ffff2,
    0x3fffe8, 0x1ffffec, 0x3ffffe2, 0x3ffffe3, 0x3ffffe4, 0x7ffffde,
    0x7ffffdf, 0x3ffffe5, 0xfffff1, 0x1ffffed, 0x7fff2, 0x1fffe3,
    0x3ffffe6, 0x7ffffe0, 0x7ffffe1, 0x3ffffe7, 0x7ffffe2, 0xfffff2,
    0x1fffe4, 0x1fffe5, 0x3ffffe8, 0x3ffffe9, 0xffffffd, 0x7ffffe3,
    0x7ffffe4, 0x7ffffe5, 0xfffec, 0xfffff3, 0xfffed, 0x1fffe6,
    0x3fffe9, 0x1fffe7, 0x1fffe8, 0x7ffff3, 0x3fffea, 0x3fffeb,
    0x1ffffee, 0x1ffffef, 0xfffff4, 0xfffff5, 0x3ffffea, 0x7ffff4,
    0x3ffffeb, 0x7ffffe6, 0x3ffffec, 0x3ffffed, 0x7ffffe7, 0x7ffffe8,
    0x7ffffe9, 0x7ffffea, 0x7ffffeb, 0xffffffe, 0x7ffffec, 0x7ffffed,
    0x7ffffee, 0x7ffffef, 0x7fffff0, 0x3ffffee, 0x3fffffff,
)
"""The code of each symbol 0-255 and of EOS (256), RFC 7541 Appendix B."""
LENGTHS: Final[bytes] = bytes(
    (
        13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28,
        28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28, 6, 10, 10, 12, 13, 6, 8, 11,
        10, 10, 8, 11, 8, 6, 6, 6, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8,
        15, 6, 12, 10, 13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
        7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, 15, 5, 6, 5,
        6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, 6, 7, 6, 5, 5, 6, 7, 7,
        7, 7, 7, 15, 11, 14, 13, 28, 20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23,
        23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24,
        22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21,
        23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, 26, 26, 20, 19, 22, 23, 22, 25,
        26, 26, 26, 27, 27, 26, 24, 25, 19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26,
        28, 27, 27, 27, 20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23,
        26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, 30,
    )
)
# fmt: on
"""The length in bits of each code in :data:`CODES`."""

_EOS: Final = 256
_FAIL: Final = 3


def encoded_length(data: bytes) -> int:
    """The length in octets of ``data`` Huffman-encoded."""
    bits = 0
    for k in range(len(data)):
        bits += LENGTHS[data[k]]
    return (bits + 7) >> 3


def encode(data: bytes) -> bytes:
    """``data`` Huffman-encoded, padded with ones to a whole octet."""
    out: list[int] = []
    encode_into(out, data)
    return bytes(out)


def encode_into(out: list[int], data: bytes) -> None:
    """Append the octets of ``data`` Huffman-encoded to ``out``."""
    acc = 0
    bits = 0
    for k in range(len(data)):
        b = data[k]
        n = LENGTHS[b]
        acc = (acc << n) | CODES[b]
        bits += n
        while bits >= 8:
            bits -= 8
            out.append((acc >> bits) & 0xFF)
        acc &= (1 << bits) - 1
    if bits:
        pad = 8 - bits
        out.append(((acc << pad) | ((1 << pad) - 1)) & 0xFF)


def _tree() -> tuple[list[int], list[int], list[bool]]:
    """Children of each internal node (``>= 0`` another node, ``-1 - sym`` a leaf),
    and whether ending a string at each node is allowed (padding rule)."""
    zero: list[int] = [0]
    one: list[int] = [0]
    accept: list[bool] = [True]
    for sym in range(257):
        code = CODES[sym]
        length = LENGTHS[sym]
        node = 0
        for i in range(length - 1, -1, -1):
            bit = (code >> i) & 1
            children = one if bit else zero
            if i == 0:
                children[node] = -1 - sym
            else:
                child = children[node]
                if child <= 0:  # 0 is never a child: the root
                    child = len(zero)
                    zero.append(0)
                    one.append(0)
                    depth = length - i
                    accept.append(code >> i == (1 << depth) - 1 and depth <= 7)
                    children[node] = child
                node = child
    return zero, one, accept


def _nibble_table(zero: list[int], one: list[int]) -> list[int]:
    """``state * 16 + nibble`` -> ``next | emitted << 8 | symbol << 10`` (emitted 0, 1 or _FAIL)."""
    table: list[int] = []
    for state in range(len(zero)):
        for nibble in range(16):
            node = state
            emitted = 0
            sym = 0
            for i in range(3, -1, -1):
                child = one[node] if (nibble >> i) & 1 else zero[node]
                if child < 0:
                    sym = -1 - child
                    if sym == _EOS:
                        emitted = _FAIL
                        break
                    emitted = 1
                    node = 0
                else:
                    node = child
            table.append(node | emitted << 8 | (sym & 0xFF) << 10)
    return table


def _octet_tables() -> tuple[bytes, bytes, bytes, bytes, bytes]:
    zero, one, accept = _tree()
    nib = _nibble_table(zero, one)
    states = len(zero)
    nxt = bytearray(states * 256)
    count = bytearray(states * 256)
    first = bytearray(states * 256)
    second = bytearray(states * 256)
    for state in range(states):
        for octet in range(256):
            i = state << 8 | octet
            a = nib[state * 16 + (octet >> 4)]
            b = nib[(a & 0xFF) * 16 + (octet & 0x0F)]
            ea = (a >> 8) & 3
            eb = (b >> 8) & 3
            if _FAIL in (ea, eb):
                count[i] = _FAIL
                continue
            nxt[i] = b & 0xFF
            count[i] = ea + eb
            if ea:
                first[i] = a >> 10
                second[i] = b >> 10
            elif eb:
                first[i] = b >> 10
    return bytes(nxt), bytes(count), bytes(first), bytes(second), bytes(accept)


_TABLES: Final = _octet_tables()
_NEXT: Final = _TABLES[0]
_COUNT: Final = _TABLES[1]
_FIRST: Final = _TABLES[2]
_SECOND: Final = _TABLES[3]
_ACCEPT: Final = _TABLES[4]


def decode(data: bytes) -> bytes:
    """The octets ``data`` encodes; :class:`HuffmanError` if it is not a valid Huffman string."""
    out: list[int] = []  # appending to a list is a C call in compiled code, to a bytearray not
    state = 0
    for k in range(len(data)):
        i = state << 8 | data[k]
        n = _COUNT[i]
        if n:
            if n == _FAIL:
                raise HuffmanError("Huffman string contains EOS")
            out.append(_FIRST[i])
            if n == 2:
                out.append(_SECOND[i])
        state = _NEXT[i]
    if not _ACCEPT[state]:
        raise HuffmanError("Huffman string padded with other than 0-7 one bits")
    return bytes(out)
