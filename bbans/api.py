"""Compress and decompress whole files: images go to a model of the zoo (a VAE with
bits-back, or a VQ-VAE), anything else to xz."""
import hashlib
import lzma
import struct
import time

import numpy as np

from bbans import container, formats
from bbans.container import Container
from bbans.errors import BbansError
from bbans.vae_codec import VAECodec
from bbans.vq_codec import VQCodec

XZ_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME}]
# Up to this size the fallback is tried too and the smaller file kept; beyond it, image
# files go to the model (bits-back has paid its start-up cost long before).
COMPARE_LIMIT = 1 << 20
METHODS = {"vae": "bbans-vae", "vqvae": "bbans-vq"}  # the zoo's kinds of model
LATENT_BITS = struct.Struct(">Q")  # ahead of a VQ-VAE message: the bits its codes take


def _sha(images: formats.Images, data: bytes) -> bytes:
    """What decompression checks: the file's bytes, or for PNG its shape and pixels."""
    if images is not None and images.layout == "png":
        return hashlib.sha256(images.meta + images.pixels.tobytes()).digest()
    return hashlib.sha256(data).digest()


def pick_model(pixels: np.ndarray, name=None) -> str:
    from models.zoo import DEFAULTS, ZOO
    binary = int(pixels.max(initial=0)) <= 1
    name = name or DEFAULTS["binary" if binary else "8bit"]
    if name not in ZOO:
        raise BbansError(f"unknown model {name!r}; the zoo has: {', '.join(ZOO)}")
    if ZOO[name]["binarized"] and not binary:
        raise BbansError(f"model {name} codes binary images, and this input has values above 1")
    return name


def _xz(data: bytes):
    start = time.perf_counter()
    payload = lzma.compress(data, format=lzma.FORMAT_RAW, filters=XZ_FILTERS)
    return Container("xz", "bytes", len(data), hashlib.sha256(data).digest(), 0, "", b"", b"", payload), \
        time.perf_counter() - start


def _model(data: bytes, images: formats.Images, name: str):
    from models.zoo import kind, load
    model, weights_hash = load(name)
    start = time.perf_counter()
    if kind(name) == "vqvae":
        words, latent_bits = VQCodec(model).encode(images.pixels)
        payload = LATENT_BITS.pack(latent_bits) + words.astype("<u4").tobytes()
    else:
        payload = VAECodec(model).encode(images.pixels).astype("<u4").tobytes()
    seconds = time.perf_counter() - start
    return Container(METHODS[kind(name)], images.layout, len(data), _sha(images, data), len(images.pixels), name,
                     bytes.fromhex(weights_hash)[:16], images.meta, payload), seconds


def compress(data: bytes, model=None, nll_samples=0, nll_images=None):
    """(container bytes, report). `model` forces a model of the zoo for image input; with
    `nll_samples` the report adds the model's own figures on the input (models.zoo.figures:
    a VAE's -ELBO and its importance-weighted NLL bound on `nll_images` of them, default
    all; a VQ-VAE's cost and its parts)."""
    images = formats.parse(data)
    if model and images is None:
        raise BbansError("--model applies to files of 28x28 grey images (npy, idx, pgm, png); this is not one")
    candidates = []
    if images is not None:
        candidates.append(_model(data, images, pick_model(images.pixels, model)))
    if images is None or (not model and len(data) <= COMPARE_LIMIT):
        candidates.append(_xz(data))
    blob, box, seconds = min(((c.to_bytes(), c, s) for c, s in candidates), key=lambda e: len(e[0]))
    dims = images.pixels.size if images is not None else len(data)
    report = dict(method=box.method, model=box.model or None, layout=images.layout if images else "bytes",
                  n_images=len(images.pixels) if images else 0, n_dims=dims, original_bytes=len(data),
                  compressed_bytes=len(blob), bits_per_dim=8 * len(blob) / max(dims, 1), seconds=seconds)
    if nll_samples and box.model:
        from models.zoo import figures
        report.update(figures(box.model, images.pixels, nll_samples, nll_images))
    return blob, report


def decompress(blob: bytes):
    """(original file bytes, report); raises BbansError unless they check out exactly."""
    box = container.read(blob)
    model = _model_for(box) if box.model else None
    start = time.perf_counter()
    if model is None:
        try:
            data = lzma.decompress(box.payload, format=lzma.FORMAT_RAW, filters=XZ_FILTERS)
        except lzma.LZMAError:
            raise BbansError("corrupt payload (xz stream does not decode)") from None
        images = None
    else:
        images = formats.Images(box.layout, box.meta, _decode_images(box, model))
        data = images.restore()
        # A header file rebuilt byte for byte must read back as its own layout (a PNG is
        # written from the layout's own fields, so it needs no such check).
        if box.layout != "png" and formats.READERS[box.layout](data) is None:
            raise BbansError("corrupt header (the layout does not match the restored file)")
    seconds = time.perf_counter() - start
    if _sha(images, data) != box.sha256:
        raise BbansError("checksum mismatch: the file is corrupt; nothing written")
    return data, dict(method=box.method, model=box.model or None, layout=box.layout, n_images=box.images,
                      original_bytes=len(data), seconds=seconds)


def _model_for(box: Container):
    """The zoo's model for a BB-ANS container, once its header is checked."""
    from models.zoo import ZOO, kind, load
    pixels = box.images * formats.PIXELS
    if box.layout == "png":
        consistent = len(box.meta) == 8 and np.prod(struct.unpack(">II", box.meta)) == pixels
    else:
        consistent = pixels + len(box.meta) == box.size
    # No image costs less than 1/64 byte, so a count beyond that is a corrupt header (and
    # would otherwise size an allocation).
    if box.images == 0 or not consistent or box.images > 64 * (len(box.payload) + 1):
        raise BbansError("corrupt header (image count does not match the sizes)")
    if len(box.payload) % 4 or (box.method == "bbans-vq" and len(box.payload) < LATENT_BITS.size):
        raise BbansError("truncated or corrupt payload")
    if box.model in ZOO and METHODS[kind(box.model)] != box.method:
        raise BbansError(f"corrupt header (method {box.method} with model {box.model!r})")
    model, weights_hash = load(box.model)
    if bytes.fromhex(weights_hash)[:16] != box.model_hash:
        raise BbansError(f"this file was made with other weights of model {box.model} "
                         f"({box.model_hash.hex()}…, this bbans has {weights_hash[:32]}…)")
    return model


def _decode_images(box: Container, model) -> np.ndarray:
    vq = box.method == "bbans-vq"
    words = np.frombuffer(box.payload[LATENT_BITS.size if vq else 0:], "<u4").astype(np.uint32)
    try:
        return (VQCodec if vq else VAECodec)(model).decode(words, box.images)
    except BbansError:
        raise
    except Exception as e:  # a corrupt message can drive the coder anywhere
        raise BbansError(f"corrupt payload ({type(e).__name__})") from None


def info(blob: bytes) -> dict:
    box = container.read(blob)
    dims = box.images * formats.PIXELS if box.images else box.size
    split = {}
    if box.method == "bbans-vq" and len(box.payload) >= LATENT_BITS.size:
        latent_bits, = LATENT_BITS.unpack_from(box.payload)
        pixel_bits = 8 * (len(box.payload) - LATENT_BITS.size) - latent_bits
        split = dict(latent_bits_per_dim=latent_bits / dims, pixel_bits_per_dim=pixel_bits / dims)
    return dict(method=box.method, model=box.model or None, model_hash=box.model_hash.hex() if box.images else None,
                layout=box.layout, restores="pixel-exact PNG" if box.layout == "png" else "byte-exact",
                n_images=box.images, original_bytes=box.size, compressed_bytes=len(blob),
                bits_per_dim=8 * len(blob) / max(dims, 1), **split, sha256=box.sha256.hex())
