"""Colour pixels from a causal head (bbans.models.colour): each pixel's R, G and B from
mixtures of two discretized Laplaces on 0..255, given z's features for the pixel and the
values of its causal neighbourhood, the means of G and B shifted by multiples of the
pixel's earlier channels. Pixels (i, j) go line by line of 2i + j = t, the pixels of a
line (of every image of the batch) at once: their neighbourhoods lie on earlier lines.

The model object needs `side`, `context` (offsets (di, dj) with 2 di + dj < 0) and
`pixel_head(features (F, k, n), context values / 256 (len(context), k, 3, n))` -> its
outputs (OUTPUTS, k n) for k pixels of n images, bit-identical on any machine; everything
after goes through the grids and tables of bbans.codecs.pixels.
"""
import numpy as np

from bbans.codecs.core import Codec, affordable, bits_back, categorical, quantized_laplace
from bbans.codecs.pixels import EXP, PARAM_GRID, SIGMOID, context_index, wavefronts

CHANNELS = 3
PER_CHANNEL = 5  # the first component's weight logit, two means (/ 256), two log-scales
OUTPUTS = CHANNELS * PER_CHANNEL + 3  # and the couplings G <- R, B <- R, B <- G
# SIGMOID's table as the two components' probabilities: (p, 1 - p) and (1 - p, p)
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
    scale_at = EXP.index(np.stack([out[c * PER_CHANNEL + 3:c * PER_CHANNEL + 5] for c in range(CHANNELS)])
                         .clip(*log_scale_range))  # (3, 2, m)
    scales = EXP.values[scale_at]
    # log(w / (1 - w)) + log(scale_2 / scale_1), on the grids
    prior_odds = SIGMOID.low + SIGMOID.step * logit_at + EXP.step * (scale_at[:, 1] - scale_at[:, 0])
    rows = np.arange(out.shape[1])
    known_means = {}  # of each channel, once the values of the earlier ones are known (a codec codes one line once)

    def means(c, earlier):
        if c not in known_means:
            known_means[c] = np.rint(channel_params(out, c, earlier)[0] / PARAM_GRID) * PARAM_GRID
        return known_means[c]

    def channel(c, components, earlier):
        m = means(c, earlier)
        return quantized_laplace(m[components[c], rows], scales[c, components[c], rows], 0, 255)

    def posterior(values):
        distance = np.abs(np.stack([means(c, values[:c]) for c in range(CHANNELS)]) - values[:, None]) / scales
        probs = SECOND[SIGMOID.index(distance[:, 0] - distance[:, 1] - prior_odds)]  # (3, m, 2)
        return affordable(categorical(probs), (probs[..., 1] > 0.5).astype(np.int32), probs[..., 0].size + 64)

    def likelihood(components):
        def push(message, values):
            for c in reversed(range(CHANNELS)):
                channel(c, components, values[:c]).push(message, values[c])

        def pop(message):
            values = []
            for c in range(CHANNELS):
                values.append(np.asarray(channel(c, components, values).pop(message), np.int32))
            return np.stack(values)

        return Codec(push, pop)

    return bits_back(categorical(FIRST[logit_at]), likelihood, posterior)


def lines(side: int, valid=None) -> list:
    """The flat indices of the pixels of each line 2i + j = t of a side x side image, or
    of its top-left `valid` (height, width) alone (a tile at an image's edge: the rest is
    padding, never coded)."""
    return wavefronts(side, 2, valid)


def colour_ar(model, features: np.ndarray, log_scale_range, valid=None) -> Codec:
    """Images (n, side² 3) uint8 given their pixel features (n, side², F): see the module.
    With `valid` (height, width), only that top-left part of each image is coded, its
    neighbourhoods cut off as at the image's edge, and the rest decodes as zeros. The
    heads see pixel-major columns (a pixel's values for all n images side by side, so
    that a line's neighbourhood is a gather of whole rows)."""
    n, pixels = len(features), model.side**2
    context = context_index(model.context, model.side, valid).T  # (C, pixels), `pixels` outside
    columns = np.ascontiguousarray(features.transpose(2, 1, 0))  # (F, pixels, n)
    order = lines(model.side, valid)

    def head(idx, known):
        """known: (pixels + 1, 3, n) values / 256, the last row the zero pad -> the head's
        outputs (OUTPUTS, k n) for the k pixels idx of each image, pixel-major."""
        return model.pixel_head(columns[:, idx], known[context[:, idx]])

    def push(message, x):
        x = x.reshape(n, pixels, CHANNELS)
        known = np.concatenate([x.transpose(1, 2, 0) / 256.0, np.zeros((1, CHANNELS, n))])
        for idx in reversed(order):
            values = x[:, idx].transpose(2, 1, 0).reshape(CHANNELS, -1).astype(np.int32)  # pixel-major, as the head's
            pixel_line(head(idx, known), log_scale_range).push(message, values)

    def pop(message):
        known, images = np.zeros((pixels + 1, CHANNELS, n)), np.zeros((n, pixels, CHANNELS), np.uint8)
        for idx in order:
            values = pixel_line(head(idx, known), log_scale_range).pop(message).reshape(CHANNELS, len(idx), n)
            images[:, idx] = values.transpose(2, 1, 0)
            known[idx] = values.transpose(1, 0, 2) / 256.0
        return images.reshape(n, -1)

    return Codec(push, pop)
