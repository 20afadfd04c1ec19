"""An autoregressive flow over a layer of latents for the bits-back coder: MADE (Germain
et al. 2015) as a one-step MAF (Papamakarios et al. 2017), for a prior, or given a
context for a posterior. The latents fall into `groups` groups in order; each latent's
Gaussian, mean and log-sigma, comes from the context and the groups before it alone (the
first group's from the context alone), so that the coder pops the groups one after
another, each through the latent tables as any diagonal Gaussian, and pushes them all
from one evaluation: a prior pops in decoding, a posterior in encoding.

The masks make the weights from later groups zero; the integer form of the network
(bbans.models.intnet.IntNet, of `plain`'s unmasked copy) keeps them exactly zero, so a
group's outputs are the same whatever the later groups hold: those the decoder has not
popped yet.
"""
import numpy as np
import torch
from torch import nn
import torch.nn.functional as F


class MaskedLinear(nn.Linear):
    def __init__(self, inputs: int, outputs: int, mask: torch.Tensor):
        super().__init__(inputs, outputs)
        self.register_buffer("mask", mask)

    def forward(self, x):
        return F.linear(x, self.weight * self.mask, self.bias)


def group_of(latent: int, groups: int) -> torch.Tensor:
    """The group (0..groups-1) of each of `latent` latents, in order, as even as can be."""
    return torch.arange(latent) * groups // latent


def made(latent: int, hidden: int, groups: int, context: int = 0) -> nn.Sequential:
    """(B, context + latent) -> (B, 2 latent), the means then the log-sigmas, each latent's
    from the context (the first `context` inputs) and the groups before its own, through
    one hidden layer: hidden unit k sees all the context and the groups up to u(k) = k mod
    (groups - 1), or with a context k mod groups - 1 (the units at -1 see the context
    alone, for the first group). The last layer starts at zero: N(0, I), the prior it
    replaces, or no change to the Gaussian it corrects."""
    assert 2 <= groups <= latent
    group = group_of(latent, groups)
    unit = torch.arange(hidden) % groups - 1 if context else torch.arange(hidden) % (groups - 1)
    sees = torch.cat([torch.ones(hidden, context), (unit[:, None] >= group[None, :]).float()], 1)
    first = MaskedLinear(context + latent, hidden, sees)
    last = MaskedLinear(hidden, 2 * latent, (group[:, None] > unit[None, :]).float().repeat(2, 1))
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return nn.Sequential(first, nn.ReLU(), last)


def plain(seq: nn.Sequential) -> nn.Sequential:
    """The network with its masks applied to the weights, as plain Linear layers."""
    out = []
    for m in seq:
        if isinstance(m, MaskedLinear):
            linear = nn.Linear(m.in_features, m.out_features)
            linear.weight.data, linear.bias.data = (m.weight * m.mask).detach().clone(), m.bias.detach().clone()
            m = linear
        out.append(m)
    return nn.Sequential(*out)


def group_parts(seq: nn.Sequential, latent_groups: list) -> list:
    """`plain`'s network cut to each group of latents: (the inputs that the group's outputs
    read, a network from those inputs to its means and log-sigmas). Only weights that are
    zero are cut (the masks'), so a part's outputs are the whole network's for its group,
    bit for bit in the integer form too (bbans.models.intnet: each output's scale and sum
    are over the same nonzero weights), from the hidden units the group sees alone: the
    encoder's pops of a posterior evaluate a part per group, about half the work of the
    whole network each time."""
    first, last = [m for m in seq if isinstance(m, nn.Linear)]
    latent = last.out_features // 2
    parts = []
    for group in latent_groups:
        rows = torch.from_numpy(np.concatenate([group, latent + group]))
        units = (last.weight[rows] != 0).any(0)
        units[0] |= not units.any()  # (a prior's first group sees no unit: its biases alone, through a unit of zero weight)
        inputs = (first.weight[units] != 0).any(0)
        inputs[0] |= not inputs.any()
        cut = [nn.Linear(int(inputs.sum()), int(units.sum())), nn.ReLU(), nn.Linear(int(units.sum()), len(rows))]
        cut[0].weight.data, cut[0].bias.data = first.weight[units][:, inputs].clone(), first.bias[units].clone()
        cut[2].weight.data, cut[2].bias.data = last.weight[rows][:, units].clone(), last.bias[rows].clone()
        parts.append((np.flatnonzero(inputs.numpy()), nn.Sequential(*cut)))
    return parts


def groups(latent: int, count: int) -> list:
    """The latents' indices, group by group."""
    group = group_of(latent, count).numpy()
    return [np.flatnonzero(group == g) for g in range(count)]
