"""bbans against JPEG-XL, WebP and PNG on a folder of photos, per photo and in total.

python -m benchmarks.photos [FOLDER] [--cifar-mosaics] [--json PATH]: every PNG, PPM or npy
image in FOLDER (default: scikit-image's bundled lossless RGB and RGBA samples, `pip install
'bbans[photos]'`), and with --cifar-mosaics three mosaics of CIFAR-10 test images, coded by
`bbans compress` (the whole file counted) and by each classical codec on its pixels at its
highest effort: JPEG-XL lossless effort 9, WebP lossless method 6 (RGB and RGBA), PNG level 9,
and the default RGB model's message alone (in its tiles; bbans takes the smaller per chunk).
Bytes, bits per sub-pixel, and bbans's megapixels/s both ways
on one core; exits 1 if any photo came out larger than JPEG-XL's stream.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import imagecodecs
import numpy as np

from bbans import api, chunks, classical, formats, messages
from bbans.models import zoo

CODECS = {
    "jpeg-xl e9": lambda x: imagecodecs.jpegxl_encode(x, lossless=True, effort=9),
    "webp lossless": lambda x: imagecodecs.webp_encode(x, level=100, lossless=True, method=6),
    "png 9": lambda x: classical.png(x, level=9),
}
COLUMNS = [*CODECS, "model alone"]
PHOTO_CHANNELS = (3, 4)  # scikit-image's samples that are colour photos, not grey or drawings


def default_folder() -> Path:
    try:
        import skimage
    except ImportError:
        sys.exit("scikit-image is not installed (pip install 'bbans[photos]'); name a FOLDER of photos")
    return Path(skimage.__file__).parent / "data"


def photos(folder: Path, colour_only: bool):
    """(name, file bytes, pixels (h, w, c)) of each single image in the folder."""
    for path in sorted(folder.iterdir()):
        if not path.is_file():
            continue
        images = formats.parse(path.read_bytes())
        if images is None or len(images.pixels) != 1 or colour_only and images.shape[2] not in PHOTO_CHANNELS:
            continue
        h, w, c = images.shape
        yield path.name, path.read_bytes(), np.asarray(images.pixels).reshape(h, w, c).squeeze(-1 if c == 1 else ())


def cifar_mosaics():
    """(name, PNG bytes, pixels) of mosaics of CIFAR-10 test images (evenly spaced, from
    BBANS_DATA): 10x10 of them, a 301x317 crop of it (edge tiles), and 32x32 (1 megapixel)."""
    from bbans.models.data import load_images
    test = load_images("cifar-10", "test")

    def mosaic(side):
        picked = test[np.linspace(0, len(test) - 1, side * side).astype(int)]
        return picked.reshape(side, side, 32, 32, 3).transpose(0, 2, 1, 3, 4).reshape(32 * side, 32 * side, 3)

    ten = mosaic(10)
    for name, pixels in [("cifar 10x10", ten), ("cifar 10x10 crop", ten[:301, :317]), ("cifar 32x32", mosaic(32))]:
        pixels = np.ascontiguousarray(pixels)
        yield name, imagecodecs.png_encode(pixels), pixels


def row(name: str, data: bytes, pixels: np.ndarray) -> dict:
    start = time.perf_counter()
    blob, report = api.compress(data)
    seconds = time.perf_counter() - start
    start = time.perf_counter()
    restored = api.decompress(blob)[0]
    back = time.perf_counter() - start
    same = np.array_equal(formats.parse(restored).pixels, formats.parse(data).pixels) if report["layout"] == "png" \
        else restored == data
    assert same, f"{name}: round trip failed"
    megapixels = pixels.shape[0] * pixels.shape[1] / 1e6
    out = dict(photo=name, shape=list(pixels.shape), file_bytes=len(data), bbans_bytes=len(blob),
               bbans_chunks=report["chunk_codecs"] or report["method"],
               compress_megapixels_per_s=megapixels / seconds, decompress_megapixels_per_s=megapixels / back)
    for codec, encode in CODECS.items():
        fits = codec != "webp lossless" or pixels.ndim == 3 and pixels.shape[2] in (3, 4)
        out[codec] = len(encode(pixels)) if fits else None
    # the default model's message alone, in its tiles, whichever codec took the photo
    default = zoo.defaults(pixels.shape, False) if pixels.ndim == 3 and pixels.shape[2] == 3 else ()
    out["model alone"] = len(messages.encode(default[0], pixels.reshape(1, -1), shape=pixels.shape)) if default else None
    return out


def table(rows) -> str:
    head = "| photo | size | file | bbans | " + " | ".join(COLUMNS) + " | bbans vs JPEG-XL | bbans MP/s (c / d) |"
    lines = [head, "| --- " * (head.count("|") - 1) + "|"]
    for r in rows + [totals(rows)]:
        sizes = " | ".join(f"{r[c]:,}" if r.get(c) is not None else "" for c in COLUMNS)
        speed = f"{r['compress_megapixels_per_s']:.2f} / {r['decompress_megapixels_per_s']:.2f}" if "shape" in r else ""
        lines.append(f"| {r['photo']} | {'x'.join(map(str, r.get('shape', [])))} | {r['file_bytes']:,} "
                     f"| {r['bbans_bytes']:,} | {sizes} | {100 * (r['bbans_bytes'] / r['jpeg-xl e9'] - 1):+.2f}% "
                     f"| {speed} |")
    return "\n".join(lines)


def totals(rows) -> dict:
    total = {k: sum(r[k] for r in rows) for k in ("file_bytes", "bbans_bytes", "jpeg-xl e9", "png 9")}
    webp = [r["webp lossless"] for r in rows]
    return dict(total, photo=f"total ({len(rows)})", **{"webp lossless": sum(webp) if None not in webp else None})


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.photos", description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", type=Path, help="a folder of photos (default scikit-image's samples)")
    parser.add_argument("--json", type=Path, help="write the rows to this file as JSON")
    parser.add_argument("--cifar-mosaics", action="store_true", help="and mosaics of CIFAR-10 test images (BBANS_DATA)")
    args = parser.parse_args(argv)
    chunks.one_thread()
    rows = [row(*photo) for photo in photos(args.folder or default_folder(), colour_only=args.folder is None)]
    rows += [row(*mosaic) for mosaic in (cifar_mosaics() if args.cifar_mosaics else ())]
    if not rows:
        sys.exit(f"no single-image PNG, PPM or npy files in {args.folder}")
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 1 if any(r["bbans_bytes"] > r["jpeg-xl e9"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
