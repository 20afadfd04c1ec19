"""The Python API: arrays and files, the same container as the command line."""
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import bbans
from bbans import api
from bbans.cli import main
from bbans.errors import BbansError
from bbans.measure import mnist_test

ROOT = Path(__file__).resolve().parents[1]


def test_arrays_round_trip_exactly_and_open_with_the_command_line(data, tmp_path):
    images = mnist_test("mnist", 50)
    blob, report = bbans.compress_with_report(images, model="vae-8bit-sparse")
    assert blob == bbans.compress(images, model="vae-8bit-sparse")
    back = bbans.decompress(blob)
    assert back.dtype == images.dtype and back.shape == images.shape and (back == images).all()
    assert isinstance(report, bbans.Report) and report.model == "vae-8bit-sparse" and report.images == 50
    assert report.bits_per_dim == pytest.approx(8 * len(blob) / images.size)
    assert 0.5 < report.neg_elbo_bits_per_dim < 3 and report.test_nll_bits_per_dim is not None
    assert report.nll_bits_per_dim is None  # only with full_figures
    (tmp_path / "x.npy.bbans").write_bytes(blob)
    assert CliRunner().invoke(main, ["decompress", str(tmp_path / "x.npy.bbans")]).exit_code == 0
    assert (np.load(tmp_path / "x.npy") == images).all()


def test_a_file_of_the_command_line_opens_as_images(data, tmp_path):
    images = mnist_test("mnist-binarized", 30)
    np.save(tmp_path / "b.npy", images)
    assert CliRunner().invoke(main, ["compress", str(tmp_path / "b.npy"), "--model", "hvae-binary"]).exit_code == 0
    assert (bbans.decompress((tmp_path / "b.npy.bbans").read_bytes()) == images).all()


@pytest.mark.parametrize("array", [np.arange(12, dtype=np.float32).reshape(3, 4), np.zeros((2, 5, 5), np.uint8),
                                   np.array([], np.int64)])
def test_arrays_no_model_fits_go_to_xz_and_come_back_equal(array):
    blob, report = bbans.compress_with_report(array)
    assert report.method == "xz" and report.model is None and report.neg_elbo_bits_per_dim is None
    back = bbans.decompress(blob)
    assert back.dtype == array.dtype and back.shape == array.shape and (back == array).all()


def test_what_is_not_a_numeric_array_or_not_images_is_refused():
    with pytest.raises(BbansError, match="numeric"):
        bbans.compress(np.array([{"a": 1}], dtype=object))
    blob = api.compress(b"plain text, not images")[0]
    with pytest.raises(BbansError, match="decompress_file"):
        bbans.decompress(blob)


def test_files_by_path_follow_the_command_line(data, tmp_path):
    source = tmp_path / "d.npy"
    np.save(source, mnist_test("mnist", 20))
    report = bbans.compress_file(source, model="vae-8bit")
    assert report.details["output"] == str(source) + ".bbans" and Path(report.details["output"]).exists()
    with pytest.raises(BbansError, match="exists"):
        bbans.compress_file(source, model="vae-8bit")
    original = source.read_bytes()
    source.unlink()
    back = bbans.decompress_file(str(source) + ".bbans")
    assert source.read_bytes() == original and back.model == "vae-8bit" and back.images == 20
    assert back.bits_per_dim == pytest.approx(report.bits_per_dim)
    with pytest.raises(BbansError, match="does not end in .bbans"):
        bbans.decompress_file(source)


def test_the_readme_s_python_examples_run(data, tmp_path):
    """Every ```python block of the README, in a folder of its own, in order."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert len(blocks) >= 2
    env = dict(os.environ, BBANS_DATA=str(Path(data).resolve()))  # it may be relative to here
    for block in blocks:
        run = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, env=env, capture_output=True, text=True)
        assert run.returncode == 0, block + run.stderr


def test_images_no_codec_shrinks_are_stored_as_they_are():
    """Random pixels: neither the model nor xz beats the raw .npy, so the file is that
    .npy and a header."""
    images = np.random.default_rng(1).integers(0, 256, (100, 28, 28), dtype=np.uint8)
    blob, report = bbans.compress_with_report(images)
    assert report.method == "stored" and len(blob) == len(api.compress(b"")[0]) + report.original_bytes
    assert (bbans.decompress(blob) == images).all()
