"""rl-zoo3-format hyperparameters of a fine-tuning run: the shipped defaults, overrides, their checks and parsing.

The defaults are ``agents/hyperparams/<algo>.yml`` (:data:`agents.HYPERPARAMS_DIR`, also rl-zoo3's
``--conf-file``), one section per environment id, updated by an override (a YAML file with the same layout, or
a dict of one environment's settings). ``n_timesteps``, ``n_envs``, ``policy``, ``reward`` and ``reward_kwargs``
are run-level settings (:class:`RunConfig`, :data:`ZOO_KEYS`); everything else is a keyword argument of the
algorithm's constructor: a field of its ``config_class`` for the chain algorithms (:class:`agents.ReFiTConfig`,
...), a parameter of SB3's constructor for PPO and A2C (:func:`algorithm_defaults`). ``policy_kwargs`` is a dict or
a ``"dict(...)"`` string of literals; learning rates and clip ranges are numbers or ``"lin_<value>"``.

:func:`load_hyperparams` refuses, with a :class:`FinetuneError` naming the file (or the dict's source), the
environment id and the key, an unknown key (listing the known ones), a value of the wrong type and an invalid
value; :func:`resolve_hyperparams` fills in every default (the configuration as used, which a run records);
:func:`split_hyperparams` parses it into the run's settings and the constructor's keyword arguments.
"""
from __future__ import annotations

import ast
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import yaml

from agents import HYPERPARAMS_DIR
from agents.config import Config, ConfigTypeError, unknown_key_message


@dataclass
class RunConfig(Config):
    """The run-level settings of a hyperparameter section (not the algorithm's)."""

    n_timesteps: int = 100_000
    """environment steps of the run"""
    n_envs: int = 16
    """environments (chains) per rollout"""
    policy: Union[str, type] = "DenoiserPolicy"
    """PPO/A2C's policy: "DenoiserPolicy" or a dotted class name (chain algorithms wrap the checkpoint)"""
    reward: Optional[str] = None
    """the terminal reward (None: the environment id's, refit_gym.registry)"""
    reward_kwargs: Optional[Dict[str, Any]] = None
    """keyword arguments of the reward's constructor"""


#: settings of the run rather than of the algorithm (``reward_kwargs`` go to the reward's constructor)
ZOO_KEYS = RunConfig.keys()
#: constructor arguments that :func:`~refit_gym.experiments.finetune.finetune` sets itself (never hyperparameters)
RUN_ARGUMENTS = ("policy", "env", "seed", "device", "tensorboard_log", "verbose", "_init_setup_model")
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


def algorithm_defaults(algo: str) -> Dict[str, Any]:
    """``{hyperparameter: default}`` of ``agents.ALGOS[algo]``: its ``config_class``'s fields (chain algorithms) or
    its constructor's keyword parameters (SB3's PPO and A2C, whose own defaults are kept), without
    :data:`RUN_ARGUMENTS`."""
    from agents import ALGOS

    cls = ALGOS[algo]
    config_class = getattr(cls, "config_class", None)
    if config_class is not None:
        return config_class.defaults()
    return {name: p.default for name, p in inspect.signature(cls).parameters.items()
            if name not in RUN_ARGUMENTS and p.default is not inspect.Parameter.empty}


def check_hyperparams(algo: str, env_id: str, params: Dict[str, Any], origin: Dict[str, str],
                      values: bool = True) -> None:
    """FinetuneError for an unsupported or unknown key, a value of the wrong type or (with ``values``, for complete
    settings) an invalid value or combination in ``params`` (one environment's settings), naming where the key came
    from (``origin``: key -> file or source), ``env_id`` and the key (and the known keys). Types and values are
    checked for the run settings and the chain algorithms' configurations; only the keys for SB3's algorithms."""
    from agents import ALGOS

    def fail(message: str, keys) -> FinetuneError:
        where = " + ".join(dict.fromkeys(origin.get(k, "hyperparameters") for k in keys)) or "hyperparameters"
        return FinetuneError(f"{where}: environment {env_id!r}: {message}")

    known = tuple(algorithm_defaults(algo))
    for key in params:
        if key in UNSUPPORTED_ZOO_KEYS:
            raise fail(f"hyperparameter {key!r} is not supported by refit-gym's fine-tuning", [key])
        if key not in ZOO_KEYS and key not in known:
            raise fail(f"{algo}: {unknown_key_message(key, known + ZOO_KEYS)}", [key])
    config_class = getattr(ALGOS[algo], "config_class", None)
    try:
        zoo, kwargs = _parse(params)
        RunConfig.build(None, zoo)
        if config_class is not None and values:
            config_class.build(None, kwargs)
        elif config_class is not None:
            config_class.typed(kwargs)
    except ConfigTypeError as e:
        raise fail(str(e), [e.key]) from None
    except ValueError as e:  # an invalid value or combination
        raise fail(f"{config_class.__name__ if config_class else algo}: {e}", list(params)) from None


def load_hyperparams(algo: str, env_id: str, override: HyperparamsLike = None,
                     source: Optional[str] = None, reward: Any = None) -> Dict[str, Any]:
    """Defaults of ``agents/hyperparams/<algo>.yml`` for ``env_id``, updated by ``override``, checked
    (:func:`check_hyperparams`).

    The defaults file's ``reward_kwargs`` configure the defaults' reward (their ``reward``, else ``env_id``'s
    registered one): when the run scores another reward (``reward``, or the override's ``reward``) and the
    override sets no ``reward_kwargs`` of its own, they are left out, as they belong to a reward that does not run.

    Args:
        algo: an ``agents.ALGOS`` name.
        env_id: the section of the YAML files to read.
        override: None; a YAML file in rl-zoo's format (it must have a section for ``env_id``); or a dict of
            settings for ``env_id`` itself (no environment-id level).
        source: how errors name a dict ``override`` (e.g. ``"ladder recipe, rung 'refit'"``).
        reward: the reward the run scores when the caller chooses it (a name or a built reward; None: the
            settings').
    Returns: the settings as written (defaults not filled in: :func:`resolve_hyperparams`).
    Raises:
        FinetuneError: the override file is missing or has no section for ``env_id``; a key is unknown, of the
            wrong type or invalid.
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

    params: Dict[str, Any] = {}
    origin: Dict[str, str] = {}

    def add(settings: Dict[str, Any], where: str) -> None:
        # keys and types, named by their own source (values: once merged, below)
        check_hyperparams(algo, env_id, settings, dict.fromkeys(settings, where), values=False)
        params.update(settings)
        origin.update(dict.fromkeys(settings, where))

    from refit_gym.registry import environment

    defaults = HYPERPARAMS_DIR / f"{algo}.yml"
    if defaults.is_file():
        add(section(defaults, required=False), str(defaults))
    default_reward = params.get("reward", environment(env_id)["reward"])
    if isinstance(override, dict):
        add(dict(override), source or "hyperparameters (a dict)")
    elif override is not None:
        override = Path(override)
        if not override.is_file():
            raise FinetuneError(f"hyperparameter file {override}: no such file")
        add(section(override, required=True), source or str(override))
    run_reward = params.get("reward", default_reward) if reward is None else reward
    if origin.get("reward_kwargs") == str(defaults) and not (isinstance(run_reward, str) and run_reward == default_reward):
        del params["reward_kwargs"]  # the defaults' reward_kwargs belong to the defaults' reward
    check_hyperparams(algo, env_id, params, origin)  # combinations across the sources
    return params


def resolve_hyperparams(algo: str, env_id: str, params: Dict[str, Any]) -> Dict[str, Any]:
    """The complete settings of a run, as YAML values: :class:`RunConfig`'s defaults (the reward: ``env_id``'s
    registry row), :func:`algorithm_defaults`, then ``params``."""
    from refit_gym.registry import environment

    return {**RunConfig.defaults(), "reward": environment(env_id)["reward"], **algorithm_defaults(algo), **params}


def _parse(params: Dict[str, Any]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """(run settings, algorithm keyword arguments) as given, with policy_kwargs and schedules parsed
    (:class:`ConfigTypeError` naming the key when one does not parse)."""
    zoo = {k: params[k] for k in ZOO_KEYS if k in params}
    kwargs = {k: v for k, v in params.items() if k not in ZOO_KEYS}
    for key, parse in (("policy_kwargs", parse_policy_kwargs), ("learning_rate", parse_schedule),
                       ("clip_range", parse_schedule)):
        if key in kwargs:
            try:
                kwargs[key] = parse(kwargs[key])
            except (ValueError, SyntaxError) as e:
                raise ConfigTypeError(str(e) if key == "policy_kwargs" else f"{key}={kwargs[key]!r}: {e}", key) from None
    return zoo, kwargs


def split_hyperparams(params: Dict[str, Any]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """(run settings, :class:`RunConfig`'s defaults filled in; algorithm keyword arguments) with
    ``policy_kwargs`` (always a dict) and schedules parsed."""
    for unsupported in UNSUPPORTED_ZOO_KEYS:
        if unsupported in params:
            raise FinetuneError(f"hyperparameter {unsupported!r} is not supported by refit-gym's fine-tuning")
    zoo, kwargs = _parse(params)
    kwargs["policy_kwargs"] = parse_policy_kwargs(kwargs.get("policy_kwargs"))
    return RunConfig.build(None, zoo).as_dict(), kwargs


__all__ = ["FinetuneError", "HYPERPARAMS_DIR", "HyperparamsLike", "RUN_ARGUMENTS", "RunConfig", "UNSUPPORTED_ZOO_KEYS",
           "ZOO_KEYS", "algorithm_defaults", "check_hyperparams", "load_hyperparams", "parse_policy_kwargs",
           "parse_schedule", "resolve_hyperparams", "split_hyperparams"]
