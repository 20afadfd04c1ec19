"""The data sets bbans is trained and benchmarked on, found through BBANS_DATA."""
import gzip
import io
import lzma
import os
from pathlib import Path

import numpy as np

from bbans.errors import BbansError
DATA_ENV = "BBANS_DATA"
FILES = {
    ("mnist", "train"): "mnist/train-images-idx3-ubyte.gz",
    ("mnist", "test"): "mnist/t10k-images-idx3-ubyte.gz",
    ("fashion-mnist", "train"): "fashion-mnist/train-images-idx3-ubyte.gz",
    ("fashion-mnist", "test"): "fashion-mnist/t10k-images-idx3-ubyte.gz",
    ("cifar-10", "train"): "cifar-10/train-images.npy.xz",
    ("cifar-10", "test"): "cifar-10/test-images.npy.xz",
}


class DataNotFound(BbansError):
    pass


def data_dir() -> Path:
    path = os.environ.get(DATA_ENV)
    if not path:
        raise DataNotFound(f"set {DATA_ENV} to the folder that holds mnist/ (for example ../shared/data)")
    return Path(path)


def load_images(name: str = "mnist", split: str = "test") -> np.ndarray:
    """uint8 images from the data folder: (N, 28, 28) from an idx file, or CIFAR-10's
    (N, 32, 32, 3) from an xz-compressed npy file."""
    path = data_dir() / FILES[(name, split)]
    if not path.exists():
        raise DataNotFound(f"{path} not found (is {DATA_ENV} right?)")
    if path.suffix == ".xz":
        return np.load(io.BytesIO(lzma.decompress(path.read_bytes())), allow_pickle=False)
    raw = gzip.decompress(path.read_bytes())
    n, rows, cols = np.frombuffer(raw[4:16], ">u4")
    return np.frombuffer(raw[16:], np.uint8).reshape(int(n), int(rows), int(cols))


def binarize(images: np.ndarray, seed: int = 0) -> np.ndarray:
    """The BB-ANS / craystack test protocol: one Bernoulli draw per pixel with p = x/255."""
    rng = np.random.RandomState(seed)
    return (rng.random_sample(images.shape) < images / 255).astype(np.uint8)
