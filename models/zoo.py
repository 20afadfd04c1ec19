"""The shipped models: names, training recipes, weights and model cards."""
import functools
import hashlib
import json
import math
from pathlib import Path

import numpy as np
import torch

from bbans.errors import BbansError
from models.hvae import HVAE, ExactHVAE
from models.vae import PIXELS, VAE, ExactVAE
from models.vqvae import POSITIONS, VQVAE, ExactVQVAE

ROOT = Path(__file__).parent
WEIGHTS = ROOT / "weights"

CONTEXT_9 = [[0, -1], [-1, 0], [-1, -1], [0, -2], [-2, 0], [-2, 1], [1, -2], [-1, -2], [-2, -1]]
LAPLACE_VAE = dict(likelihood="laplace_ar", hidden=512, latent=50, features=4, head_hidden=32, context=CONTEXT_9)
RECIPE_8BIT = dict(binarized=False, batch=128, lr=1e-3, warmup=5, seed=0)
ARCHS = {"vae": VAE, "vqvae": VQVAE, "hvae": HVAE}
EXACT = {"vae": ExactVAE, "vqvae": ExactVQVAE, "hvae": ExactHVAE}
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
    "vae-8bit-mix": dict(
        arch=dict(LAPLACE_VAE, components=2), data="mnist", epochs=45, **RECIPE_8BIT,
        summary="vae-8bit with a mixture of two discretized Laplaces per pixel, coded with bits back on the "
                "component; 8-bit MNIST"),
    "vae-fashion": dict(
        arch=LAPLACE_VAE, data="fashion-mnist", epochs=60, **RECIPE_8BIT,
        summary="vae-8bit's architecture trained on 8-bit Fashion-MNIST"),
    "vqvae-8bit": dict(
        kind="vqvae",
        arch=dict(codes=16, dim=16, channels=64, features=4, head_hidden=32, prior_embed=8, prior_hidden=128,
                  prior_radius=3, context=CONTEXT_9),
        data="mnist", binarized=False, epochs=25, batch=128, lr=1e-3, seed=0,
        summary="VQ-VAE, 7x7 grid of 16 codes with an autoregressive prior, zero / discretized Laplace pixels "
                "with a 9-pixel causal context; 8-bit MNIST"),
}
# The defaults code smallest among the models that keep 2,000 images/s on this CPU; of
# several, compress takes the one that codes the first images smallest (one per data set).
DEFAULTS = {"binary": ("hvae-binary",), "8bit": ("vae-8bit-mix", "vae-fashion")}


class UnknownModel(BbansError):
    pass


def weights_path(name: str) -> Path:
    return WEIGHTS / f"{name}.pt"


def card(name: str) -> dict:
    path = WEIGHTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def kind(name: str) -> str:
    """"vae", "vqvae" or "hvae"."""
    return ZOO[name].get("kind", "vae")


@functools.cache
def load_network(name: str):
    """The trained torch model NAME, loaded once per process."""
    if name not in ZOO:
        raise UnknownModel(f"unknown model {name!r}; the zoo has: {', '.join(ZOO)}")
    path = weights_path(name)
    if not path.exists():
        raise UnknownModel(f"model {name!r} has no weights at {path}; run `bbans train {name}`")
    saved = torch.load(path, weights_only=True)
    net = ARCHS[kind(name)](**saved["config"])
    net.load_state_dict({k: v.float() for k, v in saved["state_dict"].items()})
    return net.eval()


def weights_hash(vae: torch.nn.Module) -> str:
    """SHA-256 of the weights in a canonical byte form (names, shapes, float32 values)."""
    h = hashlib.sha256()
    for key, value in vae.state_dict().items():
        h.update(key.encode() + str(tuple(value.shape)).encode())
        h.update(value.detach().float().contiguous().numpy().tobytes())
    return h.hexdigest()


@torch.no_grad()
def figures(name: str, pixels, nll_samples=100, nll_images=None, batch=500) -> dict:
    """The model's figures in bits/dim on uint8 images (N, 784): for a VAE, its -ELBO (one
    posterior sample per image, every image) and importance-weighted NLL bound
    (nll_samples per image, on nll_images evenly spaced images, or all), seeded, so
    repeatable; for a VQ-VAE, its cost -log2 p(z) - log2 p(x|z_q) and the parts of it.
    The images go to torch a batch at a time (they may be a memory map of a large file)."""
    dims = pixels.size
    if kind(name) == "vqvae":
        return vq_figures(load_network(name), tensors(pixels, batch), dims)
    vae = load_network(name)
    torch.manual_seed(0)
    neg_elbo = sum(float((kl - rec).sum()) for rec, kl in map(vae.elbo_terms, tensors(pixels, batch)))
    out = dict(neg_elbo_bits_per_dim=neg_elbo / (dims * math.log(2)))
    if nll_samples:
        n = min(nll_images or len(pixels), len(pixels))
        sub = pixels[np.linspace(0, len(pixels) - 1, n).round().astype(int)]
        nll = -sum(float(vae.iw_log_likelihood(xb, nll_samples, chunk=max(1, 20000 // len(xb))).sum())
                   for xb in tensors(sub, batch))
        out.update(nll_bits_per_dim=nll / (sub.size * math.log(2)), nll_samples=nll_samples, nll_images=n)
    return out


def tensors(pixels, batch: int):
    """uint8 images (N, 784) as float32 tensors (B, 28, 28), a batch at a time."""
    for start in range(0, len(pixels), batch):
        yield torch.from_numpy(np.asarray(pixels[start:start + batch], np.float32).reshape(-1, 28, 28))


def vq_figures(vq: VQVAE, batches, dims: int) -> dict:
    pixels, ar, factorized = (torch.cat(t).sum().item() / dims for t in zip(*map(vq.costs, batches)))
    return dict(model_bits_per_dim=pixels + ar, pixel_bits_per_dim=pixels, latent_bits_per_dim=ar,
                factorized_model_bits_per_dim=pixels + factorized,
                uniform_model_bits_per_dim=pixels + POSITIONS * math.log2(vq.codes) / PIXELS)


@functools.cache
def load(name: str):
    """(the model's exact form for the codecs, weights hash) of the trained model NAME."""
    net = load_network(name)
    return EXACT[kind(name)](net), weights_hash(net)
