import platform

import numpy as np
import pytest
import torch

from bbans.models import intnet
from bbans.models.intnet import IntNet, calibrate
from bbans.models.vae import LATENT_GRID, PIXEL_GRIDS, mlp


@pytest.fixture
def net():
    """An MLP whose first layer has the largest fan-in IntNet takes, with large weights."""
    torch.manual_seed(0)
    seq = mlp([intnet.FAN_IN_LIMIT, 64, 48, 10])
    with torch.no_grad():
        seq[0].weight.mul_(40)
    return seq


def images(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, intnet.FAN_IN_LIMIT)).astype(np.uint8)


def float_outputs(seq, x):
    with torch.no_grad():
        return seq(torch.from_numpy(x).float()).double().numpy()


def largest_inputs(seq, x):
    """What calibrate finds for a bare MLP, from the inputs of its Linear layers."""
    found = []
    h = torch.from_numpy(x).float()
    with torch.no_grad():
        for m in seq:
            if isinstance(m, torch.nn.Linear):
                found.append(float(h.abs().max()))
            h = m(h)
    return found


@pytest.fixture
def use_kernel(monkeypatch):
    """use_kernel(k): IntNet runs on kernel k until the test ends."""
    def use(k):
        monkeypatch.setattr(intnet, "kernel", lambda: k)
    return use


def test_every_kernel_gives_the_same_outputs(net, use_kernel):
    """Whichever exact kernel this machine runs, the outputs are the same, bit for bit,
    on sparse inputs (most pixels at 0) and on dense ones."""
    x = images(50)
    x[:25][np.random.default_rng(5).random((25, x.shape[1])) < 0.8] = 0
    q = IntNet(net, largest_inputs(net, x / 256), PIXEL_GRIDS["laplace_ar"])
    got = {}
    for k in intnet.exact_kernels():
        use_kernel(k)
        got[k.name] = q(x).tobytes()
    assert len(got) >= 2 and len(set(got.values())) == 1


def test_a_layer_with_one_input_or_one_output_gives_the_reference_on_every_kernel(use_kernel):
    """A side of 1 (a flow's part that reads a single hidden unit, or gives a single
    output): torch's int8 product misreads weights of such a side with the strides contiguous() leaves."""
    torch.manual_seed(3)
    for sizes in ([6, 1, 4], [6, 5, 1], [1, 3, 2]):
        seq = mlp(sizes)
        x = np.random.default_rng(1).integers(-40, 41, (37, sizes[0])) * LATENT_GRID[0]
        q = IntNet(seq, largest_inputs(seq, x), LATENT_GRID)
        inputs = np.clip(np.rint(x / LATENT_GRID[0]) - LATENT_GRID[1], -128, 127)
        for k in intnet.exact_kernels():
            use_kernel(k)
            got = q(x)
            assert got.tobytes() == intnet.reference(q.layers, inputs).tobytes(), (sizes, k.name)


def test_the_avx2_kernel_is_built_where_the_cpu_has_avx2():
    """The C kernel is part of the install (setup.sh builds it); on an AVX2 CPU it must
    be there and exact, or the fast path would be lost without a word."""
    if platform.machine() not in ("x86_64", "AMD64") or "avx2" not in intnet.cpu()[1]:
        pytest.skip("not an x86-64 CPU with AVX2")
    assert intnet.SparseAVX2.available() and intnet.is_exact(intnet.SparseAVX2)


def test_every_kernel_matches_the_reference_on_the_extreme_cases():
    """The exactness check itself: the reference's sums are those of int64 arithmetic."""
    for layers, x, want in intnet._extreme_cases()[:1]:
        w, multiplier, offset = layers[0]
        assert np.array_equal(want, (x.astype(np.int64) @ w.numpy().astype(np.int64)).astype(np.float32))
    for k in intnet.exact_kernels():
        assert intnet.is_exact(k)


def test_a_kernel_that_is_not_exact_is_never_chosen(monkeypatch):
    class Wrong(intnet.TorchFloat32):
        """float32 products where one sum is off by one: as a GEMM that saturates."""
        name = "wrong"

        @staticmethod
        def run(layers, q):
            out = intnet.TorchFloat32.run(layers, q)
            out.flat[0] += 1
            return out

    assert not intnet.is_exact(Wrong)
    monkeypatch.setattr(intnet, "KERNELS", (Wrong, intnet.TorchFloat32))
    monkeypatch.setattr(intnet, "seconds", lambda k, **_: 0.0 if k is Wrong else 1.0)  # faster, but wrong
    intnet.kernel.cache_clear()
    try:
        assert intnet.kernel() is intnet.TorchFloat32
        monkeypatch.setenv(intnet.KERNEL_ENV, "wrong")
        intnet.kernel.cache_clear()
        with pytest.raises(RuntimeError, match="not an exact kernel"):
            intnet.kernel()
    finally:
        intnet.kernel.cache_clear()


def test_a_far_slower_kernel_is_dropped_after_a_first_look(monkeypatch):
    """A kernel many times slower on a few rows is not timed on the whole set."""
    class Quick(intnet.TorchFloat32):
        name = "quick"

    timed = []

    def seconds(k, repeat=5, rows=None):
        timed.append((k.name, rows))
        return 0.01 if k is Quick else 1.0

    monkeypatch.setattr(intnet, "seconds", seconds)
    monkeypatch.setattr(intnet, "KERNELS", (intnet.TorchFloat32, Quick))
    intnet.kernel.cache_clear()
    try:
        assert intnet.kernel() is Quick
        assert ("torch-float32", 8) in timed and ("torch-float32", None) not in timed and ("quick", None) in timed
    finally:
        intnet.kernel.cache_clear()


def test_the_fastest_exact_kernel_is_chosen_unless_one_is_named(monkeypatch):
    runnable = intnet.exact_kernels()
    times = {k.name: float(i) for i, k in enumerate(reversed(runnable))}
    monkeypatch.setattr(intnet, "seconds", lambda k, **_: times[k.name])
    intnet.kernel.cache_clear()
    try:
        assert intnet.kernel() is runnable[-1]
        monkeypatch.setenv(intnet.KERNEL_ENV, runnable[0].name)
        intnet.kernel.cache_clear()
        assert intnet.kernel() is runnable[0]
    finally:
        intnet.kernel.cache_clear()


def test_outputs_do_not_depend_on_the_batch_split(net):
    x = images(40, seed=1)
    q = IntNet(net, largest_inputs(net, x / 256), PIXEL_GRIDS["laplace_ar"])
    whole = q(x)
    assert whole.tobytes() == np.concatenate([q(x[i:i + 7]) for i in range(0, 40, 7)]).tobytes()


def test_pixels_given_as_integers_or_as_values_give_the_same_outputs(net):
    x = images(20, seed=2)
    q = IntNet(net, largest_inputs(net, x / 256), PIXEL_GRIDS["laplace_ar"])
    assert q(x).tobytes() == q(x / 256).tobytes()


@pytest.mark.parametrize("grid", [PIXEL_GRIDS["laplace_ar"], LATENT_GRID])
def test_outputs_are_close_to_the_float_network(net, grid):
    """Rounding weights to 8 bits and activations to 7 costs little: the outputs are off
    the float network's by a few percent of their spread, on average."""
    rng = np.random.default_rng(3)
    if grid == LATENT_GRID:  # latents on the coder's grid
        x = np.clip(np.rint(rng.normal(0, 2, (200, intnet.FAN_IN_LIMIT)) / grid[0]), -128, 127) * grid[0]
    else:
        x = images(200, seed=3) / 256
    want = float_outputs(net, x)
    got = IntNet(net, largest_inputs(net, x), grid)(x)
    error = np.abs(got - want) / want.std()
    assert error.mean() < 0.03 and error.max() < 0.1


def test_calibrate_finds_the_largest_input_of_every_linear_layer():
    """On a VAE: the inputs of its encoder's layers are the images and its ReLU outputs."""
    from bbans.models.vae import VAE
    torch.manual_seed(0)
    vae = VAE("bernoulli", hidden=16, latent=3).eval()
    x = torch.from_numpy((np.random.default_rng(0).random((30, 28, 28)) < 0.4).astype(np.float32))
    found = calibrate(vae, x, batch=7)
    assert found["encoder"] == pytest.approx(largest_inputs(vae.encoder, x.reshape(30, -1).numpy()))
    assert set(found) == {"encoder", "decoder"} and len(found["decoder"]) == 3


def test_a_model_without_a_calibration_codes_only_the_earlier_way(monkeypatch):
    """Format 4 needs the calibration stored with the weights; files of versions 1 to 3
    (float64 grids) do not."""
    from bbans.models import zoo
    from bbans.models.vae import VAE
    vae = VAE("bernoulli", hidden=16, latent=3).eval()
    vae.calibration = None
    monkeypatch.setattr(zoo, "load_network", lambda name: vae)
    zoo.load.cache_clear()
    try:
        with pytest.raises(zoo.UnknownModel, match="no calibration"):
            zoo.load("vae-binary")
        assert zoo.load("vae-binary", integer=False)[0].latent == 3
    finally:
        zoo.load.cache_clear()
