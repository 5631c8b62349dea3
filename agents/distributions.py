"""The action distribution of a denoising step: the backbone's own Gaussian reverse step.

A reverse step of a DDPM-style recommender is ``p(x_{i-1} | x_i) = N(mu_theta(x_i, i), sigma_i^2 I)``
with a network mean and a *fixed* per-step standard deviation (the clipped posterior variance of
the schedule). :class:`DenoiserGaussian` is that distribution in Stable-Baselines3's
:class:`~stable_baselines3.common.distributions.Distribution` interface, with two additions:

* ``reduction``: how the per-dimension log-densities are combined.

  - ``"sum"`` (SB3's convention, the exact log-density of the D-dimensional action).
  - ``"mean"`` (divide by D, as DDPO does). With D in the thousands the summed log-probability
    of a step moves by O(D * |delta mu|^2 / sigma^2) after a single gradient step, so PPO's
    ``ratio = exp(logp - logp_old)`` is either ~1 or astronomically large and ratio clipping
    degenerates into "clip everything". Dividing by D puts the log-ratio on a per-item scale;
    the policy gradient keeps its direction and is only rescaled by 1/D (absorb it in the
    learning rate), while the clip range must be chosen on that scale (DDPO uses 1e-4).

* ``active``: a per-row mask. Inactive rows (steps that are *not* fine-tuned, see
  ``train_last_k`` in :class:`agents.policies.DenoiserPolicy`) are deterministic: ``sample()``
  returns the mean, and ``log_prob`` and ``entropy`` are exactly 0 with no gradient, so such a
  step contributes ``ratio = 1`` and nothing to any policy loss.

Shapes: B rows (users x steps), D action dimensions; ``mean`` ``(B, D)``, ``std`` ``(B, 1)``
(broadcast over D), ``active`` ``(B,)`` bool.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from stable_baselines3.common.distributions import Distribution

REDUCTIONS = ("sum", "mean")
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def check_reduction(reduction: str) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f"log_prob_reduction={reduction!r}: expected one of {REDUCTIONS}")
    return reduction


class DenoiserGaussian(Distribution):
    """Isotropic Gaussian ``N(mean, std^2 I)`` per row, log-densities reduced over D.

    Args:
        action_dim: D.
        reduction: ``"sum"`` (exact log-density) or ``"mean"`` (divided by D), see the module doc.
    """

    def __init__(self, action_dim: int, reduction: str = "sum"):
        super().__init__()
        self.action_dim = int(action_dim)
        self.reduction = check_reduction(reduction)
        self.mean: Optional[torch.Tensor] = None
        self.std: Optional[torch.Tensor] = None
        self.active: Optional[torch.Tensor] = None

    # ------------------------------------------------------------------ SB3 Distribution API
    def proba_distribution_net(self, *args, **kwargs):
        raise NotImplementedError("DenoiserGaussian takes its mean from the denoiser; it has no network of its own")

    def proba_distribution(self, mean: torch.Tensor, std: torch.Tensor,
                           active: Optional[torch.Tensor] = None) -> "DenoiserGaussian":
        """Set the parameters: ``mean`` (B, D), ``std`` (B, 1) or (B, D) > 0, ``active`` (B,) bool or None (all)."""
        if mean.dim() != 2 or mean.shape[1] != self.action_dim:
            raise ValueError(f"mean must be (B, {self.action_dim}), got {tuple(mean.shape)}")
        if std.dim() != 2 or std.shape[0] != mean.shape[0]:
            raise ValueError(f"std must be (B, 1) or (B, D) matching mean {tuple(mean.shape)}, got {tuple(std.shape)}")
        self.mean, self.std = mean, std
        self.active = None if active is None else active.to(dtype=torch.bool, device=mean.device)
        return self

    def _reduce(self, per_dim: torch.Tensor) -> torch.Tensor:
        """(B, D) -> (B,) by sum or mean over D, zeroed on inactive rows."""
        out = per_dim.sum(dim=-1) if self.reduction == "sum" else per_dim.mean(dim=-1)
        if self.active is not None:
            out = torch.where(self.active, out, torch.zeros_like(out))
        return out

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        """Log-density of ``actions`` (B, D): ``(B,)``, per the reduction; 0 on inactive rows."""
        z = (actions - self.mean) / self.std
        return self._reduce(-0.5 * z.pow(2) - torch.log(self.std) - _HALF_LOG_2PI)

    def log_prob_per_dim(self, actions: torch.Tensor) -> torch.Tensor:
        """Per-dimension log-densities ``(B, D)`` of ``actions`` (B, D), not reduced; 0 on inactive rows."""
        z = (actions - self.mean) / self.std
        per_dim = -0.5 * z.pow(2) - torch.log(self.std) - _HALF_LOG_2PI
        if self.active is not None:
            per_dim = torch.where(self.active.unsqueeze(-1), per_dim, torch.zeros_like(per_dim))
        return per_dim

    def weighted_log_prob(self, actions: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """``sum_d weights_d * log N(actions_d; mean_d, std^2)`` ``(B,)`` (divided by D with reduction "mean"):
        the log-density with one weight per dimension, e.g. per-item advantages; 0 on inactive rows."""
        return self._reduce(weights * self.log_prob_per_dim(actions))

    def entropy(self) -> torch.Tensor:
        """Differential entropy ``(B,)``, per the reduction; 0 on inactive rows."""
        per_dim = (0.5 + _HALF_LOG_2PI + torch.log(self.std)).expand_as(self.mean)
        return self._reduce(per_dim)

    def sample(self, generator: Optional[torch.Generator] = None, noise: Optional[torch.Tensor] = None) -> torch.Tensor:
        """A draw ``(B, D)``; inactive rows return the mean. ``generator`` makes it reproducible; ``noise``
        ``(B, D)`` (standard normal) replaces the draw (e.g. rows of a larger batch's draw)."""
        if noise is None:
            noise = torch.randn(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        elif noise.shape != self.mean.shape:
            raise ValueError(f"noise has shape {tuple(noise.shape)}; the distribution has {tuple(self.mean.shape)}")
        if self.active is not None:
            noise = noise * self.active.unsqueeze(-1).to(noise.dtype)
        return self.mean + self.std * noise

    def mode(self) -> torch.Tensor:
        return self.mean

    def actions_from_params(self, mean: torch.Tensor, std: torch.Tensor, active: Optional[torch.Tensor] = None,
                            deterministic: bool = False) -> torch.Tensor:
        return self.proba_distribution(mean, std, active).get_actions(deterministic=deterministic)

    def log_prob_from_params(self, mean: torch.Tensor, std: torch.Tensor, active: Optional[torch.Tensor] = None):
        actions = self.actions_from_params(mean, std, active)
        return actions, self.log_prob(actions)

    # ------------------------------------------------------------------ extras
    def kl_to_mean(self, other_mean: torch.Tensor) -> torch.Tensor:
        """``KL(self || N(other_mean, std^2 I))`` ``(B,)`` in closed form (same std on both sides):
        ``||mean - other_mean||^2 / (2 std^2)``, summed or averaged over D; 0 on inactive rows."""
        return self._reduce((self.mean - other_mean).pow(2) / (2.0 * self.std.pow(2)))
