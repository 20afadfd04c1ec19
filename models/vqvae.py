"""A VQ-VAE for 28x28 8-bit grey images, with learned priors over its discrete code.

- Encoder: two stride-2 convolutions to a 7x7 grid of vectors, each replaced by its
  nearest of `codes` codebook vectors (van den Oord et al. 2017); straight-through
  gradients, a commitment loss, and a codebook kept as moving averages of the vectors
  assigned to it, with unused entries restarted at random encoder outputs.
- Decoder: transposed convolutions from the quantized grid to per-pixel features, fed
  with the causal pixel context to the same zero / discretized-Laplace head as the 8-bit
  VAE (bbans.models.vae).
- Priors over the 49 code indices: a factorized categorical (one per grid position), and
  an autoregressive one in raster order, PixelCNN-style: a type-A masked window over the
  positions before each one (as embeddings) plus its position, through an MLP to logits.
Both priors train beside the autoencoder on its current codes, without gradient into it.

The cost of an image is -log2 p(z) - log2 p(x | z_q): the posterior is a point, so there
are no bits to get back. `ExactVQVAE` evaluates the decoder and the priors on fixed
grids in float64 (bbans.models.grids.ExactNet), so their outputs are bit-identical everywhere.
"""
import math

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from bbans.codecs.pixels import context_index
from bbans.models.grids import ExactColumns, ExactNet
from bbans.models.vae import PIXELS, SIDE, exact_pixel_heads, head_log_likelihood, mlp

GRID = 7
POSITIONS = GRID * GRID


def causal_window(radius: int):
    """Offsets (di, dj) of the grid positions before a position in raster order, within
    `radius` rows above and `radius` columns either side."""
    return [(di, dj) for di in range(-radius, 0) for dj in range(-radius, radius + 1)] + \
        [(0, dj) for dj in range(-radius, 0)]


class VQVAE(nn.Module):
    def __init__(self, codes=64, dim=16, channels=64, features=4, head_hidden=32, context=((0, -1), (-1, 0)),
                 prior_embed=8, prior_hidden=256, prior_radius=3, commitment=0.25, decay=0.99):
        super().__init__()
        self.config = dict(codes=codes, dim=dim, channels=channels, features=features, head_hidden=head_hidden,
                           context=[list(c) for c in context], prior_embed=prior_embed,
                           prior_hidden=prior_hidden, prior_radius=prior_radius, commitment=commitment,
                           decay=decay)
        self.codes, self.dim, self.features = codes, dim, features
        self.context = tuple(tuple(c) for c in context)
        self.commitment, self.decay = commitment, decay
        c = channels
        self.encoder = nn.Sequential(
            nn.Conv2d(1, c, 4, 2, 1), nn.ReLU(), nn.Conv2d(c, c, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(c, c, 3, 1, 1), nn.ReLU(), nn.Conv2d(c, dim, 1))
        self.decoder = nn.Sequential(
            nn.Conv2d(dim, 2 * c, 3, 1, 1), nn.ReLU(), nn.ConvTranspose2d(2 * c, c, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(c, c // 2, 4, 2, 1), nn.ReLU(), nn.Conv2d(c // 2, features, 1))
        self.head = mlp([features + len(context), head_hidden, head_hidden, 3])
        self.register_buffer("codebook", torch.randn(codes, dim) * 0.1)
        self.register_buffer("ema_count", torch.ones(codes), persistent=False)
        self.register_buffer("ema_sum", self.codebook.clone(), persistent=False)
        self.factorized = nn.Parameter(torch.zeros(POSITIONS, codes))
        self.window = causal_window(prior_radius)
        self.register_buffer("window_index", torch.from_numpy(context_index(self.window, GRID)), persistent=False)
        self.prior_embedding = nn.Embedding(codes, prior_embed)
        self.prior = mlp([len(self.window) * prior_embed + POSITIONS, prior_hidden, prior_hidden, codes])

    # --- encoder and codebook ---
    def encode(self, x):
        """(B, 28, 28) pixel values -> encoder vectors (B, 49, dim)."""
        h = self.encoder(x.reshape(-1, 1, SIDE, SIDE).float() / 128.0 - 1.0)
        return h.flatten(2).transpose(1, 2)

    def nearest(self, vectors):
        """Index of the nearest codebook vector (squared Euclidean distance)."""
        d = (vectors**2).sum(-1, keepdim=True) - 2 * vectors @ self.codebook.T + (self.codebook**2).sum(-1)
        return d.argmin(-1)

    @torch.no_grad()
    def quantize(self, x):
        """(B, 28, 28) -> code indices (B, 49)."""
        return self.nearest(self.encode(x))

    def grid_vectors(self, z):
        """Code indices (B, 49) -> decoder input (B, dim, 7, 7)."""
        return self.codebook[z].transpose(1, 2).reshape(-1, self.dim, GRID, GRID)

    # --- likelihood and priors ---
    def pixel_features(self, zq):
        """Decoder input (B, dim, 7, 7) -> features (B, 784, F)."""
        return self.decoder(zq).flatten(2).transpose(1, 2)

    def log_likelihood(self, x, feats):
        return head_log_likelihood(self.head, self.context, x, feats)

    def prior_input(self, z):
        """Code indices (B, 49) -> the AR prior's input (B, 49, window * embed + 49): the
        embeddings of the earlier positions in each one's window, and its position."""
        e = F.pad(self.prior_embedding(z), (0, 0, 0, 1))  # row 49: the zero pad
        window = e[:, self.window_index].flatten(2)
        position = torch.eye(POSITIONS).expand(len(z), -1, -1)
        return torch.cat([window, position], -1)

    def ar_log_prior(self, z):
        logits = self.prior(self.prior_input(z))
        return -F.cross_entropy(logits.transpose(1, 2), z, reduction="none").sum(-1)

    def factorized_log_prior(self, z):
        logp = F.log_softmax(self.factorized, -1)
        return logp.gather(1, z.T).T.sum(-1)

    # --- training ---
    def training_loss(self, x):
        """Loss per pixel (nats) for one batch; in training mode also moves the codebook."""
        ze = self.encode(x)
        z = self.nearest(ze.detach())
        zq = self.codebook[z]
        if self.training:
            self.update_codebook(ze.detach().reshape(-1, self.dim), z.reshape(-1))
        st = ze + (zq - ze).detach()  # straight-through
        rec = self.log_likelihood(x, self.pixel_features(st.transpose(1, 2).reshape(-1, self.dim, GRID, GRID)))
        commit = ((ze - zq.detach())**2).sum((1, 2))
        priors = self.ar_log_prior(z) + self.factorized_log_prior(z)
        return (-rec + self.commitment * commit - priors).mean() / PIXELS

    @torch.no_grad()
    def update_codebook(self, vectors, z):
        onehot = F.one_hot(z, self.codes).float()
        self.ema_count.mul_(self.decay).add_(onehot.sum(0), alpha=1 - self.decay)
        self.ema_sum.mul_(self.decay).add_(onehot.T @ vectors, alpha=1 - self.decay)
        n = self.ema_count.sum()
        count = (self.ema_count + 1e-5) / (n + self.codes * 1e-5) * n
        self.codebook.copy_(self.ema_sum / count[:, None])
        dead = self.ema_count < 1e-3
        if dead.any():  # restart unused codes at random encoder outputs
            pick = vectors[torch.randint(len(vectors), (int(dead.sum()),))]
            self.codebook[dead] = pick
            self.ema_sum[dead] = pick
            self.ema_count[dead] = 1.0

    @torch.no_grad()
    def costs(self, x):
        """Per image, in bits: -log2 p(x | z_q), and -log2 p(z) under the AR and the
        factorized prior; z is the nearest-code quantization of x."""
        z = self.quantize(x)
        rec = self.log_likelihood(x, self.pixel_features(self.grid_vectors(z)))
        to_bits = -1 / math.log(2)
        return rec * to_bits, self.ar_log_prior(z) * to_bits, self.factorized_log_prior(z) * to_bits

    @torch.no_grad()
    def test_bits_per_dim(self, x):
        rec, ar, _ = self.costs(x)
        return float((rec + ar).mean() / PIXELS)


class ExactVQVAE:
    """A trained VQ-VAE as numpy-in, numpy-out functions for the codec (bbans.codecs.vq)."""

    def __init__(self, vq: VQVAE):
        self.vq = vq
        self.codes, self.positions, self.context = vq.codes, POSITIONS, vq.context
        self.window = context_index(vq.window, GRID)
        self.codebook = ExactNet.input_grid(vq.codebook.double())
        self.decoder = ExactNet(vq.decoder)
        self.head = ExactColumns(vq.head)
        self.embedding = ExactNet.input_grid(vq.prior_embedding.weight.detach().double())
        self.embedding = torch.cat([self.embedding, torch.zeros(1, self.embedding.shape[1], dtype=torch.float64)])
        self.prior = ExactNet(vq.prior)
        self.factorized = vq.factorized.detach().double().numpy()

    @torch.no_grad()
    def quantize(self, x: np.ndarray) -> np.ndarray:
        """uint8 (B, 784) -> code indices (B, 49); any encoder will do, the decoder is told."""
        return self.vq.quantize(torch.from_numpy(x.reshape(-1, SIDE, SIDE).copy())).numpy()

    @torch.no_grad()
    def decode(self, z: np.ndarray) -> np.ndarray:
        """Code indices (B, 49) -> pixel features (B, 784, F)."""
        zq = self.codebook[torch.from_numpy(z)].reshape(-1, GRID, GRID, self.vq.dim)  # channels-last
        # In slices, so that each layer's products for all its taps stay small.
        return torch.cat([self.decoder(part) for part in zq.split(100)]).reshape(len(z), PIXELS, -1).numpy()

    def pixel_heads(self, feats: np.ndarray, nbrs: np.ndarray):
        return exact_pixel_heads(self.head, feats, nbrs)

    @torch.no_grad()
    def prior_logits(self, z: np.ndarray, positions) -> np.ndarray:
        """AR prior logits (B, len(positions), K) at the given grid positions, from the
        codes of earlier positions in z (B, 49); later entries of z are not read."""
        padded = np.concatenate([z, np.full((len(z), 1), self.codes)], 1)  # code K: the zero embedding
        idx = self.window[positions]  # (P, window)
        e = self.embedding[torch.from_numpy(padded[:, idx])].flatten(2)  # (B, P, window * embed)
        position = torch.eye(POSITIONS, dtype=torch.float64)[positions].expand(len(z), -1, -1)
        inp = torch.cat([e, position], -1)
        return self.prior(inp.reshape(-1, inp.shape[-1])).reshape(len(z), len(positions), -1).numpy()
