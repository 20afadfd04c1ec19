"""The Python API (re-exported by the package: bbans.compress, ...): numpy images in and
out, files by path, and what a run did as a Report. Files made here and by the command
line are the same container: either opens what the other made."""
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from bbans import api, container, folders, formats
from bbans.errors import BbansError
from bbans.files import atomic_output, open_input, write_atomic
from bbans.models.zoo import ZOO, card

SUFFIX = ".bbans"


@dataclass(frozen=True)
class Report:
    """What compressing or decompressing did; rates in bits per dimension (per pixel)."""
    method: str  # "bbans-vae", "bbans-bitswap", "bbans-vq"; "pixels" for images no model codes; "xz",
    # "stored" or "jpeg-recoded" for other files; "folder"
    model: Optional[str]  # the zoo's model (bbans models lists them), None without one
    images: int
    original_bytes: int
    compressed_bytes: int
    bits_per_dim: float  # of the .bbans file, every byte counted
    seconds: float  # coding (or decoding) time
    # the model's -ELBO on these images as the coder found it (a VQ-VAE's cost), None
    # where not known (xz, decompression)
    neg_elbo_bits_per_dim: Optional[float] = None
    nll_bits_per_dim: Optional[float] = None  # its NLL bound on these images (full_figures only)
    test_nll_bits_per_dim: Optional[float] = None  # its NLL bound on its own test set (the model card's)
    # what a user should know: chunks the model coded worse than a classical codec, a rate
    # far above the model's test-set rate (compression only)
    warnings: tuple = ()
    details: dict = field(default_factory=dict, repr=False, compare=False)  # all the library reported

    @classmethod
    def of(cls, r: dict, compressed_bytes: int) -> "Report":
        dims = r.get("n_dims") or r["original_bytes"]
        return cls(method=r["method"], model=r["model"], images=r["n_images"], original_bytes=r["original_bytes"],
                   compressed_bytes=compressed_bytes, bits_per_dim=8 * compressed_bytes / max(dims, 1),
                   seconds=r["seconds"], neg_elbo_bits_per_dim=r.get("neg_elbo_bits_per_dim", r.get("model_bits_per_dim")),
                   nll_bits_per_dim=r.get("nll_bits_per_dim"), test_nll_bits_per_dim=r.get("test_nll_bits_per_dim"),
                   warnings=tuple(r.get("warnings", ())), details=r)


def _npy(images) -> bytes:
    images = np.asarray(images)
    if images.dtype == object:
        raise BbansError("images must be a numeric numpy array, not one of Python objects")
    out = io.BytesIO()
    np.save(out, images, allow_pickle=False)
    return out.getvalue()


def compress_with_report(images, model: Optional[str] = None, *, workers: int = 1,
                         chunk_images: Optional[int] = None) -> tuple:
    """(the .bbans bytes, Report) of a numpy array: uint8 images (N, 28, 28) and (N, 32,
    32, 3) go to a model (`model`: of the zoo or a model file; by default the zoo's for
    their data), other uint8 images
    ((H, W), (N, H, W) or (N, H, W, C) with C up to 4) to classical image codecs, any
    other array to xz. The bytes are those `bbans compress` makes of the array's .npy
    file."""
    blob, r = api.compress(_npy(images), model=model, chunk_images=chunk_images, workers=workers)
    return blob, Report.of(r, len(blob))


def compress(images, model: Optional[str] = None, **options) -> bytes:
    """The .bbans bytes of a numpy array (compress_with_report, without the report)."""
    return compress_with_report(images, model, **options)[0]


def decompress(blob: bytes, *, workers: int = 1, model=None) -> np.ndarray:
    """The images of .bbans bytes, as a numpy array: the array that was compressed, or
    the pixels (N, H, W), or (N, H, W, C) for colour, of an idx, PGM, PPM or PNG file. A
    .bbans file of other bytes raises BbansError (decompress_file restores any file).
    `model`: the model file the bytes were made with, if one was."""
    data = api.decompress(blob, workers=workers, model=model)[0]
    if data.startswith(b"\x93NUMPY"):
        return np.load(io.BytesIO(data), allow_pickle=False)
    images = formats.parse(data)
    if images is None:
        raise BbansError("this .bbans file holds a file that is not images; restore it with decompress_file")
    height, width, channels = images.shape
    return np.array(images.pixels).reshape((-1, height, width) + ((channels,) if channels > 1 else ()))


def _output(output, force: bool, default: Path) -> Path:
    output = Path(output) if output is not None else default
    if output.exists() and not force:
        raise BbansError(f"{output} exists; use --force (force=True) to overwrite")
    return output


def compress_file(path, output=None, *, model: Optional[str] = None, force: bool = False, workers: int = 1,
                  chunk_images: Optional[int] = None, scheduler: Optional[str] = None, full_figures: bool = False,
                  nll_samples: int = 100, nll_images: Optional[int] = None,
                  progress: Optional[Callable[[int, int, int, int], None]] = None, model_only: bool = False) -> Report:
    """Compresses the file at `path` to `output` (default: path + ".bbans"), as `bbans
    compress` does: npy, idx, PGM, PPM or PNG files of 28x28 grey or 32x32 RGB images with
    a model of the zoo (or `model`, a model's name or a model file), images of other
    shapes with classical image codecs, other files
    with xz. The output is written whole or not at all. `full_figures`: the float model's
    -ELBO and NLL bound on these images (nll_samples importance samples each on
    nll_images of them, default all), at several times the coding time. After each chunk,
    progress(images done, images, bits so far, pixels done). `model_only`: every chunk
    with the model, even where a classical codec is smaller. A folder is compressed file
    by file into one .bbans file (bbans.folders), without progress."""
    path = Path(path)
    output = _output(output, force, path.with_name(path.name + SUFFIX))
    options = dict(model=model, full_figures=full_figures, nll_samples=nll_samples, nll_images=nll_images,
                   chunk_images=chunk_images, workers=workers, scheduler=scheduler, model_only=model_only)
    if path.is_dir():
        blob, r = folders.compress(path, **options)
    else:
        with open_input(path) as data:
            blob, r = api.compress(data, progress=progress or api.no_progress, **options)
    write_atomic(output, blob)
    return Report.of(dict(r, input=str(path), output=str(output)), len(blob))


def decompress_file(path, output=None, *, force: bool = False, workers: int = 1, scheduler: Optional[str] = None,
                    progress: Optional[Callable[[int, int, int, int], None]] = None, model=None) -> Report:
    """Restores the original of the .bbans file at `path` to `output` (default: path
    without .bbans), checked against its SHA-256, whole or not at all; a folder's with
    its files' paths. `model`: the model file it was made with, if one was (`bbans train --data`)."""
    path = Path(path)
    if output is None and path.suffix != SUFFIX:
        raise BbansError(f"{path} does not end in {SUFFIX}; name the output with -o (output=...)")
    output = _output(output, force, path.with_suffix(""))
    blob = path.read_bytes()
    if container.read(blob).method == "folder":
        r = folders.restore(blob, output, force=True, workers=workers, scheduler=scheduler, model=model)  # _output checked it
        return Report.of(dict(r, input=str(path), output=str(output)), len(blob))
    with atomic_output(output) as out:
        r = api.decompress_to(blob, out, workers=workers, scheduler=scheduler, progress=progress or api.no_progress,
                              model=model)
    return Report.of(dict(r, input=str(path), output=str(output)), len(blob))


def info(blob: bytes) -> dict:
    """What .bbans bytes hold: method, model, layout, images, chunks, sizes, bits/dim (a
    folder's: those of each of its files)."""
    return folders.info(blob) if container.read(blob).method == "folder" else api.info(blob)


def list_models() -> dict:
    """The zoo: each model's name, with its summary and its model card's figures."""
    return {name: dict(card(name), summary=recipe["summary"]) for name, recipe in ZOO.items()}


__all__ = ["Report", "compress", "compress_with_report", "decompress", "compress_file", "decompress_file", "info",
           "list_models"]
