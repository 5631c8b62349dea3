"""The rollout that ReFiT and DDPO store for their update: N trajectories, restricted to the K trained steps."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional

import torch

from refit_gym.diffusion.context import index_context

__all__ = ["Trajectories"]


@dataclass
class Trajectories:
    """One rollout of N = n_envs trajectories, restricted to the K trained steps.

    Attributes:
        users: ``(N,)`` int64 user ids (each repeated ``n_traj_per_user`` times, consecutively).
        condition: ``(N, condition_dim)`` float32.
        xs: ``(K + 1, N, D)``: ``xs[s]`` is the state of trained step ``s`` and ``xs[s + 1]`` its
            action (the transition of the environment is ``x_{t-1} = action``).
        t: ``(K,)`` int64 remaining-step counts of the trained steps (``K, ..., 1``).
        log_prob: ``(K, N)`` log-probabilities of the actions under the behaviour policy.
        ref_mean: ``(K, N, D)`` means of the frozen reference (pretrained) denoiser, or None when the
            KL penalty is off (``kl_coef == 0``: the reference is not run).
        rewards: ``(N,)`` terminal rewards.
        item_rewards: ``(N, n_items)`` per-item terms of the terminal rewards (``credit="item"``), else None.
        score_reward: ``(N,)`` the terminal rewards on the autograd graph of the parameters that score the
            final states (``score_grad=True``; computed once, by the terminal step), else None.
        ctx_index: ``(N,)`` int64: the trajectory whose condition (and user) each trajectory shares, the
            first copy of its user when their conditions are equal, else itself; the denoiser context is
            computed once per distinct entry (None: every trajectory its own).
        context: the denoiser context of every trajectory (``N`` rows) when no trained parameter reaches it
            (CF-Diff's hop signals): the update reads it instead of computing it again; None: it does.
    """

    users: torch.Tensor
    condition: torch.Tensor
    xs: torch.Tensor
    t: torch.Tensor
    log_prob: torch.Tensor
    ref_mean: Optional[torch.Tensor]
    rewards: torch.Tensor
    item_rewards: Optional[torch.Tensor] = None
    ctx_index: Optional[torch.Tensor] = None
    score_reward: Optional[torch.Tensor] = None
    context: Any = None

    @property
    def n_traj(self) -> int:
        return int(self.users.shape[0])

    @property
    def n_steps(self) -> int:
        return int(self.t.shape[0])

    def rows(self, index: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Flat (step, trajectory) rows ``index`` (int64, ``s * N + n``) as batched tensors; ``ref_mean``
        is None when :attr:`ref_mean` is."""
        s, n = index // self.n_traj, index % self.n_traj
        out = dict(x=self.xs[s, n], action=self.xs[s + 1, n], t=self.t[s], users=self.users[n],
                   condition=self.condition[n], old_log_prob=self.log_prob[s, n],
                   ref_mean=None if self.ref_mean is None else self.ref_mean[s, n], traj=n,
                   ctx_traj=n if self.ctx_index is None else self.ctx_index[n],
                   ctx=None if self.context is None else index_context(self.context, n))
        return out
