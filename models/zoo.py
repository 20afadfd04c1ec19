"""The shipped models: names, training recipes, weights and model cards."""
import functools
import hashlib
import json
import math
from pathlib import Path

import numpy as np
import torch

from bbans.errors import BbansError
from bbans.models.colour import ColourVAE, ExactColourVAE
from bbans.models.exact_flow import ExactRealNVP
from bbans.models.flows import FFJORD, RealNVP, bits_per_dim, dequantize
from bbans.models.hvae import HVAE, ExactHVAE
from bbans.models.vae import PIXELS, VAE, ExactVAE
from bbans.models.vqvae import POSITIONS, VQVAE, ExactVQVAE

ROOT = Path(__file__).parent
WEIGHTS = ROOT / "weights"

CONTEXT_9 = [[0, -1], [-1, 0], [-1, -1], [0, -2], [-2, 0], [-2, 1], [1, -2], [-1, -2], [-2, -1]]
LAPLACE_VAE = dict(likelihood="laplace_ar", hidden=512, latent=50, features=4, head_hidden=32, context=CONTEXT_9)
RECIPE_8BIT = dict(binarized=False, batch=128, lr=1e-3, warmup=5, seed=0)
ARCHS = {"vae": VAE, "vqvae": VQVAE, "hvae": HVAE, "colour": ColourVAE, "realnvp": RealNVP, "ffjord": FFJORD}
EXACT = {"vae": ExactVAE, "vqvae": ExactVQVAE, "hvae": ExactHVAE, "colour": ExactColourVAE, "realnvp": ExactRealNVP}
FLOWS = ("realnvp", "ffjord")  # exact-likelihood models: their figure is the NLL
INTEGER = ("vae", "hvae", "colour")  # kinds whose MLPs can run on integers
TILED = ("vae", "hvae", "colour")  # kinds that code images of any size in tiles of their shape (bbans.tiles)
ZOO = {
    "vae-binary": dict(
        arch=dict(likelihood="bernoulli", hidden=512, latent=40),
        data="mnist", binarized=True, epochs=100, batch=128, lr=1e-3, warmup=5, seed=0,
        summary="MLP VAE, 40 latents, Bernoulli pixels; binarized MNIST"),
    "vae-binary-fast": dict(
        arch=dict(likelihood="bernoulli", hidden=96, latent=32, layers=1),
        data="mnist", binarized=True, epochs=400, batch=128, lr=2e-3, warmup=5, seed=0,
        summary="MLP VAE with one hidden layer of 96, 32 latents, Bernoulli pixels, sized for 30,000 images/s "
                "on one core; binarized MNIST"),
    "vae-8bit": dict(
        arch=LAPLACE_VAE, data="mnist", epochs=60, **RECIPE_8BIT,
        summary="MLP VAE, 50 latents, zero / discretized Laplace pixels with a 9-pixel causal context; 8-bit MNIST"),
    "hvae-binary": dict(
        kind="hvae",
        arch=dict(latents=[32, 24, 16], hidden=512, latent_hidden=256),
        data="mnist", binarized=True, epochs=100, batch=128, lr=1e-3, warmup=10, seed=0,
        summary="Hierarchical VAE, latent layers of 32, 24 and 16, Bernoulli pixels, coded with Bit-Swap; "
                "binarized MNIST"),
    "hvae-binary-maf": dict(
        kind="hvae",
        arch=dict(latents=[32, 24, 16], hidden=512, latent_hidden=256, top_groups=8, top_hidden=256),
        data="mnist", binarized=True, epochs=100, batch=128, lr=1e-3, warmup=10, seed=0, card_nll=(1000, 1000),
        summary="hvae-binary with an autoregressive flow prior on its top layer (MADE, 8 groups of 2 latents); "
                "binarized MNIST"),
    "hvae-binary-flowq": dict(
        kind="hvae",
        arch=dict(latents=[32, 24, 16], hidden=512, latent_hidden=256, post_groups=4, post_hidden=256),
        data="mnist", binarized=True, epochs=30, batch=128, lr=3e-4, warmup=1, seed=100, start="hvae-binary",
        card_nll=(1000, 1000),
        summary="hvae-binary with autoregressive flow posteriors (MADE, 4 groups) on its three layers, trained 30 "
                "epochs on from hvae-binary's 100; binarized MNIST"),
    "vae-8bit-mix": dict(
        arch=dict(LAPLACE_VAE, components=2), data="mnist", epochs=45, **RECIPE_8BIT,
        summary="vae-8bit with a mixture of two discretized Laplaces per pixel, coded with bits back on the "
                "component; 8-bit MNIST"),
    "vae-8bit-sparse": dict(
        arch=dict(LAPLACE_VAE, components=2, zero_hidden=16), data="mnist", epochs=45, **RECIPE_8BIT,
        summary="vae-8bit-mix with a head of its own (one hidden layer of 16) for each pixel's nonzero logit, so "
                "that the Laplaces' head runs only on the nonzero pixels; 8-bit MNIST"),
    "vae-8bit-sparse-wide": dict(
        arch=dict(LAPLACE_VAE, components=2, zero_hidden=32), data="mnist", epochs=45, **RECIPE_8BIT,
        summary="vae-8bit-sparse with a nonzero head of 32 units: smaller files, some 10% slower; 8-bit MNIST"),
    "vae-fashion": dict(
        arch=LAPLACE_VAE, data="fashion-mnist", epochs=60, **RECIPE_8BIT,
        summary="vae-8bit's architecture trained on 8-bit Fashion-MNIST"),
    "vae-fashion-flowq": dict(
        arch=dict(LAPLACE_VAE, post_groups=4, post_hidden=256), data="fashion-mnist", epochs=15, batch=128, lr=3e-4,
        warmup=1, seed=100, start="vae-fashion", binarized=False, card_nll=(1000, 1000),
        summary="vae-fashion with an autoregressive flow posterior (MADE, 4 groups), trained 15 epochs on from "
                "vae-fashion's 60; 8-bit Fashion-MNIST"),
    "vqvae-8bit": dict(
        kind="vqvae",
        arch=dict(codes=16, dim=16, channels=64, features=4, head_hidden=32, prior_embed=8, prior_hidden=128,
                  prior_radius=3, context=CONTEXT_9),
        data="mnist", binarized=False, epochs=25, batch=128, lr=1e-3, seed=0,
        summary="VQ-VAE, 7x7 grid of 16 codes with an autoregressive prior, zero / discretized Laplace pixels "
                "with a 9-pixel causal context; 8-bit MNIST"),
    "vae-cifar": dict(
        kind="colour", arch=dict(hidden=256, latent=32, features=4, head_hidden=64),
        data="cifar-10", binarized=False, epochs=18, batch=16, lr=2e-3, warmup=1, free_bits=0.1, clip=5.0, seed=0,
        card_nll=(100, 1000),
        reproduce="bbans train vae-cifar; bbans train vae-cifar --epochs 32 --resume",  # 18 epochs, extended by 14
        summary="MLP VAE, 32 latents, a causal colour head (11 neighbours, two discretized Laplaces per channel, "
                "G and B shifted by the earlier channels); CIFAR-10"),
    "realnvp": dict(
        kind="realnvp", arch=dict(scales=2, hidden=[16, 32, 64], blocks=1, alpha=0.05),
        data="mnist", binarized=False, epochs=12, batch=64, lr=1e-3, seed=0, clip=100.0, curve_every=300,
        reproduce="bbans train realnvp; bbans train realnvp --epochs 24 --resume",  # 12 epochs, extended by 12
        summary="Multi-scale RealNVP, two scales of affine couplings (checkerboard, then channel-wise after a "
                "squeeze), ActNorm, logit pre-processing; 8-bit MNIST, uniform dequantization"),
    "ffjord": dict(
        kind="ffjord", arch=dict(hidden=32, layers=3, alpha=0.05, regularization=0.01),
        data="mnist", binarized=False, epochs=2, stop_epoch=1.427, batch=64, lr=2e-3, seed=0, clip=100.0,
        curve_every=100,
        summary="Multi-scale FFJORD, two continuous flows (4x14x14 and 8x7x7) with free-form convolutional "
                "dynamics, Hutchinson trace and the adjoint method in training; 8-bit MNIST, uniform dequantization"),
}
# The defaults code smallest among the models that keep the speeds aimed at on one AVX2
# core: 20,000 images/s binarized, 4,000 8-bit MNIST, 3,000 Fashion-MNIST, 500 CIFAR-10.
# Of several, compress takes the one that codes a sample of the images smallest (one per
# data set).
DEFAULTS = {"binary": ("hvae-binary",), "8bit": ("vae-8bit-sparse-wide", "vae-fashion-flowq"), "colour": ("vae-cifar",)}
SHAPES = {"mnist": (28, 28, 1), "fashion-mnist": (28, 28, 1), "cifar-10": (32, 32, 3)}  # (height, width, channels)
MODEL_SHAPES = set(SHAPES.values())  # the shapes of image that models code


class UnknownModel(BbansError):
    pass


def weights_path(name: str) -> Path:
    return WEIGHTS / f"{name}.pt"


def weights_file(name: str) -> Path:
    """Where the weights of model NAME are: the zoo's, or a model file."""
    return Path(name[len(FILE_PREFIX):]) if is_file(name) else weights_path(name)


# A model trained with `bbans train --data` lives in a file of its own; its name inside a
# process is FILE_PREFIX + the file's absolute path, and its recipe is in the file.
FILE_PREFIX = "file:"


def from_file(path) -> str:
    """The name of the model in the file `path` (that bbans.models.train.train wrote of a user's images)."""
    path = Path(path)
    if not path.is_file():
        raise UnknownModel(f"no model file {path}")
    return FILE_PREFIX + str(path.resolve())


def model_name(spec: str) -> str:
    """The name of the model `spec` names: a model of the zoo, or the path of a model file."""
    if spec in ZOO or is_file(spec):
        return spec
    if Path(spec).is_file():
        return from_file(spec)
    raise UnknownModel(f"unknown model {spec!r}: neither a model of the zoo ({', '.join(ZOO)}) nor a model file")


def is_file(name: str) -> bool:
    return name.startswith(FILE_PREFIX)


@functools.cache
def _file_recipe(name: str) -> dict:
    try:
        saved = torch.load(name[len(FILE_PREFIX):], weights_only=True)
        return dict(saved["recipe"], shape=tuple(saved["recipe"]["shape"]))
    except Exception as e:  # not a file of ours
        raise UnknownModel(f"{name[len(FILE_PREFIX):]} is not a bbans model file ({type(e).__name__})") from None


def recipe(name: str) -> dict:
    """The recipe of model NAME: the zoo's, or the one its file holds."""
    return _file_recipe(name) if is_file(name) else ZOO[known(name)]


def recorded(name: str) -> str:
    """The model's name as a file records it: a file model's FILE_PREFIX and file name (in
    ASCII, at most 200 characters: it only names the file to ask for)."""
    return FILE_PREFIX + Path(name).name.encode("ascii", "replace")[:200].decode() if is_file(name) else name


def card(name: str) -> dict:
    path = Path(name[len(FILE_PREFIX):]).with_suffix(".json") if is_file(name) else WEIGHTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def kind(name: str) -> str:
    """"vae", "vqvae", "hvae", "colour" (bits-back codecs), "realnvp" (a flow with a codec) or
    "ffjord" (a flow without)."""
    return recipe(name).get("kind", "vae")


def is_codec(name: str) -> bool:
    return kind(name) in EXACT


def known(name: str) -> str:
    """NAME, if the zoo has it (or it names a model file)."""
    if is_file(name):
        recipe(name)
    elif name not in ZOO:
        raise UnknownModel(f"unknown model {name!r}; the zoo has: {', '.join(ZOO)}")
    return name


def shape(name: str) -> tuple:
    """The shape of the images model NAME codes: (height, width, channels)."""
    r = recipe(name)
    return r["shape"] if "shape" in r else SHAPES[r["data"]]


def shape_text(shape) -> str:
    """(28, 28, 1) -> "28x28 grey", (32, 32, 3) -> "32x32x3"."""
    return f"{shape[0]}x{shape[1]}" + (" grey" if shape[2] == 1 else f"x{shape[2]}")


def codes(name: str, image_shape) -> bool:
    """Whether model NAME codes images of `image_shape`: those of its own shape, and for the
    kinds of TILED those of any size with its channels, in its tiles."""
    own = tuple(shape(name))
    return tuple(image_shape) == own or (kind(name) in TILED and image_shape[2] == own[2])


def defaults(shape: tuple, binary: bool) -> tuple:
    """The default models for images of `shape`, all of whose values are 0 or 1 or not
    (`binary`): those of its data sets' shape (MODEL_SHAPES), or, for another size, those
    of the data sets with its channels that code it in tiles; none for other channels."""
    found = DEFAULTS["colour"] if shape[2] == 3 else DEFAULTS["binary" if binary else "8bit"] if shape[2] == 1 else ()
    return tuple(name for name in found if codes(name, shape))


def trained_on(data: str, binarized: bool) -> list:
    """The zoo's models trained on this data set, binarized or not."""
    return [name for name, r in ZOO.items() if (r["data"], r["binarized"]) == (data, binarized)]


@functools.cache
def load_network(name: str):
    """The trained torch model NAME, loaded once per process."""
    path = weights_file(known(name))
    if not path.exists():
        raise UnknownModel(f"model {name!r} has no weights at {path}; run `bbans train {name}`")
    return read_network(path, kind(name))


def read_network(path, arch_kind: str):
    """The torch model of kind `arch_kind` (ARCHS) whose weights `path` holds, as training
    wrote them."""
    saved = torch.load(path, weights_only=True)
    net = ARCHS[arch_kind](**saved["config"])
    net.load_state_dict({k: v.float() for k, v in saved["state_dict"].items()})
    net.calibration = saved.get("calibration")  # for its integer form (bbans.models.intnet)
    return net.eval()


def weights_hash(vae: torch.nn.Module) -> str:
    """SHA-256 of the weights in a canonical byte form (names, shapes, float32 values)."""
    h = hashlib.sha256()
    for key, value in vae.state_dict().items():
        h.update(key.encode() + str(tuple(value.shape)).encode())
        h.update(value.detach().float().contiguous().numpy().tobytes())
    return h.hexdigest()


@torch.no_grad()
def figures(name: str, pixels, nll_samples=100, nll_images=None, batch=500, seed=0) -> dict:
    """The model's figures in bits/dim on uint8 images (N, dims): for a VAE, its -ELBO (one
    posterior sample per image, every image) and importance-weighted NLL bound
    (nll_samples per image, on nll_images evenly spaced images, or all); for a VQ-VAE,
    its cost -log2 p(z) - log2 p(x|z_q) and the parts of it; for a flow, its NLL
    (flow_figures). Seeded, so repeatable. The images go to torch a batch at a time (they
    may be a memory map of a large file)."""
    dims = pixels.size
    if kind(name) == "vqvae":
        return vq_figures(load_network(name), tensors(pixels, batch), dims)
    if kind(name) in FLOWS:
        return flow_figures(load_network(name), pixels, seed)
    vae = load_network(name)
    torch.manual_seed(seed)
    neg_elbo = sum(float((kl - rec).sum()) for rec, kl in map(vae.elbo_terms, tensors(pixels, batch, shape(name))))
    out = dict(neg_elbo_bits_per_dim=neg_elbo / (dims * math.log(2)))
    if nll_samples:
        n = min(nll_images or len(pixels), len(pixels))
        sub = pixels[np.linspace(0, len(pixels) - 1, n).round().astype(int)]
        per_image = int(np.prod(shape(name)))  # the sample batches hold some 16 M pixel values
        nll = -sum(float(vae.iw_log_likelihood(xb, nll_samples, chunk=max(1, 20000 * 784 // (len(xb) * per_image))).sum())
                   for xb in tensors(sub, batch, shape(name)))
        out.update(nll_bits_per_dim=nll / (sub.size * math.log(2)), nll_samples=nll_samples, nll_images=n)
    return out


@torch.no_grad()
def flow_figures(flow, pixels, seed: int = 0, batch: int = 200, check: int = 100) -> dict:
    """A flow's NLL in bits/dim: the uniform-dequantization bound E_u[-log2 p(x + u)] / D,
    one draw of u per image (seeded). FFJORD solves with its adaptive test solver and a
    Hutchinson trace (one Rademacher probe per image, seeded); its figures add the solver,
    the function evaluations per image (both CNFs; the images of a batch share the
    solver's steps, so this is per batch, averaged over batches) and the
    standard error of the NLL that the probes cause, from a second probe (and the same u)
    on the first `check` images."""
    torch.manual_seed(seed)
    noise = torch.Generator().manual_seed(seed)
    ffjord = isinstance(flow, FFJORD)
    if ffjord:
        flow.solver, flow.adjoint = FFJORD.TEST_SOLVER, False
        for block in flow.blocks:
            block.dynamics.evaluations = 0
    per_image = torch.cat([bits_per_dim(flow(dequantize(xb[:, None], noise)), xb[0].numel())
                           for xb in tensors(pixels, batch)])
    out = dict(nll_bits_per_dim=float(per_image.mean()), nll_bound="uniform dequantization, one draw per image")
    if ffjord:
        batches = -(-len(pixels) // batch)
        out.update(solver=dict(FFJORD.TEST_SOLVER), evaluations_per_image=round(flow.evaluations() / batches, 1),
                   trace="Hutchinson, one Rademacher probe per image")
        first = next(tensors(pixels[:min(check, batch)], batch))  # their u is the first batch's
        again = bits_per_dim(flow(dequantize(first[:, None], torch.Generator().manual_seed(seed))), first[0].numel())
        variance = float(((again - per_image[:len(again)]) ** 2).mean() / 2)
        out["nll_trace_std_error_bits_per_dim"] = (variance / len(pixels)) ** 0.5
    return out


def tensors(pixels, batch: int, image_shape=(28, 28, 1)):
    """uint8 images (N, dims) as float32 tensors (B, height, width), or (B, height, width,
    channels) for colour, a batch at a time."""
    dims = image_shape[:2] if image_shape[2] == 1 else image_shape
    for start in range(0, len(pixels), batch):
        yield torch.from_numpy(np.asarray(pixels[start:start + batch], np.float32).reshape(-1, *dims))


def vq_figures(vq: VQVAE, batches, dims: int) -> dict:
    pixels, ar, factorized = (torch.cat(t).sum().item() / dims for t in zip(*map(vq.costs, batches)))
    return dict(model_bits_per_dim=pixels + ar, pixel_bits_per_dim=pixels, latent_bits_per_dim=ar,
                factorized_model_bits_per_dim=pixels + factorized,
                uniform_model_bits_per_dim=pixels + POSITIONS * math.log2(vq.codes) / PIXELS)


@functools.cache
def load(name: str, integer: bool = True):
    """(the model's exact form for the codecs, weights hash) of the trained model NAME:
    with `integer` its MLPs run on integers (bbans.models.intnet; from format version 4 on),
    else on float64 grids (bbans.models.grids.ExactNet)."""
    net = load_network(name)  # an unknown name fails here
    if not is_codec(name):
        raise UnknownModel(f"model {name!r} is a flow: it has no codec, only figures (bbans evaluate)")
    if kind(name) in INTEGER:
        if integer and not net.calibration:
            raise UnknownModel(f"model {name!r} has no calibration for its integer form; run `bbans train {name}`")
        return EXACT[kind(name)](net, net.calibration if integer else None), weights_hash(net)
    return EXACT[kind(name)](net), weights_hash(net)
