"""Measuring bbans: the test sets, and coding runs timed on one core in a fresh process,
for the benchmark (bbans.bench) and the model cards (bbans.cards)."""
import io
import multiprocessing
import re
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from bbans import api, chunks
from bbans.models.data import binarize, load_images
from bbans.models.intnet import machine

REPEAT = 3  # runs of bbans each way; the fastest counts
# name: (data set it is drawn from, binarized), as the zoo's recipes name them
VARIANTS = {"mnist-binarized": ("mnist", True), "mnist": ("mnist", False), "fashion-mnist": ("fashion-mnist", False)}

def mnist_test(variant: str, n: int) -> np.ndarray:
    """The first n test images of a variant of VARIANTS."""
    name, binarized = VARIANTS[variant]
    images = load_images(name, "test")
    return (binarize(images) if binarized else images)[:n]


def npy_bytes(images: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, images)
    return buf.getvalue()


def timed(fn, arg):
    start = time.perf_counter()
    out = fn(arg)
    return out, time.perf_counter() - start


def peak_rss_mb() -> float:
    """This process's peak resident set size in MB. Linux's VmHWM counts only this process's
    own memory since it started; its ru_maxrss would also count the peak of the parent that
    spawned it (kept across fork and exec), so that is the fallback where /proc is missing."""
    status = Path("/proc/self/status")
    if status.exists():
        return int(re.search(r"VmHWM:\s*(\d+) kB", status.read_text()).group(1)) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1 << 20 if sys.platform == "darwin" else 1 << 10)


def in_fresh_process(fn, *args):
    """fn(*args) in a newly started process that runs nothing else."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def fastest(run, repeat: int):
    """run() -> (output, report) `repeat` times on one core: the output, and the report
    of the fastest run (this machine's speed varies by some 10% from run to run)."""
    chunks.one_thread()
    runs = [run() for _ in range(repeat)]
    return runs[0][0], min((report for _, report in runs), key=lambda r: r["seconds"])


def compress_measured(data: bytes, model: str, repeat: int):
    """(file, report of the fastest run, with the machine it ran on (bbans.models.intnet.machine),
    peak MB). A named model codes every chunk, even where a classical codec would be smaller."""
    blob, report = fastest(lambda: api.compress(data, model=model, model_only=model is not None), repeat)
    return blob, dict(report, machine=machine()), peak_rss_mb()


def decompress_measured(blob: bytes, repeat: int):
    return *fastest(lambda: api.decompress(blob), repeat), peak_rss_mb()
