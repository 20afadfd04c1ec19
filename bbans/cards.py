"""Model cards: the test-set figures of a trained model, as JSON and as markdown."""
import json
from pathlib import Path

import torch

from bbans import api, chunks, container, measure, messages
from bbans.codecs.vae import BitSwapCodec
from bbans.codecs.vq import VQCodec
from bbans.measure import VARIANTS, mnist_test, npy_bytes
from bbans.models.data import load_images
from bbans.models.intnet import describe
from bbans.models import zoo
from bbans.models.train import own_split
from bbans.models.zoo import WEIGHTS, ZOO, figures, from_file, is_codec, kind, load

LABELS = {
    "test_neg_elbo_bits_per_dim": "-ELBO (one posterior sample per image)",
    "test_nll_bits_per_dim": "NLL (importance-weighted bound, {nll_samples} samples, on {nll_images:,} evenly "
                             "spaced test images)",
    "test_model_bits_per_dim": "model cost -log2 p(z) - log2 p(x \\| z_q), autoregressive prior",
    "test_latent_bits_per_dim": "of which the codes, -log2 p(z)",
    "test_pixel_bits_per_dim": "of which the pixels, -log2 p(x \\| z_q)",
    "test_factorized_model_bits_per_dim": "model cost with the factorized prior",
    "test_uniform_model_bits_per_dim": "model cost with a uniform prior",
    "test_bbans_bits_per_dim": "bbans, every byte of the file ({test_compressed_bytes} bytes)",
    "test_first_image_bitswap_bits_per_dim": "the first test image alone, coded with Bit-Swap (the message)",
    "test_first_image_plain_bits_per_dim": "the first test image alone, coded with plain BB-ANS (the message)",
    "test_bbans_factorized_bits_per_dim": "bbans with the factorized prior",
    "test_bbans_uniform_bits_per_dim": "bbans with a uniform prior",
    "test_nll_trace_std_error_bits_per_dim": "standard error of the NLL from the Hutchinson trace probes",
}
FLOW_NLL = ("NLL, the uniform-dequantization bound E_u[-log2 p((x + u) / 256)] / D + 8 with every Jacobian "
            "(logit pre-processing included), one draw of u per image")
FLOW_NOTES = {"solver": "Solver of the test NLL", "evaluations_per_image": "Function evaluations per test image "
              "(both continuous flows)", "trace": "Trace of the test NLL"}
TITLES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "cifar-10": "CIFAR-10"}
TRAINING_IMAGES = {"mnist": 60_000, "fashion-mnist": 60_000, "cifar-10": 50_000}
CURVE_IMAGES = {"cifar-10": "every fifth test image (2,000; the set is sorted by class)"}  # else the first 2,000
CURVE_LABELS = {"test_neg_elbo_bits_per_dim": "-ELBO", "test_bits_per_dim": "model cost"}
SIMD_ORDER = {"DEFAULT": 0, "AVX2": 1, "AVX512": 2}  # a card lists the speeds on the plainest SIMD level first
CURVE_NOTES = {"ffjord": ", solved with the training solver: dopri5, rtol = atol = 1e-3"}


def other_priors(name: str, pixels, blob: bytes) -> dict:
    """A VQ-VAE's achieved rates with its other priors: the same file, another message."""
    box = container.read(blob)
    header = len(blob) - sum(len(c.payload) - messages.LATENT_BITS.size for c in chunks.unpack(box.payload, box.images, box.version))
    model, _ = load(name)
    return {f"test_bbans_{prior}_bits_per_dim": round(8 * (header + 4 * len(VQCodec(model, prior).encode(pixels)[0]))
                                                      / pixels.size, 5) for prior in ("factorized", "uniform")}


def first_image(name: str, pixels) -> dict:
    """A hierarchical model's cost of the first image alone, coded with Bit-Swap and with
    plain BB-ANS: the start-up cost that Bit-Swap keeps from growing with depth."""
    model, _ = load(name)
    return {f"test_first_image_{way}_bits_per_dim": round(32 * len(BitSwapCodec(model, bit_swap=b).encode(pixels[:1]))
                                                          / pixels[:1].size, 3)
            for way, b in (("bitswap", True), ("plain", False))}


def test_images(name: str):
    """The card's test set for model NAME: its data set's 10,000 test images, binarized where it is."""
    recipe = ZOO[name]
    if recipe["data"] not in VARIANTS:
        return load_images(recipe["data"], "test")
    return mnist_test("mnist-binarized" if recipe["binarized"] else recipe["data"], 10000)


def write_card(name: str, nll_samples=None, nll_images=None) -> dict:
    """Measures model NAME on its test set and writes its card: the NLL bound with
    `nll_samples` importance samples on `nll_images` test images (default: the recipe's
    "card_nll", else 1,000 samples on every image)."""
    recipe = ZOO[name]
    default_samples, default_images = recipe.get("card_nll", (1000, None))
    title = TITLES[recipe["data"]]
    card = measured(name, test_images(name), default_samples if nll_samples is None else nll_samples,
                    default_images if nll_images is None else nll_images,
                    data=f"{title} training set ({TRAINING_IMAGES[recipe['data']]:,} images"
                         f"{', dynamically binarized' if recipe['binarized'] else ''})",
                    test_data=f"{title} test set, 10,000 images"
                              f"{' binarized with RandomState(0)' if recipe['binarized'] else ''}")
    save(card)
    return measure_speed(name) if is_codec(name) else {k: v for k, v in card.items() if k != "curve"}


def write_file_card(path, images, nll_samples=None, nll_images=None) -> dict:
    """The card of a model file that `bbans train --data` trained on `images`, written
    beside it (.json, .md): its figures on the images it held out (own_split), the NLL
    bound with 100 samples on at most 1,000 of them unless told otherwise."""
    name = from_file(path)
    recipe = zoo.recipe(name)
    _, held, _ = own_split(images, recipe["base"], recipe["summary"])
    card = measured(name, held, 100 if nll_samples is None else nll_samples,
                    min(len(held), 1000) if nll_images is None else nll_images,
                    data=f"{recipe['training_images']:,} images (tiles of {'x'.join(map(str, recipe['shape']))})",
                    test_data=f"{len(held):,} images held out of the training data (every twentieth)")
    card.update(name=Path(path).name, kind=recipe["kind"], curve_images="the held-out images",
                reproduce=f"bbans train --data DATA --arch {recipe['base']}")
    Path(path).with_suffix(".json").write_text(json.dumps(card, indent=1) + "\n")
    Path(path).with_suffix(".md").write_text(markdown(card))
    return {k: v for k, v in card.items() if k != "curve"}


def measured(name: str, images, nll_samples, nll_images, data: str, test_data: str) -> dict:
    """A model's card (without its speed) from its figures on test `images`: the float
    model's, and bbans's file of them."""
    recipe = zoo.recipe(name)
    pixels = images.reshape(len(images), -1)
    saved = torch.load(zoo.weights_file(name), weights_only=True)
    history = saved["history"]
    codec = is_codec(name)
    blob, report = api.compress(npy_bytes(images), model=name, model_only=True) if codec else (None, None)
    fig = figures(name, pixels, nll_samples=nll_samples, nll_images=nll_images)
    return dict(
        name=name, summary=recipe["summary"], architecture=saved["config"],
        parameters=sum(v.numel() for v in saved["state_dict"].values()), data=data, test_data=test_data,
        recipe={k: recipe[k] for k in ("start", "epochs", "stop_epoch", "batch", "lr", "warmup", "free_bits", "clip",
                                       "seed") if k in recipe},
        training_minutes=history[-1]["minutes"], epochs=history[-1]["epoch"],
        **{f"test_{k}": round(v, 5) for k, v in fig.items() if k.endswith("bits_per_dim")},
        **{k: fig[k] for k in ("nll_samples", "nll_images", *FLOW_NOTES) if k in fig},
        **(dict(test_bbans_bits_per_dim=round(report["bits_per_dim"], 5),
                test_compressed_bytes=report["compressed_bytes"]) if codec else {}),
        **(other_priors(name, pixels, blob) if kind(name) == "vqvae" else {}),
        **({"reproduce": recipe["reproduce"]} if "reproduce" in recipe else {}), curve=history)


def measure_speed(name: str) -> dict:
    """Times the model's codec on the card's test set (as `bbans bench` does: one core,
    the fastest of its runs each way, in a fresh process) and writes the figures, with
    the size of the file (and a hierarchical model's first image), into its card, which
    it returns (without the curve)."""
    card = json.loads((WEIGHTS / f"{name}.json").read_text())
    images = test_images(name)
    blob, report, _ = measure.in_fresh_process(measure.compress_measured, npy_bytes(images), name, measure.REPEAT)
    _, back, _ = measure.in_fresh_process(measure.decompress_measured, blob, measure.REPEAT)
    speed = dict(machine=report["machine"], compress_images_per_s=round(len(images) / report["seconds"]),
                 decompress_images_per_s=round(len(images) / back["seconds"]))
    same = ("cpu", "simd", "torch_simd", "kernel")  # a new head kernel supersedes the earlier speed
    others = [s for s in card.get("speeds", []) if any(s["machine"][k] != speed["machine"][k] for k in same)]
    card.update(speed, speeds=sorted([speed] + others, key=lambda s: SIMD_ORDER.get(s["machine"]["torch_simd"], 9)),
                test_bbans_bits_per_dim=round(report["bits_per_dim"], 5), test_compressed_bytes=report["compressed_bytes"],
                **(first_image(name, images.reshape(len(images), -1)) if kind(name) == "hvae" else {}))
    save(card)
    return {k: v for k, v in card.items() if k != "curve"}


def save(card: dict):
    (WEIGHTS / f"{card['name']}.json").write_text(json.dumps(card, indent=1) + "\n")
    (WEIGHTS.parent / f"{card['name']}.md").write_text(markdown(card))


def markdown(c: dict) -> str:
    metric = next(k for k in c["curve"][0] if k in CURVE_LABELS)
    model_kind = c.get("kind") or kind(c["name"])  # a model file's card names its kind
    flow, codec = model_kind in zoo.FLOWS, model_kind in zoo.EXACT
    label = "NLL" if flow else CURVE_LABELS[metric]
    curve = "\n".join(f"| {h['epoch']} | {h['minutes']} | {h[metric]} |" for h in c["curve"]
                      if flow or h["epoch"] % 5 == 0 or h["epoch"] in (1, c["epochs"]))
    speed = "; ".join(f"{s['compress_images_per_s']:,} images/s to compress, {s['decompress_images_per_s']:,} to "
                      f"decompress on {describe(s['machine'])}" for s in c.get("speeds", []))
    if "compress_images_per_s" in c and not speed:  # measured before the cards named the machine
        speed = f"{c['compress_images_per_s']:,} images/s to compress, {c['decompress_images_per_s']:,} to decompress"
    speed = f"{speed} (`python -m bbans.cards speed NAME` re-measures it here)" if speed else "not measured"
    labels = dict(LABELS, test_nll_bits_per_dim=FLOW_NLL) if flow else LABELS
    rows = "\n".join(f"| {text.format(**c)} | {c[key]} |" for key, text in labels.items() if key in c)
    notes = "".join(f"- {text}: {json.dumps(c[key])}.\n" for key, text in FLOW_NOTES.items() if key in c)
    curve_images = c.get("curve_images") or CURVE_IMAGES.get(ZOO[c["name"]]["data"], "the first 2,000 test images")
    return f"""# {c['name']}

{c['summary']}.

- Architecture: `{json.dumps(c['architecture'])}`, {c['parameters']:,} parameters (stored as \
{'float32' if flow else 'float16'}).
- Training data: {c['data']}; recipe `{json.dumps(c['recipe'])}`.
- Training time: {c['training_minutes']} minutes for {c['epochs']} epochs on this project's 2-core CPU
  (one torch thread, sharing the machine with other work). Reproduce: `{c.get('reproduce', 'bbans train ' + c['name'])}`.
- Test data: {c['test_data']}.
- {f'Speed on one core: {speed}.' if codec else
   'A flow without a codec: `bbans evaluate` shows its figures beside the codecs.'}
{notes}
| figure (bits/dim, test set) | value |
| --- | --- |
{rows}

Training curve ({label} on {curve_images}{CURVE_NOTES.get(model_kind, '')}):

| epoch | minutes | {label} bits/dim |
| --- | --- | --- |
{curve}
"""


if __name__ == "__main__":
    import sys
    if sys.argv[1:2] != ["speed"]:
        sys.exit("usage: python -m bbans.cards speed NAME...")
    for name in sys.argv[2:]:
        print(json.dumps(measure_speed(name)), flush=True)
