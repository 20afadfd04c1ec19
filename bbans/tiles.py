"""Images of any size in a model's tiles: each image cut into side x side tiles from its
top-left corner, those at the right and bottom edges only partly filled. A model codes a
tile's filled part alone (bbans.codecs.vae.VAECodec's `valid`), its networks seeing zeros
in the rest, so no padding is ever coded. The tiles go in groups of one filled shape (at
most four: whole tiles, the right column, the bottom row, the corner), each group image
by image, row by row, column by column."""
import numpy as np


def _segments(length: int, side: int):
    """(first tile, tiles, filled length) of the whole tiles along an axis, then of the
    partial one."""
    whole, rest = divmod(length, side)
    return [s for s in ((0, whole, side), (whole, 1, rest)) if s[1] and s[2]]


def groups(shape, side: int):
    """(filled (height, width), tile rows (first, count), tile columns (first, count)) of
    each group of tiles of images of `shape` (height, width, channels)."""
    height, width, _ = shape
    return [((h, w), (r, nr), (c, nc)) for r, nr, h in _segments(height, side) for c, nc, w in _segments(width, side)]


def _window(r, nr, c, nc, side: int):
    return slice(r * side, (r + nr) * side), slice(c * side, (c + nc) * side)


def cut(pixels: np.ndarray, shape, side: int):
    """Images (n, height width channels) uint8 -> [(filled shape, tiles (m, side² channels))]
    of each group, the tiles' unfilled parts zero."""
    n, (height, width, channels) = len(pixels), shape
    images = pixels.reshape(n, height, width, channels)
    out = []
    for filled, (r, nr), (c, nc) in groups(shape, side):
        rows, cols = _window(r, nr, c, nc, side)
        block = np.zeros((n, nr * side, nc * side, channels), np.uint8)
        part = images[:, rows, cols]
        block[:, :part.shape[1], :part.shape[2]] = part
        tiles = block.reshape(n, nr, side, nc, side, channels).transpose(0, 1, 3, 2, 4, 5)
        out.append((filled, tiles.reshape(n * nr * nc, side * side * channels)))
    return out


def paste(tiles, n: int, shape, side: int) -> np.ndarray:
    """The images (n, height width channels) of the groups' tiles, as cut gives them."""
    height, width, channels = shape
    images = np.empty((n, height, width, channels), np.uint8)
    for part, (_, (r, nr), (c, nc)) in zip(tiles, groups(shape, side)):
        block = part.reshape(n, nr, nc, side, side, channels).transpose(0, 1, 3, 2, 4, 5)
        rows, cols = _window(r, nr, c, nc, side)
        target = images[:, rows, cols]
        target[...] = block.reshape(n, nr * side, nc * side, channels)[:, :target.shape[1], :target.shape[2]]
    return images.reshape(n, -1)
