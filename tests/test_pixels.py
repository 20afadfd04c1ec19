"""Images no model codes (other sizes, colour, alpha): decoded to their pixels and coded
with the classical image codecs chunk by chunk, restored exactly (npy, idx, PGM, PPM byte
for byte, PNG pixel for pixel)."""
import io
import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import bbans
from bbans import api, chunks, classical, container
from bbans.cli import main
from bbans.errors import BbansError
from benchmarks.faults import pixels_file

rng = np.random.default_rng(3)


def smooth(*shape):
    """Images a classical codec shrinks far below xz on their file (a gradient, a little noise)."""
    grid = np.indices(shape).sum(0) * 3 % 256
    return (grid + rng.integers(0, 3, shape)).astype(np.uint8)


def npy(array):
    out = io.BytesIO()
    np.save(out, array)
    return out.getvalue()


def png(pixels):
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG")
    return out.getvalue()


def png_pixels(data):
    return np.asarray(Image.open(io.BytesIO(data)))


INPUTS = {  # name: (file, images, shape of one)
    "npy (N,H,W,3)": (npy(smooth(40, 32, 30, 3)), 40, [32, 30, 3]),
    "npy (N,H,W,4)": (npy(smooth(6, 31, 33, 4)), 6, [31, 33, 4]),
    "npy (N,H,W)": (npy(smooth(300, 32, 32)), 300, [32, 32, 1]),
    "npy (H,W) 1000x7": (npy(smooth(1000, 7)), 1, [1000, 7, 1]),
    "pgm 31x33": (b"P5\n33 31\n255\n" + smooth(31, 33).tobytes(), 1, [31, 33, 1]),
    "ppm": (b"P6 120 80 255\n" + smooth(80, 120, 3).tobytes(), 1, [80, 120, 3]),
}
PNGS = {"grey": smooth(64, 90), "grey+alpha": smooth(40, 50, 2), "rgb": smooth(70, 64, 3), "rgba": smooth(33, 31, 4)}


@pytest.mark.parametrize("name", INPUTS)
def test_image_files_of_any_shape_go_to_the_image_codecs_and_come_back_byte_for_byte(name):
    data, n, shape = INPUTS[name]
    blob, report = api.compress(data)
    assert (report["method"], report["n_images"], report["image_shape"]) == ("pixels", n, shape)
    assert set(report["chunk_codecs"]) <= {"xz", "jpeg-xl", "png"} and len(blob) < len(classical.xz(data))
    assert report["n_dims"] == n * np.prod(shape)
    info = api.info(blob)
    assert (info["restores"], info["image_shape"], info["chunk_codecs"]) == ("byte-exact", shape, report["chunk_codecs"])
    assert api.decompress(blob)[0] == data


@pytest.mark.parametrize("mode", PNGS)
def test_pngs_of_any_shape_and_mode_come_back_pixel_for_pixel(mode):
    pixels = PNGS[mode]
    data = png(pixels)
    blob, report = api.compress(data)
    assert report["method"] == "pixels" and api.info(blob)["restores"] == "pixel-exact PNG"
    restored = api.decompress(blob)[0]
    assert Image.open(io.BytesIO(restored)).mode == Image.open(io.BytesIO(data)).mode
    np.testing.assert_array_equal(png_pixels(restored), pixels)


def test_a_tiny_image_is_never_made_larger_than_its_file_and_a_header():
    data = png(np.zeros((1, 1, 3), np.uint8))
    blob = api.compress(data)[0]
    assert len(blob) <= len(data) + api.STORED_HEADER
    assert np.array_equal(png_pixels(api.decompress(blob)[0]), np.zeros((1, 1, 3), np.uint8))


def test_large_images_are_chunked_by_bytes_and_any_worker_count_gives_the_same_file(monkeypatch):
    monkeypatch.setattr(chunks, "CHUNK_BYTES", 8 * 1024)  # eight 32x32 images to a chunk, not 7,656
    data = npy(smooth(20, 32, 32))
    blob, report = api.compress(data, chunk_images=20)  # capped: chunks hold at most CHUNK_BYTES
    assert report["chunks"] == 3 and api.compress(data)[1]["chunks"] == 3
    assert api.compress(data, workers=2)[0] == blob
    for workers in (1, 2):
        assert api.decompress(blob, workers=workers)[0] == data


def test_the_public_api_takes_and_gives_colour_arrays():
    images = smooth(10, 30, 32, 3)
    blob, report = bbans.compress_with_report(images)
    assert report.method == "pixels" and report.bits_per_dim == 8 * len(blob) / images.size
    np.testing.assert_array_equal(bbans.decompress(blob), images)
    one = smooth(4, 5, 3)
    np.testing.assert_array_equal(bbans.decompress(pixels_file(b"P6 5 4 255\n" + one.tobytes())), one[None])


def test_the_command_line_reports_the_codecs_and_a_model_is_refused(tmp_path):
    path = tmp_path / "photo.png"
    path.write_bytes(png(PNGS["rgb"]))
    result = CliRunner().invoke(main, ["compress", str(path)])
    assert result.exit_code == 0, result.output
    assert ": pixels," in result.output and "chunks: 1 " in result.output
    result = CliRunner().invoke(main, ["info", str(path) + ".bbans", "--json"])
    assert json.loads(result.output)["image_shape"] == [70, 64, 3]
    out = tmp_path / "back.png"
    assert CliRunner().invoke(main, ["decompress", str(path) + ".bbans", "-o", str(out)]).exit_code == 0
    np.testing.assert_array_equal(png_pixels(out.read_bytes()), PNGS["rgb"])
    result = CliRunner().invoke(main, ["compress", str(path), "--model", "vae-8bit", "-f"])
    assert result.exit_code == 1 and "28x28 grey" in result.output


def corrupt(blob: bytes, **fields) -> bytes:
    box = container.read(blob)
    return container.Container(**{**box.__dict__, **fields}).to_bytes()


def test_a_pixels_file_whose_chunks_or_header_do_not_fit_is_refused(monkeypatch):
    data = npy(smooth(6, 4, 5, 3))
    blob = pixels_file(data, chunk_images=3)
    assert api.decompress(blob)[0] == data
    box = container.read(blob)
    parts = chunks.unpack(box.payload, box.images, box.version)
    model_chunk = [chunks.Chunk(p.images, p.payload, p.sha256, 0) for p in parts]
    for bad, message in [(corrupt(blob, payload=chunks.pack(model_chunk)), "chunk table"),
                         (corrupt(blob, meta=npy(np.zeros((6, 4, 5, 4), np.uint8))[:len(box.meta)]), "corrupt header"),
                         (corrupt(blob, meta=npy(np.zeros((6, 28, 28), np.uint8))[:128]), "corrupt header"),
                         (corrupt(blob, images=5), "corrupt header")]:
        with pytest.raises(BbansError, match=message):
            api.decompress(bad)
    monkeypatch.setattr(chunks, "CHUNK_BYTES", 100)
    big = smooth(2, 10, 40)  # images larger than CHUNK_BYTES: one to a chunk, whatever the table says
    blob = pixels_file(npy(big))
    box = container.read(blob)
    parts = chunks.unpack(box.payload, box.images, box.version)
    whole = chunks.Chunk(2, parts[0].payload + parts[1].payload, chunks.pixel_sha(big), parts[0].codec)
    with pytest.raises(BbansError, match="too large"):
        api.decompress(corrupt(blob, payload=chunks.pack([whole])))


def jpeg(pixels, **options):
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", **options)
    return out.getvalue()


@pytest.mark.parametrize("options", [dict(quality=90), dict(quality=75, progressive=True), dict(quality=95, subsampling=0)])
def test_a_jpeg_is_recoded_by_jpeg_xl_and_comes_back_byte_for_byte(options):
    data = jpeg(smooth(200, 300, 3) ^ rng.integers(0, 40, (200, 300, 3), dtype=np.uint8), **options)
    blob, report = api.compress(data)
    assert report["method"] == "jpeg-recoded" and len(blob) < 0.95 * len(data)
    assert api.decompress(blob)[0] == data and api.info(blob)["restores"] == "byte-exact"
    payload = container.read(blob).payload
    for bad in (payload[:-1], payload[:9] + bytes([payload[9] ^ 2]) + payload[10:]):
        with pytest.raises(BbansError, match="recoded JPEG"):
            classical.restore_jpeg(bad, len(data))
    assert classical.restore_jpeg(payload, len(data)) == data
    with pytest.raises(BbansError, match="size"):
        classical.restore_jpeg(payload, len(data) + 1)


def test_what_is_not_a_jpeg_jpeg_xl_takes_is_not_recoded():
    assert classical.recode_jpeg(png(PNGS["rgb"])) is None
    assert classical.recode_jpeg(b"\xff\xd8\xff" + bytes(300)) is None  # a JPEG's start and nothing after
    assert api.compress(b"\xff\xd8\xff" + bytes(300))[1]["method"] == "xz"


def test_cifar_10_loads_from_the_data_folder_and_goes_to_its_model(data):
    from bbans.models.data import load_images
    images = load_images("cifar-10", "test")
    assert images.shape == (10_000, 32, 32, 3) and images.dtype == np.uint8
    blob, report = bbans.compress_with_report(images[:50])
    assert (report.method, report.model) == ("bbans-vae", "vae-cifar") and report.bits_per_dim < 8 * len(classical.xz(images[:50].tobytes())) / images[:50].size
    np.testing.assert_array_equal(bbans.decompress(blob), images[:50])
