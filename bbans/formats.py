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


def _split(data, offset: int, layout: str):
    body = memoryview(data)[offset:]  # no copy of a memory-mapped file
    if not body or len(body) % PIXELS:
        return None
    return Images(layout, bytes(data[:offset]), np.frombuffer(body, np.uint8).reshape(-1, PIXELS), offset)


def _npy(data):
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
    if dtype != np.uint8 or fortran or not ok_shape or len(data) - f.tell() != int(np.prod(shape)):
        return None
    return _split(data, f.tell(), "npy")


def _idx(data: bytes):
    if len(data) < 16 or data[:4] != b"\x00\x00\x08\x03":
        return None
    n, rows, cols = struct.unpack(">III", data[4:16])
    if (rows, cols) != (SIDE, SIDE) or len(data) != 16 + n * PIXELS:
        return None
    return _split(data, 16, "idx")


def _pgm(data: bytes):
    m = PGM_HEADER.match(data)
    if not m or int(m[1]) != SIDE or int(m[2]) % SIDE or int(m[3]) > 255 or len(data) != m.end() + int(m[1]) * int(m[2]):
        return None
    return _split(data, m.end(), "pgm")


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


READERS = {"npy": _npy, "idx": _idx, "pgm": _pgm, "png": _png}


def parse(data):
    """Images if `data` (bytes or a memory map) is a file of 28x28 uint8 grey images bbans
    can model, else None."""
    for reader in READERS.values():
        images = reader(data)
        if images is not None:
            return images
    return None


def restore(layout: str, meta: bytes, pixels: np.ndarray) -> bytes:
    if layout == "png":
        from PIL import Image
        out = io.BytesIO()
        Image.fromarray(pixels.reshape(struct.unpack(">II", meta)), "L").save(out, "PNG")
        return out.getvalue()
    return meta + pixels.tobytes()
