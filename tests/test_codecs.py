import numpy as np
import pytest
from scipy.special import ndtr

from bbans import codecs as c
from conftest import bits_of, filled_message

rng = np.random.default_rng(0)


CASES = {
    "bernoulli": lambda: (c.bernoulli(rng.random(50)), rng.integers(0, 2, 50)),
    "categorical": lambda: (c.categorical(rng.random((20, 7))), rng.integers(0, 7, 20)),
    "uniform": lambda: (c.uniform(300, (4, 5)), rng.integers(0, 300, (4, 5))),
    "laplace": lambda: (c.quantized_laplace(rng.normal(100, 80, 30), rng.uniform(0.1, 50, 30), 1, 255),
                        rng.integers(1, 256, 30)),
    "buckets": lambda: (c.StdBuckets(8).gaussian(rng.normal(0, 1, 12), rng.uniform(0.01, 2, 12)),
                        rng.integers(0, 256, 12)),
    "bernoulli levels": lambda: (c.BernoulliLevels(rng.uniform(0.001, 0.999, 9))(rng.integers(0, 9, (7, 30))),
                                 rng.integers(0, 2, (7, 30))),
    "bernoulli nibbles": lambda: (c.BernoulliLevels(rng.uniform(0.001, 0.999, 9), nibbles=True)(
        rng.integers(0, 9, (7, 31))), rng.integers(0, 2, (7, 31))),
    "mostly zero": lambda: (c.mostly_zero(rng.random((6, 20)) < 0.5, lambda coded: c.bernoulli(np.full(coded.sum(), 0.3))),
                            rng.integers(0, 2, (6, 20))),
    "latent tables": lambda: (c.LatentTables().gaussian(rng.normal(0, 3, 40), rng.uniform(-9, 2, 40)),
                              rng.integers(0, 257, 40)),
    "latent grid prior": lambda: (c.LatentGrid().prior((6, 5)), rng.integers(0, 257, (6, 5))),
    "latent grid posterior": lambda: (c.LatentGrid().gaussian(rng.normal(0, 1, 12), rng.uniform(0.01, 2, 12)),
                                      rng.integers(0, 257, 12)),
    "serial": lambda: (c.serial([c.uniform(5, (3,)), c.bernoulli(np.full(2, 0.3))]),
                       (rng.integers(0, 5, 3), rng.integers(0, 2, 2))),
    "chain": lambda: (c.chain(c.bernoulli(np.full(6, 0.5)), lambda a: c.uniform(3, (int(np.sum(a)),))),
                      (np.array([1, 0, 1, 1, 0, 0]), rng.integers(0, 3, 3))),
    "chain of three": lambda: (c.chain(c.uniform(4, (2,)), lambda a: c.uniform(int(a.max()) + 2, (3,)),
                                       lambda b: c.bernoulli(np.full(int(b.sum()) + 1, 0.2))),
                               (np.array([3, 1]), np.array([4, 0, 2]), rng.integers(0, 2, 7))),
}


@pytest.mark.parametrize("name", CASES)
def test_push_then_pop_restores_symbols_and_message(name):
    for _ in range(20):
        codec, symbols = CASES[name]()
        message = filled_message()
        before = message.get_compressed().copy()
        codec.push(message, symbols)
        out = codec.pop(message)
        for a, b in zip(*(s if isinstance(s, tuple) else (s,) for s in (out, symbols))):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(message.get_compressed(), before)


def test_affordable_pops_only_where_the_message_holds_the_bits():
    """On an empty message it takes the mode; on a full one it pops (and costs bits back);
    either way pushing back restores the message, the decoder told which by a flag."""
    grid = c.LatentGrid()
    posterior = grid.gaussian(np.zeros(16), np.ones(16))
    mode = np.full(16, grid.limit)
    codec = c.affordable(posterior, mode, grid.entropy_bits(np.ones(16)) + 64)
    for message, pops in ((c.new_message(), False), (filled_message(words=64), True)):
        before = message.get_compressed().copy()
        z = codec.pop(message)
        assert np.array_equal(z, mode) != pops
        codec.push(message, z)
        np.testing.assert_array_equal(message.get_compressed(), before)


def test_pop_then_push_is_exact_even_on_an_empty_stack():
    for fill in (0, 1, 3):
        message = filled_message(fill) if fill else c.new_message()
        before = message.get_compressed().copy()
        codec = c.StdBuckets(8).gaussian(rng.normal(0, 1, 40), rng.uniform(0.05, 1, 40))
        codec.push(message, codec.pop(message))
        np.testing.assert_array_equal(message.get_compressed(), before)


def test_bernoulli_costs_its_information_content():
    p = rng.uniform(0.01, 0.99, 20000)
    x = (rng.random(20000) < p).astype(int)
    ideal = -np.sum(np.log2(np.where(x == 1, p, 1 - p)))
    assert abs(bits_of(lambda m: c.bernoulli(p).push(m, x)) - ideal) < 1e-3 * ideal + 64


def test_bernoulli_levels_cost_their_information_content_in_any_order_of_levels():
    probs = rng.uniform(0.01, 0.99, 50)
    levels = rng.integers(0, 50, (40, 500))
    x = (rng.random(levels.shape) < probs[levels]).astype(int)
    ideal = -np.sum(np.log2(np.where(x == 1, probs[levels], 1 - probs[levels])))
    assert abs(bits_of(lambda m: c.BernoulliLevels(probs)(levels).push(m, x)) - ideal) < 1e-3 * ideal + 64


def test_bernoulli_nibbles_cost_the_same_as_single_bits():
    """Four bits of a level as one symbol cost what they cost one by one, whatever the
    levels' counts (remainders of four, levels mixed in one nibble, a ragged end)."""
    probs = np.concatenate([[1e-7, 1 - 1e-7], rng.uniform(0.01, 0.99, 48)])
    for shape in ((40, 500), (3, 7), (1, 1)):
        levels = rng.integers(0, 50, shape)
        x = (rng.random(shape) < probs[levels]).astype(np.uint8)
        single, nibbles = (bits_of(lambda m: c.BernoulliLevels(probs, nibbles)(levels).push(m, x)) for nibbles in (False, True))
        assert abs(nibbles - single) < 1e-3 * single + 32


def test_mostly_zero_codes_only_the_rest_unless_a_row_breaks_the_rule():
    sure = np.zeros((5, 10), bool)
    sure[:, 5:] = True
    x = np.zeros((5, 10), np.uint8)
    x[:, :5] = 1
    x[3, 7] = 1  # row 3's sure zeros are not all zero: the whole row is coded
    seen = []

    def rest(coded):
        seen.append(coded.copy())
        return c.bernoulli(np.full(coded.sum(), 0.5))

    codec = c.mostly_zero(sure, rest)
    message = filled_message()
    codec.push(message, x)
    np.testing.assert_array_equal(codec.pop(message), x)
    expected = ~sure
    expected[3] = True
    for coded in seen:
        np.testing.assert_array_equal(coded, expected)


def test_latent_tables_cost_about_the_gaussian_mass_of_the_cell():
    """The tables' mean and log sigma lie on grids (1/8 of a cell, 1/8): the cost stays
    within a percent of the exact Gaussian's, near the grid's ends and for wide sigmas
    (a Gaussian of the latent's own) as well as in the middle."""
    tables = c.LatentTables()
    for centre, spread, log_sigma in ((0, 1.5, (-4, 0)), (7.5, 0.3, (-4, 0)), (0, 1, (0.3, 1.5))):
        mean, ls = rng.normal(centre, spread, 5000), rng.uniform(*log_sigma, 5000)
        k = tables.bucket_of(mean + np.exp(ls) * rng.normal(size=5000))
        lo, hi = tables.centres[k] - tables.step / 2, tables.centres[k] + tables.step / 2
        lo[k == 0], hi[k == 2 * tables.limit] = -np.inf, np.inf
        ideal = -np.sum(np.log2(ndtr((hi - mean) / np.exp(ls)) - ndtr((lo - mean) / np.exp(ls))))
        assert abs(bits_of(lambda m: tables.gaussian(mean, ls).push(m, k)) - ideal) < 1e-2 * ideal + 64


def test_latent_tables_code_cells_far_outside_the_window_and_pop_only_grid_cells():
    """A cell beyond a table's window escapes to a uniform choice among the others, so
    any cell can be pushed; and what a pop draws from any message is a cell of the grid."""
    tables = c.LatentTables()
    mean, ls = np.zeros(6), np.full(6, -5.0)  # tiny sigmas: the window is far wider than the mass
    cells = np.array([0, 40, 128, 200, 256, 129])
    message = filled_message()
    before = message.get_compressed().copy()
    codec = tables.gaussian(mean, ls)
    codec.push(message, cells)
    np.testing.assert_array_equal(codec.pop(message), cells)
    np.testing.assert_array_equal(message.get_compressed(), before)
    for seed in range(20):
        codec = tables.gaussian(rng.normal(0, 4, 300), rng.uniform(-9, 2, 300))
        z = codec.pop(filled_message(words=4000, seed=seed))
        assert z.min() >= 0 and z.max() <= 2 * tables.limit


def test_latent_grid_costs_the_gaussian_mass_of_the_cell():
    grid = c.LatentGrid()
    mean, std = rng.normal(0, 1.5, 5000), rng.uniform(0.02, 1.5, 5000)
    k = grid.bucket_of(mean + std * rng.normal(size=5000))
    lo, hi = grid.centres[k] - grid.step / 2, grid.centres[k] + grid.step / 2
    ideal = -np.sum(np.log2(ndtr((hi - mean) / std) - ndtr((lo - mean) / std)))
    assert abs(bits_of(lambda m: grid.gaussian(mean, std).push(m, k)) - ideal) < 1e-3 * ideal + 64
    k = grid.bucket_of(rng.normal(size=5000))
    lo, hi = grid.centres[k] - grid.step / 2, grid.centres[k] + grid.step / 2
    prior_ideal = -np.sum(np.log2(ndtr(hi) - ndtr(lo)))
    assert abs(bits_of(lambda m: grid.prior(k.shape).push(m, k)) - prior_ideal) < 1e-3 * prior_ideal + 64


def test_bucket_posterior_costs_the_gaussian_mass_of_the_bucket():
    buckets = c.StdBuckets(8)
    mean, std = rng.normal(0, 1.5, 5000), rng.uniform(0.02, 1.5, 5000)
    z = buckets.bucket_of(mean + std * rng.normal(size=5000))
    mass = ndtr((buckets.edges[z + 1] - mean) / std) - ndtr((buckets.edges[z] - mean) / std)
    ideal = -np.sum(np.log2(mass))
    assert abs(bits_of(lambda m: buckets.gaussian(mean, std).push(m, z)) - ideal) < 1e-3 * ideal + 64


def test_bits_back_costs_the_elbo_terms_of_the_popped_latents():
    """Net cost = -log p(x|z) - log p(z) + log q(z|x) for the z it popped."""
    buckets = c.StdBuckets(8)
    x = rng.integers(0, 2, (200, 10))
    mean, std = x[:, :3] - 0.5, np.full((200, 3), 0.3)
    p_of = lambda z: np.clip(0.5 + 0.1 * buckets.centres[z].sum(-1, keepdims=True), 0.05, 0.95) * np.ones(10)
    codec = c.bits_back(buckets.prior((200, 3)), lambda z: c.bernoulli(p_of(z)),
                        lambda x: buckets.gaussian(mean, std))
    message = filled_message(4000)
    before = message.num_bits()
    z = buckets.gaussian(mean, std).pop(message.clone())
    codec.push(message, x)
    q = ndtr((buckets.edges[z + 1] - mean) / std) - ndtr((buckets.edges[z] - mean) / std)
    p = p_of(z)
    ideal = -np.sum(np.log2(np.where(x == 1, p, 1 - p))) + z.size * 8 + np.sum(np.log2(q))
    assert abs(message.num_bits() - before - ideal) < 1e-3 * abs(ideal) + 64
    np.testing.assert_array_equal(codec.pop(message), x)
