"""The denoising MDP for a batch of users stepped as one tensor operation.

* :class:`BatchedDenoisingEnv` -- a Stable-Baselines3 ``VecEnv`` of ``n_envs`` episode slots, plus a
  torch fast path (:meth:`~BatchedDenoisingEnv.reset_tensors`, :meth:`~BatchedDenoisingEnv.step_tensors`)
  for agents that keep everything on the device; the numpy ``VecEnv`` API is a thin wrapper over it.
* :class:`DenoisingVectorEnv` -- the same engine as a ``gymnasium.vector.VectorEnv`` (what
  ``gymnasium.make_vec(id, num_envs=N)`` returns for the ``refit_gym/...`` ids).

All slots share T and start together, so they terminate together; the reset after a terminal step
draws a new user for every slot. Seeding: slot ``k`` has its own ``numpy.random.Generator``,
seeded with ``seed + k`` (SB3's convention), from which it draws its episodes exactly as
:class:`~refit_gym.envs.denoising.DenoisingEnv` draws from ``np_random`` (see
:mod:`refit_gym.envs.core`). Hence slot ``k`` of a batched env seeded ``s`` reproduces a single env
reset with seed ``s + k``: same users, held-out items, observations and, for the same actions,
rewards. The per-slot draws are two scalars per slot and episode; all per-item work is vectorised.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space
from stable_baselines3.common.vec_env import VecEnv

from refit_gym.data.dataset import InteractionData
from refit_gym.diffusion.adapters import DenoiserAdapter
from refit_gym.envs.core import (DEFAULT_ACTION_BOUND, DEFAULT_REWARD, DenoisingProcess, ProcessViews, check_user,
                                 check_users, draw_episode, reset_option, resolve_backbone)
from refit_gym.rewards import Reward

_SLOT_ATTRS = ("np_random", "user")


class BatchedDenoisingEnv(ProcessViews, VecEnv):
    """``n_envs`` users' reverse chains stepped together (see :class:`~refit_gym.envs.denoising.DenoisingEnv`
    for the MDP, the spaces and the constructor arguments shared with it).

    Numpy API (SB3 ``VecEnv``): ``reset()`` returns the observation dict of stacked arrays
    ``{"x": (n, D), "t": (n, 1), "user": (n, 1), "condition": (n, C)}``; ``step(actions (n, D))``
    returns ``(obs, rewards (n,) float32, dones (n,) bool, infos)``. At the terminal step every
    ``infos[k]`` holds ``"terminal_observation"`` (that slot's final observation),
    ``"TimeLimit.truncated": False`` and ``"reward_components"``, and ``obs`` is already the first
    observation of the next batch of episodes (auto-reset). Users for the next reset can be set with
    ``set_options({"users": array (n,)})`` or per slot ``set_options([{"user": u}, ...])``; seeds with
    ``seed(s)``.

    Torch fast path: :meth:`reset_tensors` and :meth:`step_tensors` take and return tensors on the
    device without numpy round trips and without auto-reset. After the terminal step (and before the
    next reset) :meth:`terminal_item_terms` returns the terminal reward split into per-item terms
    ``(n_envs, n_items)`` for rewards that have them (``reward_fn.supports_item_terms``); computed
    only when called, so the numpy API and memory are unaffected.

    Args:
        n_envs: number of slots (users per batch).
        seed: optional seed of the slots' generators (``seed + k`` for slot k); otherwise fresh entropy.
        (the others as in DenoisingEnv)
    """

    metadata = {"render_modes": []}

    def __init__(self, data: InteractionData, backbone: Union[DenoiserAdapter, str, Path], n_envs: int = 1,
                 reward: Union[str, Reward, Any] = DEFAULT_REWARD, device="cpu", reward_kwargs: Optional[Dict] = None,
                 action_bound: float = DEFAULT_ACTION_BOUND, seed: Optional[int] = None):
        if isinstance(n_envs, bool) or not isinstance(n_envs, (int, np.integer)) or n_envs < 1:
            raise ValueError(f"n_envs={n_envs!r}: expected a positive integer")
        adapter = resolve_backbone(backbone, data, device)
        self.process = DenoisingProcess(data, adapter, reward, device, reward_kwargs, action_bound)
        self.render_mode = None  # read by VecEnv.__init__ through get_attr
        super().__init__(int(n_envs), self.process.single_observation_space, self.process.single_action_space)
        self._rngs: List[np.random.Generator] = [seeding.np_random(None if seed is None else seed + k)[0]
                                                 for k in range(self.num_envs)]
        self._actions: Optional[np.ndarray] = None

    @property
    def device(self) -> torch.device:
        return self.process.device

    # ------------------------------------------------------------------ torch fast path
    def reset_tensors(self, users: Optional[Sequence] = None, seed: Optional[int] = None,
                      keys: Optional[np.ndarray] = None) -> Dict[str, torch.Tensor]:
        """Start a new batch of episodes; returns the observation as device tensors.

        Args:
            users: optional ``(n_envs,)`` user ids (an entry None draws that slot's user).
            seed: optional; re-seeds slot k's generator with ``seed + k`` first.
            keys: optional ``(n_envs,)`` uint64 episode keys (the reward's held-out split and the start
                noise, see :mod:`refit_gym.envs.core`), for agents that draw episodes themselves (the
                copies of a user then share a split); needs every user given, and draws nothing from
                the slots' generators.
        """
        if keys is not None:
            if users is None or seed is not None:
                raise ValueError("reset_tensors(keys=...) needs users for every slot and no seed")
            users = check_users(np.asarray(users), self.num_envs, self.process.n_users)
            keys = np.asarray(keys)
            if keys.shape != (self.num_envs,) or keys.dtype.kind not in "iu" or (keys.dtype.kind == "i" and (keys < 0).any()):
                raise ValueError(f"keys must be ({self.num_envs},) non-negative integers, got {keys.dtype} {keys.shape}")
            self.process.reset(users, keys.astype(np.uint64))
            return self.process.observation_tensors()
        if seed is not None:
            self._rngs = [seeding.np_random(int(seed) + k)[0] for k in range(self.num_envs)]
        given: List[Optional[int]] = [None] * self.num_envs
        if users is not None:
            users = list(users) if not isinstance(users, np.ndarray) else users
            if len(users) != self.num_envs:
                raise ValueError(f"users has {len(users)} entries; expected one per env ({self.num_envs})")
            if isinstance(users, np.ndarray):
                given = list(check_users(users, self.num_envs, self.process.n_users))
            else:
                given = [None if u is None else check_user(u, self.process.n_users, f"users[{k}]")
                         for k, u in enumerate(users)]
        drawn = [draw_episode(rng, self.process.n_users, u, self.process.train_users) for rng, u in zip(self._rngs, given)]
        self.process.reset(np.array([d[0] for d in drawn], dtype=np.int64), np.array([d[1] for d in drawn], dtype=np.uint64))
        return self.process.observation_tensors()

    def episode_context(self) -> Any:
        """The denoiser context of the current episodes (``n_envs`` rows, no gradients) as the last reset computed
        it, with the backbone the environment scores with (:meth:`set_backbone`); None before the first reset."""
        return self.process.ctx

    def step_tensors(self, actions: torch.Tensor,
                     keep_graph: bool = False) -> Tuple[Dict[str, torch.Tensor], torch.Tensor, bool, Dict[str, Any]]:
        """One step of all slots with ``actions`` ``(n_envs, D)``.

        Returns ``(obs, rewards (n_envs,), terminated, info)``; at the terminal step ``obs`` is the
        final observation (``t = 0``), ``terminated`` is True and ``info["reward_components"]``
        maps names to ``(n_envs,)`` tensors; :meth:`terminal_item_terms` may then be called for the
        per-item split of the rewards. No auto-reset: call :meth:`reset_tensors` next.
        ``actions`` becomes the new state ``x`` without a copy: do not modify it in place afterwards.
        ``keep_graph=True``: the terminal reward is computed on the autograd graph and kept for
        :meth:`terminal_reward` (see :meth:`DenoisingProcess.step`).
        """
        reward, terminated, comps = self.process.step(actions, keep_graph=keep_graph)
        info = {"reward_components": comps} if terminated else {}
        return self.process.observation_tensors(), reward, terminated, info

    # ------------------------------------------------------------------ SB3 VecEnv API
    def reset(self) -> Dict[str, np.ndarray]:
        for k, s in enumerate(self._seeds):
            if s is not None:
                self._rngs[k] = seeding.np_random(int(s))[0]
        users = self._users_from_options(self._options)
        self._reset_seeds()
        self._reset_options()
        self.reset_tensors(users)
        self.reset_infos = [{} for _ in range(self.num_envs)]
        return self.process.observation_numpy()

    def _users_from_options(self, options: List[Dict[str, Any]]) -> Optional[list]:
        if all(not o for o in options):
            return None
        if all("users" in o for o in options) and all(o is options[0] or o == options[0] for o in options):
            extra = set(options[0]) - {"users"}
            if extra:
                raise ValueError(f"unknown reset options {sorted(extra)}; BatchedDenoisingEnv accepts 'users' or per-env 'user'")
            return list(check_users(options[0]["users"], self.num_envs, self.process.n_users))
        users = []
        for k, o in enumerate(options):
            extra = set(o) - {"user"}
            if extra:
                raise ValueError(f"unknown reset options {sorted(extra)} for env {k}; accepted: 'users' (all envs) or 'user'")
            users.append(o.get("user"))
        return users

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def _step_numpy(self, actions) -> Tuple[Dict[str, np.ndarray], np.ndarray, bool, Dict[str, np.ndarray]]:
        """Validate and apply numpy ``actions`` (n, D); returns (obs before any reset, rewards float32,
        terminated, reward components {name: (n,)} or {})."""
        a = np.asarray(actions)
        if a.dtype.kind not in "fiu":
            raise ValueError(f"actions must be a real-valued array, got dtype {a.dtype}")
        if a.shape != (self.num_envs,) + self.action_space.shape:
            raise ValueError(f"actions have shape {a.shape}; expected {(self.num_envs,) + self.action_space.shape}")
        _, reward, terminated, info = self.step_tensors(torch.tensor(a, dtype=torch.float32, device=self.device))  # a copy
        comps = {k: v.cpu().numpy() for k, v in info.get("reward_components", {}).items()}
        return self.process.observation_numpy(), reward.cpu().numpy().astype(np.float32), terminated, comps

    def step_wait(self):
        if self._actions is None:
            raise RuntimeError("step_wait() without step_async()")
        actions, self._actions = self._actions, None
        obs, rewards, terminated, comps = self._step_numpy(actions)
        dones = np.full(self.num_envs, terminated)
        if not terminated:
            return obs, rewards, dones, [{} for _ in range(self.num_envs)]
        # once per episode: one info dict per slot, as SB3 expects
        infos = [{"terminal_observation": {key: val[k] for key, val in obs.items()}, "TimeLimit.truncated": False,
                  "reward_components": {name: float(c[k]) for name, c in comps.items()}} for k in range(self.num_envs)]
        return self.reset(), rewards, dones, infos

    def close(self) -> None:
        self.process.x = None

    def _indices(self, indices) -> List[int]:
        return list(self._get_indices(indices))

    def get_attr(self, attr_name: str, indices=None) -> List[Any]:
        """Per-slot attributes ``np_random`` (the slot's generator) and ``user`` (its current user); any
        other attribute is shared by all slots and read from this env."""
        idx = self._indices(indices)
        if attr_name == "np_random":
            return [self._rngs[k] for k in idx]
        if attr_name == "user":
            users = self.process.users
            return [None if users is None else int(users[k]) for k in idx]
        return [getattr(self, attr_name) for _ in idx]

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        """Set a slot's ``np_random``, or a shared attribute (then ``indices`` must cover every slot)."""
        idx = self._indices(indices)
        if attr_name == "np_random":
            if not isinstance(value, np.random.Generator):
                raise TypeError(f"np_random must be a numpy.random.Generator, got {type(value).__name__}")
            if len(idx) != 1:
                raise ValueError(f"set one slot's np_random at a time (got indices {idx}); slots must not share a generator")
            self._rngs[idx[0]] = value
            return
        if attr_name == "user":
            raise AttributeError("'user' is set at reset: use set_options({'users': ...}) or reset_tensors(users=...)")
        if sorted(idx) != list(range(self.num_envs)):
            raise ValueError(f"attribute {attr_name!r} is shared by all {self.num_envs} slots of the batched env; "
                             f"it cannot be set for the subset {idx}")
        setattr(self, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs) -> List[Any]:
        """Call a method of this (shared) env once per requested slot index; returns the results."""
        method = getattr(self, method_name)
        return [method(*method_args, **method_kwargs) for _ in self._indices(indices)]

    def env_is_wrapped(self, wrapper_class, indices=None) -> List[bool]:
        return [False for _ in self._indices(indices)]

    def get_images(self):
        return [None for _ in range(self.num_envs)]


class DenoisingVectorEnv(VectorEnv):
    """The batched denoising MDP as a ``gymnasium.vector.VectorEnv`` (same-step autoreset).

    ``reset(seed=s, options={"users": array})`` seeds slot k with ``s + k`` (or with ``s[k]`` for a
    list of seeds); ``step`` returns ``(obs, rewards (n,), terminations (n,), truncations (n,), infos)``.
    At the terminal step ``obs`` already starts the next episodes and ``infos`` holds
    ``"final_obs"`` (the final batch observation), ``"final_info"`` (``{"reward_components": ...}``,
    arrays ``(n,)``) and their ``"_final_obs"`` / ``"_final_info"`` masks (all True).
    Constructor arguments as :class:`BatchedDenoisingEnv` with ``num_envs`` for ``n_envs``.
    """

    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(self, data: InteractionData, backbone: Union[DenoiserAdapter, str, Path], num_envs: int = 1,
                 reward: Union[str, Reward, Any] = DEFAULT_REWARD, device="cpu", reward_kwargs: Optional[Dict] = None,
                 action_bound: float = DEFAULT_ACTION_BOUND):
        self.batched = BatchedDenoisingEnv(data, backbone, num_envs, reward, device, reward_kwargs, action_bound)
        self.num_envs = self.batched.num_envs
        self.single_observation_space = self.batched.observation_space
        self.single_action_space = self.batched.action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)

    def reset(self, *, seed: Optional[Union[int, Sequence[int]]] = None, options: Optional[Dict[str, Any]] = None):
        if seed is not None:
            seeds = [seed + k for k in range(self.num_envs)] if isinstance(seed, (int, np.integer)) else list(seed)
            if len(seeds) != self.num_envs:
                raise ValueError(f"got {len(seeds)} seeds for {self.num_envs} envs")
            self._np_random, self._np_random_seed = seeding.np_random(seeds[0])
            self.batched._rngs = [seeding.np_random(int(s))[0] for s in seeds]
        users = reset_option(options, "users", "DenoisingVectorEnv")
        if users is not None:
            users = check_users(users, self.num_envs, self.batched.process.n_users)
        self.batched.reset_tensors(users)
        return self.batched.process.observation_numpy(), {}

    def step(self, actions):
        obs, rewards, terminated, comps = self.batched._step_numpy(actions)
        infos: Dict[str, Any] = {}
        if terminated:
            mask = np.ones(self.num_envs, dtype=bool)
            infos = {"final_obs": obs, "_final_obs": mask,
                     "final_info": {"reward_components": comps, "_reward_components": mask.copy()},
                     "_final_info": mask.copy()}
            obs, _ = self.reset()
        dones = np.full(self.num_envs, terminated)
        return obs, rewards.astype(np.float64), dones, np.zeros(self.num_envs, dtype=bool), infos

    def close_extras(self, **kwargs) -> None:
        self.batched.close()
