"""How much a better posterior saves a VAE or a hierarchical VAE: its -ELBO, with each
layer's flow posterior (bbans.models.made) taken out, with a diagonal Gaussian over all
its latents fitted to each image alone, and its NLL. What the fitted Gaussians take back
is the amortization gap (Cremer, Li and Duvenaud 2018), which no flow on the networks'
posteriors can close.

    BBANS_DATA=../shared/data python -m benchmarks.posterior_gap [--models NAME|WEIGHTS.pt ...] [--data VARIANT]

In bits/dim on the 2,000 held-out test images (those of the training curves): -ELBO, the
mean of 5 one-sample estimates (with its standard error), and for a flow posterior the
same with one layer's flow zeroed (its Gaussian alone). In bits an image on the first
`--images` of them: -ELBO (64 samples an image), the fitted Gaussians' -ELBO (Adam on each
image's means and log-sigmas, from the networks' means, `--steps` steps of 16 samples;
then 64 samples), and the importance-weighted NLL (1,000 samples). A WEIGHTS.pt is a
run's weights (`python -m bbans.models.train NAME 1 OUT`); `--data` is the data set of all
the models (mnist-binarized, mnist or fashion-mnist).
"""
import argparse
import math

import numpy as np
import torch

from bbans.models import zoo
from bbans.measure import VARIANTS
from bbans.models.hvae import gaussian
from bbans.models.train import batch_images, held_out
from bbans.models.vae import log_normal

BITS = 1 / math.log(2)


def network(spec: str):
    if not spec.endswith(".pt"):
        return zoo.load_network(spec)
    return zoo.read_network(spec, "hvae" if "latents" in torch.load(spec, weights_only=True)["config"] else "vae")


def flows(net) -> list:
    """The model's flow posteriors, one a layer."""
    return [] if net.post is None else list(net.post) if isinstance(net.post, torch.nn.ModuleList) else [net.post]


@torch.no_grad()
def neg_elbo(net, x, draws: int = 5):
    """-ELBO in bits/dim: the mean of `draws` one-sample estimates, and its standard error."""
    values = []
    for seed in range(draws):
        torch.manual_seed(seed)
        rec, kl = net.elbo_terms(x)
        values.append(float((kl - rec).mean()) * BITS / x[0].numel())
    return np.mean(values), np.std(values) / math.sqrt(draws)


def fitted_neg_elbo(net, x, steps: int) -> torch.Tensor:
    """-ELBO per image in nats of a diagonal Gaussian over all the latents, fitted to it."""
    with torch.no_grad():
        params, below = [], x
        for up in net.up if hasattr(net, "up") else [None]:
            mean, log_sigma = gaussian(up(below)) if up else net.posterior(x)
            params += [mean.clone().requires_grad_(), log_sigma.clone().requires_grad_()]
            below = mean
    opt = torch.optim.Adam(params, 1e-2)

    def estimate(samples):
        zs = [m + ls.exp() * torch.randn(samples, *m.shape) for m, ls in zip(params[::2], params[1::2])]
        log_q = sum(log_normal(z, m, ls) for z, m, ls in zip(zs, params[::2], params[1::2]))
        if not hasattr(net, "up"):  # N(0, I) prior, pixels given z
            xs = x.repeat(samples, *([1] * (x.dim() - 1)))
            rec = net.log_likelihood(xs, zs[0].reshape(-1, net.latent)).reshape(samples, -1)
            return (log_q - rec - log_normal(zs[0], torch.zeros(()), torch.zeros(()))).mean(0)
        rec, priors = net.generative_terms(x, zs)
        return (log_q - rec - sum(priors)).mean(0)

    for _ in range(steps):
        loss = estimate(16).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return estimate(64)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.posterior_gap", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["hvae-binary", "hvae-binary-flowq"])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--data", choices=list(VARIANTS), default="mnist-binarized")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    name, binarized = VARIANTS[args.data]
    x = batch_images(held_out(name), binarized, np.random.RandomState(0))
    for spec in args.models:
        net = network(spec)
        for p in net.parameters():
            p.requires_grad_(False)
        xs = x.reshape(-1, 784) if hasattr(net, "up") else x  # (an HVAE takes rows, a VAE images)
        print("{}: -ELBO {:.5f} +- {:.5f} bits/dim".format(spec, *neg_elbo(net, xs)), flush=True)
        for i, flow in enumerate(flows(net)):
            kept = [p.clone() for p in flow[-1].parameters()]
            for p in flow[-1].parameters():
                p.zero_()
            print("  without the flow of z_{}: {:.5f} +- {:.5f}".format(i + 1, *neg_elbo(net, xs)), flush=True)
            for p, k in zip(flow[-1].parameters(), kept):
                p.copy_(k)
        part = xs[:args.images]
        torch.manual_seed(0)
        with torch.no_grad():
            rec, kl = net.elbo_terms(part.repeat(64, *([1] * (part.dim() - 1))))
            nll = -float(net.iw_log_likelihood(part, samples=1000).mean()) * BITS
        fitted = float(fitted_neg_elbo(net, part, args.steps).mean()) * BITS
        print(f"  first {args.images} images: -ELBO {float((kl - rec).mean()) * BITS:.2f}, fitted diagonal "
              f"Gaussians {fitted:.2f}, NLL {nll:.2f} bits an image", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
