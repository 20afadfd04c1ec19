"""Training of the zoo's models, on their data sets or on a user's images, checkpointing
every epoch: the model file (weights for the coder), and beside it a .ckpt file with all a
run needs to resume (weights, optimizer, schedule, random state)."""
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from bbans.errors import BbansError
from bbans.models.data import load_images
from bbans.models.intnet import calibrate
from bbans.models.zoo import ARCHS, FLOWS, INTEGER, ZOO, kind, shape, weights_path

EVAL_IMAGES = 2000
EXTEND_LR = 0.3  # a run that extends a finished one peaks at this fraction of the recipe's learning rate
CALIBRATION_IMAGES = 10_000


def save(vae, history, path, half=True, calibration=None, recipe=None):
    """Weights, config, training history, the calibration of the integer form (for the
    kinds that have one) and, for a model of a user's images, its recipe; codecs' weights
    in float16, flows' in float32."""
    tmp = path.with_suffix(".tmp")
    torch.save({"config": vae.config,
                "state_dict": {k: (v.half() if half else v).cpu() for k, v in vae.state_dict().items()},
                "history": history, **({"calibration": calibration} if calibration else {}),
                **({"recipe": recipe} if recipe else {})}, tmp)
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
    """The training loss per dimension; a VAE's KL term warms up over recipe["warmup"]
    epochs, or has recipe["free_bits"] nats per latent."""
    if not hasattr(model, "elbo_terms"):
        return model.training_loss(x)
    rec, kl = model.elbo_terms(x, **({"free_bits": recipe["free_bits"]} if "free_bits" in recipe else {}))
    return (min(1.0, (epoch + 1) / recipe["warmup"]) * kl - rec).mean() / x[0].numel()


@torch.no_grad()
def test_metric(model, test, binarized, device="cpu"):
    """(name, value) of the held-out figure logged each epoch: a VAE's -ELBO, a VQ-VAE's
    cost with its autoregressive prior, in bits/dim."""
    x = batch_images(test, binarized, np.random.RandomState(0)).to(device)
    if not hasattr(model, "elbo_terms"):
        return "test_bits_per_dim", model.test_bits_per_dim(x)
    rec, kl = model.elbo_terms(x)
    return "test_neg_elbo_bits_per_dim", float((kl - rec).mean() / (x[0].numel() * math.log(2)))


def held_out(data: str) -> np.ndarray:
    """The EVAL_IMAGES test images of the curve: the first, or for CIFAR-10 (its sets are
    sorted by class) every fifth."""
    test = load_images(data, "test")
    return test[::5][:EVAL_IMAGES] if data == "cifar-10" else test[:EVAL_IMAGES]


def numpy_state(rng: np.random.RandomState) -> tuple:
    """The generator's state with its keys as a tensor, which torch.load(weights_only=True) reads."""
    kind_, keys, *rest = rng.get_state()
    return (kind_, torch.from_numpy(keys.astype(np.int64)), *rest)


def own_split(images: np.ndarray, name: str, source: str, epochs=None):
    """(training images, held-out images, the model file's recipe) for a user's images of
    model NAME's shape: every twentieth held out (at most EVAL_IMAGES), the rest trained on."""
    held = np.zeros(len(images), bool)
    held[np.arange(0, len(images), 20)[:EVAL_IMAGES]] = True
    train_set = images[~held]
    if len(train_set) < ZOO[name]["batch"]:
        raise BbansError(f"{len(images)} images of {'x'.join(map(str, shape(name)))} are too few to train "
                         f"{name}'s architecture on (it needs {ZOO[name]['batch'] + 1} at least)")
    recipe = dict(ZOO[name], epochs=epochs, kind=kind(name), base=name, shape=list(shape(name)), data="own",
                  binarized=False, training_images=len(train_set),
                  summary=f"{name}'s architecture trained on {len(train_set):,} images of {source}")
    return train_set, images[held], recipe


def train(name, epochs=None, threads=1, log=print, out=None, resume=False, images=None, source=None, device="cpu",
          bar=False):
    """Trains model NAME from its recipe into `out` (default its place in the zoo), on its
    data set, or on `images` (N, height, width[, channels]) uint8 of its shape from
    `source` (own_split; the file then holds the recipe too, a model of its own, as
    bbans.models.zoo.from_file reads it). With `resume`, goes on from the checkpoint beside
    `out` (same recipe and epochs), or, where a run at `out` finished fewer `epochs`, from
    its weights for the epochs still to go (a run stopped inside an epoch goes on with the
    rest of it): a fresh learning-rate cycle over them (peak EXTEND_LR of the recipe's),
    seeded by the epoch it starts in. A recipe with "start" begins from that model's weights
    (its own new parts as they start). `device` is torch's; `bar` draws a progress bar."""
    recipe = ZOO[name]
    epochs = epochs or recipe["epochs"]
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BbansError(f"--device {device}: torch sees no CUDA GPU here")
    path = out or weights_path(name)
    state_path = path.with_suffix(".ckpt")
    state, finished, begin = None, None, 0  # begin: the epoch this run's schedule starts at (a fraction: inside one)
    if resume and state_path.exists():
        state = torch.load(state_path, weights_only=True, map_location=device)
        if state["epochs"] != epochs:
            raise BbansError(f"{state_path} is a run of {state['epochs']} epochs, not {epochs}")
        begin = state.get("begin", 0)
    elif resume:
        finished = torch.load(path, weights_only=True) if path.exists() else None
        if finished is None or finished["history"][-1]["epoch"] >= epochs:
            raise BbansError(f"no checkpoint at {state_path} to resume from, nor a finished run of fewer than {epochs} "
                             f"epochs at {path} to extend")
        begin = finished["history"][-1]["epoch"]
    torch.set_num_threads(threads)
    torch.manual_seed(recipe["seed"] + int(begin))
    rng = np.random.RandomState(recipe["seed"] + int(begin))
    own = None
    if images is None:
        train_set, test = load_images(recipe["data"], "train"), held_out(recipe["data"])
    else:
        train_set, test, own = own_split(images, name, source, epochs)
    vae = ARCHS[kind(name)](**recipe["arch"]).to(device)
    opt = torch.optim.Adam(vae.parameters(), lr=recipe["lr"])
    per_epoch = len(train_set) // recipe["batch"]
    begun = round(begin * per_epoch)  # the step the schedule starts at
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, recipe["lr"] * (EXTEND_LR if begin else 1),
                                                total_steps=epochs * per_epoch - begun, pct_start=0.02)
    path.parent.mkdir(parents=True, exist_ok=True)
    half = kind(name) not in FLOWS
    history, start, first = [], time.time(), 0
    if "start" in recipe and not (finished or state):  # fine-tuning a trained model: its weights, the new parts' own
        missing, unexpected = vae.load_state_dict(torch.load(weights_path(recipe["start"]), weights_only=True)
                                                  ["state_dict"], strict=False)
        if unexpected or not missing:
            raise BbansError(f"{name} is not {recipe['start']} with parts added")
        log(f"starting {name} from {recipe['start']}'s weights")
    if finished:
        vae.load_state_dict(finished["state_dict"])
        history, first = finished["history"], int(begin)
        start -= 60 * history[-1]["minutes"]
        log(f"extending {name} from epoch {begin} to {epochs}")
    if state:
        for part, saved in ((vae, "model"), (opt, "optimizer"), (sched, "schedule")):
            part.load_state_dict(state[saved])
        kind_, keys, *rest = state["numpy_rng"]
        rng.set_state((kind_, keys.numpy().astype(np.uint32), *rest))
        torch.set_rng_state(state["torch_rng"].cpu())
        history, first = state["history"], state["epoch"]
        start -= 60 * history[-1]["minutes"]
        log(f"resuming {name} after epoch {first} of {epochs}")
    step = begun if finished else first * per_epoch
    progress = tqdm(total=epochs * per_epoch, initial=step, unit="step", file=sys.stderr,
                    dynamic_ncols=True, disable=not bar)
    say = tqdm.write if bar else log  # above the bar

    def checkpoint(step):
        vae.eval()
        metric, value = test_metric(vae, test, recipe["binarized"], device)
        vae.train()
        epoch = step // per_epoch if step % per_epoch == 0 else round(step / per_epoch, 3)
        history.append({"epoch": epoch, "minutes": round((time.time() - start) / 60, 2), metric: round(value, 5)})
        save(vae, history, path, half, calibration(name, vae, train_set) if kind(name) in INTEGER else None, own)
        if step % per_epoch == 0:
            tmp = state_path.with_suffix(".tmp")
            torch.save({"epochs": epochs, "begin": begin, "epoch": step // per_epoch, "history": history,
                        "model": vae.state_dict(), "optimizer": opt.state_dict(), "schedule": sched.state_dict(),
                        "numpy_rng": numpy_state(rng), "torch_rng": torch.get_rng_state()}, tmp)
            os.replace(tmp, state_path)
        say(json.dumps(history[-1]))

    # stop_epoch: where a run was cut short of its schedule (the learning rate follows `epochs`)
    stop = round((epochs if begin else recipe.get("stop_epoch", epochs)) * per_epoch)
    for epoch in range(first, epochs):
        order = rng.permutation(len(train_set))
        vae.train()
        for i in range(step - epoch * per_epoch, per_epoch):  # the rest of a stopped run's epoch, or all of it
            idx = order[i * recipe["batch"]:(i + 1) * recipe["batch"]]
            x = batch_images(train_set[idx], recipe["binarized"], rng).to(device)
            loss = batch_loss(vae, x, epoch, recipe)
            opt.zero_grad()
            loss.backward()
            if "clip" in recipe:
                torch.nn.utils.clip_grad_norm_(vae.parameters(), recipe["clip"])
            opt.step()
            sched.step()
            step += 1
            if bar:
                progress.update()
                progress.set_postfix_str(f"epoch {epoch + 1}/{epochs}, {loss.item() / math.log(2):.3f} bits/dim")
            if step == stop or (i + 1) % recipe.get("curve_every", per_epoch) == 0 or i + 1 == per_epoch:
                checkpoint(step)
            if step == stop:
                break
        if step == stop:
            break
    progress.close()
    if step == epochs * per_epoch:  # a run that is through needs no resuming
        state_path.unlink(missing_ok=True)
    return vae, history


if __name__ == "__main__":  # python -m bbans.models.train NAME THREADS [OUT] [--resume] [--epochs N]
    import argparse
    parser = argparse.ArgumentParser(prog="python -m bbans.models.train")
    parser.add_argument("name")
    parser.add_argument("threads", type=int)
    parser.add_argument("out", nargs="?", type=Path)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--epochs", type=int)
    args = parser.parse_args()
    train(args.name, args.epochs, args.threads, out=args.out, resume=args.resume)
