import numpy as np
import pytest
import torch

from bbans.codecs.pixels import laplace_ar
from bbans.codecs.vq import PRIORS, VQCodec
from conftest import bits_of, images_for


def eight_bit(n, seed=0):
    return images_for("laplace_ar", n, seed)


def test_quantization_picks_the_nearest_codebook_vector(tiny_vq):
    vq, _ = tiny_vq
    x = torch.from_numpy(eight_bit(20).reshape(-1, 28, 28))
    vectors = vq.encode(x)  # (20, 49, dim)
    distances = ((vectors[:, :, None, :] - vq.codebook) ** 2).sum(-1)  # (20, 49, K)
    z = vq.quantize(x)
    chosen = distances.gather(-1, z[..., None])
    assert torch.all(chosen <= distances + 1e-6)
    assert len(z.unique()) > 1  # the test sees more than one code in use


@pytest.mark.parametrize("prior", PRIORS)
@pytest.mark.parametrize("n", [1, 5, 9])
def test_round_trip_across_batches(tiny_vq, prior, n):
    _, model = tiny_vq
    codec = VQCodec(model, prior, batch=4)
    x = eight_bit(n, seed=n)
    words, latent_bits = codec.encode(x)
    assert 0 < latent_bits < 32 * len(words)
    images, decoded_bits = codec.decode(words, n)
    np.testing.assert_array_equal(images, x)
    assert decoded_bits == latent_bits


def test_codec_costs_what_the_torch_model_computes(tiny_vq):
    """Pixels given the code, and the code under each prior, cost what the training model
    says, to within the coder's precision."""
    vq, model = tiny_vq
    x = eight_bit(30)
    rec, ar, factorized = (t.sum().item() for t in vq.costs(torch.from_numpy(x.reshape(-1, 28, 28))))
    z = model.quantize(x)
    expected = {"ar": ar, "factorized": factorized, "uniform": z.size * np.log2(model.codes)}
    for prior, ideal in expected.items():
        bits = bits_of(lambda m: VQCodec(model, prior).latent_codec(len(z)).push(m, z))
        assert abs(bits - ideal) < 2e-3 * ideal + 64, prior
    bits = bits_of(lambda m: laplace_ar(model, model.decode(z)).push(m, x))
    assert abs(bits - rec) < 2e-3 * rec + 64


def test_prior_and_decoder_outputs_do_not_depend_on_batch_or_cells(tiny_vq):
    _, model = tiny_vq
    z = model.quantize(eight_bit(12))
    every = model.prior_logits(z, np.arange(model.positions))
    one_by_one = np.stack([model.prior_logits(z[i:i + 1], [c])[0, 0]
                           for i in range(len(z)) for c in range(model.positions)])
    assert every.reshape(-1, model.codes).tobytes() == one_by_one.tobytes()
    assert model.decode(z).tobytes() == np.concatenate([model.decode(z[i:i + 5]) for i in range(0, 12, 5)]).tobytes()


def test_exact_networks_follow_the_torch_model(tiny_vq):
    """The codec's grid-exact prior and decoder compute what the trained networks do, up
    to the grids' rounding (the zero pad outside the grid included)."""
    vq, model = tiny_vq
    z = model.quantize(eight_bit(12))
    with torch.no_grad():
        logits = vq.prior(vq.prior_input(torch.from_numpy(z))).numpy()
        feats = vq.pixel_features(vq.grid_vectors(torch.from_numpy(z))).numpy()
    np.testing.assert_allclose(model.prior_logits(z, np.arange(model.positions)), logits, atol=1e-2)
    np.testing.assert_allclose(model.decode(z), feats, atol=1e-2)
