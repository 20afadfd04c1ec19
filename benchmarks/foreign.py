"""Foreign inputs: is bbans's file ever much larger than the best classical codec's?
The test sets through every model that takes them, and inputs no model was trained on:
mixtures, altered digits, colour and odd-sized images, photos, text, random bytes. Each
row's allowance is the best classical file plus 0.5% and bbans's own framing (container
header, chunk table); the command exits 1 if any bbans file is larger than that.

    BBANS_DATA=../shared/data python -m benchmarks.foreign [--images N] [--json PATH]

The classical candidates are coded here, not by bbans: the file stored as it is; xz -9e
(a raw LZMA2 stream, FORMAT_RAW, no .xz framing) on the file; a JPEG file recoded by
JPEG-XL (lossless, the file restored byte for byte); and for lossless images, on
their pixels as one column image (the N images stacked): JPEG-XL lossless effort 9, PNG
level 9, WebP lossless (RGB/RGBA within its 16,383-pixel side only) and xz. Bits/dim
count every channel value of an image (bytes for files that are not images). Photos come
from scikit-image's bundled samples, skipped with a note where it is not installed.
"""
import argparse
import functools
import gzip
import io
import json
import lzma
import math
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import imagecodecs
import numpy as np
from PIL import Image

from bbans import api, chunks, classical, container
from bbans.measure import mnist_test, npy_bytes
from bbans.models import zoo
from bbans.models.data import load_images

ROOT = Path(__file__).resolve().parents[1]
XZ_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME}]
WEBP_MAX_SIDE = 16383
# bbans's file may be 0.5% larger than the best classical file, plus its framing: the
# container header, the chunk count, and for each chunk its table entry and the CRC-32
# of a classical chunk.
SLACK = 1.005
CHUNK_COUNT_BYTES = 4
CHUNK_BYTES = 44 + 4
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8\xff"


@dataclass
class Input:
    name: str
    data: bytes  # the file
    pixels: Optional[np.ndarray] = None  # (N, H, W[, C]): the images the file holds losslessly
    lossy_dims: int = 0  # values of a lossy image file's pixels (JPEG), which only its bytes restore
    models: tuple = (None,)  # the models asked for; None: bbans's own choice
    chunk_images: Optional[int] = None  # bbans's default

    @property
    def dims(self) -> int:
        return self.pixels.size if self.pixels is not None else self.lossy_dims or len(self.data)


def xz(data: bytes) -> bytes:
    return lzma.compress(data, format=lzma.FORMAT_RAW, filters=XZ_FILTERS)


def best_classical(item: Input) -> tuple:
    """(name, bytes) of the smallest classical file of the input."""
    sizes = {"stored": len(item.data), "xz -9e (file)": len(xz(item.data))}
    if item.data.startswith(JPEG_SIGNATURE):  # JPEG-XL recodes a JPEG file losslessly, byte for byte
        sizes["jpeg-xl (jpeg recoded)"] = len(imagecodecs.jpegxl_encode_jpeg(item.data))
    if item.pixels is not None:
        column = np.ascontiguousarray(item.pixels.reshape(-1, *item.pixels.shape[2:]))
        sizes["xz -9e (pixels)"] = len(xz(column.tobytes()))
        sizes["jpeg-xl e9"] = len(imagecodecs.jpegxl_encode(column, lossless=True, effort=9, numthreads=1))
        sizes["png 9"] = len(classical.png(column, level=9))
        if column.ndim == 3 and column.shape[2] in (3, 4) and max(column.shape[:2]) <= WEBP_MAX_SIDE:
            sizes["webp lossless"] = len(imagecodecs.webp_encode(column, 100, lossless=True, method=6, numthreads=1))
    return min(sizes.items(), key=lambda kv: kv[1])


def same_file(original: bytes, restored: bytes) -> bool:
    """Byte for byte; a PNG pixel for pixel (bbans restores its pixels, not its stream)."""
    if not original.startswith(PNG_SIGNATURE):
        return original == restored
    a, b = (Image.open(io.BytesIO(f)) for f in (original, restored))
    return a.mode == b.mode and np.array_equal(np.asarray(a), np.asarray(b))


def row(item: Input, model: Optional[str], best: tuple) -> dict:
    """Codes the input with bbans (asking for `model`), checks the round trip, and sets
    the file against the best classical one, (name, bytes)."""
    blob, report = api.compress(item.data, model=model, chunk_images=item.chunk_images)
    assert same_file(item.data, api.decompress(blob)[0]), f"{item.name}: the round trip differs"
    header = len(blob) - len(container.read(blob).payload)
    allowance = best[1] * SLACK + header + CHUNK_COUNT_BYTES + CHUNK_BYTES * report["chunks"]
    return dict(input=item.name, model_asked=model or "default", method=report["method"], model=report["model"],
                bbans_bytes=len(blob), bbans_bits_per_dim=8 * len(blob) / item.dims,
                chunk_codecs=report["chunk_codecs"], chunks=report["chunks"], best_classical=best[0],
                classical_bytes=best[1], classical_bits_per_dim=8 * best[1] / item.dims,
                allowance=round(allowance), within=len(blob) <= allowance, warnings=report.get("warnings", []))


def models_for(images: np.ndarray) -> tuple:
    """The zoo's codecs that take these images (N, h, w[, c]): of their shape or channels
    (zoo.codes), and binary models only where every value is 0 or 1."""
    binary, shape = images.max() <= 1, (*images.shape[1:3], images.shape[3] if images.ndim == 4 else 1)
    return tuple(n for n in zoo.ZOO if zoo.is_codec(n) and zoo.codes(n, shape) and (binary or not zoo.ZOO[n]["binarized"]))


def npy_input(name: str, images: np.ndarray, **options) -> Input:
    return Input(name, npy_bytes(images), images, **options)


def image_file_input(name: str, data: bytes) -> Input:
    """A PNG or PGM file of one image."""
    return Input(name, data, np.asarray(Image.open(io.BytesIO(data)))[None])


def png(image: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(image).save(out, "PNG")
    return out.getvalue()


def pgm(image: np.ndarray) -> bytes:
    return b"P5\n%d %d\n255\n" % (image.shape[1], image.shape[0]) + image.tobytes()


def mosaic(images: np.ndarray) -> np.ndarray:
    """The first k*k images as a k by k grid, k = isqrt(N)."""
    k = math.isqrt(len(images))
    grid = images[:k * k].reshape(k, k, *images.shape[1:]).swapaxes(1, 2)
    return grid.reshape(k * images.shape[1], k * images.shape[2], *images.shape[3:])


@functools.cache
def cifar(n: int) -> np.ndarray:
    """The first n CIFAR-10 test images, (n, 32, 32, 3) uint8."""
    return load_images("cifar-10", "test")[:n]


def grey(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma, rounded, by integer arithmetic."""
    return ((rgb.astype(np.uint32) @ np.array([299, 587, 114], np.uint32) + 500) // 1000).astype(np.uint8)


def data_sets(n: int):
    """Each test set, with bbans's choice and with every model that takes it."""
    for variant in ("mnist", "fashion-mnist", "mnist-binarized"):
        images = mnist_test(variant, n)
        yield npy_input(variant, images, models=(None, *models_for(images)))


def mixtures(n: int):
    """Two halves of different data in one file, a chunk each."""
    half = n // 2
    digits, clothes = mnist_test("mnist", n), mnist_test("fashion-mnist", n)
    pairs = {"digits then clothes": (digits[:half], clothes[:half]),
             "clothes then digits": (clothes[:half], digits[:half]),
             "binarized then 8-bit digits": (mnist_test("mnist-binarized", n)[:half], digits[half:2 * half])}
    for name, parts in pairs.items():
        yield npy_input(f"mix: {name}", np.concatenate(parts), chunk_images=half)


def altered(n: int):
    """28x28 grey images the models never saw."""
    digits = mnist_test("mnist", n)
    centre = 4 + np.arange(28) * 20 // 28  # the central 20x20, scaled back to 28x28 (nearest neighbour)
    noise = np.random.default_rng(0).normal(0, 8, digits.shape).round()
    variants = {"mnist shifted 3px": np.roll(digits, (3, 3), axis=(1, 2)),
                "mnist inverted": 255 - digits,
                "mnist centre crop x1.4": digits[:, centre][:, :, centre],
                "mnist + noise (sigma 8)": np.clip(digits + noise, 0, 255).astype(np.uint8),
                "cifar grey 28x28 crop": grey(cifar(n))[:, 2:30, 2:30]}
    for name, images in variants.items():
        yield npy_input(name, np.ascontiguousarray(images))


def other_images(n: int):
    """Images that are not 28x28 grey."""
    colour = cifar(n)
    yield npy_input("cifar colour npy (N, 32, 32, 3)", colour)
    yield npy_input("cifar grey npy (N, 32, 32)", grey(colour))
    yield image_file_input("cifar mosaic png (RGB)", png(mosaic(colour)))
    digits = mosaic(mnist_test("mnist", n))[:-1, :-3]
    yield image_file_input(f"mnist mosaic pgm {digits.shape[1]}x{digits.shape[0]}", pgm(digits))


def byte_files(n: int):
    """Files that are not images: random bytes (784 per image asked for), the project's
    documentation as text, gzipped and zipped."""
    text = b"".join(p.read_bytes() for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr(zipfile.ZipInfo("docs.md", (2020, 1, 1, 0, 0, 0)), text, zipfile.ZIP_DEFLATED, 9)
    yield Input("random bytes", np.random.default_rng(0).bytes(784 * n))
    yield Input("text (README + docs)", text)
    yield Input("text gzip -9", gzip.compress(text, 9, mtime=0))
    yield Input("text zip", zipped.getvalue())


def photos():
    """scikit-image's bundled samples as they are (JPEG files count as bytes), and the
    central half of each as a PNG."""
    try:
        import skimage
    except ImportError:
        print("note: scikit-image is not installed; no photos (pip install scikit-image)", file=sys.stderr)
        return
    folder = Path(skimage.__file__).parent / "data"
    for path in sorted(p for p in folder.iterdir() if p.suffix in (".png", ".jpg")):
        with Image.open(path) as photo:
            image, size = np.asarray(photo), f"{photo.width}x{photo.height} {photo.mode}"
        h, w = image.shape[:2]
        if path.suffix == ".jpg":
            yield Input(f"{path.name} {size}", path.read_bytes(), lossy_dims=image.size)
        else:
            yield image_file_input(f"{path.name} {size}", path.read_bytes())
        yield image_file_input(f"{path.stem} centre {w // 2}x{h // 2} png",
                               png(image[h // 4:h // 4 + h // 2, w // 4:w // 4 + w // 2]))


def inputs(n: int):
    for source in (data_sets(n), mixtures(n), altered(n), other_images(n), byte_files(n), photos()):
        yield from source


COLUMNS = "| input | model asked | bbans bytes | bbans bits/dim | chunks (codec: count) | best classical | its bytes " \
          "| its bits/dim | allowance | within? |"


def table_line(r: dict) -> str:
    codecs = ", ".join(f"{c}: {k}" for c, k in r["chunk_codecs"].items()) or r["method"]
    return (f"| {r['input']} | {r['model_asked']} | {r['bbans_bytes']:,} | {r['bbans_bits_per_dim']:.4f} | {codecs} "
            f"| {r['best_classical']} | {r['classical_bytes']:,} | {r['classical_bits_per_dim']:.4f} "
            f"| {r['allowance']:,} | {'yes' if r['within'] else '**no**'} |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.foreign", description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=10_000, help="images drawn from each data set (at least 2)")
    parser.add_argument("--json", type=Path, help="write the rows to this file as JSON")
    parser.add_argument("--only", metavar="TEXT", default="", help="only the inputs whose name holds TEXT")
    args = parser.parse_args(argv)
    if args.images < 2:
        parser.error("--images must be at least 2 (a mixture takes two halves)")
    chunks.one_thread()
    start, rows = time.perf_counter(), []
    print(COLUMNS + "\n" + "| --- " * (COLUMNS.count("|") - 1) + "|", flush=True)
    for item in (item for item in inputs(args.images) if args.only in item.name):
        best = best_classical(item)
        for model in item.models:
            rows.append(row(item, model, best))
            print(table_line(rows[-1]), flush=True)
    for r in rows:
        for warning in r["warnings"]:
            print(f"warning ({r['input']}, {r['model_asked']}): {warning}")
    outside = [r for r in rows if not r["within"]]
    for r in outside:
        print(f"not within: {r['input']} ({r['model_asked']}): {r['bbans_bytes'] - r['allowance']:,} bytes over, "
              f"{100 * (r['bbans_bytes'] / r['classical_bytes'] - 1):+.1f}% against {r['best_classical']}")
    print(f"{len(rows) - len(outside)} of {len(rows)} rows within, {time.perf_counter() - start:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 1 if outside else 0


if __name__ == "__main__":
    sys.exit(main())
