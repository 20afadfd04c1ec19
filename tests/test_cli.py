import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from bbans.api import STORED_HEADER
from bbans.messages import METHODS
from bbans.measure import mnist_test, npy_bytes
from bbans.cli import main
from bbans.models.zoo import card, kind

ROOT = Path(__file__).resolve().parents[1]


def bbans(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.output


def run_json(*args):
    code, out = bbans(*args, "--json")
    assert code == 0, out
    return json.loads(out)


@pytest.mark.parametrize("variant, model, picked, n", [
    ("mnist-binarized", None, "hvae-binary", 10000), ("mnist", None, "vae-8bit-sparse-wide", 10000),
    ("fashion-mnist", None, "vae-fashion-flowq", 10000), ("mnist", "vqvae-8bit", "vqvae-8bit", 2000),
    ("mnist-binarized", "vae-binary-fast", "vae-binary-fast", 10000)])
def test_whole_test_set_round_trips_byte_for_byte(data, tmp_path, variant, model, picked, n):
    """Each data set gets its own default model (MNIST and Fashion-MNIST are told apart
    by which codes the first images smaller), and the rate stays within 1% of the
    model's own cost: a VAE's -ELBO, a VQ-VAE's -log2 p(z) - log2 p(x|z_q) (on the first
    2,000 images: it codes some ten times slower than the VAEs)."""
    src = tmp_path / "digits.npy"
    np.save(src, mnist_test(variant, n))
    original = src.read_bytes()
    r = run_json("compress", src, *(["--model", model] if model else []))
    packed = tmp_path / "digits.npy.bbans"
    assert r["model"] == picked and r["method"] == METHODS[kind(picked)]
    assert r["n_images"] == n and r["n_dims"] == n * 784
    assert r["compressed_bytes"] == packed.stat().st_size
    assert r["bits_per_dim"] == pytest.approx(8 * r["compressed_bytes"] / (n * 784))
    vq = kind(picked) == "vqvae"
    assert r["bits_per_dim"] <= 1.01 * r["model_bits_per_dim" if vq else "neg_elbo_bits_per_dim"]
    if vq:
        i = run_json("info", packed)
        header_bits = 8 * r["compressed_bytes"] - n * 784 * (i["latent_bits_per_dim"] + i["pixel_bits_per_dim"])
        assert 0 < header_bits < 8 * 300
        assert i["latent_bits_per_dim"] == pytest.approx(r["latent_bits_per_dim"], rel=0.01)
    src.unlink()
    d = run_json("decompress", packed)
    assert d["output"] == str(src) and src.read_bytes() == original


@pytest.mark.parametrize("variant", ["mnist-binarized", "mnist"])
def test_the_coders_elbo_is_the_float_models(data, tmp_path, variant):
    """The -ELBO the coder finds (its costs at its own z, free) is within 1% of the float
    model's, which --full-figures computes afresh; the report says which it gives, the
    card's test-set NLL beside the former, and the wall time beside the coding time."""
    src = tmp_path / "digits.npy"
    np.save(src, mnist_test(variant, 2000))
    coded = run_json("compress", src)
    full = run_json("compress", src, "--force", "--full-figures", "--nll-samples", 0)
    assert coded["figures"] == "coder" and full["figures"] == "full" and "nll_bits_per_dim" not in full
    assert coded["neg_elbo_bits_per_dim"] == pytest.approx(full["neg_elbo_bits_per_dim"], rel=0.01)
    assert coded["elbo_images"] == 2000 - 1  # all but the first, which pops nothing
    assert coded["test_nll_bits_per_dim"] == card(coded["model"])["test_nll_bits_per_dim"]
    assert coded["wall_seconds"] > coded["seconds"] > 0


def test_a_method_that_does_not_match_the_model_is_refused(data, tmp_path):
    src = tmp_path / "d.npy"
    np.save(src, mnist_test("mnist", 20))
    run_json("compress", src, "--model", "vqvae-8bit", "--nll-samples", 0)
    blob = bytearray((tmp_path / "d.npy.bbans").read_bytes())
    blob[6] = 1  # the method byte: bbans-vae, with a VQ-VAE's name and payload
    (tmp_path / "x.bbans").write_bytes(bytes(blob))
    code, out = bbans("decompress", tmp_path / "x.bbans")
    assert code == 1 and "method bbans-vae with model 'vqvae-8bit'" in out and not (tmp_path / "x").exists()


def test_decoding_with_other_thread_counts(data, tmp_path):
    src = tmp_path / "d.npy"
    np.save(src, mnist_test("mnist", 300))

    def cli(threads, *args):
        code = f"import torch, sys; torch.set_num_threads({threads}); from bbans.cli import main; main(sys.argv[1:])"
        subprocess.run([sys.executable, "-c", code, *map(str, args)], check=True, cwd=ROOT, capture_output=True)

    cli(1, "compress", src, "--nll-samples", 0)
    cli(2, "decompress", f"{src}.bbans", "-o", tmp_path / "back.npy")
    assert (tmp_path / "back.npy").read_bytes() == src.read_bytes()


def test_single_image_is_never_larger_than_the_fallback(data, tmp_path):
    src = tmp_path / "one.npy"
    np.save(src, mnist_test("mnist", 1)[0])
    r = run_json("compress", src, "--nll-samples", 0)
    forced = run_json("compress", src, "-o", tmp_path / "forced.bbans", "--model", "vae-8bit", "--nll-samples", 0)
    assert forced["method"] == "bbans-vae"
    assert r["compressed_bytes"] <= forced["compressed_bytes"]


def test_idx_file_round_trips_byte_for_byte(data, tmp_path):
    images = mnist_test("mnist", 300)
    src = tmp_path / "t300-images-idx3-ubyte"
    src.write_bytes(b"\x00\x00\x08\x03" + struct.pack(">III", 300, 28, 28) + images.tobytes())
    original = src.read_bytes()
    assert run_json("compress", src, "--nll-samples", 0)["layout"] == "idx"
    src.unlink()
    run_json("decompress", f"{src}.bbans")
    assert src.read_bytes() == original


def test_png_restores_pixel_exact_and_info_says_so(data, tmp_path):
    pixels = mnist_test("mnist", 40).reshape(-1, 28)
    Image.fromarray(pixels, "L").save(tmp_path / "d.png")
    run_json("compress", tmp_path / "d.png", "--nll-samples", 0)
    assert run_json("info", tmp_path / "d.png.bbans")["restores"] == "pixel-exact PNG"
    (tmp_path / "d.png").unlink()
    run_json("decompress", tmp_path / "d.png.bbans")
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "d.png")), pixels)


@pytest.mark.parametrize("content, method", [(b"plain text\n" * 50, "xz"), (bytes(range(256)) * 3, "xz"),
                                             (b"", "stored"), (np.random.default_rng(0).bytes(5000), "stored")])
def test_other_files_use_xz_or_are_stored_when_nothing_shrinks_them(tmp_path, content, method):
    src = tmp_path / "f.bin"
    src.write_bytes(content)
    report = run_json("compress", src)
    assert report["method"] == method
    if method == "stored":
        assert report["compressed_bytes"] == len(content) + STORED_HEADER
    src.unlink()
    run_json("decompress", tmp_path / "f.bin.bbans")
    assert src.read_bytes() == content


@pytest.fixture
def packed(data, tmp_path):
    src = tmp_path / "d.npy"
    np.save(src, mnist_test("mnist-binarized", 200))
    run_json("compress", src, "--nll-samples", 0)
    return tmp_path / "d.npy.bbans"


def flip(blob, i):
    return blob[:i] + bytes([blob[i] ^ 0x10]) + blob[i + 1:]


def test_bad_files_fail_with_one_line_and_no_output(packed, tmp_path):
    blob = packed.read_bytes()
    cases = {"truncated": blob[:len(blob) // 2], "payload": flip(blob, len(blob) - 50),
             "model hash": flip(blob, 60), "magic": b"x" + blob[1:], "empty": b"", "short": blob[:30]}
    out = tmp_path / "out.npy"
    for name, bad in cases.items():
        target = tmp_path / f"{name}.bbans"
        target.write_bytes(bad)
        code, message = bbans("decompress", target, "-o", out)
        assert code != 0 and message.startswith("bbans: error: ") and message.count("\n") == 1, (name, message)
        assert "Traceback" not in message and not out.exists(), name
    assert "other weights" in bbans("decompress", tmp_path / "model hash.bbans", "-o", out)[1]


def test_existing_output_needs_force(packed, tmp_path):
    code, message = bbans("compress", tmp_path / "d.npy", "--nll-samples", 0)
    assert code == 1 and "--force" in message
    assert bbans("compress", tmp_path / "d.npy", "--nll-samples", 0, "--force")[0] == 0
    code, message = bbans("decompress", tmp_path / "d.npy.bbans")
    assert code == 1 and "exists" in message


def test_models_lists_the_zoo():
    rows = json.loads(bbans("models", "--json")[1])
    assert {"vae-binary", "vae-8bit"} <= set(rows)


def test_missing_or_unreadable_input_is_one_line(tmp_path):
    for target in (tmp_path / "missing.npy", tmp_path):
        code, message = bbans("compress", target)
        assert code == 1 and message.startswith("bbans: error: ") and message.count("\n") == 1


def test_a_file_from_an_environment_with_other_model_outputs_is_refused(data, monkeypatch):
    """The decoder recomputes the probe fingerprint before decoding; a model whose
    outputs moved by one step of the parameter grid is caught."""
    from bbans import api, messages
    from bbans.errors import BbansError
    from bbans.models import zoo
    blob, _ = api.compress(npy_bytes(mnist_test("mnist-binarized", 20)), model="vae-binary")
    model, weights_hash = zoo.load("vae-binary")

    class Drifted:
        def __getattr__(self, name):
            return getattr(model, name)

        def decode(self, z):
            return model.decode(z) + 2.0**-8

    monkeypatch.setattr(zoo, "load", lambda name, integer=True: (Drifted(), weights_hash))
    messages.fingerprint.cache_clear()
    try:
        with pytest.raises(BbansError, match="environment whose model outputs differ"):
            api.decompress(blob)
    finally:
        messages.fingerprint.cache_clear()


def test_verify_checks_without_writing(packed, tmp_path):
    before = sorted(tmp_path.iterdir())
    code, message = bbans("verify", packed)
    assert code == 0 and "OK" in message
    blob = packed.read_bytes()
    packed.write_bytes(flip(blob, len(blob) - 50))
    code, message = bbans("verify", packed)
    assert code == 1 and message.startswith("bbans: error: ") and message.count("\n") == 1
    assert sorted(tmp_path.iterdir()) == before


@pytest.mark.parametrize("force", [False, True])
def test_a_failing_write_leaves_no_output_and_the_old_one_intact(packed, tmp_path, monkeypatch, force):
    """A full disk (ENOSPC from fsync) while writing: one line, exit 1, no new or partial
    file; with --force an existing output stays as it was."""
    import errno
    src, out = tmp_path / "d.npy", tmp_path / "out.bbans"
    original = src.read_bytes()
    if force:
        out.write_bytes(b"old output")

    def full_disk(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("os.fsync", full_disk)
    before = sorted(tmp_path.iterdir())
    code, message = bbans("compress", src, "-o", out, "--nll-samples", 0, *(["--force"] if force else []))
    assert code == 1 and "No space left on device" in message and message.count("\n") == 1
    assert sorted(tmp_path.iterdir()) == before and src.read_bytes() == original
    assert (out.read_bytes() == b"old output") if force else not out.exists()


def test_an_interrupt_leaves_no_output(data, tmp_path):
    import signal
    import time
    src = tmp_path / "d.npy"
    np.save(src, np.concatenate([mnist_test("mnist", 10000)] * 4))
    # Started as a shell starts it, with SIGINT at its default: a child inherits an ignored
    # SIGINT, and Python then leaves it ignored (something earlier in the run may ignore it).
    proc = subprocess.Popen([sys.executable, "-c", "from bbans.cli import main; main()", "compress", str(src)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(4)  # past start-up, inside the coding of 40,000 images
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err == "bbans: error: interrupted; nothing written\n"
    assert [p.name for p in tmp_path.iterdir()] == ["d.npy"]


def test_workers_on_the_command_line(data, tmp_path):
    src = tmp_path / "d.npy"
    np.save(src, mnist_test("mnist-binarized", 250))
    run_json("compress", src, "-o", tmp_path / "one.bbans", "--chunk-images", 100, "--nll-samples", 0)
    r = run_json("compress", src, "-o", tmp_path / "two.bbans", "--chunk-images", 100, "--workers", 2,
                 "--nll-samples", 0)
    assert r["chunks"] == 3 and (tmp_path / "one.bbans").read_bytes() == (tmp_path / "two.bbans").read_bytes()
    run_json("decompress", tmp_path / "two.bbans", "-o", tmp_path / "back.npy", "--workers", 2)
    assert (tmp_path / "back.npy").read_bytes() == src.read_bytes()
    assert run_json("verify", tmp_path / "two.bbans", "--workers", 2)["ok"]


def test_a_real_file_size_limit_mid_write_leaves_nothing(packed, tmp_path):
    """The kernel refuses writes past RLIMIT_FSIZE (EFBIG), as a full disk would refuse
    them (ENOSPC): the output is never complete, and nothing is left behind."""
    import resource
    limit = 1000  # bytes; the container is larger

    def limited():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    out = tmp_path / "out.bbans"
    before = sorted(tmp_path.iterdir())
    proc = subprocess.run([sys.executable, "-c", "from bbans.cli import main; main()", "compress", str(tmp_path / "d.npy"),
                           "-o", str(out), "--nll-samples", "0"], cwd=ROOT, capture_output=True, text=True,
                          preexec_fn=limited)
    assert proc.returncode == 1 and proc.stderr.startswith("bbans: error: ") and proc.stderr.count("\n") == 1
    assert "too large" in proc.stderr.lower()
    assert sorted(tmp_path.iterdir()) == before


@pytest.mark.parametrize("version, variant, model", [
    (version, *vm) for version in (1, 2, 3, 4) for vm in (("mnist-binarized", "vae-binary"), ("mnist", "vae-8bit"))]
    + [(version, "mnist-binarized", "hvae-binary") for version in (3, 4)])
def test_files_of_earlier_versions_still_decompress(data, version, variant, model):
    """Versions 1 and 2 coded a VAE's latents and binary pixels the legacy way, up to
    version 3 the networks ran on float64 grids, not on integers, and up to version 4
    each latent had a Gaussian of its own and binary pixels went bit by bit; version 1
    also had no fingerprint and no chunk table (one message)."""
    from bbans import api, chunks, container, messages
    images = mnist_test(variant, 20)
    original = npy_bytes(images)
    box = container.read(api.compress(original, model=model)[0])
    message = messages.encode(model, images.reshape(len(images), -1), version)
    assert message != chunks.unpack(box.payload, box.images, box.version)[0].payload
    name = box.model.encode()
    header = container.FIXED.pack(b"BBANS", version, container.METHODS.index(box.method), 1, box.size, box.sha256,
                                  box.images, box.model_hash)
    if version == 1:
        old = header + container.LENGTHS.pack(len(name), len(box.meta)) + name + box.meta + message
    else:
        table = chunks.pack([chunks.Chunk(len(images), message, chunks.pixel_sha(images))])
        old = header + messages.fingerprint(model, version) + container.LENGTHS.pack(len(name), len(box.meta)) + name \
            + box.meta + table
    assert api.decompress(old)[0] == original
    assert api.info(old)["chunks"] == 1


def test_bench_without_its_extra_says_how_to_get_it(monkeypatch):
    import importlib
    from bbans import cli
    real = importlib.import_module

    def missing(name, *args):
        if name in ("bbans.bench", "bbans.evaluate"):
            raise ModuleNotFoundError("No module named 'zstandard'", name="zstandard")
        return real(name, *args)

    monkeypatch.setattr(cli.importlib, "import_module", missing)
    for command in ("bench", "evaluate"):
        code, message = bbans(command)
        assert code == 1 and message == f"bbans: error: bbans {command} needs zstandard: pip install 'bbans[bench]'\n"


def test_a_closed_output_pipe_ends_quietly():
    """As `bbans models | head -1` once the reader has gone: no message, status 141."""
    code = ("import click, bbans.cli\n"
            "def gone(*args, **kwargs): raise BrokenPipeError(32, 'Broken pipe')\n"
            "click.echo = gone\n"
            "bbans.cli.main(['models'])")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 141 and run.stderr == ""
