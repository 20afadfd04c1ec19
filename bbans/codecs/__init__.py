"""The coder's codecs: push/pop pairs over an ANS message, numpy parameters, no torch.

`core` has the message, the codecs of symbol distributions and the combinators (chain,
serial, bits_back, ...); `latents` the latents' grids; `pixels` the pixel likelihoods of
the zoo's networks; `vae` and `vq` the codecs of whole batches of images.
"""
from bbans.codecs.core import (BernoulliLevels, Codec, CorruptData, affordable, bernoulli, bits_back, categorical, chain,
                               check_used_up, mostly_zero, new_message, point, quantized_laplace, serial, uniform)
from bbans.codecs.latents import LATENT_STEP, LatentGrid, LatentTables, StdBuckets

__all__ = ["BernoulliLevels", "Codec", "CorruptData", "LATENT_STEP", "LatentGrid", "LatentTables", "StdBuckets",
           "affordable", "bernoulli", "bits_back", "categorical", "chain", "check_used_up", "mostly_zero", "new_message",
           "point", "quantized_laplace", "serial", "uniform"]
