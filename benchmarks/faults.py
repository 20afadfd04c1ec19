"""Bad input against `bbans decompress`: every kind the tests try, at full scale, plus
random edits drawn by hypothesis for a fixed time, on small files of every method.
Prints a table of
faults, cases and outcomes; any outcome but the documented error fails the run.

    BBANS_DATA=../shared/data python -m benchmarks.faults [--seconds 60] [--json]
"""
import io
import json
import random
import resource
import struct
import sys
import time

import numpy as np
from hypothesis import HealthCheck, Phase, given, settings, strategies as st
from PIL import Image

from bbans import api, chunks, container, folders, formats
from bbans.errors import BbansError
from bbans.measure import mnist_test, npy_bytes
from bbans.models.data import load_images

FIELDS = {"size": (8, ">Q"), "images": (48, ">I")}  # offsets of the size fields in the header


def small_files() -> dict:
    """A few-image file of each method: the VAEs (Bit-Swap, a mixture likelihood, a zero
    head, a flow posterior and the colour model among them, the last also in tiles), the VQ-VAE, RealNVP's
    flow (--model-only: on three images xz is smaller), a file of a
    model chunk and a classical one, an image in bands, colour images no model codes (npy
    in two chunks, PNG, PPM), a recoded JPEG, xz, stored, and a folder of two of them."""
    files = {m: api.compress(npy_bytes(mnist_test(v, 3)), model=m)[0]
             for v, m in [("mnist-binarized", "vae-binary"), ("mnist-binarized", "hvae-binary"), ("mnist", "vae-8bit"),
                          ("mnist", "vae-8bit-mix"), ("mnist", "vae-8bit-sparse"), ("mnist", "vqvae-8bit"),
                          ("fashion-mnist", "vae-fashion-flowq")]}
    cifar = load_images("cifar-10", "test")[:4]
    files["realnvp"] = api.compress(npy_bytes(mnist_test("mnist", 3)), model="realnvp", model_only=True)[0]
    files["vae-cifar"] = api.compress(npy_bytes(cifar[:1]), model="vae-cifar")[0]  # (each decode costs 30 ms an image)
    crop = np.concatenate([np.concatenate(cifar[:2], 1), np.concatenate(cifar[2:], 1)])[:40, :45]
    files["vae-cifar tiles"] = api.compress(npy_bytes(np.stack([crop, crop[::-1, ::-1]])), model="vae-cifar")[0]
    files["bands"] = banded_file(b"P5 28 500 255\n" + mnist_test("mnist", 18).tobytes()[:500 * 28], "vae-8bit")
    files["mixed chunks"] = api.compress(npy_bytes(np.concatenate([mnist_test("mnist", 3), np.zeros((3, 28, 28), np.uint8)])),
                                         model="vae-8bit", chunk_images=3)[0]  # a model chunk and a classical one
    colour = (np.arange(6 * 4 * 5 * 3) * 37 % 251).astype(np.uint8).reshape(6, 4, 5, 3)
    files["pixels npy"] = pixels_file(npy_bytes(colour), chunk_images=3)
    i, j = np.mgrid[:16, :16]
    files["pixels png"] = pixels_file(image_bytes(np.stack([16 * i, 16 * j, 8 * (i + j), 255 - 8 * i], -1).astype(np.uint8)))
    files["pixels ppm"] = pixels_file(b"P6 5 4 255\n" + colour[0].tobytes())
    files["jpeg-recoded"] = api._as_bytes("jpeg-recoded", image_bytes(colour[0].repeat(4, 0).repeat(4, 1), "JPEG"))[0] \
        .to_bytes()
    files["xz"] = api.compress(b"not an image " * 30)[0]
    files["folder"] = folders.pack([("a/xz", files["xz"]), ("b.ppm", files["pixels ppm"])])
    files["stored"] = api.compress(bytes((i * 167 + 13) % 256 for i in range(200)))[0]  # nothing shrinks it
    return files


def pixels_file(data: bytes, chunk_images: int = 1) -> bytes:
    """The file of images no model codes, with the classical codecs alone (bbans keeps so
    small a file as xz or stored, which are smaller)."""
    return chunked_file(data, None, chunk_images)


def chunked_file(data: bytes, name, chunk_images=None) -> bytes:
    """The container of images coded chunk by chunk by model `name` (None: the classical
    codecs alone), whatever xz or stored would make of the file."""
    images = formats.parse(data)
    pieces = chunks.plan(len(images.pixels), images.shape, chunk_images)
    return api._chunked(data, images, api._scan(data, images)[1], name, pieces, chunks.Workers(),
                        api.no_progress)[0].to_bytes()


def banded_file(data: bytes, name: str) -> bytes:
    """The file of an image coded by model `name` (or the classical codecs, chunk by chunk)
    in bands of chunks.BAND_STEP rows, however small it is."""
    images = formats.parse(data)
    saved, chunks.CHUNK_BYTES = chunks.CHUNK_BYTES, chunks.BAND_STEP * images.pixels.shape[1] // images.shape[0]
    try:
        return chunked_file(data, name)
    finally:
        chunks.CHUNK_BYTES = saved


def image_bytes(pixels: np.ndarray, kind: str = "PNG") -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, kind)
    return out.getvalue()


def flip_bit(blob: bytes, bit: int) -> bytes:
    return blob[:bit // 8] + bytes([blob[bit // 8] ^ (1 << bit % 8)]) + blob[bit // 8 + 1:]


def header_size(blob: bytes) -> int:
    return len(blob) - len(container.read(blob).payload)


def cases(blob: bytes, payload_step: int = 1, seed: int = 0) -> dict:
    """Bad variants of a valid file, by kind of fault."""
    rng = random.Random(seed)
    head = header_size(blob)
    oversized = [blob[:offset] + struct.pack(fmt, value) + blob[offset + struct.calcsize(fmt):]
                 for offset, fmt in FIELDS.values() for value in (2**(8 * struct.calcsize(fmt)) - 1, 2**31, 2**30)]
    return {
        "truncation at every byte": [blob[:i] for i in range(len(blob))],
        "bit flip, every header bit": [flip_bit(blob, i) for i in range(8 * head)],
        f"bit flip, every {payload_step}th payload bit": [flip_bit(blob, i) for i in range(8 * head, 8 * len(blob),
                                                                                             payload_step)],
        "wrong magic": [bytes([b]) + blob[1:] for b in range(256) if b != blob[0]],
        "other format versions": [blob[:5] + bytes([v]) + blob[6:] for v in range(256) if not 1 <= v <= container.VERSION],
        "size and image counts claiming up to 2^64": oversized,
        "random garbage": [rng.randbytes(rng.randrange(300)) for _ in range(200)],
        "garbage after a valid header": [blob[:head] + rng.randbytes(rng.randrange(400)) for _ in range(200)],
        "extra bytes appended": [blob + rng.randbytes(rng.randrange(1, 64)) for _ in range(50)],
    }


def edit(draws, blob: bytes) -> bytes:
    """One to four random edits drawn by hypothesis: bytes changed, cut or inserted."""
    b = bytearray(blob)
    for _ in range(draws.draw(st.integers(1, 4))):
        i = draws.draw(st.integers(0, max(len(b) - 1, 0)))
        kind = draws.draw(st.sampled_from(["change", "cut", "insert"]))
        if kind == "change" and b:
            b[i] ^= draws.draw(st.integers(1, 255))
        elif kind == "cut":
            del b[i:i + draws.draw(st.integers(1, 64))]
        else:
            b[i:i] = draws.draw(st.binary(min_size=1, max_size=64))
    return bytes(b)


def fuzz(files: dict, seconds: float) -> dict:
    """Hypothesis-driven edits of the files for `seconds`: how many differed from their
    file, how many of those were refused, and the slowest."""
    tally = dict(cases=0, refused=0, max_seconds=0.0)

    @settings(max_examples=200, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def one(draws):
        blob = files[draws.draw(st.sampled_from(sorted(files)))]
        bad = edit(draws, blob)
        if bad != blob:
            refused, t = outcome(bad)
            tally.update(cases=tally["cases"] + 1, refused=tally["refused"] + refused,
                         max_seconds=max(tally["max_seconds"], t))

    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        one()
    return tally


def outcome(bad: bytes):
    """(refused with the documented error?, seconds)."""
    start = time.perf_counter()
    try:
        if container.read(bad).method == "folder":  # as `bbans verify` checks one
            folders.restore(bad, None)
        else:
            api.decompress(bad)
        refused = False
    except BbansError:
        refused = True
    return refused, time.perf_counter() - start


def run(seconds: float, payload_step: int = 7) -> list:
    rows = []
    files = small_files()
    for name, blob in files.items():
        for fault, bad in cases(blob, payload_step).items():
            results = [outcome(b) for b in bad]
            rows.append(dict(file=name, fault=fault, cases=len(results), refused=sum(r for r, _ in results),
                             max_seconds=max(t for _, t in results)))
    rows.append(dict(file="all", fault=f"hypothesis edits for {seconds:g} s", **fuzz(files, seconds)))
    return rows


def table(rows: list) -> str:
    """Markdown, one row per fault, summed over the files."""
    faults = {}
    for r in rows:
        f = faults.setdefault(r["fault"], dict(files=[], cases=0, refused=0, max_seconds=0.0))
        f["files"].append(r["file"])
        f["cases"] += r["cases"]
        f["refused"] += r["refused"]
        f["max_seconds"] = max(f["max_seconds"], r["max_seconds"])
    lines = ["| fault | files | cases | refused with one clear error | slowest case (s) |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {name} | {', '.join(f['files'])} | {f['cases']:,} | {f['refused']:,} | {f['max_seconds']:.3f} |"
              for name, f in faults.items()]
    return "\n".join(lines)


def main(argv):
    seconds = float(argv[argv.index("--seconds") + 1]) if "--seconds" in argv else 60.0
    rows = run(seconds)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if "--json" in argv:
        print(json.dumps(dict(rows=rows, peak_rss_mb=peak_mb)))
    else:
        print(table(rows) + f"\n\npeak resident memory of the whole run: {peak_mb:.0f} MB")
    return 0 if all(r["refused"] == r["cases"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
