"""In-process cost of HPACK per header block: plait's compiled codec against ``hpack``.

A gRPC unary exchange on one connection, as a proxy sees it on each side: the
request header block, the response header block and the trailers block, each
encoded and decoded with a dynamic table that already holds the previous
exchange's fields (steady state). Prints microseconds per block for both
codecs and the ratio. Run: ``.venv/bin/python -m benchmarks.hpack_bench``.
"""

from __future__ import annotations

import timeit
from collections.abc import Callable
from functools import partial

import hpack

from plait.core.codec.hpack import Decoder, Encoder

Fields = list[tuple[bytes, bytes]]

REQUEST: Fields = [
    (b":method", b"POST"),
    (b":scheme", b"http"),
    (b":path", b"/pkg.Svc/Method"),
    (b":authority", b"backend.default.svc:50051"),
    (b"content-type", b"application/grpc"),
    (b"te", b"trailers"),
    (b"grpc-timeout", b"999m"),
    (b"user-agent", b"grpc-python/1.60.0 grpc-c/37.0.0 (linux; chttp2)"),
]
RESPONSE = [(b":status", b"200"), (b"content-type", b"application/grpc")]
TRAILERS = [(b"grpc-status", b"0"), (b"grpc-message", b"")]
BLOCKS = {"request": REQUEST, "response": RESPONSE, "trailers": TRAILERS}


def _per_call(fn: Callable[[], object], rounds: int = 7, number: int = 20000) -> float:
    return min(timeit.repeat(fn, number=number, repeat=rounds)) / number * 1e6


def _fresh_encode(encoder: type[Encoder] | type[hpack.Encoder], fields: Fields) -> bytes:
    return encoder().encode(fields)


def _fresh_decode(block: bytes) -> list[tuple[bytes, bytes]]:
    return Decoder().decode(block)


def _fresh_ref_decode(block: bytes) -> object:
    return hpack.Decoder().decode(block, raw=True)


def measure() -> dict[str, tuple[float, float]]:
    """Block kind and direction -> (plait µs, hpack µs)."""
    results: dict[str, tuple[float, float]] = {}
    for kind, fields in BLOCKS.items():
        ours_enc, ref_enc = Encoder(), hpack.Encoder()
        ours_block = ours_enc.encode(fields)
        ref_block = ref_enc.encode(fields)
        ours_dec, ref_dec = Decoder(), hpack.Decoder()
        ours_dec.decode(ours_block)
        ref_dec.decode(ref_block, raw=True)
        # The first block of a connection indexes the fields; steady state repeats them.
        steady = ours_enc.encode(fields)
        ref_steady = ref_enc.encode(fields)
        results[f"{kind} encode"] = (
            _per_call(partial(ours_enc.encode, fields)),
            _per_call(partial(ref_enc.encode, fields)),
        )
        results[f"{kind} decode"] = (
            _per_call(partial(ours_dec.decode, steady)),
            _per_call(partial(ref_dec.decode, ref_steady, raw=True)),
        )
        # A first block: literals, Huffman both ways, table insertions.
        results[f"{kind} encode, fresh table"] = (
            _per_call(partial(_fresh_encode, Encoder, fields), number=5000),
            _per_call(partial(_fresh_encode, hpack.Encoder, fields), number=5000),
        )
        results[f"{kind} decode, fresh table"] = (
            _per_call(partial(_fresh_decode, ours_block), number=5000),
            _per_call(partial(_fresh_ref_decode, ref_block), number=5000),
        )
    return results


def main() -> None:
    import plait.core.codec.hpack._codec as codec

    compiled = codec.__file__ is not None and not codec.__file__.endswith(".py")
    print(f"plait HPACK {'compiled' if compiled else 'NOT compiled (PLAIT_COMPILE=0?)'}")
    print(f"{'block':34} {'plait µs':>9} {'hpack µs':>9} {'speed-up':>9}")
    total_ours = total_ref = 0.0
    for name, (ours, ref) in measure().items():
        print(f"{name:34} {ours:9.2f} {ref:9.2f} {ref / ours:8.1f}x")
        if "fresh" not in name:
            total_ours += ours
            total_ref += ref
    print(f"{'one exchange, steady state (6 blocks)':34} {total_ours:9.2f} {total_ref:9.2f} "
          f"{total_ref / total_ours:8.1f}x")  # fmt: skip


if __name__ == "__main__":
    main()
