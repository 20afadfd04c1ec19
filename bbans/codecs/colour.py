"""Colour pixels from a causal head (bbans.models.colour): each pixel's R, G and B from
mixtures of two discretized Laplaces on 0..255, given z's features for the pixel and the
values of its causal neighbourhood, the means of G and B shifted by multiples of the
pixel's earlier channels. Pixels (i, j) go line by line of 2i + j = t, the pixels of a
line (of every image of the batch) at once: their neighbourhoods lie on earlier lines.

The model object needs `side`, `context` (offsets (di, dj) with 2 di + dj < 0) and
`pixel_head(table (R, n), rows (F + 3 len(context), k))` -> its outputs (OUTPUTS, k n) for
k pixels of n images, whose inputs (features, then context values / 256, the three
channels of each offset in turn) are the table's rows (bbans.models.grids.ExactColumns.gather),
bit-identical on any machine; everything after goes through the grids and tables of bbans.codecs.pixels.
"""
import numpy as np

from bbans.codecs.core import Codec, affordable, bits_back, categorical, quantized_laplace
from bbans.codecs.pixels import EXP, PARAM_GRID, SIGMOID, context_index, wavefronts

CHANNELS = 3
PER_CHANNEL = 5  # the first component's weight logit, two means (/ 256), two log-scales
OUTPUTS = CHANNELS * PER_CHANNEL + 3  # and the couplings G <- R, B <- R, B <- G
SCALE_ROWS = [c * PER_CHANNEL + i for c in range(CHANNELS) for i in (3, 4)]  # the log-scales' rows of the outputs
# SIGMOID's table as the two components' probabilities: (p, 1 - p) and (1 - p, p), looked up
# with take (numpy's fancy indexing copies rows of two some ten times slower)
FIRST, SECOND = np.stack([SIGMOID.values, 1 - SIGMOID.values], -1), np.stack([1 - SIGMOID.values, SIGMOID.values], -1)


def channel_params(out, channel: int, earlier):
    """The head's outputs (OUTPUTS, ...), a numpy array or a torch tensor, and the values
    (0..255) of the pixels' earlier channels (a list of `channel` arrays (...)) -> that
    channel's component means (2, ...) in pixels, log-scales (2, ...), unclipped, and the
    first component's weight logit (...)."""
    first = PER_CHANNEL * channel
    means = 256.0 * out[first + 1:first + 3]
    for k, value in enumerate(earlier):  # couplings channel - 1 + k: G <- R; B <- R, B <- G
        means = means + out[CHANNELS * PER_CHANNEL + channel - 1 + k] * value
    return means, out[first + 3:first + 5], out[first]


def pixel_line(out: np.ndarray, log_scale_range) -> Codec:
    """The values (3, m) in 0..255 of the three channels of m pixels from the head's outputs
    (OUTPUTS, m): each a mixture of two discretized Laplaces (channel_params; the means
    rounded to PARAM_GRID, the scales from EXP's table), with bits back on the components
    of all three channels at once: pop them given the values, push the values R, G, B
    given them, push them (a value costs -log2 of its mixture probability, give or take
    the posterior's slack). The components' posterior comes from the grids' values and
    SIGMOID's table alone, no logarithms or exponentials: it only has to be the same in
    encoder and decoder. (constriction's categorical codes a component some 2.5 times
    faster than its Bernoulli.)"""
    logit_at = SIGMOID.index(out[0:CHANNELS * PER_CHANNEL:PER_CHANNEL])  # (3, m)
    scale_at = EXP.index(out[SCALE_ROWS].reshape(CHANNELS, 2, -1), within=log_scale_range)  # (3, 2, m)
    scales = EXP.values[scale_at]
    # log(w / (1 - w)) + log(scale_2 / scale_1), on the grids
    prior_odds = SIGMOID.low + SIGMOID.step * logit_at + EXP.step * (scale_at[:, 1] - scale_at[:, 0])
    means = np.empty_like(scales)  # each channel's, once the values of the earlier ones are known
    known = []  # the channels whose means are in (a codec codes one line once)

    def channel_means(c, earlier):
        if c not in known:
            np.rint(channel_params(out, c, earlier)[0] / PARAM_GRID, out=means[c])
            means[c] *= PARAM_GRID
            known.append(c)
        return means[c]

    def channel(c, components, chosen_scales, earlier):
        m = channel_means(c, earlier)
        return quantized_laplace(np.where(components[c], m[1], m[0]), chosen_scales[c], 0, 255)

    def posterior(values):
        for c in range(CHANNELS):
            channel_means(c, values[:c])
        distance = np.abs(means - values[:, None])
        distance /= scales
        odds = distance[:, 0] - distance[:, 1]
        odds -= prior_odds
        probs = SECOND.take(SIGMOID.index(odds), 0)  # (3, m, 2)
        return affordable(categorical(probs), (probs[..., 1] > 0.5).astype(np.int32), probs[..., 0].size + 64)

    def likelihood(components):
        chosen_scales = np.where(components, scales[:, 1], scales[:, 0])

        def push(message, values):
            for c in reversed(range(CHANNELS)):
                channel(c, components, chosen_scales, values[:c]).push(message, values[c])

        def pop(message):
            values = np.empty((CHANNELS, out.shape[1]), np.int32)
            for c in range(CHANNELS):
                values[c] = channel(c, components, chosen_scales, values[:c]).pop(message)
            return values

        return Codec(push, pop)

    return bits_back(categorical(FIRST.take(logit_at, 0)), likelihood, posterior)


def lines(side: int, valid=None) -> list:
    """The flat indices of the pixels of each line 2i + j = t of a side x side image, or
    of its top-left `valid` (height, width) alone (a tile at an image's edge: the rest is
    padding, never coded)."""
    return wavefronts(side, 2, valid)


def colour_ar(model, features: np.ndarray, log_scale_range, valid=None) -> Codec:
    """Images (n, side² 3) uint8 given their pixel features (n, side², F): see the module.
    With `valid` (height, width), only that top-left part of each image is coded, its
    neighbourhoods cut off as at the image's edge, and the rest decodes as zeros. The
    head gathers its inputs from one table of pixel-major rows (a pixel's values for
    all n images side by side): the features (pixel by pixel), then the known values of
    each channel."""
    n, pixels = len(features), model.side**2
    f = features.shape[2]
    table = np.zeros((pixels * f + CHANNELS * (pixels + 1), n))
    flat = features.reshape(n, -1)
    for start in range(0, n, 64):  # the transpose in blocks that stay in cache: some twice as fast
        table[:pixels * f, start:start + 64] = flat[start:start + 64].T
    known = table[pixels * f:].reshape(CHANNELS, pixels + 1, n)  # values / 256, the last pixel the zero pad
    context = context_index(model.context, model.side, valid).T  # (C, pixels), `pixels` outside
    # the table's rows of each pixel's inputs: its features, then its context's values, the
    # three channels of each offset in turn (the network's order)
    neighbours = (pixels * f + np.arange(CHANNELS)[None, :, None] * (pixels + 1) + context[:, None]).reshape(-1, pixels)
    inputs = np.concatenate([np.arange(f)[:, None] + f * np.arange(pixels), neighbours])
    order = lines(model.side, valid)

    def head(idx):
        """The head's outputs (OUTPUTS, k n) for the k pixels idx of each image, pixel-major."""
        return model.pixel_head(table, inputs[:, idx])

    def push(message, x):
        x = x.reshape(n, pixels, CHANNELS)
        known[:, :pixels] = x.transpose(2, 1, 0) / 256.0
        for idx in reversed(order):
            values = x[:, idx].transpose(2, 1, 0).reshape(CHANNELS, -1).astype(np.int32)  # pixel-major, as the head's
            pixel_line(head(idx), log_scale_range).push(message, values)

    def pop(message):
        images = np.zeros((CHANNELS, pixels, n), np.uint8)  # pixel-major, as the lines come
        for idx in order:
            values = pixel_line(head(idx), log_scale_range).pop(message).reshape(CHANNELS, len(idx), n)
            images[:, idx] = values
            known[:, idx] = values / 256.0
        return np.ascontiguousarray(images.transpose(2, 1, 0)).reshape(n, -1)

    return Codec(push, pop)
