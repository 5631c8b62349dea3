"""The benchmark's plan: its rows (:class:`RowSpec`, :func:`build_rows`), the fine-tuning methods, the settings
the numbers depend on (:class:`Settings`) and the --quick recipe."""
from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from refit_gym.registry import BACKBONE_LABELS, ENV_OF_BACKBONE

REPO = Path(__file__).resolve().parents[3]
TABLE_METRICS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")
RELATIVE_METRICS = ("ndcg@20", "recall@20")
SEEDLESS = "NA"  # file tag of deterministic rows
MACHINE_NOT_RECORDED = "machine not recorded (a record written before the benchmark recorded it)"

#: baseline rows: key -> label, in table order; a scenario has the ones in its ``Scenario.baselines``
BASELINE_LABELS = {"pop": "MostPopular", "itemknn": "ItemKNN", "ease": "EASE", "t-ease": "T-EASE (recency-weighted)",
                   "sasrec": "SASRec"}
#: stochastic baselines: one run per seed (``torch.manual_seed(seed)`` before building it, ``seed`` to its fit)
SEEDED_BASELINES = ("sasrec",)
#: default ``--backbones`` per scenario (the others: ``[Scenario.backbone]``)
DEFAULT_BACKBONES = {"cf": ("diffrec", "cfdiff")}
#: per scenario: the baseline the best fine-tuned model is compared with in the report's sentence
REFERENCE_BASELINE = {"cf": "ease", "social": "ease", "sequential": "sasrec", "poi": "sasrec"}
#: the issue's goal on sequence data: relative test NDCG@20 change over the pretrained backbone, in percent
SEQUENCE_GOAL_PCT = 20.0
#: fine-tuning methods: (algorithm, reward, label); reward None = the benchmark's ``--reward`` (by default the
#: environment's registered reward), so that ReFiT, DDPO, PPO and A2C optimise the same objective
FINETUNE_METHODS: Dict[str, Tuple[str, Optional[str], str]] = {
    "refit": ("refit", None, "ReFiT"),
    "naive": ("refit", "topk", "ReFiT, naive reward (top-k)"),
    "ddpo": ("ddpo", None, "DDPO"),
    "pathwise": ("pathwise", None, "Pathwise"),
    "ppo": ("ppo", None, "PPO"),
    "a2c": ("a2c", None, "A2C"),
}
#: the continued-pretraining control: one row per backbone, after its fine-tuned rows
CONTINUED = "continued"
CONTINUED_LABEL = "continued pretraining"
#: the fine-tuning method whose cell (same backbone, same seed) gives the continued row its training seconds
#: (``--continued-budget`` chooses another)
CONTINUED_BUDGET = "refit"
#: PretrainConfig fields the continued control sets itself (its length is the budget; no early stopping; full
#: validations at its own interval)
CONTINUED_OWN_FIELDS = ("epochs", "patience", "eval_every", "eval_users", "eval_budget")
METHODS = tuple(BASELINE_LABELS) + ("pretrained",) + tuple(FINETUNE_METHODS) + (CONTINUED,)

# --quick: synthetic-size settings (tiny backbones, T = QUICK_STEPS, a few rollouts per fine-tuning run)
QUICK_STEPS = 5
QUICK_PRETRAIN_ARGS = ["--epochs", "3", "--patience", "0", "--steps", str(QUICK_STEPS)]
QUICK_BACKBONE_ARGS = {"diffrec": ["--hidden", "32", "--emb-size", "8"], "cfdiff": ["--emb-size", "8"],
                       "t-diffrec": ["--hidden", "32", "--emb-size", "8"],
                       "social-diffrec": ["--hidden", "32", "--emb-size", "8"],
                       "dreamrec": ["--hidden", "32"], "dreamrec-ce": ["--hidden", "32"],
                       "dreamrec-poi": ["--hidden", "32"], "dreamrec-poi-ce": ["--hidden", "32"]}
#: --quick fit settings of the baselines without a validation grid (over the scenario's ``baseline_defaults``)
QUICK_BASELINE_KWARGS: Dict[str, Dict[str, Any]] = {"sasrec": dict(epochs=1, d=16, n_layers=1)}
QUICK_N_ENVS = 16
QUICK_ROLLOUTS = 4
QUICK_COPIES = 4


def quick_hyperparams(algo: str, steps: int = QUICK_STEPS) -> Dict[str, Any]:
    """The --quick fine-tuning settings of ``algo`` for a backbone with ``steps`` (T) denoising steps:
    ``QUICK_N_ENVS`` environments, ``QUICK_ROLLOUTS`` rollouts of whole trajectories (``n_timesteps`` in
    environment steps), ReFiT's copies ``QUICK_COPIES`` (a divisor of ``QUICK_N_ENVS``), PPO / A2C rollouts of one
    episode (``n_steps = T``). Returns rl-zoo hyperparameters (``{}`` for an algorithm without quick settings)."""
    n_timesteps = QUICK_N_ENVS * steps * QUICK_ROLLOUTS
    return {
        "refit": dict(n_envs=QUICK_N_ENVS, n_timesteps=n_timesteps, n_traj_per_user=QUICK_COPIES),
        "pathwise": dict(n_envs=QUICK_N_ENVS, n_timesteps=n_timesteps),
        "ddpo": dict(n_envs=QUICK_N_ENVS, n_timesteps=n_timesteps, batch_size=QUICK_N_ENVS * steps),
        "ppo": dict(n_envs=QUICK_N_ENVS, n_timesteps=n_timesteps, n_steps=steps, batch_size=QUICK_N_ENVS * steps),
        "a2c": dict(n_envs=QUICK_N_ENVS, n_timesteps=n_timesteps, n_steps=steps),
    }.get(algo, {})


QUICK_EVAL_POINTS = 2



@dataclass(frozen=True)
class RowSpec:
    """One row of the results table.

    Attributes:
        name: identifier, also the folder of its results (``OUT/runs/<name>/``); path-safe.
        kind: ``baseline`` (a baseline of the scenario: :data:`refit_gym.baselines.BASELINES` for ``cf`` /
            ``social``, :mod:`refit_gym.seq_baselines` for ``sequential`` / ``poi``), ``pretrained`` (a backbone
            checkpoint), ``finetuned`` (a backbone fine-tuned by an RL algorithm) or ``continued`` (the
            backbone's own pretraining continued for the training seconds of the ``budget`` row).
        label: what the table shows.
        baseline: the baseline key (kind ``baseline``), one of the scenario's ``Scenario.baselines``.
        backbone, env_id: backbone kind and its environment id (kinds ``pretrained``, ``finetuned``,
            ``continued``).
        algo, reward: the :data:`agents.ALGOS` key and the reward (kind ``finetuned``).
        method: the :data:`FINETUNE_METHODS` key (kind ``finetuned``): its hyperparameters are the method's.
        seeded: False for deterministic rows (one run, no seed).
        scenario: the :data:`refit_gym.scenarios.SCENARIOS` key of the benchmark: its protocol evaluates the
            row, and it decides how a baseline is fitted.
        budget: the :data:`FINETUNE_METHODS` key whose cell of the same backbone and seed gives the training
            seconds (kind ``continued``).
    """

    name: str
    kind: str
    label: str
    baseline: Optional[str] = None
    backbone: Optional[str] = None
    env_id: Optional[str] = None
    algo: Optional[str] = None
    reward: Optional[str] = None
    method: Optional[str] = None
    seeded: bool = True
    scenario: str = "cf"
    budget: Optional[str] = None

    def __post_init__(self):
        from refit_gym.scenarios import SCENARIOS

        if self.kind not in ROW_KINDS:
            raise ValueError(f"RowSpec {self.name!r}: kind {self.kind!r} is not one of {', '.join(ROW_KINDS)}")
        needed = {"baseline": ("baseline",), "pretrained": ("backbone", "env_id"),
                  "finetuned": ("backbone", "env_id", "algo", "reward", "method"),
                  "continued": ("backbone", "env_id", "budget")}[self.kind]
        missing = [f for f in needed if getattr(self, f) is None]
        if missing:
            raise ValueError(f"RowSpec {self.name!r} of kind {self.kind!r} needs {missing}")
        if self.scenario not in SCENARIOS:
            raise ValueError(f"RowSpec {self.name!r}: scenario {self.scenario!r} is not one of {sorted(SCENARIOS)}")
        if self.kind == "baseline" and self.baseline not in SCENARIOS[self.scenario].baselines:
            raise ValueError(f"RowSpec {self.name!r}: scenario {self.scenario!r} has baselines "
                             f"{list(SCENARIOS[self.scenario].baselines)}, not {self.baseline!r}")
        if self.budget is not None and self.kind != "continued":
            raise ValueError(f"RowSpec {self.name!r}: budget {self.budget!r} is for kind 'continued', not {self.kind!r}")
        if self.budget is not None and self.budget not in FINETUNE_METHODS:
            raise ValueError(f"RowSpec {self.name!r}: budget {self.budget!r} is not a fine-tuning method "
                             f"{sorted(FINETUNE_METHODS)}")
        if not self.name or any(c in self.name for c in "/\\ ") or self.name.startswith("."):
            raise ValueError(f"RowSpec name {self.name!r} must be a non-empty path-safe identifier")

    def as_dict(self) -> Dict[str, Any]:
        """Returns the fields as written to the records and ``results.json`` (``budget`` only where set, so that the
        specs of the other rows read as before the continued row existed)."""
        d = asdict(self)
        if d["budget"] is None:
            del d["budget"]
        return d

    @property
    def budget_row(self) -> str:
        """Returns the name of the row whose cell of the same seed gives a ``continued`` row its training seconds."""
        if self.kind != "continued":
            raise ValueError(f"RowSpec {self.name!r} of kind {self.kind!r} has no budget row")
        return f"{self.backbone}-{self.budget}"


#: the kinds of rows, in the order of their docstring
ROW_KINDS = ("baseline", "pretrained", "finetuned", "continued")
#: extra rows: one RowSpec each, appended to every plan of the row's scenario
EXTRA_ROWS: List[RowSpec] = []


def infer_scenario(data) -> str:
    """Returns the scenario name of a loaded dataset: ``poi`` for timestamped SequentialData, ``sequential`` for other
    SequentialData, ``social`` for InteractionData with a social graph (``data.social``), ``cf`` otherwise."""
    from refit_gym.data.sequential import SequentialData

    if isinstance(data, SequentialData):
        return "poi" if data.has_time else "sequential"
    return "social" if getattr(data, "social", None) is not None else "cf"


def default_backbones(scenario: str) -> List[str]:
    """Returns ``--backbones`` by default: ``diffrec cfdiff`` for ``cf``, the scenario's own backbone otherwise."""
    from refit_gym.scenarios import SCENARIOS

    return list(DEFAULT_BACKBONES.get(scenario, (SCENARIOS[scenario].backbone,)))


def scenario_methods(scenario: str) -> List[str]:
    """Returns the :data:`METHODS` that exist for ``scenario``: its baselines, ``pretrained``, the fine-tuning
    methods and ``continued``."""
    from refit_gym.scenarios import SCENARIOS

    return [m for m in METHODS if m not in BASELINE_LABELS or m in SCENARIOS[scenario].baselines]


def build_rows(backbones: Sequence[str], methods: Sequence[str] = METHODS, reward: Optional[str] = None,
               scenario: str = "cf", continued_budget: str = CONTINUED_BUDGET) -> List[RowSpec]:
    """Returns the plan's rows: the scenario's baselines among ``methods`` (in :data:`BASELINE_LABELS` order), then per
    backbone its pretrained and fine-tuned rows and its continued-pretraining row (its training seconds: those
    of the ``continued_budget`` method's cell). Methods that do not exist for the scenario (e.g. ``sasrec``
    for ``cf``) are left out.

    ``reward``: the reward of the methods whose :data:`FINETUNE_METHODS` reward is None (default: each
    environment's registered reward). A backbone must be registered and follow the scenario's data kind
    (sequence backbones for ``sequential`` / ``poi``, history backbones for ``cf`` / ``social``), else ValueError.
    """
    import gymnasium

    from refit_gym.scenarios import SCENARIOS, scenario_for

    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; known: {sorted(SCENARIOS)}")
    if continued_budget not in FINETUNE_METHODS:
        raise ValueError(f"continued budget {continued_budget!r} is not a fine-tuning method "
                         f"{sorted(FINETUNE_METHODS)}")
    sc = SCENARIOS[scenario]
    envs = ENV_OF_BACKBONE
    rows = [RowSpec(name=m, kind="baseline", label=BASELINE_LABELS[m], baseline=m, seeded=m in SEEDED_BASELINES,
                    scenario=scenario)
            for m in BASELINE_LABELS if m in methods and m in sc.baselines]
    for b in backbones:
        if b not in envs:
            raise ValueError(f"backbone {b!r} has no registered environment; known: {sorted(envs)}")
        if scenario_for(b).data_kind != sc.data_kind:
            raise ValueError(f"backbone {b!r} reads {scenario_for(b).data_kind}, but scenario {scenario!r} has "
                             f"{sc.data_kind}; its backbones: "
                             f"{sorted(k for k in envs if scenario_for(k).data_kind == sc.data_kind)}")
        label = BACKBONE_LABELS.get(b, b)
        if "pretrained" in methods:
            rows.append(RowSpec(name=b, kind="pretrained", label=f"{label} (pretrained)", backbone=b, env_id=envs[b],
                                scenario=scenario))
        for m, (algo, method_reward, mlabel) in FINETUNE_METHODS.items():
            if m in methods:
                r = method_reward or reward or gymnasium.spec(envs[b]).kwargs["reward"]
                rows.append(RowSpec(name=f"{b}-{m}", kind="finetuned", label=f"{label} + {mlabel}", backbone=b,
                                    env_id=envs[b], algo=algo, reward=r, method=m, scenario=scenario))
        if CONTINUED in methods:
            rows.append(RowSpec(name=f"{b}-{CONTINUED}", kind="continued", label=f"{label} + {CONTINUED_LABEL}",
                                backbone=b, env_id=envs[b], budget=continued_budget, scenario=scenario))
    return rows + [r for r in EXTRA_ROWS if r.scenario == scenario]


@dataclass
class Settings:
    """Everything that determines the numbers (stored in ``plan.json``; changing it needs another ``--out``)."""

    data: str
    quick: bool
    select_metric: str
    eval_points: int
    pretrain_args: List[str]
    reward: Optional[str] = None  # --reward (None: each environment's registered reward)
    hyperparams: Dict[str, Dict[str, Any]] = field(default_factory=dict)  # "<algo>|<env_id>" -> effective section
    scenario: str = "cf"  # the refit_gym.scenarios.SCENARIOS key: protocol, baselines, reference row
    #: fit settings of the baselines without a validation grid (e.g. SASRec's epochs); the seed is added per run
    baseline_kwargs: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    #: the load_dataset keyword arguments of --protocol / --split-seed ({}: the data's own split, loo for sequences)
    protocol: Dict[str, Any] = field(default_factory=dict)

    def eval_freq(self, row: "RowSpec") -> int:
        """Returns the validation interval (environment steps) of the fine-tuned row ``row``: its run's
        ``n_timesteps`` over ``eval_points``."""
        from refit_gym.experiments.hyperparams import split_hyperparams

        n_timesteps = split_hyperparams(self.hyperparams.get(f"{row.method}|{row.env_id}", {}))[0]["n_timesteps"]
        return max(n_timesteps // self.eval_points, 1)

    def fingerprint(self) -> Dict[str, Any]:
        """Returns the settings as stored in ``plan.json`` (without ``data``)."""
        d = asdict(self)
        d.pop("data")  # the dataset's name is checked instead: the same folder may be given by another path
        return d


def pretrain_argv(backbone: str, settings: Settings) -> List[str]:
    """Returns the ``scripts/pretrain.py`` arguments (without data, output, seed and device) for ``backbone``."""
    extra = QUICK_BACKBONE_ARGS.get(backbone, []) if settings.quick else []
    return ["--backbone", backbone] + list(settings.pretrain_args) + extra


def pretrain_args(argv: Sequence[str]) -> argparse.Namespace:
    """Returns ``argv`` parsed by :func:`refit_gym.experiments.pretrain.build_parser` (``--pretrain-args`` is those
    flags)."""
    from refit_gym.experiments.pretrain import build_parser

    return build_parser().parse_args(list(argv))


def backbone_kwargs_for(backbone: str, settings: Settings) -> Dict[str, Any]:
    """Returns the architecture (constructor arguments) that pretraining builds for ``backbone`` under ``settings``."""
    from refit_gym.experiments.pretrain import backbone_kwargs
    from refit_gym.scenarios import scenario_for

    return scenario_for(backbone).architecture(backbone, **backbone_kwargs(pretrain_args(pretrain_argv(backbone,
                                                                                                         settings))))


def continued_params(backbone: str, settings: Settings) -> Dict[str, Any]:
    """Returns the PretrainConfig overrides of the continued control of ``backbone``: the fields that the flags in
    ``--pretrain-args`` set (e.g. ``--lr``, ``--batch-size``; ``reweight`` only with ``--no-reweight``), without
    the fields the control sets itself (:data:`CONTINUED_OWN_FIELDS`). The control otherwise continues with its
    start's own settings (:func:`refit_gym.experiments.ladder.continued_pretraining`)."""
    from refit_gym.experiments.pretrain import config_overrides

    argv = pretrain_argv(backbone, settings)
    given = config_overrides(pretrain_args(argv))
    if "--no-reweight" not in argv:
        given.pop("reweight")
    return {k: v for k, v in given.items() if k not in CONTINUED_OWN_FIELDS}


def backbone_steps(backbone: str, settings: Settings, checkpoint: Optional[Path] = None) -> int:
    """Returns T, the number of denoising steps of ``backbone``: the checkpoint's when one is given, else the one
    ``scripts/pretrain.py`` builds under ``settings`` (``--steps``, or the backbone's default schedule)."""
    if checkpoint is not None:
        from refit_gym.diffusion.checkpoint import read_checkpoint

        return int(read_checkpoint(checkpoint)["config"]["schedule"]["steps"])
    return int(backbone_kwargs_for(backbone, settings)["schedule"]["steps"])


def effective_baseline_kwargs(scenario: str, quick: bool) -> Dict[str, Dict[str, Any]]:
    """Returns the fit settings of the scenario's baselines that have no validation grid: the scenario's
    ``baseline_defaults``, then :data:`QUICK_BASELINE_KWARGS` with ``quick`` (``{}`` for MostPopular)."""
    from refit_gym.baselines import DEFAULT_GRIDS
    from refit_gym.scenarios import SCENARIOS

    sc = SCENARIOS[scenario]
    return {b: {**sc.baseline_defaults.get(b, {}), **(QUICK_BASELINE_KWARGS.get(b, {}) if quick else {})}
            for b in sc.baselines if sc.sequential or b not in DEFAULT_GRIDS}


def effective_hyperparams(algo: str, env_id: str, quick: bool, override: Optional[Path],
                          steps: int = QUICK_STEPS) -> Dict[str, Any]:
    """Returns the rl-zoo hyperparameters: the defaults of ``agents/hyperparams/<algo>.yml``, then the --quick
    settings (:func:`quick_hyperparams` for a backbone of ``steps`` denoising steps), then ``--hyperparams``."""
    from refit_gym.experiments.hyperparams import load_hyperparams

    params = load_hyperparams(algo, env_id)
    if quick:
        params.update(quick_hyperparams(algo, steps))
    if override is not None:
        params.update(load_hyperparams(algo, env_id, override))
    return params
