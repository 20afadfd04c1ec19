"""The latents' codecs: a Gaussian per latent over the cells of a fixed grid (LatentGrid),
from shared tables (LatentTables), or over buckets of equal prior mass (StdBuckets, the
first format versions')."""
import numpy as np
from scipy.special import ndtr, ndtri

from bbans.codecs.core import MODELS, Codec, bernoulli, by_model, family, fixed, uniform

LATENT_STEP = 2.0**-4  # of the latents' grid (LatentGrid)


class StdBuckets:
    """The real line cut into 2**precision buckets of equal mass under N(0, 1)."""

    def __init__(self, precision: int):
        self.precision = precision
        self.size = 2**precision
        self.edges = ndtri(np.arange(self.size + 1) / self.size)  # -inf .. +inf
        self.centres = ndtri((np.arange(self.size) + 0.5) / self.size)

    def prior(self, shape) -> Codec:
        return uniform(self.size, shape)

    def bucket_of(self, z: np.ndarray) -> np.ndarray:
        return np.clip(np.searchsorted(self.edges, z, side="right") - 1, 0, self.size - 1)

    def gaussian(self, mean: np.ndarray, std: np.ndarray) -> Codec:
        """A diagonal Gaussian over bucket indices, coded as `precision` binary decisions
        (which half of the current range), so that each decision needs the Gaussian's CDF
        at one new edge instead of the whole table of bucket masses."""
        shape = np.shape(mean)

        def tail(k):
            """Where edge k lies (below the mean?) and the Gaussian mass beyond it on that side."""
            return self.edges[k] < mean, ndtr(-np.abs((self.edges[k] - mean) / std))

        def mass(a, b):
            """Mass between two edges given as tail() pairs, from the tails that keep precision."""
            (a_below, ta), (b_below, tb) = a, b
            return np.where(b_below, tb - ta, np.where(a_below, 1 - ta - tb, ta - tb))

        def decisions(bits_of):
            """Walks the binary search; bits_of(p_upper) gives each level's bits."""
            lo, hi = np.zeros(shape, np.int64), np.full(shape, self.size, np.int64)
            t_lo, t_hi = tail(lo), tail(hi)
            for _ in range(self.precision):
                mid = (lo + hi) // 2
                t_mid = tail(mid)
                low, high = mass(t_lo, t_mid), mass(t_mid, t_hi)
                total = low + high  # 0 only far out in a tail, where any p will do
                up = bits_of(np.where(total > 0, high / np.where(total > 0, total, 1), 0.5))
                lo, hi = np.where(up, mid, lo), np.where(up, hi, mid)
                t_lo = tuple(np.where(up, m, l) for m, l in zip(t_mid, t_lo))
                t_hi = tuple(np.where(up, h, m) for m, h in zip(t_mid, t_hi))
            return lo

        def pop(message):
            return decisions(lambda p: bernoulli(p).pop(message).astype(bool))

        def push(message, buckets):
            levels = []

            def known_bits(p):
                bit = (buckets >> (self.precision - 1 - len(levels))) & 1
                levels.append((p.ravel(), bit.ravel()))
                return bit.astype(bool)

            decisions(known_bits)
            probs, bits = zip(*levels)
            bernoulli(np.concatenate(probs)).push(message, np.concatenate(bits))

        return Codec(push, pop)


class LatentGrid:
    """Latents on the grid step * (k - limit), k = 0..2 limit (the bucket index), coded
    with a Gaussian integrated over each cell (the end cells take the tails): the prior
    N(0, 1) as one fixed table (which the coder decodes four times faster than a fixed
    Gaussian), and N(mean, std) with a model per latent (posteriors, conditional priors), all inside the coder."""

    def __init__(self, step: float = LATENT_STEP, limit: int = 128):
        self.step, self.limit = step, limit
        self.size = 2 * limit + 1
        self.centres = step * (np.arange(self.size) - limit)
        edges = np.concatenate([[-np.inf], self.centres[1:] - step / 2, [np.inf]])
        self._prior = MODELS.Categorical(np.diff(ndtr(edges)), perfect=False)
        self._posterior = MODELS.QuantizedGaussian(0, 2 * limit)

    def prior(self, shape) -> Codec:
        return fixed(self._prior, shape)

    def bucket_of(self, z: np.ndarray) -> np.ndarray:
        return np.clip(np.rint(z / self.step) + self.limit, 0, 2 * self.limit).astype(np.int64)

    def entropy_bits(self, std: np.ndarray) -> float:
        """About the bits a pop from gaussian(., std) takes: the differential entropy of
        N(., std) in units of the cell, summed over latents."""
        return float(np.sum(np.maximum(0.0, np.log2(std / self.step * np.sqrt(2 * np.pi * np.e)))))

    def gaussian(self, mean: np.ndarray, std: np.ndarray) -> Codec:
        return family(self._posterior, np.shape(mean), mean / self.step + self.limit, std / self.step)


class LatentTables(LatentGrid):
    """LatentGrid's Gaussians from fixed tables: the mean on a grid of 1/FRACTIONS of a
    cell and log sigma on one of LOG_SIGMA_STEP. Each (log sigma, fraction) pair has a
    Categorical, built when first needed, over the cells at offsets -WINDOW..WINDOW from
    the mean's cell and an escape, the mass beyond them, after which the cell is one of
    the others, all equally likely. The latents that share a table go to the coder in
    one call: some 30 ns a pop, against 130 for a Gaussian built per latent. A latent
    whose window would cross the grid's ends, or whose sigma is over a quarter of the
    window, gets its own Gaussian inside the coder, as in LatentGrid."""

    FRACTIONS = 8
    LOG_SIGMA_STEP = 1 / 8
    LOG_SIGMA_LOW, LOG_SIGMA_HIGH = -12.0, 8.0
    WINDOW = 80  # cells each side: at least 4 sigma where a table is used
    _models = {}  # step -> the models by key, shared by all instances

    def __init__(self, step: float = LATENT_STEP, limit: int = 128):
        super().__init__(step, limit)
        assert 2 * self.WINDOW < 2 * limit and self.FRACTIONS & (self.FRACTIONS - 1) == 0
        levels = round((self.LOG_SIGMA_HIGH - self.LOG_SIGMA_LOW) / self.LOG_SIGMA_STEP) + 1
        self.stds = np.exp(self.LOG_SIGMA_LOW + self.LOG_SIGMA_STEP * np.arange(levels)) / step  # in cells
        self.widest = np.searchsorted(self.stds, self.WINDOW / 4, side="right") - 1
        self.own = levels * self.FRACTIONS  # the key of the latents with a Gaussian of their own
        self.escape = 2 * self.WINDOW + 1  # the symbol; the cell then from self.outside
        self.models = self._models.setdefault(step, [None] * self.own)

    def table(self, key: int):
        model = self.models[key]
        if model is None:
            level, fraction = divmod(key, self.FRACTIONS)
            edges = (np.arange(-self.WINDOW, self.WINDOW + 2) - 0.5 - fraction / self.FRACTIONS) / self.stds[level]
            masses = np.append(np.diff(ndtr(edges)), ndtr(edges[0]) + ndtr(-edges[-1]))
            model = self.models[key] = MODELS.Categorical(masses, perfect=False)
        return model

    def gaussian(self, mean: np.ndarray, log_sigma: np.ndarray) -> Codec:
        """Cells under N(mean, exp(log_sigma)), both as the networks give them."""
        shape, half, fractions = np.shape(mean), self.limit * self.FRACTIONS, self.FRACTIONS
        at = np.rint(np.ravel(mean) * (fractions / self.step))
        at = np.clip(at, -half, half, out=at).astype(np.int32) + half  # in 1/FRACTIONS of a cell from cell 0
        level = np.clip(np.ravel(log_sigma), self.LOG_SIGMA_LOW, self.LOG_SIGMA_HIGH) - self.LOG_SIGMA_LOW
        level /= self.LOG_SIGMA_STEP
        level = np.rint(level, out=level).astype(np.int32)
        # the window within the grid: WINDOW <= cell <= 2 limit - WINDOW
        tabled = (at - self.WINDOW * fractions).view(np.uint32) < (2 * self.limit - 2 * self.WINDOW + 1) * fractions
        tabled &= level <= self.widest
        shift = fractions.bit_length() - 1  # (a power of two: shifts and masks, not slow divisions)
        order, groups = by_model(np.where(tabled, level << shift | at & (fractions - 1), self.own), self.own + 1)
        first = np.where(tabled, (at >> shift) - self.WINDOW, 0)[order]  # a cell's symbol is cell - first
        tabled = tabled[order]
        own = groups[-1] if groups and groups[-1][0] == self.own else None
        if own:
            groups = groups[:-1]
            mine = slice(own[1], own[2])
            own_model = self._posterior, at[order[mine]] / self.FRACTIONS, self.stds[level[order[mine]]]

        def outside(count):
            """The escaped cells, below the window as they are, above it less its width."""
            return uniform(self.size - self.escape, (count,))

        def push(message, cells):
            symbols = np.asarray(cells, np.int32).ravel()[order] - first
            escaped = tabled & (symbols.view(np.uint32) >= self.escape)  # below the window: negative
            beyond = symbols[escaped]  # cell - first: < 0 below the window, > 2 WINDOW above
            outside(len(beyond)).push(message, beyond + first[escaped] - self.escape * (beyond > 0))
            symbols[escaped] = self.escape
            if own:
                message.encode_reverse(symbols[mine], *own_model)
            for k, a, b in groups:
                message.encode_reverse(symbols[a:b], self.table(k))

        def pop(message):
            symbols = np.empty(len(order), np.int32)
            for k, a, b in reversed(groups):
                symbols[a:b] = message.decode(self.table(k), b - a)
            if own:
                symbols[mine] = message.decode(*own_model)
            escaped = tabled & (symbols == self.escape)
            cells = outside(int(escaped.sum())).pop(message)
            symbols[escaped] = cells + self.escape * (cells >= first[escaped]) - first[escaped]
            out = np.empty_like(symbols)
            out[order] = symbols + first
            return out.reshape(shape)

        return Codec(push, pop)
