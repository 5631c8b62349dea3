"""The identity table: environment id -> backbone kind, default reward, synthetic default dataset, scenario, label.

One row per registered ``refit_gym/...`` id, plain strings and no imports, so every layer may read it. The
rest derives from it: the ids gymnasium registers and their keyword defaults (:data:`refit_gym.envs.ENV_SPECS`,
the row without ``scenario``), ``ENV_IDS``, the scenario of an id or a backbone
(:func:`refit_gym.scenarios.scenario_for`, ``SCENARIO_OF_BACKBONE``), a scenario's and a backbone kind's default
reward (``REWARD_OF_BACKBONE``) and the backbones' display names (:data:`BACKBONE_LABELS`, in tables and figures).
"""
from __future__ import annotations

from typing import Dict

#: env id -> {"backbone": kind, "reward": default reward, "data": synthetic default spec, "scenario": SCENARIOS key,
#: "label": the backbone's display name}
ENVIRONMENTS: Dict[str, Dict[str, str]] = {
    "refit_gym/DiffRec-v0": {"backbone": "diffrec", "reward": "refit", "data": "synthetic", "scenario": "cf",
                             "label": "DiffRec"},
    "refit_gym/CFDiff-v0": {"backbone": "cfdiff", "reward": "refit", "data": "synthetic", "scenario": "cf",
                            "label": "CF-Diff"},
    "refit_gym/SocialDiffRec-v0": {"backbone": "social-diffrec", "reward": "refit", "data": "synthetic-social",
                                   "scenario": "social", "label": "Social-DiffRec"},
    "refit_gym/DreamRec-v0": {"backbone": "dreamrec", "reward": "refit-seq", "data": "synthetic-seq",
                              "scenario": "sequential", "label": "DreamRec"},
    "refit_gym/DreamRecPOI-v0": {"backbone": "dreamrec-poi", "reward": "refit-seq", "data": "synthetic-poi",
                                 "scenario": "poi", "label": "DreamRec-POI"},
}
#: the fields of a row that are keyword defaults of the environment's entry points (``gymnasium.make`` kwargs)
MAKE_KEYS = ("backbone", "reward", "data")
#: backbone kind -> the scenario it belongs to (one row per kind: a kind has one environment id)
SCENARIO_OF_BACKBONE: Dict[str, str] = {row["backbone"]: row["scenario"] for row in ENVIRONMENTS.values()}
#: backbone kind -> its environment id's default reward (what the builders of :mod:`refit_gym.envs.factory` use)
REWARD_OF_BACKBONE: Dict[str, str] = {row["backbone"]: row["reward"] for row in ENVIRONMENTS.values()}
#: backbone kind -> display name
BACKBONE_LABELS: Dict[str, str] = {row["backbone"]: row["label"] for row in ENVIRONMENTS.values()}


def environment(env_id: str) -> Dict[str, str]:
    """The row of ``env_id``; a KeyError naming the known ids otherwise."""
    if env_id not in ENVIRONMENTS:
        raise KeyError(f"environment {env_id!r}: known environment ids {sorted(ENVIRONMENTS)}")
    return ENVIRONMENTS[env_id]


__all__ = ["BACKBONE_LABELS", "ENVIRONMENTS", "MAKE_KEYS", "REWARD_OF_BACKBONE", "SCENARIO_OF_BACKBONE", "environment"]
