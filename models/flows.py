"""Exact-likelihood baselines: RealNVP (Dinh et al. 2016) and FFJORD (Grathwohl et al. 2018).

Both map dequantized images x in [0, 1]^(1x28x28) to a standard normal and give log p(x),
the density of x, with every Jacobian counted (the logit pre-processing included).
`bits_per_dim` turns that into the uniform-dequantization bound on the discrete pixels,
E_u[-log2 p((pixels + u) / 256)] / D + 8 (the 8 is the Jacobian of dividing by 256)."""
import math

import torch
from torch import nn

LEVELS = 256
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def dequantize(pixels: torch.Tensor, generator=None) -> torch.Tensor:
    """uint8-valued pixels to x = (pixels + u) / 256 with u ~ U[0, 1)."""
    u = torch.rand(pixels.shape, generator=generator)
    return (pixels.float() + u) / LEVELS


def bits_per_dim(log_px: torch.Tensor, dims: int) -> torch.Tensor:
    """Per image: -log2 of the density of the pixel values (x * 256) per dimension."""
    return -log_px / (dims * math.log(2)) + math.log2(LEVELS)


def normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    return -(0.5 * z ** 2 + HALF_LOG_2PI).flatten(1).sum(1)


def logit(x: torch.Tensor, alpha: float):
    """y = logit(alpha + (1 - 2 alpha) x) and log |dy/dx| per image."""
    s = alpha + (1 - 2 * alpha) * x
    y = torch.log(s) - torch.log1p(-s)
    return y, (math.log(1 - 2 * alpha) - torch.log(s) - torch.log1p(-s)).flatten(1).sum(1)


def squeeze(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) to (B, 4C, H/2, W/2): each 2x2 block becomes four channels."""
    b, c, h, w = x.shape
    return x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(b, 4 * c, h // 2, w // 2)


def checkerboard(h: int, w: int, parity: int) -> torch.Tensor:
    return ((torch.arange(h)[:, None] + torch.arange(w)[None, :] + parity) % 2).float().view(1, 1, h, w)


class ActNorm(nn.Module):
    """Elementwise affine map with parameters per channel (shape (C,)) or per pixel (shape
    (C, H, W)), initialised from the first batch to zero mean and unit variance, the
    standard deviation taken no smaller than `floor`."""

    def __init__(self, *shape: int, floor: float = 1e-6):
        super().__init__()
        shape = (1, shape[0], 1, 1) if len(shape) == 1 else (1, *shape)
        self.floor = floor
        self.shift = nn.Parameter(torch.zeros(shape))
        self.log_scale = nn.Parameter(torch.zeros(shape))
        self.register_buffer("ready", torch.tensor(False))

    def forward(self, x):
        if not self.ready:
            dims = [i for i, n in enumerate(self.shift.shape) if n == 1]
            with torch.no_grad():
                self.shift.copy_(-x.mean(dims, keepdim=True))
                self.log_scale.copy_(-torch.log(x.std(dims, keepdim=True).clamp(min=self.floor)))
                self.ready.fill_(True)
        repeats = x[0].numel() // self.log_scale.numel()
        return (x + self.shift) * torch.exp(self.log_scale), self.log_scale.sum() * repeats


class ResNet(nn.Module):
    """The coupling layers' network: 3x3 convolutions with residual blocks."""

    def __init__(self, cin: int, cout: int, hidden: int, blocks: int):
        super().__init__()
        self.inp = nn.Conv2d(cin, hidden, 3, padding=1)
        self.blocks = nn.ModuleList(nn.Sequential(nn.ReLU(), nn.Conv2d(hidden, hidden, 3, padding=1),
                                                  nn.ReLU(), nn.Conv2d(hidden, hidden, 3, padding=1))
                                    for _ in range(blocks))
        self.out = nn.Sequential(nn.ReLU(), nn.Conv2d(hidden, cout, 3, padding=1))
        nn.init.zeros_(self.out[1].weight)
        nn.init.zeros_(self.out[1].bias)

    def forward(self, x):
        h = self.inp(x)
        for block in self.blocks:
            h = h + block(h)
        return self.out(h)


class Coupling(nn.Module):
    """Affine coupling: the unmasked part is scaled and shifted by a function of the masked
    part. mask "checker0"/"checker1" keeps alternate pixels, "channel0"/"channel1" a half of
    the channels."""

    def __init__(self, channels: int, size: int, mask: str, hidden: int, blocks: int):
        super().__init__()
        self.mask = mask
        if mask.startswith("checker"):
            self.register_buffer("keep", checkerboard(size, size, int(mask[-1])))
            cin, cout = channels + 1, 2 * channels
        else:
            cin, cout = channels // 2, channels
        self.net = ResNet(cin, cout, hidden, blocks)
        self.scale = nn.Parameter(torch.zeros(1))
        self.norm = ActNorm(channels)

    def forward(self, x):
        if self.mask.startswith("checker"):
            keep = self.keep
            s, t = self.net(torch.cat([x * keep, keep.expand(len(x), -1, -1, -1)], 1)).chunk(2, 1)
            s = torch.exp(self.scale) * torch.tanh(s) * (1 - keep)
            y = x * keep + (1 - keep) * (x * torch.exp(s) + t)
        else:
            a, b = x.chunk(2, 1)
            if self.mask == "channel1":
                a, b = b, a
            s, t = self.net(a).chunk(2, 1)
            s = torch.exp(self.scale) * torch.tanh(s)
            b = b * torch.exp(s) + t
            y = torch.cat([b, a] if self.mask == "channel1" else [a, b], 1)
        y, log_det = self.norm(y)
        return y, s.flatten(1).sum(1) + log_det


class Flow(nn.Module):
    """What the trainer and `bbans evaluate` ask of a flow, given pixel values (B, 28, 28)."""

    def training_loss(self, pixels):
        return bits_per_dim(self(dequantize(pixels[:, None])), 784).mean()

    @torch.no_grad()
    def test_bits_per_dim(self, pixels, seed: int = 0):
        return float(bits_per_dim(self(dequantize(pixels[:, None], torch.Generator().manual_seed(seed))), 784).mean())


class RealNVP(Flow):
    """Multi-scale RealNVP: each scale has three checkerboard couplings, a squeeze, three
    channel-wise couplings, and factors half the channels out; the last scale has four
    checkerboard couplings. hidden[i] and blocks size the ResNets of scale i."""

    def __init__(self, scales: int = 2, hidden=(32, 64, 64), blocks: int = 2, alpha: float = 0.05):
        super().__init__()
        self.config = dict(scales=scales, hidden=list(hidden), blocks=blocks, alpha=alpha)
        self.alpha = alpha
        self.scales = nn.ModuleList()
        channels, size = 1, 28
        for i in range(scales):
            self.scales.append(nn.ModuleList(
                [Coupling(channels, size, f"checker{j % 2}", hidden[i], blocks) for j in range(3)]
                + [Coupling(4 * channels, size // 2, f"channel{j % 2}", hidden[i + 1], blocks) for j in range(3)]))
            channels, size = 2 * channels, size // 2
        self.last = nn.ModuleList(Coupling(channels, size, f"checker{j % 2}", hidden[-1], blocks) for j in range(4))

    def transform(self, x):
        """(the latent parts, each standard normal, log |det dz/dx|) per image, x in [0, 1]."""
        y, log_det = logit(x, self.alpha)
        parts = []
        for layers in self.scales:
            for i, layer in enumerate(layers):
                if i == 3:
                    y = squeeze(y)
                y, step = layer(y)
                log_det = log_det + step
            out, y = y.chunk(2, 1)
            parts.append(out)
        for layer in self.last:
            y, step = layer(y)
            log_det = log_det + step
        return parts + [y], log_det

    def forward(self, x):
        """log p(x) per image, x in [0, 1]."""
        parts, log_det = self.transform(x)
        return log_det + sum(map(normal_log_prob, parts))


class ODENet(nn.Module):
    """FFJORD's free-form dynamics f(z, t): 3x3 convolutions that see t as an extra channel,
    softplus between them."""

    def __init__(self, channels: int, hidden: int, layers: int):
        super().__init__()
        sizes = [channels] + [hidden] * (layers - 1) + [channels]
        self.convs = nn.ModuleList(nn.Conv2d(a + 1, b, 3, padding=1) for a, b in zip(sizes, sizes[1:]))

    def forward(self, t, z):
        h = z
        for i, conv in enumerate(self.convs):
            h = conv(torch.cat([h, t.expand(len(h), 1, *h.shape[2:])], 1))
            if i < len(self.convs) - 1:
                h = nn.functional.softplus(h)
        return h


def exact_trace(f: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """tr(df/dz) per sample, one backward pass per dimension (for tests and small models)."""
    flat = f.flatten(1)
    return sum(torch.autograd.grad(flat[:, i].sum(), z, create_graph=True)[0].flatten(1)[:, i]
               for i in range(flat.shape[1]))


class CNFDynamics(nn.Module):
    """The augmented state (z, log-density change, kinetic energy, Jacobian norm) of a CNF.
    The trace is Hutchinson's estimate e^T (df/dz) e with the probe e fixed for one solve
    (self.probe), or exact where self.probe is None. The two regularisers of Finlay et al.
    2020 (|f|^2 and |e^T df/dz|^2) keep the dynamics easy to solve."""

    def __init__(self, net: ODENet):
        super().__init__()
        self.net = net
        self.log_time = nn.Parameter(torch.zeros(()))  # a learnt time scale: f = e^log_time net(t, z)
        self.probe = None
        self.evaluations = 0

    def forward(self, t, state):
        z = state[0]
        self.evaluations += 1
        if not (torch.is_grad_enabled() and z.requires_grad):
            z = z.detach().requires_grad_(True)
        with torch.enable_grad():
            f = torch.exp(self.log_time) * self.net(t.view(1, 1, 1, 1).to(z), z)
            if self.probe is None:
                trace, jac = exact_trace(f, z), torch.zeros(len(z))
            else:
                vjp = torch.autograd.grad(f, z, self.probe, create_graph=True)[0]
                trace = (vjp * self.probe).flatten(1).sum(1)
                jac = (vjp ** 2).flatten(1).sum(1)
        return f, -trace, (f ** 2).flatten(1).sum(1), jac


class CNF(nn.Module):
    """One continuous normalizing flow block, integrated from t=0 to t=1."""

    def __init__(self, channels: int, hidden: int, layers: int):
        super().__init__()
        self.norm = ActNorm(channels)
        self.dynamics = CNFDynamics(ODENet(channels, hidden, layers))

    def forward(self, z, solver: dict, adjoint: bool, exact: bool):
        """(z at t=1, log-density change, kinetic energy, Jacobian norm) per sample."""
        from torchdiffeq import odeint, odeint_adjoint  # here, not at the top: it loads scipy.integrate (0.8 s)

        z, log_det = self.norm(z)
        self.dynamics.probe = None if exact else torch.randint(0, 2, z.shape).to(z) * 2 - 1
        zero = torch.zeros(len(z)).to(z)
        state = (z, zero, zero, zero)
        times = torch.tensor([0.0, 1.0]).to(z)
        if adjoint:
            out = odeint_adjoint(self.dynamics, state, times, **solver,
                                 adjoint_params=tuple(self.dynamics.parameters()))
        else:
            out = odeint(self.dynamics, state, times, **solver)
        z1, delta, kinetic, jac = (s[-1] for s in out)
        return z1, log_det - delta, kinetic, jac


class FFJORD(Flow):
    """Multi-scale FFJORD: an ActNorm per pixel (its data-dependent start no sharper than a
    standard deviation of 0.1, so that a pixel blank in the first batch is not made
    nearly impossible), squeeze to 4x14x14, a CNF, factor out half the channels, squeeze
    to 8x7x7, a CNF, standard normal base. Training solves with the loose TRAIN_SOLVER and
    the adjoint method, evaluation with the tight TEST_SOLVER."""

    TRAIN_SOLVER = dict(method="dopri5", rtol=1e-3, atol=1e-3)
    TEST_SOLVER = dict(method="dopri5", rtol=1e-5, atol=1e-5)

    def __init__(self, hidden: int = 32, layers: int = 3, alpha: float = 0.05, regularization: float = 0.01):
        super().__init__()
        self.config = dict(hidden=hidden, layers=layers, alpha=alpha, regularization=regularization)
        self.alpha, self.regularization = alpha, regularization
        self.pixel_norm = ActNorm(1, 28, 28, floor=0.1)
        self.blocks = nn.ModuleList([CNF(4, hidden, layers), CNF(8, hidden, layers)])
        self.solver, self.adjoint = self.TRAIN_SOLVER, True

    def forward(self, x):
        return self.flow(x)[0]

    def flow(self, x):
        """(log p(x), the regularisers' sum) per image."""
        y, log_px = logit(x, self.alpha)
        y, log_det = self.pixel_norm(y)
        log_px, penalty = log_px + log_det, 0
        for i, block in enumerate(self.blocks):
            y, log_det, kinetic, jac = block(squeeze(y), self.solver, self.adjoint, exact=False)
            log_px, penalty = log_px + log_det, penalty + kinetic + jac
            if i == 0:
                out, y = y.chunk(2, 1)
                log_px = log_px + normal_log_prob(out)
        return log_px + normal_log_prob(y), penalty

    def training_loss(self, pixels):
        log_px, penalty = self.flow(dequantize(pixels[:, None]))
        return (bits_per_dim(log_px, 784) + self.regularization * penalty / 784).mean()

    def evaluations(self) -> int:
        return sum(b.dynamics.evaluations for b in self.blocks)
