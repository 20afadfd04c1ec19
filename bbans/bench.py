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


def timed(fn, arg):
    start = time.perf_counter()
    out = fn(arg)
    return out, time.perf_counter() - start


def run(variant: str, n: int = 10000) -> dict:
    """Bits/dim and images/s of bbans (every byte of the .bbans file counted) and of the
    classical codecs on the raw pixels, for the first n test images of `variant`."""
    from models.zoo import card, figures
    images = mnist_test(variant, n)
    buf = io.BytesIO()
    np.save(buf, images)
    blob, report = api.compress(buf.getvalue())
    restored, back = api.decompress(blob)
    assert restored == buf.getvalue(), "bbans round trip failed"
    model_card = card(report["model"]) if report["model"] else {}
    results = {"bbans": dict(
        method=report["method"], model=report["model"], bits_per_dim=report["bits_per_dim"],
        compressed_bytes=report["compressed_bytes"],
        compress_images_per_s=n / report["seconds"], decompress_images_per_s=n / back["seconds"],
        **(figures(report["model"], images.reshape(n, -1), nll_samples=0) if report["model"] else {}),
        card_nll_bits_per_dim=model_card.get("test_nll_bits_per_dim"))}
    raw = images.tobytes()
    for name, (enc, dec) in CLASSICAL.items():
        packed, t_enc = timed(enc, raw)
        unpacked, t_dec = timed(dec, packed)
        assert unpacked == raw
        results[name] = dict(bits_per_dim=8 * len(packed) / images.size, compressed_bytes=len(packed),
                             compress_images_per_s=n / t_enc, decompress_images_per_s=n / t_dec)
    return dict(images=n, dims=int(images.size), codecs=results)


def table(results: dict) -> str:
    lines = []
    for variant, r in results.items():
        lines.append(f"{variant}: {r['images']} test images, {r['dims']} dims")
        lines.append(f"  {'codec':10} {'bits/dim':>9} {'-ELBO':>7} {'NLL':>7} {'compress/s':>11} {'decompress/s':>13}")
        for name, c in r["codecs"].items():
            elbo = c.get("neg_elbo_bits_per_dim")
            nll = c.get("card_nll_bits_per_dim")
            lines.append(f"  {name:10} {c['bits_per_dim']:9.4f} {elbo if elbo is None else f'{elbo:.4f}':>7}"
                         f" {nll if nll is None else f'{nll:.4f}':>7}"
                         f" {c['compress_images_per_s']:11.0f} {c['decompress_images_per_s']:13.0f}")
    return "\n".join(lines).replace(" None", "    -")
