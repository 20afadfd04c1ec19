"""Chunks: a model's payload is a table, then independent messages of up to
CHUNK_IMAGES images each, which can be coded and decoded in any order, by several
processes. All integers big-endian.

    count        u32      number of chunks
    per chunk    u32 images, u64 payload bytes, 32 bytes SHA-256 of its pixels (N x 784 uint8)
    payloads     the chunks' messages, in order
"""
import hashlib
import struct
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context

import numpy as np

from bbans.errors import BbansError

CHUNK_IMAGES = 10_000
COUNT = struct.Struct(">I")
ENTRY = struct.Struct(">IQ32s")


@dataclass
class Chunk:
    images: int
    payload: bytes
    sha256: bytes


def bounds(n: int, size: int):
    """(start, stop) of each chunk of n images."""
    return [(start, min(start + size, n)) for start in range(0, n, size)]


def pixel_sha(pixels: np.ndarray) -> bytes:
    return hashlib.sha256(np.ascontiguousarray(pixels, np.uint8).tobytes()).digest()


def pack(chunks) -> bytes:
    table = b"".join(ENTRY.pack(c.images, len(c.payload), c.sha256) for c in chunks)
    return COUNT.pack(len(chunks)) + table + b"".join(c.payload for c in chunks)


def unpack(payload: bytes, images: int):
    """The chunks of a payload that must hold `images` images in all."""
    if len(payload) < COUNT.size:
        raise BbansError("truncated payload (no chunk table)")
    count, = COUNT.unpack_from(payload)
    start = COUNT.size + count * ENTRY.size
    if count == 0 or count > images or start > len(payload):
        raise BbansError("corrupt or truncated chunk table")
    entries = [ENTRY.unpack_from(payload, COUNT.size + i * ENTRY.size) for i in range(count)]
    if sum(e[0] for e in entries) != images or min(e[0] for e in entries) == 0 \
            or start + sum(e[1] for e in entries) != len(payload):
        raise BbansError("corrupt chunk table (its counts or sizes do not add up)")
    chunks = []
    for n, size, sha in entries:
        chunks.append(Chunk(n, payload[start:start + size], sha))
        start += size
    return chunks


def parallel_map(fn, items: list, workers: int) -> list:
    """[fn(item) for item in items], in `workers` processes (each with one torch thread)
    when there is more than one of each."""
    if workers <= 1 or len(items) <= 1:
        return [fn(item) for item in items]
    with ProcessPoolExecutor(min(workers, len(items)), mp_context=get_context("spawn"),
                             initializer=_one_thread) as pool:
        return list(pool.map(fn, items))


def _one_thread():
    import torch
    torch.set_num_threads(1)
