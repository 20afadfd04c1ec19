import itertools
import platform

import numpy as np
import pytest
import torch

from bbans.codecs import CorruptData
from bbans.codecs.vae import VAECodec, batch_schedule
from bbans.models import grids, intnet
from bbans.models.grids import ExactColumns, ExactNet
from bbans.models.vae import value_params
from conftest import bits_of, images_for


@pytest.mark.parametrize("n", [1, 2, 5, 13, 40])
def test_round_trip_across_batch_boundaries(tiny_model, n):
    _, model = tiny_model
    codec = VAECodec(model, largest_batch=4)
    x = images_for(model.likelihood, n, seed=n)
    np.testing.assert_array_equal(codec.decode(codec.encode(x), n), x)


@pytest.mark.parametrize("fraction", [0.25, 0.5])
def test_schedule_covers_every_image_once_and_grows_slowly(fraction):
    for n in (1, 2, 999, 1000, 1001, 25000):
        batches = batch_schedule(n, 1000, fraction)
        assert [s for s, _ in batches] == list(np.cumsum([0] + [b for _, b in batches])[:-1])
        assert sum(b for _, b in batches) == n
        assert all(b <= max(1, s * fraction) and b <= 1000 for s, b in batches)


def test_extra_data_after_the_images_is_refused(tiny_model):
    _, model = tiny_model
    codec = VAECodec(model)
    x = images_for(model.likelihood, 3)
    words = np.concatenate([[12345], codec.encode(x)]).astype(np.uint32)
    with pytest.raises(CorruptData):
        codec.decode(words, 3)


def test_network_outputs_do_not_depend_on_threads_or_batch_split(tiny_model):
    vae, model = tiny_model
    x = images_for(model.likelihood, 64)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        mu1, _ = model.posterior(x)
        torch.set_num_threads(2)
        mu2, _ = model.posterior(x)
        mu3 = np.concatenate([model.posterior(x[i:i + 5])[0] for i in range(0, 64, 5)])
    finally:
        torch.set_num_threads(threads)
    assert mu1.tobytes() == mu2.tobytes() == mu3.tobytes()


def test_likelihood_codec_costs_what_the_torch_model_says(tiny_model):
    """The coder's cost of x given z matches -log2 p(x|z) of the training model, so the
    codec and the model agree on pixel order, neighbours and the discretization."""
    vae, model = tiny_model
    codec = VAECodec(model)
    x = images_for(model.likelihood, 30)
    buckets = codec.buckets.bucket_of(np.random.default_rng(0).normal(0, 1, (30, model.latent)))  # z ~ the prior
    bits = bits_of(lambda message: codec.likelihood(buckets).push(message, x))
    z = torch.from_numpy(codec.buckets.centres[buckets]).float()
    with torch.no_grad():
        ideal = -vae.log_likelihood(torch.from_numpy(x.reshape(-1, 28, 28)).float(), z).sum().item() / np.log(2)
    assert abs(bits - ideal) < 2e-3 * ideal + 64


def test_a_flow_posterior_costs_its_density_on_the_grid_and_differs_from_its_gaussian(tiny_model):
    """Pushing z under a flow posterior costs -log2 of the flow's density at each cell's
    centre times the cell's width, its Gaussians (each given the groups before it and the
    encoder's Gaussian) rounded as the latent tables round them."""
    vae, model = tiny_model
    if model.post is None:
        pytest.skip("Gaussian posterior")
    codec = VAECodec(model)
    tables = codec.buckets
    x = images_for(model.likelihood, 40)
    mean, log_sigma = model.posterior(x)
    cells = tables.bucket_of(mean) + np.random.default_rng(2).integers(-3, 4, mean.shape)
    z = tables.centres[cells]
    flow_mean, flow_log_sigma = model.posterior_flow(mean, log_sigma, z)
    assert not np.allclose(flow_mean, mean) and not np.allclose(flow_log_sigma, log_sigma)
    flow_mean = np.rint(flow_mean * tables.FRACTIONS / tables.step) * tables.step / tables.FRACTIONS
    flow_log_sigma = np.rint(flow_log_sigma / tables.LOG_SIGMA_STEP) * tables.LOG_SIGMA_STEP
    nats = (0.5 * ((z - flow_mean) / np.exp(flow_log_sigma))**2 + flow_log_sigma + 0.5 * np.log(2 * np.pi)
            - np.log(tables.step))
    expected = nats.sum() / np.log(2)
    assert abs(bits_of(lambda m: codec.posterior(x).push(m, cells)) - expected) < 0.005 * expected + 32


def test_pixel_heads_on_columns_are_the_exact_networks_whatever_the_blocks(tiny_model, monkeypatch):
    """The coder's pixel heads (bbans.models.grids.ExactColumns, pixels as columns, in blocks,
    with numpy and with the C kernel where it runs) give bit for bit what ExactNet gives on the same pixels as rows: the nonzero logit
    of every pixel, the Laplaces' parameters of the pixels asked for."""
    vae, model = tiny_model
    if model.head is None:
        pytest.skip("a Bernoulli VAE has no pixel head")
    rng = np.random.default_rng(3)
    feats = rng.normal(0, 3, (model.features, 40, 9))
    nbrs = rng.integers(0, 256, (len(model.context), 40, 9)) / 256
    rows = torch.from_numpy(np.concatenate([feats, nbrs]).reshape(len(feats) + len(nbrs), -1).T)
    pixels = rng.permutation(40 * 9)[:100]  # some of them, in any order
    out = ExactNet(vae.head)(rows).numpy()
    if vae.zero_head is None:
        logit, values = out[:, 0], value_params(out[pixels, 1:])
    else:
        logit, values = ExactNet(vae.zero_head)(rows).numpy()[:, 0], value_params(out[pixels])
    for block, method in itertools.product((7, 1024), grids.head_methods()):
        monkeypatch.setattr(ExactColumns, "BLOCK", block)
        monkeypatch.setattr(grids, "head_kernel", lambda: method)
        got_logit, values_at = model.pixel_heads(feats, nbrs)
        assert got_logit.tobytes() == logit.reshape(40, 9).tobytes()
        for got, want in zip(values_at(pixels), values):
            assert (got is None and want is None) or got.tobytes() == want.tobytes()


@pytest.mark.parametrize("n, k", [(1, 1), (5, 61), (300, 3), (1000, 1)])
def test_gathered_columns_are_the_columns_gathered_first(n, k, monkeypatch):
    """ExactColumns.gather on every kernel: the outputs of the columns table[rows[r, i], j],
    whatever the row length n (against the kernel's blocks of 252 columns and numpy's of
    BLOCK), the rows' order and repeats, with weights and inputs at the grids' limits."""
    head, x, _ = grids.timing_head()
    rng = np.random.default_rng(n)
    table = x[:, rng.integers(0, x.shape[1], 40 * n)].reshape(-1, n)  # (13 * 40, n)
    rows = rng.integers(0, len(table), (13, k))
    columns = np.concatenate([table[rows].reshape(13, -1), np.ones((1, k * n))])
    want = head.numpy(columns, np.arange(13)[:, None])
    for block, method in itertools.product((7, 1024), grids.head_methods()):
        monkeypatch.setattr(ExactColumns, "BLOCK", block)
        assert getattr(head, method)(table, rows).tobytes() == want.tobytes()
    assert head.numpy(table, rows[:, ::-1]).tobytes() == want.reshape(-1, k, n)[:, ::-1].tobytes()


def test_the_head_kernel_is_built_where_the_cpu_has_avx2_and_fma():
    """Like IntNet's kernel: on such a CPU the C head kernel must be there and exact."""
    flags = intnet.cpu()[1]
    if platform.machine() not in ("x86_64", "AMD64") or "avx2" not in flags or "fma" not in flags:
        pytest.skip("not an x86-64 CPU with AVX2 and FMA")
    assert grids.head_methods() == ["numpy", "avx2"]
    grids.head_kernel.cache_clear()
    assert grids.head_kernel() in grids.head_methods()


def test_a_head_kernel_that_is_not_exact_is_never_chosen(monkeypatch):
    if len(grids.head_methods()) < 2:
        pytest.skip("the C head kernel does not run here")
    real = ExactColumns.avx2
    monkeypatch.setattr(ExactColumns, "avx2", lambda self, *inputs: np.nextafter(real(self, *inputs), np.inf))
    grids.head_kernel.cache_clear()
    try:
        assert grids.head_kernel() == "numpy"
    finally:
        grids.head_kernel.cache_clear()
