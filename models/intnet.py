"""Integer inference for the coder: MLPs with int8 weights and 8-bit activations.

Each Linear layer's weights are rounded to integers in [-127, 127], a scale per output,
and its input to integers: the network's input exactly (it lies on a grid already), the
hidden activations in [0, 255] on a step calibrated on training images (the largest
activation seen maps to 255; larger ones clip). The products then sum exactly in
int32, in any order: with torch's int8 GEMM where it gives the exact sums on this
machine, else with float32 GEMM, exact as well because every sum stays below 2^24.
Between layers the sums are rescaled to the next layer's integers in float32, one IEEE
operation at a time, so every machine gets the same integers and the same outputs, as
with models.vae.ExactNet, at a tenth of the cost of its float64 products.
"""
import functools

import numpy as np
import torch
from torch import nn

FAN_IN_LIMIT = 1024  # 1024 * 128 * 127 < 2^24: float32 sums of the products stay exact


def _int_mm(q: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return torch._int_mm(q, w)


def _float32_mm(q: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return (q.float() @ w.float()).to(torch.int32)


@functools.cache
def int_matmul():
    """(m, k) int8 @ (k, n) int8 -> the exact int32 products: torch's int8 GEMM if it
    agrees with int64 arithmetic on extreme operands, else float32 GEMM."""
    rng = np.random.default_rng(0)
    for m, k, n in ((1, 64, 8), (33, FAN_IN_LIMIT, 40)):
        q = torch.from_numpy(rng.choice(np.array([-128, 127, -1, 0], np.int8), (m, k)))
        w = torch.from_numpy(rng.choice(np.array([-127, 127, 1], np.int8), (k, n)))
        try:
            if not torch.equal(_int_mm(q, w).long(), q.long() @ w.long()):
                return _float32_mm
        except RuntimeError:
            return _float32_mm
    return _int_mm


class IntNet:
    """A trained MLP (Linear layers, ReLUs between) on integers. Its input is known to
    lie on a grid, `grid` = (step, zero point): x = step * (q + zero point) for integers
    q in [-128, 127] (pixel values, the coder's latents), which it takes exactly; values
    off that range clip. `largest` holds the largest input of each later layer seen in
    calibration (its first entry, the input's, is not used).

    A layer's sums s go to the next layer as 8-bit activations a in [0, 255], given as
    the int8 a - 128 = floor(clip(s * multiplier + offset, -128, 127)), in float32
    (exact for the sums, below 2^24), the offset carrying the bias, the 0.5 that makes
    floor round and the -128; the zero point 128 (like an input's) is folded into the
    next layer's bias."""

    def __init__(self, seq: nn.Sequential, largest, grid):
        linears = [m for m in seq if isinstance(m, nn.Linear)]
        assert len(largest) == len(linears)
        self.grid = grid
        steps = [grid[0]] + [float(a) / 255 for a in largest[1:]]
        zeros = [grid[1]] + [128] * (len(linears) - 1)
        self.layers = []  # (int8 weights (in, out), float32 multiplier and offset (out,))
        for i, m in enumerate(linears):
            assert m.in_features <= FAN_IN_LIMIT
            w = m.weight.detach().double() * steps[i]  # on integer inputs
            scale = (w.abs().amax(1) / 127).clamp(min=2.0**-40)
            wq = (w / scale[:, None]).round().clamp(-127, 127)
            bias = m.bias.detach().double() + zeros[i] * scale * wq.sum(1)
            last = i == len(linears) - 1
            after = 1.0 if last else steps[i + 1]  # the next layer's step
            self.layers.append((wq.T.to(torch.int8).contiguous(), (scale / after).float(),
                                (bias / after + (0 if last else 0.5 - 128)).float()))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Inputs (B, in): float values on the grid, or integers x / step -> outputs
        (B, out), float32."""
        if x.dtype == np.uint8 and self.grid[1] in (0, 128):  # pixels: clipped, or less 128, as int8
            q = (np.minimum(x, 127) if self.grid[1] == 0 else x ^ np.uint8(128)).view(np.int8)
        elif x.dtype.kind in "iu":
            q = np.clip(x.astype(np.int16) - self.grid[1], -128, 127).astype(np.int8)
        else:
            t = x / self.grid[0]
            np.rint(t, out=t)
            t -= self.grid[1]
            q = np.clip(t, -128, 127, out=t).astype(np.int8)
        h, mm = torch.from_numpy(q), int_matmul()
        for i, (w, multiplier, offset) in enumerate(self.layers):
            t = mm(h, w) * multiplier
            t += offset
            if i == len(self.layers) - 1:
                return t.numpy()
            h = t.clamp_(-128, 127).floor_().to(torch.int8)  # a - 128


def calibrate(net: nn.Module, images: torch.Tensor, batch: int = 1000) -> dict:
    """The largest input of each Linear layer of each of the model's MLPs over its ELBO
    on `images`: {MLP name: [one per Linear]}, what IntNet needs."""
    largest, hooks = {}, []
    for name, seq in net.named_modules():
        if isinstance(seq, nn.Sequential):
            linears = [m for m in seq if isinstance(m, nn.Linear)]
            largest[name] = [0.0] * len(linears)
            for j, m in enumerate(linears):
                def hook(_, inputs, name=name, j=j):
                    largest[name][j] = max(largest[name][j], float(inputs[0].abs().max()))
                hooks.append(m.register_forward_pre_hook(hook))
    torch.manual_seed(0)
    with torch.no_grad():
        for start in range(0, len(images), batch):
            net.elbo_terms(images[start:start + batch])
    for h in hooks:
        h.remove()
    return largest
