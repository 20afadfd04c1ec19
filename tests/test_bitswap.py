import numpy as np
import pytest
import torch

from bbans.codecs.vae import BitSwapCodec
from conftest import bits_of, images_for
from bbans.models.hvae import HVAE, ExactHVAE
from bbans.models.vae import shift
from bbans.models.intnet import IntNet, calibrate


@pytest.fixture(scope="module", params=["grids", "integer", "integer, flow prior", "integer, flow posterior"])
def hvae(request):
    """An untrained four-layer hierarchical VAE, as torch and as the codecs see it: on
    float64 grids, or on integers (calibrated on random images), with N(0, I) or an
    autoregressive flow prior on the top layer, or flow posteriors on every layer (the
    flows random, not the identity they start as)."""
    torch.manual_seed(2)
    flow = dict(top_groups=3, top_hidden=8) if "flow prior" in request.param else {}
    flow.update(dict(post_groups=3, post_hidden=8) if "flow posterior" in request.param else {})
    net = HVAE(latents=(8, 6, 4, 5), hidden=32, latent_hidden=16, **flow).eval()
    for made in ([net.top] if net.top is not None else []) + list(net.post or []):
        torch.nn.init.normal_(made[-1].weight, std=0.5)
        torch.nn.init.normal_(made[-1].bias, std=0.3)
    if request.param == "grids":
        return net, ExactHVAE(net)
    images = torch.from_numpy(images_for("bernoulli", 200, seed=9).reshape(-1, 28, 28)).float()
    return net, ExactHVAE(net, calibrate(net, images))


@pytest.mark.parametrize("bit_swap", [True, False])
@pytest.mark.parametrize("n", [1, 5, 13])
def test_round_trip_across_batch_boundaries(hvae, n, bit_swap):
    codec = BitSwapCodec(hvae[1], largest_batch=4, bit_swap=bit_swap)
    x = images_for("bernoulli", n, seed=n)
    np.testing.assert_array_equal(codec.decode(codec.encode(x), n), x)


def test_bit_swap_first_image_costs_less_than_plain_bbans(hvae):
    """Plain BB-ANS has no bits on the stack to pop any layer's latents from for the first
    image; Bit-Swap only lacks them for z_1, and gets the upper layers' bits back."""
    x = images_for("bernoulli", 1)
    swap, plain = (32 * len(BitSwapCodec(hvae[1], bit_swap=b).encode(x)) for b in (True, False))
    assert swap < plain - 20


def test_bit_swap_and_plain_cost_alike_once_the_stack_is_full(hvae):
    """Past the first images both pay the same -ELBO: what Bit-Swap saves is start-up."""
    x = images_for("bernoulli", 400, seed=3)
    swap, plain = (32 * len(BitSwapCodec(hvae[1], bit_swap=b).encode(x)) for b in (True, False))
    assert abs(swap - plain) < 0.01 * plain


def test_exact_networks_match_torch_and_ignore_the_batch_split(hvae):
    net, model = hvae
    x = images_for("bernoulli", 30)
    mean, _ = model.inference(0, x)
    parts = np.concatenate([model.inference(0, x[i:i + 7])[0] for i in range(0, 30, 7)])
    assert mean.tobytes() == parts.tobytes()
    z = np.round(mean * 16) / 16
    with torch.no_grad():
        logits = net.down[0](torch.from_numpy(z).float()).numpy()
    # The grids round to 2^-10, the integer form's 8-bit weights and activations more coarsely.
    tolerance = 0.05 * logits.std() if isinstance(model.down[0], IntNet) else 2e-3
    np.testing.assert_allclose(model.generative(0, z), logits, atol=tolerance)


def test_elbo_terms_and_iw_bound_agree_in_scale(hvae):
    net, _ = hvae
    x = torch.from_numpy(images_for("bernoulli", 20).reshape(-1, 28, 28)).float()
    torch.manual_seed(0)
    rec, kl = net.elbo_terms(x)
    iw = net.iw_log_likelihood(x, samples=50, chunk=25)
    assert iw.shape == (20,) and torch.all(torch.isfinite(iw))
    # The importance-weighted bound is the tighter one, on average.
    assert iw.mean() >= (rec - kl).mean() - 1.0


def flow_prior(hvae):
    if hvae[0].top is None:
        pytest.skip("N(0, I) prior")
    return hvae[1]


def test_a_group_of_the_flow_prior_ignores_the_groups_after_it(hvae):
    """The decoder pops the top layer group by group, the later groups' cells still zero:
    each group's Gaussians must come out the same bits whatever those hold."""
    model = flow_prior(hvae)
    rng = np.random.default_rng(0)
    z = rng.integers(-40, 41, (50, 5)) / 16
    mean, log_sigma = model.top_prior(z)
    for g, group in enumerate(model.top_groups):
        later = np.concatenate(model.top_groups[g:])
        changed = z.copy()
        changed[:, later] = rng.integers(-128, 128, (50, len(later))) / 16
        other_mean, other_log_sigma = model.top_prior(changed)
        assert other_mean[:, group].tobytes() == mean[:, group].tobytes()
        assert other_log_sigma[:, group].tobytes() == log_sigma[:, group].tobytes()
    assert mean[:, model.top_groups[-1]].std() > 0  # and the last group does depend on the others


def test_the_flow_prior_costs_its_density_on_the_grid(hvae):
    """Pushing the top layer costs -log2 of the flow's density at each cell's centre times
    the cell's width, its parameters rounded as the latent tables round them."""
    model = flow_prior(hvae)
    codec = BitSwapCodec(model)
    tables = codec.buckets
    cells = np.random.default_rng(1).integers(100, 157, (40, 5))
    z = tables.centres[cells]
    mean, log_sigma = model.top_prior(z)
    mean = np.rint(mean * tables.FRACTIONS / tables.step) * tables.step / tables.FRACTIONS
    log_sigma = np.rint(log_sigma / tables.LOG_SIGMA_STEP) * tables.LOG_SIGMA_STEP
    nats = 0.5 * ((z - mean) / np.exp(log_sigma))**2 + log_sigma + 0.5 * np.log(2 * np.pi) - np.log(tables.step)
    expected = nats.sum() / np.log(2)
    assert abs(bits_of(lambda m: codec.top_prior(40).push(m, cells)) - expected) < 0.005 * expected + 32


def flow_posterior(hvae):
    if hvae[0].post is None:
        pytest.skip("Gaussian posteriors")
    return hvae


@pytest.mark.parametrize("layer", range(4))
def test_a_group_of_the_flow_posterior_ignores_the_groups_after_it(hvae, layer):
    """The encoder pops each layer's latents group by group, the later groups' cells still
    zero: each group's Gaussians must come out the same bits whatever those hold, and
    differ from the Gaussian the flow shifts."""
    _, model = flow_posterior(hvae)
    rng = np.random.default_rng(layer)
    below = images_for("bernoulli", 50) if layer == 0 else rng.integers(-40, 41, (50, model.latents[layer - 1])) / 16
    mean, log_sigma = model.inference(layer, below)
    z = rng.integers(-40, 41, mean.shape) / 16
    groups = model.post_groups[layer]
    flow = model.posterior_flow(layer, mean, log_sigma, z)
    for g, group in enumerate(groups):
        changed = z.copy()
        later = np.concatenate(groups[g:])
        changed[:, later] = rng.integers(-128, 128, (50, len(later))) / 16
        for a, b in zip(flow, model.posterior_flow(layer, mean, log_sigma, changed)):
            assert a[:, group].tobytes() == b[:, group].tobytes()
    assert not np.allclose(flow[0], mean) and not np.allclose(flow[1], log_sigma)


def test_each_groups_part_of_a_flow_gives_the_whole_flows_bits(hvae):
    """The encoder's pops of a posterior (and the decoder's of the prior) evaluate, for
    each group, only the part of the flow that the group's outputs read: the same bits
    as the whole flow's, for every group and layer."""
    _, model = hvae
    rng = np.random.default_rng(7)
    cases = []
    if model.top is not None:
        z = rng.integers(-60, 61, (30, model.latents[-1])) / 16
        cases.append((model.top_groups, lambda group: model.top_prior(z, group)))
    for layer in range(len(model.latents)) if model.post is not None else []:
        below = images_for("bernoulli", 30) if layer == 0 else rng.integers(-40, 41, (30, model.latents[layer - 1])) / 16
        mean, log_sigma = model.inference(layer, below)
        z = rng.integers(-60, 61, mean.shape) / 16
        cases.append((model.post_groups[layer],
                      lambda group, layer=layer, mean=mean, log_sigma=log_sigma, z=z:
                      model.posterior_flow(layer, mean, log_sigma, z, group)))
    if not cases:
        pytest.skip("no flow")
    for groups, flow in cases:
        whole = flow(None)
        for k, group in enumerate(groups):
            for a, b in zip(whole, flow(k)):
                assert a[:, group].tobytes() == b.tobytes()


def test_the_exact_flow_posterior_matches_torch(hvae):
    """The coder's flow sees the Gaussian as training did: mean, then log-sigma, then z."""
    net, model = flow_posterior(hvae)
    mean, log_sigma = model.inference(0, images_for("bernoulli", 40))
    mean, log_sigma = np.round(mean * 16) / 16, np.round(log_sigma * 16) / 16  # on the grid, as the flow sees them
    z = mean + np.random.default_rng(4).integers(-2, 3, mean.shape) / 16  # (within the calibration's range)
    with torch.no_grad():
        inputs = torch.from_numpy(np.concatenate([mean, log_sigma, z], -1)).float()
        expected = shift(net.post[0](inputs).numpy(), mean, log_sigma)
    for got, want, base in zip(model.posterior_flow(0, mean, log_sigma, z), expected, (mean, log_sigma)):
        change = want - base  # the flow's shift; 8-bit weights and activations round it
        np.testing.assert_allclose(got - base, change, atol=0.1 * change.std())
