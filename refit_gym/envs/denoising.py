"""The denoising MDP for one user per episode, as a ``gymnasium.Env``.

State ``(x_t, t, user, condition)``; the agent chooses ``x_{t-1}`` directly, so a policy of the form
``N(mu_theta(x_t, t, condition), sigma_t^2)`` started from a pretrained denoiser's reverse process
is the pretrained recommender itself, and RL fine-tunes it (ReFiT). See :class:`DenoisingEnv`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Union

import gymnasium as gym
import numpy as np
import torch

from refit_gym.data.dataset import InteractionData
from refit_gym.diffusion.adapters import DenoiserAdapter
from refit_gym.envs.core import (DEFAULT_ACTION_BOUND, DEFAULT_REWARD, DenoisingProcess, ProcessViews, check_user,
                                 draw_episode, reset_option, resolve_backbone)
from refit_gym.rewards import Reward


class DenoisingEnv(ProcessViews, gym.Env):
    """One user's reverse diffusion chain as an episode of exactly T steps.

    **Reset** picks a user (uniformly from ``np_random``, or ``options={"user": u}``) and an episode
    key from ``np_random``; the reward splits the user's *training* items into visible and held-out
    items (a fraction ``holdout`` of them), the backbone encodes the visible items into the
    condition and chooses the start ``x_T``; ``t = T``.

    **Observation** (``gymnasium.spaces.Dict``):

    * ``"x"``: Box(-action_bound, action_bound, (action_dim,), float32) -- the current ``x_t``;
    * ``"t"``: Box(0, T, (1,), int64) -- remaining reverse steps (T after reset, 0 at the end);
    * ``"user"``: Box(0, n_users - 1, (1,), int64) -- the user id (a Box, not Discrete, so SB3
      does not one-hot encode it);
    * ``"condition"``: Box(low, high, (condition_dim,), float32) -- ``adapter.encode_condition`` of
      the visible items, bounds ``adapter.condition_bounds`` ([0, 1] for history backbones). It
      never contains a held-out item.

    **Action**: Box(-action_bound, action_bound, (action_dim,), float32), the next point
    ``x_{t-1}`` of the chain, in the backbone's raw space (item scores for DiffRec-like backbones).
    The space is not rescaled to [-1, 1] on purpose: the pretrained reverse process -- the policy
    being fine-tuned -- lives in this space, and an affine rescaling would only move the
    backbone's Gaussian into other units. So the checkers' advice to normalise the action Box is
    expected. The bound (default 1e3, far above the O(1) scale of scores) is finite because SB3
    requires finite Box bounds; an action with a NaN, an infinite value, a value beyond the bound
    or the wrong shape raises ValueError (nothing is clipped).

    **Transition and reward**: deterministic, ``x <- action``, ``t <- t - 1``. The reward is 0
    until ``t = 0``, where the episode terminates with the reward's score of
    ``adapter.scores(x_0)``; ``info["reward_components"]`` then holds its named terms. Episodes are
    never truncated.

    Args:
        data: the dataset: an InteractionData, or a SequentialData (the environment works on its
            ``interactions()`` view; the reward is built from the dataset as given).
        backbone: a :class:`~refit_gym.diffusion.adapters.DenoiserAdapter` on ``device`` or a
            checkpoint path (loaded with ``load_backbone``). The env only calls the adapter
            interface, under ``torch.no_grad``, and never changes its train/eval mode.
        reward: a reward name (default :data:`~refit_gym.envs.core.DEFAULT_REWARD`, ``"refit"``), a Reward or a
            callable (see :func:`refit_gym.rewards.make_reward`).
        device: torch device of the internal tensors.
        reward_kwargs: keyword arguments of the reward (e.g. ``{"holdout": 0.2, "tau": 1.0}``).
        action_bound: the finite bound of the action and ``x`` boxes.
        render_mode: None (default), or one of ``metadata["render_modes"]`` (see :meth:`render`); SB3's
            ``make_vec_env`` asks for ``"rgb_array"`` and rl-zoo3's ``enjoy`` for ``"human"``.
    """

    metadata = {"render_modes": ["ansi", "human", "rgb_array"], "render_fps": 4}
    #: side in pixels of one value's cell in the ``rgb_array`` image
    RENDER_CELL = 4

    def __init__(self, data: InteractionData, backbone: Union[DenoiserAdapter, str, Path], reward: Union[str, Reward, Any] = DEFAULT_REWARD,
                 device="cpu", reward_kwargs: Optional[Dict] = None, action_bound: float = DEFAULT_ACTION_BOUND,
                 render_mode: Optional[str] = None):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode={render_mode!r}: supported render modes are None and "
                             f"{self.metadata['render_modes']}")
        self.render_mode = render_mode
        adapter = resolve_backbone(backbone, data, device)
        self.process = DenoisingProcess(data, adapter, reward, device, reward_kwargs, action_bound)
        self.observation_space = self.process.single_observation_space
        self.action_space = self.process.single_action_space

    # convenient read-only views
    @property
    def data(self) -> InteractionData:
        return self.process.data

    @property
    def user(self) -> Optional[int]:
        """The current episode's user (None before the first reset)."""
        return None if self.process.users is None else int(self.process.users[0])

    def reset(self, *, seed: Optional[int] = None, options: Optional[Dict[str, Any]] = None):
        """Start an episode. ``options`` may hold ``"user"``: an integer id in ``[0, n_users)``."""
        super().reset(seed=seed)
        user = reset_option(options, "user", "DenoisingEnv")
        if user is not None:
            user = check_user(user, self.process.n_users, "options['user']")
        user, key = draw_episode(self.np_random, self.process.n_users, user, self.process.train_users)
        self.process.reset(np.array([user], dtype=np.int64), np.array([key], dtype=np.uint64))
        return self._obs(), {"n_heldout": int(self.process.state.heldout.nnz)}

    def step(self, action):
        a = np.asarray(action)
        if a.dtype.kind not in "fiu":
            raise ValueError(f"action must be a real-valued array, got dtype {a.dtype}")
        if a.shape != self.action_space.shape:
            raise ValueError(f"action has shape {a.shape}; expected {self.action_space.shape}")
        reward, terminated, comps = self.process.step(torch.tensor(a, dtype=torch.float32, device=self.process.device).unsqueeze(0))
        info: Dict[str, Any] = {}
        if terminated:
            info["reward_components"] = {k: float(v[0]) for k, v in comps.items()}
        return self._obs(), float(reward[0]), terminated, False, info

    def _obs(self) -> Dict[str, np.ndarray]:
        return {k: v[0] for k, v in self.process.observation_numpy().items()}

    def render(self):
        """Render the current state according to ``render_mode`` (gymnasium's API: the mode is fixed at construction).

        * ``"ansi"``: a one-line ``str``: the remaining steps ``t``, the user and the 10 largest entries of
          ``x_t`` (item ids for item-space backbones; embedding coordinates for DreamRec) with their values.
        * ``"human"``: prints that line to stdout and returns None (a text environment: there is no window).
        * ``"rgb_array"``: an ``(H, W, 3)`` uint8 image of ``x_t``: its D values, min-max scaled to [0, 255] (grey
          levels, brighter = larger), in row-major square cells of ``RENDER_CELL`` pixels on a grid of
          ``ceil(sqrt(D))`` columns; ``H = W = RENDER_CELL * ceil(sqrt(D))``.
        * None: returns None.
        Before the first reset there is no state: ``"ansi"`` and ``"human"`` say so, ``"rgb_array"`` is all black.
        """
        if self.render_mode is None:
            return None
        x = None if self.process.x is None else self.process.x[0].detach().float().cpu().numpy()
        if self.render_mode == "rgb_array":
            d = self.action_space.shape[0]
            side = int(np.ceil(np.sqrt(d)))
            grid = np.zeros(side * side, dtype=np.float64)
            if x is not None:
                span = float(x.max() - x.min())
                grid[:d] = (x - x.min()) / span if span > 0 else 0.5
            img = np.repeat(np.repeat((grid * 255).round().astype(np.uint8).reshape(side, side), self.RENDER_CELL, 0),
                            self.RENDER_CELL, 1)
            return np.stack([img] * 3, axis=-1)
        if x is None:
            line = "DenoisingEnv: not reset yet"
        else:
            top = np.argsort(-x, kind="stable")[:10]
            line = (f"t={self.process.t}/{self.process.T} user={self.user} top x_t: "
                    + " ".join(f"{int(i)}:{x[i]:.3g}" for i in top))
        if self.render_mode == "human":
            print(line, flush=True)
            return None
        return line
