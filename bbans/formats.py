"""Input files that hold images, and how to rebuild them exactly.

npy, idx, PGM and PPM files are a header followed by the pixels in order, so keeping the
header bytes rebuilds them byte for byte. PNG is rebuilt pixel-exact (as PNG), not byte
for byte, since its compressed stream depends on the encoder that wrote it.

Every file is a run of images of one shape (height, width, channels). 28x28 grey images
are the models' (a grey PGM or PNG 28 wide and a multiple of 28 high is a column of
them); any other shape is one image per PGM, PPM or PNG file, or the array's images.
"""
import io
import re
import struct
import warnings
from dataclasses import dataclass

import numpy as np

SIDE = 28
PIXELS = SIDE * SIDE
MODEL_SHAPE = (SIDE, SIDE, 1)  # the images the zoo's models code
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_MODES = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}  # PIL's 8-bit modes, by channels
NPY_HEADERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
PNM_HEADER = re.compile(rb"P([56])\s(\d+)\s+(\d+)\s+(\d+)\s")  # binary PGM (P5) and PPM (P6), no comments
NPY_HEADER_LIMIT = 1 << 17  # bytes read for an npy header (numpy writes them far shorter)
COLUMN_META = struct.Struct(">II")  # a PNG column of 28x28 images: height, width
IMAGE_META = struct.Struct(">IIB")  # a PNG of one image of another shape: height, width, channels


@dataclass
class Images:
    layout: str  # npy, idx, pgm, ppm or png
    meta: bytes  # the header bytes (npy, idx, pgm, ppm) or the PNG's COLUMN_META or IMAGE_META
    pixels: np.ndarray  # uint8 (N, height * width * channels), each image's pixels in row order
    shape: tuple = MODEL_SHAPE  # of one image: height, width, channels
    offset: int = 0  # of the pixels in the file (npy, idx, pgm, ppm)

    def restore(self) -> bytes:
        return restore(self.layout, self.meta, self.pixels)


def _shape(dims):
    """(images, shape of one) of an array's dimensions, None for arrays that are not images."""
    if len(dims) == 2 and dims[1] == PIXELS:
        return dims[0], MODEL_SHAPE
    if len(dims) == 2:
        return 1, (*dims, 1)
    if len(dims) == 3:
        return dims[0], (*dims[1:], 1)
    if len(dims) == 4 and 1 <= dims[3] <= 4:
        return dims[0], dims[1:]
    return None


def _npy_header(data):
    f = io.BytesIO(data[:NPY_HEADER_LIMIT])
    try:
        with warnings.catch_warnings():  # numpy warns of headers it reads the slow way
            warnings.simplefilter("ignore")
            read_header = NPY_HEADERS[np.lib.format.read_magic(f)]
            dims, fortran, dtype = read_header(f)
    except Exception:  # not an npy file, or one numpy cannot read
        return None
    shape = _shape(tuple(map(int, dims)))
    return (f.tell(), *shape) if shape and dtype == np.uint8 and not fortran else None


def _idx_header(data):
    if len(data) < 16 or data[:4] != b"\x00\x00\x08\x03":
        return None
    n, rows, cols = struct.unpack(">III", data[4:16])
    return 16, *_shape((n, rows, cols))


def _pnm_header(kind: bytes):
    def header(data):
        m = PNM_HEADER.match(data)
        if not m or m[1] != kind or int(m[4]) > 255:
            return None
        width, height = int(m[2]), int(m[3])
        if kind == b"5" and width == SIDE and height % SIDE == 0:
            return m.end(), height // SIDE, MODEL_SHAPE
        return m.end(), 1, (height, width, 3 if kind == b"6" else 1)
    return header


# The layouts that are a header and the pixels: (the header's length, the number of
# images it announces, their shape), from the start of a file; None if it is not one.
HEADERS = {"npy": _npy_header, "idx": _idx_header, "pgm": _pnm_header(b"5"), "ppm": _pnm_header(b"6")}


def frame(layout: str, meta: bytes):
    """(images, shape of one) that the header bytes (or PNG meta) `meta` of `layout` give;
    None if they are not a whole header of at least one pixel."""
    if layout == "png":
        if len(meta) == COLUMN_META.size:
            height, width = COLUMN_META.unpack(meta)
            framed = (height // SIDE, MODEL_SHAPE) if width == SIDE and height % SIDE == 0 else None
        elif len(meta) == IMAGE_META.size:
            height, width, channels = IMAGE_META.unpack(meta)
            framed = (1, (height, width, channels)) if channels <= 4 else None
        else:
            framed = None
    else:
        head = HEADERS[layout](meta)
        framed = head[1:] if head and head[0] == len(meta) else None
    return framed if framed and framed[0] and all(framed[1]) else None


def _headed(layout: str, data):
    head = HEADERS[layout](data)
    if head is None:
        return None
    offset, n, shape = head
    size = int(np.prod(shape))
    if not n or not size or offset + n * size != len(data):
        return None
    body = memoryview(data)[offset:]  # no copy of a memory-mapped file
    return Images(layout, bytes(data[:offset]), np.frombuffer(body, np.uint8).reshape(n, size), shape, offset)


def _png(data):
    if data[:len(PNG_SIGNATURE)] != PNG_SIGNATURE:
        return None
    from PIL import Image
    try:
        image = Image.open(io.BytesIO(data))
        if image.mode not in PNG_MODES:  # palette, 1-bit and 16-bit PNGs are kept as bytes
            return None
        pixels = np.asarray(image, np.uint8)
    except Exception:
        return None
    height, width, channels = pixels.shape[0], pixels.shape[1], PNG_MODES[image.mode]
    if channels == 1 and width == SIDE and height % SIDE == 0:
        return Images("png", COLUMN_META.pack(height, width), pixels.reshape(-1, PIXELS))
    return Images("png", IMAGE_META.pack(height, width, channels), pixels.reshape(1, -1), (height, width, channels))


def parse(data):
    """Images if `data` (bytes or a memory map) is a file of uint8 images bbans reads,
    else None."""
    for layout in HEADERS:
        images = _headed(layout, data)
        if images is not None:
            return images
    return _png(data)


def restore(layout: str, meta: bytes, pixels: np.ndarray) -> bytes:
    if layout == "png":
        from PIL import Image
        _, (height, width, channels) = frame(layout, meta)
        mode = next(m for m, c in PNG_MODES.items() if c == channels)
        array = pixels.reshape((-1, width) if channels == 1 else (-1, width, channels))
        out = io.BytesIO()
        Image.fromarray(array, mode).save(out, "PNG")
        return out.getvalue()
    return meta + pixels.tobytes()
