"""Bad input against `bbans decompress`: every kind the tests try, at full scale, plus
random mutations for a fixed time, on small files of every method. Prints a table of
faults, cases and outcomes; any outcome but the documented error fails the run.

    BBANS_DATA=../shared/data python -m benchmarks.faults [--seconds 60] [--json]
"""
import json
import random
import resource
import struct
import sys
import time

from bbans import api
from bbans.container import HEADER
from bbans.errors import BbansError

FIELDS = {"size": (8, ">Q"), "images": (48, ">I")}  # offsets of the size fields in the header


def small_files() -> dict:
    """A few-image file of each method: the VAEs, the VQ-VAE, and xz."""
    from bbans.bench import mnist_test, npy_bytes
    files = {m: api.compress(npy_bytes(mnist_test(v, 3)), model=m)[0]
             for v, m in [("mnist-binarized", "vae-binary"), ("mnist", "vae-8bit"), ("mnist", "vqvae-8bit")]}
    files["xz"] = api.compress(b"not an image " * 30)[0]
    return files


def flip_bit(blob: bytes, bit: int) -> bytes:
    return blob[:bit // 8] + bytes([blob[bit // 8] ^ (1 << bit % 8)]) + blob[bit // 8 + 1:]


def header_size(blob: bytes) -> int:
    return HEADER.size + blob[HEADER.size - 3] + int.from_bytes(blob[HEADER.size - 2:HEADER.size], "big")


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
        "other format versions": [blob[:5] + bytes([v]) + blob[6:] for v in range(256) if v not in (1, 2)],
        "size and image counts claiming up to 2^64": oversized,
        "random garbage": [rng.randbytes(rng.randrange(300)) for _ in range(200)],
        "garbage after a valid header": [blob[:head] + rng.randbytes(rng.randrange(400)) for _ in range(200)],
        "extra bytes appended": [blob + rng.randbytes(rng.randrange(1, 64)) for _ in range(50)],
    }


def mutate(blob: bytes, rng: random.Random) -> bytes:
    """One random edit: flip some bytes, cut, insert or splice."""
    b = bytearray(blob)
    kind = rng.randrange(4)
    if kind == 0:
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] ^= rng.randint(1, 255)
    elif kind == 1:
        i = rng.randrange(len(b))
        del b[i:i + rng.randint(1, 64)]
    elif kind == 2:
        i = rng.randrange(len(b) + 1)
        b[i:i] = rng.randbytes(rng.randint(1, 64))
    else:
        i, j = sorted(rng.randrange(len(b)) for _ in range(2))
        b[i:j] = b[i:j][::-1]
    return bytes(b)


def outcome(bad: bytes):
    """(refused with the documented error?, seconds)."""
    start = time.perf_counter()
    try:
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
    rng, tried, refused, slowest = random.Random(1), 0, 0, 0.0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        blob = files[rng.choice(list(files))]
        bad = mutate(blob, rng)
        if bad == blob:  # an edit that changed nothing (a palindrome reversed)
            continue
        ok, t = outcome(bad)
        tried, refused, slowest = tried + 1, refused + ok, max(slowest, t)
    rows.append(dict(file="all", fault=f"random mutations for {seconds:g} s", cases=tried, refused=refused,
                     max_seconds=slowest))
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
