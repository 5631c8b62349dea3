"""The denoising MDP as batched torch tensors: the engine behind every environment form.

One :class:`DenoisingProcess` holds B episodes (B users) that share the reverse-step counter
``t``. It reaches the backbone only through the :class:`~refit_gym.diffusion.adapters.DenoiserAdapter`
interface (``encode_condition``, ``context``, ``start``, ``scores``, ``schedule``, the sizes and
``condition_bounds``) and the reward only through the :class:`~refit_gym.rewards.Reward` contract.

Episode randomness
------------------
Each episode is fully determined by ``(user, key)``: the user id and a 64-bit *episode key*.
:func:`draw_episode` draws both from a ``numpy.random.Generator`` (first the user, unless it is
given, then the key). The reward's held-out split is a counter-based hash of the key (row by row,
independent of the batch), and the ``torch.Generator`` passed to ``adapter.start`` is seeded with
:func:`start_seed` of the batch's keys; episodes of one batch that share ``(user, key)`` (ReFiT's copies of
a user) start from the same ``x_T``, drawn once, so that they differ only by the policy's noise (common random
numbers: the per-user baseline then removes the start's noise). A single environment draws from its own
``np_random``; the batched one keeps one generator per slot, seeded ``seed + k`` like SB3's ``DummyVecEnv``, so slot
``k`` replays ``DenoisingEnv`` reset with ``seed + k`` exactly (for backbones whose ``start`` is
deterministic, as DiffRec's and CF-Diff's default ``sampling_steps=0``; a noisy start draws the
noise of the whole batch from one generator).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np
import torch
from gymnasium import spaces

from refit_gym.data.dataset import InteractionData, as_interactions
from refit_gym.diffusion.adapters import DenoiserAdapter
from refit_gym.diffusion.context import index_context
from refit_gym.rewards import Reward, RewardState, make_reward
from refit_gym.rewards.base import KEY_HIGH, draw_episode_keys, mix64

DEFAULT_ACTION_BOUND = 1e3
#: the reward of an environment class built without ``reward=`` (``gymnasium.make(id)`` and the
#: :mod:`refit_gym.envs.factory` builders take the id's own from :data:`refit_gym.registry.ENVIRONMENTS`)
DEFAULT_REWARD = "refit"


def draw_episode(rng: np.random.Generator, n_users: int, user: Optional[int] = None,
                 pool: Optional[np.ndarray] = None) -> Tuple[int, np.uint64]:
    """``(user, key)`` of one episode: the user is drawn uniformly (among ``pool``, the data's training users,
    when given; ``pool = arange(n_users)`` draws the same users as None) unless given, then the key."""
    if user is None:
        k = int(rng.integers(0, n_users if pool is None else len(pool), size=1)[0])
        user = k if pool is None else int(pool[k])
    return user, draw_episode_keys(rng, 1)[0]


def start_seed(keys: np.ndarray) -> int:
    """Seed (in [0, 2**63)) of the torch generator handed to ``adapter.start`` for a batch of episode keys."""
    keys = np.asarray(keys, dtype=np.uint64)
    h = np.bitwise_xor.reduce(mix64(keys ^ mix64(np.arange(len(keys), dtype=np.uint64))))
    return int(mix64(np.asarray([h]))[0] & np.uint64(KEY_HIGH))


def first_of_episodes(users: np.ndarray, keys: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """``(first, inverse)`` of a batch's ``(user, key)`` pairs ``(B,)``, ``(B,)``: ``first`` (int64, ascending) the
    row of each distinct pair's first occurrence, ``inverse`` ``(B,)`` the position in ``first`` of each row's
    pair, so ``first[inverse]`` is the first row with the same episode."""
    pairs = np.stack([np.asarray(users).astype(np.uint64), np.asarray(keys, dtype=np.uint64)], axis=1)
    _, first, inverse = np.unique(pairs, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")  # distinct episodes in batch order
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return first[order].astype(np.int64), rank[np.asarray(inverse).reshape(-1)].astype(np.int64)


def check_user(user: Any, n_users: int, what: str = "user") -> int:
    """``user`` as a Python int; raises ValueError/TypeError naming the value if it is not an id in range."""
    if isinstance(user, (bool, np.bool_)) or not isinstance(user, (int, np.integer)):
        if isinstance(user, np.ndarray) and user.shape in ((), (1,)) and user.dtype.kind in "iu":
            user = user.reshape(()).item()
        else:
            raise TypeError(f"{what}={user!r}: expected an integer user id, got {type(user).__name__}")
    if not 0 <= int(user) < n_users:
        raise ValueError(f"{what}={int(user)} out of range [0, {n_users - 1}]")
    return int(user)


def reset_option(options: Optional[Dict[str, Any]], key: str, owner: str) -> Any:
    """The value of the only accepted reset option ``key`` (None when absent); raises on any other key."""
    options = dict(options or {})
    unknown = set(options) - {key}
    if unknown:
        raise ValueError(f"unknown reset options {sorted(unknown)}; {owner} accepts {key!r}")
    return options.get(key)


def check_users(users: Any, n: int, n_users: int) -> np.ndarray:
    """``users`` as an int64 array ``(n,)`` of ids in range; raises naming the first bad value."""
    arr = np.asarray(users)
    if arr.shape != (n,):
        raise ValueError(f"users must have shape ({n},) (one per env), got shape {arr.shape}")
    if arr.dtype.kind not in "iu":
        raise TypeError(f"users must be integer ids, got dtype {arr.dtype} (e.g. {arr.ravel()[:1].tolist()})")
    bad = (arr < 0) | (arr >= n_users)
    if bad.any():
        k = int(np.argmax(bad))
        raise ValueError(f"users[{k}]={int(arr[k])} out of range [0, {n_users - 1}]")
    return arr.astype(np.int64)


def adapter_device(adapter: DenoiserAdapter, default) -> torch.device:
    """Where ``adapter``'s parameters live; ``default`` for an adapter without parameters (it lives wherever
    its inputs are)."""
    try:
        return next(adapter.parameters()).device
    except StopIteration:
        return torch.device(default)


def resolve_backbone(backbone: Union[DenoiserAdapter, str, Path], data: InteractionData, device) -> DenoiserAdapter:
    """An adapter given directly (must already live on ``device``) or loaded from a checkpoint path."""
    if isinstance(backbone, DenoiserAdapter):
        where = adapter_device(backbone, device)
        if where.type != torch.device(device).type:
            raise ValueError(f"backbone is on {where}, but the environment device is {device}; move it with .to()")
        return backbone
    if isinstance(backbone, (str, Path)):
        from refit_gym.diffusion.checkpoint import load_backbone

        adapter, _ = load_backbone(backbone, data=data, device=device)
        return adapter
    raise TypeError(f"backbone must be a DenoiserAdapter or a checkpoint path, got {type(backbone).__name__}")


#: keys of a denoising observation (:func:`observation_space`)
OBS_KEYS = ("x", "t", "user", "condition")


def observation_space(adapter: DenoiserAdapter, n_users: int, action_bound: float) -> spaces.Dict:
    """The observation space of one episode (see :class:`DenoisingProcess`)."""
    T = int(adapter.schedule.chain_steps)  # the reverse steps the chain runs (K when respaced)
    low, high = getattr(adapter, "condition_bounds", (-np.inf, np.inf))
    return spaces.Dict({
        "x": spaces.Box(-action_bound, action_bound, (adapter.action_dim,), np.float32),
        "t": spaces.Box(0, T, (1,), np.int64),
        "user": spaces.Box(0, n_users - 1, (1,), np.int64),
        "condition": spaces.Box(low, high, (adapter.condition_dim,), np.float32),
    })


def action_space(adapter: DenoiserAdapter, action_bound: float) -> spaces.Box:
    """The action space of one episode: ``x_{t-1}`` in ``[-action_bound, action_bound]^action_dim``."""
    return spaces.Box(-action_bound, action_bound, (adapter.action_dim,), np.float32)


def check_denoising_spaces(observation_space: spaces.Space, action_space: spaces.Space,
                           denoiser: DenoiserAdapter) -> None:
    """Raise a ValueError naming the mismatch if the spaces (of a denoising environment) do not fit ``denoiser``
    (what :class:`agents.DenoiserPolicy` checks, and how :func:`~refit_gym.envs.factory.env_backbone_for_spaces`
    finds the backbone of a space)."""
    if not isinstance(observation_space, spaces.Dict) or any(k not in observation_space.spaces for k in OBS_KEYS):
        raise ValueError(f"DenoiserPolicy needs a Dict observation space with keys {list(OBS_KEYS)}, got {observation_space}")
    if not isinstance(action_space, spaces.Box) or action_space.shape != (denoiser.action_dim,):
        raise ValueError(f"action space {action_space} does not fit the backbone's action_dim={denoiser.action_dim}")
    obs = observation_space.spaces
    if obs["x"].shape != (denoiser.action_dim,):
        raise ValueError(f"observation 'x' has shape {obs['x'].shape}; the backbone's action_dim is {denoiser.action_dim}")
    if obs["condition"].shape != (denoiser.condition_dim,):
        raise ValueError(f"observation 'condition' has shape {obs['condition'].shape}; "
                         f"the backbone's condition_dim is {denoiser.condition_dim}")
    t_high = int(np.asarray(obs["t"].high).reshape(-1)[0])
    if t_high != denoiser.schedule.chain_steps:
        raise ValueError(f"observation 't' goes up to {t_high}; the backbone's reverse chain runs "
                         f"{denoiser.schedule.chain_steps} steps (T={denoiser.schedule.steps}, inference_steps="
                         f"{denoiser.schedule.cfg.inference_steps}): give the policy the environment's inference_steps")


class ProcessViews:
    """Read-only views shared by the environment forms that wrap a :class:`DenoisingProcess` in ``self.process``."""

    process: "DenoisingProcess"

    @property
    def adapter(self) -> DenoiserAdapter:
        return self.process.adapter

    @property
    def reward_fn(self) -> Reward:
        return self.process.reward

    @property
    def num_users(self) -> int:
        """Number of user ids (``0 .. num_users - 1``); episodes are drawn among :attr:`train_users`."""
        return self.process.n_users

    @property
    def train_users(self) -> np.ndarray:
        """``(n,)`` int64: the users episodes are drawn from (the data's ``train_users``)."""
        return self.process.train_users

    def terminal_item_terms(self) -> torch.Tensor:
        """Per-item terms of the terminal reward of the episodes that just ended (see
        :meth:`DenoisingProcess.terminal_item_terms`)."""
        return self.process.terminal_item_terms()

    def terminal_reward(self, x0: torch.Tensor) -> torch.Tensor:
        """The terminal reward of the episodes that just ended as a differentiable function of ``x0``
        (see :meth:`DenoisingProcess.terminal_reward`)."""
        return self.process.terminal_reward(x0)

    def set_backbone(self, adapter: DenoiserAdapter) -> None:
        """Score terminal states with ``adapter`` from the next reset on (see :meth:`DenoisingProcess.set_backbone`)."""
        self.process.set_backbone(adapter)


class DenoisingProcess:
    """B denoising episodes stepped as one tensor operation.

    State: ``x`` ``(B, D)`` float32 (``x_t``), ``t`` (int, remaining reverse steps, T at reset),
    ``users`` ``(B,)`` int64, ``condition`` ``(B, condition_dim)`` float32, the adapter context and
    the reward state. A step sets ``x <- action`` and ``t <- t - 1``; at ``t = 0`` the reward scores
    ``adapter.reward_scores(x_0, context)`` (the item scores, possibly as their factors).

    Args:
        data: the dataset: an InteractionData or a dataset with an ``interactions()`` view (e.g. a
            :class:`~refit_gym.data.sequential.SequentialData`). The process keeps the view as
            ``data`` (sizes, the observation space) and ``source_data`` as given, which is what the
            reward is built from (so a sequence-aware reward can read the item order); the reward
            reads training interactions only.
        adapter: the backbone, already on ``device``.
        reward: a reward name, a :class:`Reward` or a callable (see :func:`refit_gym.rewards.make_reward`).
        device: torch device of all tensors.
        reward_kwargs: keyword arguments of the reward constructor (with a name or a callable).
        action_bound: actions (and ``x``) must lie in ``[-action_bound, action_bound]``.
    """

    def __init__(self, data: InteractionData, adapter: DenoiserAdapter, reward: Union[str, Reward, Any],
                 device="cpu", reward_kwargs: Optional[Dict] = None, action_bound: float = DEFAULT_ACTION_BOUND):
        source, data = data, as_interactions(data)  # TypeError for anything else
        if not isinstance(adapter, DenoiserAdapter):
            raise TypeError(f"adapter must be a DenoiserAdapter, got {type(adapter).__name__}")
        if adapter.n_items != data.n_items:
            raise ValueError(f"backbone ranks {adapter.n_items} items, but data '{data.name}' has {data.n_items}")
        if not (np.isfinite(action_bound) and action_bound > 0):
            raise ValueError(f"action_bound={action_bound!r}: expected a finite positive number")
        self.data, self.source_data, self.adapter, self.device = data, source, adapter, torch.device(device)
        kwargs = dict(reward_kwargs or {})
        if not isinstance(reward, Reward):
            kwargs.setdefault("device", self.device)
        self.reward = make_reward(reward, source, **kwargs)
        self.n_users, self.T = data.n_users, int(adapter.schedule.chain_steps)  # episode length (K if respaced)
        # protocol hook: episodes are drawn among the training users only (every user but under user-split)
        self.train_users = np.asarray(getattr(source, "train_users", data.train_users), dtype=np.int64)
        self.action_bound = float(action_bound)
        self.single_observation_space = observation_space(adapter, data.n_users, self.action_bound)
        self.single_action_space = action_space(adapter, self.action_bound)
        self._cond_low, self._cond_high = getattr(adapter, "condition_bounds", (-np.inf, np.inf))
        self.batch_size = 0
        self.t = 0
        self.x: Optional[torch.Tensor] = None
        self.users: Optional[np.ndarray] = None
        self.condition_np: Optional[np.ndarray] = None
        self.condition: Optional[torch.Tensor] = None
        self.users_t: Optional[torch.Tensor] = None
        self.ctx: Any = None
        self.state: Optional[RewardState] = None
        # (final action, its reward on the autograd graph) from a step(keep_graph=True), for terminal_reward()
        self._kept: Optional[Tuple[torch.Tensor, torch.Tensor]] = None

    def set_backbone(self, adapter: DenoiserAdapter) -> None:
        """Use ``adapter`` for conditions, contexts and the terminal scores from the next reset on.

        Fine-tuning hands the environment the *policy's* denoiser, so that the reward scores ``x_0``
        with the model being trained (for DreamRec the item embeddings of ``scores`` train too) and
        no second copy of the backbone is kept. The new adapter must have the same interface sizes
        (``n_items``, ``action_dim``, ``condition_dim``, ``T``) and live on this environment's device;
        the observation and action spaces are unchanged. Raises ValueError / TypeError otherwise.
        """
        if not isinstance(adapter, DenoiserAdapter):
            raise TypeError(f"adapter must be a DenoiserAdapter, got {type(adapter).__name__}")
        old = self.adapter
        for name in ("n_items", "action_dim", "condition_dim"):
            if getattr(adapter, name) != getattr(old, name):
                raise ValueError(f"set_backbone: the new backbone has {name}={getattr(adapter, name)}, the "
                                 f"environment's has {getattr(old, name)}")
        if int(adapter.schedule.chain_steps) != self.T:
            raise ValueError(f"set_backbone: the new backbone's reverse chain runs {adapter.schedule.chain_steps} "
                             f"steps, the environment's {self.T}")
        where = adapter_device(adapter, self.device)
        if where.type != self.device.type:
            raise ValueError(f"set_backbone: the backbone is on {where}, the environment on {self.device}")
        self.adapter = adapter

    # ------------------------------------------------------------------ reset
    @torch.no_grad()
    def reset(self, users: np.ndarray, keys: np.ndarray) -> None:
        """Start B episodes for ``users`` ``(B,)`` with episode keys ``keys`` ``(B,)`` uint64."""
        users = np.asarray(users, dtype=np.int64)
        B = len(users)
        state = self.reward.prepare(users, np.asarray(keys, dtype=np.uint64))
        if state.hidden_tail is None:
            cond = self.adapter.encode_condition(users, state.visible)
        else:  # a prefix of each sequence: order-aware backbones drop the hidden last positions
            cond = self.adapter.encode_condition(users, state.visible, hidden_tail=state.hidden_tail)
        cond = self._check_condition(cond, B)
        condition = torch.as_tensor(cond, device=self.device)
        users_t = torch.as_tensor(users, device=self.device)
        gen = torch.Generator(device=self.device)
        gen.manual_seed(start_seed(keys))
        first, inverse = first_of_episodes(users, keys)
        if len(first) == B:
            ctx = self.adapter.context(condition, users_t)
            x = self.adapter.start(condition, ctx, gen)
        else:  # episodes that share (user, key) share the condition, its context and x_T: made once, for the first
            ix, inv = (torch.as_tensor(a, device=self.device) for a in (first, inverse))
            ctx = self.adapter.context(condition[ix], users_t[ix])
            x = self.adapter.start(condition[ix], ctx, gen)
            self._check_tensor(x, len(first), "adapter.start() returned x_T")
            x, ctx = x[inv], index_context(ctx, inv)
        self._check_tensor(x, B, "adapter.start() returned x_T")
        self.batch_size, self.users, self.state, self.ctx = B, users, state, ctx
        self.condition_np, self.condition, self.users_t = cond, condition, users_t
        self.x = x.detach().to(torch.float32)
        self.t = self.T
        self._kept = None

    def _check_condition(self, cond: Any, B: int) -> np.ndarray:
        name = type(self.adapter).__name__
        if not isinstance(cond, np.ndarray) or cond.shape != (B, self.adapter.condition_dim):
            got = cond.shape if isinstance(cond, np.ndarray) else type(cond).__name__
            raise RuntimeError(f"{name}.encode_condition returned {got}; expected a numpy array of shape "
                               f"({B}, {self.adapter.condition_dim})")
        cond = np.ascontiguousarray(cond, dtype=np.float32)
        if not np.isfinite(cond).all() or cond.min(initial=0) < self._cond_low or cond.max(initial=0) > self._cond_high:
            raise RuntimeError(f"{name}.encode_condition returned values outside its condition_bounds "
                               f"[{self._cond_low}, {self._cond_high}] (min {cond.min()}, max {cond.max()})")
        return cond

    # ------------------------------------------------------------------ step
    def _check_tensor(self, a: torch.Tensor, B: int, what: str) -> None:
        D = self.adapter.action_dim
        if tuple(a.shape) != (B, D):
            raise ValueError(f"{what} of shape {tuple(a.shape)}; expected ({B}, {D})")
        if a.numel() == 0:
            return
        lo, hi = torch.aminmax(a)  # one fused pass; NaN propagates into both
        if bool((lo >= -self.action_bound) & (hi <= self.action_bound)):
            return
        ok = a.abs() <= self.action_bound  # error path only: locate the first bad entry (False for NaN, +-inf)
        b, j = (int(v) for v in torch.nonzero(~ok)[0])
        v = float(a[b, j])
        kind = "NaN" if v != v else ("infinite" if abs(v) == float("inf") else "out of bounds")
        raise ValueError(f"{what} has a {kind} value {v!r} at [{b}, {j}]; values must be finite and within "
                         f"[-{self.action_bound:g}, {self.action_bound:g}] (nothing is clipped)")

    def step(self, action: torch.Tensor,
             keep_graph: bool = False) -> Tuple[torch.Tensor, bool, Optional[Dict[str, torch.Tensor]]]:
        """Apply ``x_{t-1} = action`` ``(B, D)`` (taken over without a copy); returns rewards ``(B,)``, terminated and, at the end,
        the reward components ``{name: (B,)}`` (None before); the returned tensors never carry gradients.

        ``keep_graph=True`` (reward-gradient agents; a differentiable reward only) computes the terminal
        reward once, on the autograd graph of ``action`` and of the adapter's scoring parameters, and keeps
        it for :meth:`terminal_reward`, which then returns it instead of scoring ``x_0`` a second time."""
        if self.x is None:
            raise RuntimeError("step() before reset()")
        if self.t <= 0:
            raise RuntimeError("step() after the episode terminated (t = 0); reset first")
        if not isinstance(action, torch.Tensor):
            raise TypeError(f"action must be a torch.Tensor, got {type(action).__name__}")
        if not (action.is_floating_point() or action.dtype in (torch.int32, torch.int64)):
            raise ValueError(f"action must be a real-valued tensor, got dtype {action.dtype}")
        if keep_graph:
            self._check_differentiable()
        self._check_tensor(action, self.batch_size, "action")
        # no copy: the process takes the action tensor over (callers must not modify it in place later;
        # the numpy APIs pass fresh copies)
        self.x = action.detach().to(self.device, torch.float32)
        self.t -= 1
        if self.t > 0:
            return torch.zeros(self.batch_size, device=self.device), False, None
        if not keep_graph:
            with torch.no_grad():
                reward, comps = self._score(self.x)
            return reward, True, comps
        with torch.enable_grad():
            reward, comps = self._score(action)
        self._kept = (action, reward)
        return reward.detach(), True, {k: v.detach() for k, v in comps.items()}

    def _score(self, x0: torch.Tensor) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """The terminal rewards ``(B,)`` of ``x0`` ``(B, D)`` and their named terms, under the caller's grad mode."""
        return self.reward.scored(self.adapter.reward_scores(x0.to(self.device), self.ctx), self.state)

    def terminal_item_terms(self) -> torch.Tensor:
        """The terminal reward split into per-item terms, ``(B, n_items)`` float32 on the reward's device:
        ``reward.item_terms(adapter.scores(x_0), state)``, which sums over items to the rewards the
        terminal step returned (up to float rounding).

        Opt-in and on demand: nothing is computed or kept unless this is called, between the terminal
        step and the next reset (agents doing per-item credit assignment call it once per rollout).
        Raises RuntimeError at any other time and NotImplementedError (naming the reward) when the
        reward has no per-item terms (``reward.supports_item_terms``)."""
        if self.x is None or self.t != 0:
            where = "before reset()" if self.x is None else f"at t = {self.t}"
            raise RuntimeError(f"terminal_item_terms() {where}: the per-item reward terms exist only after the "
                               "terminal step (t = 0) and before the next reset")
        with torch.no_grad():
            return self.reward.item_terms(self.adapter.scores(self.x, self.ctx), self.state)

    def terminal_reward(self, x0: torch.Tensor) -> torch.Tensor:
        """The terminal rewards ``(B,)`` float32 of the episodes that just ended, recomputed from ``x0``
        ``(B, D)`` *with* autograd: ``reward(adapter.reward_scores(x0, context), state)``.

        For reward-gradient agents (:class:`agents.pathwise.Pathwise`): ``x0`` is the graph-connected
        tensor whose value the terminal step received as its action; it must equal the stored final
        state (ValueError otherwise), so the gradient belongs to the rewarded episode. The adapter's
        ``scores`` is differentiated too (its parameters, e.g. DreamRec's item embeddings, receive
        gradients). Available between the terminal step and the next reset (RuntimeError otherwise)
        and for rewards with a differentiable torch form (``reward.differentiable``; NotImplementedError
        naming the reward otherwise). When the terminal step ran with ``keep_graph=True`` and ``x0`` is that
        step's action (the same tensor object), the reward it computed is returned, once, instead of a second
        scoring pass."""
        if self.x is None or self.t != 0:
            where = "before reset()" if self.x is None else f"at t = {self.t}"
            raise RuntimeError(f"terminal_reward() {where}: it exists only after the terminal step (t = 0) and "
                               "before the next reset")
        self._check_differentiable()
        if tuple(x0.shape) != tuple(self.x.shape) or not torch.equal(x0.detach().to(self.x), self.x):
            raise ValueError("terminal_reward(x0): x0 is not the final state of the episodes that just ended")
        if self._kept is not None and self._kept[0] is x0:  # the terminal step's own graph: handed over once
            reward, self._kept = self._kept[1], None
            return reward
        return self._score(x0)[0]

    def _check_differentiable(self) -> None:
        if not self.reward.differentiable:
            raise NotImplementedError(f"reward {self.reward.name!r} ({self.reward!r}) has no differentiable torch form "
                                      "(Reward.differentiable is False): use a policy-gradient agent for it")

    # ------------------------------------------------------------------ observations
    def observation_tensors(self) -> Dict[str, torch.Tensor]:
        """The batch observation as tensors on the device: x (B, D), t (B, 1), user (B, 1), condition (B, C)."""
        B = self.batch_size
        return {"x": self.x, "t": torch.full((B, 1), self.t, dtype=torch.long, device=self.device),
                "user": self.users_t.unsqueeze(1), "condition": self.condition}

    def observation_numpy(self) -> Dict[str, np.ndarray]:
        """The batch observation as fresh numpy arrays (never shared with earlier observations)."""
        return {"x": self.x.cpu().numpy().copy(), "t": np.full((self.batch_size, 1), self.t, dtype=np.int64),
                "user": self.users.reshape(-1, 1).copy(), "condition": self.condition_np.copy()}
