import io
import struct

import numpy as np
import pytest
from PIL import Image

from bbans import api, container, formats

rng = np.random.default_rng(0)


def npy(array, **kw):
    buf = io.BytesIO()
    np.save(buf, array, **kw)
    return buf.getvalue()


def png(pixels):
    buf = io.BytesIO()
    Image.fromarray(pixels, "L").save(buf, "PNG")
    return buf.getvalue()


IMAGES = rng.integers(0, 256, (3, 28, 28), dtype=np.uint8)
FILES = {
    "npy (N,28,28)": (npy(IMAGES), "npy"),
    "npy (N,784)": (npy(IMAGES.reshape(3, 784)), "npy"),
    "npy (28,28)": (npy(IMAGES[0]), "npy"),
    "idx": (b"\x00\x00\x08\x03" + struct.pack(">III", 3, 28, 28) + IMAGES.tobytes(), "idx"),
    "pgm": (b"P5\n# \n28 84\n255\n".replace(b"# \n", b"") + IMAGES.tobytes(), "pgm"),
}


@pytest.mark.parametrize("name", FILES)
def test_byte_layouts_restore_exactly(name):
    data, layout = FILES[name]
    images = formats.parse(data)
    assert images.layout == layout
    np.testing.assert_array_equal(images.pixels.reshape(-1, 28, 28), IMAGES[:len(images.pixels)])
    assert images.restore() == data


def test_png_restores_pixel_exact():
    data = png(IMAGES.reshape(84, 28))
    images = formats.parse(data)
    assert images.layout == "png"
    restored = np.asarray(Image.open(io.BytesIO(images.restore())))
    np.testing.assert_array_equal(restored, IMAGES.reshape(84, 28))


@pytest.mark.parametrize("data", [
    b"", b"hello", npy(IMAGES.astype(np.int16)), npy(np.zeros((2, 27, 28), np.uint8)),
    npy(np.asfortranarray(IMAGES[0])), npy(IMAGES)[:-1], png(np.zeros((28, 30), np.uint8)),
    png(np.zeros((28, 28, 3), np.uint8).reshape(28, 84)), rng.bytes(5000)])
def test_other_inputs_are_not_images(data):
    assert formats.parse(data) is None


def test_container_round_trip_and_errors():
    box = container.Container("bbans-vae", "npy", 123, b"s" * 32, 2, "vae-binary", b"h" * 16, b"f" * 16, b"meta",
                              b"payload")
    blob = box.to_bytes()
    assert container.read(blob) == box
    for bad, message in [(b"XBANS" + blob[5:], "not a .bbans"), (blob[:5] + b"\x07" + blob[6:], "version 7"),
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
    """Bit-Swap files came with version 3, stored ones with version 6: a header that
    claims one in an earlier version (one flipped bit of the version byte) is corrupt."""
    stored = api.compress(bytes((i * 167 + 13) % 256 for i in range(200)))[0]
    bitswap = container.Container("bbans-bitswap", "npy", 123, b"s" * 32, 2, "hvae-binary", b"h" * 16, b"f" * 16,
                                  b"meta", b"payload").to_bytes()
    for blob, versions in ((stored, range(1, 6)), (bitswap, (1, 2))):
        assert container.read(blob).version == container.VERSION
        for version in versions:
            with pytest.raises(container.FormatError, match="unknown method"):
                container.read(blob[:5] + bytes([version]) + blob[6:])
