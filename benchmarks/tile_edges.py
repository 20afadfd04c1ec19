"""What vae-cifar's 32x32 tiles cost on photos: the -ELBO per sub-pixel (bits) of each
photo coded in tiles as bbans codes them (every tile's neighbourhoods cut at its edges,
z at the posterior mean), the same for the pixels whose neighbourhood lies whole inside
their tile (rows 2 on, columns 2 to 29: what coding across tiles could bring the edge
pixels down to at best), and with the neighbourhoods taken across tiles from the whole
image (the trained head as it is, fed what a wavefront over the whole image would see).

    BBANS_DATA=../shared/data python -m benchmarks.tile_edges   (needs scikit-image)
"""
import math

import numpy as np
import torch

from bbans.codecs.colour import CHANNELS, channel_params
from bbans.models.colour import mixture_log_mass, neighbours
from bbans.models.data import load_images
from bbans.models.vae import LOG_SCALE_RANGE
from bbans.models.zoo import load_network

SIDE = 32


def as_tiles(a: torch.Tensor) -> torch.Tensor:
    """(H, W, C) -> (tiles, SIDE², C), tile by tile in rows."""
    h, w, c = a.shape
    return a.reshape(h // SIDE, SIDE, w // SIDE, SIDE, c).permute(0, 2, 1, 3, 4).reshape(-1, SIDE * SIDE, c)


@torch.no_grad()
def costs(vae, image: np.ndarray) -> dict:
    """The photo's largest top-left part of whole tiles -> bits per sub-pixel three ways."""
    h, w = image.shape[0] // SIDE * SIDE, image.shape[1] // SIDE * SIDE
    x = torch.from_numpy(np.ascontiguousarray(image[:h, :w, :3])).float()
    pixels = as_tiles(x)  # (tiles, SIDE², 3)
    mu, log_sigma = vae.posterior(pixels.reshape(-1, SIDE, SIDE, 3))
    kl = float((0.5 * (mu**2 + torch.exp(2 * log_sigma) - 1 - 2 * log_sigma)).sum()) / math.log(2) / (h * w * 3)
    features = vae.decoder(mu).reshape(len(pixels), SIDE * SIDE, vae.features)
    out = {}
    for name, context in [("in tiles", neighbours(pixels.reshape(-1, SIDE, SIDE, 3), vae.context)),
                          ("across tiles", as_tiles(neighbours(x[None], vae.context).reshape(h, w, -1)))]:
        heads = vae.head(torch.cat([features, context], -1)).movedim(-1, 0)
        values = pixels.movedim(-1, 0)
        bits = sum(-mixture_log_mass(values[c], means, log_scales.clip(*LOG_SCALE_RANGE), logit)
                   for c in range(CHANNELS) for means, log_scales, logit in [channel_params(heads, c, values[:c])])
        bits = (bits / (3 * math.log(2))).reshape(-1, SIDE, SIDE)  # per sub-pixel
        out[name] = float(bits.mean()) + kl
        if name == "in tiles":
            out["whole neighbourhood"] = float(bits[:, 2:, 2:SIDE - 2].mean()) + kl
    return out


def main():
    import skimage.data

    torch.set_num_threads(1)
    vae = load_network("vae-cifar")
    test = load_images("cifar-10", "test")
    mosaic = test[np.linspace(0, len(test) - 1, 100).astype(int)].reshape(10, 10, SIDE, SIDE, 3)
    images = {name: getattr(skimage.data, name)() for name in ("astronaut", "chelsea", "coffee", "immunohistochemistry")}
    images["cifar 10x10 mosaic"] = mosaic.transpose(0, 2, 1, 3, 4).reshape(10 * SIDE, 10 * SIDE, 3)
    print("| image | in tiles (as coded) | pixels with their whole neighbourhood | across tiles, this head |")
    print("| --- | --- | --- | --- |")
    for name, image in images.items():
        c = costs(vae, image)
        print(f"| {name} | {c['in tiles']:.4f} | {c['whole neighbourhood']:.4f} | {c['across tiles']:.4f} |", flush=True)


if __name__ == "__main__":
    main()
