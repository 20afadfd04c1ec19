"""Model cards: the test-set figures of a trained model, as JSON and as markdown."""
import json

import torch

from bbans import api
from bbans.bench import mnist_test, npy_bytes
from models.zoo import WEIGHTS, ZOO, figures, weights_path


def write_card(name: str, nll_samples: int = 1000, nll_images=None) -> dict:
    recipe = ZOO[name]
    variant = "mnist-binarized" if recipe["binarized"] else "mnist"
    images = mnist_test(variant, 10000)
    saved = torch.load(weights_path(name), weights_only=True)
    history = saved["history"]
    blob, report = api.compress(npy_bytes(images), model=name)
    fig = figures(name, images.reshape(len(images), -1), nll_samples=nll_samples, nll_images=nll_images)
    card = dict(
        name=name, summary=recipe["summary"], architecture=saved["config"],
        parameters=sum(v.numel() for v in saved["state_dict"].values()),
        data=f"MNIST training set (60,000 images{', dynamically binarized' if recipe['binarized'] else ''})",
        test_data=f"MNIST test set, 10,000 images{' binarized with RandomState(0)' if recipe['binarized'] else ''}",
        recipe={k: recipe[k] for k in ("epochs", "batch", "lr", "warmup", "seed")},
        training_minutes=history[-1]["minutes"], epochs=len(history),
        test_neg_elbo_bits_per_dim=round(fig["neg_elbo_bits_per_dim"], 5),
        test_nll_bits_per_dim=round(fig["nll_bits_per_dim"], 5), nll_samples=nll_samples,
        nll_images=fig["nll_images"],
        test_bbans_bits_per_dim=round(report["bits_per_dim"], 5), test_compressed_bytes=report["compressed_bytes"],
        curve=history)
    (WEIGHTS / f"{name}.json").write_text(json.dumps(card, indent=1) + "\n")
    (WEIGHTS.parent / f"{name}.md").write_text(markdown(card))
    return {k: v for k, v in card.items() if k != "curve"}


def markdown(c: dict) -> str:
    curve = "\n".join(f"| {h['epoch']} | {h['minutes']} | {h['test_neg_elbo_bits_per_dim']} |" for h in c["curve"]
                      if h["epoch"] % 5 == 0 or h["epoch"] in (1, c["epochs"]))
    return f"""# {c['name']}

{c['summary']}.

- Architecture: `{json.dumps(c['architecture'])}`, {c['parameters']:,} parameters (stored as float16).
- Training data: {c['data']}; recipe `{json.dumps(c['recipe'])}`.
- Training time: {c['training_minutes']} minutes for {c['epochs']} epochs on this project's 2-core CPU
  (one torch thread, sharing the machine with other work). Reproduce: `bbans train {c['name']}`.
- Test data: {c['test_data']}.

| figure (bits/dim, test set) | value |
| --- | --- |
| -ELBO (one posterior sample per image) | {c['test_neg_elbo_bits_per_dim']} |
| NLL (importance-weighted bound, {c['nll_samples']} samples, on {c['nll_images']:,} evenly spaced test images) | {c['test_nll_bits_per_dim']} |
| bbans, every byte of the file ({c['test_compressed_bytes']} bytes) | {c['test_bbans_bits_per_dim']} |

Training curve (-ELBO on the first 2,000 test images):

| epoch | minutes | -ELBO bits/dim |
| --- | --- | --- |
{curve}
"""
