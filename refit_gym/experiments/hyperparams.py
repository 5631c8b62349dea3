"""rl-zoo3-format hyperparameters of a fine-tuning run: the shipped defaults, overrides, and their parsing.

The defaults are ``agents/hyperparams/<algo>.yml`` (:data:`agents.HYPERPARAMS_DIR`, also rl-zoo3's
``--conf-file``), one section per environment id, updated by an override (a YAML file with the same layout, or
a dict of one environment's settings). ``n_timesteps``, ``n_envs``, ``policy``, ``reward`` and ``reward_kwargs``
are run-level settings (:data:`ZOO_KEYS`); ``policy_kwargs`` is a dict or a ``"dict(...)"`` string of literals;
learning rates and clip ranges are numbers or ``"lin_<value>"``; everything else is a keyword argument of the
algorithm's constructor (:func:`split_hyperparams`).
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Any, Dict, Tuple, Union

import yaml

from agents import HYPERPARAMS_DIR

#: settings of the run rather than of the algorithm (``reward_kwargs`` go to the reward's constructor)
ZOO_KEYS = ("n_timesteps", "n_envs", "policy", "reward", "reward_kwargs")
UNSUPPORTED_ZOO_KEYS = ("normalize", "frame_stack", "env_wrapper", "callback", "vec_env_wrapper")

HyperparamsLike = Union[None, str, Path, Dict[str, Any]]


class FinetuneError(ValueError):
    """Bad fine-tuning input (unknown environment, missing file, unsupported hyperparameter, ...)."""


def parse_policy_kwargs(value: Any) -> Dict[str, Any]:
    """rl-zoo's ``policy_kwargs``: a dict, or a string ``"dict(a=1, b=[2, 3])"`` / ``"{'a': 1}"`` of literals
    (parsed with ``ast``, never ``eval``)."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return dict(value)
    if not isinstance(value, str):
        raise ValueError(f"policy_kwargs must be a dict or a string, got {type(value).__name__}")
    node = ast.parse(value.strip(), mode="eval").body
    try:
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" and not node.args:
            return {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords}
        out = ast.literal_eval(node)
    except ValueError as e:
        raise ValueError(f"policy_kwargs {value!r}: only literal values are supported ({e})") from None
    if not isinstance(out, dict):
        raise ValueError(f"policy_kwargs {value!r} is not a dict")
    return out


def parse_schedule(value: Any) -> Any:
    """``"lin_<v>"`` -> a linear schedule from v to 0 (rl-zoo's convention); numbers as floats.

    The schedule is SB3's ``LinearSchedule`` object (not a closure), so a saved agent stores a plain
    class reference that :mod:`refit_gym.io_safety` can load without unpickling code."""
    from stable_baselines3.common.utils import LinearSchedule

    if isinstance(value, str) and value.startswith("lin_"):
        return LinearSchedule(float(value[4:]), 0.0, 1.0)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def load_hyperparams(algo: str, env_id: str, override: HyperparamsLike = None) -> Dict[str, Any]:
    """Defaults of ``agents/hyperparams/<algo>.yml`` for ``env_id``, updated by ``override``.

    Args:
        algo: an ``agents.ALGOS`` name.
        env_id: the section of the YAML files to read.
        override: None; a YAML file in rl-zoo's format (it must have a section for ``env_id``); or a dict of
            settings for ``env_id`` itself (no environment-id level).
    Raises:
        FinetuneError: the override file is missing or has no section for ``env_id``.
    """
    def section(path: Path, required: bool) -> Dict[str, Any]:
        try:
            blob = yaml.safe_load(path.read_text()) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise FinetuneError(f"hyperparameter file {path}: not valid YAML ({e})") from None
        if not isinstance(blob, dict) or not isinstance(blob.get(env_id, {}), (dict, type(None))):
            raise FinetuneError(f"hyperparameter file {path}: expected a mapping of environment ids to settings")
        if env_id not in blob:
            if required:
                raise FinetuneError(f"{path} has no section for environment {env_id!r} (sections: {sorted(blob)})")
            return {}
        return dict(blob[env_id] or {})

    defaults = HYPERPARAMS_DIR / f"{algo}.yml"
    params = section(defaults, required=False) if defaults.is_file() else {}
    if isinstance(override, dict):
        params.update(override)
    elif override is not None:
        override = Path(override)
        if not override.is_file():
            raise FinetuneError(f"hyperparameter file {override}: no such file")
        params.update(section(override, required=True))
    return params


def split_hyperparams(params: Dict[str, Any]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """(zoo-level settings, algorithm keyword arguments) with policy_kwargs and schedules parsed."""
    zoo = {k: params[k] for k in ZOO_KEYS if k in params}
    kwargs = {k: v for k, v in params.items() if k not in ZOO_KEYS}
    for unsupported in UNSUPPORTED_ZOO_KEYS:
        if unsupported in kwargs:
            raise FinetuneError(f"hyperparameter {unsupported!r} is not supported by refit-gym's fine-tuning")
    kwargs["policy_kwargs"] = parse_policy_kwargs(kwargs.get("policy_kwargs"))
    for key in ("learning_rate", "clip_range"):
        if key in kwargs:
            kwargs[key] = parse_schedule(kwargs[key])
    return zoo, kwargs


__all__ = ["FinetuneError", "HYPERPARAMS_DIR", "HyperparamsLike", "UNSUPPORTED_ZOO_KEYS", "ZOO_KEYS",
           "load_hyperparams", "parse_policy_kwargs", "parse_schedule", "split_hyperparams"]
