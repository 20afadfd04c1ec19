"""`bbans bench`: every codec's round trip is checked, the rates and speeds are sane, the
peak memory is the measuring process's own, and --json and --plot give what they say."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from bbans import bench, measure
from bbans.models import intnet, zoo
from bbans.cli import main

IMAGE_ROWS = [f"{name} ({layout})" for name in bench.IMAGE_FORMATS for layout in ("per image", "one image")]
CLASSICAL_ROWS = list(bench.BYTE_CODECS) + IMAGE_ROWS
RATE_KEYS = {"bits_per_dim", "compressed_bytes", "compress_images_per_s", "decompress_images_per_s"}
BBANS_KEYS = RATE_KEYS | {"model", "machine", "model_bits_per_dim", "card_nll_bits_per_dim", "compress_peak_rss_mb",
                          "decompress_peak_rss_mb", "first_1_bits_per_dim", "first_100_bits_per_dim"}


@pytest.fixture(scope="module")
def binarized_run(data, tmp_path_factory):
    """One `bbans bench --data mnist-binarized -n 20 --json --plot`: (results, PNG path)."""
    png = tmp_path_factory.mktemp("bench") / "rates.png"
    result = CliRunner().invoke(main, ["bench", "--data", "mnist-binarized", "-n", "20", "--json", "--plot", str(png)])
    assert result.exit_code == 0, result.output
    return json.loads(result.output), png


def check_classical(codecs: dict, n: int):
    for name in CLASSICAL_ROWS:
        c = codecs[name]
        assert c.keys() == RATE_KEYS | {"layout"}
        assert c["bits_per_dim"] == pytest.approx(8 * c["compressed_bytes"] / (n * 784))
        assert 0 < c["bits_per_dim"] < 8 and c["compress_images_per_s"] > 0 and c["decompress_images_per_s"] > 0
    for name in bench.IMAGE_FORMATS:  # a header and a fresh start per image
        assert codecs[f"{name} (per image)"]["bits_per_dim"] > codecs[f"{name} (one image)"]["bits_per_dim"]


def test_fashion_mnist_gets_its_models_and_every_classical_codec(data):
    r = bench.run("fashion-mnist", 20)
    assert (r["images"], r["dims"]) == (20, 20 * 784)
    assert list(r["codecs"]) == ["bbans vae-fashion-flowq", "bbans vae-fashion"] + CLASSICAL_ROWS
    check_classical(r["codecs"], 20)
    # 8-bit clothes cost far more than binarized digits
    assert min(c["bits_per_dim"] for c in r["codecs"].values()) > 2


def test_models_fit_by_data_set_and_binarization():
    assert bench.fitting_models("mnist-binarized") == [
        "hvae-binary", "vae-binary", "vae-binary-fast", "hvae-binary-maf", "hvae-binary-flowq"]  # default first
    assert bench.fitting_models("mnist") == [
        "vae-8bit-sparse-wide", "vae-8bit", "vae-8bit-mix", "vae-8bit-sparse", "vqvae-8bit", "realnvp"]
    assert bench.fitting_models("fashion-mnist") == ["vae-fashion-flowq", "vae-fashion"]


def test_binarized_bench_json(binarized_run):
    results, _ = binarized_run
    r = results["mnist-binarized"]
    assert list(results) == ["mnist-binarized"] and (r["images"], r["dims"]) == (20, 20 * 784)
    models = bench.fitting_models("mnist-binarized")
    assert list(r["codecs"]) == [f"bbans {m}" for m in models] + CLASSICAL_ROWS
    check_classical(r["codecs"], 20)
    for model in models:
        row = r["codecs"][f"bbans {model}"]
        assert BBANS_KEYS <= row.keys() and row["model"] == model
        assert row["bits_per_dim"] == pytest.approx(8 * row["compressed_bytes"] / (20 * 784))
        assert 0 < row["bits_per_dim"] < 8 and row["first_1_bits_per_dim"] > row["first_100_bits_per_dim"] > 0
        # a process that loads torch and a model: tens of MB at least, and not gigabytes for 20 images
        assert 50 < row["compress_peak_rss_mb"] < 2000 and 50 < row["decompress_peak_rss_mb"] < 2000
        # the speeds say where they were measured: this CPU, and the kernel of this process's choice
        assert row["machine"]["cpu"] and row["machine"]["kernel"] in {k.name for k in intnet.KERNELS}
    text = bench.table(results)
    assert "comp MB" in text and "decomp MB" in text and f"kernel {row['machine']['kernel']}" in text
    assert all(name in text for name in r["codecs"])


def test_plot_is_a_png(binarized_run):
    from matplotlib.image import imread
    _, png = binarized_run
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    pixels = imread(png)
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100
    assert pixels.std() > 0  # something is drawn


def test_a_failed_plot_leaves_the_old_file_alone(data, tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "plot", lambda results: 1 / 0)
    png = tmp_path / "rates.png"
    png.write_bytes(b"old plot")
    result = CliRunner().invoke(main, ["bench", "--data", "fashion-mnist", "-n", "2", "--plot", str(png)])
    assert result.exit_code == 3 and "ZeroDivisionError" in result.output
    assert list(tmp_path.iterdir()) == [png] and png.read_bytes() == b"old plot"


def test_a_set_too_tall_for_webp_goes_in_as_a_mosaic():
    names = [name for name, *_ in bench.classical_codecs((600, 28, 28))]  # 600 * 28 > 16383 rows
    assert "webp -z9 (one mosaic image)" in names and "webp -z9 (one image)" not in names
    assert "png -9 (one image)" in names and "jpeg-xl -e9 (one image)" in names


@pytest.mark.parametrize("n", [1, 7, 20])
def test_mosaic_is_near_square_and_gives_the_images_back(n):
    images = np.random.default_rng(n).integers(0, 256, (n, 28, 28), dtype=np.uint8)
    grid = bench.mosaic(images)
    rows, cols = grid.shape[0] // 28, grid.shape[1] // 28
    assert rows * cols >= n and cols - 1 <= rows <= cols
    assert np.array_equal(bench.tiles(grid, images.shape), images)
    encode, decode = bench.grey("webp -z9", *bench.IMAGE_FORMATS["webp -z9"][:2], colour=False)  # as three channels
    assert bench.classical_row(images, "one mosaic image", encode, decode)["bits_per_dim"] > 0


def test_a_lossy_round_trip_is_caught():
    images = np.zeros((3, 28, 28), np.uint8)
    encode, decode, _ = bench.IMAGE_FORMATS["png -9"]
    with pytest.raises(AssertionError, match="round trip"):
        bench.classical_row(images, "per image", encode, lambda b: decode(b) + 1)


def test_peak_memory_is_the_child_s_own():
    ballast = np.ones(400 << 20, np.uint8)  # touched: this process's peak grows by 400 MB
    child = measure.in_fresh_process(measure.peak_rss_mb)
    parent = measure.peak_rss_mb()
    del ballast
    assert parent > 400 and 0 < child < parent - 300


def test_a_card_gives_each_machine_its_speed():
    """A card keeps one speed per machine (CPU, SIMD level, torch's level, kernel), and
    its markdown names each."""
    from bbans.cards import markdown
    from bbans.models.zoo import card
    c = card("hvae-binary")
    avx2 = dict(cpu="Some CPU", simd="AVX2", torch_simd="AVX2", kernel="avx2-sparse")
    vnni = dict(avx2, simd="AVX-512 VNNI", torch_simd="AVX512", kernel="torch-int8")
    c["speeds"] = [dict(machine=avx2, compress_images_per_s=21000, decompress_images_per_s=22000),
                   dict(machine=vnni, compress_images_per_s=31000, decompress_images_per_s=32000)]
    text = markdown(c)
    assert "21,000 images/s to compress, 22,000 to decompress on Some CPU (AVX2; torch at AVX2, kernel avx2-sparse)" in text
    assert "31,000 images/s to compress" in text and "kernel torch-int8" in text


def test_cifar_10_gets_bbans_with_its_model_and_every_classical_codec_in_colour(data):
    r = bench.run("cifar-10", 12)
    assert (r["images"], r["dims"]) == (12, 12 * 32 * 32 * 3)
    assert list(r["codecs"]) == ["bbans vae-cifar"] + CLASSICAL_ROWS  # every round trip checked in run
    bbans_row = r["codecs"]["bbans vae-cifar"]
    assert bbans_row["model"] == "vae-cifar" and 2 < bbans_row["model_bits_per_dim"] < 5
    classical = [c["bits_per_dim"] for name, c in r["codecs"].items() if name in CLASSICAL_ROWS]
    assert bbans_row["bits_per_dim"] <= min(classical) + 8 * 300 / r["dims"]  # the best of them and bbans's framing
    mosaic = bench.mosaic(bench.test_images("cifar-10", 5))
    assert mosaic.shape == (64, 96, 3) and (bench.tiles(mosaic, (5, 32, 32, 3)) == bench.test_images("cifar-10", 5)).all()


def test_a_flows_row_is_its_own_coding_beside_its_nll(data):
    """RealNVP's row codes every image with the flow (never xz), and its model cost is its
    NLL on these images."""
    images = measure.mnist_test("mnist", 6)
    row = bench.bbans_row(images, "realnvp")
    assert BBANS_KEYS <= row.keys() and row["model_bits_per_dim"] == row["nll_bits_per_dim"]
    assert row["card_nll_bits_per_dim"] == zoo.card("realnvp")["test_nll_bits_per_dim"]
    # six images: mostly start-up, far above the NLL, and above xz, which the row does not take
    assert row["bits_per_dim"] > row["nll_bits_per_dim"] and row["bits_per_dim"] > 8 * len(
        bench.BYTE_CODECS["xz -9e"][0](images.tobytes())) / images.size
