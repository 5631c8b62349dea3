"""An SB3 actor-critic policy whose actor *is* a pretrained diffusion denoiser.

:class:`DenoiserPolicy` plugs a :class:`~refit_gym.diffusion.adapters.DenoiserAdapter` into
Stable-Baselines3's :class:`~stable_baselines3.common.policies.ActorCriticPolicy`, so that
``PPO(DenoiserPolicy, env, policy_kwargs=dict(checkpoint="backbone.pt"))`` (or ``A2C``) fine-tunes
the backbone on a refit-gym denoising environment.

Observation (a Dict, see ``refit_gym/envs``): ``"x"`` (D,) float32 the current ``x_t``, ``"t"`` (1,)
the remaining reverse steps (the step taken from ``t`` uses diffusion index ``i = t - 1``),
``"user"`` (1,) and ``"condition"`` (condition_dim,). Action: ``x_{t-1}`` (D,).

Actor. The action distribution is the backbone's own reverse step
``N(mu_theta(x_t, i, context(condition, user)), sigma^2 I)`` where ``sigma`` is the schedule's
fixed standard deviation at ``i`` times ``exploration_scale``, floored at ``std_floor``. There is no
learned ``log_std``. The deterministic action is the mean, so a deterministic rollout of the
untrained policy reproduces ``adapter.infer(deterministic=True)`` exactly.

Critic. A small separate value head on a low-dimensional summary of the observation
(:class:`DenoisingSummaryExtractor`: a sinusoidal embedding of ``t``, a few statistics of ``x`` and
of the condition, and an optional learned projection of ``x``), followed by SB3's MLP. It shares
nothing with the denoiser; SB3's orthogonal initialisation only ever touches the value side (the
denoiser is attached after it runs).

Training details:

* The denoiser is always in ``eval()`` mode (dropout off), also while SB3 sets training mode:
  the log-probability of an action must be the same function of the weights at rollout and at
  update time, otherwise PPO's importance ratio is not 1 at the first epoch.
* ``log_prob_reduction`` ``"sum"`` | ``"mean"``: see :mod:`agents.distributions`. With thousands
  of item dimensions, ``"sum"`` makes PPO's ratio explode after one step; use ``"mean"`` with a
  small clip range (or REINFORCE-style agents, :class:`agents.refit.ReFiT`).
* ``train_last_k``: only the last k reverse steps (``t <= k``) are stochastic and trained. Earlier
  steps follow the *current* denoiser's mean deterministically with no gradient (log-prob and
  entropy exactly 0, so their PPO ratio is exactly 1). Using the current rather than a frozen
  copy keeps "policy's deterministic rollout" == "the exported backbone's inference".
* The optimizer holds the denoiser's parameters (trainable, less those named in ``frozen``) and the
  value head's, in two parameter groups; the denoiser's learning rate is ``denoiser_lr_scale`` times the value head's
  (kept through SB3's learning-rate schedules by :func:`lr_scaled_optimizer_class`).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple, Type, Union

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from torch import nn

from agents.config import Config
from agents.distributions import DenoiserGaussian, check_reduction
from refit_gym.diffusion.adapters import DenoiserAdapter
from refit_gym.diffusion.checkpoint import load_backbone, save_backbone
from refit_gym.diffusion.denoisers import timestep_embedding
from refit_gym.envs.core import OBS_KEYS, check_denoising_spaces
from refit_gym.utils import optimizer_kwargs



# ---------------------------------------------------------------------------- optimizer helper
class _LRScaleMixin:
    """Multiplies each parameter group's ``lr`` by its ``"lr_scale"`` entry during ``step()``.

    SB3 sets every group's ``lr`` to the schedule's value before each update
    (``update_learning_rate``), which would erase per-group learning rates; storing the ratio in
    the group and applying it at step time survives that. ``"lr_scale"`` is part of the optimizer's
    ``state_dict`` like any other group option.
    """

    def step(self, closure=None):
        base = [group["lr"] for group in self.param_groups]
        for group in self.param_groups:
            group["lr"] = group["lr"] * group.get("lr_scale", 1.0)
        try:
            return super().step(closure)
        finally:
            for group, lr in zip(self.param_groups, base):
                group["lr"] = lr


_SCALED_CLASSES: Dict[type, type] = {}


def lr_scaled_optimizer_class(optimizer_class: Type[torch.optim.Optimizer]) -> Type[torch.optim.Optimizer]:
    """``optimizer_class`` with per-group ``"lr_scale"`` support (one cached subclass per class)."""
    if issubclass(optimizer_class, _LRScaleMixin):
        return optimizer_class
    if optimizer_class not in _SCALED_CLASSES:
        _SCALED_CLASSES[optimizer_class] = type(f"LRScaled{optimizer_class.__name__}", (_LRScaleMixin, optimizer_class), {})
    return _SCALED_CLASSES[optimizer_class]


# ---------------------------------------------------------------------------- observation helpers
def unpack_obs(obs: PyTorchObs) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split a batched observation dict into ``x`` (B, D) float32, ``t`` (B,) int64, ``users`` (B,)
    int64 and ``condition`` (B, condition_dim) float32.

    Integer entries may arrive as floats (SB3's preprocessing and rollout buffers cast them); they
    are rounded back.
    """
    missing = [k for k in OBS_KEYS if k not in obs]
    if missing:
        raise KeyError(f"observation is missing keys {missing}; a denoising observation has {list(OBS_KEYS)}")
    x = obs["x"].float()
    t = obs["t"].reshape(-1)
    users = obs["user"].reshape(-1)
    t = t.round().long() if t.is_floating_point() else t.long()
    users = users.round().long() if users.is_floating_point() else users.long()
    return x, t, users, obs["condition"].float()


# ---------------------------------------------------------------------------- value features
class DenoisingSummaryExtractor(BaseFeaturesExtractor):
    """Low-dimensional summary of a denoising observation, for the value head only.

    Features ``(B, t_embed_dim + 6 + proj_dim)``: a sinusoidal embedding of ``t``; the mean, std,
    min and max of ``x``; the mean of the condition; the mean of ``x * condition``; and, if
    ``proj_dim > 0``, a learned linear projection ``x @ W`` (D -> proj_dim).
    """

    N_STATS = 6

    def __init__(self, observation_space: spaces.Dict, t_embed_dim: int = 16, proj_dim: int = 16):
        self.t_embed_dim, self.proj_dim = int(t_embed_dim), int(proj_dim)
        super().__init__(observation_space, features_dim=self.t_embed_dim + self.N_STATS + self.proj_dim)
        d = int(observation_space.spaces["x"].shape[0])
        self.proj = nn.Linear(d, self.proj_dim) if self.proj_dim > 0 else None
        self._cond_matches_x = observation_space.spaces["condition"].shape == observation_space.spaces["x"].shape

    def forward(self, observations: PyTorchObs) -> torch.Tensor:
        x, t, _, cond = unpack_obs(observations)
        xc = (x * cond).mean(-1) if self._cond_matches_x else torch.zeros_like(x[:, 0])
        stats = torch.stack([x.mean(-1), x.std(-1, unbiased=False), x.amin(-1), x.amax(-1), cond.mean(-1), xc], dim=-1)
        feats = [timestep_embedding(t, self.t_embed_dim), stats]
        if self.proj is not None:
            feats.append(self.proj(x))
        return torch.cat(feats, dim=-1)


# ---------------------------------------------------------------------------- the policy
@dataclass
class PolicyConfig(Config):
    """The options of :class:`DenoiserPolicy` that every agent sets (the chain algorithms' configurations extend it)."""

    train_last_k: Optional[int] = None
    """only the last k reverse steps (t <= k) are stochastic and trained; None: all T"""
    exploration_scale: float = 1.0
    """multiplies the schedule's reverse-step std (> 0)"""
    std_floor: float = 0.0
    """lower bound of the std after scaling (>= 0)"""
    log_prob_reduction: str = "sum"
    """log-probabilities and KL summed over the D action dimensions (exact, SB3's convention) or "mean" (DDPO's)"""
    denoiser_lr_scale: float = 1.0
    """the denoiser's learning rate relative to the value head's (>= 0)"""
    frozen: Optional[list] = None
    """names (or dotted prefixes) of the backbone's parameters held fixed, e.g. [encoder] for DreamRec: only the
    denoiser network trains; None: every parameter trains"""

    def check(self) -> None:
        if not self.exploration_scale > 0:
            raise ValueError(f"exploration_scale={self.exploration_scale}: must be > 0")
        if not self.std_floor >= 0:
            raise ValueError(f"std_floor={self.std_floor}: must be >= 0")
        if not self.denoiser_lr_scale >= 0:
            raise ValueError(f"denoiser_lr_scale={self.denoiser_lr_scale}: must be >= 0")
        if self.train_last_k is not None and self.train_last_k < 1:
            raise ValueError(f"train_last_k={self.train_last_k}: must be >= 1 (or None to train every step)")
        if self.frozen is not None and not all(isinstance(f, str) and f for f in self.frozen):
            raise ValueError(f"frozen={self.frozen!r}: expected a list of parameter names or dotted prefixes")
        check_reduction(self.log_prob_reduction)
        super().check()


def freeze_parameters(module: nn.Module, names: Optional[Sequence[str]]) -> int:
    """Set ``requires_grad=False`` on the parameters of ``module`` named ``name`` or ``name.*`` for each of ``names``
    (None: none); returns how many were frozen. ValueError naming a name that matches no parameter."""
    frozen = 0
    params = dict(module.named_parameters())
    for name in names or ():
        hits = [p for n, p in params.items() if n == name or n.startswith(name + ".")]
        if not hits:
            tops = sorted({n.split(".")[0] for n in params})
            raise ValueError(f"frozen: {name!r} names no parameter of the {type(module).__name__}; its top-level "
                             f"parameter groups: {tops}")
        for p in hits:
            p.requires_grad_(False)
        frozen += len(hits)
    return frozen


def load_state_resizing_data_tensors(module: DenoiserAdapter, state_dict, prefix, *args) -> None:
    """``load_state_dict`` pre-hook for adapters: data-derived buffers (``module.data_tensors()``,
    e.g. CF-Diff's item graph) take the stored tensor's size, as in ``load_backbone``."""
    for name in module.data_tensors():
        if prefix + name in state_dict:
            setattr(module, name, state_dict[prefix + name].clone().to(getattr(module, name).device))


def resolve_backbone(backbone: Optional[DenoiserAdapter] = None, checkpoint: Union[str, Path, None] = None,
                     backbone_spec: Optional[Dict[str, Any]] = None) -> DenoiserAdapter:
    """The adapter to wrap, on the CPU. Exactly one source must be given:

    * ``backbone``: a deep copy of it (the caller's object is never trained in place);
    * ``checkpoint``: the adapter stored at that path (``save_backbone``);
    * ``backbone_spec``: ``{"backbone": name, "config": adapter.config()}``, the architecture only,
      freshly initialised -- for rebuilding a saved model whose weights come from its state dict.
    """
    given = [name for name, v in (("backbone", backbone), ("checkpoint", checkpoint), ("backbone_spec", backbone_spec))
             if v is not None]
    if len(given) != 1:
        raise ValueError("DenoiserPolicy needs exactly one of policy_kwargs 'backbone' (a DenoiserAdapter), "
                         f"'checkpoint' (a path written by save_backbone) or 'backbone_spec'; got {given or 'none'}")
    if backbone_spec is not None:
        from refit_gym.diffusion.checkpoint import build_from_config

        if not isinstance(backbone_spec, dict) or "backbone" not in backbone_spec or "config" not in backbone_spec:
            raise ValueError(f"backbone_spec must be a dict with 'backbone' and 'config', got {backbone_spec!r:.200}")
        return build_from_config(backbone_spec["backbone"], backbone_spec["config"], "policy_kwargs.backbone_spec").eval()
    if backbone is not None:
        if not isinstance(backbone, DenoiserAdapter):
            raise TypeError(f"backbone must be a DenoiserAdapter, got {type(backbone).__name__}")
        return copy.deepcopy(backbone).cpu()
    adapter, _ = load_backbone(checkpoint, device="cpu")
    return adapter


class DenoiserPolicy(ActorCriticPolicy):
    """Actor-critic policy: the pretrained denoiser's Gaussian reverse step + a separate value head.

    Args (beyond ActorCriticPolicy's ``observation_space, action_space, lr_schedule``):
        backbone: a :class:`DenoiserAdapter` to fine-tune (deep-copied), or
        checkpoint: the path of a backbone checkpoint (``save_backbone``), or
        backbone_spec: ``{"backbone": name, "config": {...}}`` (architecture only; used when SB3
            rebuilds a saved model) -- at most one of the three. None of them: a copy of the backbone of the
            refit-gym environment built in this process whose spaces these are (exactly one must be alive;
            :func:`refit_gym.envs.factory.env_backbone_for_spaces`), which is how rl-zoo3 builds it.
        inference_steps: K, respace the backbone's reverse chain to K steps
            (:meth:`~refit_gym.diffusion.adapters.DenoiserAdapter.set_inference_steps`; None: keep the backbone's own):
            the environment's episode length, when it was built with ``inference_steps`` from a checkpoint
            that does not record it.
        exploration_scale: multiplies the schedule's reverse-step std (> 0).
        std_floor: lower bound on the std after scaling (>= 0).
        log_prob_reduction: ``"sum"`` (exact, SB3's convention) or ``"mean"`` (divided by D, DDPO's).
        train_last_k: if set, only steps with ``t <= train_last_k`` are stochastic and trained.
        denoiser_lr_scale: the denoiser's learning rate relative to the value head's.
        net_arch: hidden sizes of the value MLP (a list, or SB3's ``dict(vf=[...])``); default :attr:`VALUE_NET_ARCH`.
        activation_fn, ortho_init, features_extractor_class/_kwargs, optimizer_class/_kwargs: as in SB3;
            the features extractor (default :class:`DenoisingSummaryExtractor`) feeds the value head only.
    """

    #: hidden sizes of the value MLP without ``net_arch``
    VALUE_NET_ARCH = (64, 64)

    def __init__(
        self,
        observation_space: spaces.Dict,
        action_space: spaces.Box,
        lr_schedule: Schedule,
        backbone: Optional[DenoiserAdapter] = None,
        checkpoint: Union[str, Path, None] = None,
        backbone_spec: Optional[Dict[str, Any]] = None,
        inference_steps: Optional[int] = None,
        exploration_scale: float = PolicyConfig.exploration_scale,
        std_floor: float = PolicyConfig.std_floor,
        log_prob_reduction: str = PolicyConfig.log_prob_reduction,
        train_last_k: Optional[int] = PolicyConfig.train_last_k,
        denoiser_lr_scale: float = PolicyConfig.denoiser_lr_scale,
        frozen: Optional[Sequence[str]] = PolicyConfig.frozen,
        net_arch: Union[Sequence[int], Dict[str, Sequence[int]], None] = None,
        activation_fn: Type[nn.Module] = nn.Tanh,
        ortho_init: bool = True,
        use_sde: bool = False,
        features_extractor_class: Type[BaseFeaturesExtractor] = DenoisingSummaryExtractor,
        features_extractor_kwargs: Optional[Dict[str, Any]] = None,
        optimizer_class: Type[torch.optim.Optimizer] = torch.optim.Adam,
        optimizer_kwargs: Optional[Dict[str, Any]] = None,
        **unsupported: Any,
    ):
        if use_sde:
            raise ValueError("DenoiserPolicy does not support gSDE (use_sde=True): exploration is the backbone's own noise")
        if unsupported:
            raise TypeError(f"DenoiserPolicy got unsupported keyword arguments {sorted(unsupported)} "
                            "(there is no learned log_std, squashing or action network)")
        options = PolicyConfig(train_last_k=train_last_k, exploration_scale=exploration_scale, std_floor=std_floor,
                               log_prob_reduction=log_prob_reduction, denoiser_lr_scale=denoiser_lr_scale,
                               frozen=None if frozen is None else list(frozen))
        if backbone is None and checkpoint is None and backbone_spec is None:  # e.g. rl-zoo3, policy from a YAML file
            from refit_gym.envs.factory import env_backbone_for_spaces

            backbone, _ = env_backbone_for_spaces(observation_space, action_space)
        denoiser = resolve_backbone(backbone, checkpoint, backbone_spec)
        if inference_steps is not None:
            denoiser.set_inference_steps(inference_steps)
        check_denoising_spaces(observation_space, action_space, denoiser)

        if isinstance(net_arch, dict):
            net_arch = net_arch.get("vf")
        vf_arch = [int(h) for h in (self.VALUE_NET_ARCH if net_arch is None else net_arch)]
        for name, value in options.as_dict().items():  # exploration_scale, std_floor, log_prob_reduction, ...
            setattr(self, name, value)
        # The parent constructor builds the features extractor and calls self._build (value side
        # only, orthogonal init included); the denoiser is attached afterwards so that no generic
        # initialisation can ever reach the pretrained weights.
        super().__init__(
            observation_space, action_space, lr_schedule, net_arch=dict(pi=[], vf=vf_arch), activation_fn=activation_fn,
            ortho_init=ortho_init, use_sde=False, features_extractor_class=features_extractor_class,
            features_extractor_kwargs=features_extractor_kwargs, share_features_extractor=True,
            optimizer_class=optimizer_class, optimizer_kwargs=optimizer_kwargs,
        )
        self.denoiser = denoiser.to(self.device)
        self.denoiser.eval()
        freeze_parameters(self.denoiser, self.frozen)
        # Data-derived buffers (e.g. CF-Diff's graph) take the size of whatever state dict is loaded
        # (a policy rebuilt from backbone_spec starts with empty ones).
        self.denoiser.register_load_state_dict_pre_hook(load_state_resizing_data_tensors)
        self.action_dist = DenoiserGaussian(denoiser.action_dim, self.log_prob_reduction)
        self.optimizer = self.make_optimizer(lr_schedule(1))

    # ------------------------------------------------------------------ construction
    def _build(self, lr_schedule: Schedule) -> None:
        """Value side only: MLP + linear value output, SB3's orthogonal init on those modules."""
        self._build_mlp_extractor()
        self.value_net = nn.Linear(self.mlp_extractor.latent_dim_vf, 1)
        if self.ortho_init:
            for module, gain in ((self.features_extractor, np.sqrt(2)), (self.mlp_extractor, np.sqrt(2)), (self.value_net, 1.0)):
                module.apply(partial(self.init_weights, gain=gain))

    def value_parameters(self):
        """Parameters of the value head (features extractor, MLP, output layer)."""
        for module in (self.features_extractor, self.mlp_extractor, self.value_net):
            yield from module.parameters()

    def make_optimizer(self, lr: float) -> torch.optim.Optimizer:
        """Two parameter groups: the denoiser's trainable parameters (``lr_scale = denoiser_lr_scale``; not the
        ``frozen`` ones) and the value head."""
        cls = lr_scaled_optimizer_class(self.optimizer_class)
        trainable = [p for p in self.denoiser.parameters() if p.requires_grad]
        groups = [dict(params=trainable, lr_scale=self.denoiser_lr_scale, name="denoiser"),
                  dict(params=list(self.value_parameters()), lr_scale=1.0, name="value")]
        return cls(groups, lr=lr, **optimizer_kwargs(cls, groups, self.optimizer_kwargs))

    def _get_constructor_parameters(self) -> Dict[str, Any]:
        data = super()._get_constructor_parameters()
        for key in ("use_sde", "log_std_init", "squash_output", "full_std", "use_expln"):
            data.pop(key, None)
        data.update(
            net_arch=list(self.net_arch["vf"]), exploration_scale=self.exploration_scale, std_floor=self.std_floor,
            log_prob_reduction=self.log_prob_reduction, train_last_k=self.train_last_k,
            denoiser_lr_scale=self.denoiser_lr_scale,
            # The architecture only; the weights come from the saved state dict.
            backbone_spec=dict(backbone=self.denoiser.backbone_name, config=self.denoiser.config()),
        )
        return data

    def train(self, mode: bool = True) -> "DenoiserPolicy":
        """Like ``nn.Module.train`` but the denoiser stays in eval mode (no dropout), see module doc."""
        super().train(mode)
        if "denoiser" in self._modules:
            self.denoiser.eval()
        return self

    # ------------------------------------------------------------------ the actor
    @property
    def steps(self) -> int:
        """T, the number of reverse steps of an episode (the chain's: K when the schedule is respaced)."""
        return self.denoiser.schedule.chain_steps

    def step_std(self, t: torch.Tensor) -> torch.Tensor:
        """Exploration std ``(B, 1)`` at remaining-step counts ``t`` (B,) int64 in ``[1, T]``."""
        std = self.denoiser.schedule.reverse_std(t - 1) * self.exploration_scale
        return std.clamp_min(self.std_floor) if self.std_floor > 0 else std

    def active_mask(self, t: torch.Tensor) -> Optional[torch.Tensor]:
        """``(B,)`` bool: which steps are stochastic/trained (``t <= train_last_k``); None = all."""
        return None if self.train_last_k is None else t <= self.train_last_k

    def step_distribution(self, x: torch.Tensor, t: torch.Tensor, context: Any) -> DenoiserGaussian:
        """The action distribution from tensors: ``x`` (B, D), ``t`` (B,) int64 in ``[1, T]``, and the
        denoiser context (``self.denoiser.context(condition, users)``, computed once per trajectory by
        agents that roll out whole chains). Frozen steps (``t > train_last_k``) get a detached mean."""
        if t.numel() and (int(t.min()) < 1 or int(t.max()) > self.steps):
            raise ValueError(f"remaining steps t must be in [1, {self.steps}] (t=0 is terminal, no action): "
                             f"got {t.unique().tolist()[:8]}")
        mean, _ = self.denoiser.reverse_step(x, t - 1, context)
        active = self.active_mask(t)
        if active is not None:
            mean = mean.detach() if not bool(active.any()) else torch.where(active.unsqueeze(-1), mean, mean.detach())
        return DenoiserGaussian(self.denoiser.action_dim, self.log_prob_reduction).proba_distribution(
            mean, self.step_std(t), active)

    def get_distribution(self, obs: PyTorchObs) -> DenoiserGaussian:
        x, t, users, cond = unpack_obs(obs)
        return self.step_distribution(x, t, self.denoiser.context(cond, users))

    def _predict(self, observation: PyTorchObs, deterministic: bool = False) -> torch.Tensor:
        return self.get_distribution(observation).get_actions(deterministic=deterministic)

    def forward(self, obs: PyTorchObs, deterministic: bool = False) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Actions (B, D), values (B, 1) and log-probabilities (B,)."""
        distribution = self.get_distribution(obs)
        actions = distribution.get_actions(deterministic=deterministic)
        return actions, self.predict_values(obs), distribution.log_prob(actions)

    def evaluate_actions(self, obs: PyTorchObs, actions: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Values (B, 1), log-probabilities (B,) and entropies (B,) of ``actions`` (B, D)."""
        distribution = self.get_distribution(obs)
        return self.predict_values(obs), distribution.log_prob(actions), distribution.entropy()

    # ------------------------------------------------------------------ export
    def export_backbone(self, path: Union[str, Path], meta: Optional[Dict] = None) -> Path:
        """Write the (fine-tuned) denoiser as a plain backbone checkpoint that ``load_backbone`` and
        ``scripts/evaluate.py --checkpoint`` read."""
        return save_backbone(self.denoiser, path, meta)
