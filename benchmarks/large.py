"""A large image through `bbans compress` and `bbans decompress`: time, peak memory and
the round trip.

    BBANS_DATA=../shared/data python -m benchmarks.large [--megapixels 50] [--workers 1]

The image is a mosaic of CIFAR-10 test images and their mirror images (so that vae-cifar
codes it, in bands of rows, and no run of its bytes repeats another), written as an npy
file of one (1, H, W, 3) image; each command runs in a process of its own, whose peak
resident memory is reported.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from bbans.models.data import load_images


def mosaic(megapixels: float) -> np.ndarray:
    """About that many megapixels of CIFAR-10 test images, 4:3, as one (H, W, 3) image."""
    width = int(np.sqrt(megapixels * 1e6 * 4 / 3)) // 32 * 32
    height = int(megapixels * 1e6 / width) // 32 * 32
    tiles = load_images("cifar-10", "test")
    rows, cols = height // 32, width // 32
    picked = np.arange(rows * cols) * 7919 % len(tiles)  # a stride through the classes (the set is sorted by class)
    image = tiles[picked].reshape(rows, cols, 32, 32, 3).copy()
    image[1::2] = image[1::2, :, :, ::-1]  # every other row of tiles mirrored: no whole row repeats
    return image.transpose(0, 2, 1, 3, 4).reshape(height, width, 3)


def run(args) -> dict:
    """The JSON report of `bbans ARGS --json`, run in a process of its own, with its peak
    resident memory in MB."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen([sys.executable, "-c", "from bbans.cli import main; main()", *args, "--json"],
                                 stdout=out, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)
        out.seek(0), err.seek(0)
        if status:
            sys.exit(f"bbans {' '.join(args)} failed: {err.read().strip()}")
        return dict(json.loads(out.read()), peak_mb=usage.ru_maxrss / 1024)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.large", description=__doc__.split("\n\n")[0])
    parser.add_argument("--megapixels", type=float, default=50.0)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    image = mosaic(args.megapixels)
    with tempfile.TemporaryDirectory() as tmp:
        source, back = Path(tmp) / "large.npy", Path(tmp) / "back.npy"
        np.save(source, image[None])
        coded = run(["compress", str(source), "--workers", str(args.workers)])
        restored = run(["decompress", f"{source}.bbans", "-o", str(back), "--workers", str(args.workers)])
        same = back.read_bytes() == source.read_bytes()
    megapixels = image.shape[0] * image.shape[1] / 1e6
    print(f"{image.shape[1]}x{image.shape[0]} RGB ({megapixels:.1f} MP, {image.nbytes / 1e6:.0f} MB), "
          f"{coded['chunks']} chunks {coded['chunk_codecs']}: {coded['bits_per_dim']:.4f} bits/dim")
    print(f"compress   {megapixels / coded['seconds']:.2f} MP/s ({coded['seconds']:.0f} s coding), "
          f"peak {coded['peak_mb']:.0f} MB")
    print(f"decompress {megapixels / restored['seconds']:.2f} MP/s ({restored['seconds']:.0f} s), "
          f"peak {restored['peak_mb']:.0f} MB; restored byte for byte: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
