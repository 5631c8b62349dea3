"""Builders behind the registered ``refit_gym/...`` ids (``gymnasium.make`` / ``gymnasium.make_vec``).

``gymnasium.make("refit_gym/DiffRec-v0", data=..., checkpoint=None, reward="refit", ...)``:

* ``data``: an :class:`~refit_gym.data.dataset.InteractionData`, a
  :class:`~refit_gym.data.sequential.SequentialData`, or a spec string / path for
  :func:`refit_gym.data.load_dataset` (a ``dataset.pkl`` folder loads as SequentialData). The
  backbone is built from the dataset as given (sequence backbones need the sequences), the
  environment runs on its :func:`~refit_gym.data.dataset.as_interactions` view, and the reward is
  built from the dataset as given (``"refit-seq"`` reads the item order).
* ``checkpoint``: a backbone checkpoint path (its backbone kind must match the id). When omitted,
  a *freshly initialised* backbone of the id's kind is built from the data with
  ``build_backbone(kind, data, **backbone_kwargs)`` (weights drawn under ``torch`` seed
  ``backbone_seed``, without touching the global RNG, and put in eval mode). This is meant for
  tests and benchmarks; fine-tuning starts from a pretrained checkpoint.
* the other keyword arguments as :class:`~refit_gym.envs.denoising.DenoisingEnv`.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Optional, Union

import torch

from refit_gym.data.dataset import InteractionData, as_interactions
from refit_gym.diffusion.adapters import DenoiserAdapter, build_backbone
from refit_gym.envs.batched import BatchedDenoisingEnv, DenoisingVectorEnv
from refit_gym.envs.core import DEFAULT_ACTION_BOUND
from refit_gym.envs.denoising import DenoisingEnv

if TYPE_CHECKING:
    from refit_gym.data.sequential import SequentialData


def resolve_data(data: Union[InteractionData, "SequentialData", str, Path]):
    """``data`` itself (an InteractionData or a dataset with an ``interactions()`` view, such as a
    SequentialData), or the dataset that ``refit_gym.data.load_dataset`` loads from a spec string or path."""
    if isinstance(data, (str, Path)):
        from refit_gym.data import load_dataset

        return load_dataset(data)
    try:
        as_interactions(data)
    except TypeError:
        raise TypeError(f"data must be an InteractionData, a SequentialData or a dataset spec string, "
                        f"got {type(data).__name__}") from None
    return data


def build_env_backbone(kind: str, data: InteractionData, checkpoint: Optional[Union[str, Path]] = None, device="cpu",
                       backbone_kwargs: Optional[Dict[str, Any]] = None, backbone_seed: int = 0) -> DenoiserAdapter:
    """The backbone of a registered id: loaded from ``checkpoint`` or freshly built (see the module docstring).

    ``data`` is passed to ``build_backbone`` as given (``from_data`` of sequence backbones reads the
    sequences); the checkpoint is checked against its sizes."""
    if checkpoint is not None:
        if backbone_kwargs:
            raise ValueError(f"backbone_kwargs {sorted(backbone_kwargs)} cannot be applied to a loaded checkpoint ({checkpoint})")
        from refit_gym.diffusion.checkpoint import CheckpointError, load_backbone

        adapter, _ = load_backbone(checkpoint, data=data, device=device)
        if adapter.backbone_name != kind:
            raise CheckpointError(f"{checkpoint}: field 'backbone' is {adapter.backbone_name!r}, but this environment id "
                                  f"expects a {kind!r} backbone")
        return adapter
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(backbone_seed))
        adapter = build_backbone(kind, data, **dict(backbone_kwargs or {}))
    return adapter.to(device).eval()


def make_env(backbone: str, data: Union[InteractionData, str, Path], checkpoint: Optional[Union[str, Path]] = None,
             reward: Any = "refit", device="cpu", reward_kwargs: Optional[Dict] = None,
             backbone_kwargs: Optional[Dict] = None, backbone_seed: int = 0,
             action_bound: float = DEFAULT_ACTION_BOUND, render_mode: Optional[str] = None) -> DenoisingEnv:
    """Entry point of the registered ids: a :class:`DenoisingEnv` (``backbone`` is the id's kind)."""
    data = resolve_data(data)
    adapter = build_env_backbone(backbone, data, checkpoint, device, backbone_kwargs, backbone_seed)
    return DenoisingEnv(data, adapter, reward, device, reward_kwargs, action_bound, render_mode)


def make_batched_env(backbone: str, data: Union[InteractionData, str, Path], n_envs: int = 1,
                     checkpoint: Optional[Union[str, Path]] = None, reward: Any = "refit", device="cpu",
                     reward_kwargs: Optional[Dict] = None, backbone_kwargs: Optional[Dict] = None,
                     backbone_seed: int = 0, action_bound: float = DEFAULT_ACTION_BOUND,
                     seed: Optional[int] = None) -> BatchedDenoisingEnv:
    """An SB3 :class:`BatchedDenoisingEnv` built like :func:`make_env`."""
    data = resolve_data(data)
    adapter = build_env_backbone(backbone, data, checkpoint, device, backbone_kwargs, backbone_seed)
    return BatchedDenoisingEnv(data, adapter, n_envs, reward, device, reward_kwargs, action_bound, seed)


def make_vector_env(backbone: str, data: Union[InteractionData, str, Path], num_envs: int = 1,
                    checkpoint: Optional[Union[str, Path]] = None, reward: Any = "refit", device="cpu",
                    reward_kwargs: Optional[Dict] = None, backbone_kwargs: Optional[Dict] = None,
                    backbone_seed: int = 0, action_bound: float = DEFAULT_ACTION_BOUND,
                    render_mode: Optional[str] = None) -> DenoisingVectorEnv:
    """Vector entry point of the registered ids: a gymnasium :class:`DenoisingVectorEnv`."""
    if render_mode is not None:
        raise ValueError(f"render_mode={render_mode!r}: this environment renders nothing; use None")
    data = resolve_data(data)
    adapter = build_env_backbone(backbone, data, checkpoint, device, backbone_kwargs, backbone_seed)
    return DenoisingVectorEnv(data, adapter, num_envs, reward, device, reward_kwargs, action_bound)
