"""A choice per chunk: each chunk of images goes to the model or to a classical codec,
whichever is smaller, and comes back exactly either way."""
import zlib

import numpy as np
import pytest
from click.testing import CliRunner

from bbans import api, chunks, classical, container
from bbans.cli import main
from bbans.errors import BbansError
from bbans.measure import mnist_test, npy_bytes

BLANK = np.zeros((100, 28, 28), np.uint8)
STRIPES = np.tile((np.arange(28) * 9 % 256).astype(np.uint8), (100, 28, 1))


@pytest.mark.parametrize("codec", sorted(classical.CODECS))
@pytest.mark.parametrize("n, shape", [(1, (28, 28, 1)), (70, (28, 28, 1)), (1, (1, 1, 1)), (3, (31, 33, 2)), (1, (1, 1, 3)),
                                      (2, (7, 1000, 3)), (5, (32, 32, 4))])
def test_every_classical_codec_restores_a_chunk_exactly(codec, n, shape):
    if not classical.CODECS[codec][4](n, shape):
        assert classical.CODECS[codec][0] == "webp" and shape[2] < 3  # WebP takes RGB and RGBA alone
        return
    pixels = np.random.default_rng(n).integers(0, 256, (n, int(np.prod(shape))), dtype=np.uint8)
    pixels[:, :pixels.shape[1] // 3] = 0
    if shape[2] == 4 and n == 5:  # an alpha channel opaque throughout, which libwebp drops
        pixels.reshape(-1, 4)[:, 3] = 255
    for encode in classical.CODECS[codec][1:3]:
        payload = with_crc(encode(pixels, shape))
        assert (classical.decode(codec, payload, n, shape) == pixels).all()
    with pytest.raises(BbansError, match="corrupt payload"):  # another count of images than it holds
        classical.decode(codec, payload, n + 1, shape)
    for flipped in (payload[:-1] + bytes([payload[-1] ^ 1]), payload[:2] + bytes([payload[2] ^ 4]) + payload[3:]):
        with pytest.raises(BbansError, match="CRC"):
            classical.decode(codec, flipped, n, shape)


@pytest.mark.parametrize("codec", sorted(classical.CODECS))
def test_noise_in_narrow_images_codes_with_every_codec(codec):
    # a stream larger than its pixels: imagecodecs' own PNG buffer was too small for it
    n, shape = 31, (33, 3, 1)
    pixels = np.random.default_rng(0).integers(0, 256, (n, 99), dtype=np.uint8)
    if classical.CODECS[codec][4](n, shape):
        for encode in classical.CODECS[codec][1:3]:
            assert (classical.decode(codec, with_crc(encode(pixels, shape)), n, shape) == pixels).all()


def with_crc(stream: bytes) -> bytes:
    return classical.CRC.pack(zlib.crc32(stream)) + stream


def test_a_chunk_goes_to_whichever_codec_is_smaller():
    pixels = BLANK.reshape(100, 784)
    shape = (28, 28, 1)
    assert classical.choose(pixels, shape, b"m" * 10) == (0, b"m" * 10)  # a model message no codec beats
    codec, payload = classical.choose(pixels, shape, b"m" * 100_000)
    assert codec in classical.CODECS and len(payload) < 100_000
    assert (classical.decode(codec, payload, 100, shape) == pixels).all()
    assert classical.choose(pixels, shape) == (codec, payload)  # no model: the smallest classical codec


def test_a_file_of_digits_and_of_what_no_model_knows_codes_each_chunk_its_own_way(data, monkeypatch):
    images = np.concatenate([mnist_test("mnist", 100), BLANK, STRIPES])
    original = npy_bytes(images)
    model = "vae-8bit-sparse-wide"  # the default, probed on the blank and striped images too, would be vae-fashion-flowq
    blob, report = api.compress(original, model=model, chunk_images=100)
    assert report["method"] == "bbans-vae" and report["chunk_codecs"][model] == 1 and sum(report["chunk_codecs"].values()) == 3
    assert api.info(blob)["chunk_codecs"] == report["chunk_codecs"]
    for workers in (1, 2):
        assert api.decompress(blob, workers=workers)[0] == original
    monkeypatch.setattr(classical, "choose", lambda pixels, shape, message: (0, message))  # every chunk to the model
    model_only = api.compress(original, model=model, chunk_images=100)[0]
    assert len(blob) < min(len(model_only) / 10, len(classical.xz(original)))  # than either alone


def test_the_test_sets_stay_with_their_models(data):
    for variant in ("mnist-binarized", "mnist", "fashion-mnist"):
        report = api.compress(npy_bytes(mnist_test(variant, 1000)))[1]
        assert list(report["chunk_codecs"]) == [report["model"]], variant


def test_a_chunk_table_with_an_unknown_codec_or_a_codec_before_version_6_is_refused(data):
    blob = api.compress(npy_bytes(np.concatenate([mnist_test("mnist", 100), BLANK])), chunk_images=100)[0]
    box = container.read(blob)
    parts = chunks.unpack(box.payload, box.images, box.version)
    assert [p.codec for p in parts][0] == 0 and parts[1].codec in classical.CODECS
    parts[1].codec = 99
    bad = container.Container(**{**box.__dict__, "payload": chunks.pack(parts)}).to_bytes()
    with pytest.raises(BbansError, match="unknown codec"):
        api.decompress(bad)
    with pytest.raises(BbansError, match="chunk table"):
        chunks.unpack(box.payload, box.images, 5)


def test_the_report_line_says_where_the_chunks_went(data, tmp_path):
    np.save(tmp_path / "mixed.npy", np.concatenate([mnist_test("mnist", 100), BLANK]))
    result = CliRunner().invoke(main, ["compress", str(tmp_path / "mixed.npy"), "--chunk-images", "100"])
    assert result.exit_code == 0 and ", chunks: 1 vae-8bit-sparse-wide, 1 " in result.output
    info = CliRunner().invoke(main, ["info", str(tmp_path / "mixed.npy.bbans")]).output
    assert "chunk_codecs" in info and "vae-8bit-sparse-wide" in info


def test_the_report_warns_of_chunks_the_model_lost_and_of_a_rate_far_above_its_test_rate(data, tmp_path):
    digits = mnist_test("mnist", 200)
    report = api.compress(npy_bytes(digits), model="vae-8bit-sparse-wide")[1]
    assert report["warnings"] == []  # its own data: nothing to say
    inverted = 255 - digits[100:]  # a negative: not what the model was trained on
    report = api.compress(npy_bytes(np.concatenate([digits[:100], inverted])), model="vae-8bit-sparse-wide",
                          chunk_images=100)[1]
    lost, far = report["warnings"]
    assert "vae-8bit-sparse-wide coded 1 of 2 chunks larger than a classical codec" in lost and "1 to " in lost
    assert "times its rate on its test set" in far and report["neg_elbo_bits_per_dim"] > api.FAR * \
        report["test_neg_elbo_bits_per_dim"]
    assert api.compress(npy_bytes(BLANK[:3]))[1]["warnings"] == [
        "the whole file went to xz, smaller than model hvae-binary's chunks"]  # blank: binary
    np.save(tmp_path / "mixed.npy", np.concatenate([digits[:100], BLANK]))
    runner = CliRunner()
    result = runner.invoke(main, ["compress", str(tmp_path / "mixed.npy"), "--chunk-images", "100"])
    assert result.exit_code == 0 and result.stderr.startswith("bbans: warning: model vae-8bit-sparse-wide coded 1 of 2")
    result = runner.invoke(main, ["compress", "-q", "-f", str(tmp_path / "mixed.npy"), "--chunk-images", "100"])
    assert result.exit_code == 0 and result.stderr == result.stdout == ""


def test_webp_takes_colour_columns_within_its_size_limit_alone():
    assert classical._webp_fits(511, (32, 32, 3)) and classical._webp_fits(1, (16383, 16383, 4))
    assert not classical._webp_fits(512, (32, 32, 3)) and not classical._webp_fits(1, (10, 16384, 3))
    assert not classical._webp_fits(1, (32, 32, 1)) and not classical._webp_fits(1, (32, 32, 2))


def test_a_column_taller_than_libpng_takes_goes_to_the_other_codecs(monkeypatch):
    """425 images of 6144x3 make a column of 2.6 million rows, beyond libpng's limit."""
    assert classical._png_fits(1, (1_000_000, 7, 3)) and not classical._png_fits(425, (6144, 3, 1))
    monkeypatch.setattr(classical, "PNG_SIDE", 100)  # so that a small column is too tall
    pixels = np.tile(np.arange(18, dtype=np.uint8), (400, 1))  # 400 images of 6 x 3: 2,400 rows
    codec, payload = classical.choose(pixels, (6, 3, 1))
    assert classical.name(codec, "") != "png"
    assert classical.decode(codec, payload, 400, (6, 3, 1)).tobytes() == pixels.tobytes()


def test_a_slow_codec_is_weighed_against_the_model_not_the_best_classical_stream(monkeypatch):
    """Where the model loses, JPEG-XL is tried in full even after WebP's stream came out
    below JPEG-XL's estimate (color.png: WebP's 57,414 bytes against JPEG-XL's 48,395)."""
    fakes = {c: (name, lambda x, shape, out=out: out, None, None, lambda n, shape: True)
             for c, name, out in [(2, "jpeg-xl", b"j" * 80), (4, "webp", b"w" * 95)]}
    monkeypatch.setattr(classical, "CODECS", fakes)
    monkeypatch.setattr(classical, "_estimate", lambda c, pixels, shape: {2: 100, 4: 90}[c])
    pixels = np.zeros((1, classical.SAMPLE_BYTES + 1), np.uint8)
    assert classical.choose(pixels, (1, classical.SAMPLE_BYTES + 1, 1), b"m" * 1000)[0] == 2


def test_a_large_image_is_estimated_from_strips_of_its_rows(monkeypatch):
    """JPEG-XL's estimate for one large image codes a sample of its rows, not all of it,
    and comes out near its quick setting's stream for the whole image."""
    rng = np.random.default_rng(5)
    image = (np.indices((1200, 800)).sum(0)[..., None] + rng.integers(0, 8, (1200, 800, 3))).astype(np.uint8)
    name, full, quick, *rest = classical.CODECS[2]
    seen = []
    monkeypatch.setitem(classical.CODECS, 2, (name, full, lambda x, shape: seen.append(shape) or quick(x, shape), *rest))
    estimate = classical._estimate(2, image.reshape(1, -1), image.shape)
    assert len(seen) == 1 and seen[0][0] * 2 < 1200
    assert abs(estimate / len(quick(image.reshape(1, -1), image.shape)) - 1) < 0.25


def test_a_small_chunk_tries_jpeg_xl_in_full_wherever_its_estimate_is_near_the_model(monkeypatch):
    """A chunk of a small image is estimated at effort 7 on the whole of it, a few percent
    over effort 9: JPEG-XL must be tried even where that estimate is just above the model's
    message (a 225x150 crop of chelsea.png went to vae-cifar, 4.6% over JPEG-XL e9)."""
    fakes = {2: ("jpeg-xl", lambda x, shape: b"j" * 900, None, None, lambda n, shape: True)}
    monkeypatch.setattr(classical, "CODECS", fakes)
    monkeypatch.setattr(classical, "_estimate", lambda c, pixels, shape: 980)
    small = np.zeros((1, classical.SAMPLE_BYTES + 1), np.uint8)
    assert classical.choose(small, (1, small.shape[1], 1), b"m" * 1000)[0] == 2
    large = np.zeros((1, classical.STRIPS * classical.SLOW_SAMPLE_BYTES + 1), np.uint8)
    assert classical.choose(large, (1, large.shape[1], 1), b"m" * 1000)[0] == 0  # not worth e9's time


def test_a_tiny_rgb_image_gets_webps_full_effort_where_its_quick_stream_loses_by_a_few_bytes():
    """A 100x100 grey chessboard as RGB, squares of 25 with soft edges (like the centre of
    scikit-image's): xz's stream is a few bytes below WebP's method 3, method 6's a third
    below both; the chunk must get method 6's."""
    i = np.arange(100)
    white = np.add.outer(i // 25, i // 25) % 2 == 0
    edges = (i % 25 == 0)[:, None].astype(int) + (i % 25 == 0)[None, :]
    grey = np.where(white, np.array([255, 205, 175])[edges], np.array([0, 50, 80])[edges]).astype(np.uint8)
    board = np.repeat(grey[..., None], 3, -1)
    pixels = board.reshape(1, -1)
    codec, payload = classical.choose(pixels, board.shape)
    assert classical.CODECS[codec][0] == "webp"
    assert payload[classical.CRC.size:] == classical.CODECS[codec][1](pixels, board.shape)


def test_a_small_chunk_runs_webp_at_full_effort_only_where_its_quick_stream_comes_close(monkeypatch):
    """In a chunk no larger than a sample, WebP's method 3 stream is a candidate of its own,
    and method 6 (some 200 times slower, rarely 5% smaller) runs only where method 3
    comes within QUICK_GAIN of the smallest stream so far; JPEG-XL e9 always runs (it
    can come 12% below its effort 7)."""
    calls = []

    def fake(name, full, quick):
        return (name, lambda x, shape: calls.append(name) or full, lambda x, shape: quick, None, lambda n, shape: True)

    small = np.zeros((1, classical.SAMPLE_BYTES), np.uint8)
    for webp_quick, ran, stream in [(b"w" * 1000, ["jpeg-xl"], b"j" * 850), (b"w" * 880, ["jpeg-xl", "webp"], b"w" * 800),
                                    (b"w" * 700, ["jpeg-xl", "webp"], b"w" * 700)]:
        monkeypatch.setattr(classical, "CODECS", {2: fake("jpeg-xl", b"j" * 850, b"j" * 900),
                                                  4: fake("webp", b"w" * 800, webp_quick)})
        calls.clear()
        codec, payload = classical.choose(small, (1, small.shape[1], 1), b"m" * 2000)
        assert sorted(calls) == ran and (codec, payload[classical.CRC.size:]) == (2 if stream[:1] == b"j" else 4, stream)
