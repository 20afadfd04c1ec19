"""Chunks: a model's payload is a table, then independent messages of up to
CHUNK_IMAGES images each, which can be coded and decoded in any order, by several
processes or on a Dask cluster. An image larger than CHUNK_BYTES goes in bands of rows
instead, a chunk each (from format version 8 on): the table then holds more chunks than
the file has images, the same number for each, each of one "image", its band. All
integers big-endian.

    count        u32      number of chunks
    per chunk    u32 images, u64: the codec (top 8 bits, from format version 6 on; 0 =
                 the file's model, else bbans.classical's) and the payload bytes (the
                 other 56), 32 bytes SHA-256 of its pixels (uint8, image after image)
    payloads     the chunks' messages, in order
"""
import ctypes
import ctypes.util
import functools
import hashlib
import queue
import struct
import time
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from multiprocessing import get_context

import numpy as np
from threadpoolctl import threadpool_limits

from bbans.errors import BbansError

CHUNK_IMAGES = 10_000  # 28x28 images in a chunk by default
CHUNK_BYTES = CHUNK_IMAGES * 784  # of pixels in a chunk by default
COUNT = struct.Struct(">I")
ENTRY = struct.Struct(">IQ32s")
CONNECT_SECONDS = 10  # to a Dask scheduler
START_SECONDS = 300  # for worker processes to start and load the model


SIZE_BITS = 56  # of an entry's u64; the codec above them


@dataclass
class Chunk:
    images: int
    payload: bytes
    sha256: bytes
    codec: int = 0  # 0: the file's model


def chunk_images(requested, image_bytes: int) -> int:
    """Images per chunk: `requested`, or by default (None) as many as hold CHUNK_BYTES of
    pixels (one at least); never more than that of images larger than 28x28, so that
    memory stays bounded."""
    most = max(1, CHUNK_BYTES // image_bytes)
    return most if requested is None else requested if image_bytes <= 784 else min(requested, most)


def bounds(n: int, size: int):
    """(start, stop) of each chunk of n images."""
    return [(start, min(start + size, n)) for start in range(0, n, size)]


BAND_STEP = 224  # rows; a multiple of the models' tile sides, 28 and 32 (bbans.tiles)


def bands(shape) -> int:
    """The bands compress cuts each image of `shape` (height, width, channels) into: one
    where it fits in CHUNK_BYTES, else as many of a multiple of BAND_STEP rows (one such
    at least) as keep each within CHUNK_BYTES."""
    height, width, channels = shape
    if height * width * channels <= CHUNK_BYTES:
        return 1
    return -(-height // (BAND_STEP * max(1, CHUNK_BYTES // (BAND_STEP * width * channels))))


def band_rows(height: int, count: int):
    """The rows of each band but the last of an image `height` rows high in `count` bands:
    the fewest multiple of BAND_STEP that makes that many (so that a decoder finds them
    from the count); None where none does."""
    if count == 1:
        return height
    rows = BAND_STEP * -(-height // (BAND_STEP * count))
    return rows if -(-height // rows) == count else None


@dataclass
class Piece:
    """The pixels of a chunk: `images` images from `first`, rows `top` to `top + rows` of
    each (all of them, or a band of one image)."""
    first: int
    images: int
    top: int
    rows: int

    def shape(self, shape) -> tuple:
        return (self.rows, *shape[1:])

    def offset(self, shape) -> int:
        """Of its first pixel value in the images' pixels, in bytes."""
        row = int(np.prod(shape[1:]))
        return (self.first * shape[0] + self.top) * row

    def pixels(self, pixels: np.ndarray, shape) -> np.ndarray:
        """This piece of images (N, h w c)."""
        row = int(np.prod(shape[1:]))
        return pixels[self.first:self.first + self.images, self.top * row:(self.top + self.rows) * row]


def plan(n: int, shape, requested=None) -> list:
    """The Piece of each chunk of n images of `shape`: `requested` at a time (default: as
    chunk_images gives), or in bands where one is larger than a chunk."""
    return pieces(n, shape, bands(shape), chunk_images(requested, int(np.prod(shape))))


def pieces(n: int, shape, count: int, chunk: int = None) -> list:
    """The Piece of each chunk of n images of `shape`: in `count` bands each (bands), or
    where count is 1 `chunk` images at a time."""
    if count == 1:
        return [Piece(a, b - a, 0, shape[0]) for a, b in bounds(n, chunk)]
    rows = band_rows(shape[0], count)
    return [Piece(i, 1, top, min(rows, shape[0] - top)) for i in range(n) for top in range(0, shape[0], rows)]


def pixel_sha(pixels: np.ndarray) -> bytes:
    return hashlib.sha256(np.ascontiguousarray(pixels, np.uint8)).digest()


def pieces_of(chunks, n: int, shape, version: int, bounded: bool) -> list:
    """The Piece of each of a file's chunks of n images of `shape` (in bands where there
    are more chunks than images). Where `bounded` (images larger than 28x28), from format
    version 8 on, no chunk holds more than CHUNK_BYTES of pixels or a band of BAND_STEP
    rows: a corrupt header would otherwise size the decoder's arrays."""
    count = len(chunks) // n if len(chunks) > n else 1
    if band_rows(shape[0], count) is None:
        raise BbansError("corrupt chunk table (its count of bands does not fit the images)")
    if count > 1:
        out = pieces(n, shape, count)
    else:
        starts = np.cumsum([0] + [c.images for c in chunks])
        out = [Piece(int(first), c.images, 0, shape[0]) for c, first in zip(chunks, starts)]
    row = int(np.prod(shape[1:]))
    if version >= 8 and bounded and any(p.images * p.rows * row > max(CHUNK_BYTES, BAND_STEP * row) for p in out):
        raise BbansError("corrupt chunk table (a chunk larger than any compress writes)")
    return out


def pack(chunks) -> bytes:
    table = b"".join(ENTRY.pack(c.images, c.codec << SIZE_BITS | len(c.payload), c.sha256) for c in chunks)
    return COUNT.pack(len(chunks)) + table + b"".join(c.payload for c in chunks)


def unpack(payload: bytes, images: int, version: int):
    """The chunks of a payload that must hold `images` images in all, or from format
    version 8 on the same number of bands of each (chunks of one image each); files
    before version 6 have no codecs (their sizes' top bits are zero)."""
    if len(payload) < COUNT.size:
        raise BbansError("truncated payload (no chunk table)")
    count, = COUNT.unpack_from(payload)
    start = COUNT.size + count * ENTRY.size
    banded = version >= 8 and images and count > images and count % images == 0
    if count == 0 or (count > images and not banded) or start > len(payload):
        raise BbansError("corrupt or truncated chunk table")
    entries = [(n, size & ((1 << SIZE_BITS) - 1), size >> SIZE_BITS, sha)
               for n, size, sha in (ENTRY.unpack_from(payload, COUNT.size + i * ENTRY.size) for i in range(count))]
    if version < 6 and any(e[2] for e in entries):
        raise BbansError("corrupt chunk table (its sizes do not add up)")
    if sum(e[0] for e in entries) != (count if banded else images) or min(e[0] for e in entries) == 0 \
            or start + sum(e[1] for e in entries) != len(payload):
        raise BbansError("corrupt chunk table (its counts or sizes do not add up)")
    chunks = []
    for n, size, codec, sha in entries:
        chunks.append(Chunk(n, payload[start:start + size], sha, codec))
        start += size
    return chunks


class Workers:
    """Where chunks are coded: in this process, in `n` spawned processes with one torch
    thread each (for n > 1 and more than one job: one job alone is not worth starting
    processes for), or on the Dask cluster at `scheduler` ("tcp://host:port") whatever
    `n`; everywhere with one thread of numpy's BLAS. The processes start at once, import
    torch and run `warm` (the model's load) while the caller loads its own, which hides
    most of their start-up; `ready()` waits for them, and `close()` (or leaving a `with`
    block) stops them.

    A cluster's workers import the job function from bbans, so they need bbans installed
    at the same version with the same weights (a file's fingerprint check guards against
    the rest). Dask's nanny starts them with OMP_NUM_THREADS=1, which torch follows. A
    job's BbansError reaches the caller as itself."""

    def __init__(self, n: int = 1, scheduler: str | None = None, jobs: int = 2, warm=None):
        self.n, self.scheduler, self.pool = n, scheduler, None
        if scheduler is None and n > 1 and jobs > 1:
            context = get_context("spawn")
            self.started = context.Queue()
            self.pool = ProcessPoolExecutor(n, mp_context=context, initializer=_start_worker,
                                            initargs=(warm, self.started))
            self.spawned = [self.pool.submit(int) for _ in range(n)]  # each submit to a busy pool spawns a process

    def ready(self):
        """Waits until every worker process has started and run `warm` (a picklable
        function: the model's load), as the caller has before it times its chunks, so
        that their timing counts coding only, with one worker as with several."""
        if self.pool is None:
            return
        deadline, waiting = time.monotonic() + START_SECONDS, self.n
        while waiting:
            try:
                self.started.get(timeout=0.5)
                waiting -= 1
            except queue.Empty:
                failed = [job.exception() for job in self.spawned if job.done() and job.exception()]
                if failed or time.monotonic() > deadline:
                    raise BbansError(f"the worker processes did not start: {failed[0] if failed else 'timed out'}")

    def map(self, fn, items):
        """An iterator of fn(item) for each of `items`, in order. The items are taken as
        the results are wanted, with about two jobs per worker in flight, so a caller can
        stream chunks without holding them all."""
        if self.scheduler is not None:
            return _on_dask(fn, items, self.scheduler)
        if self.pool is not None:
            return _in_order(partial(self.pool.submit, fn), items, 2 * self.n)
        return _here(fn, items)

    def close(self):
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _here(fn, items):
    keep_freed_memory()
    with threadpool_limits(1):  # threads of numpy's BLAS only slow the coder's narrow products
        yield from map(fn, items)


def _start_worker(warm, started):
    one_thread()
    keep_freed_memory()
    if warm:
        warm()
    started.put(True)


def _on_dask(fn, items, scheduler: str):
    try:
        from distributed import Client
        from distributed.comm.addressing import get_address_host_port
    except ImportError:
        raise BbansError("--scheduler needs the dask.distributed package: pip install 'bbans[cluster]'") from None
    try:
        get_address_host_port(scheduler)  # a Client refusing a malformed one would hang at exit
        client = Client(scheduler, timeout=CONNECT_SECONDS, set_as_default=False)
    except (OSError, ValueError) as e:
        raise BbansError(f"cannot reach the Dask scheduler at {scheduler}: {e}") from None
    try:
        threads = sum(client.nthreads().values())
        # pure=False: each job gets a key of its own, so equal chunks are not merged
        yield from _in_order(lambda item: client.submit(fn, item, pure=False), items, 2 * max(threads, 1))
    finally:
        client.close()


def _in_order(submit, items, window: int):
    """The result of each submit(item) (a future), in order, with at most `window` jobs
    submitted and not yet awaited."""
    pending = deque()
    for item in items:
        pending.append(submit(item))
        if len(pending) == window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def one_thread():
    """Matrix products on one thread, in torch and in numpy's BLAS (a worker per core)."""
    import torch
    torch.set_num_threads(1)
    threadpool_limits(1)


@functools.cache
def keep_freed_memory():
    """Where malloc is glibc's: freed blocks below 32 MiB stay in the heap for reuse, not
    handed back to the kernel. The coder allocates and frees arrays of the same sizes
    batch after batch, and a page handed back costs a fault when next written: some 10%
    of coding time."""
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c")).mallopt
    except (OSError, AttributeError, TypeError):
        return
    mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD: blocks above it get their own mapping
    mallopt(-1, 128 << 20)  # M_TRIM_THRESHOLD: free memory at the heap's top kept up to it
