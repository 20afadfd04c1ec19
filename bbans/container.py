"""The .bbans file format: a fixed header, the model name, the layout's header bytes,
then the payload. Every integer is big-endian; no pickle, no paths.

    magic        5 bytes  b"BBANS"
    version      u8       7; earlier versions are still read: versions 1 (no fingerprint)
                          and 2 code a VAE's latents and binary pixels the legacy way,
                          up to 4 a latent has a Gaussian of its own and binary pixels go
                          bit by bit (bbans.codecs.vae), and up to 3 a VAE's networks run
                          on float64 grids, not on integers (bbans.models.intnet)
    method       u8       0 = xz (LZMA2, preset 9e, raw stream), 1 = BB-ANS VAE, 2 = VQ-VAE,
                                  3 = Bit-Swap hierarchical VAE, 4 = stored as it is
                                  (from version 6 on), 5 = pixels: images of a shape
                                  no model codes, every chunk classical, 6 = a JPEG
                                  recoded by JPEG-XL, 7 = a folder (bbans.folders; all
                                  three from version 7 on)
    layout       u8       0 = bytes, 1 = npy, 2 = idx, 3 = pgm, 4 = png, 5 = ppm (from
                          version 7 on)
    size         u64      bytes of the original file
    sha256       32 bytes of the header bytes and pixels (npy, idx, pgm, ppm: of the
                          file; png: of its size (from version 7 on), meta and
                          pixels; bytes: of the file)
    images       u32      number of images (0 for xz and stored)
    model hash   16 bytes first half of the model's weights hash (zeros without a model)
    fingerprint  16 bytes of the SHA-256 of the codec's output on a fixed probe in the
                          encoding environment, from version 3 on after the version byte
                          (without a model: method_fingerprint)
    name length  u8, meta length u16
    model name   ascii; meta: the layout's header bytes (png: height and width of a
                          column of 28x28 images, or height, width and channels of
                          one image of another shape; bbans.formats)
    payload      xz: the compressed file; stored: the file; jpeg-recoded: the CRC-32 of
                 the JPEG-XL stream, then the stream; folder: its files' containers. Images': chunks (bbans.chunks),
                 each a classical codec's stream or a model's message: the ANS stack as
                 u32 words, for a VQ-VAE after a u64 count of the bits its codes take
                 (bbans-flow: RealNVP's integer flow, from version 9 on).
                 Version 1: one BB-ANS VAE message, no chunk table.
"""
import hashlib
import struct
from dataclasses import dataclass

from bbans.codecs.vae import VERSION
from bbans.errors import BbansError

MAGIC = b"BBANS"
METHODS = ("xz", "bbans-vae", "bbans-vq", "bbans-bitswap", "stored", "pixels", "jpeg-recoded", "folder", "bbans-flow")
BYTE_METHODS = ("xz", "stored", "jpeg-recoded", "folder")  # of what is not images: no model, layout "bytes"
UNMODELLED = BYTE_METHODS + ("pixels",)  # the methods without a model
LAYOUTS = ("bytes", "npy", "idx", "pgm", "png", "ppm")
SINCE = {"bbans-bitswap": 3, "stored": 6, "pixels": 7, "jpeg-recoded": 7, "folder": 7, "ppm": 7, "bbans-flow": 9}  # the version that brought a method or layout
FIXED = struct.Struct(">5sBBBQ32sI16s")  # magic .. model hash, in every version
FINGERPRINT = 16  # bytes, from version 2 on
LENGTHS = struct.Struct(">BH")  # of the model name and the meta
MAX_SIZE = 2**40


class FormatError(BbansError):
    pass


def method_fingerprint(method: str, version: int) -> bytes:
    """The fingerprint of a file without a model: from version 3 on a mark of the method
    and the version, so that a changed version byte is caught (a model's fingerprint
    covers it itself); zeros before."""
    if version > 2:
        return hashlib.sha256(method.encode() + bytes([version])).digest()[:FINGERPRINT]
    return bytes(FINGERPRINT if version > 1 else 0)


@dataclass
class Container:
    method: str
    layout: str
    size: int
    sha256: bytes
    images: int
    model: str
    model_hash: bytes
    fingerprint: bytes
    meta: bytes
    payload: bytes
    version: int = VERSION  # as read; files are always written in the current version

    def to_bytes(self) -> bytes:
        name = self.model.encode("ascii")
        return FIXED.pack(MAGIC, VERSION, METHODS.index(self.method), LAYOUTS.index(self.layout), self.size,
                          self.sha256, self.images, self.model_hash.ljust(16, b"\0")) \
            + self.fingerprint.ljust(FINGERPRINT, b"\0") + LENGTHS.pack(len(name), len(self.meta)) \
            + name + self.meta + self.payload


def read(blob: bytes) -> Container:
    if len(blob) < FIXED.size or not blob.startswith(MAGIC):
        raise FormatError("not a .bbans file (bad magic or too short)")
    _, version, method, layout, size, sha, images, model_hash = FIXED.unpack_from(blob)
    if not 1 <= version <= VERSION:
        raise FormatError(f"format version {version} is not supported (this bbans reads versions 1 to {VERSION})")
    fingerprint = blob[FIXED.size:FIXED.size + FINGERPRINT] if version > 1 else b""
    start = FIXED.size + len(fingerprint) + LENGTHS.size
    if len(blob) < start:
        raise FormatError("not a .bbans file (too short)")
    name_len, meta_len = LENGTHS.unpack_from(blob, start - LENGTHS.size)
    if method >= len(METHODS) or layout >= len(LAYOUTS) or (METHODS[method] in BYTE_METHODS) != (LAYOUTS[layout] == "bytes") \
            or version < max(SINCE.get(METHODS[method], 1), SINCE.get(LAYOUTS[layout], 1)):
        raise FormatError("corrupt header (unknown method or layout)")
    method = METHODS[method]
    if method in UNMODELLED and (name_len or any(model_hash) or fingerprint != method_fingerprint(method, version)
                                 or (method in BYTE_METHODS and (images or meta_len))):
        raise FormatError(f"corrupt header (model fields set in a file of method {method})")
    end = start + name_len + meta_len
    if len(blob) < end or size > MAX_SIZE:
        raise FormatError("corrupt or truncated header")
    try:
        model = blob[start:start + name_len].decode("ascii")
    except UnicodeDecodeError:
        raise FormatError("corrupt header (model name)") from None
    return Container(method, LAYOUTS[layout], size, sha, images, model, model_hash, fingerprint,
                     blob[start + name_len:end], blob[end:], version)
