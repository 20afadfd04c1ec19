import os

import numpy as np
import pytest
import torch

from bbans.codecs import new_message, uniform
from bbans.models.intnet import calibrate
from bbans.models.vae import VAE, ExactVAE


def pytest_collection_modifyitems(items):
    if not os.environ.get("BBANS_DATA"):
        skip = pytest.mark.skip(reason="set BBANS_DATA to the data folder (../shared/data)")
        for item in items:
            if "data" in item.fixturenames:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def data():
    """Marks a test that reads the MNIST files through BBANS_DATA."""
    return os.environ["BBANS_DATA"]


WIDE_CONTEXT = ((0, -1), (-1, 0), (-1, -1), (0, -2), (-2, 1), (1, -2))


@pytest.fixture(scope="session", params=["bernoulli", "laplace_ar", "laplace_ar wide context", "laplace_ar mixture",
                                        "laplace_ar zero head", "bernoulli integer", "laplace_ar integer",
                                        "laplace_ar integer flow posterior"])
def tiny_model(request):
    """An untrained small VAE of each likelihood, as the codecs see it: its networks on
    float64 grids, or on integers (calibrated on random images), one with a flow
    posterior (random, not the identity it starts as)."""
    torch.manual_seed(1)
    likelihood, _, variant = request.param.partition(" ")
    extra = {"": {}, "integer": {}, "wide context": dict(context=WIDE_CONTEXT), "mixture": dict(components=2),
             "zero head": dict(components=2, zero_hidden=4), "integer flow posterior": dict(post_groups=2, post_hidden=8)
             }[variant]
    vae = VAE(likelihood, hidden=32, latent=4, features=2, head_hidden=8, **extra).eval()
    if likelihood == "laplace_ar":  # wide Laplaces, so no pixel is nearly impossible
        biases = {"mixture": [0.0, 0.0, 0.3, 0.8, 4.0, 3.0], "zero head": [0.0, 0.3, 0.8, 4.0, 3.0]}
        vae.head[-1].bias.data = torch.tensor(biases.get(variant, [0.0, 0.5, 4.0]))
    if vae.post is not None:
        torch.nn.init.normal_(vae.post[-1].weight, std=0.5)
        torch.nn.init.normal_(vae.post[-1].bias, std=0.3)
    if "integer" not in variant:
        return vae, ExactVAE(vae)
    images = torch.from_numpy(images_for(likelihood, 200, seed=9).reshape(-1, 28, 28)).float()
    return vae, ExactVAE(vae, calibrate(vae, images))


def filled_message(words=64, seed=0):
    """A message holding random bits, so that pops have something to take."""
    message = new_message()
    uniform(2**16, (words,)).push(message, np.random.default_rng(seed).integers(0, 2**16, words))
    return message


def bits_of(push):
    """The bits that push(message) adds to a filled message."""
    message = filled_message()
    before = message.num_bits()
    push(message)
    return message.num_bits() - before


def images_for(likelihood, n, seed=0):
    """Random images for a model of that likelihood ("bernoulli" or "laplace_ar")."""
    rng = np.random.default_rng(seed)
    if likelihood == "bernoulli":
        return (rng.random((n, 784)) < 0.3).astype(np.uint8)
    x = rng.integers(0, 256, (n, 784))
    return np.where(rng.random((n, 784)) < 0.6, 0, x).astype(np.uint8)


@pytest.fixture(scope="session")
def tiny_vq():
    """An untrained small VQ-VAE, and its exact form for the codec."""
    from bbans.models.vqvae import VQVAE, ExactVQVAE
    torch.manual_seed(2)
    vq = VQVAE(codes=8, dim=4, channels=8, features=2, head_hidden=8, prior_embed=4, prior_hidden=16,
               prior_radius=2).eval()
    vq.head[-1].bias.data = torch.tensor([0.0, 0.5, 4.0])
    with torch.no_grad():  # codebook vectors among the encoder's outputs, so all are used
        vectors = vq.encode(torch.randint(0, 256, (4, 28, 28))).reshape(-1, 4)
        vq.codebook.copy_(vectors[torch.randperm(len(vectors))[:8]])
    vq.factorized.data.normal_()
    return vq, ExactVQVAE(vq)
