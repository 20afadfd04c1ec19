"""BB-ANS for sets of 28x28 images with a VAE given as numpy functions.

The model object needs:
- `likelihood`: "bernoulli", "laplace_ar" or "colour", and `latent`: the number of latents;
- `posterior(x)`: uint8 (B, 784) -> mean, log-sigma (B, latent) of q(z|x);
- `decode(z)`: (B, latent) -> Bernoulli logits (B, 784), or pixel features (B, 784, F);
- for "colour" (bbans.codecs.colour), images of `dims` values, `side` and `pixel_head`
  in place of 784 and `pixel_heads`;
- for "laplace_ar", `context`: offsets (di, dj) of the pixels each pixel is conditioned
  on, and `pixel_heads(features, context values)`: (F, k, n) and (C, k, n) for k
  pixels of n images -> the nonzero logits (k, n), and a function from flat indices
  into (k, n) to those pixels' Laplace means, log-scales (and the mixture's weight
  logit).
Its outputs must not depend on batch size or thread count (bbans.models.vae.ExactVAE).

Everything between those outputs and the coder goes through fixed grids and lookup
tables (bbans.codecs.pixels), so encoder and decoder turn the same outputs into the same
probabilities.

The latents lie on a uniform grid (codecs.LatentGrid) and binary pixels share a model per
probability level (pixels.binary). How they reach the coder depends on the format
`version` (bbans.container) that a codec writes or reads:
- 1 and 2: latents in 256 buckets of equal prior mass, each coded as eight binary
  decisions (codecs.StdBuckets), and a Bernoulli model per pixel;
- 3 and 4: a Gaussian per latent inside the coder, the pixels of a level bit by bit;
- 5 on: the latents' Gaussians from shared tables (codecs.LatentTables), the pixels of
  a level four at a time, the lowest level's near-certain zeros behind a flag per image
  (codecs.mostly_zero), and batches of up to half the images before them.
"""
from collections import Counter

import numpy as np

from bbans.codecs.colour import colour_ar
from bbans.codecs.core import Codec, affordable, bernoulli, bits_back, chain, check_used_up, new_message, point
from bbans.codecs.latents import LatentGrid, LatentTables, StdBuckets
from bbans.codecs.pixels import EXP, PARAM_GRID, PIXELS, SIDE, SIGMOID, binary, laplace_ar

# The format version the container writes: the newest way of coding (versions 6 and 7
# code as 5 does; their containers add the methods "stored", then "pixels"; version 8 adds
# images of other sizes, in a model's tiles, and large images in bands: bbans.tiles;
# version 9 the method "bbans-flow", bbans.codecs.flow).
VERSION = 9


def batch_schedule(n: int, largest: int, fraction: float, before: int = 0):
    """(start, size) of the batches of n images that follow `before` images on the message:
    each at most `fraction` of the images before it (and at least one), up to `largest`,
    so that its pops find enough bits on the stack; pops from an exhausted stack get no
    bits back. (A binarized image leaves some 130 bits on the stack; popping a latent that
    its image does not inform takes about 6.) Format versions up to 4 take a quarter,
    later ones half: fewer batches, at the same cost."""
    batches, start = [], before
    while start < before + n:
        size = min(max(1, int(start * fraction)), largest, before + n - start)
        batches.append((start, size))
        start += size
    return batches


def on_grids(mean, log_sigma):
    """A Gaussian's parameters as the coder gets them: the mean on a grid, the standard
    deviation from a table."""
    return np.rint(mean / PARAM_GRID**2) * PARAM_GRID**2, EXP(log_sigma)


class VAECodec:
    """BB-ANS over images of the model's shape, or, with `valid` (height, width), over
    tiles of which only the top-left part is coded (bbans.tiles): the rest is zeros, as
    the networks see it, and never coded."""

    def __init__(self, model, largest_batch: int = 1000, version: int = VERSION, valid=None):
        self.model, self.valid = model, valid
        self.version = version
        self.buckets = StdBuckets(8) if version < 3 else LatentGrid() if version < 5 else LatentTables()
        self.largest_batch = largest_batch
        self.fraction = 0.25 if version < 5 else getattr(model, "batch_fraction", 0.5)
        self.dims, self.side = getattr(model, "dims", PIXELS), getattr(model, "side", SIDE)
        # of a tile's values that are coded
        self.coded_dims = self.dims if valid is None else valid[0] * valid[1] * self.dims // self.side**2

    def gaussian(self, mean, log_sigma):
        """The codec of latents' cells under a network's N(mean, exp(log_sigma))."""
        if self.version < 5:
            return self.buckets.gaussian(*on_grids(mean, log_sigma))
        return self.buckets.gaussian(mean, log_sigma)

    def posterior(self, x):
        """The codec of z's cells under q(z|x): a Gaussian, or the model's flow posterior
        (bbans.models.made) group by group."""
        mean, log_sigma = self.model.posterior(x)
        if getattr(self.model, "post", None) is None:
            return self.gaussian(mean, log_sigma)
        return self.autoregressive(mean.shape, self.model.post_groups, self._flow(mean, log_sigma))

    def mode(self, x):
        mean, log_sigma = self.model.posterior(x)
        if getattr(self.model, "post", None) is None:
            return point(self.buckets.bucket_of(on_grids(mean, log_sigma)[0]))
        return point(self.flow_mode(mean.shape, self.model.post_groups, self._flow(mean, log_sigma)))

    def _flow(self, mean, log_sigma):
        return lambda cells, group=None: self.model.posterior_flow(mean, log_sigma, self.buckets.centres[cells], group)

    def autoregressive(self, shape, groups, conditional) -> Codec:
        """Cells `shape` under Gaussians group by group (bbans.models.made): conditional(cells)
        gives each latent's mean and log-sigma from the groups before its own, and
        conditional(cells, k) group k's alone. Pushed from one evaluation, popped one group
        at a time, each from an evaluation on the groups popped so far (the later ones'
        cells are zero then, and the outputs do not depend on them)."""
        def push(message, cells):
            mean, log_sigma = conditional(cells)
            for g in reversed(groups):
                self.gaussian(mean[:, g], log_sigma[:, g]).push(message, cells[:, g])

        def pop(message):
            return by_groups(shape, groups, conditional,
                             lambda mean, log_sigma: self.gaussian(mean, log_sigma).pop(message))

        return Codec(push, pop)

    def flow_mode(self, shape, groups, conditional) -> np.ndarray:
        """The cells of the means, group by group, of autoregressive(shape, groups,
        conditional)."""
        return by_groups(shape, groups, conditional,
                         lambda mean, log_sigma: self.buckets.bucket_of(on_grids(mean, log_sigma)[0]))


    def binary(self, logits):
        """Binary pixels (of the coded part of a tile alone) with P(1) = sigmoid(logits)."""
        if self.valid is not None:
            return _part(binary, logits, self.side, self.valid)  # only from version 8 on
        if self.version < 3:
            return bernoulli(SIGMOID(logits))
        return binary(logits, nibbles=self.version >= 5)

    def likelihood(self, buckets):
        out = self.model.decode(self.buckets.centres[buckets])
        if self.model.likelihood == "bernoulli":
            return self.binary(out)
        if self.model.likelihood == "colour":
            return colour_ar(self.model, out, self.model.log_scale_range, self.valid)
        return laplace_ar(self.model, out, self.valid)

    def image_codec(self, n, bits_back_from_stack=True):
        """BB-ANS over a batch of n images; the first batch of a stream has nothing on the
        stack to pop from, so it takes the posterior's mode bucket instead."""
        posterior = self.posterior if bits_back_from_stack else self.mode
        return bits_back(self.buckets.prior((n, self.model.latent)), self.likelihood, posterior)

    def encode(self, images: np.ndarray, costs: Counter = None) -> np.ndarray:
        """uint8 (N, dims) -> the message as uint32 words (push_images)."""
        message = new_message()
        self.push_images(message, images, 0, costs)
        return message.get_compressed()

    def push_images(self, message, images: np.ndarray, before: int, costs: Counter = None):
        """Pushes images (N, dims) onto a message that holds `before` images. With `costs`,
        adds to its "images", "dims" and "bits" what the batches after the first of the
        message cost: the bits they add to the message, their -log2 p(x|z) - log2 p(z) +
        log2 q(z|x) at the coder's z (the first batch pops nothing)."""
        for start, size in batch_schedule(len(images), self.largest_batch, self.fraction, before):
            bits = message.num_valid_bits()
            self.image_codec(size, start > 0).push(message, images[start - before:start - before + size])
            if costs is not None and start > 0:
                costs.update(images=size, dims=size * self.coded_dims, bits=message.num_valid_bits() - bits)

    def decode(self, words: np.ndarray, n: int) -> np.ndarray:
        message = new_message(words)
        images = self.pop_images(message, n, 0)
        check_used_up(message)
        return images

    def pop_images(self, message, n: int, before: int) -> np.ndarray:
        """The n images that push_images pushed after `before` others."""
        images = np.empty((n, self.dims), np.uint8)
        for start, size in reversed(batch_schedule(n, self.largest_batch, self.fraction, before)):
            images[start - before:start - before + size] = self.image_codec(size, start > 0).pop(message)
        return images


def by_groups(shape, groups, conditional, take) -> np.ndarray:
    """Cells `shape` group by group: group k's from take(its means, its log-sigmas), as
    conditional(the cells so far, the later ones zero, k) gives them."""
    cells = np.zeros(shape, np.int32)
    for k, g in enumerate(groups):
        cells[:, g] = take(*conditional(cells, k))
    return cells


def _part(codec, out: np.ndarray, side: int, valid) -> Codec:
    """codec(out[:, part]) over the pixels of the top-left `valid` part of each side x side
    image, the rest decoding as zeros."""
    rows, cols = np.divmod(np.arange(out.shape[1]), side)
    part = np.flatnonzero((rows < valid[0]) & (cols < valid[1]))
    inner = codec(out[:, part])

    def pop(message):
        images = np.zeros(out.shape, np.uint8)
        images[:, part] = inner.pop(message)
        return images

    return Codec(lambda message, x: inner.push(message, x[:, part]), pop)


class BitSwapCodec(VAECodec):
    """A VAE with latent layers z_1..z_L (bbans.models.hvae: binary pixels, Markov inference
    `inference(i, layer i)` and generative `generative(i, z_i+1)`, layer 0 being x; `top`
    and `post` None, or flows on z_L's prior and on the posteriors, `top_prior` and
    `posterior_flow` in the groups `top_groups` and `post_groups`).

    Bit-Swap (Kingma, Abbeel, Ho 2019) is bits-back whose prior is itself bits-back:
    pop z_1 ~ q(z_1|x), push x ~ p(x|z_1), then code z_1 the same way one layer up, and
    at the top push z_L ~ N(0, 1). Each pop needs only the bits that the layers below
    have just pushed. With `bit_swap=False` it is plain BB-ANS over the joint latent
    (z_1..z_L): every pop comes first. Either way a pop takes the posterior's mode
    instead where the message holds too few bits for it (codecs.affordable), as for the
    first images of a stream, which then pay for those layers with nothing back."""

    MARGIN = 64  # bits left on the stack beyond a pop's expected cost

    def __init__(self, model, largest_batch: int = 1000, bit_swap: bool = True, version: int = VERSION, valid=None):
        super().__init__(model, largest_batch, version, valid)
        self.bit_swap = bit_swap
        if not bit_swap:  # its pops of every layer come first: batches of a quarter, as before version 5
            self.fraction = 0.25

    def up(self, i: int):
        """Layer i's values -> the codec of z_i+1's grid cells: under the Gaussian of
        `inference`, or with the model's flow posterior (bbans.models.made) under the
        Gaussians `posterior_flow` makes of it, group by group."""
        def codec(below):
            values = below if i == 0 else self.buckets.centres[below]
            mean, log_sigma = self.model.inference(i, values)
            grid_mean, std = on_grids(mean, log_sigma)
            bits = self.buckets.entropy_bits(std) + self.MARGIN  # (the flow's Gaussian before the flow)
            if self.model.post is None:
                return affordable(self.gaussian(mean, log_sigma), self.buckets.bucket_of(grid_mean), bits)

            def flow(cells, group=None):
                return self.model.posterior_flow(i, mean, log_sigma, self.buckets.centres[cells], group)

            groups, shape = self.model.post_groups[i], mean.shape
            return affordable(self.autoregressive(shape, groups, flow), lambda: self.flow_mode(shape, groups, flow),
                              bits)

        return codec

    def down(self, i: int):
        """z_i+1's grid cells -> the codec of layer i."""
        def codec(z):
            out = self.model.generative(i, self.buckets.centres[z])
            return self.binary(out) if i == 0 else self.gaussian(*out)

        return codec

    def top_prior(self, n: int) -> Codec:
        """z_L's cells under N(0, I), or under the model's autoregressive prior."""
        width = self.model.latents[-1]
        if self.model.top is None:
            return self.buckets.prior((n, width))
        return self.autoregressive((n, width), self.model.top_groups,
                                   lambda cells, group=None: self.model.top_prior(self.buckets.centres[cells], group))

    def image_codec(self, n, bits_back_from_stack=True):
        layers = range(len(self.model.latents))
        top = self.top_prior(n)
        if self.bit_swap:
            codec = top
            for i in reversed(layers):
                codec = bits_back(codec, self.down(i), self.up(i))
            return codec
        # Plain: the latent is the tuple (z_1, ..., z_L); the prior pops it top-down.
        downward = chain(top, *(self.down(i) for i in reversed(layers[1:])))
        prior = Codec(lambda message, zs: downward.push(message, zs[::-1]), lambda message: downward.pop(message)[::-1])
        return bits_back(prior, lambda zs: self.down(0)(zs[0]),
                         lambda x: chain(self.up(0)(x), *(self.up(i) for i in layers[1:])))
