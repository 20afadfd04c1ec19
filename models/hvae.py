"""A VAE with a hierarchy of latent layers for binarized 28x28 images, made for Bit-Swap.

Generative model, top-down: p(z_L) = N(0, I), or with `top_groups` an autoregressive flow
prior (bbans.models.made), diagonal Gaussians p(z_i | z_i+1), Bernoulli pixels p(x | z_1).
Inference, bottom-up: q(z_1 | x), then q(z_i+1 | z_i), diagonal Gaussians, or with
`post_groups` each corrected by an autoregressive flow given the Gaussian's own mean and
log-sigma (bbans.models.made). With inference a Markov chain as well, each layer's pop and
push can be interleaved (Kingma, Abbeel, Ho 2019), so that coding starts with the bits of
one layer, not of all of them.
"""
import math

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from bbans.models.made import groups, made
from bbans.models.vae import (LATENT_GRID, LOG_SIGMA_RANGE, PIXEL_GRIDS, PIXELS, ExactMADE, exact_mlp, flow_sample,
                              log_normal, mlp)


def gaussian(out):
    """A network's output (..., 2d), a tensor or a numpy array -> mean and clamped
    log-sigma, each (..., d)."""
    d = out.shape[-1] // 2
    return out[..., :d], out[..., d:].clip(*LOG_SIGMA_RANGE)


class HVAE(nn.Module):
    """up[i] maps layer i (x for i = 0, else z_i) to q(z_i+1 | .); down[i] maps z_i+1 to
    p(layer i | z_i+1): pixel logits for i = 0, else a Gaussian. The pixel networks have
    two hidden layers of `hidden`, the latent ones one of `latent_hidden`. With
    `top_groups`, `top` (a MADE with a hidden layer of `top_hidden`) gives z_L's prior
    in that many groups, each given those before it; with `post_groups`, post[i] (a MADE
    with a hidden layer of `post_hidden`) shifts the mean and log-sigma of q(z_i+1 | .) in
    that many groups, each given those before it and the Gaussian it shifts."""

    likelihood = "bernoulli"

    def __init__(self, latents=(32, 16, 8), hidden=256, latent_hidden=128, top_groups=None, top_hidden=None,
                 post_groups=None, post_hidden=None):
        super().__init__()
        self.config = dict(latents=list(latents), hidden=hidden, latent_hidden=latent_hidden)
        self.top = self.post = None
        if top_groups:  # (earlier models' configs have no such keys)
            self.config.update(top_groups=top_groups, top_hidden=top_hidden)
            self.top = made(latents[-1], top_hidden, top_groups)
        if post_groups:
            self.config.update(post_groups=post_groups, post_hidden=post_hidden)
            self.post = nn.ModuleList(made(d, post_hidden, post_groups, context=2 * d) for d in latents)
        self.latents = list(latents)
        sizes = [PIXELS] + self.latents
        inner = [[hidden] * 2] + [[latent_hidden]] * (len(latents) - 1)
        self.up = nn.ModuleList(mlp([a, *h, 2 * b]) for a, b, h in zip(sizes, sizes[1:], inner))
        self.down = nn.ModuleList(mlp([b, *h, a if i == 0 else 2 * a])
                                  for i, (a, b, h) in enumerate(zip(sizes, sizes[1:], inner)))

    def elbo_terms(self, x):
        """(log p(x|z_1), log q(z|x) - log p(z)) per image in nats, z drawn from q: the
        second term is a one-sample estimate of the KL."""
        rec, kls = self.layer_terms(x)
        return rec, sum(kls)

    def layer_terms(self, x):
        """(log p(x|z_1), [log q(z_i|.) - log p(z_i|z_i+1) of each layer]) per image in nats,
        z drawn from q: one-sample estimates of each layer's KL."""
        v = x.reshape(len(x), PIXELS).to(torch.get_default_dtype())
        zs, posteriors, below = [], [], v
        for i, net in enumerate(self.up):
            mean, log_sigma = gaussian(net(below))
            noise = torch.randn_like(mean)
            if self.post is None:
                below = mean + log_sigma.exp() * noise
            else:
                below, mean, log_sigma = flow_sample(self.post[i], self.config["post_groups"], mean, log_sigma, noise)
            posteriors.append(log_normal(below, mean, log_sigma))
            zs.append(below)
        rec, priors = self.generative_terms(v, zs)
        return rec, [q - p for q, p in zip(posteriors, priors)]

    def generative_terms(self, v, zs):
        """(log p(x|z_1), [log p(z_i|z_i+1) of each layer, log p(z_L) last]) in nats, of
        pixels v (B, 784) and latents z_1..z_L, each (B, d) or (samples, B, d)."""
        top = gaussian(self.top(zs[-1])) if self.top is not None else (torch.zeros_like(zs[-1]),) * 2
        priors = [log_normal(lower, *gaussian(net(z))) for net, z, lower in zip(self.down[1:], zs[1:], zs)]
        priors.append(log_normal(zs[-1], *top))
        logits = self.down[0](zs[0])
        return -F.binary_cross_entropy_with_logits(logits, v.expand_as(logits), reduction="none").sum(-1), priors

    @torch.no_grad()
    def iw_log_likelihood(self, x, samples=1000, chunk=100):
        """Importance-weighted bound on log p(x) in nats (Burda et al. 2016)."""
        logws = []
        for start in range(0, samples, chunk):
            k = min(chunk, samples - start)
            rec, kl = self.elbo_terms(x.repeat(k, *([1] * (x.dim() - 1))))
            logws.append((rec - kl).reshape(k, len(x)))
        return torch.logsumexp(torch.cat(logws), 0) - math.log(samples)


class ExactHVAE:
    """The networks of a trained HVAE as exact numpy-in, numpy-out functions, on integers
    where `largest` (their calibration) is given (see bbans.models.vae.ExactVAE)."""

    likelihood = "bernoulli"

    def __init__(self, net: HVAE, largest=None):
        self.latents = net.latents
        self.up = [exact_mlp(m, largest and largest[f"up.{i}"], PIXEL_GRIDS["bernoulli"] if i == 0 else LATENT_GRID)
                   for i, m in enumerate(net.up)]
        self.down = [exact_mlp(m, largest and largest[f"down.{i}"], LATENT_GRID) for i, m in enumerate(net.down)]
        self.top = None  # z_L's prior N(0, I), or:
        if net.top is not None:
            self.top = ExactMADE(net.top, groups(net.latents[-1], net.config["top_groups"]), largest and largest["top"])
            self.top_groups = self.top.groups
        self.post = None  # diagonal Gaussian posteriors, or flows on them:
        if net.post is not None:
            self.post = [ExactMADE(m, groups(d, net.config["post_groups"]), largest and largest[f"post.{i}"])
                         for i, (m, d) in enumerate(zip(net.post, net.latents))]
            self.post_groups = [flow.groups for flow in self.post]

    def top_prior(self, z: np.ndarray, group=None):
        """z_L on the coder's grid -> mean and log-sigma of each latent's prior, given the
        groups before its own (top_groups); with `group`, of that group's latents alone."""
        return gaussian(self.top(z, group))

    def inference(self, i: int, below: np.ndarray):
        """Layer i's values (uint8 pixels for i = 0, else latents on the coder's grid) ->
        mean and log-sigma of q(z_i+1 | layer i) (float32 from the integer networks)."""
        return gaussian(self.up[i](below))

    def posterior_flow(self, i: int, mean: np.ndarray, log_sigma: np.ndarray, z: np.ndarray, group=None):
        """inference(i, .)'s Gaussian and z_i+1 on the coder's grid -> mean and log-sigma of
        each latent of the flow posterior, given the Gaussian and the groups before its
        own (post_groups[i]); with `group`, of that group's latents alone."""
        return self.post[i].posterior(mean, log_sigma, z, group)

    def generative(self, i: int, z: np.ndarray):
        """z_i+1 on the coder's grid -> pixel logits (i = 0), else mean and log-sigma of
        p(z_i | z_i+1)."""
        out = self.down[i](z)
        return out if i == 0 else gaussian(out)
