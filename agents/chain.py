"""The base of agents that roll out whole denoising chains: :class:`ChainAlgorithm`.

:class:`~agents.refit.ReFiT` (REINFORCE), :class:`~agents.ddpo.DDPO` (clipped ratios) and
:class:`~agents.pathwise.Pathwise` (the exact reward gradient) share everything but the rollout and
the update, as SB3's PPO and A2C share ``OnPolicyAlgorithm``:

* the policy (:class:`~agents.policies.DenoiserPolicy` around the backbone), a frozen copy of the
  pretrained denoiser (``reference``, the KL anchor) and one ``torch.Generator`` that draws users,
  episode keys and policy noise (saved, so a resumed run continues the same stream);
* the environment driver (:mod:`agents.rollout`); the environment scores the terminal state with the
  *policy's* denoiser (``env.set_backbone``), so a reward that reads the backbone (DreamRec's item
  embeddings) always reads the model being trained;
* ``learn``: rollout -> update -> log, once per iteration, with SB3 callbacks and logger;
* ``save``/``load`` (SB3 zip: policy, optimizer, reference, RNG state, counters) and ``export_backbone``;
* data parallelism under ``torch.distributed`` (:mod:`refit_gym.distributed`) for subclasses that set
  ``supports_distributed`` (ReFiT, DDPO, Pathwise): each rank's environment holds its ``n_envs`` chains of a
  global batch of ``n_envs * world_size`` chains; every rank draws the global users, keys and policy noise
  from the shared generator and keeps its block of whole users (:meth:`ChainAlgorithm._draw_episodes`: the
  ``n_traj_per_user`` copies of a user, and so its group baseline, stay on one rank;
  :meth:`ChainAlgorithm._rank_noise`), gradients and the update's loss terms are summed over the ranks in one
  collective before the loss check and the clipping (:meth:`ChainAlgorithm._reduce_and_step`; a subclass's
  loss is its rows' share of the global mean), episode rewards are gathered (:meth:`ChainAlgorithm._record_episodes`)
  and ``num_timesteps`` counts the global steps, so the updates and logs equal one process's with
  ``n_envs * world_size`` environments; only rank 0 dumps logs (saving is the caller's, on rank 0).

A subclass implements :meth:`ChainAlgorithm.collect_rollout` (one batch of chains, or None when a
callback stops) and :meth:`ChainAlgorithm.train` (one update on it), and names its hyperparameters:
``config_class``, a dataclass extending :class:`ChainConfig` (one field per hyperparameter, its default written
once; the constructor takes them as keywords, as SB3's algorithms do).
"""
from __future__ import annotations

import copy
import sys
from dataclasses import dataclass
import time
from pathlib import Path
from typing import Any, Callable, ClassVar, Dict, Optional, Tuple, Type, TypeVar, Union

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import safe_mean

from agents.guards import NonFiniteTrainingError, action_bound, actions_within, check_actions
from agents.policies import DenoiserPolicy, PolicyConfig
from agents.rollout import TensorRollout, make_rollout_driver
from refit_gym import distributed
from refit_gym.diffusion.adapters import DenoiserAdapter
from refit_gym.diffusion.context import context_tensors, detach_context

SelfChain = TypeVar("SelfChain", bound="ChainAlgorithm")


@dataclass
class ChainConfig(PolicyConfig):
    """The hyperparameters every chain algorithm shares (the policy's options included)."""

    learning_rate: Union[float, Schedule] = 1e-5
    """learning rate (or SB3 schedule) of the value head; the denoiser's is denoiser_lr_scale times it"""
    n_traj_per_user: int = 4
    """chains per user and rollout (the copies share the user's episode key)"""
    kl_coef: float = 0.0
    """weight of the KL penalty to the frozen pretrained denoiser (0: the reference is not run)"""
    max_grad_norm: float = 1.0
    """gradient-norm clipping threshold"""
    policy_kwargs: Optional[Dict[str, Any]] = None
    """further DenoiserPolicy keyword arguments (net_arch, optimizer_class, ...)"""
    stats_window_size: int = 100
    """episodes averaged in rollout/ep_rew_mean (as in SB3)"""

    @property
    def min_traj_per_user(self) -> int:
        """The fewest copies per user the algorithm works with."""
        return 1

    def check(self) -> None:
        if self.n_traj_per_user < self.min_traj_per_user:
            raise ValueError(f"n_traj_per_user={self.n_traj_per_user}: need >= {self.min_traj_per_user} copies per user"
                             + (" for the group baseline" if self.min_traj_per_user > 1 else ""))
        if not (self.kl_coef >= 0 and self.max_grad_norm > 0):
            raise ValueError(f"need kl_coef >= 0 and max_grad_norm > 0; got {self.kl_coef}, {self.max_grad_norm}")
        super().check()


#: ChainConfig fields that SB3's ``BaseAlgorithm`` stores itself (the others become attributes of the algorithm,
#: except the policy's options, which go into ``policy_kwargs``)
BASE_ALGORITHM_FIELDS = ("learning_rate", "policy_kwargs", "stats_window_size")


class ChainAlgorithm(BaseAlgorithm):
    """Base of the whole-chain agents (see the module docstring).

    Construction: ``Algo(policy, env, config=None, **hyperparameters)``: the hyperparameters are the fields of
    :attr:`config_class` (its defaults for those not given; an unknown one is a TypeError listing the known ones).
    Every field becomes an attribute of the algorithm (``self.kl_coef``, ...), except the policy's options
    (:class:`~agents.policies.PolicyConfig`, written into ``policy_kwargs``: ``self.policy.train_last_k``, ...)
    and ``learning_rate``, ``policy_kwargs``, ``stats_window_size`` (SB3's ``BaseAlgorithm`` keeps them).

    Args:
        policy: a :class:`DenoiserAdapter` (deep-copied), a backbone checkpoint path, or the policy
            class ``DenoiserPolicy`` / ``"DenoiserPolicy"`` with ``policy_kwargs`` holding ``backbone``
            or ``checkpoint``.
        env: a refit-gym denoising environment: ``BatchedDenoisingEnv`` (tensor fast path) or any SB3
            VecEnv of ``DenoisingEnv``; ``n_envs`` chains per rollout, a multiple of ``n_traj_per_user``.
        config: a :attr:`config_class` instance (None: its defaults); keyword hyperparameters override it.
        tensorboard_log, verbose, seed, device: as in SB3.
    """

    policy_aliases: ClassVar[Dict[str, Type[BasePolicy]]] = {"DenoiserPolicy": DenoiserPolicy}
    #: the hyperparameters of the algorithm (a subclass names its own)
    config_class: ClassVar[Type[ChainConfig]] = ChainConfig
    policy: DenoiserPolicy
    #: whether the subclass's losses are written for data parallelism (see the module docstring)
    supports_distributed: ClassVar[bool] = False

    def __init__(
        self,
        policy: Union[str, Path, Type[DenoiserPolicy], DenoiserAdapter],
        env: Union[GymEnv, str, None],
        config: Optional[ChainConfig] = None,
        *,
        tensorboard_log: Optional[str] = None,
        verbose: int = 0,
        seed: Optional[int] = None,
        device: Union[torch.device, str] = "auto",
        _init_setup_model: bool = True,
        **hyperparams: Any,
    ):
        cfg = self.config_class.build(config, hyperparams)
        policy, policy_kwargs = self._resolve_policy(policy, cfg.policy_kwargs)
        policy_options = PolicyConfig.keys()
        policy_kwargs.update({name: getattr(cfg, name) for name in policy_options})
        for name, value in cfg.as_dict().items():
            if name not in policy_options and name not in BASE_ALGORITHM_FIELDS:
                setattr(self, name, value)
        super().__init__(policy, env, cfg.learning_rate, policy_kwargs=policy_kwargs,
                         stats_window_size=cfg.stats_window_size, tensorboard_log=tensorboard_log, verbose=verbose,
                         device=device, support_multi_env=True, monitor_wrapper=False, seed=seed,
                         supported_action_spaces=(spaces.Box,))
        if self.env is not None and self.n_envs % self.n_traj_per_user:
            raise ValueError(f"n_envs={self.n_envs} is not a multiple of n_traj_per_user={self.n_traj_per_user}")
        if _init_setup_model:
            self._setup_model()

    # ------------------------------------------------------------------ construction
    @classmethod
    def _resolve_policy(cls, policy, policy_kwargs) -> Tuple[Any, Dict[str, Any]]:
        """Map the accepted ``policy`` forms to (policy class or alias, policy_kwargs)."""
        policy_kwargs = dict(policy_kwargs or {})
        if isinstance(policy, DenoiserAdapter):
            policy_kwargs["backbone"] = policy
            return DenoiserPolicy, policy_kwargs
        if isinstance(policy, Path) or (isinstance(policy, str) and policy not in cls.policy_aliases):
            policy_kwargs["checkpoint"] = str(policy)
            return DenoiserPolicy, policy_kwargs
        if isinstance(policy, type) and not issubclass(policy, DenoiserPolicy):
            raise TypeError(f"{cls.__name__} needs a DenoiserPolicy (sub)class, got {policy.__name__}")
        return policy, policy_kwargs

    def _setup_model(self) -> None:
        self._setup_lr_schedule()
        self.set_random_seed(self.seed)
        self.policy = self.policy_class(self.observation_space, self.action_space, self.lr_schedule,
                                        **self.policy_kwargs).to(self.device)
        if distributed.active():
            if not self.supports_distributed:
                raise ValueError(f"{type(self).__name__} does not run under torch.distributed (WORLD_SIZE="
                                 f"{distributed.world_size()}): it does not set supports_distributed (ReFiT, DDPO "
                                 "and Pathwise do); run it as one process")
            distributed.broadcast_parameters(self.policy)  # every rank starts from rank 0's weights
        # From now on the architecture is enough to rebuild the policy: saved models carry the
        # weights in their state dicts, not a pickled backbone or a path that may have moved.
        spec = dict(backbone=self.policy.denoiser.backbone_name, config=self.policy.denoiser.config())
        self.policy_kwargs = {k: v for k, v in self.policy_kwargs.items() if k not in ("backbone", "checkpoint")}
        self.policy_kwargs["backbone_spec"] = spec
        # The frozen pretrained copy: the KL reference (also saved, so a resumed run keeps it).
        self.reference = copy.deepcopy(self.policy.denoiser).requires_grad_(False).eval()
        self._generator = torch.Generator(device=self.device)
        self._generator.manual_seed(0 if self.seed is None else int(self.seed))
        self._rng_state = self._generator.get_state()
        self._driver: Optional[TensorRollout] = None
        if self.env is not None:
            self.driver  # noqa: B018  (the environment scores with the policy's denoiser from now on)
        self._check_env()

    def _check_env(self) -> None:
        """Hook run when the policy or the environment changes: raise ValueError for an unusable pairing."""

    def _excluded_save_params(self):  # _ctx_trained: found again after a load
        return super()._excluded_save_params() + ["reference", "_generator", "_rng_state", "_driver", "_ctx_trained",
                                                  "_action_bound",
                                                  "_last_obs", "_last_original_obs", "_last_episode_starts"]

    def _get_torch_save_params(self):
        return ["policy", "policy.optimizer", "reference"], ["_rng_state"]

    def save(self, path, exclude=None, include=None) -> None:
        """Save to a zip (SB3 format): policy and reference weights, optimizer state, RNG state, counters."""
        self._rng_state = self._generator.get_state()
        super().save(path, exclude=exclude, include=include)

    @classmethod
    def load(cls: Type[SelfChain], path, env: Optional[GymEnv] = None, device="auto", custom_objects=None,
             print_system_info: bool = False, force_reset: bool = True, **kwargs) -> SelfChain:
        """Load a model written by :meth:`save`; with ``env`` it can continue training
        (``learn(..., reset_num_timesteps=False)`` resumes the RNG stream where it stopped).

        Nothing in the file is unpickled as code: the zip's serialized values are decoded with an allow-list
        (:func:`refit_gym.io_safety.safe_custom_objects`; ``custom_objects`` replace them), counters must be
        non-negative and the weights finite (:class:`~refit_gym.diffusion.checkpoint.CheckpointError` otherwise)."""
        from refit_gym.io_safety import sb3_load

        model = sb3_load(super().load, path, custom_objects, env=env, device=device,
                         print_system_info=print_system_info, force_reset=force_reset, **kwargs)
        model._generator.set_state(model._rng_state.cpu())
        return model

    def set_env(self, env: GymEnv, force_reset: bool = True) -> None:
        super().set_env(env, force_reset=force_reset)
        if self.n_envs % self.n_traj_per_user:
            raise ValueError(f"n_envs={self.n_envs} is not a multiple of n_traj_per_user={self.n_traj_per_user}")
        self._driver = None
        self.driver  # noqa: B018  (the new environment scores with the policy's denoiser)
        self._check_env()

    @property
    def driver(self) -> TensorRollout:
        """Torch-level access to the environment (the batched env's fast path, or a VecEnv adapter); the
        environment scores terminal states with the policy's denoiser from here on."""
        if self._driver is None:
            if self.env is None:
                raise ValueError("no environment: pass one to the constructor, set_env() or load(..., env=...)")
            self._driver = make_rollout_driver(self.env, self.device)
            self._driver.set_backbone(self.policy.denoiser)
        return self._driver

    # ------------------------------------------------------------------ shared pieces of a rollout
    def _check_finite(self, name: str, value: torch.Tensor) -> None:
        if not bool(torch.isfinite(value).all()):
            raise NonFiniteTrainingError(
                f"{type(self).__name__}: non-finite {name} at update {self._n_updates + 1} "
                f"(num_timesteps={self.num_timesteps}); training stopped before the optimizer step, so the "
                "parameters are those of the last good update and no checkpoint of the bad state was written. "
                "Try a lower learning rate, a larger std_floor, log_prob_reduction='mean' or max_grad_norm.")

    def _check_actions(self, action: torch.Tensor) -> None:
        """Non-finite actions raise :class:`NonFiniteTrainingError`; exploding ones (finite but beyond the action box)
        stop training like them, with :class:`~agents.guards.DivergenceError`, before the environment sees them (its
        own check would raise a ValueError naming no cause). One pass over the actions when they are fine."""
        if not hasattr(self, "_action_bound"):
            self._action_bound = action_bound(self.action_space)
        if action.numel() and actions_within(action.detach(), self._action_bound):
            return
        self._check_finite("actions", action)
        check_actions(action, self._action_bound, f"{type(self).__name__} at update {self._n_updates + 1} "
                                                  f"(num_timesteps={self.num_timesteps})")

    @property
    def trained_steps(self) -> int:
        """K, the number of trained (stochastic) steps at the end of each chain."""
        T, k = self.policy.steps, self.policy.train_last_k
        return T if k is None else min(int(k), T)

    def _rollout_context(self, compute: Callable[[], Any]) -> Tuple[Any, bool]:
        """(the denoiser context of every chain of the rollout the driver just reset; whether no trained parameter
        reaches it). ``compute()`` computes it with the policy's denoiser. A context no trained parameter reaches
        (CF-Diff's hop signals; DreamRec-CE's encoder when a recipe freezes it) is the one the environment computed at
        its reset with the same denoiser: it is read from there when the driver can hand it over, and the agent's
        reference and update may read it too. Which kind it is is found on the first rollout (``compute()`` with
        autograd on) and kept: which parameters are trained does not change during a run. Detached unless autograd is
        on and a trained parameter reaches it."""
        if getattr(self, "_ctx_trained", None) is None:
            grad = torch.is_grad_enabled()
            with torch.enable_grad():
                ctx = compute()
            self._ctx_trained = any(t.requires_grad for t in context_tensors(ctx))
            return (ctx if grad and self._ctx_trained else detach_context(ctx)), not self._ctx_trained
        if self._ctx_trained:
            return compute(), False
        ctx = self.driver.episode_context()
        return (detach_context(compute()) if ctx is None else ctx), True

    def _draw_episodes(self) -> Tuple[np.ndarray, np.ndarray]:
        """Users ``(N,)`` and episode keys ``(N,)``: ``n_envs / n_traj_per_user`` distinct users (with
        replacement across rollouts), each repeated ``n_traj_per_user`` times with one shared key; users are drawn
        among the data's training users (all of them but under user-split). Under torch.distributed the groups
        of the global batch (``world_size`` times as many) are drawn and this rank's block is returned."""
        distributed.check_same(self.n_envs, "n_envs (every rank's environment holds as many chains)")
        n_local = self.n_envs // self.n_traj_per_user
        n_groups = n_local * distributed.world_size()
        pool = self.driver.train_users
        n_users = len(pool)
        g = self._generator
        users = torch.randperm(n_users, generator=g, device=g.device)[:n_groups] if n_groups <= n_users else \
            torch.randint(n_users, (n_groups,), generator=g, device=g.device)
        keys = torch.randint(0, 2**62, (n_groups,), generator=g, device=g.device)
        lo, hi = distributed.shard_bounds(n_groups)
        users = pool[users[lo:hi].cpu().numpy()].astype(np.int64).repeat(self.n_traj_per_user)
        keys = keys[lo:hi].cpu().numpy().astype(np.uint64).repeat(self.n_traj_per_user)
        return users, keys

    @property
    def global_n_envs(self) -> int:
        """Chains per rollout over all ranks (``n_envs`` on one process)."""
        return self.n_envs * distributed.world_size()

    def _rank_noise(self, like: torch.Tensor, mirrored: bool = False) -> Optional[torch.Tensor]:
        """Standard normal noise shaped like ``like`` ``(n_envs, ...)``: this rank's rows of one draw for the global
        batch from the shared generator (None on one process: the caller draws as usual, same numbers).
        ``mirrored``: antithetic noise, the last half of each user's ``n_traj_per_user`` consecutive copies (an even
        number) take the negated noise of the first half (drawn on one process too)."""
        if not (distributed.active() or mirrored):
            return None
        full = torch.randn((self.global_n_envs,) + tuple(like.shape[1:]), generator=self._generator,
                           device=like.device, dtype=like.dtype)
        if mirrored:
            half = full.view(-1, self.n_traj_per_user, *full.shape[1:])[:, : self.n_traj_per_user // 2]
            full = torch.cat([half, -half], dim=1).view_as(full)
        return distributed.shard(full)

    @property
    def chain_offset(self) -> int:
        """Index of this rank's first chain in the global batch (``rank * n_envs``; 0 on one process)."""
        return distributed.rank() * self.n_envs

    def _record_episodes(self, rewards: torch.Tensor, length: int) -> None:
        """Append the terminal rewards ``(n_envs,)`` of the global batch (every rank's, gathered in the order of
        one process; a collective under torch.distributed) to ``ep_info_buffer`` as episodes of ``length`` steps."""
        full = distributed.gather_rows(rewards.detach().double().reshape(-1), self.global_n_envs)
        for r in full.tolist():
            self.ep_info_buffer.append({"r": r, "l": length})

    def _reduce_and_step(self, terms: Dict[str, float]) -> Tuple[float, Dict[str, float]]:
        """Sum the gradients and the loss terms ``terms`` (this rank's shares of the global values) over the ranks
        in one collective, check the global terms (``loss`` first: every rank raises
        :class:`NonFiniteTrainingError` alike, before any step), clip the gradient, check its norm and take the
        optimizer step. Returns the pre-clip gradient norm and the global terms."""
        names = sorted(terms, key=lambda k: k != "loss")
        reduced = distributed.all_reduce_gradients(self.policy, [terms[k] for k in names])
        totals = {k: float(v) for k, v in zip(names, reduced)}
        for name, value in totals.items():
            self._check_finite(name, torch.tensor(value))
        grad_norm = torch.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
        self._check_finite("gradient norm", grad_norm)
        self.policy.optimizer.step()
        return float(grad_norm), totals

    def _clip_and_step(self) -> float:
        """:meth:`_reduce_and_step` without loss terms; returns the pre-clip norm."""
        return self._reduce_and_step({})[0]

    # ------------------------------------------------------------------ the loop
    def collect_rollout(self, callback: BaseCallback) -> Optional[Any]:
        """One batch of ``n_envs`` chains through the environment (None when a callback asked to stop)."""
        raise NotImplementedError

    def train(self, batch: Any) -> None:
        """One update on a batch returned by :meth:`collect_rollout`."""
        raise NotImplementedError

    def dump_logs(self, iteration: int = 0) -> None:
        elapsed = max((time.time_ns() - self.start_time) / 1e9, sys.float_info.epsilon)
        fps = int((self.num_timesteps - self._num_timesteps_at_start) / elapsed)
        self.logger.record("time/iterations", iteration, exclude="tensorboard")
        if self.ep_info_buffer:
            self.logger.record("rollout/ep_rew_mean", safe_mean([ep["r"] for ep in self.ep_info_buffer]))
        self.logger.record("time/fps", fps)
        self.logger.record("time/time_elapsed", int(elapsed), exclude="tensorboard")
        self.logger.record("time/total_timesteps", self.num_timesteps, exclude="tensorboard")
        self.logger.dump(step=self.num_timesteps)

    def learn(self: SelfChain, total_timesteps: int, callback: MaybeCallback = None, log_interval: int = 1,
              tb_log_name: Optional[str] = None, reset_num_timesteps: bool = True,
              progress_bar: bool = False) -> SelfChain:
        """Train for ``total_timesteps`` environment steps (one rollout = ``n_envs * T`` steps)."""
        total_timesteps, callback = self._setup_learn(total_timesteps, callback, reset_num_timesteps,
                                                      tb_log_name or type(self).__name__, progress_bar)
        callback.on_training_start(locals(), globals())
        iteration = 0
        while self.num_timesteps < total_timesteps:
            callback.on_rollout_start()
            batch = self.collect_rollout(callback)
            if batch is None:
                break
            callback.update_locals(locals())
            callback.on_rollout_end()
            iteration += 1
            self._update_current_progress_remaining(self.num_timesteps, total_timesteps)
            self.train(batch)
            if log_interval is not None and iteration % log_interval == 0 and distributed.is_main():
                self.dump_logs(iteration)
        callback.on_training_end()
        return self

    def export_backbone(self, path, meta: Optional[Dict] = None) -> Path:
        """Write the fine-tuned denoiser as a plain backbone checkpoint (see ``DenoiserPolicy.export_backbone``)."""
        return self.policy.export_backbone(path, meta)
