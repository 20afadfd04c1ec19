"""Classical lossless codecs for a chunk of 28x28 grey images, and the choice between
them and the model's message: a chunk goes to whichever is smaller (bbans.chunks records
which; 0 is the file's model).

Deciding costs little: the model codes every chunk in full (it is the fast one), the
classical codecs first code a sample of the chunk at quick settings, and code it in
full only where the sample says they may come within MARGIN of the model.

A classical chunk's payload is the CRC-32 of its stream (4 bytes), then the stream:
these formats leave bits that decode to the same pixels (padding, ancillary fields),
and a file whose bytes were changed must be refused even so, as a model's message is,
every bit of which the pixels' checksum covers.
"""
import lzma
import struct
import zlib

import imagecodecs
import numpy as np

from bbans.errors import BbansError

SIDE = 28
XZ_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME}]
QUICK_XZ = [{"id": lzma.FILTER_LZMA2, "preset": 6, "dict_size": 1 << 16}]  # a sample needs no more
SAMPLE = 64  # images of a chunk that the classical codecs are tried on first
MARGIN = 1.1  # a codec whose sample cost is within this factor of the model's is tried in full
CRC = struct.Struct(">I")  # ahead of a classical chunk's stream


def _column(pixels: np.ndarray) -> np.ndarray:
    """The images (n, 784) as one grey image, a column of n images."""
    return np.ascontiguousarray(pixels, np.uint8).reshape(-1, SIDE)


def xz(data) -> bytes:
    return lzma.compress(data, format=lzma.FORMAT_RAW, filters=XZ_FILTERS)


def unxz(payload: bytes, size: int) -> bytes:
    """The `size` bytes of one whole xz stream with nothing after it (no more are
    decoded, whatever the stream claims); BbansError otherwise."""
    stream = lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=XZ_FILTERS)
    try:
        data = stream.decompress(payload, max_length=size + 1)
    except lzma.LZMAError:
        raise BbansError("corrupt payload (xz stream does not decode)") from None
    if not stream.eof or stream.unused_data or len(data) != size:
        raise BbansError("corrupt payload (the xz stream is cut short, too long or followed by other bytes)")
    return data


def _image_decode(decode):
    """An image codec's decoder into a column of n images (it refuses a header of another size)."""
    return lambda payload, n: decode(payload, out=np.empty((n * SIDE, SIDE), np.uint8))


# id in the chunk table: (name, encode at full effort, encode quickly for the sample,
# decode (payload, images) to the pixels)
CODECS = {
    1: ("xz", lambda x: xz(x.tobytes()), lambda x: lzma.compress(x.tobytes(), format=lzma.FORMAT_RAW, filters=QUICK_XZ),
        lambda payload, n: np.frombuffer(unxz(payload, n * SIDE * SIDE), np.uint8)),
    2: ("jpeg-xl", lambda x: imagecodecs.jpegxl_encode(_column(x), lossless=True, effort=9),
        lambda x: imagecodecs.jpegxl_encode(_column(x), lossless=True, effort=7), _image_decode(imagecodecs.jpegxl_decode)),
    3: ("png", lambda x: imagecodecs.png_encode(_column(x), level=9), lambda x: imagecodecs.png_encode(_column(x), level=6),
        _image_decode(imagecodecs.png_decode)),
}


def name(codec: int, model: str) -> str:
    return model if codec == 0 else CODECS[codec][0]


def choose(pixels: np.ndarray, message: bytes):
    """(codec, payload) of the chunk `pixels` (n, 784) uint8 whose model message is
    `message`: the model's, or a classical codec's where that is smaller."""
    sample = pixels[:SAMPLE]
    scale = len(pixels) / len(sample)
    estimates = {c: len(quick(sample)) * scale for c, (_, _, quick, _) in CODECS.items()}
    best = (0, message)
    for c in sorted(estimates, key=estimates.get):
        if estimates[c] > MARGIN * len(best[1]):
            break
        stream = CODECS[c][1](pixels)
        payload = CRC.pack(zlib.crc32(stream)) + stream
        if len(payload) < len(best[1]):
            best = (c, payload)
    return best


def decode(codec: int, payload: bytes, n: int) -> np.ndarray:
    """The pixels (n, 784) of a chunk coded with a classical codec."""
    if codec not in CODECS:
        raise BbansError(f"corrupt chunk table (unknown codec {codec})")
    if len(payload) < CRC.size or CRC.unpack_from(payload)[0] != zlib.crc32(payload[CRC.size:]):
        raise BbansError(f"corrupt payload (the {CODECS[codec][0]} chunk's CRC does not match)")
    try:
        pixels = CODECS[codec][3](payload[CRC.size:], n)
    except BbansError:
        raise
    except Exception as e:  # whatever a corrupt stream makes the decoder raise
        raise BbansError(f"corrupt payload ({CODECS[codec][0]} chunk does not decode: {type(e).__name__})") from None
    return pixels.reshape(n, SIDE * SIDE)
