"""Lossless coding with a VQ-VAE: each image's pixels given its quantized code, then the
code with a prior over the grid. The posterior is a point, so there are no bits to get
back and no start-up cost: an image costs -log2 p(z) - log2 p(x | z_q).

The model object needs:
- `codes` (K) and `positions` (grid cells, coded in raster order);
- `quantize(x)`: uint8 (B, 784) -> code indices (B, positions);
- `decode(z)`: code indices -> pixel features (B, 784, F), with `context` and
  `pixel_heads` as for the 8-bit VAE (bbans.codecs.pixels.laplace_ar);
- `prior_logits(z, cells)`: autoregressive prior logits (B, len(cells), K) at those
  cells, reading only the codes of earlier cells; `factorized`: (positions, K) logits.
Its decoder and prior outputs must not depend on batch size or thread count
(bbans.models.vqvae.ExactVQVAE).
"""
import numpy as np

from bbans.codecs import Codec, categorical, check_used_up, new_message, uniform
from bbans.codecs.pixels import PARAM_GRID, PIXELS, GridTable, laplace_ar

PRIORS = ("ar", "factorized", "uniform")
EXP_BELOW_MAX = GridTable(np.exp, -30.0, 0.0)


def probabilities(logits: np.ndarray) -> np.ndarray:
    """Unnormalised probabilities from logits (..., K), through the grid and a table."""
    steps = np.rint(logits / PARAM_GRID)
    return EXP_BELOW_MAX((steps - steps.max(-1, keepdims=True)) * PARAM_GRID)


class VQCodec:
    def __init__(self, model, prior: str = "ar", batch: int = 1000):
        assert prior in PRIORS
        self.model, self.prior, self.batch = model, prior, batch

    def latent_codec(self, n: int) -> Codec:
        """The code grids of n images, cell by cell in raster order."""
        m = self.model
        if self.prior == "uniform":
            return uniform(m.codes, (n, m.positions))
        if self.prior == "factorized":
            return categorical(np.broadcast_to(probabilities(m.factorized), (n, m.positions, m.codes)))

        def push(message, z):
            # Cell by cell is the pop order, so the whole grid goes in as one reversed run.
            probs = probabilities(m.prior_logits(z, np.arange(m.positions)))
            categorical(probs.transpose(1, 0, 2)).push(message, z.T)

        def pop(message):
            z = np.zeros((n, m.positions), np.int64)
            for cell in range(m.positions):
                z[:, cell] = categorical(probabilities(m.prior_logits(z, [cell])[:, 0])).pop(message)
            return z

        return Codec(push, pop)

    def encode(self, images: np.ndarray):
        """uint8 (N, 784) -> the message as uint32 words, and the bits spent on codes."""
        message, latent_bits = new_message(), 0
        for start in range(0, len(images), self.batch):
            x = images[start:start + self.batch]
            z = self.model.quantize(x)
            laplace_ar(self.model, self.model.decode(z)).push(message, x)
            before = message.num_valid_bits()
            self.latent_codec(len(x)).push(message, z)
            latent_bits += message.num_valid_bits() - before
        return message.get_compressed(), latent_bits

    def decode(self, words: np.ndarray, n: int):
        """The images, and the bits their codes took (as encode counted them)."""
        message, latent_bits = new_message(words), 0
        images = np.empty((n, PIXELS), np.uint8)
        for start in reversed(range(0, n, self.batch)):
            before = message.num_valid_bits()
            z = self.latent_codec(min(self.batch, n - start)).pop(message)
            latent_bits += before - message.num_valid_bits()
            images[start:start + self.batch] = laplace_ar(self.model, self.model.decode(z)).pop(message)
        check_used_up(message)
        return images, latent_bits
