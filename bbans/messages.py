"""A model of the zoo's messages for chunks of 28x28 grey images: coding and decoding
them, the figures the coder finds on the way, and the fingerprint by which a decoder
checks that its environment computes the encoder's probabilities."""
import functools
import hashlib
import struct
from collections import Counter

import numpy as np

from bbans import container, formats
from bbans.codecs.vae import BitSwapCodec, VAECodec
from bbans.codecs.vq import VQCodec
from bbans.container import Container
from bbans.errors import BbansError
from bbans.models import zoo

METHODS = {"vae": "bbans-vae", "vqvae": "bbans-vq", "hvae": "bbans-bitswap"}  # the zoo's kinds of model
LATENT_BITS = struct.Struct(">Q")  # ahead of a VQ-VAE message: the bits its codes take


def load(name: str, version: int = container.VERSION):
    """(model NAME's exact form for the codecs, its weights hash) as format `version`
    computes: its MLPs on integers from version 4 on, on float64 grids before."""
    return zoo.load(name, integer=version >= 4)


def _vae_codec(method: str, model, version: int) -> VAECodec:
    return BitSwapCodec(model, version=version) if method == "bbans-bitswap" else VAECodec(model, version=version)


def probe(binary: bool) -> np.ndarray:
    """A fixed input for the fingerprint: four striped grey images with zeros among them,
    made by integer arithmetic alone (binarized for a binary model)."""
    k, i, j = np.ix_(range(4), range(28), range(28))
    x = np.where((i + 2 * j + k) % 4 == 0, 0, ((i * (k + 3) + j * (2 * k + 5)) * 37 + 11 * k) % 256)
    return (x > 127 if binary else x).reshape(4, formats.PIXELS).astype(np.uint8)


@functools.cache
def fingerprint(name: str, version: int = container.VERSION) -> bytes:
    """What this environment's model NAME makes of the probe in format `version`: the
    first half of the SHA-256 of the coder's output (from version 3 on, after the version
    byte, so that a changed version byte is caught even where the coding is the same). It
    differs wherever the probabilities do."""
    prefix = bytes([version]) if version > 2 else b""
    return hashlib.sha256(prefix + encode(name, probe(zoo.ZOO[name]["binarized"]), version)).digest()[:16]


def encode(name: str, pixels: np.ndarray, version: int = container.VERSION, costs: Counter = None) -> bytes:
    """The payload for images (N, 784) coded with model NAME of the zoo, as format
    `version` codes them (earlier ones only to check a file's fingerprint). With `costs`,
    adds to it what the coding cost, as coder_figures takes it."""
    model, _ = load(name, version)
    if zoo.kind(name) == "vqvae":
        words, latent_bits = VQCodec(model).encode(pixels)
        if costs is not None:
            costs.update(latent_bits=latent_bits, bits=32 * len(words))
        return LATENT_BITS.pack(latent_bits) + words.astype("<u4").tobytes()
    return _vae_codec(METHODS[zoo.kind(name)], model, version).encode(pixels, costs).astype("<u4").tobytes()


def coder_figures(name: str, costs: Counter, dims: int) -> dict:
    """The model's figures on the input as the coder found them, at no extra cost: a
    VAE's -ELBO (one sample of z per image, on the coder's grid, with its networks on
    integers; the first images of each chunk left out, which pop nothing), a VQ-VAE's
    cost and its parts (the whole message); and, for comparison, the figures of the
    model's card on its test set."""
    if "latent_bits" in costs:
        out = dict(model_bits_per_dim=costs["bits"] / dims, latent_bits_per_dim=costs["latent_bits"] / dims,
                   pixel_bits_per_dim=(costs["bits"] - costs["latent_bits"]) / dims)
    elif costs["images"]:
        out = dict(neg_elbo_bits_per_dim=costs["bits"] / (costs["images"] * formats.PIXELS), elbo_images=costs["images"])
    else:
        out = {}
    tested = zoo.card(name)
    return dict(out, figures="coder", **{k: tested[k] for k in ("test_neg_elbo_bits_per_dim", "test_model_bits_per_dim",
                                                                "test_nll_bits_per_dim") if k in tested})


def decode(method: str, name: str, payload: bytes, n: int, version: int) -> np.ndarray:
    model, _ = load(name, version)
    if method != "bbans-vq":
        return _decode_words(_vae_codec(method, model, version).decode, payload, n)
    if len(payload) < LATENT_BITS.size:
        raise BbansError("truncated or corrupt payload")
    images, latent_bits = _decode_words(VQCodec(model).decode, payload[LATENT_BITS.size:], n)
    if latent_bits != LATENT_BITS.unpack_from(payload)[0]:
        raise BbansError("corrupt payload (the bit count of the codes does not match)")
    return images


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
    if box.model in zoo.ZOO and METHODS.get(zoo.kind(box.model)) != box.method:
        raise BbansError(f"corrupt header (method {box.method} with model {box.model!r})")
    _, weights_hash = load(box.model, box.version)
    if bytes.fromhex(weights_hash)[:16] != box.model_hash:
        raise BbansError(f"this file was made with other weights of model {box.model} "
                         f"({box.model_hash.hex()}…, this bbans has {weights_hash[:32]}…)")
    here = fingerprint(box.model, box.version)
    if box.version > 1 and box.fingerprint != here:  # version 1 files have none
        raise BbansError(f"this file was made in an environment whose model outputs differ: its probe fingerprint "
                         f"is {box.fingerprint.hex()}, here it is {here.hex()}; nothing decoded")
