"""The flows' log-densities against brute-force Jacobians, and the dequantization bound's
bookkeeping."""
import itertools
import math

import numpy as np
import torch

from bbans.models.flows import CNF, FFJORD, CNFDynamics, ODENet, RealNVP, bits_per_dim, dequantize, exact_trace, \
    normal_log_prob
from bbans.models.zoo import flow_figures

ALPHA = 0.05


def randomized(flow: torch.nn.Module, init) -> torch.nn.Module:
    """The flow in float64 with its ActNorms initialised by init(flow) and every parameter
    then perturbed, so that no layer is the identity."""
    flow = flow.double()
    with torch.no_grad():
        init(flow)
        for p in flow.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return flow


def test_realnvp_log_density_matches_the_brute_force_jacobian():
    torch.manual_seed(0)
    x = torch.rand(2, 1, 28, 28, dtype=torch.float64)
    flow = randomized(RealNVP(hidden=(4, 4, 4), blocks=1, alpha=ALPHA), lambda f: f(x))
    log_px = flow(x)
    for i in range(len(x)):
        def latent(xi):
            return torch.cat([part.flatten(1) for part in flow.transform(xi.view(1, 1, 28, 28))[0]], 1)[0]

        jacobian = torch.autograd.functional.jacobian(latent, x[i].flatten(), vectorize=True)
        sign, log_det = torch.linalg.slogdet(jacobian)
        assert sign != 0
        expected = normal_log_prob(latent(x[i].flatten())[None]) + log_det
        assert torch.allclose(log_px[i], expected, rtol=0, atol=1e-7), (float(log_px[i]), float(expected))


def test_exact_trace_matches_the_full_jacobian_and_the_probes_average_to_it():
    torch.manual_seed(0)
    net = ODENet(2, hidden=4, layers=3).double()
    dynamics = CNFDynamics(net)
    z = torch.randn(3, 2, 2, 2, dtype=torch.float64, requires_grad=True)
    t = torch.tensor(0.3, dtype=torch.float64)
    f = net(t.view(1, 1, 1, 1), z)
    trace = exact_trace(f, z)
    for i in range(len(z)):
        jacobian = torch.autograd.functional.jacobian(lambda zi: net(t.view(1, 1, 1, 1), zi[None])[0], z[i])
        assert torch.allclose(trace[i], jacobian.reshape(8, 8).trace(), rtol=0, atol=1e-12)
    # Hutchinson's e^T J e over every Rademacher probe averages to the trace exactly.
    probes = torch.tensor(list(itertools.product([-1.0, 1.0], repeat=8)), dtype=torch.float64)
    estimates = []
    for e in probes:
        dynamics.probe = e.view(1, 2, 2, 2).expand_as(z)
        estimates.append(-dynamics(t, (z, None))[1])
    assert torch.allclose(torch.stack(estimates).mean(0), trace, rtol=0, atol=1e-12)


def test_cnf_log_density_change_matches_the_jacobian_of_the_solution():
    torch.manual_seed(0)
    z = torch.randn(2, 2, 2, 2, dtype=torch.float64)
    block = randomized(CNF(2, hidden=4, layers=3), lambda b: b.norm(z))
    solver = dict(method="dopri5", rtol=1e-10, atol=1e-10)
    z1, log_det, _, _ = block(z, solver, adjoint=False, exact=True)
    for i in range(len(z)):
        def solve(zi):
            return block(zi.view(1, 2, 2, 2), solver, adjoint=False, exact=True)[0].flatten()

        jacobian = torch.autograd.functional.jacobian(solve, z[i].flatten(), vectorize=True)
        assert torch.allclose(solve(z[i].flatten()), z1[i].flatten(), atol=1e-9)
        assert torch.allclose(log_det[i], torch.linalg.slogdet(jacobian)[1], rtol=0, atol=1e-6)


def identity_realnvp() -> RealNVP:
    """RealNVP whose couplings are all the identity: it is the logit pre-processing and a
    standard normal."""
    flow = RealNVP(hidden=(4, 4, 4), blocks=1, alpha=ALPHA).double()
    for module in flow.modules():
        if hasattr(module, "ready"):
            module.ready.fill_(True)  # ActNorm at shift 0, log-scale 0
    return flow


def by_hand_bits_per_dim(value: int, points: int = 200_000) -> float:
    """E_u[-log2 p] per dimension for pixel `value` under the logit and a standard normal,
    by the midpoint rule over u in [0, 1)."""
    u = (np.arange(points) + 0.5) / points
    s = ALPHA + (1 - 2 * ALPHA) * (value + u) / 256
    y = np.log(s / (1 - s))
    nats = 0.5 * y ** 2 + 0.5 * math.log(2 * math.pi) - math.log(1 - 2 * ALPHA) + np.log(s) + np.log1p(-s)
    return float(nats.mean() / math.log(2) + 8)


def test_the_dequantization_bound_of_an_identity_flow_is_the_value_by_hand():
    flow = identity_realnvp()
    x = torch.rand(3, 1, 28, 28, dtype=torch.float64)
    s = ALPHA + (1 - 2 * ALPHA) * x
    y = torch.log(s / (1 - s))
    nats = 0.5 * y ** 2 + 0.5 * math.log(2 * math.pi) - math.log(1 - 2 * ALPHA) + torch.log(s) + torch.log1p(-s)
    assert torch.allclose(bits_per_dim(flow(x), 784), nats.flatten(1).mean(1) / math.log(2) + 8, atol=1e-10)
    # The seeded evaluation averages one draw of u per pixel: images of one value each.
    values = [0, 37, 128, 255]
    pixels = np.repeat(np.array(values, np.uint8), 50 * 784).reshape(-1, 784)
    fig = flow_figures(flow.float(), pixels, seed=3, batch=100)
    expected = np.mean([by_hand_bits_per_dim(v) for v in values])
    assert abs(fig["nll_bits_per_dim"] - expected) < 2e-3, (fig["nll_bits_per_dim"], expected)
    assert flow_figures(flow, pixels, seed=3, batch=100) == fig


def test_dequantize_stays_in_the_pixels_bin():
    pixels = torch.arange(256.0).repeat(100)
    x = dequantize(pixels, torch.Generator().manual_seed(0)) * 256
    assert torch.all(x >= pixels) and torch.all(x < pixels + 1)


def test_ffjord_trains_a_step_and_evaluates_deterministically():
    torch.manual_seed(0)
    flow = FFJORD(hidden=4, layers=2)
    pixels = torch.randint(0, 256, (4, 28, 28)).float()
    loss = flow.training_loss(pixels)  # adjoint method, Hutchinson probes
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in flow.parameters())
    images = pixels.numpy().astype(np.uint8).reshape(4, 784)
    first = flow_figures(flow.eval(), images, seed=1, batch=2, check=2)
    assert first == flow_figures(flow, images, seed=1, batch=2, check=2)
    assert first["evaluations_per_image"] > 2 and first["nll_trace_std_error_bits_per_dim"] >= 0
