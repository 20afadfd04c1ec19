"""Classical lossless codecs for a chunk of images, and the choice between them and the
model's message: a chunk goes to whichever is smaller (bbans.chunks records which; 0 is
the file's model). The image codecs take the chunk as one image, a column of its images.

Deciding costs little: the model codes every chunk in full (it is the fast one), the
classical codecs first code a sample of the chunk at quick settings, and code it in
full only where the sample says they may come within MARGIN of the model's message and
SPREAD of the smallest classical stream so far; JPEG-XL and WebP, slow at full effort
(JPEG-XL effort 9 codes some 80,000 pixels/s, several times slower than the models), from
a larger sample spread over the chunk, only where it says they beat the model's message
by SLOW_MARGIN, and WebP only where its estimate comes within QUICK_GAIN of the smallest
stream so far (in a chunk no larger than a sample, the whole chunk at quick settings is
its estimate, and a stream to choose too). Files that are JPEGs are recoded by
JPEG-XL (recode_jpeg), which gives the same bytes back.

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

XZ_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME}]
QUICK_XZ = [{"id": lzma.FILTER_LZMA2, "preset": 6, "dict_size": 1 << 16}]  # a sample needs no more
SAMPLE_BYTES = 64 * 784  # of a chunk's pixels that the classical codecs are tried on first (one image at least)
MARGIN = 1.1  # a codec whose estimate is within this factor of the model's message is tried in full,
SPREAD = 1.25  # and within this factor of the smallest classical stream so far (estimates err by codec)
WARMING = {1, 3}  # xz and PNG: LZ coders, whose dictionary warms up over the first images
# JPEG-XL and WebP: estimated from SLOW_SAMPLE_BYTES of images spread over the chunk (on
# CIFAR-10 3% below the full stream, where the first images, of one class, miss by 20%),
# and in a chunk over STRIPS such samples tried in full only where that is SLOW_MARGIN
# below the model's message (in a smaller one, where JPEG-XL e9 takes a second or less,
# wherever it is within MARGIN: a 225x150 photo crop's effort-7 stream is 3% over e9's)
SLOW, SLOW_SAMPLE_BYTES, SLOW_MARGIN = {2, 4}, 2 * SAMPLE_BYTES, 0.95
# Codecs tried at full effort only where their estimate (their quick settings' stream, for
# one image or a small chunk the whole of it) comes within this factor of the smallest
# stream so far: WebP, whose method 6 came at most 4.5% below its method 3 (CIFAR-10 images,
# photo crops, noise, gradients; as often above) at 100 to 300 times the time; not JPEG-XL,
# whose effort 9 came up to 12% below effort 7 at 4 times the time. QUICK_SLACK bytes more
# for tiny streams, where method 6 can win a third (a 100x100 RGB chessboard: 96 bytes
# against method 3's 144, xz's 135), in the time of a tiny image
QUICK_GAIN, QUICK_SLACK = {4: 1.05}, 64
STRIPS = 8  # strips of rows, SLOW_SAMPLE_BYTES each: the sample of a chunk of one image larger than them all
CRC = struct.Struct(">I")  # ahead of a classical chunk's stream
WEBP_SIDE = 16383
PNG_SIDE = 1_000_000
JPEG_SIGNATURE = b"\xff\xd8\xff"


def _column(pixels: np.ndarray, shape) -> np.ndarray:
    """The images (n, h * w * c) of `shape` (h, w, c) as one image, a column of n images."""
    _, width, channels = shape
    return np.ascontiguousarray(pixels, np.uint8).reshape((-1, width) if channels == 1 else (-1, width, channels))


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


def _image_decode(decode, settings=lambda shape: {}):
    """An image codec's decoder into a column of n images (it refuses a header of another
    size), with the keyword arguments settings(shape)."""
    return lambda payload, n, shape: decode(payload, out=_column(np.empty((n, int(np.prod(shape))), np.uint8), shape),
                                            **settings(shape))


def png(image: np.ndarray, level: int) -> bytes:
    """imagecodecs' PNG of `image`, in a buffer that holds zlib's worst case (imagecodecs'
    own guess is too small for a narrow image of noise)."""
    raw = image.shape[0] * (1 + image[0].size)  # a filter byte per row
    return imagecodecs.png_encode(image, level=level, out=raw + raw // 100 + 12 * (raw // 8192 + 1) + 1024)


def _image_encode(encode, **settings):
    return lambda x, shape: encode(_column(x, shape), **settings)


def _webp_fits(n: int, shape) -> bool:
    """WebP codes RGB and RGBA images of up to WEBP_SIDE pixels a side."""
    height, width, channels = shape
    return channels in (3, 4) and max(n * height, width) <= WEBP_SIDE


def _any(n: int, shape) -> bool:
    return True


def _png_fits(n: int, shape) -> bool:
    """libpng writes images of up to PNG_SIDE pixels a side (its default limit)."""
    return max(n * shape[0], shape[1]) <= PNG_SIDE


# id in the chunk table: (name, encode (pixels, shape) at full effort, encode quickly for
# the sample, decode (payload, images, shape) to the pixels, whether it takes n images of
# a shape)
CODECS = {
    1: ("xz", lambda x, shape: xz(x.tobytes()),
        lambda x, shape: lzma.compress(x.tobytes(), format=lzma.FORMAT_RAW, filters=QUICK_XZ),
        lambda payload, n, shape: np.frombuffer(unxz(payload, n * int(np.prod(shape))), np.uint8), _any),
    2: ("jpeg-xl", _image_encode(imagecodecs.jpegxl_encode, lossless=True, effort=9),
        _image_encode(imagecodecs.jpegxl_encode, lossless=True, effort=7),
        _image_decode(imagecodecs.jpegxl_decode), _any),
    3: ("png", _image_encode(png, level=9), _image_encode(png, level=6),
        _image_decode(imagecodecs.png_decode), _png_fits),
    # libwebp drops an alpha channel that is opaque throughout; hasalpha asks for it back
    4: ("webp", _image_encode(imagecodecs.webp_encode, level=100, lossless=True, method=6),
        _image_encode(imagecodecs.webp_encode, level=75, lossless=True, method=3),
        _image_decode(imagecodecs.webp_decode, lambda shape: dict(hasalpha=shape[2] == 4)), _webp_fits),
}


def name(codec: int, model: str) -> str:
    return model if codec == 0 else CODECS[codec][0]


def choose(pixels: np.ndarray, shape, message=None):
    """(codec, payload) of the chunk `pixels` (n, h * w * c) uint8 of images of `shape`
    (h, w, c) whose model message is `message`: the model's, or a classical codec's where
    that is smaller; the smallest classical codec's where there is no message. WebP runs at
    full effort only where its estimate comes within QUICK_GAIN of the smallest stream so
    far (plus QUICK_SLACK). A chunk no larger than a sample is tried with every codec in full, WebP at its
    quick settings first (its estimate, and a stream to choose too)."""
    fitting = [c for c, codec in CODECS.items() if codec[4](len(pixels), shape)]
    quick = {}
    if pixels.nbytes <= SAMPLE_BYTES:
        quick = {c: CODECS[c][2](pixels, shape) for c in fitting if c in QUICK_GAIN}
        estimates = {c: len(quick[c]) if c in quick else 0 for c in fitting}
    else:
        estimates = {c: _estimate(c, pixels, shape) for c in fitting}
    best, size = (0, message), len(message) if message is not None else float("inf")
    limit, model_size, large = MARGIN * size, size, pixels.nbytes > STRIPS * SLOW_SAMPLE_BYTES
    for c in sorted(estimates, key=estimates.get):
        if estimates[c] > limit:
            break
        if c in SLOW and large and estimates[c] > SLOW_MARGIN * model_size:  # not worth its time where the model wins
            continue
        stream = quick.get(c)
        if c not in QUICK_GAIN or estimates[c] + CRC.size <= QUICK_GAIN[c] * size + QUICK_SLACK:
            full = CODECS[c][1](pixels, shape)
            stream = full if stream is None or len(full) < len(stream) else stream
        elif stream is None:  # at full effort it would not come out smallest either
            continue
        payload = _with_crc(stream)
        if len(payload) < size:
            best, size = (c, payload), len(payload)
        limit = min(limit, SPREAD * len(payload))
    return best


def _estimate(codec: int, pixels: np.ndarray, shape) -> float:
    """The bytes `codec` would take for the chunk, from its quick settings on the first
    SAMPLE_BYTES of it (a SLOW codec: on SLOW_SAMPLE_BYTES of images spread over it):
    scaled up, or for an LZ coder (WARMING) the sample's cost plus the
    rest at the cost per image of the sample's second half, once its dictionary has warmed
    (on the first half alone it would overestimate, by a third on binary images)."""
    quick, n = CODECS[codec][2], len(pixels)
    if codec in SLOW and pixels.nbytes > STRIPS * SLOW_SAMPLE_BYTES and n * SLOW_SAMPLE_BYTES < 2 * pixels.nbytes:
        return _strips_estimate(quick, pixels, shape)
    if codec in SLOW:
        k = min(n, max(1, SLOW_SAMPLE_BYTES // pixels.shape[1]))
        return len(quick(pixels[np.linspace(0, n - 1, k).astype(int)], shape)) * n / k
    k = max(1, SAMPLE_BYTES // pixels.shape[1])
    whole = len(quick(pixels[:k], shape))
    if codec not in WARMING or k < 2:
        return whole * n / k
    return whole + (n - k) * (whole - len(quick(pixels[:k // 2], shape))) / (k - k // 2)


def _strips_estimate(quick, pixels: np.ndarray, shape) -> float:
    """`quick`'s bytes for a chunk of one or two large images, from STRIPS strips of rows
    spread over its column of images, SLOW_SAMPLE_BYTES each, coded as one image (on
    smaller ones, ihc.png among scikit-image's, strips overestimate JPEG-XL by 9%)."""
    column = _column(pixels, shape)
    per = max(1, SLOW_SAMPLE_BYTES // column[0].size)
    starts = np.linspace(0, len(column) - per, STRIPS).astype(int)
    sample = np.concatenate([column[s:s + per] for s in starts])
    return len(quick(sample.reshape(1, -1), (len(sample), *shape[1:]))) * len(column) / len(sample)


def decode(codec: int, payload: bytes, n: int, shape) -> np.ndarray:
    """The pixels (n, h * w * c) of a chunk of images of `shape` coded with a classical codec."""
    if codec not in CODECS:
        raise BbansError(f"corrupt chunk table (unknown codec {codec})")
    return _decoded(f"{CODECS[codec][0]} chunk", lambda stream: CODECS[codec][3](stream, n, shape), payload).reshape(n, -1)


def recode_jpeg(data):
    """The payload of a JPEG file recoded by JPEG-XL, which restores it byte for byte (some
    fifth smaller); None if it is not a JPEG file JPEG-XL takes."""
    if bytes(data[:len(JPEG_SIGNATURE)]) != JPEG_SIGNATURE:
        return None
    try:
        return _with_crc(imagecodecs.jpegxl_encode_jpeg(bytes(data)))
    except Exception:  # a JPEG that JPEG-XL cannot recode (progressive with odd tables, arithmetic coded, ...)
        return None


def restore_jpeg(payload: bytes, size: int) -> bytes:
    data = _decoded("recoded JPEG", imagecodecs.jpegxl_decode_jpeg, payload)
    if len(data) != size:
        raise BbansError("corrupt payload (the recoded JPEG is not of the size the header gives)")
    return data


def _with_crc(stream: bytes) -> bytes:
    return CRC.pack(zlib.crc32(stream)) + stream


def _decoded(what: str, decode, payload: bytes):
    """decode(stream) of a payload that is a CRC-32 and the stream; BbansError if the CRC
    does not match or the decoder fails."""
    if len(payload) < CRC.size or CRC.unpack_from(payload)[0] != zlib.crc32(payload[CRC.size:]):
        raise BbansError(f"corrupt payload (the {what}'s CRC does not match)")
    try:
        return decode(payload[CRC.size:])
    except BbansError:
        raise
    except Exception as e:  # whatever a corrupt stream makes the decoder raise
        raise BbansError(f"corrupt payload ({what} does not decode: {type(e).__name__})") from None
