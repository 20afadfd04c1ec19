"""Large inputs a chunk at a time: memory-mapped input, output written as chunks decode,
progress reported after each chunk."""
import json

import pytest
from click.testing import CliRunner

from bbans import api, files
from bbans.measure import mnist_test, npy_bytes
from bbans.errors import BbansError
from bbans import cli


@pytest.fixture(scope="module")
def nine(data):
    return npy_bytes(mnist_test("mnist-binarized", 9))


def test_a_memory_mapped_input_gives_the_same_file(nine, tmp_path):
    path = tmp_path / "x.npy"
    path.write_bytes(nine)
    with files.open_input(path) as mapped:
        from_map, _ = api.compress(mapped, model="vae-binary", chunk_images=4)
    assert from_map == api.compress(nine, model="vae-binary", chunk_images=4)[0]


class Recorder:
    def __init__(self):
        self.writes = []

    def write(self, data):
        self.writes.append(bytes(data))
        return len(data)


def test_decompression_writes_each_chunk_as_it_decodes(nine):
    blob, _ = api.compress(nine, model="vae-binary", chunk_images=4)
    out = Recorder()
    api.decompress_to(blob, out)
    header = len(nine) - 9 * 784
    assert [len(w) for w in out.writes] == [header, 4 * 784, 4 * 784, 784]
    assert b"".join(out.writes) == nine


def test_progress_follows_the_chunks_both_ways(nine):
    calls = []
    blob, report = api.compress(nine, model="vae-binary", chunk_images=4, progress=lambda *a: calls.append(a))
    assert [(done, total, dims) for done, total, _, dims in calls] == [(4, 9, 4 * 784), (8, 9, 8 * 784), (9, 9, 9 * 784)]
    bits = [b for _, _, b, _ in calls]
    assert bits == sorted(bits) and bits[-1] < 8 * report["compressed_bytes"]
    back = []
    api.decompress(blob, progress=lambda *a: back.append(a))
    assert [(done, total, dims) for done, total, _, dims in back] == [(4, 9, 4 * 784), (8, 9, 8 * 784), (9, 9, 9 * 784)]
    assert [b for _, _, b, _ in back] == bits


def test_a_corrupt_chunk_stops_the_stream_and_leaves_no_output(nine, tmp_path):
    blob, _ = api.compress(nine, model="vae-binary", chunk_images=4)
    bad = bytearray(blob)
    bad[-3] ^= 0xFF  # in the last chunk's message
    packed = tmp_path / "x.npy.bbans"
    packed.write_bytes(bytes(bad))
    result = CliRunner().invoke(cli.main, ["decompress", str(packed)])
    assert result.exit_code == 1 and result.output.startswith("bbans: error: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy.bbans"]
    with pytest.raises(BbansError):
        api.decompress(bytes(bad))


def test_quiet_prints_nothing_and_json_one_object(nine, tmp_path):
    src = tmp_path / "x.npy"
    src.write_bytes(nine)
    runner = CliRunner()
    quiet = runner.invoke(cli.main, ["compress", "-q", str(src), "--chunk-images", "4", "--nll-samples", "0"])
    assert quiet.exit_code == 0 and quiet.output == ""
    src.unlink()
    for command in (["verify", "-q"], ["decompress", "-q"]):
        result = runner.invoke(cli.main, [*command, str(src) + ".bbans"])
        assert result.exit_code == 0 and result.output == ""
    assert src.read_bytes() == nine
    result = runner.invoke(cli.main, ["verify", "--json", str(src) + ".bbans"])
    assert json.loads(result.output)["ok"] is True


def test_the_progress_bar_shows_on_a_terminal_only(monkeypatch, capsys):
    monkeypatch.setattr("sys.stderr.isatty", lambda: True)
    with cli.Progress(True) as bar:
        bar(5, 10, 5 * 784, 5 * 784)
        bar(10, 10, 10 * 784, 20 * 784)
    err = capsys.readouterr().err
    assert "10/10" in err and "0.5000 bits/dim" in err
    with cli.Progress(False) as bar:
        bar(10, 10, 784, 784)
    assert capsys.readouterr().err == ""
    monkeypatch.setattr("sys.stderr.isatty", lambda: False)
    with cli.Progress(True) as bar:
        bar(10, 10, 784, 784)
    assert capsys.readouterr().err == ""
