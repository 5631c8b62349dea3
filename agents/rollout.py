"""Torch-level access to a denoising environment for agents that roll out whole chains.

:func:`make_rollout_driver` returns a :class:`TensorRollout` with two methods:

* ``reset(users (N,) int64, keys (N,) uint64) -> obs``: start N episodes; ``obs`` is the dict of
  device tensors ``x (N, D)``, ``t (N, 1)``, ``user (N, 1)``, ``condition (N, C)``.
* ``step(actions (N, D)) -> (rewards (N,), done)``.

Two implementations:

* :class:`FastRollout` for :class:`refit_gym.envs.BatchedDenoisingEnv`: tensors stay on the
  device. The agent chooses users *and* episode keys (the held-out split of the reward), so the
  copies of a user in a group share one condition and a run is reproducible from the agent's own
  generator alone. Uses ``env.reset_tensors(users, keys=...)`` when the environment accepts keys,
  otherwise its engine ``env.process.reset(users, keys)``; steps with ``env.step_tensors``.
* :class:`VecEnvRollout` for any other SB3 ``VecEnv`` of ``DenoisingEnv`` (e.g. ``DummyVecEnv``):
  users go through ``set_options([{"user": u}, ...])``, keys are drawn by each sub-environment (the
  copies of a user then see different held-out splits), and observations/actions cross numpy.
"""
from __future__ import annotations

import inspect
from typing import Dict, Tuple

import numpy as np
import torch
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

Obs = Dict[str, torch.Tensor]


class TensorRollout:
    """Interface; see the module docstring."""

    n_envs: int
    n_users: int

    def reset(self, users: np.ndarray, keys: np.ndarray) -> Obs:
        raise NotImplementedError

    def step(self, actions: torch.Tensor) -> Tuple[torch.Tensor, bool]:
        raise NotImplementedError


class FastRollout(TensorRollout):
    """Torch fast path of a ``BatchedDenoisingEnv`` (no numpy round trips)."""

    def __init__(self, env, device: torch.device):
        self.env, self.device = env, torch.device(device)
        self.n_envs = int(env.num_envs)
        self.n_users = int(env.process.n_users)
        self._reset_takes_keys = "keys" in inspect.signature(env.reset_tensors).parameters

    def reset(self, users: np.ndarray, keys: np.ndarray) -> Obs:
        if self._reset_takes_keys:
            obs = self.env.reset_tensors(users=users, keys=keys)
        else:
            self.env.process.reset(users, keys)
            obs = self.env.process.observation_tensors()
        return {k: v.to(self.device) for k, v in obs.items()}

    def step(self, actions: torch.Tensor) -> Tuple[torch.Tensor, bool]:
        _, rewards, terminated, _ = self.env.step_tensors(actions.to(self.env.device))
        return rewards.to(self.device), bool(terminated)


class VecEnvRollout(TensorRollout):
    """Any SB3 ``VecEnv`` whose sub-environments accept ``reset(options={"user": u})``."""

    def __init__(self, env: VecEnv, device: torch.device):
        self.env, self.device = env, torch.device(device)
        self.n_envs = int(env.num_envs)
        self.n_users = int(np.asarray(env.observation_space["user"].high).reshape(-1)[0]) + 1

    def _tensors(self, obs: Dict[str, np.ndarray]) -> Obs:
        return {k: torch.as_tensor(np.asarray(v), device=self.device) for k, v in obs.items()}

    def reset(self, users: np.ndarray, keys: np.ndarray) -> Obs:
        self.env.set_options([{"user": int(u)} for u in users])
        obs = self._tensors(self.env.reset())
        obs["x"], obs["condition"] = obs["x"].float(), obs["condition"].float()
        return obs

    def step(self, actions: torch.Tensor) -> Tuple[torch.Tensor, bool]:
        _, rewards, dones, _ = self.env.step(actions.detach().cpu().numpy())
        if dones.any() and not dones.all():
            raise RuntimeError("sub-environments terminated at different steps; denoising episodes all last T steps")
        return torch.as_tensor(rewards, dtype=torch.float32, device=self.device), bool(dones.all())


def make_rollout_driver(env: VecEnv, device) -> TensorRollout:
    """The fastest :class:`TensorRollout` that ``env`` supports (see the module docstring)."""
    # Only an unwrapped env: the fast path would silently bypass wrappers such as VecNormalize.
    if not isinstance(env, VecEnvWrapper) and hasattr(env, "step_tensors") and hasattr(env, "process"):
        return FastRollout(env, device)
    return VecEnvRollout(env, device)
