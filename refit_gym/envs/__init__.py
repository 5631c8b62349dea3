"""Gymnasium / SB3 environments of the denoising MDP, and their registration.

Ids (namespace ``refit_gym``), made with ``gymnasium.make(id, data=..., checkpoint=..., reward=...)``
or ``gymnasium.make_vec(id, num_envs=N, data=..., ...)`` (the vector entry point returns a
:class:`DenoisingVectorEnv` that steps all users as one tensor op; ``vectorization_mode="sync"``
also works and stacks single envs):

* ``refit_gym/DiffRec-v0`` -- a DiffRec backbone;
* ``refit_gym/CFDiff-v0`` -- a CF-Diff backbone;
* ``refit_gym/SocialDiffRec-v0`` -- social recommendation: a Social-DiffRec backbone on data with a
  social graph (the default ``"refit"`` reward then includes its social term);
* ``refit_gym/DreamRec-v0`` -- sequential recommendation: a DreamRec backbone on a SequentialData
  (``data=".../seq-beauty"``), default reward ``"refit-seq"`` (last item held out, transition neighbours);
* ``refit_gym/DreamRecPOI-v0`` -- POI recommendation: the time-aware DreamRec (``"dreamrec-poi"``) on
  timestamped sequences, default reward ``"refit-seq"``.

The defaults of each id (its backbone kind, default reward and synthetic default dataset) are in
:data:`ENV_SPECS` (from the identity table :data:`refit_gym.registry.ENVIRONMENTS`) and in the registered spec's ``kwargs`` (``gymnasium.spec(id).kwargs``); keywords override
them. ``gymnasium.make(id)`` alone works: it uses the synthetic default and a default backbone pretrained on it
once and cached (:mod:`refit_gym.envs.defaults`); other data need ``checkpoint=`` (or ``"untrained"``).
:mod:`refit_gym.scenarios` groups every id with its data loader, pretraining and evaluation.
See :mod:`refit_gym.envs.factory` for the keyword arguments. This module is light: entry points
are strings, and the environment classes (which import torch) are loaded on first attribute access.
"""
from __future__ import annotations

import importlib
from typing import Any

from refit_gym.registry import ENVIRONMENTS, MAKE_KEYS, DerivedTable, register_environment

#: id -> default keyword arguments of the entry points (``backbone``: the backbone kind; ``reward``; ``data``: the
#: synthetic default dataset, whose default backbone is pretrained and cached on first use, see
#: :mod:`refit_gym.envs.defaults`): the rows of :data:`refit_gym.registry.ENVIRONMENTS` without their scenario and
#: label (read-only, recomputed on every read: rows added later are in it).
ENV_SPECS = DerivedTable(lambda: {env_id: {k: row[k] for k in MAKE_KEYS} for env_id, row in ENVIRONMENTS.items()})
#: id -> backbone kind (what ``make_env`` / ``make_batched_env`` take as ``backbone``).
ENV_IDS = DerivedTable(lambda: {env_id: row["backbone"] for env_id, row in ENVIRONMENTS.items()})

_LAZY = {
    "DenoisingEnv": "refit_gym.envs.denoising",
    "BatchedDenoisingEnv": "refit_gym.envs.batched",
    "DenoisingVectorEnv": "refit_gym.envs.batched",
    "DenoisingProcess": "refit_gym.envs.core",
    "make_env": "refit_gym.envs.factory",
    "make_batched_env": "refit_gym.envs.factory",
    "make_vector_env": "refit_gym.envs.factory",
}


def register_envs() -> None:
    """Register every row of :data:`refit_gym.registry.ENVIRONMENTS` with gymnasium (idempotent), each through
    :func:`refit_gym.registry.register_environment` (the path of a row added at run time too)."""
    for env_id, row in list(ENVIRONMENTS.items()):
        register_environment(env_id, row)


def __getattr__(name: str) -> Any:  # PEP 562: import the torch-heavy classes on first use
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


register_envs()

__all__ = ["ENV_IDS", "ENV_SPECS", "register_envs", *_LAZY]
