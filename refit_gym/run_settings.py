"""``train --resume`` without repeating flags: the run's settings are saved in ``OUT/run.json`` and read back.

A fresh ``refit-gym train`` writes ``OUT/run.json``: the settings that define the run (:data:`RUN_KEYS`: algorithm,
environment, data and its sequence protocol (``--protocol``, ``--split-seed``), the backbone checkpoint it started from -- also one it pretrained itself --, reward,
hyperparameter file and its resolved contents, seed, selection metric, the chain's ``--inference-steps``) and the
ones that may change between sessions (:data:`SESSION_KEYS`: ``n_timesteps``, ``eval_freq``, ``save_freq``, ``tensorboard_log``).

With ``--resume`` and that file present, every flag that was not given takes the saved value. A flag that was given
must agree with a run-defining setting, else the resume is refused naming the flag (changing the data or the reward
halfway would make ``metrics.json`` describe no single run); session settings given on the command line apply and
are recorded. The hyperparameters are compared by value (the override file's contents, resolved with the defaults):
a change is refused naming the keys, except ``n_timesteps`` (``-n``), which extends or shortens the run.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

RUN_FILE = "run.json"
RUN_KEYS = ("algo", "env", "data", "protocol", "split_seed", "checkpoint", "reward", "hyperparams", "seed", "select_metric",
            "inference_steps")
SESSION_KEYS = ("n_timesteps", "eval_freq", "save_freq", "tensorboard_log")


def given_flags(build_parser: Callable[[], argparse.ArgumentParser], argv: Optional[Sequence[str]]) -> List[str]:
    """Destinations of the options present in ``argv``: ``argv`` parsed again by a fresh ``build_parser()``
    whose defaults are all None."""
    probe = build_parser()
    probe.set_defaults(**{a.dest: None for a in probe._actions if a.dest != "help"})
    return [k for k, v in vars(probe.parse_args(list(argv or []))).items() if v is not None]


def _jsonable(value: Any) -> Any:
    return str(value) if isinstance(value, Path) else value


def apply_saved_run(args: argparse.Namespace, given: Sequence[str], out: Path) -> Dict[str, Any]:
    """On ``--resume``: fill ``args`` from ``out/run.json`` (see the module docstring); returns the saved record
    (empty when the file is absent: a first session). Raises SystemExit naming a conflicting flag."""
    path = Path(out) / RUN_FILE
    if not path.is_file():
        return {}
    saved = json.loads(path.read_text())
    for key in RUN_KEYS + SESSION_KEYS:
        if key not in saved:
            continue
        if key in given and key in RUN_KEYS and key != "checkpoint" and _jsonable(getattr(args, key)) != saved[key]:
            flag = "--" + key.replace("_", "-")
            raise SystemExit(f"error: --resume: {flag} {getattr(args, key)} differs from this run's {saved[key]!r} "
                             f"({path}); a resumed run keeps its settings: drop {flag}, or start a new --out")
        if key not in given:
            value = saved[key]
            setattr(args, key, Path(value) if key in ("checkpoint", "hyperparams") and value is not None else value)
    if "checkpoint" in given and str(args.checkpoint) != saved.get("checkpoint"):
        raise SystemExit(f"error: --resume: --checkpoint {args.checkpoint} differs from the backbone this run started "
                         f"from, {saved.get('checkpoint')} ({path}); drop --checkpoint, or start a new --out")
    return saved


def check_hyperparams(saved: Dict[str, Any], params: Dict[str, Any], out: Path) -> None:
    """Refuse a resume whose resolved hyperparameters differ from the run's (``n_timesteps`` aside), naming them."""
    before = saved.get("resolved_hyperparams")
    if before is None:
        return
    keys = sorted(k for k in set(before) | set(params) if k != "n_timesteps" and before.get(k) != params.get(k))
    if keys:
        changes = ", ".join(f"{k}: {before.get(k)!r} -> {params.get(k)!r}" for k in keys)
        raise SystemExit(f"error: --resume: hyperparameters differ from this run's ({Path(out) / RUN_FILE}): {changes}; "
                         "a resumed agent keeps its hyperparameters: restore them, or start a new --out")


def save_run(args: argparse.Namespace, out: Path, params: Dict[str, Any]) -> Path:
    """Write ``out/run.json`` with the current settings and the resolved hyperparameters ``params``."""
    record = {key: _jsonable(getattr(args, key, None)) for key in RUN_KEYS + SESSION_KEYS}  # None: not a flag of the caller
    record["resolved_hyperparams"] = json.loads(json.dumps(params, default=str))
    path = Path(out) / RUN_FILE
    tmp = path.with_name(f".{RUN_FILE}.tmp")
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(path)
    return path


__all__ = ["RUN_FILE", "RUN_KEYS", "SESSION_KEYS", "apply_saved_run", "check_hyperparams", "given_flags", "save_run"]
