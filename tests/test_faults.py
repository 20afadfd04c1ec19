"""Every kind of bad input of benchmarks/faults.py, on small files of every method: each
ends in the documented error (the benchmark runs the same at full scale)."""
import pytest

from benchmarks.faults import cases, outcome, small_files


@pytest.fixture(scope="module")
def files(data):
    return small_files()


@pytest.mark.parametrize("name", ["vae-binary", "hvae-binary", "vae-8bit", "vae-8bit-mix", "vae-8bit-sparse", "vqvae-8bit",
                                  "realnvp", "vae-cifar", "mixed chunks", "pixels npy", "pixels png", "pixels ppm", "jpeg-recoded", "xz",
                                  "stored", "folder"])
def test_every_bad_variant_is_refused(files, name):
    for fault, bad in cases(files[name], payload_step=97).items():
        refused = [outcome(b)[0] for b in bad]
        assert all(refused), (fault, refused.index(False))
