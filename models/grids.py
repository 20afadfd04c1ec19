"""Exact float64 evaluation of the networks on fixed binary grids (ExactNet for the
encoders and decoders that do not run on integers, ExactColumns for the pixel heads):
weights and activations are rounded to grids on which every product and sum is exact,
so the outputs are bit-identical whatever the thread count, batch split, BLAS or kernel.
"""
import functools
import time

import numpy as np
import torch
from torch import nn

try:
    from bbans.models import _heads  # the C kernel, where it was built (an optional part of the install)
except ImportError:
    _heads = None

WEIGHT_GRID = 2.0**-14
ACT_GRID = 2.0**-10
ACT_LIMIT = 2.0**10
WEIGHT_LIMIT = 8.0

def grid(t, step, limit):
    return (t / step).round().clamp(-limit / step, limit / step) * step


ROUNDER = 1.5 * 2.0**52 * ACT_GRID  # adding and subtracting it rounds to ACT_GRID


class ExactNet:
    """A network of Linear, Conv2d and ConvTranspose2d layers with ReLUs between them,
    evaluated in float64 on fixed grids (convolutions on channels-last input), so that
    its outputs are exact: weights are multiples of 2^-14 below 8, activations multiples
    of 2^-10 below 2^10, so with fan-ins below 2^16 every partial sum is a multiple of
    2^-24 below 2^29: an integer count of 2^-24 below 2^53, which float64 holds exactly
    in any order of summation."""

    def __init__(self, seq: nn.Sequential):
        self.layers = [self._exact(m) for m in seq if not isinstance(m, nn.ReLU)]

    @staticmethod
    def _exact(m):
        """The layer as matrix products (float64 GEMM is fast, and exact on the grids;
        torch's float64 convolutions are slow)."""
        w, b = weights_on_grid(m)
        if isinstance(m, nn.Linear):
            return matmul_layer(w, b)
        square = isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) and m.groups == 1 and m.dilation == (1, 1) \
            and all(a == b for a, b in (m.kernel_size, m.stride, m.padding))
        if square:
            if isinstance(m, nn.ConvTranspose2d) and m.output_padding == (0, 0):
                return transposed_layer(w, b, m.stride[0], m.padding[0])
            if isinstance(m, nn.Conv2d) and m.stride == (1, 1):
                # A stride-1 convolution is the transposed one with the kernel turned round.
                return transposed_layer(w.flip(-2, -1).transpose(0, 1), b, 1, m.padding[0])
        raise TypeError(f"no exact form of {m}")

    @staticmethod
    def input_grid(h: torch.Tensor) -> torch.Tensor:
        h = h.detach().to(torch.float64, copy=True)
        onto_grid(h.numpy(), -ACT_LIMIT)
        return h

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        """The outputs for input h, which is rounded to the activation grid first."""
        h = self.input_grid(h)
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i < len(self.layers) - 1:
                onto_grid(h.numpy())
        return h


def weights_on_grid(m: nn.Module):
    """A layer's weight and bias in float64, rounded to the weight grid."""
    return grid(m.weight.detach().double(), WEIGHT_GRID, WEIGHT_LIMIT), grid(m.bias.detach().double(), WEIGHT_GRID,
                                                                               WEIGHT_LIMIT)


def check_fan_in(fan_in: int):
    """Sums of this many products on the grids stay exact in float64."""
    assert fan_in * WEIGHT_LIMIT * ACT_LIMIT < 2.0**29


def onto_grid(a: np.ndarray, low: float = 0.0):
    """Clamps a (in place) to [low, ACT_LIMIT] and rounds it to the activation grid: low
    = 0 is the ReLU between layers, low = -ACT_LIMIT an input's rounding."""
    np.clip(a, low, ACT_LIMIT, out=a)
    a += ROUNDER
    a -= ROUNDER


class ExactColumns:
    """An MLP (Linear layers, ReLUs between) evaluated as ExactNet does, on inputs given
    as columns, one column per pixel: (in + 1, m) on the activation grid, the last row
    all ones, or gathered from a table of rows (gather). Each layer is then one product
    (out + 1, in + 1) @ (in + 1, m), its bias in the last column and a last row that
    carries the ones on; the columns go through in blocks small enough that every
    layer's output stays in cache. The hidden activations go between layers as counts of
    ACT_GRID, so that rounding them is one np.rint: the first layer's weights and the
    hidden layers' biases are scaled up by 1 / ACT_GRID, the last layer's weights down,
    by powers of two, which changes no bit of the sums."""

    BLOCK = 1024

    def __init__(self, seq: nn.Sequential):
        linears = [m for m in seq if isinstance(m, nn.Linear)]
        self.matrices = []
        for i, m in enumerate(linears):
            check_fan_in(m.in_features + 1)
            w, b = (t.numpy() for t in weights_on_grid(m))
            last = i == len(linears) - 1
            w = w * (1 / ACT_GRID if i == 0 else 1) * (ACT_GRID if last else 1)
            a = np.concatenate([w, (b if last else b / ACT_GRID)[:, None]], 1)
            if not last:
                a = np.concatenate([a, np.eye(1, a.shape[1], a.shape[1] - 1)])
            self.matrices.append(a)
        self.padded = None  # for avx2

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.gather(x, np.arange(len(x) - 1)[:, None])

    def gather(self, table: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """The outputs (out, k n) for the columns i n + j whose input r is table[rows[r, i],
        j]: table (R, n), rows (in, k) (the ones are implied)."""
        return getattr(self, head_kernel())(table, rows)

    def numpy(self, table: np.ndarray, rows: np.ndarray) -> np.ndarray:
        x = np.empty((len(rows) + 1, rows.shape[1] * table.shape[1]))
        x[:-1] = table[rows].reshape(len(rows), -1)
        x[-1] = 1
        out = np.empty((len(self.matrices[-1]), x.shape[1]))
        for start in range(0, x.shape[1], self.BLOCK):
            h = x[:, start:start + self.BLOCK]
            for m in self.matrices[:-1]:
                h = m @ h
                np.clip(h, 0.0, ACT_LIMIT / ACT_GRID, out=h)  # the ReLU and the limit of onto_grid
                np.rint(h, out=h)
            np.matmul(self.matrices[-1], h, out=out[:, start:start + self.BLOCK])
        return out

    def avx2(self, table: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """models/_heads.c: the same sums with AVX2's fused multiply-adds, which round
        nothing here (every product and sum is exact), so the same bits; the bias starts
        each sum in place of the row of ones, and the kernel gathers the columns itself."""
        if self.padded is None:  # rows padded with zeros to a multiple of 4, columns to match
            self.padded, cols = [], self.matrices[0].shape[1] - 1
            for i, a in enumerate(self.matrices):
                a = a if i == len(self.matrices) - 1 else a[:-1]  # the ones' row
                p, bias = np.zeros((-(-len(a) // 4) * 4, cols)), np.zeros(-(-len(a) // 4) * 4)
                p[:len(a), :a.shape[1] - 1], bias[:len(a)] = a[:, :-1], a[:, -1]
                self.padded.append((p, bias, *p.shape))
                cols = len(p)
        table = np.ascontiguousarray(table, np.float64)
        out = np.empty((self.padded[-1][2], rows.shape[1] * table.shape[1]))
        _heads.mlp(table, table.shape[1], np.ascontiguousarray(rows, np.int64), self.padded, ACT_LIMIT / ACT_GRID, out)
        return out[:len(self.matrices[-1])]


def head_methods() -> list:
    """ExactColumns' methods that this machine runs."""
    return ["numpy"] + (["avx2"] if _heads is not None and _heads.available() else [])


@functools.cache
def timing_head():
    """(head, table, rows): a head shaped like the zoo's (13 inputs, two hidden layers of
    32, 3 outputs; many weights at the grid's limit of 8) and 4,099 columns of its
    inputs, the first three all -ACT_LIMIT, ACT_LIMIT and 0, as gather takes them."""
    torch.manual_seed(0)
    seq = nn.Sequential(nn.Linear(13, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 3))
    with torch.no_grad():
        for m in seq[::2]:
            m.weight.mul_(40)
    x = np.rint(np.random.default_rng(0).uniform(-1, 1, (13, 4099)) * ACT_LIMIT / ACT_GRID) * ACT_GRID
    x[:, :3] = [-ACT_LIMIT, ACT_LIMIT, 0]
    return ExactColumns(seq), x, np.arange(13)[:, None]


def head_seconds(methods, repeat: int = 5) -> dict:
    """Each method's fastest time on the timing head, the methods taken in turns."""
    head, *inputs = timing_head()
    best = dict.fromkeys(methods, np.inf)
    for _ in range(repeat):
        for name in best:
            start = time.perf_counter()
            getattr(head, name)(*inputs)
            best[name] = min(best[name], time.perf_counter() - start)
    return best


@functools.cache
def head_kernel() -> str:
    """ExactColumns' method for this process: "avx2" where models/_heads.c runs, gives
    numpy's bits on the timing head and is the faster of the two there; else "numpy"."""
    if head_methods() == ["numpy"]:
        return "numpy"
    head, *inputs = timing_head()
    if not np.array_equal(head.numpy(*inputs), head.avx2(*inputs)):
        return "numpy"
    best = head_seconds(head_methods())
    return min(best, key=best.get)


def matmul_layer(w, b, fan_in=None):
    """A linear layer (out, in). Bounding the fan-in (of the whole layer, when this is one
    tap of a convolution) keeps every sum exact."""
    check_fan_in(fan_in or w.shape[1])
    wt, bias = w.T.contiguous().numpy(), b.numpy()

    def apply(h):
        out = h.numpy() @ wt  # numpy's BLAS does these narrow products some 1.5x faster than torch.addmm
        out += bias
        return torch.from_numpy(out)

    return apply


def transposed_layer(w, b, stride: int, padding: int):
    """A transposed convolution (in, out, k, k) on channels-last input (n, H, W, in):
    input pixel (i, j) through kernel tap (ti, tj) adds to output pixel (stride i -
    padding + ti, stride j - padding + tj). One matmul gives every tap's products."""
    c_in, c_out, k = w.shape[0], w.shape[1], w.shape[-1]
    taps = matmul_layer(w.permute(0, 2, 3, 1).reshape(c_in, -1).T, torch.zeros(k * k * c_out, dtype=w.dtype),
                        fan_in=c_in * k * k)

    def apply(h):
        n, height, width, _ = h.shape
        y = taps(h.reshape(-1, c_in)).reshape(n, height, width, k, k, c_out)
        out = b.repeat(n, stride * (height - 1) + k, stride * (width - 1) + k, 1)  # before cropping the padding
        for ti in range(k):
            for tj in range(k):
                out[:, ti:ti + stride * height:stride, tj:tj + stride * width:stride] += y[:, :, :, ti, tj]
        return out[:, padding:out.shape[1] - padding, padding:out.shape[2] - padding]

    return apply
