"""Integer inference for the coder: MLPs with int8 weights and 8-bit activations.

Each Linear layer's weights are rounded to integers in [-127, 127], a scale per output,
and its input to integers: the network's input exactly (it lies on a grid already), the
hidden activations in [0, 255] on a step calibrated on training images (the largest
activation seen maps to 255; larger ones clip). The products then sum exactly, in any
order. Between layers the sums are rescaled to the next layer's integers in float32,
one IEEE operation at a time, so every machine gets the same integers and the same
outputs, as with bbans.models.grids.ExactNet, at a tenth of the cost of its float64 products.

Several kernels compute the sums (KERNELS): torch's int8 GEMM, float32 GEMM (exact,
every sum stays below 2^24) and models/_intmm.c on AVX2, which skips the zero
activations (most of them in the zoo's networks). kernel() takes, of those that
give the reference's outputs here on extreme operands, the fastest on a fixed set of
layers, once per process: torch's int8 GEMM is fastest where the CPU has VNNI and runs
a plain loop, some 50 times slower, where it has not.
"""
import functools
import os
import platform
import time

import numpy as np
import torch
from torch import nn

from bbans.models.grids import head_kernel, head_methods, head_seconds

try:
    from bbans.models import _intmm  # the C kernel, where it was built (an optional part of the install)
except ImportError:
    _intmm = None

FAN_IN_LIMIT = 1024  # 1024 * 128 * 127 < 2^24: float32 sums of the products stay exact
KERNEL_ENV = "BBANS_KERNEL"  # names the kernel to use instead of the fastest exact one


class TorchInt8:
    """torch's int8 GEMM: oneDNN's VNNI kernels where the CPU has them, elsewhere a plain
    loop (and oneDNN's AVX2 kernels, where it is held to them, saturate their 16-bit
    pair sums: the exactness check turns them down)."""

    name = "torch-int8"

    @staticmethod
    def available() -> bool:
        try:
            torch._int_mm(torch.zeros(17, 8, dtype=torch.int8), torch.zeros(8, 8, dtype=torch.int8))
            return True
        except RuntimeError:
            return False

    @staticmethod
    def prepare(layers):
        return layers

    @staticmethod
    def run(layers, q: np.ndarray) -> np.ndarray:
        return _torch_run(layers, torch.from_numpy(q), torch._int_mm, lambda a: a.to(torch.int8))


class TorchFloat32:
    """float32 GEMM (MKL): exact, since every sum stays below 2^24; the activations
    stay float32 between layers."""

    name = "torch-float32"

    @staticmethod
    def available() -> bool:
        return True

    @staticmethod
    def prepare(layers):
        return [(w.float(), multiplier, offset) for w, multiplier, offset in layers]

    @staticmethod
    def run(layers, q: np.ndarray) -> np.ndarray:
        return _torch_run(layers, torch.from_numpy(q).float(), torch.mm, lambda a: a)


def _torch_run(layers, h: torch.Tensor, product, activations) -> np.ndarray:
    """The layers on torch: each layer's sums product(h, w), rescaled in float32; a
    hidden layer's outputs as `activations` takes them."""
    for i, (w, multiplier, offset) in enumerate(layers):
        t = product(h, w) * multiplier
        t += offset
        if i == len(layers) - 1:
            return t.numpy()
        h = activations(t.clamp_(-128, 127).floor_())


class SparseAVX2:
    """models/_intmm.c: sums over the inputs that are not zero activations (most are
    not), two at a time with AVX2's 16-bit multiply-adds, exact in int32."""

    name = "avx2-sparse"
    WIDTH = 32  # the kernel's panel of columns
    # the order of each half-panel's 16 columns that the kernel's interleaving puts back in order
    ORDER = np.r_[0:4, 8:12, 4:8, 12:16]

    @staticmethod
    def available() -> bool:
        return _intmm is not None and _intmm.available()

    @classmethod
    def prepare(cls, layers):
        prepared = []
        for w, multiplier, offset in layers:
            k, n = w.shape
            stride = -(-n // cls.WIDTH) * cls.WIDTH
            panels = np.zeros((k, stride), np.int16)
            panels[:, :n] = w.numpy()
            panels = panels.reshape(k, -1, 16)[:, :, cls.ORDER].reshape(k, -1, cls.WIDTH)
            columns = [np.zeros(stride, t) for t in (np.float32, np.float32, np.int32)]
            for column, values in zip(columns, (multiplier.numpy(), offset.numpy(), 128 * w.sum(0, dtype=torch.int32).numpy())):
                column[:n] = values
            prepared.append((np.ascontiguousarray(panels.swapaxes(0, 1)), n, *columns))
        return prepared

    @staticmethod
    def run(layers, q: np.ndarray) -> np.ndarray:
        h = np.ascontiguousarray(q)
        for i, (panels, n, multiplier, offset, bias128) in enumerate(layers):
            last = i == len(layers) - 1
            out = np.empty((len(h), n), np.float32 if last else np.int8)
            _intmm.layer(h, len(h), h.shape[1], panels, n, multiplier, offset, bias128, out, last)
            h = out
        return h


KERNELS = (TorchInt8, TorchFloat32, SparseAVX2)


def reference(layers, q: np.ndarray) -> np.ndarray:
    """What every kernel must give, bit for bit: the sums in float64 (exact: they stay
    far below 2^53), the rescaling in numpy's float32, one operation at a time."""
    h = q.astype(np.float64)
    for i, (w, multiplier, offset) in enumerate(layers):
        t = (h @ w.numpy().astype(np.float64)).astype(np.float32) * multiplier.numpy()
        t += offset.numpy()
        if i == len(layers) - 1:
            return t
        h = np.floor(np.clip(t, -128, 127)).astype(np.float64)


def _test_net(rng, sizes, zero_fraction: float, rows: int):
    """Random int8 layers, and inputs, that fraction of them -128 (zero activations or
    pixels), such that that fraction of each hidden layer's outputs are -128 too."""
    x = rng.integers(-128, 128, (rows, sizes[0]), dtype=np.int8)
    x[rng.random(x.shape) < zero_fraction] = -128
    layers, h = [], x.astype(np.float64)
    for k, n in zip(sizes, sizes[1:]):
        w = rng.integers(-127, 128, (k, n), dtype=np.int8)
        sums = h @ w.astype(np.float64)
        multiplier = (64 / sums.std(0).clip(min=1)).astype(np.float32)
        offset = (-128 - np.quantile(sums * multiplier, zero_fraction, 0)).astype(np.float32)
        layers.append((torch.from_numpy(w), torch.from_numpy(multiplier), torch.from_numpy(offset)))
        h = np.floor(np.clip(sums * multiplier + offset, -128, 127))
    return layers, x


@functools.cache
def _extreme_cases():
    """(layers, inputs, the reference's outputs) on extreme operands: every input at
    -128 or 127, or at a mix of the extremes, 0 and -1, rows with a few and with most
    inputs at 127 among -128s, weights at +-127 and +-1, the largest fan-in; and random
    layers with sparse and with dense inputs."""
    rng = np.random.default_rng(0)
    k = FAN_IN_LIMIT
    q = rng.choice(np.array([-128, 127, -1, 0], np.int8), (40, k))
    q[0], q[1], q[2], q[3] = -128, 127, 0, -1
    for row, count in ((4, 100), (5, 900)):
        q[row] = -128
        q[row, rng.permutation(k)[:count]] = 127
    w = rng.choice(np.array([-127, 127, 1, -1], np.int8), (k, 40))
    w[:, 0], w[:, 1] = 127, -127
    one = torch.ones(40, dtype=torch.float32)
    cases = [([(torch.from_numpy(w), one, torch.zeros(40, dtype=torch.float32))], q),
             _test_net(rng, (k, 96, 33, 8), 0.8, 50), _test_net(rng, (k, 64, 8), 0.0, 50)]
    return [(layers, x, reference(layers, x)) for layers, x in cases]


def is_exact(kernel) -> bool:
    """Whether the kernel gives the reference's outputs on the extreme cases."""
    try:
        return all(np.array_equal(kernel.run(kernel.prepare(layers), x), want) for layers, x, want in _extreme_cases())
    except RuntimeError:
        return False


def exact_kernels() -> list:
    """The kernels this machine runs, and runs exactly."""
    return [k for k in KERNELS if k.available() and is_exact(k)]


@functools.cache
def _timing_nets():
    rng = np.random.default_rng(1)
    return _test_net(rng, (784, 512, 512, 64), 0.8, 128), _test_net(rng, (40, 512, 512, 784), 0.8, 128)


@functools.cache
def _timing_forms(kernel):
    """The timing nets in the kernel's form, prepared once for all its timings."""
    return [(kernel.prepare(layers), x) for layers, x in _timing_nets()]


def seconds(kernel, repeat: int = 5, rows: int = None) -> float:
    """The kernel's time for a fixed set of layers shaped like the zoo's MLPs, four
    fifths of whose pixels and hidden activations are zeros, as in theirs (an encoder's
    and a decoder's, whose inputs, the latents, are dense), on their first `rows` rows
    (default all 128), fastest of `repeat`."""
    prepared = [(layers, x[:rows]) for layers, x in _timing_forms(kernel)]
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for layers, x in prepared:
            kernel.run(layers, x)
        best = min(best, time.perf_counter() - start)
    return best


@functools.cache
def kernel():
    """The kernel for IntNet's products: of those this machine runs exactly, the fastest
    here on one thread (measured once per process), or the one that $BBANS_KERNEL names. They all give
    the same outputs, so the choice never changes a file, only the speed."""
    runnable = exact_kernels()
    forced = os.environ.get(KERNEL_ENV)
    if forced:
        chosen = [k for k in runnable if k.name == forced]
        if not chosen:
            raise RuntimeError(f"{KERNEL_ENV}={forced}: not an exact kernel on this machine "
                               f"(those are: {', '.join(k.name for k in runnable)})")
        return chosen[0]
    if len(runnable) == 1:
        return runnable[0]
    # A first look on a few rows drops the far slower ones (torch's int8 GEMM without
    # VNNI would take seconds over the whole set) before the timing proper.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the coder runs: one core a worker (on more, torch's threads spin)
    try:
        glance = {k: seconds(k, repeat=2, rows=8) for k in runnable}
        close = [k for k in runnable if glance[k] <= 4 * min(glance.values())]
        best = {k: seconds(k, repeat=1) for k in close}  # a warm-up, then runs taken in turns, so
        for _ in range(5):                                 # that a slow spell of the machine hits all
            best = {k: min(t, seconds(k, repeat=1)) for k, t in best.items()}
    finally:
        torch.set_num_threads(threads)
    return min(best, key=best.get)


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
        self.prepared = {}  # kernel name: its form of the layers
        for i, m in enumerate(linears):
            assert m.in_features <= FAN_IN_LIMIT
            w = m.weight.detach().double() * steps[i]  # on integer inputs
            scale = (w.abs().amax(1) / 127).clamp(min=2.0**-40)
            wq = (w / scale[:, None]).round().clamp(-127, 127)
            bias = m.bias.detach().double() + zeros[i] * scale * wq.sum(1)
            last = i == len(linears) - 1
            after = 1.0 if last else steps[i + 1]  # the next layer's step
            weights = torch.empty(wq.shape[::-1], dtype=torch.int8)  # (in, out), row-major strides even where
            weights.copy_(wq.T)  # a side is 1 (torch's int8 product misreads those that contiguous() leaves)
            self.layers.append((weights, (scale / after).float(),
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
        use = kernel()
        if use.name not in self.prepared:
            self.prepared[use.name] = use.prepare(self.layers)
        return use.run(self.prepared[use.name], q)


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


def cpu() -> tuple:
    """(the CPU's model name, its flags), from /proc/cpuinfo where there is one."""
    info = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")),
                platform.processor() or platform.machine())
    return name, set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))


def machine() -> dict:
    """What a speed measured here depends on: the CPU, its SIMD level (from its flags),
    the level torch's kernels use (lower where ATEN_CPU_CAPABILITY says so), the
    kernel IntNet uses and the pixel heads' (bbans.models.grids)."""
    name, flags = cpu()
    simd = ("AVX-512 VNNI" if "avx512_vnni" in flags else "AVX2 VNNI" if "avx_vnni" in flags
            else "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "below AVX2" if flags else "unknown")
    return dict(cpu=name, simd=simd, torch_simd=torch.backends.cpu.get_cpu_capability(), kernel=kernel().name,
                head_kernel=head_kernel())


def describe(m: dict) -> str:
    """A machine() as words (earlier records have no head kernel)."""
    heads = f", heads {m['head_kernel']}" if "head_kernel" in m else ""
    return f"{m['cpu']} ({m['simd']}; torch at {m['torch_simd']}, kernel {m['kernel']}{heads})"


if __name__ == "__main__":  # python -m bbans.models.intnet: the kernels here, and those chosen
    import json
    for k in KERNELS:
        exact = k.available() and is_exact(k)
        print(f"{k.name:14} {'exact' if exact else 'not exact' if k.available() else 'not available':13}"
              + (f" {seconds(k) * 1e3:7.2f} ms on the timing layers" if exact else ""))
    for name, t in head_seconds(head_methods()).items():
        print(f"heads {name:8} {t * 1e3:7.2f} ms on the timing head")
    print(json.dumps(machine()))
