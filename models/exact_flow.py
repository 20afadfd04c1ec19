"""RealNVP as exactly invertible integer maps, for bbans.codecs.flow.

Every value of the flow is an integer count of 2^-GRID_BITS. The logit pre-processing
becomes a table of cell edges; each coupling an elementwise affine map y = x S / 2^SCALE_BITS
+ T of the dimensions it changes, whose integers S and T come from the dimensions it
keeps; each ActNorm the same map with constants. The coupling networks run as ExactNet
does (float64 on fixed grids, every sum exact), and a scale exp(c tanh(raw)) comes from a
table indexed by the raw output rounded to 2^-RAW_BITS, so encoder and decoder compute
the same integers on any machine. The tables are built with Python's scalar math (the
platform's libm, not numpy's SIMD code); `digest` is their hash, which the probe
fingerprint carries, so that a machine whose libm would round one entry otherwise refuses
a file rather than misdecode it.
"""
import hashlib
import math

import numpy as np

from bbans.models.flows import RealNVP, checkerboard
from bbans.models.grids import ACT_LIMIT, check_fan_in, onto_grid, weights_on_grid

GRID_BITS = 18  # the flow's values are integers times 2^-18
SCALE_BITS = 12  # a scale is S / 2^12
DEQUANT_BITS = 8  # the dequantization noise: 2^8 cells of a pixel value
RAW_BITS = 10  # the networks' raw scale output is rounded to 2^-10 for the scale table
RAW_LIMIT = 6  # and clipped to +-6 (tanh(6) = 1 - 1.2e-5)
RAW_STEPS = RAW_LIMIT << RAW_BITS  # the table's entries run from -RAW_STEPS to RAW_STEPS
PIXEL_BITS = 8


def conv3x3(m):
    """A 3x3 convolution (stride 1, padding 1) on channels-last float64 input (n, H, W, C),
    exact on the grids as ExactNet's layers: the nine shifted copies of the input side by
    side, one product. (The same bits as ExactNet's transposed form, which was 1.6 to 6.6
    times slower here on the 2- and 16-channel inputs of these couplings.)"""
    w, b = weights_on_grid(m)
    check_fan_in(9 * w.shape[1])
    matrix = w.permute(2, 3, 1, 0).reshape(-1, w.shape[0]).numpy()  # rows by (tap row, tap column, channel)
    bias = b.numpy()

    def apply(h):
        n, height, width, _ = h.shape
        padded = np.pad(h, ((0, 0), (1, 1), (1, 1), (0, 0)))
        taps = np.concatenate([padded[:, i:i + height, j:j + width] for i in range(3) for j in range(3)], -1)
        out = taps.reshape(n * height * width, -1) @ matrix
        out += bias
        return out.reshape(n, height, width, -1)

    return apply


class ExactResNet:
    """flows.ResNet in exact float64 on channels-last input (n, H, W, C): each ReLU'd
    input of a convolution rounded to the activation grid, the residual sums exact."""

    def __init__(self, net):
        self.inp = conv3x3(net.inp)
        self.blocks = [(conv3x3(b[1]), conv3x3(b[3])) for b in net.blocks]
        self.out = conv3x3(net.out[1])

    @staticmethod
    def _relu(h):
        a = h.copy()
        onto_grid(a)
        return a

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.array(x, np.float64)
        onto_grid(x, -ACT_LIMIT)
        h = self.inp(x)
        for first, second in self.blocks:
            h += second(self._relu(first(self._relu(h))))
        return self.out(self._relu(h))


def scale_table(c: float) -> np.ndarray:
    """S = round(2^SCALE_BITS exp(c tanh(k 2^-RAW_BITS))) for k = -RAW_STEPS..RAW_STEPS."""
    return np.array([round(math.ldexp(math.exp(c * math.tanh(math.ldexp(i, -RAW_BITS))), SCALE_BITS))
                     for i in range(-RAW_STEPS, RAW_STEPS + 1)], np.int64)


def scales_of(raw: np.ndarray, table: np.ndarray) -> np.ndarray:
    """The table's S at raw outputs (exact float64) rounded to 2^-RAW_BITS."""
    i = np.clip(np.rint(np.ldexp(raw, RAW_BITS)), -RAW_STEPS, RAW_STEPS).astype(np.int64)
    return table[i + RAW_STEPS]


def on_grid(t: np.ndarray) -> np.ndarray:
    """A translation (exact float64) as integers of the flow's grid."""
    return np.rint(np.ldexp(t, GRID_BITS)).astype(np.int64)


def logit_edges(alpha: float) -> np.ndarray:
    """For each of the 2^(PIXEL_BITS + DEQUANT_BITS) cells of x in [0, 1], the first grid
    value of its image under y = logit(alpha + (1 - 2 alpha) x); one more for x = 1."""
    cells = 1 << (PIXEL_BITS + DEQUANT_BITS)

    def g(x):
        s = alpha + (1 - 2 * alpha) * x
        return math.log(s) - math.log1p(-s)

    return np.array([math.ceil(math.ldexp(g(i / cells), GRID_BITS)) for i in range(cells + 1)], np.int64)


class Step:
    """One elementwise map of the flat state (B, D): the dimensions `changed` become
    x S / 2^SCALE_BITS + T, S and T from params(state), which reads only other dimensions."""

    def __init__(self, changed: np.ndarray, params):
        self.changed, self.params = changed, params


class ExactRealNVP:
    """A trained flows.RealNVP as the steps of bbans.codecs.flow.FlowCodec over the
    state (B, 784): dimension i is pixel i until squeezes and factoring move it; the
    steps follow RealNVP.transform."""

    dims = 784
    grid_bits, scale_bits, dequant_bits = GRID_BITS, SCALE_BITS, DEQUANT_BITS

    def __init__(self, flow: RealNVP):
        self.edges = logit_edges(flow.alpha)
        self.steps, tables = [], []
        where = np.arange(self.dims).reshape(1, 28, 28)  # the state's dimension at each place of the tensor
        for layers in flow.scales:
            for i, layer in enumerate(layers):
                if i == 3:
                    where = squeeze(where)
                tables.append(self._add(layer, where))
            where = where[len(where) // 2:]
        for layer in flow.last:
            tables.append(self._add(layer, where))
        h = hashlib.sha256(self.edges.tobytes())
        for t in tables:
            h.update(t.tobytes())
        self.digest = h.digest()

    def _add(self, layer, where: np.ndarray) -> np.ndarray:
        """The coupling's step and its ActNorm's; returns the scale table (and constants)."""
        table = scale_table(math.exp(float(layer.scale.detach())))
        net = ExactResNet(layer.net)
        channels, size = where.shape[0], where.shape[1]
        if layer.mask.startswith("checker"):
            keep = checkerboard(size, size, int(layer.mask[-1]))[0, 0].numpy().astype(bool)
            changed = where[:, ~keep]

            def params(state, where=where, keep=keep, net=net, table=table):
                x = np.ldexp(state[:, where].astype(np.float64), -GRID_BITS) * keep  # (B, C, H, W)
                mask = np.broadcast_to(keep.astype(np.float64), (len(state), 1, size, size))
                out = net(np.concatenate([x, mask], 1).transpose(0, 2, 3, 1))
                s, t = out[..., :channels], out[..., channels:]  # (B, H, W, C)
                return scales_of(s[:, ~keep].transpose(0, 2, 1), table), on_grid(t[:, ~keep].transpose(0, 2, 1))
        else:
            half = channels // 2
            kept, changed = (where[:half], where[half:]) if layer.mask == "channel0" else (where[half:], where[:half])

            def params(state, kept=kept, net=net, table=table):
                x = np.ldexp(state[:, kept].astype(np.float64), -GRID_BITS)
                out = net(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
                return scales_of(out[:, :half], table), on_grid(out[:, half:])
        self.steps.append(Step(changed.reshape(-1), lambda state, p=params: tuple(a.reshape(len(state), -1) for a in p(state))))
        # ActNorm: (y + shift) e^log_scale = y S / 2^SCALE_BITS + T, S and T per channel
        log_scale = layer.norm.log_scale.detach().double().view(-1).numpy()
        shift = layer.norm.shift.detach().double().view(-1).numpy()
        s = np.array([round(math.ldexp(math.exp(v), SCALE_BITS)) for v in log_scale], np.int64)
        t = np.rint(np.ldexp(shift * s, GRID_BITS - SCALE_BITS)).astype(np.int64)  # exact: float32 x int < 2^24
        per = where[0].size
        s_all, t_all = np.repeat(s, per), np.repeat(t, per)
        self.steps.append(Step(where.reshape(-1), lambda state, s=s_all, t=t_all: (
            np.broadcast_to(s, (len(state), len(s))), np.broadcast_to(t, (len(state), len(t))))))
        return np.concatenate([table, s, t])


def squeeze(where: np.ndarray) -> np.ndarray:
    """flows.squeeze on one (C, H, W) array."""
    c, h, w = where.shape
    return where.reshape(c, h // 2, 2, w // 2, 2).transpose(0, 2, 4, 1, 3).reshape(4 * c, h // 2, w // 2)
