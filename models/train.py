"""Training of the zoo's models on the CPU, checkpointing every epoch."""
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch

from bbans.models.data import load_images
from bbans.models.intnet import calibrate
from bbans.models.zoo import ARCHS, INTEGER, ZOO, is_codec, kind, weights_path

EVAL_IMAGES = 2000
CALIBRATION_IMAGES = 10_000


def save(vae, history, path, half=True, calibration=None):
    """Weights, config, training history and the calibration of the integer form (for
    the kinds that have one); codecs' weights in float16, flows' in float32."""
    tmp = path.with_suffix(".tmp")
    torch.save({"config": vae.config,
                "state_dict": {k: v.half() if half else v for k, v in vae.state_dict().items()},
                "history": history, **({"calibration": calibration} if calibration else {})}, tmp)
    os.replace(tmp, path)


def calibration(name: str, vae, train_set) -> dict:
    """IntNet's calibration of model NAME (bbans.models.intnet.calibrate) on the first
    CALIBRATION_IMAGES of its training set (binarized with seed 0 where the model's
    are), as the coder sees its weights: rounded to float16."""
    recipe = ZOO[name]
    net = ARCHS[kind(name)](**recipe["arch"])
    net.load_state_dict({k: v.half().float() for k, v in vae.state_dict().items()})
    images = batch_images(train_set[:CALIBRATION_IMAGES], recipe["binarized"], np.random.RandomState(0))
    return calibrate(net.eval(), images)


def batch_images(images, binarized, rng):
    if binarized:
        return torch.from_numpy((rng.random_sample(images.shape) < images / 255).astype(np.float32))
    return torch.from_numpy(images.astype(np.float32))


def batch_loss(model, x, epoch, recipe):
    """The training loss per pixel; a VAE's KL term warms up over recipe["warmup"] epochs."""
    if not hasattr(model, "elbo_terms"):
        return model.training_loss(x)
    rec, kl = model.elbo_terms(x)
    return (min(1.0, (epoch + 1) / recipe["warmup"]) * kl - rec).mean() / 784


@torch.no_grad()
def test_metric(model, test, binarized):
    """(name, value) of the held-out figure logged each epoch: a VAE's -ELBO, a VQ-VAE's
    cost with its autoregressive prior, in bits/dim."""
    x = batch_images(test, binarized, np.random.RandomState(0))
    if not hasattr(model, "elbo_terms"):
        return "test_bits_per_dim", model.test_bits_per_dim(x)
    rec, kl = model.elbo_terms(x)
    return "test_neg_elbo_bits_per_dim", float((kl - rec).mean() / (784 * math.log(2)))


def train(name, epochs=None, threads=1, log=print, out=None):
    recipe = ZOO[name]
    epochs = epochs or recipe["epochs"]
    torch.set_num_threads(threads)
    torch.manual_seed(recipe["seed"])
    rng = np.random.RandomState(recipe["seed"])
    train_set = load_images(recipe["data"], "train")
    test = load_images(recipe["data"], "test")[:EVAL_IMAGES]
    vae = ARCHS[kind(name)](**recipe["arch"])
    opt = torch.optim.Adam(vae.parameters(), lr=recipe["lr"])
    per_epoch = len(train_set) // recipe["batch"]
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, recipe["lr"], total_steps=epochs * per_epoch, pct_start=0.02)
    path = out or weights_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    half = is_codec(name)
    history, start = [], time.time()

    def checkpoint(step):
        vae.eval()
        metric, value = test_metric(vae, test, recipe["binarized"])
        vae.train()
        epoch = step // per_epoch if step % per_epoch == 0 else round(step / per_epoch, 3)
        history.append({"epoch": epoch, "minutes": round((time.time() - start) / 60, 2), metric: round(value, 5)})
        log(json.dumps(history[-1]))
        save(vae, history, path, half, calibration(name, vae, train_set) if kind(name) in INTEGER else None)

    # stop_epoch: where a run was cut short of its schedule (the learning rate follows `epochs`)
    stop, step = round(recipe.get("stop_epoch", epochs) * per_epoch), 0
    for epoch in range(epochs):
        order = rng.permutation(len(train_set))
        vae.train()
        for i in range(per_epoch):
            idx = order[i * recipe["batch"]:(i + 1) * recipe["batch"]]
            x = batch_images(train_set[idx], recipe["binarized"], rng)
            loss = batch_loss(vae, x, epoch, recipe)
            opt.zero_grad()
            loss.backward()
            if "clip" in recipe:
                torch.nn.utils.clip_grad_norm_(vae.parameters(), recipe["clip"])
            opt.step()
            sched.step()
            step += 1
            if step == stop or (i + 1) % recipe.get("curve_every", per_epoch) == 0 or i + 1 == per_epoch:
                checkpoint(step)
            if step == stop:
                return vae, history
    return vae, history


if __name__ == "__main__":
    import sys
    train(sys.argv[1], threads=int(sys.argv[2]), out=Path(sys.argv[3]) if len(sys.argv) > 3 else None)
