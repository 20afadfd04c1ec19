"""Property-based tests (hypothesis): every codec round-trips whatever its parameters, and
no sequence of bytes makes the container reader or decompress fail any other way than
with the documented error."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from bbans import api, codecs as c, container
from bbans.errors import BbansError
from conftest import filled_message

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
probability = st.floats(0, 1)
sizes = st.integers(1, 40)


def round_trips(codec, symbols):
    message = filled_message(8)
    before = message.get_compressed().copy()
    codec.push(message, symbols)
    popped = codec.pop(message)
    assert message.get_compressed().tobytes() == before.tobytes()
    return popped


@SETTINGS
@given(st.data(), sizes)
def test_bernoulli(data, n):
    p = data.draw(arrays(np.float64, n, elements=probability))
    x = data.draw(arrays(np.int32, n, elements=st.integers(0, 1)))
    np.testing.assert_array_equal(round_trips(c.bernoulli(p), x), x)


@SETTINGS
@given(st.data(), sizes, st.integers(1, 300))
def test_categorical(data, n, k):
    probs = data.draw(arrays(np.float64, (n, k), elements=st.floats(0, 1e6)))
    probs[:, 0] += 1e-3  # a row needs some mass; any symbol may still be coded
    x = data.draw(arrays(np.int32, n, elements=st.integers(0, k - 1)))
    np.testing.assert_array_equal(round_trips(c.categorical(probs), x), x)


@SETTINGS
@given(st.data(), sizes, st.integers(-300, 300), st.integers(0, 600))
def test_quantized_laplace(data, n, low, width):
    mean = data.draw(arrays(np.float64, n, elements=st.floats(-1e4, 1e4)))
    scale = data.draw(arrays(np.float64, n, elements=st.floats(1e-3, 1e4)))
    x = data.draw(arrays(np.int32, n, elements=st.integers(low, low + width)))
    np.testing.assert_array_equal(round_trips(c.quantized_laplace(mean, scale, low, low + width), x), x)


@SETTINGS
@given(st.data(), st.integers(1, 2**16), sizes)
def test_uniform(data, size, n):
    x = data.draw(arrays(np.int32, n, elements=st.integers(0, size - 1)))
    np.testing.assert_array_equal(round_trips(c.uniform(size, (n,)), x), x)


@SETTINGS
@given(st.data(), st.integers(1, 12), sizes)
def test_bucket_posterior(data, precision, n):
    mean = data.draw(arrays(np.float64, n, elements=st.floats(-40, 40)))
    std = data.draw(arrays(np.float64, n, elements=st.floats(1e-6, 100)))
    x = data.draw(arrays(np.int64, n, elements=st.integers(0, 2**precision - 1)))
    np.testing.assert_array_equal(round_trips(c.StdBuckets(precision).gaussian(mean, std), x), x)


@SETTINGS
@given(st.data(), sizes)
def test_latent_tables(data, n):
    mean = data.draw(arrays(np.float64, n, elements=st.floats(-20, 20)))
    log_sigma = data.draw(arrays(np.float64, n, elements=st.floats(-15, 10)))
    x = data.draw(arrays(np.int64, n, elements=st.integers(0, 256)))
    np.testing.assert_array_equal(round_trips(c.LatentTables().gaussian(mean, log_sigma), x), x)


@SETTINGS
@given(st.data(), st.integers(1, 5), sizes)
def test_bernoulli_nibbles(data, levels, n):
    probs = data.draw(arrays(np.float64, levels, elements=probability))
    picked = data.draw(arrays(np.int64, n, elements=st.integers(0, levels - 1)))
    x = data.draw(arrays(np.uint8, n, elements=st.integers(0, 1)))
    np.testing.assert_array_equal(round_trips(c.BernoulliLevels(probs, nibbles=True)(picked), x), x)


@SETTINGS
@given(st.binary(max_size=300))
def test_reading_any_bytes_gives_a_container_or_the_format_error(blob):
    try:
        container.read(blob)
    except container.FormatError:
        pass


def refuses(blob):
    with pytest.raises(BbansError):
        api.decompress(blob)


@SETTINGS
@given(st.binary(max_size=200))
def test_decompressing_bytes_after_a_valid_start_raises_only_the_documented_error(rest):
    refuses(b"BBANS\x02" + rest)


@pytest.fixture(scope="module")
def small_files(data):
    from bbans.measure import mnist_test, npy_bytes
    return [api.compress(npy_bytes(mnist_test(v, 3)), model=m)[0]
            for v, m in [("mnist-binarized", "vae-binary"), ("mnist", "vae-8bit"), ("mnist", "vqvae-8bit")]] + \
        [api.compress(b"some text " * 20)[0]]


@SETTINGS
@given(draws=st.data())
def test_any_change_to_a_valid_file_is_refused(small_files, draws):
    blob = bytearray(draws.draw(st.sampled_from(small_files)))
    for i in draws.draw(st.sets(st.integers(0, len(blob) - 1), min_size=1, max_size=4)):
        blob[i] ^= draws.draw(st.integers(1, 255))
    refuses(bytes(blob))


@SETTINGS
@given(st.data(), st.integers(2, 9), st.integers(2, 9), sizes)
def test_serial_chain_and_bits_back(data, k_z, k_x, n):
    """A toy latent-variable model with random tables: bits-back over a chain and a
    serial pair round-trips, and leaves the message as it found it."""
    table = lambda *shape: data.draw(arrays(np.float64, shape, elements=st.floats(1e-3, 1)))
    prior, likelihood, posterior = table(k_z), table(k_z, k_x), table(k_x, k_z)
    model = c.bits_back(c.categorical(np.broadcast_to(prior, (n, k_z))),
                        lambda z: c.categorical(likelihood[z]), lambda x: c.categorical(posterior[x]))
    pair = c.chain(c.uniform(k_x, (n,)), lambda first: c.serial([model, c.bernoulli(np.full(n, 0.3))]))
    x = data.draw(arrays(np.int32, n, elements=st.integers(0, k_x - 1)))
    bits = data.draw(arrays(np.int32, n, elements=st.integers(0, 1)))
    first, (second, third) = round_trips(pair, (x, (x, bits)))
    np.testing.assert_array_equal(first, x)
    np.testing.assert_array_equal(second, x)
    np.testing.assert_array_equal(third, bits)


@settings(max_examples=25, deadline=None)
@given(st.data(), st.integers(1, 6))
def test_image_codecs_round_trip_random_images(tiny_model, tiny_vq, data, n):
    """The VAE and VQ-VAE codecs on tiny untrained models, any pixels."""
    from bbans.codecs.vae import VAECodec
    from bbans.codecs.vq import VQCodec
    _, vae = tiny_model
    high = 1 if vae.likelihood == "bernoulli" else 255
    x = data.draw(arrays(np.uint8, (n, 784), elements=st.integers(0, high)))
    np.testing.assert_array_equal(VAECodec(vae, largest_batch=2).decode(VAECodec(vae, largest_batch=2).encode(x), n), x)
    y = data.draw(arrays(np.uint8, (n, 784), elements=st.integers(0, 255)))
    codec = VQCodec(tiny_vq[1], data.draw(st.sampled_from(["ar", "factorized", "uniform"])), batch=4)
    np.testing.assert_array_equal(codec.decode(codec.encode(y)[0], n)[0], y)
