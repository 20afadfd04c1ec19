"""Peak memory of `bbans compress` and `bbans decompress` on a large file.

    BBANS_DATA=../shared/data python -m benchmarks.memory [--images 1000000] [--data mnist-binarized]
        [--workers 1] [--model NAME]

Writes an .npy of that many MNIST test images (the test set repeated) to a temporary
folder, compresses it, restores it, checks the round trip byte for byte, and prints
the peak resident memory of each command (its own process, read from the kernel's
accounting of the children it waits for; this process stays small, since a child's
count starts from its parent's) with its time and rate.
"""
import argparse
import filecmp
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bbans.measure import mnist_test

WRAPPER = ("import resource, subprocess, sys; code = subprocess.run(sys.argv[1:]).returncode; "
           "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(code)")


def write_npy(path: Path, variant: str, n: int):
    """An (n, 28, 28) uint8 .npy of the test images repeated, written a block at a time
    (through plain writes: pages of a written memory map would count in this process's
    peak memory, which its children inherit as the start of theirs)."""
    images = mnist_test(variant, 10000)
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, dict(descr="|u1", fortran_order=False, shape=(n, 28, 28)))
        for start in range(0, n, len(images)):
            f.write(images[:min(n - start, len(images))].tobytes())


def peak_run(*args) -> dict:
    """Runs `bbans ARGS` in a process of its own: its peak RSS in MB and wall time."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", WRAPPER, sys.executable, "-m", "cli", *args],
                          capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"bbans {' '.join(args)} failed: {proc.stderr.strip()}")
    *_, peak_kb = proc.stdout.split()
    return dict(peak_rss_mb=round(int(peak_kb) / 1024, 1), seconds=round(time.perf_counter() - start, 2),
                report=json.loads(proc.stdout.splitlines()[0]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=1_000_000)
    parser.add_argument("--data", default="mnist-binarized", choices=["mnist-binarized", "mnist"])
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--model", help="a model of the zoo (default: the one compress picks)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "images.npy"
        write_npy(src, args.data, args.images)
        packed, restored = Path(tmp) / "images.npy.bbans", Path(tmp) / "restored.npy"
        common = ["--workers", str(args.workers), "--json"]
        model = ["--model", args.model] if args.model else []
        comp = peak_run("compress", str(src), "-o", str(packed), "--nll-samples", "0", *model, *common)
        decomp = peak_run("decompress", str(packed), "-o", str(restored), *common)
        assert filecmp.cmp(src, restored, shallow=False), "round trip failed"
        result = dict(images=args.images, data=args.data, workers=args.workers, input_mb=round(src.stat().st_size / 2**20, 1),
                      bits_per_dim=comp["report"]["bits_per_dim"], model=comp["report"]["model"],
                      compress=dict(peak_rss_mb=comp["peak_rss_mb"], seconds=comp["seconds"],
                                    coding_images_per_s=round(args.images / comp["report"]["seconds"])),
                      decompress=dict(peak_rss_mb=decomp["peak_rss_mb"], seconds=decomp["seconds"],
                                      coding_images_per_s=round(args.images / decomp["report"]["seconds"])))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
