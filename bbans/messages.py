"""A model of the zoo's messages for chunks of its images: coding and decoding
them, the figures the coder finds on the way, and the fingerprint by which a decoder
checks that its environment computes the encoder's probabilities."""
import functools
import hashlib
import struct
from collections import Counter

import numpy as np

from bbans import container, formats, tiles
from bbans.codecs.core import check_used_up, new_message
from bbans.codecs.flow import FlowCodec
from bbans.codecs.vae import BitSwapCodec, VAECodec
from bbans.codecs.vq import VQCodec
from bbans.container import Container
from bbans.errors import BbansError
from bbans.models import zoo

METHODS = {"vae": "bbans-vae", "vqvae": "bbans-vq", "hvae": "bbans-bitswap", "colour": "bbans-vae",
           "realnvp": "bbans-flow"}  # by kind
LATENT_BITS = struct.Struct(">Q")  # ahead of a VQ-VAE message: the bits its codes take


def load(name: str, version: int = container.VERSION):
    """(model NAME's exact form for the codecs, its weights hash) as format `version`
    computes: its MLPs on integers from version 4 on, on float64 grids before."""
    return zoo.load(name, integer=version >= 4)


def _codec(method: str, model, version: int, valid=None):
    """The codec of a bits-back method (not bbans-vq): a VAE's, Bit-Swap's or a flow's."""
    if method == "bbans-flow":
        return FlowCodec(model)
    codec = BitSwapCodec if method == "bbans-bitswap" else VAECodec
    return codec(model, version=version, valid=valid)


def probe(binary: bool, shape=formats.MODEL_SHAPE) -> np.ndarray:
    """A fixed input for the fingerprint: four striped images of `shape` with zeros among
    them, made by integer arithmetic alone (binarized for a binary model)."""
    k, i, j, c = np.ix_(range(4), *map(range, shape))
    x = np.where((i + 2 * j + k + c) % 4 == 0, 0, ((i * (k + 3) + j * (2 * k + 5)) * 37 + 11 * k + 101 * c) % 256)
    return (x > 127 if binary else x).reshape(4, -1).astype(np.uint8)


@functools.cache
def fingerprint(name: str, version: int = container.VERSION) -> bytes:
    """What this environment's model NAME makes of the probe in format `version`: the
    first half of the SHA-256 of the coder's output (from version 3 on, after the version
    byte, so that a changed version byte is caught even where the coding is the same). It
    differs wherever the probabilities do. A flow's adds the hash of its tables (built with
    the platform's libm), every entry of which the probe does not reach."""
    prefix = bytes([version]) if version > 2 else b""
    x = probe(zoo.recipe(name)["binarized"], zoo.shape(name))
    tables = getattr(load(name, version)[0], "digest", b"")
    return hashlib.sha256(prefix + encode(name, x, version) + tables).digest()[:16]


def encode(name: str, pixels: np.ndarray, version: int = container.VERSION, costs: Counter = None,
           shape=None) -> bytes:
    """The payload for images (N, dims) coded with model NAME of the zoo, as format
    `version` codes them (earlier ones only to check a file's fingerprint): images of the
    model's shape, or of another `shape` in its tiles (bbans.tiles, one message). With
    `costs`, adds to it what the coding cost, as coder_figures takes it."""
    model, _ = load(name, version)
    method, side = METHODS[zoo.kind(name)], zoo.shape(name)[0]
    if shape is not None and tuple(shape) != tuple(zoo.shape(name)):
        message, before = new_message(), 0
        for filled, part in tiles.cut(pixels, shape, side):
            _codec(method, model, version, filled).push_images(message, part, before, costs)
            before += len(part)
        return message.get_compressed().astype("<u4").tobytes()
    if zoo.kind(name) == "vqvae":
        words, latent_bits = VQCodec(model).encode(pixels)
        if costs is not None:
            costs.update(latent_bits=latent_bits, bits=32 * len(words))
        return LATENT_BITS.pack(latent_bits) + words.astype("<u4").tobytes()
    return _codec(method, model, version).encode(pixels, costs).astype("<u4").tobytes()


def coder_figures(name: str, costs: Counter, dims: int) -> dict:
    """The model's figures on the input as the coder found them, at no extra cost: a
    VAE's -ELBO (one sample of z per image, on the coder's grid, with its networks on
    integers; the first images of each chunk left out, which pop nothing), a VQ-VAE's
    cost and its parts (the whole message), a flow's NLL (its density at the coder's
    dequantization, the first images left out); and, for comparison, the figures of the
    model's card on its test set."""
    if "latent_bits" in costs:
        out = dict(model_bits_per_dim=costs["bits"] / dims, latent_bits_per_dim=costs["latent_bits"] / dims,
                   pixel_bits_per_dim=(costs["bits"] - costs["latent_bits"]) / dims)
    elif costs["images"] and zoo.kind(name) in zoo.FLOWS:
        out = dict(nll_bits_per_dim=costs["bits"] / costs["dims"], nll_images=costs["images"])
    elif costs["images"]:
        out = dict(neg_elbo_bits_per_dim=costs["bits"] / costs["dims"], elbo_images=costs["images"])
    else:
        out = {}
    tested = zoo.card(name)
    return dict(out, figures="coder", **{k: tested[k] for k in ("test_neg_elbo_bits_per_dim", "test_model_bits_per_dim",
                                                                "test_nll_bits_per_dim") if k in tested})


def decode(method: str, name: str, payload: bytes, n: int, version: int, shape=None) -> np.ndarray:
    """The n images of a payload that encode made, of `shape` (default the model's)."""
    model, _ = load(name, version)
    if shape is not None and tuple(shape) != tuple(zoo.shape(name)):
        return _decode_words(functools.partial(_untiled, method, model, version, shape, zoo.shape(name)[0]), payload, n)
    if method != "bbans-vq":
        return _decode_words(_codec(method, model, version).decode, payload, n)
    if len(payload) < LATENT_BITS.size:
        raise BbansError("truncated or corrupt payload")
    images, latent_bits = _decode_words(VQCodec(model).decode, payload[LATENT_BITS.size:], n)
    if latent_bits != LATENT_BITS.unpack_from(payload)[0]:
        raise BbansError("corrupt payload (the bit count of the codes does not match)")
    return images


def _untiled(method: str, model, version: int, shape, side: int, words: np.ndarray, n: int) -> np.ndarray:
    """The n images of `shape` whose tiles a message holds, as encode pushed them."""
    message, groups = new_message(words), tiles.groups(shape, side)
    sizes = [n * rows * cols for _, (_, rows), (_, cols) in groups]
    parts, before = [], sum(sizes)
    for (filled, _, _), size in zip(reversed(groups), reversed(sizes)):
        before -= size
        parts.append(_codec(method, model, version, filled).pop_images(message, size, before))
    check_used_up(message)
    return tiles.paste(parts[::-1], n, shape, side)


def _decode_words(decode, payload: bytes, n: int):
    if len(payload) % 4:
        raise BbansError("truncated or corrupt payload")
    words = np.frombuffer(payload, "<u4").astype(np.uint32)
    try:
        return decode(words, n)
    except BbansError:
        raise
    except Exception as e:  # a corrupt message can drive the coder anywhere
        raise BbansError(f"corrupt payload ({type(e).__name__})") from None


def check(box: Container):
    """Checks that this environment's model is the one that made the container (if a
    model did)."""
    if not box.model:
        return
    if METHODS.get(zoo.kind(zoo.known(box.model))) != box.method:
        raise BbansError(f"corrupt header (method {box.method} with model {box.model!r})")
    _, weights_hash = load(box.model, box.version)
    if bytes.fromhex(weights_hash)[:16] != box.model_hash:
        theirs, ours = box.model_hash.hex(), weights_hash[:32]
        if zoo.is_file(box.model):
            raise BbansError(f"the model file {box.model[len(zoo.FILE_PREFIX):]} is not the one this file was made with "
                             f"(its weights hash {ours}…, the file's {theirs}…)")
        raise BbansError(f"this file was made with other weights of model {box.model} ({theirs}…, this bbans has {ours}…)")
    here = fingerprint(box.model, box.version)
    if box.version > 1 and box.fingerprint != here:  # version 1 files have none
        raise BbansError(f"this file was made in an environment whose model outputs differ: its probe fingerprint "
                         f"is {box.fingerprint.hex()}, here it is {here.hex()}; nothing decoded")
