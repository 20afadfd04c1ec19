"""The standard benchmark: bbans and classical codecs on the same test pixels of MNIST,
binarized MNIST and Fashion-MNIST, and of CIFAR-10."""
import bz2
import gzip
import io
import lzma
import math

import imagecodecs
import numpy as np
import zstandard  # this and matplotlib are the extra bbans[bench]
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bbans import api, classical
from bbans.measure import REPEAT, VARIANTS, compress_measured, decompress_measured, in_fresh_process, mnist_test, \
    npy_bytes, timed
from bbans.models import zoo
from bbans.models.data import load_images
from bbans.models.intnet import describe

BYTE_CODECS = {  # name: (compress, decompress), on the raw pixel bytes
    "gzip -9": (lambda b: gzip.compress(b, 9, mtime=0), gzip.decompress),
    "bz2 -9": (lambda b: bz2.compress(b, 9), bz2.decompress),
    "xz -9e": (lambda b: lzma.compress(b, preset=9 | lzma.PRESET_EXTREME), lzma.decompress),
    "zstd -19": (zstandard.ZstdCompressor(level=19).compress, zstandard.ZstdDecompressor().decompress),
}
# name (the settings as the format's own command-line tool spells them): (encode, decode,
# tallest image the format takes: imagecodecs' WebP refuses 16383 rows, the spec's limit).
# All lossless at their highest effort; WebP codes RGB, so a grey image goes in as three
# equal channels (`grey` below).
IMAGE_FORMATS = {
    "png -9": (lambda a: classical.png(a, level=9), imagecodecs.png_decode, 2**31 - 1),
    "webp -z9": (lambda a: imagecodecs.webp_encode(a, 100, lossless=True, method=6), imagecodecs.webp_decode, 16382),
    "jpeg-xl -e9": (lambda a: imagecodecs.jpegxl_encode(a, lossless=True, effort=9), imagecodecs.jpegxl_decode,
                    2**30),
}
CIFAR = "cifar-10"  # the colour data set, beside measure.VARIANTS


def test_images(variant: str, n: int) -> np.ndarray:
    """The first n test images of a variant of measure.VARIANTS, or n evenly spaced ones of
    CIFAR-10 (its test set is sorted by class)."""
    if variant == CIFAR:
        images = load_images(CIFAR, "test")
        return images[np.linspace(0, len(images) - 1, min(n, len(images))).astype(int)]
    return mnist_test(variant, n)


def grey(name: str, encode, decode, colour: bool):
    """A format's coder for grey images too: WebP's gets them as three equal channels."""
    if colour or not name.startswith("webp"):
        return encode, decode
    return (lambda a: encode(np.repeat(a[..., None], 3, -1))), (lambda b: decode(b)[..., 0])


def mosaic(images: np.ndarray) -> np.ndarray:
    """The images (n, h, w) or (n, h, w, c) as one near-square grid, blank images filling
    the last row."""
    n, h, w, *c = images.shape
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = np.zeros((rows * cols, h, w, *c), np.uint8)
    grid[:n] = images
    return grid.reshape(rows, cols, h, w, *c).swapaxes(1, 2).reshape(rows * h, cols * w, *c)


def tiles(grid: np.ndarray, shape: tuple) -> np.ndarray:
    """The images of shape (n, h, w) or (n, h, w, c) back out of their mosaic."""
    n, h, w, *c = shape
    return grid.reshape(grid.shape[0] // h, h, -1, w, *c).swapaxes(1, 2).reshape(-1, h, w, *c)[:n]


LAYOUTS = {  # name: (images -> the parts to encode, (decoded parts, shape) -> images)
    "bytes": (lambda x: [x.tobytes()], lambda parts, shape: np.frombuffer(parts[0], np.uint8).reshape(shape)),
    "per image": (list, lambda parts, shape: np.stack(parts)),
    "one image": (lambda x: [x.reshape(-1, *x.shape[2:])], lambda parts, shape: parts[0].reshape(shape)),
    "one mosaic image": (lambda x: [mosaic(x)], lambda parts, shape: tiles(parts[0], shape)),
}


def fitting_models(variant: str):
    """The zoo's codecs for this data (its data set, binarized or not), the default first."""
    data, binarized = (CIFAR, False) if variant == CIFAR else VARIANTS[variant]
    default = next(d for d in zoo.defaults(zoo.SHAPES[data], binarized) if zoo.ZOO[d]["data"] == data)
    fits = [name for name in zoo.trained_on(data, binarized) if zoo.is_codec(name)]
    return sorted(fits, key=lambda name: name != default)


def bbans_row(images: np.ndarray, model) -> dict:
    """bbans with one model (None: its own choice): the rate (every byte of the .bbans file counted), the speed both ways, the
    peak memory of a process that only compresses and of one that only decompresses, the
    model's own cost and the start-up cost."""
    n = len(images)
    data = npy_bytes(images)
    blob, report, compress_peak = in_fresh_process(compress_measured, data, model, REPEAT)
    restored, back, decompress_peak = in_fresh_process(decompress_measured, blob, REPEAT)
    assert restored == data, "bbans round trip failed"
    fig = zoo.figures(model, images.reshape(n, -1), nll_samples=0) if model else {}
    # a VAE's cost is its -ELBO, a flow's its NLL
    fig.setdefault("model_bits_per_dim", fig.get("neg_elbo_bits_per_dim", fig.get("nll_bits_per_dim")))
    return dict(
        model=model, machine=report["machine"], bits_per_dim=report["bits_per_dim"],
        compressed_bytes=report["compressed_bytes"],
        compress_images_per_s=n / report["seconds"], decompress_images_per_s=n / back["seconds"],
        compress_peak_rss_mb=compress_peak, decompress_peak_rss_mb=decompress_peak,
        **fig,
        card_nll_bits_per_dim=zoo.card(model).get("test_nll_bits_per_dim") if model else None,
        # The start-up cost: with bits-back, the first image has no bits on the stack to get back.
        **{f"first_{k}_bits_per_dim": api.compress(npy_bytes(images[:k]), model=model, model_only=model is not None
                                                   )[1]["bits_per_dim"]
           for k in (1, 100)})


def classical_codecs(shape: tuple) -> list:
    """(name, layout, encode, decode) of every classical codec for images of this shape:
    the byte codecs on the raw pixels, each image format on every image alone and on the
    whole set as one column of images, or as one mosaic where the column is too tall."""
    n, h = shape[:2]
    codecs = [(name, "bytes", pack, unpack) for name, (pack, unpack) in BYTE_CODECS.items()]
    for name, (encode, decode, tallest) in IMAGE_FORMATS.items():
        whole = "one image" if n * h <= tallest else "one mosaic image"
        encode, decode = grey(name, encode, decode, colour=len(shape) == 4)
        codecs += [(f"{name} ({layout})", layout, encode, decode) for layout in ("per image", whole)]
    return codecs


def classical_row(images: np.ndarray, layout: str, encode, decode) -> dict:
    """A classical codec's rate and speed both ways (laying out the images counted), its
    round trip checked exact."""
    split, join = LAYOUTS[layout]
    blobs, t_enc = timed(lambda x: [encode(part) for part in split(x)], images)
    restored, t_dec = timed(lambda bs: join([decode(b) for b in bs], images.shape), blobs)
    assert np.array_equal(restored, images), f"{layout} round trip failed"
    size = sum(map(len, blobs))
    return dict(layout=layout, bits_per_dim=8 * size / images.size, compressed_bytes=size,
                compress_images_per_s=len(images) / t_enc, decompress_images_per_s=len(images) / t_dec)


def run(variant: str, n: int = 10000) -> dict:
    """Bits/dim and images/s of bbans with every model that fits the data (without one,
    bbans's own choice), and of the classical codecs on the raw pixels, for the first n
    test images of `variant`."""
    images = test_images(variant, n)
    models = fitting_models(variant) or [None]
    results = {f"bbans {model or '(no model)'}": bbans_row(images, model) for model in models}
    for name, *codec in classical_codecs(images.shape):
        results[name] = classical_row(images, *codec)
    return dict(images=len(images), dims=int(images.size), codecs=results)


def table(results: dict) -> str:
    """The benchmark as text; "model" is the model's own cost (a VAE's -ELBO, a flow's NLL), the MB
    columns the peak memory of compressing and of decompressing."""
    def fmt(v, spec=".4f"):
        return "-" if v is None else format(v, spec)

    lines = []
    for variant, r in results.items():
        width = max(map(len, r["codecs"]))
        lines.append(f"{variant}: {r['images']} test images, {r['dims']} dims")
        machines = [c["machine"] for c in r["codecs"].values() if "machine" in c]
        for m in [m for i, m in enumerate(machines) if m not in machines[:i]]:
            lines.append(f"  bbans on {describe(m)}")
        lines.append(f"  {'codec':{width}} {'bits/dim':>9} {'model':>7} {'NLL':>7} {'compress/s':>11}"
                     f" {'decompress/s':>13} {'comp MB':>8} {'decomp MB':>10}")
        for name, c in r["codecs"].items():
            lines.append(f"  {name:{width}} {c['bits_per_dim']:9.4f} {fmt(c.get('model_bits_per_dim')):>7}"
                         f" {fmt(c.get('card_nll_bits_per_dim')):>7}"
                         f" {c['compress_images_per_s']:11.0f} {c['decompress_images_per_s']:13.0f}"
                         f" {fmt(c.get('compress_peak_rss_mb'), '.0f'):>8}"
                         f" {fmt(c.get('decompress_peak_rss_mb'), '.0f'):>10}")
        for name, c in r["codecs"].items():
            if "first_1_bits_per_dim" in c:
                lines.append(f"  {name} on the first image alone: {c['first_1_bits_per_dim']:.4f} bits/dim,"
                             f" on the first 100: {c['first_100_bits_per_dim']:.4f}")
    return "\n".join(lines)


def plot(results: dict) -> bytes:
    """PNG of rate against speed, one panel per data set: each codec a filled marker at its
    compress speed and a hollow one at its decompress speed, joined, at its bits/dim; a
    codec has the same colour in every panel."""
    palette = colormaps["tab20"].colors[::2] + colormaps["tab20"].colors[1::2]  # the strong colours first
    names = dict.fromkeys(name for r in results.values() for name in r["codecs"])
    colors = {name: palette[i % len(palette)] for i, name in enumerate(names)}
    fig, axes = panels(len(results), 6)
    for ax, (variant, r) in zip(axes, results.items()):
        for name, c in r["codecs"].items():
            color = colors[name]
            speeds = [c["compress_images_per_s"], c["decompress_images_per_s"]]
            ax.plot(speeds, [c["bits_per_dim"]] * 2, color=color, lw=0.8)
            ax.plot(speeds[:1], [c["bits_per_dim"]], "o", color=color)
            ax.plot(speeds[1:], [c["bits_per_dim"]], "o", mfc="none", color=color)
            ax.annotate(name, (speeds[0], c["bits_per_dim"]), xytext=(4, 3), textcoords="offset points",
                        fontsize=7, bbox=dict(boxstyle="square,pad=0.1", fc="white", ec="none", alpha=0.7))
        ax.set(xscale="log", xlabel="images/s (filled: compress, hollow: decompress)", ylabel="bits/dim",
               title=f"{variant}: {r['images']} test images")
        ax.grid(True, which="both", alpha=0.3)
    return png(fig)


def panels(count: int, height: float):
    """A matplotlib figure (drawn off screen) of `count` panels side by side, and the panels."""
    fig = Figure(figsize=(7 * count, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(1, count, squeeze=False)[0]


def png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()
