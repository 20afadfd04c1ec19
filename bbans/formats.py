"""Input files that hold 28x28 grey images, and how to rebuild them exactly.

npy, idx and PGM files are a header followed by the pixels in order, so keeping the
header bytes rebuilds them byte for byte. PNG is rebuilt pixel-exact (as PNG), not byte
for byte, since its compressed stream depends on the encoder that wrote it.
"""
import io
import re
import struct
import warnings
from dataclasses import dataclass

import numpy as np

SIDE = 28
PIXELS = SIDE * SIDE
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NPY_HEADERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
PGM_HEADER = re.compile(rb"P5\s(\d+)\s+(\d+)\s+(\d+)\s")
NPY_HEADER_LIMIT = 1 << 17  # bytes read for an npy header (numpy writes them far shorter)


@dataclass
class Images:
    layout: str  # npy, idx, pgm or png
    meta: bytes  # the header bytes (npy, idx, pgm) or the PNG's height and width
    pixels: np.ndarray  # uint8 (N, 784)
    offset: int = 0  # of the pixels in the file (npy, idx, pgm)

    def restore(self) -> bytes:
        return restore(self.layout, self.meta, self.pixels)


def _npy_header(data):
    f = io.BytesIO(data[:NPY_HEADER_LIMIT])
    try:
        with warnings.catch_warnings():  # numpy warns of headers it reads the slow way
            warnings.simplefilter("ignore")
            read_header = NPY_HEADERS[np.lib.format.read_magic(f)]
            shape, fortran, dtype = read_header(f)
    except Exception:  # not an npy file, or one numpy cannot read
        return None
    ok_shape = (len(shape) == 3 and shape[1:] == (SIDE, SIDE)) or (len(shape) == 2 and shape[1] == PIXELS) \
        or shape == (SIDE, SIDE)
    return (f.tell(), int(np.prod(shape))) if dtype == np.uint8 and not fortran and ok_shape else None


def _idx_header(data):
    if len(data) < 16 or data[:4] != b"\x00\x00\x08\x03":
        return None
    n, rows, cols = struct.unpack(">III", data[4:16])
    return (16, n * PIXELS) if (rows, cols) == (SIDE, SIDE) else None


def _pgm_header(data):
    m = PGM_HEADER.match(data)
    if not m or int(m[1]) != SIDE or int(m[2]) % SIDE or int(m[3]) > 255:
        return None
    return m.end(), int(m[1]) * int(m[2])


# The layouts that are a header and the pixels: the header's length and the number of
# pixels it announces, from the start of a file (None if it is not one of that layout).
HEADERS = {"npy": _npy_header, "idx": _idx_header, "pgm": _pgm_header}


def header_fits(layout: str, meta: bytes, pixels: int) -> bool:
    """Whether `meta` is a whole header of `layout` for `pixels` pixels."""
    return HEADERS[layout](meta) == (len(meta), pixels)


def _headed(layout: str, data):
    head = HEADERS[layout](data)
    if head is None or not head[1] or head[1] % PIXELS or sum(head) != len(data):
        return None
    offset = head[0]
    body = memoryview(data)[offset:]  # no copy of a memory-mapped file
    return Images(layout, bytes(data[:offset]), np.frombuffer(body, np.uint8).reshape(-1, PIXELS), offset)


def _png(data):
    if data[:len(PNG_SIGNATURE)] != PNG_SIGNATURE:
        return None
    from PIL import Image
    try:
        image = Image.open(io.BytesIO(data))
        if image.mode != "L" or image.width != SIDE or image.height % SIDE:
            return None
        pixels = np.asarray(image, np.uint8)
    except Exception:
        return None
    return Images("png", struct.pack(">II", *pixels.shape), pixels.reshape(-1, PIXELS))


def parse(data):
    """Images if `data` (bytes or a memory map) is a file of 28x28 uint8 grey images bbans
    can model, else None."""
    for layout in HEADERS:
        images = _headed(layout, data)
        if images is not None:
            return images
    return _png(data)


def restore(layout: str, meta: bytes, pixels: np.ndarray) -> bytes:
    if layout == "png":
        from PIL import Image
        out = io.BytesIO()
        Image.fromarray(pixels.reshape(struct.unpack(">II", meta)), "L").save(out, "PNG")
        return out.getvalue()
    return meta + pixels.tobytes()
