import io
import struct

import imagecodecs
import numpy as np
import pytest
from PIL import Image

from bbans import api, container, formats

rng = np.random.default_rng(0)


def npy(array, **kw):
    buf = io.BytesIO()
    np.save(buf, array, **kw)
    return buf.getvalue()


def png(pixels, mode="L"):
    buf = io.BytesIO()
    Image.fromarray(pixels, mode).save(buf, "PNG")
    return buf.getvalue()


def noise(*shape):
    return rng.integers(0, 256, shape, dtype=np.uint8)


IMAGES = noise(3, 28, 28)
ODD = noise(31, 33)
# name: (file, layout, images, shape of one, the pixels in order)
FILES = {
    "npy (N,28,28)": (npy(IMAGES), "npy", 3, (28, 28, 1), IMAGES),
    "npy (N,784)": (npy(IMAGES.reshape(3, 784)), "npy", 3, (28, 28, 1), IMAGES),
    "npy (28,28)": (npy(IMAGES[0]), "npy", 1, (28, 28, 1), IMAGES[0]),
    "npy (N,28,28,1)": (npy(IMAGES[..., None]), "npy", 3, (28, 28, 1), IMAGES),
    "npy (H,W)": (npy(ODD), "npy", 1, (31, 33, 1), ODD),
    "npy (N,H,W)": (npy(IMAGES[:, :27]), "npy", 3, (27, 28, 1), IMAGES[:, :27]),
    "npy (N,H,W,3)": (npy(IMAGES.reshape(4, 7, 28, 3)), "npy", 4, (7, 28, 3), IMAGES),
    "npy (N,1,1,4)": (npy(IMAGES.reshape(-1, 1, 1, 4)), "npy", 588, (1, 1, 4), IMAGES),
    "idx": (b"\x00\x00\x08\x03" + struct.pack(">III", 3, 28, 28) + IMAGES.tobytes(), "idx", 3, (28, 28, 1), IMAGES),
    "idx 7x4": (b"\x00\x00\x08\x03" + struct.pack(">III", 84, 7, 4) + IMAGES.tobytes(), "idx", 84, (7, 4, 1), IMAGES),
    "pgm": (b"P5\n28 84\n255\n" + IMAGES.tobytes(), "pgm", 3, (28, 28, 1), IMAGES),
    "pgm 33x31": (b"P5 33 31 255\n" + ODD.tobytes(), "pgm", 1, (31, 33, 1), ODD),
    "ppm 1000x7": (b"P6\n1000 7\n255\n" + noise(7, 1000, 3).tobytes(), "ppm", 1, (7, 1000, 3), None),
    "ppm 1x1": (b"P6 1 1 255\n\x01\x02\x03", "ppm", 1, (1, 1, 3), np.array([1, 2, 3], np.uint8)),
}


@pytest.mark.parametrize("name", FILES)
def test_byte_layouts_restore_exactly(name):
    data, layout, count, shape, pixels = FILES[name]
    images = formats.parse(data)
    assert (images.layout, len(images.pixels), images.shape) == (layout, count, shape)
    if pixels is not None:
        np.testing.assert_array_equal(images.pixels.ravel(), pixels.ravel())
    assert images.restore() == data
    assert formats.frame(layout, images.meta) == (count, shape)
    assert formats.frame(layout, images.meta[:-1]) is None


@pytest.mark.parametrize("pixels, mode, count, shape", [
    (IMAGES.reshape(84, 28), "L", 3, (28, 28, 1)), (ODD, "L", 1, (31, 33, 1)), (noise(1, 1), "L", 1, (1, 1, 1)),
    (noise(5, 28), "L", 1, (5, 28, 1)), (noise(9, 7, 2), "LA", 1, (9, 7, 2)), (noise(31, 33, 3), "RGB", 1, (31, 33, 3)),
    (noise(7, 1000, 4), "RGBA", 1, (7, 1000, 4))])
def test_png_restores_pixel_exact(pixels, mode, count, shape):
    images = formats.parse(png(pixels, mode))
    assert (images.layout, len(images.pixels), images.shape) == ("png", count, shape)
    restored = Image.open(io.BytesIO(images.restore()))
    assert restored.mode == mode
    np.testing.assert_array_equal(np.asarray(restored), pixels)


def palette_png():
    buf = io.BytesIO()
    Image.fromarray(noise(8, 8), "L").convert("P").save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize("data", [
    b"", b"hello", npy(IMAGES.astype(np.int16)), npy(np.zeros((0, 28, 28), np.uint8)), npy(np.zeros((2, 0, 3), np.uint8)),
    npy(np.zeros(10, np.uint8)), npy(np.zeros((1, 2, 2, 5), np.uint8)), npy(np.zeros((1, 1, 2, 2, 1), np.uint8)),
    npy(np.asfortranarray(IMAGES[0])), npy(IMAGES)[:-1], npy(IMAGES) + b"x", b"P5 28 28 65535\n" + bytes(2 * 784),
    b"P6 2 2 255\n" + bytes(11), palette_png(), imagecodecs.png_encode(np.zeros((4, 4), np.uint16)), rng.bytes(5000)])
def test_other_inputs_are_not_images(data):
    assert formats.parse(data) is None


def test_container_round_trip_and_errors():
    box = container.Container("bbans-vae", "npy", 123, b"s" * 32, 2, "vae-binary", b"h" * 16, b"f" * 16, b"meta",
                              b"payload")
    blob = box.to_bytes()
    assert container.read(blob) == box
    for bad, message in [(b"XBANS" + blob[5:], "not a .bbans"), (blob[:5] + bytes([container.VERSION + 1]) + blob[6:],
                                                                 f"version {container.VERSION + 1}"),
                         (blob[:40], "too short"), (blob[:len(blob) - len(box.payload) - 1], "truncated")]:
        with pytest.raises(container.FormatError, match=message):
            container.read(bad)


def test_version_1_containers_are_still_read():
    box = container.Container("bbans-vae", "npy", 123, b"s" * 32, 2, "vae-binary", b"h" * 16, b"f" * 16, b"meta",
                              b"payload")
    blob = box.to_bytes()
    fixed = container.FIXED.size  # version 1 has no fingerprint after the fixed fields
    v1 = blob[:5] + b"\x01" + blob[6:fixed] + blob[fixed + container.FINGERPRINT:]
    assert container.read(v1) == container.Container(**{**box.__dict__, "fingerprint": b"", "version": 1})


def test_a_method_is_refused_in_versions_before_it_existed():
    """Bit-Swap files came with version 3, stored ones with version 6, flow ones with 9: a
    header that claims one in an earlier version (one flipped bit of the version byte) is corrupt."""
    stored = api.compress(bytes((i * 167 + 13) % 256 for i in range(200)))[0]
    bitswap = container.Container("bbans-bitswap", "npy", 123, b"s" * 32, 2, "hvae-binary", b"h" * 16, b"f" * 16,
                                  b"meta", b"payload").to_bytes()
    flow = container.Container("bbans-flow", "npy", 123, b"s" * 32, 2, "realnvp", b"h" * 16, b"f" * 16, b"meta",
                               b"payload").to_bytes()
    for blob, versions in ((stored, range(1, 6)), (bitswap, (1, 2)), (flow, range(1, 9))):
        assert container.read(blob).version == container.VERSION
        for version in versions:
            with pytest.raises(container.FormatError, match="unknown method"):
                container.read(blob[:5] + bytes([version]) + blob[6:])
