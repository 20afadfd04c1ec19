"""Chunked payloads: boundaries, worker processes, decoding order and per-chunk checksums."""
import functools
import time

import pytest

from bbans import api, chunks, container
from bbans.measure import mnist_test, npy_bytes
from bbans.errors import BbansError

MODELS = [("mnist-binarized", "vae-binary"), ("mnist-binarized", "hvae-binary"), ("mnist", "vae-8bit"),
          ("mnist", "vae-8bit-mix"), ("mnist", "vae-8bit-sparse"), ("mnist", "vqvae-8bit")]


@pytest.mark.parametrize("variant, model", MODELS)
@pytest.mark.parametrize("n", [1, 4, 5, 9])
def test_round_trip_across_chunk_boundaries(data, variant, model, n):
    """Chunks of 4 images: one image, exactly one chunk, one chunk and one image, and a
    count that is not a multiple of the chunk size."""
    original = npy_bytes(mnist_test(variant, n))
    blob, report = api.compress(original, model=model, chunk_images=4)
    box = container.read(blob)
    parts = chunks.unpack(box.payload, n, box.version)
    assert report["chunks"] == len(parts) == -(-n // 4) and [c.images for c in parts] == [4] * (n // 4) + [n % 4] * (n % 4 > 0)
    assert api.decompress(blob)[0] == original


def test_two_workers_make_the_same_file_and_decode_it(data):
    original = npy_bytes(mnist_test("mnist", 9))
    one, _ = api.compress(original, model="vae-8bit", chunk_images=4)
    two, _ = api.compress(original, model="vae-8bit", chunk_images=4, workers=2)
    assert one == two
    assert api.decompress(one, workers=2)[0] == original


def test_chunks_decode_in_any_order(data, monkeypatch):
    original = npy_bytes(mnist_test("mnist-binarized", 13))
    blob, _ = api.compress(original, model="vae-binary", chunk_images=4)

    def backwards(workers, fn, items):
        return iter([fn(item) for item in list(items)[::-1]][::-1])

    monkeypatch.setattr(chunks.Workers, "map", backwards)
    assert api.decompress(blob)[0] == original


def test_each_chunk_is_checked_against_its_checksum(data):
    blob, _ = api.compress(npy_bytes(mnist_test("mnist-binarized", 9)), model="vae-binary", chunk_images=4)
    box = container.read(blob)
    parts = chunks.unpack(box.payload, 9, box.version)
    parts[1].sha256 = bytes(32)
    box.payload = chunks.pack(parts)
    with pytest.raises(BbansError, match="checksum mismatch in chunk 2 of 3"):
        api.decompress(box.to_bytes())


def test_tables_that_do_not_add_up_are_refused():
    good = [chunks.Chunk(2, b"abcd", bytes(32)), chunks.Chunk(1, b"ef", bytes(32))]
    assert chunks.unpack(chunks.pack(good), 3, container.VERSION) == good
    for payload, images in [(chunks.pack(good), 4), (chunks.pack(good)[:-1], 3), (chunks.pack([]), 0),
                            (chunks.pack([chunks.Chunk(0, b"", bytes(32))] + good), 3), (b"\xff\xff\xff\xff", 3)]:
        with pytest.raises(BbansError):
            chunks.unpack(payload, images, container.VERSION)


def test_workers_take_items_as_needed_and_keep_their_order():
    pulled = []

    def items():
        for i in range(100):
            pulled.append(i)
            yield i

    here = chunks.Workers(1).map(str, items())
    assert next(here) == "0" and pulled == [0]
    pulled.clear()
    with chunks.Workers(2, jobs=100) as workers:
        two = workers.map(str, items())
        assert next(two) == "0" and len(pulled) == 4  # two jobs per worker in flight
        assert list(two) == [str(i) for i in range(1, 100)]


def test_processes_start_only_for_more_than_one_job():
    assert chunks.Workers(2, jobs=1).pool is None and chunks.Workers(1, jobs=5).pool is None


def test_a_worker_that_fails_to_start_is_reported_not_waited_for():
    with chunks.Workers(2, warm=functools.partial(int, "not a number")) as pool:
        start = time.monotonic()
        with pytest.raises(BbansError, match="the worker processes did not start"):
            pool.ready()
        assert time.monotonic() - start < 60
