"""The `bbans` command: parses arguments, calls the library, reports. The library is
loaded when a command runs (bbans loads its API on first use; bench, evaluate and train
import theirs), so that --help and usage errors answer at once."""
import importlib
import json
import os
import sys
import time
from pathlib import Path

import click

import bbans
from bbans.errors import BbansError
from bbans.files import Discard, write_atomic

STARTED = time.perf_counter()  # the wall time a report gives counts from here


def fail(message: str, code: int = 1):
    click.echo(f"bbans: error: {message}", err=True)
    sys.exit(code)


class Progress:
    """A progress bar on the terminal (images done, images/s, bits/dim so far), drawn
    while the library reports chunks done, and gone when the command ends."""

    def __init__(self, show: bool):
        self.show = show and sys.stderr.isatty()
        self.bar = None

    def __call__(self, done: int, total: int, bits: int, dims: int):
        if not self.show:
            return
        if self.bar is None:
            from tqdm import tqdm
            self.bar = tqdm(total=total, unit="img", file=sys.stderr, leave=False, dynamic_ncols=True,
                            mininterval=0)
        self.bar.set_postfix_str(f"{bits / dims:.4f} bits/dim", refresh=False)
        self.bar.update(done - self.bar.n)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()


def bench_module(name: str):
    """bbans.bench or bbans.evaluate, which need the extra bbans[bench]."""
    try:
        return importlib.import_module(f"bbans.{name}")
    except ImportError as error:
        if error.name not in ("zstandard", "matplotlib"):
            raise
        fail(f"bbans {name} needs {error.name}: pip install 'bbans[bench]'")


def emit(report: dict, as_json: bool, quiet: bool, line: str):
    if as_json or not quiet:
        click.echo(json.dumps(report) if as_json else line)


class App(click.Group):
    """Turns every failure into one line and a non-zero exit: 1 for bad input, corrupt files
    and missing models or data, 3 for an internal error, 130 for an interrupt; a closed
    output pipe ends it quietly with 141."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise  # click's own ends: --help, usage errors
        except BbansError as e:
            fail(str(e))
        except BrokenPipeError:  # the reader went (bbans models | head): end quietly, as a pipe's writer does
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(141)
        except OSError as e:
            fail(f"{e.filename or ''}: {e.strerror or e}".lstrip(": "))
        except KeyboardInterrupt:
            fail("interrupted; nothing written", 130)
        except Exception as e:  # a bug: still one line, and nothing written
            fail(f"internal error ({type(e).__name__}: {e})", 3)


WORKERS = click.option("--workers", default=1, show_default=True, type=click.IntRange(1),
                       help="Processes coding chunks in parallel; the output is the same for any number.")
MODEL_FILE = click.option("--model", "model", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                          help="The model file the .bbans file was made with, where it was (bbans train --data).")
QUIET = click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors (no progress bar, no report).")
JSON = click.option("--json", "as_json", is_flag=True, help="Print one JSON object (and no progress bar).")
SCHEDULER = click.option("--scheduler", metavar="ADDRESS",
                         help="Run the chunks on this Dask scheduler (tcp://host:port) instead of local processes; "
                              "the file is the same.")


@click.group(cls=App)
def main():
    """Lossless compression of image data with bits-back coding (BB-ANS) and trained VAEs."""


@main.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Output file (default FILE.bbans).")
@click.option("-f", "--force", is_flag=True, help="Overwrite the output file.")
@click.option("--model", help="Model of the zoo to use for image input, or a model file of `bbans train --data` "
                              "(default: picked from the images' shape and values).")
@click.option("--full-figures", is_flag=True,
              help="Report the float model's -ELBO on every image and its NLL bound, computed afresh (several times "
                   "the coding time), instead of the -ELBO the coder found and the model's NLL on its test set.")
@click.option("--nll-samples", default=100, show_default=True,
              help="With --full-figures: importance samples per image for the NLL bound (0: no NLL).")
@click.option("--nll-images", default=500, show_default=True,
              help="With --full-figures: evenly spaced images the NLL bound is computed on (0: all).")
@click.option("--model-only", is_flag=True,
              help="Code every chunk with the model, even where a classical codec would be smaller (to set what the "
                   "model codes beside its NLL or -ELBO).")
@WORKERS
@click.option("--chunk-images", type=click.IntRange(1),
              help="Images per independently decodable chunk (default: 7.8 MB of pixels, 10,000 28x28 images; "
                   "never more than that of larger images).")
@SCHEDULER
@QUIET
@JSON
def compress(file, output, force, model, full_figures, nll_samples, nll_images, model_only, workers, chunk_images,
             scheduler, quiet, as_json):
    """Compress FILE: images (npy, idx, PGM, PPM, PNG) chunk by chunk with a model (grey or RGB, any size, in
    its tiles) or a classical image codec, whichever is smaller; a JPEG recoded by JPEG-XL; anything else with
    xz, or stored as it is. A folder's files go one by one into one FILE.bbans."""
    with Progress(not (quiet or as_json)) as progress:
        report = bbans.compress_file(file, output, model=model, force=force, workers=workers, chunk_images=chunk_images,
                                     scheduler=scheduler, full_figures=full_figures, nll_samples=nll_samples,
                                     nll_images=nll_images, progress=progress, model_only=model_only)
    r = dict(report.details, wall_seconds=time.perf_counter() - STARTED)
    line = (f"{file} -> {r['output']}: {r['method']}" + (f" ({r['model']})" if r["model"] else "")
            + f", {r['original_bytes']} -> {r['compressed_bytes']} bytes, {r['bits_per_dim']:.4f} bits/dim")
    figures = model_figures(r)
    emit(r, as_json, quiet, line + (f" ({figures})" if figures else "") + chunk_codecs(r)
         + f", coding {r['seconds']:.2f} s, {r['wall_seconds']:.2f} s in all")
    if not (quiet or as_json):  # --json has them in the object
        for warning in r["warnings"]:
            click.echo(f"bbans: warning: {warning}", err=True)


def chunk_codecs(r: dict) -> str:
    """Where some chunks went to a classical codec: how many went which way."""
    used = r.get("chunk_codecs", {})
    if set(used) <= {r["model"]}:
        return ""
    return ", chunks: " + ", ".join(f"{count} {codec}" for codec, count in used.items())


def model_figures(r: dict) -> str:
    """The report's model figures, as a phrase."""
    if "model_bits_per_dim" in r:
        return (f"model cost {r['model_bits_per_dim']:.4f}: codes {r['latent_bits_per_dim']:.4f}, "
                f"pixels {r['pixel_bits_per_dim']:.4f}")
    if "neg_elbo_bits_per_dim" not in r:
        if "nll_bits_per_dim" not in r:
            return ""
        tested = f"; its test-set NLL {r['test_nll_bits_per_dim']:.4f}" if "test_nll_bits_per_dim" in r else ""
        return f"model NLL {r['nll_bits_per_dim']:.4f}" + ("" if r["figures"] == "full" else f" as coded{tested}")
    if r["figures"] == "full":
        nll = f", NLL {r['nll_bits_per_dim']:.4f} on {r['nll_images']} images" if "nll_bits_per_dim" in r else ""
        return f"model -ELBO {r['neg_elbo_bits_per_dim']:.4f}{nll}"
    nll = f"; its test-set NLL {r['test_nll_bits_per_dim']:.4f}" if "test_nll_bits_per_dim" in r else ""
    return f"model -ELBO {r['neg_elbo_bits_per_dim']:.4f} as coded{nll}"


@main.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path),
              help="Output file, or folder for a folder's (default FILE without .bbans).")
@click.option("-f", "--force", is_flag=True, help="Overwrite the output file.")
@MODEL_FILE
@WORKERS
@SCHEDULER
@QUIET
@JSON
def decompress(file, output, force, model, workers, scheduler, quiet, as_json):
    """Restore the original of FILE.bbans, checked against its SHA-256."""
    with Progress(not (quiet or as_json)) as progress:
        report = bbans.decompress_file(file, output, force=force, workers=workers, scheduler=scheduler,
                                       progress=progress, model=model)
    r = dict(report.details, wall_seconds=time.perf_counter() - STARTED)
    emit(r, as_json, quiet, f"{file} -> {r['output']}: {r['original_bytes']} bytes, {r['method']}"
         + (f" ({r['model'] + ', ' if r['model'] else ''}{r['n_images']} images)" if r["n_images"] else "")
         + f", decoding {r['seconds']:.2f} s, {r['wall_seconds']:.2f} s in all")


@main.command()
@click.argument("file", type=click.Path(path_type=Path))
@MODEL_FILE
@WORKERS
@SCHEDULER
@QUIET
@JSON
def verify(file, model, workers, scheduler, quiet, as_json):
    """Check that FILE.bbans restores its original exactly, writing nothing."""
    from bbans import api, container, folders
    blob = file.read_bytes()
    if container.read(blob).method == "folder":
        r = folders.restore(blob, None, workers=workers, scheduler=scheduler, model=model)
    else:
        with Progress(not (quiet or as_json)) as progress:
            r = api.decompress_to(blob, Discard(), workers=workers, scheduler=scheduler, progress=progress, model=model)
    r.update(input=str(file), ok=True)
    emit(r, as_json, quiet, f"{file}: OK, restores {r['original_bytes']} bytes exactly ({r['method']}"
         + (f", {r['model'] + ', ' if r['model'] else ''}{r['n_images']} images" if r["n_images"] else "") + ")")


@main.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def info(file, as_json):
    """Show what a .bbans file holds."""
    r = bbans.info(file.read_bytes())
    width = max(map(len, r))
    emit(r, as_json, False, "\n".join(f"{k:{width}} {v}" for k, v in r.items()))


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def models(as_json):
    """List the shipped models with their test-set figures."""
    rows = bbans.list_models()
    if as_json:
        click.echo(json.dumps(rows))
        return
    width = max(map(len, rows))
    for name, r in rows.items():
        figures = ", ".join(f"{k} {r[k]}" for k in ("test_neg_elbo_bits_per_dim", "test_model_bits_per_dim", "test_nll_bits_per_dim",
                                                    "test_bbans_bits_per_dim") if k in r)
        click.echo(f"{name:{width}} {r['summary']}\n{'':{width}} {figures or 'no model card yet'}")


@main.command()
@click.argument("name", required=False)
@click.option("--data", type=click.Path(exists=True, path_type=Path),
              help="Train on these images instead (a file or folder of npy, idx, PGM, PPM or PNG; large ones cut "
                   "into tiles) and write a model file of its own.")
@click.option("--arch", help="With --data: the zoo model whose architecture and recipe to train "
                             "(default vae-cifar for RGB images, vae-8bit for grey ones).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="With --data: the model file to write (default DATA.pt); its card goes beside it.")
@click.option("--device", default="cpu", show_default=True, help="torch's device to train on (cuda: a GPU).")
@click.option("--epochs", type=int, help="Override the recipe's number of epochs.")
@click.option("--threads", default=1, show_default=True, help="torch threads.")
@click.option("--resume", is_flag=True, help="Go on from the checkpoint of an unfinished run (the .ckpt file beside "
                                             "the weights), or extend a finished run to --epochs from its weights.")
@click.option("--nll-samples", type=int, help="Importance samples for the card's NLL (default: the recipe's, else 1,000).")
@click.option("--nll-images", type=int, help="Test images for the card's NLL (default: the recipe's, else all 10,000).")
def train(name, data, arch, output, device, epochs, threads, resume, nll_samples, nll_images):
    """Train model NAME of the zoo from its recipe and write its weights and model card; or,
    with --data, an architecture of the zoo on your own images, into a model file that
    `bbans compress --model FILE` and `bbans decompress --model FILE` take."""
    from bbans.cards import write_card, write_file_card
    from bbans.models.train import train as run
    from bbans.models.zoo import known
    if data is None:
        if name is None or arch or output:
            raise click.UsageError("give NAME, a model of the zoo (bbans models), or --data PATH [--arch NAME]")
        run(known(name), epochs=epochs, threads=threads, log=click.echo, resume=resume, device=device, bar=True)
        click.echo(json.dumps(write_card(name, nll_samples=nll_samples, nll_images=nll_images)))
        return
    if name:
        raise click.UsageError("with --data, name the architecture with --arch")
    from bbans import train_data
    arch, images = train_data.load(data, arch)
    output = output or data.parent / f"{data.name}.pt"
    click.echo(f"training {arch}'s architecture on {len(images):,} images of {'x'.join(map(str, images.shape[1:]))} "
               f"from {data} into {output}", err=True)
    run(known(arch), epochs=epochs, threads=threads, log=click.echo, out=output, resume=resume, images=images,
        source=str(data), device=device, bar=True)
    click.echo(json.dumps(write_file_card(output, images, nll_samples=nll_samples, nll_images=nll_images)))


@main.command()
@click.option("--data", "variants", type=click.Choice(["mnist-binarized", "mnist", "fashion-mnist", "cifar-10"]),
              multiple=True, help="Data set (default: the three of 28x28 grey images).")
@click.option("-n", "--images", default=10000, show_default=True, help="Test images to use.")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path),
              help="Also draw bits/dim against images/s, one panel per data set, to this PNG file.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def bench(variants, images, plot, as_json):
    """bbans against gzip, bz2, xz, zstd, PNG, WebP and JPEG-XL on the test images:
    bits/dim, images/s, and the peak memory of bbans."""
    b = bench_module("bench")
    results = {v: b.run(v, images) for v in variants or ("mnist-binarized", "mnist", "fashion-mnist")}
    if plot:
        write_atomic(plot, b.plot(results))
    click.echo(json.dumps(results) if as_json else b.table(results))


@main.command()
@click.option("--data", "variants", type=click.Choice(["mnist-binarized", "mnist", "fashion-mnist"]), multiple=True,
              help="Data set (default: all three).")
@click.option("--models", "names", multiple=True, metavar="NAME[,NAME...]",
              help="Models to evaluate (default: every model of the zoo trained on the data).")
@click.option("-n", "--images", default=10000, show_default=True, type=click.IntRange(1), help="Test images to use.")
@click.option("--nll-samples", default=1000, show_default=True, type=click.IntRange(1),
              help="Importance samples per image for a VAE's NLL bound.")
@click.option("--nll-images", default=1000, show_default=True, type=click.IntRange(1),
              help="Evenly spaced images a VAE's NLL bound is computed on.")
@click.option("--seed", default=0, show_default=True, help="Seed of the sampling (posterior samples, dequantization, "
                                                           "trace probes): the same seed gives the same figures.")
@click.option("--classical/--no-classical", default=True, show_default=True,
              help="Also code the pixels with gzip, bz2, xz, zstd, PNG, WebP and JPEG-XL.")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path),
              help="Also draw the figures as a bar chart, one panel per data set, to this PNG file.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def evaluate(variants, names, images, nll_samples, nll_images, seed, classical, plot, as_json):
    """Every model's figures on the test set side by side, in bits/dim: NLL (exact for
    flows, importance-weighted bound for VAEs), -ELBO, what bbans codes with it, and the
    classical codecs on the same pixels."""
    e = bench_module("evaluate")
    todo = e.plan(variants or ("mnist-binarized", "mnist", "fashion-mnist"),
                  [n for arg in names for n in arg.split(",") if n])
    results = {v: e.run(v, todo[v], images, nll_samples, nll_images, seed, classical) for v in todo}
    if plot:
        write_atomic(plot, e.plot(results))
    click.echo(json.dumps(results) if as_json else e.table(results))


if __name__ == "__main__":
    main()
