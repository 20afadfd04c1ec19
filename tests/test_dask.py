"""Chunks coded on a Dask cluster (--scheduler): the same file as in one process."""
import operator
import socket

import pytest
from click.testing import CliRunner
from distributed import LocalCluster

from bbans import api, chunks, container
from bbans.measure import mnist_test, npy_bytes
from bbans.errors import BbansError
from bbans.cli import main


@pytest.fixture(scope="module")
def scheduler():
    """The address of a local cluster of two worker processes of one thread each."""
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        yield cluster.scheduler_address


def bbans(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.output


def test_results_come_in_order_and_equal_items_each_get_theirs(scheduler):
    items = [3, 1, 3, 3, 2, 1] * 5
    assert list(chunks.Workers(1, scheduler).map(operator.neg, items)) == [-i for i in items]


@pytest.mark.parametrize("variant, model", [("mnist-binarized", "vae-binary"), ("mnist", "vae-8bit")])
def test_the_cluster_makes_the_same_file_and_restores_it(data, scheduler, variant, model):
    original = npy_bytes(mnist_test(variant, 9))
    here, _ = api.compress(original, model=model, chunk_images=4)
    there, report = api.compress(original, model=model, chunk_images=4, scheduler=scheduler)
    assert report["chunks"] == 3 and there == here
    assert api.decompress(there, scheduler=scheduler)[0] == original


def test_scheduler_on_the_command_line(data, scheduler, tmp_path):
    src = tmp_path / "d.npy"
    src.write_bytes(npy_bytes(mnist_test("mnist-binarized", 9)))
    assert bbans("compress", src, "-o", tmp_path / "here.bbans", "--chunk-images", 4, "--nll-samples", 0)[0] == 0
    code, out = bbans("compress", src, "--chunk-images", 4, "--nll-samples", 0, "--scheduler", scheduler)
    packed = tmp_path / "d.npy.bbans"
    assert code == 0, out
    assert packed.read_bytes() == (tmp_path / "here.bbans").read_bytes()
    assert bbans("verify", packed, "--scheduler", scheduler)[0] == 0
    code, out = bbans("decompress", packed, "-o", tmp_path / "back.npy", "--scheduler", scheduler)
    assert code == 0, out
    assert (tmp_path / "back.npy").read_bytes() == src.read_bytes()


def test_an_unreachable_or_malformed_scheduler_address_is_one_line(data, tmp_path, monkeypatch):
    monkeypatch.setattr(chunks, "CONNECT_SECONDS", 1)
    with socket.socket() as s:  # a free port, with nothing listening once closed
        s.bind(("127.0.0.1", 0))
        free = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    src = tmp_path / "d.npy"
    src.write_bytes(npy_bytes(mnist_test("mnist-binarized", 5)))
    for address in free, "http://127.0.0.1:1":
        code, out = bbans("compress", src, "--nll-samples", 0, "--scheduler", address)
        assert code == 1 and out.startswith(f"bbans: error: cannot reach the Dask scheduler at {address}: ")
        assert out.count("\n") == 1 and [p.name for p in tmp_path.iterdir()] == ["d.npy"]


def test_a_corrupt_chunk_fails_on_the_cluster_as_it_does_here(data, scheduler):
    blob, _ = api.compress(npy_bytes(mnist_test("mnist-binarized", 9)), model="vae-binary", chunk_images=4)
    box = container.read(blob)
    parts = chunks.unpack(box.payload, 9, box.version)
    parts[1].payload = parts[1].payload[:-1]  # its job fails: not a whole number of words
    box.payload = chunks.pack(parts)
    with pytest.raises(BbansError) as here:
        api.decompress(box.to_bytes())
    with pytest.raises(BbansError) as there:
        api.decompress(box.to_bytes(), scheduler=scheduler)
    assert str(there.value) == str(here.value) == "truncated or corrupt payload"
