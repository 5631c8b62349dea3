"""The stated rule for ``gymnasium.make(id)`` without ``checkpoint=``: a cached default backbone for synthetic data.

Every registered id has a synthetic default dataset (``ENV_SPECS[id]["data"]``: ``synthetic``,
``synthetic-social``, ``synthetic-seq`` or ``synthetic-poi``, see :data:`refit_gym.data.SYNTHETIC_SPECS`).
When an environment is made with ``checkpoint=None``:

* on a synthetic spec string (``"synthetic"``, ``"synthetic-seq:3"``, ...): the *default backbone* of the
  id's kind for that dataset is used. It is pretrained once with :data:`DEFAULT_RECIPE` (the scenario's
  architecture, ``DEFAULT_RECIPE["epochs"]`` epochs, seed 0, validation selection; 3 to 6 s on one CPU
  core) and cached as ``<cache>/<kind>-<spec>-r<RECIPE_VERSION>.pt``, where ``<cache>`` is
  ``$REFIT_GYM_CACHE`` or ``~/.cache/refit-gym``. One line on stderr says when it is pretrained.
* on any other data: :class:`~refit_gym.diffusion.checkpoint.CheckpointError` saying how to get a
  checkpoint. A randomly initialised backbone is never used silently: ask for it with
  ``checkpoint="untrained"`` (tests, speed benchmarks of the environment).
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

UNTRAINED = "untrained"
#: ``torch`` seed of a ``checkpoint="untrained"`` backbone's initial weights unless ``backbone_seed=`` says otherwise
DEFAULT_BACKBONE_SEED = 0
RECIPE_VERSION = 1
#: pretraining of the cached default backbones (PretrainConfig overrides; the architecture is the scenario's):
#: validated after every epoch, so that the cached backbone does not depend on the machine's timings
DEFAULT_RECIPE = dict(epochs=10, patience=0, seed=0, eval_every=1)


def cache_dir() -> Path:
    """``$REFIT_GYM_CACHE`` or ``~/.cache/refit-gym`` (created on first write)."""
    return Path(os.environ.get("REFIT_GYM_CACHE") or Path.home() / ".cache" / "refit-gym")


def is_synthetic_spec(data: Any) -> bool:
    """Whether ``data`` is a synthetic dataset spec string (``"synthetic"``, ``"synthetic-poi:2"``, ...)."""
    from refit_gym.data.synthetic import SYNTHETIC_SPECS

    return isinstance(data, str) and data.partition(":")[0] in SYNTHETIC_SPECS


def default_checkpoint_path(kind: str, spec: str) -> Path:
    """Where the default ``kind`` backbone for the synthetic ``spec`` is cached."""
    return cache_dir() / f"{kind}-{spec.replace(':', '_')}-r{RECIPE_VERSION}.pt"


def default_checkpoint(kind: str, spec: str, data=None, device="cpu") -> Path:
    """The cached default backbone of ``kind`` for the synthetic ``spec``, pretrained first if absent.

    Args:
        kind: a backbone name of a scenario (``diffrec``, ``cfdiff``, ``social-diffrec``, ``dreamrec``,
            ``dreamrec-poi``).
        spec: a synthetic dataset spec string.
        data: the dataset ``spec`` loads (loaded here when None).
        device: where to pretrain.
    Returns: the checkpoint path (written atomically, so concurrent processes never read half a file).
    """
    if not is_synthetic_spec(spec):
        raise ValueError(f"{spec!r} is not a synthetic dataset spec")
    path = default_checkpoint_path(kind, spec)
    if path.is_file():
        return path
    from refit_gym.data import load_dataset
    from refit_gym.diffusion.checkpoint import load_backbone, save_backbone
    from refit_gym.scenarios import scenario_for

    data = load_dataset(spec) if data is None else data
    scenario = scenario_for(kind)
    scenario.check_data(data)  # before saying that it pretrains
    print(f"refit-gym: no checkpoint given: pretraining the default {kind} backbone for {spec!r} "
          f"({DEFAULT_RECIPE['epochs']} epochs, once; cached in {path})", file=sys.stderr, flush=True)
    adapter = scenario.build_backbone(scenario.check_data(data), kind)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        scenario.pretrain(adapter, data, scenario.pretrain_config(**DEFAULT_RECIPE), out_dir=tmp, device=device,
                          progress=False, log=lambda msg: None)
        best, meta = load_backbone(Path(tmp) / "best.pt", data)
        save_backbone(best, path, meta=dict(meta, default_backbone=dict(kind=kind, data=spec, recipe=DEFAULT_RECIPE,
                                                                         recipe_version=RECIPE_VERSION)))
    return path


def no_checkpoint_error(env_kind: str, data: Any):
    """The CheckpointError for ``checkpoint=None`` on data that has no default backbone."""
    from refit_gym.diffusion.checkpoint import CheckpointError

    shown = data if isinstance(data, (str, Path)) else getattr(data, "name", type(data).__name__)
    return CheckpointError(
        f"no checkpoint= for a {env_kind} environment on {str(shown)!r}: only the synthetic datasets have a default "
        f"backbone. Pretrain one (refit-gym pretrain --backbone {env_kind} --data ... --out DIR) and pass "
        f"checkpoint='DIR/best.pt', or pass checkpoint='{UNTRAINED}' for a randomly initialised backbone")


__all__ = ["DEFAULT_BACKBONE_SEED", "DEFAULT_RECIPE", "RECIPE_VERSION", "UNTRAINED", "cache_dir", "default_checkpoint",
           "default_checkpoint_path", "is_synthetic_spec", "no_checkpoint_error"]
