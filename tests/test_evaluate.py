"""`bbans evaluate`: the shipped flows load and agree with their cards, and the table is
deterministic given a seed."""
import numpy as np
import pytest
import torch

from bbans.cards import markdown
from bbans.measure import mnist_test
from bbans.models.zoo import WEIGHTS, ZOO, card, figures, weights_path
from test_cli import bbans, run_json


@pytest.mark.parametrize("name", ["realnvp", "ffjord"])
def test_flow_weights_load_safely(name):
    saved = torch.load(weights_path(name), weights_only=True)
    assert saved["config"] == ZOO[name]["arch"]


def test_evaluate_is_deterministic_and_covers_every_model_of_the_data(data, tmp_path):
    args = ("evaluate", "--data", "mnist", "-n", 12, "--nll-samples", 4, "--nll-images", 4, "--seed", 5)
    first = run_json(*args, "--plot", tmp_path / "e.png")
    assert run_json(*args) == first
    rows = first["mnist"]["rows"]
    assert [n for n, r in rows.items() if r["kind"] != "classical"] == [
        "vae-8bit", "vae-8bit-mix", "vae-8bit-sparse", "vae-8bit-sparse-wide", "vqvae-8bit", "realnvp", "ffjord"]
    for name in ("realnvp", "ffjord"):
        assert rows[name]["nll_bits_per_dim"] > 0
    assert "coded_bits_per_dim" not in rows["ffjord"]  # a flow without a codec; RealNVP's pays the start-up here:
    assert rows["realnvp"]["coded_bits_per_dim"] > rows["realnvp"]["nll_bits_per_dim"]  # 12 images
    assert rows["ffjord"]["solver"]["method"] == "dopri5" and rows["ffjord"]["evaluations_per_image"] > 0
    for name in ("vae-8bit", "vae-8bit-mix"):  # a VAE's IW bound lies below its -ELBO, which bbans nearly meets
        r = rows[name]
        assert r["nll_bits_per_dim"] < r["bound_bits_per_dim"] < r["coded_bits_per_dim"]
    assert "xz -9e" in rows and rows["xz -9e"]["coded_bits_per_dim"] > 0
    assert (tmp_path / "e.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    other = run_json("evaluate", "--data", "mnist", "-n", 12, "--models", "realnvp", "--seed", 6)
    assert other["mnist"]["rows"]["realnvp"]["nll_bits_per_dim"] != rows["realnvp"]["nll_bits_per_dim"]


def test_realnvp_figures_agree_with_its_card(data):
    nll = figures("realnvp", mnist_test("mnist", 10000).reshape(10000, -1))["nll_bits_per_dim"]
    assert round(nll, 5) == card("realnvp")["test_nll_bits_per_dim"]


@pytest.mark.parametrize("args, message", [
    (("--models", "nope"), "unknown model 'nope'"),
    (("--data", "fashion-mnist", "--models", "realnvp"), "model realnvp is not trained on fashion-mnist"),
])
def test_bad_models_get_one_line(data, args, message):
    code, out = bbans("evaluate", *args)
    assert code == 1 and out.strip() == f"bbans: error: {message}" + (
        "; the zoo has: " + ", ".join(ZOO) if "unknown" in message else "")


def test_the_table_names_every_column(data):
    code, out = bbans("evaluate", "--data", "mnist", "-n", 3, "--models", "realnvp,vae-8bit", "--nll-samples", 2)
    assert code == 0, out
    lines = out.splitlines()
    assert lines[1].split()[:5] == ["model", "kind", "NLL", "-ELBO", "coded"]
    assert lines[2].split()[:2] == ["realnvp", "realnvp"] and lines[2].split()[3] == "-"  # a flow has no -ELBO


def test_a_flow_is_not_a_codec(data, tmp_path):
    src = tmp_path / "d.npy"
    np.save(src, np.zeros((2, 28, 28), np.uint8))
    code, out = bbans("compress", src, "--model", "ffjord")
    assert code == 1 and out.strip() == "bbans: error: model 'ffjord' is a flow: it has no codec, only figures " \
                                        "(bbans evaluate)"
    assert not (tmp_path / "d.npy.bbans").exists()


@pytest.mark.parametrize("name", ["realnvp", "ffjord"])
def test_flow_cards_hold_the_curve_and_the_bound(name):
    c = card(name)
    assert c["test_nll_bits_per_dim"] > 0 and len(c["curve"]) >= 10
    assert [h["epoch"] for h in c["curve"]] == sorted(h["epoch"] for h in c["curve"])
    text = (WEIGHTS.parent / f"{name}.md").read_text()
    assert text == markdown(c) and "uniform-dequantization bound" in text
