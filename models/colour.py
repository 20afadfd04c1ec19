"""A VAE for 32x32 RGB images (CIFAR-10) with a causal colour pixel head, and its exact form
for the coder.

The latent is what the head cannot see: the encoder reads every other pixel of every other
row, the decoder gives every pixel `features` values. A head shared by all pixels maps
those features and the pixel's causal neighbourhood (`context`: offsets (di, dj) with
2 di + dj < 0, each with its three channels) to each channel's mixture of two discretized
Laplaces on 0..255, the means of G shifted by a multiple of R and those of B by multiples
of R and G (as PixelCNN++ does, Salimans et al. 2017): one head evaluation gives a pixel's
three channels, coded R, G, B. Pixels (i, j) on one line 2i + j = t do not depend on each
other, so decoding takes 3 side - 2 steps (94), each over many images.

Inference for coding (`ExactColourVAE`) runs encoder and decoder on integers
(bbans.models.intnet) and the head on float64 grids (bbans.models.grids), as the grey VAEs do.
"""
import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from bbans.codecs.colour import CHANNELS, OUTPUTS, PER_CHANNEL, channel_params
from bbans.models.grids import ACT_LIMIT, ExactColumns, onto_grid
from bbans.models.vae import LATENT_GRID, LOG_SCALE_RANGE, LOG_SIGMA_RANGE, PIXEL_GRIDS, exact_mlp, log_laplace_mass, mlp

SIDE = 32
# rows i - 2 and i - 1 from column j - 2, and the two pixels to the left
CONTEXT_11 = ((0, -1), (0, -2), (-1, -2), (-1, -1), (-1, 0), (-1, 1), (-2, -2), (-2, -1), (-2, 0), (-2, 1), (-2, 2))


def mixture_log_mass(x, means, log_scales, logit):
    """log of the mass of values x (...) in 0..255 under the mixture of two discretized
    Laplaces, means and log-scales (2, ...), the first's weight sigmoid(logit) (the edge
    bins take the tails, as constriction's QuantizedLaplace(0, 255))."""
    lo = torch.where(x <= 0, -1e6, x - 0.5)
    hi = torch.where(x >= 255, 1e6, x + 0.5)
    mass = log_laplace_mass(lo, hi, means, log_scales.exp())
    return torch.logsumexp(mass + torch.stack([F.logsigmoid(logit), F.logsigmoid(-logit)]), 0)


def neighbours(x: torch.Tensor, context) -> torch.Tensor:
    """(B, H, W, 3) pixel values -> (B, H W, 3 len(context)): the values / 256 at each offset
    of `context` from each pixel, offset-major, zero outside the image."""
    height, width = x.shape[1:3]
    v = F.pad(x.permute(0, 3, 1, 2) / 256.0, (2, 2, 2, 0))
    taps = [v[:, :, 2 + di:2 + di + height, 2 + dj:2 + dj + width] for di, dj in context]
    return torch.stack(taps, -1).permute(0, 2, 3, 4, 1).reshape(len(x), height * width, -1)


class ColourVAE(nn.Module):
    likelihood = "colour"

    def __init__(self, hidden=256, latent=32, features=4, head_hidden=64, context=CONTEXT_11, side=SIDE):
        super().__init__()
        assert all(2 * di + dj < 0 and di >= -2 and abs(dj) <= 2 for di, dj in context)
        self.config = dict(hidden=hidden, latent=latent, features=features, head_hidden=head_hidden,
                           context=[list(c) for c in context], side=side)
        self.context = tuple(tuple(c) for c in context)
        self.side, self.latent, self.features = side, latent, features
        self.pixels = side * side
        self.encoder = mlp([self.pixels // 4 * CHANNELS, hidden, hidden, 2 * latent])
        self.decoder = mlp([latent, hidden, hidden, self.pixels * features])
        self.head = mlp([features + CHANNELS * len(context), head_hidden, head_hidden, OUTPUTS])
        with torch.no_grad():  # start from mid-grey means and wide scales
            bias = self.head[-1].bias.view(-1)[:CHANNELS * PER_CHANNEL].view(CHANNELS, PER_CHANNEL)
            bias[:, 1:3], bias[:, 3:5] = 0.5, 3.0

    def posterior(self, x):
        """x (B, S, S, 3) -> mean, log-sigma of q(z|x) from every other pixel of every other row."""
        seen = x[:, ::2, ::2].reshape(len(x), -1).to(torch.get_default_dtype()) / 256.0
        mu, log_sigma = self.encoder(seen).chunk(2, -1)
        return mu, log_sigma.clamp(*LOG_SIGMA_RANGE)

    def log_likelihood(self, x, z):
        """log p(x | z) in nats per image."""
        x = x.to(torch.get_default_dtype())
        feats = self.decoder(z).reshape(len(x), self.pixels, self.features)
        out = self.head(torch.cat([feats, neighbours(x, self.context)], -1)).movedim(-1, 0)
        values = x.reshape(len(x), self.pixels, CHANNELS).movedim(-1, 0)
        total = 0
        for c in range(CHANNELS):
            means, log_scales, logit = channel_params(out, c, values[:c])
            total = total + mixture_log_mass(values[c], means, log_scales.clip(*LOG_SCALE_RANGE), logit).sum(-1)
        return total

    def elbo_terms(self, x, samples=1, free_bits=0.0):
        """(log p(x|z), KL(q||p)) per image in nats, z drawn from q. With `free_bits` (nats,
        for training; Kingma et al. 2016) each latent's KL counts as at least that, averaged
        over the batch."""
        mu, log_sigma = self.posterior(x)
        kl = 0.5 * (mu**2 + torch.exp(2 * log_sigma) - 1 - 2 * log_sigma)
        kl = kl.mean(0).clamp(min=free_bits).sum().expand(len(x)) if free_bits else kl.sum(-1)
        rec = 0
        for _ in range(samples):
            rec = rec + self.log_likelihood(x, mu + torch.exp(log_sigma) * torch.randn_like(mu))
        return rec / samples, kl

    @torch.no_grad()
    def iw_log_likelihood(self, x, samples=100, chunk=10):
        """Importance-weighted bound on log p(x) in nats (Burda et al. 2016)."""
        mu, log_sigma = self.posterior(x)
        logws = []
        for start in range(0, samples, chunk):
            k = min(chunk, samples - start)
            eps = torch.randn(k, *mu.shape)
            z = mu + torch.exp(log_sigma) * eps
            log_q_over_p = (-0.5 * eps**2 - log_sigma + 0.5 * z**2).sum(-1)
            xs = x.unsqueeze(0).expand(k, *x.shape).reshape(k * len(x), *x.shape[1:])
            logws.append(self.log_likelihood(xs, z.reshape(-1, self.latent)).reshape(k, -1) - log_q_over_p)
        return torch.logsumexp(torch.cat(logws), 0) - np.log(samples)


class ExactColourVAE:
    """A trained ColourVAE as numpy functions for the codecs (bbans.codecs.colour): encoder and
    decoder on integers where `largest` (their calibration) is given, else on float64 grids;
    the head on the grids."""

    # An image leaves some 11,000 bits on the stack, and popping its latents takes a few
    # hundred: a batch may hold 16 times the images before it (bbans.codecs.vae.batch_schedule).
    batch_fraction = 16

    def __init__(self, vae: ColourVAE, largest=None):
        self.likelihood = vae.likelihood
        self.latent, self.context, self.features, self.side = vae.latent, vae.context, vae.features, vae.side
        self.shape = (vae.side, vae.side, CHANNELS)
        self.dims = vae.pixels * CHANNELS
        self.log_scale_range = LOG_SCALE_RANGE
        self.encoder = exact_mlp(vae.encoder, largest and largest["encoder"], PIXEL_GRIDS["laplace_ar"])
        self.decoder = exact_mlp(vae.decoder, largest and largest["decoder"], LATENT_GRID)
        self.head = ExactColumns(vae.head)

    def posterior(self, x: np.ndarray):
        """uint8 (B, S² 3) -> mean and log-sigma of q(z|x), each (B, latent)."""
        seen = x.reshape(len(x), *self.shape)[:, ::2, ::2].reshape(len(x), -1)
        mu, log_sigma = np.split(self.encoder(np.ascontiguousarray(seen)), 2, -1)
        return mu, log_sigma.clip(*LOG_SIGMA_RANGE)

    def decode(self, z: np.ndarray) -> np.ndarray:
        """z (B, latent) -> pixel features (B, S², F), on the head's input grid."""
        out = self.decoder(z).astype(np.float64).reshape(len(z), -1, self.features)
        onto_grid(out, -ACT_LIMIT)
        return out

    def pixel_head(self, table: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """The head's outputs (OUTPUTS, k n), exact, for k pixels in n images whose inputs
        (features as decode gives them, then context values / 256, offset by offset, the
        three channels of each, as `neighbours` gives them) are rows (F + 3 len(context),
        k) of table (R, n)."""
        return self.head.gather(table, rows)
