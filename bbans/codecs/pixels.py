"""From network outputs to pixel codecs, through fixed grids and lookup tables, so that
encoder and decoder turn the same outputs into the same probabilities."""
import functools

import numpy as np

from bbans.codecs import BernoulliLevels, Codec, affordable, bernoulli, bits_back, chain, mostly_zero, point, quantized_laplace

SIDE = 28
PIXELS = SIDE * SIDE
PARAM_GRID = 2.0**-8


class GridTable:
    """fn on the grid low, low + step, ..., high; inputs are clipped and rounded to it."""

    def __init__(self, fn, low, high, step=PARAM_GRID):
        assert np.frexp(step)[0] == 0.5, "the step is a power of two"
        self.low, self.high, self.step = low, high, step
        self.values = fn(low + step * np.arange(round((high - low) / step) + 1))

    def index(self, x, dtype=np.intp, within=None) -> np.ndarray:
        """The grid points' indices, computed in float32 for float32 x, else in float64: x
        clipped to the grid's ends, or to grid points a and b of `within` (a, b), then x /
        step - low / step rounded (exactly (x - low) / step, the step being a power of
        two; clipping first gives the indices of the ends exactly, as clipping after)."""
        x = np.asarray(x)
        low, high = self.ends(*(within or (self.low, self.high)))
        t = np.maximum(x, low, dtype=np.float32 if x.dtype == np.float32 else np.float64)
        np.minimum(t, high, out=t)  # (np.clip has Python wrappers that cost some 10 us a call)
        t *= 1 / self.step
        t -= self.low / self.step
        return np.rint(t, out=t).astype(dtype)

    @functools.lru_cache
    def ends(self, a: float, b: float) -> tuple:
        """The grid points nearest a and b, inside the grid."""
        first, last = (min(max(round((v - self.low) / self.step), 0), len(self.values) - 1) for v in (a, b))
        return self.low + self.step * first, self.low + self.step * last

    def __call__(self, x):
        return self.values[self.index(x)]


SIGMOID = GridTable(lambda t: 1 / (1 + np.exp(-t)), -32.0, 32.0)
EXP = GridTable(np.exp, -12.0, 8.0)
# Binary pixels: the logit on 256 levels, a grid of 1/8 in [-16, 15.875] (which costs under
# 3 x 10^-4 bits a pixel against the exact logit), so that the pixels of each level share
# one model in the coder.
BINARY_LOGITS = GridTable(lambda t: t, -16.0, 15.875, 1 / 8)
BINARY = {nibbles: BernoulliLevels(1 / (1 + np.exp(-BINARY_LOGITS.values)), nibbles) for nibbles in (False, True)}


def binary(logits: np.ndarray, nibbles: bool = True) -> Codec:
    """Bits (n, d) with P(1) = sigmoid(logits) on that grid. With `nibbles` (see
    BernoulliLevels), those of the lowest level, P(1) ~ 10^-7, go as mostly_zero."""
    levels = BINARY_LOGITS.index(logits, np.uint8)
    if not nibbles:
        return BINARY[False](levels)
    return mostly_zero(levels == 0, lambda coded: BINARY[True](levels[coded]))


def context_index(context, side: int = SIDE, valid=None) -> np.ndarray:
    """(side², len(context)) flat indices of the cells at offsets (di, dj) from each cell
    of a side x side grid; side² (a zero pad) outside the grid, or outside its top-left
    `valid` (height, width) where given (a tile at an image's edge)."""
    height, width = valid or (side, side)
    rows, cols = np.divmod(np.arange(side * side), side)
    r = rows[:, None] + np.array([di for di, _ in context])
    c = cols[:, None] + np.array([dj for _, dj in context])
    return np.where((r >= 0) & (r < height) & (c >= 0) & (c < width), r * side + c, side * side)


def wavefronts(side: int, slope: int, valid=None) -> list:
    """The flat indices of the cells of each line slope i + j = t of a side x side grid, or
    of its top-left `valid` (height, width) part alone, t in order: a cell's causal
    neighbours lie on earlier lines. Empty lines are left out (a part one cell wide has
    no odd lines of slope 2)."""
    height, width = valid or (side, side)
    rows, cols = np.divmod(np.arange(side * side), side)
    order = np.where((rows < height) & (cols < width), slope * rows + cols, -1)
    return [idx for idx in (np.flatnonzero(order == t) for t in range(slope * (height - 1) + width)) if len(idx)]


DIAGONALS = wavefronts(SIDE, 1)  # anti-diagonals i + j = d


def laplace_mixture(weight: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> Codec:
    """Values in 1..255 from weight * Laplace(mean[:, 0], scale[:, 0]) + (1 - weight) *
    Laplace(mean[:, 1], scale[:, 1]), with bits back on the component: push pops it
    given the value (from the Laplace densities), pushes the value given it, then pushes
    it; so a value costs -log2 of its mixture probability, give or take the posterior's
    slack. Where the message is short the component is the likelier one (affordable)."""
    rows = np.arange(len(weight))

    def posterior(values):
        log_density = -np.abs(values[:, None] - mean) / scale - np.log(scale)
        odds = np.log(weight) - np.log1p(-weight) + log_density[:, 0] - log_density[:, 1]
        second = 1 / (1 + np.exp(np.clip(odds, -30, 30)))
        return affordable(bernoulli(second), (second > 0.5).astype(np.int32), len(values) + 64)

    def likelihood(component):
        return quantized_laplace(mean[rows, component], scale[rows, component], 1, 255)

    return bits_back(bernoulli(1 - weight), likelihood, posterior)


def laplace_ar(model, features, valid=None):
    """8-bit pixels (of the top-left `valid` (height, width) of each image alone, where
    given, the rest decoding as zeros), anti-diagonal by anti-diagonal: zero or not (Bernoulli), and the
    nonzero ones from a discretized Laplace on 1..255 (or a mixture of two), each given
    z's features and the pixels of its causal context (the model's offsets, on earlier
    anti-diagonals). The heads see pixel-major arrays (a pixel's values for all images
    in one row, where a diagonal's context is a gather of whole rows); the coder gets
    each diagonal image by image. The Laplaces' parameters are asked for only where
    pixels are nonzero, which spares a model with a zero head most of its work."""
    n, order = len(features), DIAGONALS if valid is None else wavefronts(SIDE, 1, valid)
    context = context_index(model.context, SIDE, valid).T
    columns = np.ascontiguousarray(features.transpose(2, 1, 0))  # (F, 784, n)

    def params(idx, known):
        """known: (785, n) pixel values / 256 so far, the last row the zero pad -> P(nonzero)
        (n, k) and a function from the nonzero pixels (n, k) to their Laplaces' parameters."""
        logit, values_at = model.pixel_heads(columns[:, idx], known[context[:, idx]])

        def select(nonzero):  # in the coder's order, image by image
            images, pixels = np.nonzero(nonzero)
            return values_at(pixels * n + images)

        return SIGMOID(logit).T, select

    def pixel_codec(p_nonzero, select):
        def nonzero_values(nonzero):
            nonzero = nonzero.astype(bool)
            if not nonzero.any():
                return point(np.zeros(0, np.int32))
            mean, log_scale, mix = select(nonzero)
            mean, scale = np.rint(mean / PARAM_GRID) * PARAM_GRID, EXP(log_scale)
            if mix is None:
                return quantized_laplace(mean[:, 0], scale[:, 0], 1, 255)
            return laplace_mixture(SIGMOID(mix), mean, scale)

        return chain(bernoulli(p_nonzero), nonzero_values)

    def push(message, x):
        known = np.concatenate([x.T / 256.0, np.zeros((1, n))])
        for idx in reversed(order):
            xd = x[:, idx]
            pixel_codec(*params(idx, known)).push(message, (xd > 0, xd[xd > 0]))

    def pop(message):
        known, images = np.zeros((PIXELS + 1, n)), np.zeros((n, PIXELS), np.uint8)
        for idx in order:
            nonzero, values = pixel_codec(*params(idx, known)).pop(message)
            xd = np.zeros(nonzero.shape, np.uint8)
            xd[nonzero.astype(bool)] = values
            images[:, idx] = xd
            known[idx] = xd.T / 256.0
        return images

    return Codec(push, pop)
