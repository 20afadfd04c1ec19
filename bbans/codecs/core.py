"""Composable codecs over a constriction ANS stack.

A codec is a pair of functions over a message (a `constriction` AnsCoder, mutated in
place): `push(message, symbols)` and `pop(message) -> symbols`, with pop undoing push.
The message is a stack, so the last thing pushed is the first popped. Every codec here
takes numpy parameters; nothing needs torch.
"""
from typing import Any, Callable, NamedTuple

import constriction
import numpy as np

from bbans.errors import BbansError

MODELS = constriction.stream.model


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


def family(model, shape, *params) -> Codec:
    """One constriction model family, each symbol of an array of `shape` with its own parameters."""
    params = [np.ascontiguousarray(p, np.float64).ravel() for p in params]

    def push(message, symbols):
        message.encode_reverse(np.asarray(symbols, np.int32).ravel(), model, *params)

    def pop(message):
        return message.decode(model, *params).reshape(shape)

    return Codec(push, pop)


def bernoulli(p: np.ndarray) -> Codec:
    """Symbols in {0, 1}, P(1) = p elementwise."""
    return family(MODELS.Bernoulli(perfect=False), np.shape(p), p)


def categorical(probs: np.ndarray) -> Codec:
    """Symbols in {0..K-1}, one row of (..., K) unnormalised probabilities each."""
    probs = np.asarray(probs, np.float64)
    shape = probs.shape[:-1]
    if probs.shape[-1] == 1:
        return point(np.zeros(shape, np.int32))
    model = MODELS.Categorical(perfect=False)
    flat = np.ascontiguousarray(probs.reshape(-1, probs.shape[-1]))

    def push(message, symbols):
        message.encode_reverse(np.asarray(symbols, np.int32).ravel(), model, flat)

    return Codec(push, lambda message: message.decode(model, flat).reshape(shape))


def uniform(size: int, shape) -> Codec:
    """Symbols in {0..size-1}, all equally likely."""
    if size == 1:
        return point(np.zeros(shape, np.int32))
    return fixed(MODELS.Uniform(size), shape)


def fixed(model, shape) -> Codec:
    """Symbols of an array of `shape`, all from the one fixed constriction `model`."""
    n = int(np.prod(shape))

    def push(message, symbols):
        message.encode_reverse(np.asarray(symbols, np.int32).ravel(), model)

    return Codec(push, lambda message: message.decode(model, n).reshape(shape))


def quantized_laplace(mean: np.ndarray, scale: np.ndarray, low: int, high: int) -> Codec:
    """Integers in [low, high]: a Laplace integrated over unit bins, renormalised to the range."""
    if low == high:
        return point(np.full(np.shape(mean), low, np.int32))
    return family(MODELS.QuantizedLaplace(low, high), np.shape(mean), mean, scale)


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
    `mode`, or what `mode()` gives where it is a function. A bit pushed after it tells
    the decoder which."""

    def pop(message):
        popped = message.num_bits() >= bits
        z = posterior.pop(message) if popped else mode() if callable(mode) else mode
        POPPED_FLAG.push(message, [int(popped)])
        return z

    def push(message, z):
        if POPPED_FLAG.pop(message)[0]:
            posterior.push(message, z)

    return Codec(push, pop)


POPPED_FLAG = uniform(2, (1,))  # affordable's bit (one constriction model for all: building one takes some 60 us)


def mostly_zero(sure: np.ndarray, rest: Callable[[np.ndarray], Codec], p: float = 2.0**-10) -> Codec:
    """Bits (n, d) where those marked `sure` are almost surely 0: a flag per row, up with
    probability p, says whether any of them is 1, and rest(coded) codes the bits of the
    mask `coded`: all but the sure ones, save in the rows whose flag is up. The sure
    zeros then cost about p / ln 2 bits a row in all, and no coder steps."""
    flags = fixed(MODELS.Bernoulli(p, perfect=False), (len(sure),))

    def coded(up):
        mask = ~sure
        mask[up] = True
        return mask

    def push(message, bits):
        bits = np.asarray(bits)
        up = (bits.astype(bool) & sure).any(1)
        mask = coded(up)
        rest(mask).push(message, bits[mask])
        flags.push(message, up)

    def pop(message):
        mask = coded(flags.pop(message).astype(bool))
        out = np.zeros(sure.shape, np.uint8)
        out[mask] = rest(mask).pop(message)
        return out

    return Codec(push, pop)


def by_model(keys: np.ndarray, count: int):
    """Symbols whose models are picked by `keys` (in 0..count-1, count <= 2^16): the order
    that puts the symbols of each model together (a stable radix sort of 16-bit keys),
    and (key, start, end) there of each model in use, in key order."""
    order = np.argsort(keys.astype(np.uint16), kind="stable")
    counts = np.bincount(keys, minlength=count)
    used = np.flatnonzero(counts)
    ends = np.cumsum(counts[used])
    return order, list(zip(used.tolist(), (ends - counts[used]).tolist(), ends.tolist()))


class BernoulliLevels:
    """Bits whose P(1) is one of a fixed list `probs`, given per bit as its index there.
    The bits of one level go to the coder in one call with one fixed model: a few ns a
    bit, against some 25 for a model built per bit. The order of the bits on the stack is
    then by level, which the decoder knows before it pops.

    With `nibbles`, the bits so ordered go four at a time, as one symbol of 16 values
    whose probabilities are the products of its bits': a quarter of the coder's steps for
    the same cost. A nibble that spans two levels (or the end) gets its own table."""

    SHIFTS = np.arange(4)

    def __init__(self, probs, nibbles: bool = False):
        self.probs = np.asarray(probs, np.float64)
        self.nibbles = nibbles
        self.models = [MODELS.Bernoulli(float(p), perfect=False) for p in self.probs]
        if nibbles:
            self.tables = [MODELS.Categorical(row, perfect=False) for row in self._nibble_probs(self.probs[:, None])]

    def _nibble_probs(self, p):
        """P(1) of each of four bits, (n, 4) -> (n, 16) probabilities of b0 + 2 b1 + 4 b2 + 8 b3."""
        bits = (np.arange(16)[:, None] >> self.SHIFTS) & 1  # (16, 4)
        return np.prod(np.where(bits, p[:, None, :], 1 - p[:, None, :]), -1)

    def __call__(self, levels: np.ndarray) -> Codec:
        shape, flat = levels.shape, levels.ravel()
        order, groups = by_model(flat, len(self.models))
        if self.nibbles:
            return self._nibble_codec(shape, flat, order, groups)

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

    def _nibble_codec(self, shape, flat, order, groups) -> Codec:
        n = flat.size
        runs = [(k, -(-a // 4), b // 4) for k, a, b in groups]  # the nibbles wholly in a level
        runs = [(k, a, b) for k, a, b in runs if b > a]
        mixed = np.array(sorted({a // 4 for _, a, _ in groups if a % 4} | ({n // 4} if n % 4 else set())), np.intp)
        if len(mixed):
            at = 4 * mixed[:, None] + self.SHIFTS  # the mixed nibbles' positions in the order
            p = np.where(at < n, self.probs[flat[order[np.minimum(at, n - 1)]]], 0.0)  # past the end: a 0 bit
            mixed_model = categorical(self._nibble_probs(p))

        def push(message, bits):
            ordered = np.zeros(-(-n // 4) * 4, np.uint8)
            ordered[:n] = np.asarray(bits).ravel()[order]
            symbols = (ordered.view("<u4") * np.uint32(0x01020408) >> 24).astype(np.int32)  # b0 + 2 b1 + 4 b2 + 8 b3
            for k, a, b in runs:
                message.encode_reverse(symbols[a:b], self.tables[k])
            if len(mixed):
                mixed_model.push(message, symbols[mixed])

        def pop(message):
            symbols = np.empty(-(-n // 4), "<u4")
            if len(mixed):
                symbols[mixed] = mixed_model.pop(message)
            for k, a, b in reversed(runs):
                symbols[a:b] = message.decode(self.tables[k], b - a)
            out = np.empty(n, np.uint8)
            out[order] = ((symbols | symbols << 7 | symbols << 14 | symbols << 21) & 0x01010101).view(np.uint8)[:n]
            return out.reshape(shape)

        return Codec(push, pop)
