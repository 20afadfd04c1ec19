"""The standard benchmark: bbans and classical codecs on the same MNIST test pixels."""
import bz2
import gzip
import io
import lzma
import time

import numpy as np

from bbans import api
from bbans.data import binarize, load_images

CLASSICAL = {
    "gzip -9": (lambda b: gzip.compress(b, 9, mtime=0), gzip.decompress),
    "bz2 -9": (lambda b: bz2.compress(b, 9), bz2.decompress),
    "xz -9e": (lambda b: lzma.compress(b, preset=9 | lzma.PRESET_EXTREME), lzma.decompress),
}


def mnist_test(variant: str, n: int) -> np.ndarray:
    images = load_images("mnist", "test")
    return (binarize(images) if variant == "mnist-binarized" else images)[:n]


def npy_bytes(images: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, images)
    return buf.getvalue()


def timed(fn, arg):
    start = time.perf_counter()
    out = fn(arg)
    return out, time.perf_counter() - start


def fitting_models(variant: str):
    """The zoo's models for this data, the default first."""
    from models.zoo import DEFAULTS, ZOO
    binary = variant == "mnist-binarized"
    default = DEFAULTS["binary" if binary else "8bit"]
    return [default] + [name for name, r in ZOO.items() if r["binarized"] == binary and name != default]


def bbans_row(images: np.ndarray, model: str) -> dict:
    """bbans with one model: the rate (every byte of the .bbans file counted), the speed
    both ways, the model's own cost and the start-up cost."""
    from models.zoo import card, figures
    n = len(images)
    data = npy_bytes(images)
    blob, report = api.compress(data, model=model)
    restored, back = api.decompress(blob)
    assert restored == data, "bbans round trip failed"
    fig = figures(model, images.reshape(n, -1), nll_samples=0)
    fig.setdefault("model_bits_per_dim", fig.get("neg_elbo_bits_per_dim"))  # a VAE's cost is its -ELBO
    return dict(
        model=model, bits_per_dim=report["bits_per_dim"], compressed_bytes=report["compressed_bytes"],
        compress_images_per_s=n / report["seconds"], decompress_images_per_s=n / back["seconds"],
        **fig,
        card_nll_bits_per_dim=card(model).get("test_nll_bits_per_dim"),
        # The start-up cost: with bits-back, the first image has no bits on the stack to get back.
        **{f"first_{k}_bits_per_dim": api.compress(npy_bytes(images[:k]), model=model)[1]["bits_per_dim"]
           for k in (1, 100)})


def run(variant: str, n: int = 10000) -> dict:
    """Bits/dim and images/s of bbans with every model that fits the data, and of the
    classical codecs on the raw pixels, for the first n test images of `variant`."""
    images = mnist_test(variant, n)
    results = {f"bbans {model}": bbans_row(images, model) for model in fitting_models(variant)}
    raw = images.tobytes()
    for name, (enc, dec) in CLASSICAL.items():
        packed, t_enc = timed(enc, raw)
        unpacked, t_dec = timed(dec, packed)
        assert unpacked == raw
        results[name] = dict(bits_per_dim=8 * len(packed) / images.size, compressed_bytes=len(packed),
                             compress_images_per_s=n / t_enc, decompress_images_per_s=n / t_dec)
    return dict(images=n, dims=int(images.size), codecs=results)


def table(results: dict) -> str:
    """The benchmark as text; "model" is the model's own cost (a VAE's -ELBO)."""
    def fmt(v):
        return "-" if v is None else f"{v:.4f}"

    lines = []
    for variant, r in results.items():
        width = max(map(len, r["codecs"]))
        lines.append(f"{variant}: {r['images']} test images, {r['dims']} dims")
        lines.append(f"  {'codec':{width}} {'bits/dim':>9} {'model':>7} {'NLL':>7} {'compress/s':>11} {'decompress/s':>13}")
        for name, c in r["codecs"].items():
            lines.append(f"  {name:{width}} {c['bits_per_dim']:9.4f} {fmt(c.get('model_bits_per_dim')):>7}"
                         f" {fmt(c.get('card_nll_bits_per_dim')):>7}"
                         f" {c['compress_images_per_s']:11.0f} {c['decompress_images_per_s']:13.0f}")
        for name, c in r["codecs"].items():
            if "first_1_bits_per_dim" in c:
                lines.append(f"  {name} on the first image alone: {c['first_1_bits_per_dim']:.4f} bits/dim,"
                             f" on the first 100: {c['first_100_bits_per_dim']:.4f}")
    return "\n".join(lines)
