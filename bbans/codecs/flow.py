"""A flow of exactly invertible integer maps coded at its own density (bbans.models.exact_flow).

The pixels are dequantized by bits back: each pops DEQUANT_BITS of noise u from the
message and becomes the cell X = pixel 2^DEQUANT_BITS + u. A monotone elementwise map
(the logit) sends cell X to the grid values in [edges[X], edges[X + 1]): one of them
popped uniformly. An affine map y = x S / R + T (R = 2^scale_bits) is the modular scale
transform of iFlow (Zhang et al. 2021): pop r uniform in [0, S), v = x S + r, push
v mod R uniform in [0, R), y = v div R + T, which costs log2 R - log2 S bits, the
Jacobian's. Last, z goes under N(0, 1) on the grid. Every step is integer arithmetic
and uniform codes, so the net cost of an image is -log2 of the discretized flow's
density of it in pixel units, the NLL's, less nothing but rounding.
"""
from collections import Counter

import numpy as np
from scipy.special import ndtr

from bbans.codecs.core import MODELS, BbansError, check_used_up, new_message
from bbans.codecs.vae import batch_schedule

UNIFORM = MODELS.Uniform()  # sizes given per symbol (each at least 2)
CELL_BITS = 6  # the prior's cells: 2^-6 wide, the grid values inside one uniform
LIMIT = 8  # the prior's table covers |z| < 8; beyond, an escape and the cell in 32 bits
VALUE_LIMIT = 2**46  # a value of the flow beyond this (|z| > 2^28) is refused


class OutOfRange(BbansError):
    pass


def uniform_pop(message, sizes: np.ndarray) -> np.ndarray:
    out = np.zeros(sizes.shape, np.int64)
    coded = sizes > 1
    out[coded] = message.decode(UNIFORM, sizes[coded].astype(np.int32))
    return out


def uniform_push(message, symbols: np.ndarray, sizes: np.ndarray):
    coded = sizes > 1
    message.encode_reverse(symbols[coded].astype(np.int32), UNIFORM, sizes[coded].astype(np.int32))


class GridNormal:
    """N(0, 1) over the integers z of the grid 2^-grid_bits: the cell z >> low (low =
    grid_bits - CELL_BITS) from a fixed table over |z| < LIMIT and an escape, then its
    low bits uniform."""

    def __init__(self, grid_bits: int):
        self.low = grid_bits - CELL_BITS
        self.half = LIMIT << CELL_BITS  # cells -half .. half - 1
        edges = np.arange(-self.half, self.half + 1) / 2.0**CELL_BITS
        masses = np.append(np.diff(ndtr(edges)), 2 * ndtr(-LIMIT))
        self.table = MODELS.Categorical(masses, perfect=False)
        self.escape = 2 * self.half

    def push(self, message, z: np.ndarray):
        z = z.ravel()
        cell = z >> self.low
        inside = (cell >= -self.half) & (cell < self.half)
        out = (cell[~inside] + 2**31).astype(np.uint32)
        message.encode_reverse((out & 0xFFFF).astype(np.int32), MODELS.Uniform(1 << 16))
        message.encode_reverse((out >> 16).astype(np.int32), MODELS.Uniform(1 << 16))
        message.encode_reverse(np.where(inside, cell + self.half, self.escape).astype(np.int32), self.table)
        message.encode_reverse((z & ((1 << self.low) - 1)).astype(np.int32), MODELS.Uniform(1 << self.low))

    def pop(self, message, n: int) -> np.ndarray:
        low = message.decode(MODELS.Uniform(1 << self.low), n).astype(np.int64)
        symbols = message.decode(self.table, n).astype(np.int64)
        outside = symbols == self.escape
        k = int(outside.sum())
        high = message.decode(MODELS.Uniform(1 << 16), k).astype(np.int64)
        cells = (high << 16 | message.decode(MODELS.Uniform(1 << 16), k).astype(np.int64)) - 2**31
        symbols -= self.half
        symbols[outside] = cells
        return symbols << self.low | low


class FlowCodec:
    """Images (N, dims) of 8-bit pixels through an exact flow (its `edges`, `steps`,
    grid_bits, scale_bits, dequant_bits), in batches that follow batch_schedule."""

    FRACTION = 1 / 24  # an image pops some 25 bits a dimension before it pushes any: 18 images' worth

    def __init__(self, flow, largest_batch: int = 100):
        self.flow, self.largest_batch = flow, largest_batch
        self.prior = GridNormal(flow.grid_bits)
        self.r = 1 << flow.scale_bits
        self.dims = flow.dims

    def push_batch(self, message, pixels: np.ndarray):
        f = self.flow
        x = pixels.astype(np.int64) << f.dequant_bits | uniform_pop(message, np.full(pixels.shape, 1 << f.dequant_bits))
        lo = f.edges[x]
        state = lo + uniform_pop(message, f.edges[x + 1] - lo)
        for step in f.steps:
            s, t = step.params(state)
            v = state[:, step.changed] * s + uniform_pop(message, s)
            uniform_push(message, v & (self.r - 1), np.full(v.shape, self.r))
            state[:, step.changed] = (v >> f.scale_bits) + t
            if np.abs(state).max() >= VALUE_LIMIT:
                raise OutOfRange("an image lies outside the range the flow codes")
        self.prior.push(message, state)

    def pop_batch(self, message, n: int) -> np.ndarray:
        f = self.flow
        state = self.prior.pop(message, n * self.dims).reshape(n, self.dims)
        for step in reversed(f.steps):
            s, t = step.params(state)
            v = (state[:, step.changed] - t) << f.scale_bits | uniform_pop(message, np.full(s.shape, self.r))
            x = v // s
            uniform_push(message, v - x * s, s)
            state[:, step.changed] = x
        x = np.searchsorted(f.edges, state, side="right") - 1
        if x.min() < 0 or x.max() >= len(f.edges) - 1:
            raise BbansError("corrupt payload (a value outside the flow's input range)")
        uniform_push(message, state - f.edges[x], f.edges[x + 1] - f.edges[x])
        uniform_push(message, x & ((1 << f.dequant_bits) - 1), np.full(x.shape, 1 << f.dequant_bits))
        return (x >> f.dequant_bits).astype(np.uint8)

    def encode(self, images: np.ndarray, costs: Counter = None) -> np.ndarray:
        """uint8 (N, dims) -> the message as uint32 words. With `costs`, adds to its
        "images", "dims" and "bits" what the batches after the first cost."""
        message = new_message()
        for start, size in batch_schedule(len(images), self.largest_batch, self.FRACTION):
            bits = message.num_valid_bits()
            self.push_batch(message, images[start:start + size])
            if costs is not None and start > 0:
                costs.update(images=size, dims=size * self.dims, bits=message.num_valid_bits() - bits)
        return message.get_compressed()

    def decode(self, words: np.ndarray, n: int) -> np.ndarray:
        message = new_message(words)
        images = np.empty((n, self.dims), np.uint8)
        for start, size in reversed(batch_schedule(n, self.largest_batch, self.FRACTION)):
            images[start:start + size] = self.pop_batch(message, size)
        check_used_up(message)
        return images
