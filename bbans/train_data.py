"""A user's images for `bbans train --data`: any file bbans reads as images (npy, idx, PGM,
PPM, PNG) or a folder of them, cut into tiles of the architecture's shape."""
from pathlib import Path

import numpy as np

from bbans import formats
from bbans.errors import BbansError
from bbans.models import zoo

ARCH_BY_CHANNELS = {1: "vae-8bit", 3: "vae-cifar"}  # the architecture trained when none is named


def tiles(images: formats.Images, shape) -> np.ndarray:
    """The images cut into non-overlapping tiles of `shape` (h, w, c), from the top left;
    what is left at the right and bottom edges is dropped. (N, h, w, c) uint8."""
    h, w, c = shape
    height, width, channels = images.shape
    if channels != c:
        raise BbansError(f"the architecture codes images of {c} channel{'s' * (c > 1)}, and these have {channels}")
    x = np.asarray(images.pixels).reshape(-1, height, width, c)[:, :height // h * h, :width // w * w]
    return x.reshape(len(x), height // h, h, width // w, w, c).swapaxes(2, 3).reshape(-1, h, w, c)


def _files(path: Path):
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]


def load(path, arch=None):
    """(architecture, training images (N, h, w) or (N, h, w, 3)) from the images in `path`:
    tiles of the shape of model `arch` of the zoo (default: by the images' channels,
    ARCH_BY_CHANNELS). Files that are not images are passed over; none at all is an error."""
    found = [images for f in _files(Path(path)) if (images := formats.parse(f.read_bytes())) is not None]
    if not found:
        raise BbansError(f"no images in {path} (bbans reads npy, idx, PGM, PPM and PNG files)")
    if arch is None:
        channels = found[0].shape[2]
        if channels not in ARCH_BY_CHANNELS:
            raise BbansError(f"no architecture for images of {channels} channels; name one with --arch")
        arch = ARCH_BY_CHANNELS[channels]
    shape = zoo.shape(zoo.known(arch))
    cut = np.concatenate([tiles(images, shape) for images in found])
    if not len(cut):
        raise BbansError(f"the images in {path} are smaller than {shape[0]}x{shape[1]}, the architecture's tiles")
    return arch, cut if shape[2] > 1 else cut[..., 0]
