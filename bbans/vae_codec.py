"""BB-ANS for sets of 28x28 images with a VAE given as numpy functions.

The model object needs:
- `likelihood`: "bernoulli" or "laplace_ar", and `latent`: the number of latents;
- `posterior(x)`: uint8 (B, 784) -> mean, log-sigma (B, latent) of q(z|x);
- `decode(z)`: (B, latent) -> Bernoulli logits (B, 784), or pixel features (B, 784, F);
- for "laplace_ar", `context`: offsets (di, dj) of the pixels each pixel is conditioned
  on, and `pixel_params(features, context values)` -> logit, mean, log-scale.
Its outputs must not depend on batch size or thread count (models.vae.ExactVAE).

Everything between those outputs and the coder goes through fixed grids and lookup
tables, so encoder and decoder turn the same outputs into the same probabilities.
"""
import numpy as np

from bbans.codecs import Codec, StdBuckets, bernoulli, bits_back, chain, new_message, point, quantized_laplace
from bbans.errors import BbansError

SIDE = 28
PIXELS = SIDE * SIDE
PARAM_GRID = 2.0**-8


class CorruptData(BbansError):
    pass


class GridTable:
    """fn on the grid low, low + step, ..., high; inputs are clipped and rounded to it."""

    def __init__(self, fn, low, high, step=PARAM_GRID):
        self.low, self.high, self.step = low, high, step
        self.values = fn(low + step * np.arange(round((high - low) / step) + 1))

    def __call__(self, x):
        return self.values[np.rint((np.clip(x, self.low, self.high) - self.low) / self.step).astype(np.intp)]


SIGMOID = GridTable(lambda t: 1 / (1 + np.exp(-t)), -32.0, 32.0)
EXP = GridTable(np.exp, -12.0, 8.0)


def context_index(context) -> np.ndarray:
    """(784, len(context)) flat indices of the pixels at offsets (di, dj) from each pixel;
    PIXELS (a zero pad) outside the image."""
    rows, cols = np.divmod(np.arange(PIXELS), SIDE)
    r = rows[:, None] + np.array([di for di, _ in context])
    c = cols[:, None] + np.array([dj for _, dj in context])
    return np.where((r >= 0) & (r < SIDE) & (c >= 0) & (c < SIDE), r * SIDE + c, PIXELS)


# Pixels of each anti-diagonal i + j = d: they depend on earlier diagonals only.
DIAGONALS = [np.flatnonzero(np.add.outer(np.arange(SIDE), np.arange(SIDE)).ravel() == d)
             for d in range(2 * SIDE - 1)]


def batch_schedule(n: int, largest: int, fraction: float = 0.25):
    """(start, size) of the batches: each at most `fraction` of the images before it (and
    at least one), up to `largest`, so that its pops find enough bits on the stack; pops
    from an exhausted stack get no bits back."""
    batches, start = [], 0
    while start < n:
        size = min(max(1, int(start * fraction)), largest, n - start)
        batches.append((start, size))
        start += size
    return batches


class VAECodec:
    def __init__(self, model, precision: int = 8, largest_batch: int = 1000):
        self.model = model
        self.buckets = StdBuckets(precision)
        self.largest_batch = largest_batch

    def posterior_params(self, x):
        mean, log_sigma = self.model.posterior(x)
        return np.rint(mean / PARAM_GRID**2) * PARAM_GRID**2, EXP(log_sigma)

    def posterior(self, x):
        return self.buckets.posterior(*self.posterior_params(x))

    def mode(self, x):
        return point(self.buckets.bucket_of(self.posterior_params(x)[0]))

    def likelihood(self, buckets):
        out = self.model.decode(self.buckets.centres[buckets])
        if self.model.likelihood == "bernoulli":
            return bernoulli(SIGMOID(out))
        return laplace_ar(self.model, out)

    def image_codec(self, n, bits_back_from_stack=True):
        """BB-ANS over a batch of n images; the first batch of a stream has nothing on the
        stack to pop from, so it takes the posterior's mode bucket instead."""
        posterior = self.posterior if bits_back_from_stack else self.mode
        return bits_back(self.buckets.prior((n, self.model.latent)), self.likelihood, posterior)

    def encode(self, images: np.ndarray) -> np.ndarray:
        """uint8 (N, 784) -> the message as uint32 words."""
        message = new_message()
        for start, size in batch_schedule(len(images), self.largest_batch):
            self.image_codec(size, start > 0).push(message, images[start:start + size])
        return message.get_compressed()

    def decode(self, words: np.ndarray, n: int) -> np.ndarray:
        message = new_message(words)
        images = np.empty((n, PIXELS), np.uint8)
        for start, size in reversed(batch_schedule(n, self.largest_batch)):
            images[start:start + size] = self.image_codec(size, start > 0).pop(message)
        if not message.is_empty():
            raise CorruptData("the payload holds more data than the images it decodes to")
        return images


def laplace_ar(model, features):
    """8-bit pixels, anti-diagonal by anti-diagonal: zero or not (Bernoulli), and the
    nonzero ones from a discretized Laplace on 1..255, each given z's features and the
    pixels of its causal context (the model's offsets, on earlier anti-diagonals)."""
    n = len(features)
    context = context_index(model.context)

    def params(idx, padded):
        logit, mean, log_scale = model.pixel_params(features[:, idx], padded[:, context[idx]] / 256.0)
        return SIGMOID(logit), np.rint(mean / PARAM_GRID) * PARAM_GRID, EXP(log_scale)

    def pixel_codec(p_nonzero, mean, scale):
        def nonzero_values(nonzero):
            nonzero = nonzero.astype(bool)
            return quantized_laplace(mean[nonzero], scale[nonzero], 1, 255)

        return chain(bernoulli(p_nonzero), nonzero_values)

    def push(message, x):
        padded = np.concatenate([x, np.zeros((n, 1), x.dtype)], 1).astype(np.float64)
        for idx in reversed(DIAGONALS):
            xd = x[:, idx]
            pixel_codec(*params(idx, padded)).push(message, (xd > 0, xd[xd > 0]))

    def pop(message):
        padded = np.zeros((n, PIXELS + 1))
        for idx in DIAGONALS:
            nonzero, values = pixel_codec(*params(idx, padded)).pop(message)
            xd = np.zeros(nonzero.shape)
            xd[nonzero.astype(bool)] = values
            padded[:, idx] = xd
        return padded[:, :PIXELS].astype(np.uint8)

    return Codec(push, pop)
