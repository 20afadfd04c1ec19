"""The `bbans` command: parses arguments, calls the library, reports."""
import json
import os
import sys
import tempfile
from pathlib import Path

import click

from bbans.errors import BbansError

SUFFIX = ".bbans"


def fail(message: str, code: int = 1):
    click.echo(f"bbans: error: {message}", err=True)
    sys.exit(code)


def refuse_existing(path: Path, force: bool):
    if path.exists() and not force:
        fail(f"{path} exists; use --force to overwrite")


def write_atomic(path: Path, data: bytes):
    """Write via a temporary file in the same folder, read it back, then rename over the
    output: never a partial file, and an existing output stays until the new one is whole."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if Path(tmp).read_bytes() != data:
            raise BbansError(f"{path}: the written file does not read back; nothing written")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def emit(report: dict, as_json: bool, line: str):
    click.echo(json.dumps(report) if as_json else line)


class App(click.Group):
    """Turns every failure into one line and a non-zero exit: 1 for bad input, corrupt files
    and missing models or data, 3 for an internal error, 130 for an interrupt."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except BbansError as e:
            fail(str(e))
        except OSError as e:
            fail(f"{e.filename or ''}: {e.strerror or e}".lstrip(": "))
        except KeyboardInterrupt:
            fail("interrupted; nothing written", 130)
        except Exception as e:  # a bug: still one line, and nothing written
            fail(f"internal error ({type(e).__name__}: {e})", 3)


WORKERS = click.option("--workers", default=1, show_default=True, type=click.IntRange(1),
                       help="Processes decoding chunks in parallel.")


@click.group(cls=App)
def main():
    """Lossless compression of image data with bits-back coding (BB-ANS) and trained VAEs."""


@main.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Output file (default FILE.bbans).")
@click.option("-f", "--force", is_flag=True, help="Overwrite the output file.")
@click.option("--model", help="Model of the zoo to use for image input (default: picked from the pixel values).")
@click.option("--nll-samples", default=100, show_default=True,
              help="Importance samples per image for the NLL reported beside the rate (0: skip the model figures).")
@click.option("--nll-images", default=500, show_default=True,
              help="Evenly spaced images the NLL bound is computed on (0: all; the -ELBO always uses all).")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1),
              help="Processes coding chunks in parallel; the file is the same for any number.")
@click.option("--chunk-images", default=10000, show_default=True, type=click.IntRange(1),
              help="Images per independently decodable chunk.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def compress(file, output, force, model, nll_samples, nll_images, workers, chunk_images, as_json):
    """Compress FILE: npy, idx, PGM or PNG of 28x28 grey images with a VAE, anything else with xz."""
    from bbans import api
    output = output or file.with_name(file.name + SUFFIX)
    refuse_existing(output, force)
    blob, r = api.compress(file.read_bytes(), model=model, nll_samples=nll_samples, nll_images=nll_images,
                           workers=workers, chunk_images=chunk_images)
    write_atomic(output, blob)
    r.update(input=str(file), output=str(output))
    line = (f"{file} -> {output}: {r['method']}" + (f" ({r['model']})" if r["model"] else "")
            + f", {r['original_bytes']} -> {r['compressed_bytes']} bytes, {r['bits_per_dim']:.4f} bits/dim")
    if "nll_bits_per_dim" in r:
        line += (f" (model -ELBO {r['neg_elbo_bits_per_dim']:.4f}, NLL {r['nll_bits_per_dim']:.4f}"
                 f" on {r['nll_images']} images)")
    elif "model_bits_per_dim" in r:
        line += (f" (model cost {r['model_bits_per_dim']:.4f}: codes {r['latent_bits_per_dim']:.4f},"
                 f" pixels {r['pixel_bits_per_dim']:.4f})")
    emit(r, as_json, line + f", {r['seconds']:.2f} s")


@main.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Output file (default FILE without .bbans).")
@click.option("-f", "--force", is_flag=True, help="Overwrite the output file.")
@WORKERS
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def decompress(file, output, force, workers, as_json):
    """Restore the original of FILE.bbans, checked against its SHA-256."""
    from bbans import api
    if output is None:
        if file.suffix != SUFFIX:
            fail(f"{file} does not end in {SUFFIX}; name the output with -o")
        output = file.with_suffix("")
    refuse_existing(output, force)
    data, r = api.decompress(file.read_bytes(), workers=workers)
    write_atomic(output, data)
    r.update(input=str(file), output=str(output))
    emit(r, as_json, f"{file} -> {output}: {r['original_bytes']} bytes, {r['method']}"
         + (f" ({r['model']}, {r['n_images']} images)" if r["model"] else "") + f", {r['seconds']:.2f} s")


@main.command()
@click.argument("file", type=click.Path(path_type=Path))
@WORKERS
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def verify(file, workers, as_json):
    """Check that FILE.bbans restores its original exactly, writing nothing."""
    from bbans import api
    _, r = api.decompress(file.read_bytes(), workers=workers)
    r.update(input=str(file), ok=True)
    emit(r, as_json, f"{file}: OK, restores {r['original_bytes']} bytes exactly ({r['method']}"
         + (f", {r['model']}, {r['n_images']} images" if r["model"] else "") + ")")


@main.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def info(file, as_json):
    """Show what a .bbans file holds."""
    from bbans import api
    r = api.info(file.read_bytes())
    width = max(map(len, r))
    emit(r, as_json, "\n".join(f"{k:{width}} {v}" for k, v in r.items()))


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def models(as_json):
    """List the shipped models with their test-set figures."""
    from models.zoo import ZOO, card
    rows = {name: dict(card(name), summary=recipe["summary"]) for name, recipe in ZOO.items()}
    if as_json:
        click.echo(json.dumps(rows))
        return
    width = max(map(len, rows))
    for name, r in rows.items():
        figures = ", ".join(f"{k} {r[k]}" for k in ("test_neg_elbo_bits_per_dim", "test_model_bits_per_dim", "test_nll_bits_per_dim",
                                                    "test_bbans_bits_per_dim") if k in r)
        click.echo(f"{name:{width}} {r['summary']}\n{'':{width}} {figures or 'no model card yet'}")


@main.command()
@click.argument("name")
@click.option("--epochs", type=int, help="Override the recipe's number of epochs.")
@click.option("--threads", default=1, show_default=True, help="torch threads.")
@click.option("--nll-samples", default=1000, show_default=True, help="Importance samples for the card's NLL.")
@click.option("--nll-images", type=int, help="Test images for the card's NLL (default all 10,000).")
def train(name, epochs, threads, nll_samples, nll_images):
    """Train model NAME from its recipe and write its weights and model card."""
    from models.card import write_card
    from models.train import train as run
    from models.zoo import ZOO
    if name not in ZOO:
        fail(f"unknown model {name!r}; the zoo has: {', '.join(ZOO)}")
    run(name, epochs=epochs, threads=threads, log=click.echo)
    click.echo(json.dumps(write_card(name, nll_samples=nll_samples, nll_images=nll_images)))


@main.command()
@click.option("--data", "variants", type=click.Choice(["mnist-binarized", "mnist"]), multiple=True,
              help="Data set (default: both).")
@click.option("-n", "--images", default=10000, show_default=True, help="Test images to use.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def bench(variants, images, as_json):
    """bbans against gzip, bz2 and xz on the MNIST test images: bits/dim and images/s."""
    from bbans.bench import run, table
    results = {v: run(v, images) for v in variants or ("mnist-binarized", "mnist")}
    click.echo(json.dumps(results) if as_json else table(results))


if __name__ == "__main__":
    main()
