"""RealNVP coded at its own density (bbans.codecs.flow over bbans.models.exact_flow):
exact round trips, the cost the flow's NLL, the same integers however the images are
batched and however many threads multiply, and files that decode with the model-only option."""
import os
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest

from bbans import api
from bbans.codecs.flow import FlowCodec
from bbans.measure import mnist_test, npy_bytes
from bbans.models import zoo
from test_cli import bbans


@pytest.fixture(scope="module")
def flow():
    return zoo.load("realnvp")[0]  # the exact flow the coder uses


def extremes() -> np.ndarray:
    """Images far from MNIST: all black, all white, a checkerboard of both, noise."""
    i, j = np.mgrid[:28, :28]
    noise = np.random.default_rng(0).integers(0, 256, (2, 784))
    return np.concatenate([np.zeros((1, 784)), np.full((1, 784), 255), (255 * ((i + j) % 2)).reshape(1, -1),
                           noise]).astype(np.uint8)


def test_round_trips_are_exact(data, flow):
    x = np.concatenate([mnist_test("mnist", 25).reshape(25, -1), extremes()])
    codec = FlowCodec(flow, largest_batch=4)
    words = codec.encode(x)
    assert np.array_equal(codec.decode(words, len(x)), x)


def test_the_cost_is_the_flows_nll(data, flow):
    """The coder's bits after the first batch against the float flow's NLL on the same
    images (another draw of u): within 1%."""
    x = mnist_test("mnist", 300).reshape(300, -1)
    costs = Counter()
    FlowCodec(flow).encode(x, costs)
    coded = costs["bits"] / costs["dims"]
    nll = zoo.figures("realnvp", x)["nll_bits_per_dim"]
    assert costs["images"] > 250 and abs(coded / nll - 1) < 0.01, (coded, nll)


def test_the_steps_integers_do_not_depend_on_the_batch(data, flow):
    state = np.random.default_rng(1).integers(-3 << flow.grid_bits, 3 << flow.grid_bits, (6, flow.dims))
    for step in flow.steps:
        whole = step.params(state)
        parts = [step.params(state[:2]), step.params(state[2:])]
        for a, b in zip(whole, zip(*parts)):
            assert np.array_equal(a, np.concatenate(b))


def test_a_changed_table_changes_the_fingerprint(flow, monkeypatch):
    from bbans import messages
    here = messages.fingerprint("realnvp")
    model, _ = messages.load("realnvp")
    monkeypatch.setattr(model, "digest", b"another libm")
    messages.fingerprint.cache_clear()
    try:
        assert messages.fingerprint("realnvp") != here
    finally:
        monkeypatch.undo()
        messages.fingerprint.cache_clear()


def test_model_only_files_round_trip_in_chunks_and_workers(data):
    images = mnist_test("mnist", 40)
    original = npy_bytes(images)
    blob, r = api.compress(original, model="realnvp", model_only=True, chunk_images=16)
    assert r["method"] == "bbans-flow" and r["chunk_codecs"] == {"realnvp": 3} and "nll_bits_per_dim" in r
    assert api.compress(original, model="realnvp", model_only=True, chunk_images=16, workers=2)[0] == blob
    assert api.decompress(blob, workers=2)[0] == original
    fallback, r = api.compress(original, model="realnvp", chunk_images=16)  # 16 images: xz is smaller
    assert len(fallback) < len(blob) and "realnvp" not in r["chunk_codecs"]


def test_a_file_decodes_with_another_thread_count(data, tmp_path):
    """Compressed where numpy's BLAS runs one thread, decompressed where it runs two."""
    src = tmp_path / "d.npy"
    np.save(src, mnist_test("mnist", 30))

    def cli(threads, *args):
        env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
        subprocess.run([sys.executable, "-m", "bbans.cli", *map(str, args)], check=True, env=env, capture_output=True)

    cli(1, "compress", src, "--model", "realnvp", "--model-only", "--nll-samples", 0)
    cli(2, "decompress", f"{src}.bbans", "-o", tmp_path / "back.npy")
    assert (tmp_path / "back.npy").read_bytes() == src.read_bytes()


def test_model_only_refuses_what_no_model_codes(tmp_path):
    src = tmp_path / "rgba.npy"
    np.save(src, np.zeros((2, 8, 8, 4), np.uint8))
    code, out = bbans("compress", src, "--model-only")
    assert code == 1 and out.strip() == "bbans: error: --model-only: no model of the zoo codes images of 8x8x4 " \
                                        "(height x width x channels)"
    assert not (tmp_path / "rgba.npy.bbans").exists()
