"""The colour VAE's codec (bbans.codecs.colour, bbans.models.colour): exact round trips, the
coder's cost against the training model's likelihood, and bit-identical outputs whatever the
batch split."""
import numpy as np
import pytest
import torch

from bbans import api, container
from bbans.codecs.colour import channel_params, lines
from bbans.codecs.vae import VAECodec, batch_schedule
from bbans.errors import BbansError
from bbans.measure import npy_bytes
from bbans.models.colour import ColourVAE, ExactColourVAE
from bbans.models.intnet import calibrate
from conftest import bits_of

SIDE = 8


def images(n: int, seed: int = 0, side: int = SIDE) -> np.ndarray:
    """Smooth colour images (n, side² 3) with edges and saturated pixels, as uint8."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (n, 1, 1, 3))
    x = base + rng.integers(-30, 31, (n, side, side, 3)).cumsum(2) // 3
    return np.clip(x, 0, 255).astype(np.uint8).reshape(n, -1)


@pytest.fixture(scope="module", params=["grids", "integer"])
def colour_model(request):
    """An untrained small ColourVAE on 8x8 images, as the codecs see it: encoder and decoder
    on float64 grids, or on integers calibrated on random images."""
    torch.manual_seed(2)
    vae = ColourVAE(hidden=32, latent=4, features=2, head_hidden=8, side=SIDE).eval()
    largest = None
    if request.param == "integer":
        largest = calibrate(vae, torch.from_numpy(images(50, 9).reshape(-1, SIDE, SIDE, 3).astype(np.float32)))
    return vae, ExactColourVAE(vae, largest)


def test_lines_cover_each_pixel_once_after_its_context():
    order = np.empty(SIDE * SIDE, int)
    for t, idx in enumerate(lines(SIDE)):
        order[idx] = t
    assert sorted(np.concatenate(lines(SIDE))) == list(range(SIDE * SIDE))
    i, j = np.divmod(np.arange(SIDE * SIDE), SIDE)
    for di, dj in ColourVAE().context:
        inside = (i + di >= 0) & (j + dj >= 0) & (j + dj < SIDE)
        assert (order[((i + di) * SIDE + j + dj)[inside]] < order[inside]).all()


@pytest.mark.parametrize("n", [1, 2, 7, 40])
def test_round_trip_across_batch_boundaries(colour_model, n):
    _, model = colour_model
    codec = VAECodec(model, largest_batch=16)
    x = images(n, seed=n)
    np.testing.assert_array_equal(codec.decode(codec.encode(x), n), x)


def test_extreme_pixels_round_trip(colour_model):
    _, model = colour_model
    x = np.zeros((6, SIDE * SIDE * 3), np.uint8)
    x[1], x[2, ::2], x[3] = 255, 255, np.arange(x.shape[1]) % 256
    x[4:] = np.random.default_rng(1).integers(0, 256, x[4:].shape)
    codec = VAECodec(model)
    np.testing.assert_array_equal(codec.decode(codec.encode(x), 6), x)


def test_batches_grow_sixteen_fold():
    assert [size for _, size in batch_schedule(400, 1000, ExactColourVAE.batch_fraction)] == [1, 16, 272, 111]


def test_likelihood_codec_costs_what_the_torch_model_says(colour_model):
    """The coder's cost of x given z matches -log2 p(x|z) of the training model: codec and
    model agree on the pixel order, the neighbours, the channels' couplings and the
    discretization (the component's bits back cost next to nothing here)."""
    vae, model = colour_model
    codec = VAECodec(model)
    x = images(30, seed=5)
    buckets = codec.buckets.bucket_of(np.random.default_rng(0).normal(0, 1, (30, model.latent)))
    bits = bits_of(lambda message: codec.likelihood(buckets).push(message, x))
    z = torch.from_numpy(codec.buckets.centres[buckets]).float()
    with torch.no_grad():
        ideal = -vae.log_likelihood(torch.from_numpy(x.reshape(-1, SIDE, SIDE, 3)).float(), z).sum().item() / np.log(2)
    assert abs(bits - ideal) < 5e-3 * ideal + 64


def test_outputs_do_not_depend_on_the_batch_split(colour_model):
    _, model = colour_model
    x = images(20, seed=3)
    whole = model.posterior(x)[0]
    assert whole.tobytes() == np.concatenate([model.posterior(x[i:i + 3])[0] for i in range(0, 20, 3)]).tobytes()
    rng = np.random.default_rng(4)
    feats = model.decode(rng.normal(0, 1, (50, model.latent)))[:, :2].transpose(1, 2, 0)  # (2 pixels, F, 50 images)
    table = np.concatenate([feats.reshape(-1, 50), rng.integers(0, 256, (40, 50)) / 256])
    rows = np.concatenate([np.arange(2 * model.features).reshape(2, -1).T,
                           rng.integers(len(table) - 40, len(table), (3 * len(model.context), 2))])
    out = model.pixel_head(table, rows).reshape(-1, 2, 50)  # (OUTPUTS, pixel, image)
    parts = [model.pixel_head(table[:, i:i + 7], rows).reshape(len(out), 2, -1) for i in range(0, 50, 7)]
    assert out.tobytes() == np.concatenate(parts, -1).tobytes()


def test_later_channels_shift_by_the_earlier_ones():
    out = np.zeros((18, 1))
    out[15:] = [[0.5], [1.0], [-1.0]]  # G <- R, B <- R, B <- G
    means, _, _ = channel_params(out, 2, [np.array([10.0]), np.array([4.0])])
    assert means[:, 0].tolist() == [6.0, 6.0]
    assert channel_params(out, 1, [np.array([10.0])])[0][:, 0].tolist() == [5.0, 5.0]


@pytest.fixture(scope="module")
def cifar(data):
    from bbans.models.data import load_images
    return load_images("cifar-10", "test")[::500]


def test_cifar_images_go_to_the_colour_model(cifar):
    blob, report = api.compress(npy_bytes(cifar))
    assert (report["method"], report["model"], report["chunk_codecs"]) == ("bbans-vae", "vae-cifar", {"vae-cifar": 1})
    assert report["bits_per_dim"] < 4.5 and not report["warnings"]
    assert api.decompress(blob)[0] == npy_bytes(cifar)
    assert api.info(blob)["image_shape"] == [32, 32, 3]


def test_a_model_of_another_shape_is_refused(cifar):
    with pytest.raises(BbansError, match=r"codes images of 28x28 grey \(or of any size with its channels\), and these "
                                         "are 32x32x3"):
        api.compress(npy_bytes(cifar), model="vae-fashion")
    with pytest.raises(BbansError, match="codes images of 32x32x3 .*, and these are 28x28 grey"):
        api.compress(npy_bytes(np.zeros((3, 28, 28), np.uint8)), model="vae-cifar")


def test_a_colour_file_naming_a_grey_model_is_refused(cifar):
    blob, _ = api.compress(npy_bytes(cifar[:4]))
    box = container.read(blob)
    box.model = "vae-fashion"
    with pytest.raises(BbansError, match="corrupt header"):
        api.decompress(box.to_bytes())
