"""DDPO-style fine-tuning: clipped importance-ratio updates over stored denoising transitions.

Black et al. (2023), "Training Diffusion Models with Reinforcement Learning", treat each reverse
step as an action and optimise PPO's clipped surrogate on the stored transitions. Here, after the
same rollout as :class:`~agents.refit.ReFiT` (users repeated ``n_traj_per_user`` times, per-user
advantage normalisation), each update runs ``n_epochs`` passes of shuffled minibatches of
``batch_size`` (state ``x_t``, ``t``, action, old log-prob, advantage) rows:

    ratio = exp(log pi(a | s) - log pi_old(a | s))
    loss  = -mean(min(A * ratio, A * clip(ratio, 1 - eps, 1 + eps)))
            + kl_coef * mean(KL(pi || ref)) + vf_coef * value loss (baseline="value")

with advantages clipped to ``[-adv_clip_max, adv_clip_max]``. Defaults follow DDPO:
``log_prob_reduction="mean"`` (log-probabilities divided by the D item dimensions, see
:mod:`agents.distributions`) and a tiny clip range ``clip_range=1e-4`` on that scale. Losses are
means over transitions (ReFiT's are sums over the steps of a trajectory).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Union

import torch
from stable_baselines3.common.type_aliases import Schedule
from stable_baselines3.common.utils import FloatSchedule

from agents.refit import ReFiT, ReFiTConfig, Trajectories


@dataclass
class DDPOConfig(ReFiTConfig):
    """DDPO's hyperparameters: ReFiT's, with DDPO's log-probability reduction, plus the clipped surrogate's."""

    log_prob_reduction: str = "mean"
    """log-probabilities divided by the D item dimensions (DDPO's scale; the clip range is chosen on it)"""
    n_epochs: int = 1
    """passes over the stored transitions per rollout"""
    clip_range: Union[float, Schedule] = 1e-4
    """PPO clip range on the ratio (float or SB3 schedule), on the scale set by log_prob_reduction"""
    adv_clip_max: float = 5.0
    """advantages are clipped to [-adv_clip_max, adv_clip_max]"""

    def check(self) -> None:
        if self.n_epochs < 1:
            raise ValueError(f"n_epochs={self.n_epochs}: must be >= 1")
        if not callable(self.clip_range) and not self.clip_range > 0:
            raise ValueError(f"clip_range={self.clip_range}: must be > 0")
        if not self.adv_clip_max > 0:
            raise ValueError(f"adv_clip_max={self.adv_clip_max}: must be > 0")
        if self.credit != "trajectory":
            raise ValueError(f"credit={self.credit!r}: DDPO's clipped surrogate uses trajectory credit only "
                             "(per-item credit is implemented by ReFiT)")
        super().check()


class DDPO(ReFiT):
    """DDPO-style clipped-ratio fine-tuning (see the module docstring); hyperparameters :class:`DDPOConfig`
    (``batch_size``: transitions per minibatch, None: all, one step per epoch).

    ``credit`` must stay ``"trajectory"``: per-item credit (``credit="item"``) exists for :class:`ReFiT` only.
    """

    config_class = DDPOConfig

    def _setup_model(self) -> None:
        super()._setup_model()
        self.clip_range = FloatSchedule(self.clip_range)

    def train(self, traj: Trajectories) -> None:
        """``n_epochs`` x minibatches of clipped-surrogate steps on the stored transitions."""
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        clip_range = float(self.clip_range(self._current_progress_remaining))
        advantages = self.compute_advantages(traj).reshape(-1).clamp(-self.adv_clip_max, self.adv_clip_max)
        n_rows = traj.n_steps * traj.n_traj
        totals: Dict[str, float] = dict(policy_loss=0.0, kl=0.0, value_loss=0.0, loss=0.0)
        n_minibatches, grad_norms = 0, []
        for _ in range(self.n_epochs):
            log_ratios = []
            for index in self._row_batches(n_rows, shuffle=True):
                rows = traj.rows(index)
                log_prob, kl, values = self.evaluate_rows(rows)
                log_ratio = log_prob - rows["old_log_prob"]
                ratio = torch.exp(log_ratio)
                adv = advantages[index]
                policy_loss = -torch.min(adv * ratio, adv * torch.clamp(ratio, 1 - clip_range, 1 + clip_range)).mean()
                kl_loss = kl.mean()
                value_loss = (values - traj.rewards[rows["traj"]]).pow(2).mean() if values is not None \
                    else torch.zeros((), device=self.device)
                loss = policy_loss + self.kl_coef * kl_loss + self.vf_coef * value_loss
                self._check_finite("loss", loss)
                self.policy.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                grad_norms.append(self._clip_and_step())
                log_ratios.append(log_ratio.detach())
                n_minibatches += 1
                for key, value in zip(totals, (policy_loss, kl_loss, value_loss, loss)):
                    totals[key] += float(value.detach())
        self._n_updates += n_minibatches
        totals = {k: v / n_minibatches for k, v in totals.items()}
        # Ratio statistics of the last epoch: how far the policy moved from the behaviour policy.
        self._record_update(traj, totals, float(sum(grad_norms) / len(grad_norms)), torch.cat(log_ratios), clip_range)
        self.logger.record("train/clip_range", clip_range)
