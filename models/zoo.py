"""The shipped models: names, training recipes, weights and model cards."""
import functools
import hashlib
import json
import math
from pathlib import Path

import numpy as np
import torch

from bbans.errors import BbansError
from models.vae import VAE, ExactVAE

ROOT = Path(__file__).parent
WEIGHTS = ROOT / "weights"

ZOO = {
    "vae-binary": dict(
        arch=dict(likelihood="bernoulli", hidden=512, latent=40),
        data="mnist", binarized=True, epochs=100, batch=128, lr=1e-3, warmup=5, seed=0,
        summary="MLP VAE, 40 latents, Bernoulli pixels; binarized MNIST"),
    "vae-8bit": dict(
        arch=dict(likelihood="laplace_ar", hidden=512, latent=50, features=4, head_hidden=32,
                  context=[[0, -1], [-1, 0], [-1, -1], [0, -2], [-2, 0], [-2, 1], [1, -2], [-1, -2], [-2, -1]]),
        data="mnist", binarized=False, epochs=60, batch=128, lr=1e-3, warmup=5, seed=0,
        summary="MLP VAE, 50 latents, zero / discretized Laplace pixels with a 9-pixel causal context; 8-bit MNIST"),
}
DEFAULTS = {"binary": "vae-binary", "8bit": "vae-8bit"}


class UnknownModel(BbansError):
    pass


def weights_path(name: str) -> Path:
    return WEIGHTS / f"{name}.pt"


def card(name: str) -> dict:
    path = WEIGHTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else {}


@functools.cache
def load_vae(name: str) -> VAE:
    """The trained model NAME, loaded once per process."""
    if name not in ZOO:
        raise UnknownModel(f"unknown model {name!r}; the zoo has: {', '.join(ZOO)}")
    path = weights_path(name)
    if not path.exists():
        raise UnknownModel(f"model {name!r} has no weights at {path}; run `bbans train {name}`")
    saved = torch.load(path, weights_only=True)
    vae = VAE(**saved["config"])
    vae.load_state_dict({k: v.float() for k, v in saved["state_dict"].items()})
    return vae.eval()


def weights_hash(vae: VAE) -> str:
    """SHA-256 of the weights in a canonical byte form (names, shapes, float32 values)."""
    h = hashlib.sha256()
    for key, value in vae.state_dict().items():
        h.update(key.encode() + str(tuple(value.shape)).encode())
        h.update(value.detach().float().contiguous().numpy().tobytes())
    return h.hexdigest()


@torch.no_grad()
def figures(name: str, pixels, nll_samples=100, nll_images=None, batch=500) -> dict:
    """The model's -ELBO (one posterior sample per image, every image) and importance-
    weighted NLL bound (nll_samples per image, on nll_images evenly spaced images, or all),
    in bits/dim, on uint8 images (N, 784); seeded, so repeatable."""
    vae = load_vae(name)
    torch.manual_seed(0)
    x = torch.from_numpy(np.asarray(pixels, np.float32).reshape(-1, 28, 28))
    neg_elbo = sum(float((kl - rec).sum()) for rec, kl in map(vae.elbo_terms, x.split(batch)))
    out = dict(neg_elbo_bits_per_dim=neg_elbo / (x.numel() * math.log(2)))
    if nll_samples:
        n = min(nll_images or len(x), len(x))
        sub = x[np.linspace(0, len(x) - 1, n).round().astype(int)]
        nll = -sum(float(vae.iw_log_likelihood(xb, nll_samples, chunk=max(1, 20000 // len(xb))).sum())
                   for xb in sub.split(batch))
        out.update(nll_bits_per_dim=nll / (sub.numel() * math.log(2)), nll_samples=nll_samples, nll_images=n)
    return out


@functools.cache
def load(name: str):
    """(ExactVAE, weights hash) of the trained model NAME, for the codecs."""
    vae = load_vae(name)
    return ExactVAE(vae), weights_hash(vae)
