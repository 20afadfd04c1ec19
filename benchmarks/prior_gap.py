"""How much a flow prior could save: each latent layer's KL (bits an image), and how much of
it an autoregressive flow prior (bbans.models.made), fitted to the frozen posteriors of a
trained single-layer VAE, takes back.

    BBANS_DATA=../shared/data python -m benchmarks.prior_gap [--epochs 8] [--models ...]

For a hierarchical VAE: E[log q(z_i | .) - log p(z_i | z_i+1)] per layer on 2,000 held-out
test images (one sample each). For a VAE: its KL to N(0, I) on the test set, then a MADE
(one hidden layer of 512, 10 groups) trained on samples of q(z|x) over the training set,
and E_q[log q(z|x) - log p_MADE(z)] on the test set (four samples an image).
"""
import argparse
import math

import numpy as np
import torch

from bbans.models import zoo
from bbans.models.data import binarize, load_images
from bbans.models.hvae import gaussian, log_normal
from bbans.models.made import made
from bbans.models.train import batch_images, held_out

BITS = 1 / math.log(2)


@torch.no_grad()
def layer_kls(name: str) -> list:
    x = batch_images(held_out("mnist"), True, np.random.RandomState(0))
    return [float(kl.mean()) * BITS for kl in zoo.load_network(name).eval().layer_terms(x)[1]]


@torch.no_grad()
def posteriors(vae, images: np.ndarray):
    parts = [vae.posterior(torch.from_numpy(images[i:i + 1000])) for i in range(0, len(images), 1000)]
    return torch.cat([m for m, _ in parts]), torch.cat([s for _, s in parts])


def flow_gap(name: str, epochs: int) -> tuple:
    """(KL to N(0, I), KL to the fitted MADE), bits an image on the test set."""
    vae, recipe = zoo.load_network(name).eval(), zoo.recipe(name)
    prep = binarize if recipe["binarized"] else (lambda x: x)
    (train_mu, train_ls), (mu, ls) = (posteriors(vae, prep(load_images(recipe["data"], split)))
                                      for split in ("train", "test"))
    prior = made(vae.latent, 512, 10)
    opt = torch.optim.Adam(prior.parameters(), 1e-3)

    def log_p(z):
        return log_normal(z, *gaussian(prior(z)))

    for _ in range(epochs):
        for batch in torch.randperm(len(train_mu)).split(256):
            z = train_mu[batch] + train_ls[batch].exp() * torch.randn_like(train_mu[batch])
            loss = -log_p(z).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    standard = 0.5 * (mu**2 + torch.exp(2 * ls) - 1 - 2 * ls).sum(-1).mean()
    with torch.no_grad():
        fitted = 0
        for _ in range(4):
            z = mu + ls.exp() * torch.randn_like(mu)
            fitted = fitted + (log_normal(z, mu, ls) - log_p(z)).mean() / 4
    return float(standard) * BITS, float(fitted) * BITS


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.prior_gap", description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--models", nargs="+", default=["hvae-binary", "hvae-binary-maf", "vae-binary",
                                                        "vae-8bit-sparse-wide"])
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    torch.set_num_threads(1)
    for name in args.models:
        if zoo.kind(name) == "hvae":
            kls = layer_kls(name)
            print(f"{name}: KL of z_1..z_{len(kls)} " + ", ".join(f"{k:.2f}" for k in kls) + " bits an image")
        else:
            standard, fitted = flow_gap(name, args.epochs)
            print(f"{name}: KL {standard:.2f} bits an image to N(0, I), {fitted:.2f} to a MADE fitted to its "
                  f"posteriors ({standard - fitted:.2f} saved)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
