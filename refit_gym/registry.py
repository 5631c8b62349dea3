"""The identity table: environment id -> backbone kind, default reward, synthetic default dataset, scenario, label.

One row per registered ``refit_gym/...`` id, plain strings and no project imports, so every layer may read it. The
rest derives from it: the ids gymnasium registers and their keyword defaults (:data:`refit_gym.envs.ENV_SPECS`,
the row without ``scenario``), ``ENV_IDS``, the scenario of an id or a backbone
(:func:`refit_gym.scenarios.scenario_for`, ``SCENARIO_OF_BACKBONE``), a scenario's and a backbone kind's default
reward (``REWARD_OF_BACKBONE``) and the backbones' display names (:data:`BACKBONE_LABELS`, in tables and figures).
The derived tables are read-only views recomputed from :data:`ENVIRONMENTS` on every read, so a row added at run
time is seen everywhere; :func:`register_environment` adds one and registers its gymnasium id (``import refit_gym``
does the same for the rows below, through :func:`refit_gym.envs.register_envs`).
"""
from __future__ import annotations

from typing import Callable, Dict, Iterator, Mapping

#: env id -> {"backbone": kind, "reward": default reward, "data": synthetic default spec, "scenario": SCENARIOS key,
#: "label": the backbone's display name}
ENVIRONMENTS: Dict[str, Dict[str, str]] = {
    "refit_gym/DiffRec-v0": {"backbone": "diffrec", "reward": "refit", "data": "synthetic", "scenario": "cf",
                             "label": "DiffRec"},
    "refit_gym/CFDiff-v0": {"backbone": "cfdiff", "reward": "refit", "data": "synthetic", "scenario": "cf",
                            "label": "CF-Diff"},
    "refit_gym/TDiffRec-v0": {"backbone": "t-diffrec", "reward": "refit", "data": "synthetic", "scenario": "cf",
                              "label": "T-DiffRec"},
    "refit_gym/SocialDiffRec-v0": {"backbone": "social-diffrec", "reward": "refit", "data": "synthetic-social",
                                   "scenario": "social", "label": "Social-DiffRec"},
    "refit_gym/DreamRec-v0": {"backbone": "dreamrec", "reward": "refit-seq", "data": "synthetic-seq",
                              "scenario": "sequential", "label": "DreamRec"},
    "refit_gym/DreamRecCE-v0": {"backbone": "dreamrec-ce", "reward": "refit-seq", "data": "synthetic-seq",
                                "scenario": "sequential", "label": "DreamRec-CE"},
    "refit_gym/DreamRecPOI-v0": {"backbone": "dreamrec-poi", "reward": "refit-seq", "data": "synthetic-poi",
                                 "scenario": "poi", "label": "DreamRec-POI"},
    "refit_gym/DreamRecPOICE-v0": {"backbone": "dreamrec-poi-ce", "reward": "refit-seq", "data": "synthetic-poi",
                                   "scenario": "poi", "label": "DreamRec-POI-CE"},
}
#: the fields of a row, all strings
ROW_KEYS = ("backbone", "reward", "data", "scenario", "label")
#: the fields of a row that are keyword defaults of the environment's entry points (``gymnasium.make`` kwargs)
MAKE_KEYS = ("backbone", "reward", "data")
#: the gymnasium entry points of every id (strings: nothing is imported until an environment is made)
ENTRY_POINT, VECTOR_ENTRY_POINT = "refit_gym.envs.factory:make_env", "refit_gym.envs.factory:make_vector_env"


class DerivedTable(Mapping):
    """A read-only table computed from :data:`ENVIRONMENTS` on every read (a handful of rows), so that rows added
    after import are never missing from it."""

    def __init__(self, derive: Callable[[], Dict]):
        self._derive = derive

    def __getitem__(self, key):
        return self._derive()[key]

    def __iter__(self) -> Iterator:
        return iter(self._derive())

    def __len__(self) -> int:
        return len(self._derive())

    def __repr__(self) -> str:
        return repr(self._derive())


def by_backbone(field: str) -> DerivedTable:
    """backbone kind -> its row's ``field`` (one row per kind: a kind has one environment id)."""
    return DerivedTable(lambda: {row["backbone"]: row[field] for row in ENVIRONMENTS.values()})


#: backbone kind -> the scenario it belongs to
SCENARIO_OF_BACKBONE: Mapping[str, str] = by_backbone("scenario")
#: backbone kind -> its environment id's default reward (what the builders of :mod:`refit_gym.envs.factory` use)
REWARD_OF_BACKBONE: Mapping[str, str] = by_backbone("reward")
#: backbone kind -> display name
BACKBONE_LABELS: Mapping[str, str] = by_backbone("label")


def _env_of_backbone() -> Dict[str, str]:
    out: Dict[str, str] = {}
    for env_id, row in ENVIRONMENTS.items():
        out.setdefault(row["backbone"], env_id)
    return out


#: backbone kind -> its environment id (the first registered one, should several ids share a backbone); a recipe
#: of ``agents/hyperparams/<algo>.yml`` is keyed by it
ENV_OF_BACKBONE: Mapping[str, str] = DerivedTable(_env_of_backbone)


def register_environment(env_id: str, row: Dict[str, str]) -> None:
    """Add ``row`` (:data:`ROW_KEYS`, strings) to :data:`ENVIRONMENTS` as ``env_id`` and register the gymnasium id
    (entry points :data:`ENTRY_POINT` / :data:`VECTOR_ENTRY_POINT`, the row's :data:`MAKE_KEYS` as keyword
    defaults). Idempotent; the one path of every id, built-in rows included (:func:`refit_gym.envs.register_envs`).
    ValueError: a malformed row, or ``env_id`` already in the table with another row."""
    import gymnasium

    if set(row) != set(ROW_KEYS) or not all(isinstance(v, str) for v in row.values()):
        raise ValueError(f"environment {env_id!r}: a row has the string fields {list(ROW_KEYS)}, got {row!r}")
    if ENVIRONMENTS.setdefault(env_id, row) != row:
        raise ValueError(f"environment {env_id!r} is already registered as {ENVIRONMENTS[env_id]!r}, not {row!r}")
    kwargs = {k: row[k] for k in MAKE_KEYS}
    spec = gymnasium.registry.get(env_id)
    if spec is not None and spec.kwargs == kwargs:
        return
    gymnasium.registry.pop(env_id, None)  # a stale spec (its row was replaced): re-register without a warning
    gymnasium.register(id=env_id, entry_point=ENTRY_POINT, vector_entry_point=VECTOR_ENTRY_POINT, kwargs=kwargs)


def environment(env_id: str) -> Dict[str, str]:
    """The row of ``env_id``; a KeyError naming the known ids otherwise."""
    if env_id not in ENVIRONMENTS:
        raise KeyError(f"environment {env_id!r}: known environment ids {sorted(ENVIRONMENTS)}")
    return ENVIRONMENTS[env_id]


__all__ = ["BACKBONE_LABELS", "DerivedTable", "ENTRY_POINT", "ENVIRONMENTS", "MAKE_KEYS", "REWARD_OF_BACKBONE",
           "ROW_KEYS", "SCENARIO_OF_BACKBONE", "VECTOR_ENTRY_POINT", "by_backbone", "environment", "register_environment"]
