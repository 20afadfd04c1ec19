"""benchmarks/tile_edges.py: what vae-cifar's tiles cost, three ways."""
import math

import numpy as np
import torch

from benchmarks import tile_edges
from bbans.models.zoo import load_network


def test_one_tile_costs_the_model_s_own_elbo_whichever_way():
    """On a single 32x32 image the tiles are the image: in tiles and across tiles are the
    same, the model's log p(x | z) at the posterior mean plus its KL, per sub-pixel."""
    vae = load_network("vae-cifar")
    rng = np.random.default_rng(0)
    image = np.clip(120 + rng.integers(-4, 5, (32, 32, 3)).cumsum(1), 0, 255).astype(np.uint8)
    costs = tile_edges.costs(vae, image)
    x = torch.from_numpy(image[None]).float()
    with torch.no_grad():
        mu, log_sigma = vae.posterior(x)
        kl = (0.5 * (mu**2 + torch.exp(2 * log_sigma) - 1 - 2 * log_sigma)).sum()
        want = float(kl - vae.log_likelihood(x, mu).sum()) / math.log(2) / image.size
    assert math.isclose(costs["in tiles"], want, rel_tol=1e-5)
    assert math.isclose(costs["across tiles"], want, rel_tol=1e-5)
    assert costs["whole neighbourhood"] != costs["in tiles"]


def test_a_mosaic_of_one_tile_costs_that_tile_in_tiles_and_otherwise_across():
    """In tiles, each tile of a mosaic costs what it costs alone; across tiles, its edge
    pixels see the neighbouring tiles' pixels in place of zeros."""
    vae = load_network("vae-cifar")
    rng = np.random.default_rng(1)
    tile = np.clip(100 + rng.integers(-6, 7, (32, 32, 3)).cumsum(0), 0, 255).astype(np.uint8)
    costs = tile_edges.costs(vae, np.tile(tile, (2, 3, 1)))
    assert math.isclose(costs["in tiles"], tile_edges.costs(vae, tile)["in tiles"], rel_tol=1e-5)
    assert not math.isclose(costs["across tiles"], costs["in tiles"], rel_tol=1e-3)
