"""Models of a user's own images (`bbans train --data`): the tiles they train on, the model
file and its card, coding with it, and files made with it refused without it."""
import json
import shutil

import imagecodecs
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from bbans import api, formats, train_data
from bbans.cli import main
from bbans.errors import BbansError
from bbans.measure import npy_bytes
from bbans.models import zoo
from bbans.models.train import train


def smooth(n: int, height: int, width: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, 1, 1, channels)) + rng.integers(-9, 10, (n, height, width, channels)).cumsum(2)
    return np.clip(x, 0, 255).astype(np.uint8)


def test_tiles_cover_the_image_from_the_top_left_and_drop_the_edges():
    x = smooth(2, 70, 65)
    images = formats.Images("npy", b"", x.reshape(2, -1), (70, 65, 3))
    cut = train_data.tiles(images, (32, 32, 3))
    assert cut.shape == (2 * 2 * 2, 32, 32, 3)
    assert (cut[1] == x[0, :32, 32:64]).all() and (cut[2] == x[0, 32:64, :32]).all() and (cut[4] == x[1, :32, :32]).all()
    with pytest.raises(BbansError, match="codes images of 1 channel, and these have 3"):
        train_data.tiles(images, (28, 28, 1))


def test_a_folder_gives_the_tiles_of_its_images_and_passes_over_other_files(tmp_path):
    (tmp_path / "a.png").write_bytes(imagecodecs.png_encode(smooth(1, 64, 96)[0]))
    (tmp_path / "sub").mkdir()
    np.save(tmp_path / "sub" / "b.npy", smooth(5, 32, 32))
    (tmp_path / "notes.txt").write_text("not an image")
    arch, images = train_data.load(tmp_path)
    assert arch == "vae-cifar" and images.shape == (6 + 5, 32, 32, 3)
    with pytest.raises(BbansError, match="no images"):
        train_data.load(tmp_path / "notes.txt")
    np.save(tmp_path / "tiny.npy", smooth(3, 20, 20))
    with pytest.raises(BbansError, match="smaller than 32x32"):
        train_data.load(tmp_path / "tiny.npy")


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """A model file of vae-cifar's architecture, one epoch on 400 smooth images, and its card."""
    folder = tmp_path_factory.mktemp("own")
    np.save(folder / "images.npy", smooth(400, 32, 32))
    out = folder / "mine.pt"
    result = CliRunner().invoke(main, ["train", "--data", str(folder / "images.npy"), "-o", str(out), "--epochs", "1",
                                       "--nll-samples", "2"])
    assert result.exit_code == 0, result.output
    return out


def test_the_model_file_holds_its_recipe_and_has_a_card(model_file):
    name = zoo.from_file(model_file)
    assert zoo.kind(name) == "colour" and zoo.shape(name) == (32, 32, 3) and zoo.recipe(name)["training_images"] == 380
    card = json.loads(model_file.with_suffix(".json").read_text())
    assert card["name"] == "mine.pt" and card["epochs"] == 1 and "test_nll_bits_per_dim" in card
    assert "bbans train --data DATA --arch vae-cifar" in model_file.with_suffix(".md").read_text()
    assert not model_file.with_suffix(".ckpt").exists()  # a finished run needs no checkpoint


def test_coding_with_a_model_file_needs_that_file_to_decode(model_file, tmp_path):
    images = smooth(30, 32, 32, seed=7)
    blob, report = api.compress(npy_bytes(images), model=str(model_file))
    assert report["model"] == "file:mine.pt" and api.info(blob)["model"] == "file:mine.pt"
    assert api.decompress(blob, model=model_file)[0] == npy_bytes(images)
    with pytest.raises(BbansError, match="made with the model file mine.pt; give it with --model"):
        api.decompress(blob)
    other = tmp_path / "other.pt"
    saved = torch.load(model_file, weights_only=True)
    saved["state_dict"]["head.0.bias"][0] += 1
    torch.save(saved, other)
    with pytest.raises(BbansError, match="is not the one this file was made with"):
        api.decompress(blob, model=other)
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(BbansError, match="is not a bbans model file"):
        api.decompress(blob, model=tmp_path / "junk.pt")


def test_a_run_resumes_from_its_checkpoint(tmp_path):
    images = smooth(100, 32, 32)
    out = tmp_path / "run.pt"

    def stop(line):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train("vae-cifar", epochs=2, out=out, images=images, source="test", log=stop)
    assert out.with_suffix(".ckpt").exists() and len(torch.load(out, weights_only=True)["history"]) == 1
    lines = []
    _, history = train("vae-cifar", epochs=2, out=out, images=images, source="test", log=lines.append, resume=True)
    assert lines[0] == "resuming vae-cifar after epoch 1 of 2" and [h["epoch"] for h in history] == [1, 2]
    assert not out.with_suffix(".ckpt").exists()
    train("vae-cifar", epochs=2, out=tmp_path / "whole.pt", images=images, source="test", log=lines.append)
    resumed, whole = (torch.load(p, weights_only=True)["state_dict"] for p in (out, tmp_path / "whole.pt"))
    assert all(torch.equal(resumed[k], whole[k]) for k in whole)  # as if never stopped
    with pytest.raises(BbansError, match="no checkpoint"):
        train("vae-cifar", epochs=2, out=out, images=images, source="test", resume=True)


def test_a_finished_run_extends_to_more_epochs(tmp_path):
    """A finished run goes on from its weights, seeded by the epoch it starts at: twice the
    same extension, the same weights."""
    images = smooth(100, 32, 32)
    out = tmp_path / "run.pt"
    train("vae-cifar", epochs=1, out=out, images=images, source="test", log=lambda line: None)
    first = torch.load(out, weights_only=True)
    shutil.copy(out, tmp_path / "again.pt")
    lines = []
    _, history = train("vae-cifar", epochs=2, out=out, images=images, source="test", log=lines.append, resume=True)
    assert lines[0] == "extending vae-cifar from epoch 1 to 2" and [h["epoch"] for h in history] == [1, 2]
    assert history[0] == first["history"][0] and not out.with_suffix(".ckpt").exists()
    train("vae-cifar", epochs=2, out=tmp_path / "again.pt", images=images, source="test", log=lines.append, resume=True)
    extended, again = (torch.load(p, weights_only=True)["state_dict"] for p in (out, tmp_path / "again.pt"))
    assert all(torch.equal(extended[k], again[k]) for k in again)
    assert not all(torch.equal(extended[k], first["state_dict"][k]) for k in again)


def test_a_run_stopped_inside_an_epoch_goes_on_with_the_rest_of_it(tmp_path, monkeypatch):
    """A recipe's stop_epoch (as FFJORD's) cuts a run short; extending it trains the rest
    of that epoch (5 steps an epoch here: 2, then 3) and on."""
    images = smooth(100, 32, 32)
    out = tmp_path / "run.pt"
    monkeypatch.setitem(zoo.ZOO, "vae-cifar", dict(zoo.ZOO["vae-cifar"], stop_epoch=0.4))
    train("vae-cifar", epochs=2, out=out, images=images, source="test", log=lambda line: None)
    assert [h["epoch"] for h in torch.load(out, weights_only=True)["history"]] == [0.4]
    lines = []
    _, history = train("vae-cifar", epochs=2, out=out, images=images, source="test", log=lines.append, resume=True)
    assert lines[0] == "extending vae-cifar from epoch 0.4 to 2" and [h["epoch"] for h in history] == [0.4, 1, 2]


def test_a_recipe_with_a_start_trains_on_from_that_models_weights(data, tmp_path, monkeypatch):
    """hvae-binary-flowq begins as hvae-binary with flows added: one step on, the parts
    they share are hvae-binary's give or take a step of Adam."""
    monkeypatch.setitem(zoo.ZOO, "hvae-binary-flowq", dict(zoo.ZOO["hvae-binary-flowq"], stop_epoch=0.002))
    lines = []
    net, _ = train("hvae-binary-flowq", out=tmp_path / "q.pt", log=lines.append)
    assert lines[0] == "starting hvae-binary-flowq from hvae-binary's weights"
    base, tuned = zoo.load_network("hvae-binary").state_dict(), net.state_dict()
    assert any(k.startswith("post.") for k in tuned) and not any(k.startswith("post.") for k in base)
    assert all(float((tuned[k] - base[k]).abs().max()) < 1e-3 for k in base)
    monkeypatch.setitem(zoo.ZOO, "hvae-binary-flowq", dict(zoo.ZOO["hvae-binary-flowq"], start="vae-binary"))
    with pytest.raises(BbansError, match="is not vae-binary with parts added"):
        train("hvae-binary-flowq", out=tmp_path / "wrong.pt")


def test_too_few_images_are_refused(tmp_path):
    with pytest.raises(BbansError, match="too few"):
        train("vae-cifar", epochs=1, out=tmp_path / "few.pt", images=smooth(5, 32, 32), source="test")
    assert not list(tmp_path.iterdir())


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_a_gpu_asked_for_where_there_is_none_is_refused(tmp_path):
    with pytest.raises(BbansError, match="no CUDA GPU"):
        train("vae-cifar", epochs=1, out=tmp_path / "gpu.pt", images=smooth(40, 32, 32), source="test", device="cuda")


def test_a_model_file_of_any_name_is_recorded_in_ascii(model_file, tmp_path):
    renamed = tmp_path / ("modèle-" + "x" * 240 + ".pt")
    renamed.write_bytes(model_file.read_bytes())
    blob, report = api.compress(npy_bytes(smooth(3, 32, 32)), model=str(renamed))
    assert report["model"].startswith("file:mod?le-xx") and len(report["model"]) == 205
    assert api.decompress(blob, model=renamed)[0] == npy_bytes(smooth(3, 32, 32))
