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

Data parallel under ``torchrun`` (as :class:`~agents.refit.ReFiT`, see :mod:`agents.chain`): the minibatches
are drawn over the rows of the *global* batch with the shared generator (the same permutation on every rank),
each rank evaluates its rows of a minibatch (possibly none) and divides their sum by the minibatch's global
size, and every minibatch step sums the gradients and loss terms over the ranks, so the sequence of steps equals
one process's with ``n_envs * world_size`` environments.
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
        if self.score_grad:
            raise ValueError("score_grad=True: DDPO's clipped surrogate does not add the reward's own gradient "
                             "(ReFiT does)")
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
        totals: Dict[str, float] = dict(policy_loss=0.0, kl=0.0, value_loss=0.0, loss=0.0)
        n_minibatches, grad_norms = 0, []
        for _ in range(self.n_epochs):
            log_ratios = []
            for index, size in self._global_minibatches(traj, shuffle=True):
                self.policy.optimizer.zero_grad(set_to_none=True)
                terms = dict.fromkeys(totals, 0.0)
                if len(index):  # this rank's rows of the minibatch; their losses are shares of its global means
                    rows = traj.rows(index)
                    log_prob, kl, values = self.evaluate_rows(rows)
                    log_ratio = log_prob - rows["old_log_prob"]
                    ratio = torch.exp(log_ratio)
                    adv = advantages[index]
                    surrogate = torch.min(adv * ratio, adv * torch.clamp(ratio, 1 - clip_range, 1 + clip_range))
                    policy_loss = -surrogate.sum() / size
                    kl_loss = kl.sum() / size
                    value_loss = (values - traj.rewards[rows["traj"]]).pow(2).sum() / size if values is not None \
                        else torch.zeros((), device=self.device)
                    loss = policy_loss + self.kl_coef * kl_loss + self.vf_coef * value_loss
                    loss.backward()  # a non-finite loss stops the update in _reduce_and_step, before the step
                    log_ratios.append(log_ratio.detach())
                    terms = {key: float(value.detach()) for key, value in
                             zip(totals, (policy_loss, kl_loss, value_loss, loss))}
                grad_norm, terms = self._reduce_and_step(terms)  # a collective: every rank, every minibatch
                grad_norms.append(grad_norm)
                n_minibatches += 1
                for key in totals:
                    totals[key] += terms[key]
        self._n_updates += n_minibatches
        totals = {k: v / n_minibatches for k, v in totals.items()}
        # Ratio statistics of the last epoch: how far the policy moved from the behaviour policy.
        log_ratio = torch.cat(log_ratios) if log_ratios else torch.zeros(0, device=self.device)
        self._record_update(traj, totals, float(sum(grad_norms) / len(grad_norms)), log_ratio, clip_range)
        self.logger.record("train/clip_range", clip_range)
