"""VAEs for 28x28 grey images, and their exact integer-grid inference for the coder.

Two pixel likelihoods:
- "bernoulli": binarized images, one logit per pixel.
- "laplace_ar": 8-bit images. Each pixel is zero with probability sigmoid(-logit), else a
  discretized Laplace on 1..255 (or a mixture of two, with `components=2`). The logit,
  mean and scale come from a small head shared by all pixels, fed with per-pixel
  features decoded from z and the already known neighbours (by default left, up and
  up-left; any offsets on earlier anti-diagonals). With `zero_hidden`, a head of its
  own gives the logit, and the Laplaces' head is needed only for nonzero pixels.
  Pixels on one anti-diagonal do not depend on each other, so decoding takes 55 steps,
  not 784.

Inference for coding (`ExactVAE`) runs the encoder and decoder on integers
(bbans.models.intnet) and the pixel heads on float64 grids (bbans.models.grids): the network
outputs are bit-identical whatever the thread count, batch split, BLAS or kernel.
"""
import math

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from bbans.codecs import LATENT_STEP
from bbans.models.grids import ACT_LIMIT, ExactColumns, ExactNet, onto_grid
from bbans.models.intnet import IntNet
from bbans.models.made import group_parts, groups, made, plain

SIDE = 28
PIXELS = SIDE * SIDE
LOG_SCALE_RANGE = (-4.0, 6.0)
LOG_SIGMA_RANGE = (-9.0, 2.0)
LEFT_UP = ((0, -1), (-1, 0), (-1, -1))  # left, up, up-left
# (step, zero point) of the networks' inputs (bbans.models.intnet.IntNet): the pixels as a
# binary VAE takes them, 8-bit pixels / 256, and the coder's latents (codecs.LatentGrid)
PIXEL_GRIDS = {"bernoulli": (1.0, 0), "laplace_ar": (1 / 256, 128)}
LATENT_GRID = (LATENT_STEP, 0)


def mlp(sizes):
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def shift(out, mean, log_sigma):
    """A posterior flow's output (..., 2d), a tensor or a numpy array, added to the mean
    and log-sigma it shifts (the log-sigma clamped)."""
    d = out.shape[-1] // 2
    return mean + out[..., :d], (log_sigma + out[..., d:]).clip(*LOG_SIGMA_RANGE)


def log_normal(z, mean, log_sigma):
    return (-0.5 * ((z - mean) / log_sigma.exp())**2 - log_sigma - 0.5 * math.log(2 * math.pi)).sum(-1)


def flow_sample(flow: nn.Module, count: int, mean, log_sigma, noise):
    """z drawn from the flow posterior (bbans.models.made, `count` groups) whose Gaussian
    before the flow is N(mean, exp(log_sigma)), group by group from `noise`, and the mean
    and log-sigma of each latent (those of a group given the groups before it). The flow
    sees the Gaussian on the coder's latent grid (rounded, the gradient passed straight
    through), as the coder gives it."""
    step, width = LATENT_GRID[0], 2**7 * LATENT_GRID[0]
    context = torch.cat([mean, log_sigma], -1).clamp(-width, width - step)
    context = context + (torch.round(context / step) * step - context).detach()
    z = torch.zeros_like(mean)
    for group in groups(mean.shape[-1], count):
        shifted_mean, shifted_log_sigma = shift(flow(torch.cat([context, z], -1)), mean, log_sigma)
        z = z.index_copy(-1, torch.from_numpy(group), (shifted_mean + shifted_log_sigma.exp() * noise)[:, group])
    return z, shifted_mean, shifted_log_sigma


def neighbours(x: torch.Tensor, context) -> torch.Tensor:
    """(B, 28, 28) pixel values -> (B, 784, len(context)): the values / 256 at the
    offsets (di, dj) of `context` from each pixel, zero outside the image."""
    pad = max(max(abs(di), abs(dj)) for di, dj in context)
    v = F.pad(x / 256.0, (pad,) * 4)
    taps = [v[:, pad + di:pad + di + SIDE, pad + dj:pad + dj + SIDE] for di, dj in context]
    return torch.stack(taps, -1).reshape(x.shape[0], PIXELS, len(context))


def pixel_params(out):
    """Head output (..., 3) or, for a mixture of two Laplaces, (..., 6), a tensor or a
    numpy array -> the nonzero logit, then value_params of the rest."""
    return (out[..., 0], *value_params(out[..., 1:]))


def value_params(out):
    """Head output (..., 2) or, for a mixture of two Laplaces, (..., 5) -> the Laplace
    means (pixels) and log-scales, each (..., K), and the logit of the first component's
    weight (None for one component)."""
    if out.shape[-1] == 2:
        return 256.0 * out[..., 0:1], out[..., 1:2].clip(*LOG_SCALE_RANGE), None
    return 256.0 * out[..., 1:3], out[..., 3:5].clip(*LOG_SCALE_RANGE), out[..., 0]


def log1mexp(d):
    """log(1 - exp(-d)) for d > 0."""
    return torch.where(d < math.log(2), torch.log(-torch.expm1(-d)), torch.log1p(-torch.exp(-d)))


def log_laplace_mass(lo, hi, mean, scale):
    """log of the Laplace(mean, scale) mass on [lo, hi], stable in both tails."""
    zl, zh = (lo - mean) / scale, (hi - mean) / scale
    width = log1mexp(zh - zl)
    left = math.log(0.5) + zh.clamp(max=0) + width
    right = math.log(0.5) - zl.clamp(min=0) + width
    mid = torch.log1p(-0.5 * torch.exp(zl.clamp(max=0)) - 0.5 * torch.exp(-zh.clamp(min=0)))
    return torch.where(hi <= mean, left, torch.where(lo >= mean, right, mid))


def head_log_likelihood(head: nn.Module, context, x, feats, zero_head=None):
    """log p(x) in nats per image under the zero / discretized-Laplace likelihood: the
    head on per-pixel features (B, 784, F) and each pixel's causal context in x. With a
    `zero_head`, that one gives the nonzero logit and `head` the Laplaces' parameters,
    which only the nonzero pixels need."""
    inputs = torch.cat([feats, neighbours(x.to(feats.dtype), context)], -1)
    x = x.reshape(len(x), PIXELS)
    if zero_head is None:
        return laplace_ar_log_prob(x, *pixel_params(head(inputs))).sum(-1)
    logit, nonzero = zero_head(inputs)[..., 0], x > 0
    values = torch.zeros_like(logit)
    values[nonzero] = laplace_log_mass(x[nonzero], *value_params(head(inputs[nonzero])))
    return torch.where(nonzero, F.logsigmoid(logit) + values, F.logsigmoid(-logit)).sum(-1)


def laplace_ar_log_prob(x, logit, mean, log_scale, mix=None):
    """log p(x) per pixel for the zero / discretized-Laplace-on-1..255 likelihood, the
    Laplace a mixture of two where `mix` is given."""
    return torch.where(x > 0, F.logsigmoid(logit) + laplace_log_mass(x, mean, log_scale, mix), F.logsigmoid(-logit))


def laplace_log_mass(x, mean, log_scale, mix=None):
    """log of the discretized Laplace's (or mixture of two's) mass of values x in 1..255.
    As in constriction's QuantizedLaplace(1, 255), the bins 1 and 255 take the Laplace's
    tails below 1.5 and above 254.5."""
    xf = x.to(mean.dtype).unsqueeze(-1)
    lo = torch.where(xf <= 1, -1e6, xf - 0.5)
    hi = torch.where(xf >= 255, 1e6, xf + 0.5)
    values = log_laplace_mass(lo, hi, mean, log_scale.exp())
    if mix is None:
        return values[..., 0]
    return torch.logsumexp(values + torch.stack([F.logsigmoid(mix), F.logsigmoid(-mix)], -1), -1)


class VAE(nn.Module):
    """With `post_groups`, `post` (a MADE with a hidden layer of `post_hidden`) shifts the
    mean and log-sigma of q(z|x) in that many groups, each given those before it and the
    Gaussian it shifts, as hvae's posteriors."""

    def __init__(self, likelihood="bernoulli", hidden=512, latent=40, features=3, head_hidden=32,
                 context=LEFT_UP, layers=2, components=1, zero_hidden=None, post_groups=None, post_hidden=None):
        super().__init__()
        assert all(di + dj < 0 for di, dj in context), "context must lie on earlier anti-diagonals"
        self.config = dict(likelihood=likelihood, hidden=hidden, latent=latent,
                           features=features, head_hidden=head_hidden, context=[list(c) for c in context],
                           layers=layers, components=components)
        if zero_hidden:  # (earlier models' configs have no such key)
            self.config["zero_hidden"] = zero_hidden
        self.post = None
        if post_groups:
            self.config.update(post_groups=post_groups, post_hidden=post_hidden)
            self.post = made(latent, post_hidden, post_groups, context=2 * latent)
        self.context = tuple(tuple(c) for c in context)
        self.likelihood = likelihood
        self.latent = latent
        self.features = 1 if likelihood == "bernoulli" else features
        self.encoder = mlp([PIXELS] + [hidden] * layers + [2 * latent])
        self.decoder = mlp([latent] + [hidden] * layers + [PIXELS * self.features])
        self.zero_head = None
        if likelihood == "laplace_ar":
            inputs = self.features + len(context)
            # With zero_hidden, a small head of its own gives the nonzero logit.
            if zero_hidden:
                self.zero_head = mlp([inputs, zero_hidden, 1])
            self.head = mlp([inputs, head_hidden, head_hidden, 3 * components - bool(zero_hidden)])

    def encoder_input(self, x):
        x = x.reshape(x.shape[0], PIXELS).to(torch.get_default_dtype())
        return x if self.likelihood == "bernoulli" else x / 256.0

    def posterior(self, x):
        mu, log_sigma = self.encoder(self.encoder_input(x)).chunk(2, -1)
        return mu, log_sigma.clamp(*LOG_SIGMA_RANGE)

    def log_likelihood(self, x, z):
        """log p(x | z) in nats, summed over pixels."""
        out = self.decoder(z)
        if self.likelihood == "bernoulli":
            target = x.reshape(x.shape[0], PIXELS).to(out.dtype)
            return -F.binary_cross_entropy_with_logits(out, target, reduction="none").sum(-1)
        return head_log_likelihood(self.head, self.context, x, out.reshape(x.shape[0], PIXELS, self.features),
                                   self.zero_head)

    def sample(self, mu, log_sigma, noise):
        """z from q(z|x) given its Gaussian and `noise`, and log q(z|x) - log p(z) in nats."""
        if self.post is None:
            z = mu + torch.exp(log_sigma) * noise
            return z, (-0.5 * noise**2 - log_sigma + 0.5 * z**2).sum(-1)
        z, mean, log_sigma = flow_sample(self.post, self.config["post_groups"], mu, log_sigma, noise)
        return z, log_normal(z, mean, log_sigma) + (0.5 * z**2 + 0.5 * math.log(2 * math.pi)).sum(-1)

    def elbo_terms(self, x, samples=1):
        """(log p(x|z), KL(q||p)) per image in nats, z drawn from q: the KL exact for a
        Gaussian q, a one-sample estimate for a flow's."""
        mu, log_sigma = self.posterior(x)
        rec = kl = 0
        for _ in range(samples):
            z, log_ratio = self.sample(mu, log_sigma, torch.randn_like(mu))
            rec, kl = rec + self.log_likelihood(x, z), kl + log_ratio
        if self.post is None:
            return rec / samples, 0.5 * (mu**2 + torch.exp(2 * log_sigma) - 1 - 2 * log_sigma).sum(-1)
        return rec / samples, kl / samples

    @torch.no_grad()
    def iw_log_likelihood(self, x, samples=1000, chunk=100):
        """Importance-weighted bound on log p(x) in nats (Burda et al. 2016)."""
        mu, log_sigma = self.posterior(x)
        logws = []
        for start in range(0, samples, chunk):
            k = min(chunk, samples - start)
            z, log_ratio = self.sample(mu.repeat(k, 1), log_sigma.repeat(k, 1), torch.randn(k * len(x), self.latent))
            xs = x.repeat(k, *([1] * (x.dim() - 1)))
            logws.append((self.log_likelihood(xs, z) - log_ratio).reshape(k, -1))
        return torch.logsumexp(torch.cat(logws), 0) - math.log(samples)


def exact_pixel_heads(head: ExactColumns, feats: np.ndarray, nbrs: np.ndarray, zero_head=None):
    """The laplace_ar heads on the features (F, k, n) and context values / 256 (C, k, n)
    of k pixels in n images -> the nonzero logits (k, n), and a function from flat
    indices into (k, n) to those pixels' value_params. With a `zero_head` (which gives
    the logits) the Laplaces' head runs only on the pixels asked for."""
    x = np.empty((len(feats) + len(nbrs) + 1, feats[0].size))
    x[:len(feats)] = feats.reshape(len(feats), -1)
    onto_grid(x[:len(feats)], -ACT_LIMIT)
    x[len(feats):-1] = nbrs.reshape(len(nbrs), -1)
    x[-1] = 1
    if zero_head is None:
        out = head(x)
        return out[0].reshape(feats.shape[1:]), lambda pixels: value_params(out[1:, pixels].T)
    return zero_head(x)[0].reshape(feats.shape[1:]), lambda pixels: value_params(head(x[:, pixels]).T)


class ExactVAE:
    """The networks of a trained VAE as numpy-in, numpy-out functions for the codecs: the
    encoder and decoder on integers (bbans.models.intnet) where `largest` (their calibration)
    is given, else on ExactNet's grids; the pixel head always on the grids."""

    def __init__(self, vae: VAE, largest=None):
        self.likelihood = vae.likelihood
        self.latent = vae.latent
        self.context = vae.context
        self.features = vae.features
        self.encoder = exact_mlp(vae.encoder, largest and largest["encoder"], PIXEL_GRIDS[vae.likelihood])
        self.decoder = exact_mlp(vae.decoder, largest and largest["decoder"], LATENT_GRID)
        self.head = ExactColumns(vae.head) if vae.likelihood == "laplace_ar" else None
        self.zero_head = ExactColumns(vae.zero_head) if vae.zero_head is not None else None
        self.post = None  # a diagonal Gaussian posterior, or a flow on it:
        if vae.post is not None:
            self.post = ExactMADE(vae.post, groups(vae.latent, vae.config["post_groups"]), largest and largest["post"])
            self.post_groups = self.post.groups

    def posterior(self, x: np.ndarray):
        """uint8 (B, 784) -> mean and log-sigma of q(z|x), each (B, latent), float32 from
        the integer networks, else float64."""
        mu, log_sigma = np.split(self.encoder(x), 2, -1)
        return mu, log_sigma.clip(*LOG_SIGMA_RANGE)

    def posterior_flow(self, mean: np.ndarray, log_sigma: np.ndarray, z: np.ndarray, group=None):
        """posterior(x)'s Gaussian and z on the coder's grid -> mean and log-sigma of each
        latent of the flow posterior, given the Gaussian and the groups before its own
        (post_groups); with `group`, of that group's latents alone."""
        return self.post.posterior(mean, log_sigma, z, group)

    def decode(self, z: np.ndarray) -> np.ndarray:
        """z (B, latent) -> Bernoulli logits (B, 784) or pixel features (B, 784, F)."""
        out = self.decoder(z)
        return out if self.likelihood == "bernoulli" else out.reshape(len(z), PIXELS, self.features)

    def pixel_heads(self, feats: np.ndarray, nbrs: np.ndarray):
        return exact_pixel_heads(self.head, feats, nbrs, self.zero_head)


def exact_mlp(seq: nn.Sequential, largest, grid):
    """An MLP on inputs on `grid` (IntNet's) as an exact numpy function: an IntNet given
    its calibration `largest`, else an ExactNet."""
    if largest:
        return IntNet(seq, largest, grid)
    net = ExactNet(seq)

    def apply(x):  # as IntNet's: values, or integers x / step
        x = x * grid[0] if x.dtype.kind in "iu" else x
        return net(torch.from_numpy(x)).numpy()

    return apply


class ExactMADE:
    """A MADE (bbans.models.made) on the coder's latent grid as an exact function: whole,
    or cut to one group of its latents (group_parts), which gives that group's outputs
    of the whole, bit for bit, for the work of the part."""

    def __init__(self, seq: nn.Sequential, latent_groups: list, largest):
        self.groups = latent_groups
        self.whole = exact_mlp(plain(seq), largest, LATENT_GRID)
        self.parts = [(inputs, exact_mlp(part, largest, LATENT_GRID)) for inputs, part in group_parts(plain(seq), latent_groups)]

    def __call__(self, x: np.ndarray, group=None) -> np.ndarray:
        """Inputs (B, context + latent) -> outputs (B, 2 latent), or with `group` that
        group's (B, 2 of its latents)."""
        if group is None:
            return self.whole(x)
        inputs, part = self.parts[group]
        return part(x[:, inputs])

    def posterior(self, mean, log_sigma, z, group=None):
        """As a flow posterior: the Gaussian it shifts and z -> each latent's shifted mean
        and log-sigma, or with `group` that group's."""
        out = self(np.concatenate([mean, log_sigma, z], -1), group)
        if group is not None:
            mean, log_sigma = mean[:, self.groups[group]], log_sigma[:, self.groups[group]]
        return shift(out, mean, log_sigma)
