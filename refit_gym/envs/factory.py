"""Builders behind the registered ``refit_gym/...`` ids (``gymnasium.make`` / ``gymnasium.make_vec``).

``gymnasium.make("refit_gym/DiffRec-v0", data="synthetic", checkpoint=None, reward="refit", ...)``:

* ``data``: an :class:`~refit_gym.data.dataset.InteractionData`, a
  :class:`~refit_gym.data.sequential.SequentialData`, or a spec string / path for
  :func:`refit_gym.data.load_dataset`; default: the id's synthetic dataset (``ENV_SPECS[id]["data"]``).
  The backbone is built from the dataset as given (sequence backbones need the sequences), the
  environment runs on its :func:`~refit_gym.data.dataset.as_interactions` view, and the reward is
  built from the dataset as given (``"refit-seq"`` reads the item order).
* ``checkpoint``: a backbone checkpoint path (its backbone kind must match the id); ``None`` (default):
  the cached default backbone on a synthetic spec string, a CheckpointError on other data (the rule is
  :mod:`refit_gym.envs.defaults`); ``"untrained"``: a *freshly initialised* backbone built with
  ``build_backbone(kind, data, **backbone_kwargs)`` (weights drawn under ``torch`` seed ``backbone_seed``,
  without touching the global RNG, eval mode) -- for tests and speed benchmarks only.
* ``inference_steps``: K, the reverse steps of an episode: the backbone's chain respaced to K evenly spaced steps
  of its T training steps (:meth:`~refit_gym.diffusion.adapters.DenoiserAdapter.set_inference_steps`; K in
  ``[1, T]``); None (default): the checkpoint's own (``schedule.inference_steps``, all T when it records none).
* ``reward``: None (default): the reward of the id's row in :data:`refit_gym.registry.ENVIRONMENTS` (the row
  whose backbone kind is ``backbone``; ``gymnasium.make`` passes it from the registered spec).
* the other keyword arguments as :class:`~refit_gym.envs.denoising.DenoisingEnv`.

One shared backbone and dataset: environments made in one process from the same data *spec string* (the way
``gymnasium.make``, ``make_vec_env`` and rl-zoo3 pass it), checkpoint, device and backbone arguments share one
dataset object and one backbone module (``make_vec_env`` with 16 environments loads the checkpoint once).
Environments only read the backbone under ``torch.no_grad``, so sharing is safe; the shared objects live as long
as an environment holds them (weak references). Environments made from a dataset *object* (what
``refit_gym.experiments.finetune`` and the benchmark pass) get their own backbone, so a trainer may update it in place without
reaching another environment.
:func:`env_backbone_for_spaces` finds the backbone of the environments alive in this process, which is how
a :class:`~agents.DenoiserPolicy` built from a YAML file (rl-zoo3) reaches it.
"""
from __future__ import annotations

import gc
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple, Union

import torch

from refit_gym.data.dataset import InteractionData, as_interactions
from refit_gym.diffusion.adapters import DenoiserAdapter, build_backbone
from refit_gym.envs.batched import BatchedDenoisingEnv, DenoisingVectorEnv
from refit_gym.envs.core import DEFAULT_ACTION_BOUND, check_denoising_spaces
from refit_gym.envs.defaults import (DEFAULT_BACKBONE_SEED, UNTRAINED, default_checkpoint, is_synthetic_spec,
                                     no_checkpoint_error)
from refit_gym.envs.denoising import DenoisingEnv
from refit_gym.registry import REWARD_OF_BACKBONE

if TYPE_CHECKING:
    from refit_gym.data.sequential import SequentialData

#: spec key -> weak reference to the loaded dataset
_SHARED_DATA: "weakref.WeakValueDictionary[str, Any]" = weakref.WeakValueDictionary()
#: backbone key -> (weak reference to the adapter, a description)
_SHARED_BACKBONES: Dict[Tuple, Tuple[weakref.ref, str]] = {}


def _spec_key(spec: Union[str, Path]) -> str:
    return spec if is_synthetic_spec(spec) else str(Path(spec).resolve())


def resolve_data(data: Union[InteractionData, "SequentialData", str, Path]):
    """``data`` itself (an InteractionData or a dataset with an ``interactions()`` view, such as a
    SequentialData), or the dataset that ``refit_gym.data.load_dataset`` loads from a spec string or path
    (loaded once per process while an environment holds it)."""
    if isinstance(data, (str, Path)):
        key = _spec_key(data)
        loaded = _SHARED_DATA.get(key)
        if loaded is None:
            from refit_gym.data import load_dataset

            loaded = load_dataset(data)
            _SHARED_DATA[key] = loaded
        return loaded
    try:
        as_interactions(data)
    except TypeError:
        raise TypeError(f"data must be an InteractionData, a SequentialData or a dataset spec string, "
                        f"got {type(data).__name__}") from None
    return data


def _load_or_build(kind: str, data, checkpoint, device, backbone_kwargs, backbone_seed,
                   inference_steps: Optional[int] = None) -> DenoiserAdapter:
    if checkpoint != UNTRAINED:
        from refit_gym.diffusion.checkpoint import CheckpointError, load_backbone

        adapter, _ = load_backbone(checkpoint, data=data, device=device)
        if adapter.backbone_name != kind:
            raise CheckpointError(f"{checkpoint}: field 'backbone' is {adapter.backbone_name!r}, but this environment id "
                                  f"expects a {kind!r} backbone")
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(backbone_seed))
            adapter = build_backbone(kind, data, **dict(backbone_kwargs or {}))
        adapter = adapter.to(device).eval()
    return adapter if inference_steps is None else adapter.set_inference_steps(inference_steps)


def build_env_backbone(kind: str, data, checkpoint: Optional[Union[str, Path]] = None, device="cpu",
                       backbone_kwargs: Optional[Dict[str, Any]] = None, backbone_seed: int = DEFAULT_BACKBONE_SEED,
                       data_spec: Optional[Union[str, Path]] = None,
                       inference_steps: Optional[int] = None) -> DenoiserAdapter:
    """The backbone of a registered id (see the module docstring for ``checkpoint`` and ``inference_steps``),
    shared between calls.

    Args:
        kind: the id's backbone kind.
        data: the loaded dataset, passed to ``build_backbone`` as given (``from_data`` of sequence backbones
            reads the sequences); a checkpoint is checked against its sizes.
        data_spec: the spec string ``data`` was loaded from (None when the caller passed a dataset object):
            decides whether ``checkpoint=None`` has a default and whether the backbone is shared.
    Raises:
        CheckpointError: ``checkpoint=None`` on data without a default backbone, or a checkpoint that does not fit.
        ValueError: ``backbone_kwargs`` without ``checkpoint="untrained"``.
    """
    if backbone_kwargs and checkpoint != UNTRAINED:
        raise ValueError(f"backbone_kwargs {sorted(backbone_kwargs)} only apply to checkpoint='{UNTRAINED}' (a freshly "
                         f"initialised backbone), not to checkpoint={str(checkpoint) if checkpoint else None!r}")
    if checkpoint is None:
        if data_spec is None or not is_synthetic_spec(data_spec):
            raise no_checkpoint_error(kind, data_spec if data_spec is not None else data)
        checkpoint = default_checkpoint(kind, data_spec, data)
    ckpt_key = checkpoint if checkpoint == UNTRAINED else str(Path(checkpoint).resolve())
    if ckpt_key != UNTRAINED and Path(ckpt_key).is_file():
        ckpt_key = (ckpt_key, Path(ckpt_key).stat().st_mtime_ns)
    if data_spec is None:  # a dataset object: the caller owns it, and gets its own backbone
        return _load_or_build(kind, data, checkpoint, device, backbone_kwargs, backbone_seed, inference_steps)
    key = (kind, _spec_key(data_spec), ckpt_key, str(torch.device(device)),
           repr(sorted((backbone_kwargs or {}).items())), int(backbone_seed), inference_steps)
    entry = _SHARED_BACKBONES.get(key)
    if entry is not None and entry[0]() is not None:
        return entry[0]()
    adapter = _load_or_build(kind, data, checkpoint, device, backbone_kwargs, backbone_seed, inference_steps)
    _SHARED_BACKBONES[key] = (weakref.ref(adapter, lambda _, k=key: _SHARED_BACKBONES.pop(k, None)),
                              f"{kind} on {data_spec!s} from {checkpoint!s}")
    return adapter


def env_backbone_for_spaces(observation_space, action_space) -> Tuple[DenoiserAdapter, str]:
    """``(backbone, description)`` of the refit-gym environments alive in this process whose spaces these are.

    Exactly one distinct backbone must match (:func:`~refit_gym.envs.core.check_denoising_spaces`); otherwise a
    ValueError lists what was found, so a policy never picks one of several backbones silently.
    """
    gc.collect()  # environments dropped in reference cycles release their backbones
    found: List[Tuple[DenoiserAdapter, str]] = []
    for ref, desc in list(_SHARED_BACKBONES.values()):
        adapter = ref()
        if adapter is None or any(adapter is a for a, _ in found):
            continue
        try:
            check_denoising_spaces(observation_space, action_space, adapter)
        except ValueError:
            continue
        found.append((adapter, desc))
    if len(found) != 1:
        raise ValueError(f"DenoiserPolicy without backbone/checkpoint/backbone_spec uses the backbone of the refit-gym "
                         f"environment built in this process, but {len(found)} fit these spaces"
                         + (f" ({'; '.join(d for _, d in found)})" if found else "")
                         + "; pass policy_kwargs checkpoint=PATH or backbone=ADAPTER")
    return found[0]


def check_env_data(kind: str, data) -> None:
    """DataError when a ``kind`` backbone cannot run on ``data``: sequence backbones need a SequentialData (the
    POI one with timestamps), the social one a social graph. The message names the id's synthetic dataset."""
    from refit_gym.data.dataset import DataError
    from refit_gym.envs import ENV_SPECS
    from refit_gym.scenarios import scenario_for

    scenario = scenario_for(kind)
    if not (scenario.sequential or scenario.needs_social or scenario.needs_time):
        return  # history backbones run on any dataset's interactions() view
    try:
        scenario.check_data(data)
    except DataError as e:
        spec = next((v["data"] for v in ENV_SPECS.values() if v["backbone"] == kind), None)
        raise DataError(f"{e}. A {kind} environment needs such data; its synthetic one is data={spec!r}") from None


def _build(backbone, data, checkpoint, device, backbone_kwargs, backbone_seed, reward, inference_steps=None):
    """(dataset, backbone, reward: ``reward``, or the registry's for the ``backbone`` kind when None)."""
    spec = data if isinstance(data, (str, Path)) else None
    data = resolve_data(data)
    check_env_data(backbone, data)
    reward = REWARD_OF_BACKBONE[backbone] if reward is None else reward
    return data, build_env_backbone(backbone, data, checkpoint, device, backbone_kwargs, backbone_seed, spec,
                                    inference_steps), reward


def make_env(backbone: str, data: Union[InteractionData, str, Path], checkpoint: Optional[Union[str, Path]] = None,
             reward: Any = None, device="cpu", reward_kwargs: Optional[Dict] = None,
             backbone_kwargs: Optional[Dict] = None, backbone_seed: int = DEFAULT_BACKBONE_SEED,
             action_bound: float = DEFAULT_ACTION_BOUND, render_mode: Optional[str] = None,
             inference_steps: Optional[int] = None) -> DenoisingEnv:
    """Entry point of the registered ids: a :class:`DenoisingEnv` (``backbone`` is the id's kind; ``render_mode``
    None, ``"ansi"``, ``"human"`` or ``"rgb_array"``, see :meth:`DenoisingEnv.render`)."""
    data, adapter, reward = _build(backbone, data, checkpoint, device, backbone_kwargs, backbone_seed, reward,
                                   inference_steps)
    return DenoisingEnv(data, adapter, reward, device, reward_kwargs, action_bound, render_mode)


def make_batched_env(backbone: str, data: Union[InteractionData, str, Path], n_envs: int = 1,
                     checkpoint: Optional[Union[str, Path]] = None, reward: Any = None, device="cpu",
                     reward_kwargs: Optional[Dict] = None, backbone_kwargs: Optional[Dict] = None,
                     backbone_seed: int = DEFAULT_BACKBONE_SEED, action_bound: float = DEFAULT_ACTION_BOUND,
                     seed: Optional[int] = None, inference_steps: Optional[int] = None) -> BatchedDenoisingEnv:
    """An SB3 :class:`BatchedDenoisingEnv` built like :func:`make_env`."""
    data, adapter, reward = _build(backbone, data, checkpoint, device, backbone_kwargs, backbone_seed, reward,
                                   inference_steps)
    return BatchedDenoisingEnv(data, adapter, n_envs, reward, device, reward_kwargs, action_bound, seed)


def make_vector_env(backbone: str, data: Union[InteractionData, str, Path], num_envs: int = 1,
                    checkpoint: Optional[Union[str, Path]] = None, reward: Any = None, device="cpu",
                    reward_kwargs: Optional[Dict] = None, backbone_kwargs: Optional[Dict] = None,
                    backbone_seed: int = DEFAULT_BACKBONE_SEED, action_bound: float = DEFAULT_ACTION_BOUND,
                    render_mode: Optional[str] = None, inference_steps: Optional[int] = None) -> DenoisingVectorEnv:
    """Vector entry point of the registered ids: a gymnasium :class:`DenoisingVectorEnv`."""
    if render_mode is not None:
        raise ValueError(f"render_mode={render_mode!r}: the vector environment renders nothing; use None "
                         "(or vectorization_mode='sync', whose single environments render)")
    data, adapter, reward = _build(backbone, data, checkpoint, device, backbone_kwargs, backbone_seed, reward,
                                   inference_steps)
    return DenoisingVectorEnv(data, adapter, num_envs, reward, device, reward_kwargs, action_bound)
