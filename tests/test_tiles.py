"""Images of any size in a model's tiles (bbans.tiles) and large images in bands of rows
(bbans.chunks): exact round trips of every input kind at odd sizes, the tiles' padding
never coded, band counts a decoder can read back, and refusals of what does not fit."""
import io
from collections import Counter

import imagecodecs
import numpy as np
import pytest
from hypothesis import given, strategies as st
from PIL import Image

from bbans import api, chunks, container, formats, messages, tiles
from bbans.codecs import new_message
from bbans.codecs.colour import lines
from bbans.codecs.pixels import wavefronts
from bbans.codecs.vae import VAECodec
from bbans.errors import BbansError
from bbans.measure import npy_bytes
from conftest import images_for
from test_colour import SIDE, colour_model, images  # noqa: F401 (a fixture)

ODD = [(1, 1), (31, 33), (1000, 7)]  # the sizes the issue names


@pytest.mark.parametrize("shape", [(1, 1, 3), (31, 33, 3), (1000, 7, 1), (64, 96, 4), (32, 32, 3)])
def test_cut_and_paste_invert_each_other(shape):
    x = np.random.default_rng(0).integers(0, 256, (3, int(np.prod(shape))), dtype=np.uint8)
    groups = tiles.cut(x, shape, 32)
    np.testing.assert_array_equal(tiles.paste([t for _, t in groups], 3, shape, 32), x)
    assert sum(len(t) * h * w for (h, w), t in groups) == 3 * shape[0] * shape[1]  # each pixel in one tile
    for (h, w), t in groups:  # the rest of a tile is zero
        assert not t.reshape(-1, 32, 32, shape[2])[:, h:].any() and not t.reshape(-1, 32, 32, shape[2])[:, :, w:].any()


@pytest.mark.parametrize("valid", [(1, 1), (1, 8), (8, 1), (3, 5), (8, 8)])
def test_the_lines_of_a_part_cover_it_once(valid):
    order = np.full(SIDE * SIDE, -1)
    for t, idx in enumerate(lines(SIDE, valid)):
        assert len(idx) and (order[idx] == -1).all()
        order[idx] = t
    i, j = np.divmod(np.arange(SIDE * SIDE), SIDE)
    assert ((order >= 0) == ((i < valid[0]) & (j < valid[1]))).all()


@pytest.mark.parametrize("valid", [(1, 1), (28, 3), (5, 28)])
def test_the_diagonals_of_a_part_cover_it_once(valid):
    covered = np.concatenate(wavefronts(28, 1, valid))
    i, j = np.divmod(covered, 28)
    assert len(set(covered)) == len(covered) == valid[0] * valid[1] and (i < valid[0]).all() and (j < valid[1]).all()


@pytest.mark.parametrize("valid", [(1, 1), (28, 3), (5, 28), (13, 17)])
def test_parts_of_grey_tiles_round_trip_and_decode_zeros_beyond(tiny_model, valid):
    vae, model = tiny_model
    x = images_for(vae.likelihood, 9, seed=4).reshape(9, 28, 28)
    x[:, valid[0]:], x[:, :, valid[1]:] = 0, 0
    codec = VAECodec(model, largest_batch=4, valid=valid)
    np.testing.assert_array_equal(codec.decode(codec.encode(x.reshape(9, -1)), 9), x.reshape(9, -1))


@pytest.mark.parametrize("valid", [(1, 1), (1, 8), (8, 1), (5, 3)])
def test_parts_of_colour_tiles_round_trip(colour_model, valid):
    _, model = colour_model
    x = images(20, seed=5).reshape(20, SIDE, SIDE, 3)
    x[:, valid[0]:], x[:, :, valid[1]:] = 0, 0
    codec = VAECodec(model, largest_batch=8, valid=valid)
    np.testing.assert_array_equal(codec.decode(codec.encode(x.reshape(20, -1)), 20), x.reshape(20, -1))


def test_a_part_costs_its_own_pixels_alone(colour_model):
    """The coder counts and codes a tile's filled part alone: the zeros beyond it, which a
    whole tile would pay for, cost nothing."""
    _, model = colour_model
    x = images(40, seed=6).reshape(40, SIDE, SIDE, 3)
    x[:, 3:], x[:, :, 5:] = 0, 0
    costs, message = Counter(), new_message()
    VAECodec(model, valid=(3, 5)).push_images(message, x.reshape(40, -1), 0, costs)
    assert costs["dims"] == costs["images"] * 3 * 5 * 3
    assert 2 * len(message.get_compressed()) < len(VAECodec(model).encode(x.reshape(40, -1)))


def mosaic(data_images: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """The images (n, s, s, c) laid out rows x cols, as one image."""
    s, c = data_images.shape[1], data_images.shape[3]
    return data_images[:rows * cols].reshape(rows, cols, s, s, c).transpose(0, 2, 1, 3, 4).reshape(rows * s, cols * s, c)


@pytest.fixture(scope="module")
def cifar_mosaic(data):
    from bbans.models.data import load_images
    return mosaic(load_images("cifar-10", "test")[::97], 10, 10)  # 320x320x3


@pytest.fixture(scope="module")
def mnist_mosaic(data):
    from bbans.models.data import load_images
    return mosaic(load_images("mnist", "test")[::89, ..., None], 4, 6)  # 112x168


@pytest.mark.parametrize("name, shape", [("vae-cifar", (31, 33, 3)), ("vae-cifar", (1, 1, 3)), ("vae-cifar", (1000, 7, 3)),
                                         ("vae-8bit-sparse-wide", (31, 33, 1)), ("vae-fashion-flowq", (1, 40, 1)),
                                         ("hvae-binary", (29, 57, 1)), ("vae-binary", (5, 3, 1))])
def test_the_models_round_trip_images_of_odd_sizes(data, cifar_mosaic, mnist_mosaic, name, shape):
    source = cifar_mosaic if shape[2] == 3 else mnist_mosaic
    x = scene(source, 2 * shape[0], shape[1])
    if "binary" in name:
        x = (x > 127).astype(np.uint8)
    x = x.reshape(2, -1)
    payload = messages.encode(name, x, shape=shape)
    method = messages.METHODS[messages.zoo.kind(name)]
    np.testing.assert_array_equal(messages.decode(method, name, payload, 2, container.VERSION, shape), x)


def scene(source: np.ndarray, height: int, width: int) -> np.ndarray:
    """An image (height, width, c) cut from `source` and its mirror images (no run of its
    bytes repeats another, as np.resize's would)."""
    flipped = np.concatenate([source, source[:, ::-1]], 1)
    tall = np.concatenate([flipped, flipped[::-1]])
    reps = (-(-height // len(tall)), -(-width // tall.shape[1]), 1)
    return np.ascontiguousarray(np.tile(tall, reps)[:height, :width])


def png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels.squeeze(-1) if pixels.shape[-1] == 1 else pixels).save(out, "PNG")
    return out.getvalue()


def input_file(kind: str, x: np.ndarray) -> bytes:
    """The file of one image x (h, w, c) (two for npy) of that kind."""
    h, w, c = x.shape
    if kind == "npy":
        return npy_bytes(np.stack([x, 255 - x]).squeeze(-1) if c == 1 else np.stack([x, 255 - x]))
    if kind == "pnm":
        return f"P{5 if c == 1 else 6} {w} {h} 255\n".encode() + x.tobytes()
    return png(x)


@pytest.mark.parametrize("size", ODD)
@pytest.mark.parametrize("kind, channels", [("npy", 1), ("npy", 3), ("npy", 4), ("png", 1), ("png", 2), ("png", 3),
                                            ("png", 4), ("pnm", 1), ("pnm", 3)])
def test_every_input_kind_round_trips_at_odd_sizes(data, cifar_mosaic, kind, channels, size):
    x = scene(cifar_mosaic[..., :min(channels, 3)], *size)
    if channels in (2, 4):  # an alpha channel
        x = np.concatenate([x[..., :channels - 1], 255 - x[..., :1]], -1)
    data_in = input_file(kind, np.ascontiguousarray(x))
    blob, report = api.compress(data_in)
    restored = api.decompress(blob)[0]
    if kind == "png" and report["method"] not in ("xz", "stored"):
        np.testing.assert_array_equal(imagecodecs.png_decode(restored).reshape(x.shape), x)
        assert api.info(blob)["restores"] == "pixel-exact PNG"
    else:
        assert restored == data_in
    if report["method"] not in ("pixels", "xz", "stored"):  # a model's: grey and RGB images alone
        assert channels in (1, 3) and report["chunk_codecs"]


def test_a_cifar_mosaic_goes_to_the_model_and_beats_jpeg_xl(data, cifar_mosaic):
    crop = np.ascontiguousarray(cifar_mosaic[:301, :317])
    blob, report = api.compress(png(crop))
    assert (report["method"], report["model"], report["chunk_codecs"]) == ("bbans-vae", "vae-cifar", {"vae-cifar": 1})
    assert len(blob) < len(imagecodecs.jpegxl_encode(crop, lossless=True, effort=9))
    np.testing.assert_array_equal(imagecodecs.png_decode(api.decompress(blob)[0]), crop)
    assert api.info(blob)["image_shape"] == [301, 317, 3]


def test_an_mnist_mosaic_goes_to_a_grey_model(data, mnist_mosaic):
    crop = b"P5 150 101 255\n" + np.ascontiguousarray(mnist_mosaic[:101, :150]).tobytes()
    blob, report = api.compress(crop)
    assert report["method"] == "bbans-vae" and report["chunk_codecs"] == {report["model"]: 1}
    assert api.decompress(blob)[0] == crop


@pytest.fixture()
def small_bands(monkeypatch):
    """Chunks of 224 rows of 100 RGB pixels, so that small images go in bands."""
    monkeypatch.setattr(chunks, "CHUNK_BYTES", chunks.BAND_STEP * 100 * 3)


@pytest.mark.parametrize("kind", ["npy", "png"])
def test_a_large_image_goes_in_bands_that_decode_anywhere(data, cifar_mosaic, small_bands, kind):
    x = scene(cifar_mosaic, 500, 100)
    data_in = input_file(kind, x)
    seen = []
    blob, report = api.compress(data_in, progress=lambda done, n, bits, dims: seen.append(dims))
    assert report["chunks"] == (6 if kind == "npy" else 3) and api.info(blob)["chunks"] == report["chunks"]
    assert seen == sorted(seen) and seen[-1] == x.size * (2 if kind == "npy" else 1)
    for workers in (1, 2):
        restored = api.decompress(blob, workers=workers)[0]
        if kind == "png":
            np.testing.assert_array_equal(imagecodecs.png_decode(restored), x)
        else:
            assert restored == data_in


def test_a_chunk_table_short_of_a_band_is_refused(data, cifar_mosaic, small_bands):
    blob, _ = api.compress(npy_bytes(scene(cifar_mosaic, 500, 100)[None]))
    box = container.read(blob)
    parts = chunks.unpack(box.payload, box.images, box.version)
    assert len(parts) == 3
    box.payload = chunks.pack(parts[:2])  # two bands of 448 rows: not the pixels coded
    with pytest.raises(BbansError, match="checksum mismatch|corrupt"):
        api.decompress(box.to_bytes())
    box.payload = chunks.pack(parts[:1] * 5)  # five bands of 224 rows would not cover 500 in that many
    with pytest.raises(BbansError, match="corrupt chunk table"):
        api.decompress(box.to_bytes())


@given(st.integers(1, 20_000), st.integers(1, 12))
def test_a_band_count_gives_back_rows_that_make_it(height, step_rows):
    count = -(-height // (chunks.BAND_STEP * step_rows))
    rows = chunks.band_rows(height, count)
    assert rows is not None and -(-height // rows) == count and rows <= max(height, chunks.BAND_STEP * step_rows)


def test_a_model_of_other_channels_is_refused():
    with pytest.raises(BbansError, match=r"codes images of 32x32x3 \(or of any size with its channels\), and these "
                                         "are 31x33 grey"):
        api.compress(npy_bytes(np.zeros((1, 31, 33), np.uint8)), model="vae-cifar")
    with pytest.raises(BbansError, match="codes images of 28x28 grey, and these are 40x40 grey"):
        api.compress(npy_bytes(np.zeros((1, 40, 40), np.uint8)), model="vqvae-8bit")


def test_a_header_claiming_a_huge_image_is_refused_before_decoding(data, cifar_mosaic):
    """A PNG's meta that says 60000x60000 would have the decoder size its tiles for 10 GB."""
    blob, _ = api.compress(png(np.ascontiguousarray(cifar_mosaic[:40, :45])))
    box = container.read(blob)
    assert box.method == "bbans-vae"
    box.meta = formats.IMAGE_META.pack(60000, 60000, 3)
    with pytest.raises(BbansError, match="corrupt"):
        api.decompress(box.to_bytes())
