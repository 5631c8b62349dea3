"""Torch-level access to a denoising environment for agents that roll out whole chains.

:func:`make_rollout_driver` returns a :class:`TensorRollout` with two methods:

* ``reset(users (N,) int64, keys (N,) uint64) -> obs``: start N episodes; ``obs`` is the dict of
  device tensors ``x (N, D)``, ``t (N, 1)``, ``user (N, 1)``, ``condition (N, C)``.
* ``step(actions (N, D)) -> (rewards (N,), done)``.

``set_backbone(adapter)`` makes the environment score terminal states with the agent's (trained)
denoiser; ``terminal_reward(x0)`` recomputes the terminal rewards as a differentiable function of the
final state (reward-gradient agents; ``terminal_reward_unavailable()`` says why not, or None); and,
for per-item credit assignment, ``terminal_item_terms() -> (N, n_items)`` (the terminal reward
split into per-item terms, called after the terminal step) with ``item_terms_unavailable()`` (None
when available, else the reason).

Two implementations:

* :class:`FastRollout` for :class:`refit_gym.envs.BatchedDenoisingEnv`: tensors stay on the
  device. The agent chooses users *and* episode keys (the held-out split of the reward), so the
  copies of a user in a group share one condition and a run is reproducible from the agent's own
  generator alone (``env.reset_tensors(users, keys=...)``); steps with ``env.step_tensors``.
* :class:`VecEnvRollout` for any other SB3 ``VecEnv`` of ``DenoisingEnv`` (e.g. ``DummyVecEnv``):
  users go through ``set_options([{"user": u}, ...])``, keys are drawn by each sub-environment (the
  copies of a user then see different held-out splits), and observations/actions cross numpy.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecEnvWrapper

from refit_gym.diffusion.context import context_tensors

Obs = Dict[str, torch.Tensor]


class TensorRollout:
    """Interface; see the module docstring."""

    n_envs: int
    n_users: int
    train_users: np.ndarray  # (n,) int64: the users episodes are drawn from (the data's training users)

    def reset(self, users: np.ndarray, keys: np.ndarray) -> Obs:
        raise NotImplementedError

    def step(self, actions: torch.Tensor, keep_graph: bool = False) -> Tuple[torch.Tensor, bool]:
        """Step every env with ``actions`` ``(n_envs, D)``; returns the rewards ``(n_envs,)`` (no gradients) and
        whether the episodes ended. ``keep_graph=True`` (environments with :meth:`terminal_reward` only): the
        terminal reward is computed once on the autograd graph of ``actions`` and the next
        ``terminal_reward(actions)`` returns it."""
        raise NotImplementedError

    def set_backbone(self, adapter) -> None:
        """Score terminal states with ``adapter`` (the policy's denoiser) from the next reset on."""
        raise NotImplementedError

    def episode_context(self) -> Any:
        """The denoiser context of the episodes the last :meth:`reset` started (``n_envs`` rows, no gradients), as the
        environment computed it with the policy's denoiser, or None when the environment cannot hand it over."""
        return None

    def item_terms_unavailable(self) -> Optional[str]:
        """None when :meth:`terminal_item_terms` works with this environment, else why not."""
        return f"{type(self).__name__} cannot read per-item reward terms"

    def terminal_reward_unavailable(self) -> Optional[str]:
        """None when :meth:`terminal_reward` works with this environment, else why not."""
        return f"{type(self).__name__} cannot recompute the terminal reward with gradients"

    def terminal_reward(self, x0: torch.Tensor) -> torch.Tensor:
        """Terminal rewards ``(N,)`` of the episodes that just ended, differentiable in ``x0 (N, D)``."""
        raise NotImplementedError(self.terminal_reward_unavailable())

    def terminal_item_terms(self) -> torch.Tensor:
        """Per-item terms ``(N, n_items)`` of the terminal rewards of the episodes that just ended."""
        raise NotImplementedError(self.item_terms_unavailable())


class FastRollout(TensorRollout):
    """Torch fast path of a ``BatchedDenoisingEnv`` (no numpy round trips)."""

    def __init__(self, env, device: torch.device):
        self.env, self.device = env, torch.device(device)
        self.n_envs = int(env.num_envs)
        self.n_users = int(env.num_users)
        self.train_users = np.asarray(env.train_users, dtype=np.int64)

    def reset(self, users: np.ndarray, keys: np.ndarray) -> Obs:
        obs = self.env.reset_tensors(users=users, keys=keys)
        return {k: v.to(self.device) for k, v in obs.items()}

    def set_backbone(self, adapter) -> None:
        self.env.set_backbone(adapter)

    def episode_context(self) -> Any:
        ctx = self.env.episode_context()
        return ctx if all(t.device == self.device for t in context_tensors(ctx)) else None

    def step(self, actions: torch.Tensor, keep_graph: bool = False) -> Tuple[torch.Tensor, bool]:
        _, rewards, terminated, _ = self.env.step_tensors(actions.to(self.env.device), keep_graph=keep_graph)
        return rewards.to(self.device), bool(terminated)

    def item_terms_unavailable(self) -> Optional[str]:
        if not hasattr(self.env, "terminal_item_terms"):
            return f"{type(self.env).__name__} has no terminal_item_terms()"
        reward = self.env.reward_fn
        if not reward.supports_item_terms:
            return (f"reward {reward.name!r} ({reward!r}) has no per-item terms (Reward.item_terms); rewards with them "
                    "include 'graph-score', 'reconstruction' and FunctionReward(item_f=...)")
        return None

    def terminal_item_terms(self) -> torch.Tensor:
        return self.env.terminal_item_terms().to(self.device)

    def terminal_reward_unavailable(self) -> Optional[str]:
        reward = self.env.reward_fn
        if not reward.differentiable:
            return (f"reward {reward.name!r} ({reward!r}) has no differentiable torch form (Reward.differentiable); "
                    "differentiable rewards include 'refit', 'refit-seq', 'graph-score' and 'reconstruction'")
        return None

    def terminal_reward(self, x0: torch.Tensor) -> torch.Tensor:
        return self.env.terminal_reward(x0.to(self.env.device)).to(self.device)


class VecEnvRollout(TensorRollout):
    """Any SB3 ``VecEnv`` whose sub-environments accept ``reset(options={"user": u})``."""

    def __init__(self, env: VecEnv, device: torch.device):
        self.env, self.device = env, torch.device(device)
        self.n_envs = int(env.num_envs)
        self.n_users = int(np.asarray(env.observation_space["user"].high).reshape(-1)[0]) + 1
        self.train_users = np.asarray(env.get_attr("train_users", [0])[0], dtype=np.int64)

    def _tensors(self, obs: Dict[str, np.ndarray]) -> Obs:
        return {k: torch.as_tensor(np.asarray(v), device=self.device) for k, v in obs.items()}

    def reset(self, users: np.ndarray, keys: np.ndarray) -> Obs:
        self.env.set_options([{"user": int(u)} for u in users])
        obs = self._tensors(self.env.reset())
        obs["x"], obs["condition"] = obs["x"].float(), obs["condition"].float()
        return obs

    def step(self, actions: torch.Tensor, keep_graph: bool = False) -> Tuple[torch.Tensor, bool]:
        if keep_graph:
            raise NotImplementedError(self.terminal_reward_unavailable())
        _, rewards, dones, _ = self.env.step(actions.detach().cpu().numpy())
        if dones.any() and not dones.all():
            raise RuntimeError("sub-environments terminated at different steps; denoising episodes all last T steps")
        return torch.as_tensor(rewards, dtype=torch.float32, device=self.device), bool(dones.all())

    def set_backbone(self, adapter) -> None:
        """In-process sub-environments (``DummyVecEnv``) share ``adapter``. Sub-processes cannot share it; that
        only matters for backbones whose ``scores`` has parameters (ValueError then)."""
        from refit_gym.diffusion.adapters import DenoiserAdapter

        env = self.env.unwrapped if isinstance(self.env, VecEnvWrapper) else self.env
        if isinstance(env, DummyVecEnv):
            env.env_method("set_backbone", adapter)
        elif type(adapter).scores is not DenoiserAdapter.scores:
            raise ValueError(f"{type(env).__name__} runs its environments in other processes, so their reward cannot "
                             f"score with the trained {type(adapter).__name__} (its scores() has parameters); use a "
                             "BatchedDenoisingEnv or a DummyVecEnv")

    def terminal_reward_unavailable(self) -> Optional[str]:
        return (f"the differentiable terminal reward is read from a BatchedDenoisingEnv passed directly (its torch fast "
                f"path); {type(self.env).__name__} auto-resets after the terminal step")

    def item_terms_unavailable(self) -> Optional[str]:
        return (f"per-item reward terms are read from a BatchedDenoisingEnv passed directly (its torch fast path); "
                f"{type(self.env).__name__} auto-resets after the terminal step and its sub-environments draw their own "
                "held-out splits")


def make_rollout_driver(env: VecEnv, device) -> TensorRollout:
    """The fastest :class:`TensorRollout` that ``env`` supports (see the module docstring)."""
    # Only an unwrapped env: the fast path would silently bypass wrappers such as VecNormalize.
    if not isinstance(env, VecEnvWrapper) and hasattr(env, "step_tensors") and hasattr(env, "reset_tensors"):
        return FastRollout(env, device)
    return VecEnvRollout(env, device)
