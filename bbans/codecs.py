"""Composable codecs over a constriction ANS stack.

A codec is a pair of functions over a message (a `constriction` AnsCoder, mutated in
place): `push(message, symbols)` and `pop(message) -> symbols`, with pop undoing push.
The message is a stack, so the last thing pushed is the first popped. Every codec here
takes numpy parameters; nothing needs torch.
"""
from typing import Any, Callable, NamedTuple

import constriction
import numpy as np
from scipy.special import ndtr, ndtri

from bbans.errors import BbansError

_model = constriction.stream.model
LATENT_STEP = 2.0**-4  # of the latents' grid (LatentGrid)


class CorruptData(BbansError):
    pass


class Codec(NamedTuple):
    push: Callable[[Any, Any], None]
    pop: Callable[[Any], Any]


def new_message(words=None):
    """An empty message, or one restored from its uint32 words."""
    stack = constriction.stream.stack
    return stack.AnsCoder() if words is None else stack.AnsCoder(np.asarray(words, np.uint32))


def check_used_up(message):
    """After decoding everything a payload should hold, nothing may be left."""
    if not message.is_empty():
        raise CorruptData("the payload holds more data than the images it decodes to")


def _family(model, shape, *params) -> Codec:
    """One constriction model family, each symbol of an array of `shape` with its own parameters."""
    params = [np.ascontiguousarray(p, np.float64).ravel() for p in params]

    def push(message, symbols):
        message.encode_reverse(np.asarray(symbols, np.int32).ravel(), model, *params)

    def pop(message):
        return message.decode(model, *params).reshape(shape)

    return Codec(push, pop)


def bernoulli(p: np.ndarray) -> Codec:
    """Symbols in {0, 1}, P(1) = p elementwise."""
    return _family(_model.Bernoulli(perfect=False), np.shape(p), p)


def categorical(probs: np.ndarray) -> Codec:
    """Symbols in {0..K-1}, one row of (..., K) unnormalised probabilities each."""
    probs = np.asarray(probs, np.float64)
    shape = probs.shape[:-1]
    if probs.shape[-1] == 1:
        return point(np.zeros(shape, np.int32))
    model = _model.Categorical(perfect=False)
    flat = np.ascontiguousarray(probs.reshape(-1, probs.shape[-1]))

    def push(message, symbols):
        message.encode_reverse(np.asarray(symbols, np.int32).ravel(), model, flat)

    return Codec(push, lambda message: message.decode(model, flat).reshape(shape))


def uniform(size: int, shape) -> Codec:
    """Symbols in {0..size-1}, all equally likely."""
    if size == 1:
        return point(np.zeros(shape, np.int32))
    return _fixed(_model.Uniform(size), shape)


def _fixed(model, shape) -> Codec:
    """Symbols of an array of `shape`, all from the one fixed constriction `model`."""
    n = int(np.prod(shape))

    def push(message, symbols):
        message.encode_reverse(np.asarray(symbols, np.int32).ravel(), model)

    return Codec(push, lambda message: message.decode(model, n).reshape(shape))


def quantized_laplace(mean: np.ndarray, scale: np.ndarray, low: int, high: int) -> Codec:
    """Integers in [low, high]: a Laplace integrated over unit bins, renormalised to the range."""
    if low == high:
        return point(np.full(np.shape(mean), low, np.int32))
    return _family(_model.QuantizedLaplace(low, high), np.shape(mean), mean, scale)


def point(value) -> Codec:
    """A certain value: pushing costs nothing and pop returns `value`."""
    return Codec(lambda message, symbols: None, lambda message: value)


def chain(first: Codec, *then: Callable[[Any], Codec]) -> Codec:
    """Symbols (s_0, s_1, ..., s_k) where each depends on the one before: s_0 from `first`,
    s_i from then[i-1](s_i-1). Pop goes from s_0 up."""

    def push(message, symbols):
        for codec_of, before, s in reversed(list(zip(then, symbols, symbols[1:]))):
            codec_of(before).push(message, s)
        first.push(message, symbols[0])

    def pop(message):
        symbols = [first.pop(message)]
        for codec_of in then:
            symbols.append(codec_of(symbols[-1]).pop(message))
        return tuple(symbols)

    return Codec(push, pop)


def serial(codecs) -> Codec:
    """A tuple of independent symbols, one codec each, popped in the given order."""

    def push(message, symbols):
        for codec, s in reversed(list(zip(codecs, symbols))):
            codec.push(message, s)

    return Codec(push, lambda message: tuple(c.pop(message) for c in codecs))


def bits_back(prior: Codec, likelihood: Callable[[Any], Codec],
              posterior: Callable[[Any], Codec]) -> Codec:
    """BB-ANS (Townsend et al. 2019): push x by popping z ~ q(z|x), pushing x ~ p(x|z)
    and z ~ p(z); the net cost is -log p(x|z) - log p(z) + log q(z|x) per x."""

    def push(message, x):
        z = posterior(x).pop(message)
        likelihood(z).push(message, x)
        prior.push(message, z)

    def pop(message):
        z = prior.pop(message)
        x = likelihood(z).pop(message)
        posterior(x).push(message, z)
        return x

    return Codec(push, pop)


def affordable(posterior: Codec, mode, bits: float) -> Codec:
    """A bits-back posterior that pops from the message only if it holds at least `bits`
    (a stack popped dry yields latents of no use, which then cost dear); else it takes
    `mode`. A bit pushed after it tells the decoder which."""
    flag = uniform(2, (1,))

    def pop(message):
        popped = message.num_bits() >= bits
        z = posterior.pop(message) if popped else mode
        flag.push(message, [int(popped)])
        return z

    def push(message, z):
        if flag.pop(message)[0]:
            posterior.push(message, z)

    return Codec(push, pop)


class StdBuckets:
    """The real line cut into 2**precision buckets of equal mass under N(0, 1)."""

    def __init__(self, precision: int):
        self.precision = precision
        self.size = 2**precision
        self.edges = ndtri(np.arange(self.size + 1) / self.size)  # -inf .. +inf
        self.centres = ndtri((np.arange(self.size) + 0.5) / self.size)

    def prior(self, shape) -> Codec:
        return uniform(self.size, shape)

    def bucket_of(self, z: np.ndarray) -> np.ndarray:
        return np.clip(np.searchsorted(self.edges, z, side="right") - 1, 0, self.size - 1)

    def gaussian(self, mean: np.ndarray, std: np.ndarray) -> Codec:
        """A diagonal Gaussian over bucket indices, coded as `precision` binary decisions
        (which half of the current range), so that each decision needs the Gaussian's CDF
        at one new edge instead of the whole table of bucket masses."""
        shape = np.shape(mean)

        def tail(k):
            """Where edge k lies (below the mean?) and the Gaussian mass beyond it on that side."""
            return self.edges[k] < mean, ndtr(-np.abs((self.edges[k] - mean) / std))

        def mass(a, b):
            """Mass between two edges given as tail() pairs, from the tails that keep precision."""
            (a_below, ta), (b_below, tb) = a, b
            return np.where(b_below, tb - ta, np.where(a_below, 1 - ta - tb, ta - tb))

        def decisions(bits_of):
            """Walks the binary search; bits_of(p_upper) gives each level's bits."""
            lo, hi = np.zeros(shape, np.int64), np.full(shape, self.size, np.int64)
            t_lo, t_hi = tail(lo), tail(hi)
            for _ in range(self.precision):
                mid = (lo + hi) // 2
                t_mid = tail(mid)
                low, high = mass(t_lo, t_mid), mass(t_mid, t_hi)
                total = low + high  # 0 only far out in a tail, where any p will do
                up = bits_of(np.where(total > 0, high / np.where(total > 0, total, 1), 0.5))
                lo, hi = np.where(up, mid, lo), np.where(up, hi, mid)
                t_lo = tuple(np.where(up, m, l) for m, l in zip(t_mid, t_lo))
                t_hi = tuple(np.where(up, h, m) for m, h in zip(t_mid, t_hi))
            return lo

        def pop(message):
            return decisions(lambda p: bernoulli(p).pop(message).astype(bool))

        def push(message, buckets):
            levels = []

            def known_bits(p):
                bit = (buckets >> (self.precision - 1 - len(levels))) & 1
                levels.append((p.ravel(), bit.ravel()))
                return bit.astype(bool)

            decisions(known_bits)
            probs, bits = zip(*levels)
            bernoulli(np.concatenate(probs)).push(message, np.concatenate(bits))

        return Codec(push, pop)


class BernoulliLevels:
    """Bits whose P(1) is one of a fixed list `probs`, given per bit as its index there.
    The bits of one level go to the coder in one call with one fixed model: a few ns a
    bit, against some 25 for a model built per bit. The order of the bits on the stack is
    then by level, which the decoder knows before it pops."""

    def __init__(self, probs):
        self.models = [_model.Bernoulli(float(p), perfect=False) for p in probs]

    def __call__(self, levels: np.ndarray) -> Codec:
        shape, flat = levels.shape, levels.ravel()
        order = np.argsort(flat.astype(np.uint16), kind="stable")  # a radix sort, faster on 16 bits than on 8
        ends = np.cumsum(np.bincount(flat, minlength=len(self.models)))
        groups = [(k, ends[k - 1] if k else 0, ends[k]) for k in np.flatnonzero(np.diff(ends, prepend=0))]

        def push(message, bits):
            ordered = np.asarray(bits, np.int32).ravel()[order]
            for k, a, b in groups:
                message.encode_reverse(ordered[a:b], self.models[k])

        def pop(message):
            ordered, out = np.empty(flat.size, np.int32), np.empty(flat.size, np.int32)
            for k, a, b in reversed(groups):
                ordered[a:b] = message.decode(self.models[k], b - a)
            out[order] = ordered
            return out.reshape(shape)

        return Codec(push, pop)


class LatentGrid:
    """Latents on the grid step * (k - limit), k = 0..2 limit (the bucket index), coded
    with a Gaussian integrated over each cell (the end cells take the tails): the prior
    N(0, 1) as one fixed table (which the coder decodes four times faster than a fixed
    Gaussian), and N(mean, std) with a model per latent (posteriors, conditional priors), all inside the coder."""

    def __init__(self, step: float = LATENT_STEP, limit: int = 128):
        self.step, self.limit = step, limit
        self.size = 2 * limit + 1
        self.centres = step * (np.arange(self.size) - limit)
        edges = np.concatenate([[-np.inf], self.centres[1:] - step / 2, [np.inf]])
        self._prior = _model.Categorical(np.diff(ndtr(edges)), perfect=False)
        self._posterior = _model.QuantizedGaussian(0, 2 * limit)

    def prior(self, shape) -> Codec:
        return _fixed(self._prior, shape)

    def bucket_of(self, z: np.ndarray) -> np.ndarray:
        return np.clip(np.rint(z / self.step) + self.limit, 0, 2 * self.limit).astype(np.int64)

    def entropy_bits(self, std: np.ndarray) -> float:
        """About the bits a pop from gaussian(., std) takes: the differential entropy of
        N(., std) in units of the cell, summed over latents."""
        return float(np.sum(np.maximum(0.0, np.log2(std / self.step * np.sqrt(2 * np.pi * np.e)))))

    def gaussian(self, mean: np.ndarray, std: np.ndarray) -> Codec:
        return _family(self._posterior, np.shape(mean), mean / self.step + self.limit, std / self.step)
