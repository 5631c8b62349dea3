"""Gymnasium / SB3 environments of the denoising MDP, and their registration.

Ids (namespace ``refit_gym``), made with ``gymnasium.make(id, data=..., checkpoint=..., reward=...)``
or ``gymnasium.make_vec(id, num_envs=N, data=..., ...)`` (the vector entry point returns a
:class:`DenoisingVectorEnv` that steps all users as one tensor op; ``vectorization_mode="sync"``
also works and stacks single envs):

* ``refit_gym/DiffRec-v0`` -- a DiffRec backbone;
* ``refit_gym/CFDiff-v0`` -- a CF-Diff backbone.

See :mod:`refit_gym.envs.factory` for the keyword arguments. This module is light: entry points
are strings, and the environment classes (which import torch) are loaded on first attribute access.
"""
from __future__ import annotations

import importlib
from typing import Any

import gymnasium

ENV_IDS = {"refit_gym/DiffRec-v0": "diffrec", "refit_gym/CFDiff-v0": "cfdiff"}

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
    """Register the ``refit_gym/...`` ids with gymnasium (idempotent)."""
    for env_id, kind in ENV_IDS.items():
        if env_id in gymnasium.registry:
            continue
        gymnasium.register(
            id=env_id,
            entry_point="refit_gym.envs.factory:make_env",
            vector_entry_point="refit_gym.envs.factory:make_vector_env",
            kwargs={"backbone": kind},
        )


def __getattr__(name: str) -> Any:  # PEP 562: import the torch-heavy classes on first use
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


register_envs()

__all__ = ["ENV_IDS", "register_envs", *_LAZY]
