#!/usr/bin/env python
"""The results table, the cost and the scaling of ReFiT on one dataset, in one command.

Examples::

    python scripts/benchmark.py --data synthetic --quick --out /tmp/bench        # a couple of minutes on 2 cores
    python scripts/benchmark.py --data ../shared/datasets/ml-1m                   # results/ml-1m, seeds 0 1 2
    python scripts/benchmark.py --data ../shared/datasets/ml-1m --methods ease pretrained refit --seeds 0
    python scripts/benchmark.py --data ../shared/datasets/ml-1m --report-only     # rebuild report.md from what is done
    python scripts/benchmark.py --data ../shared/datasets/ml-1m --checkpoint-diffrec runs/diffrec-ml1m/best.pt
    python scripts/benchmark.py --data ../shared/datasets/ml-1m --scaling-only --scaling-max-rollouts 2
    python scripts/benchmark.py --data ../shared/datasets/seq-beauty --skip-scaling    # scenario 'sequential'
    python scripts/benchmark.py --data ../shared/datasets/poi-gowalla --skip-scaling   # scenario 'poi'
    python scripts/benchmark.py --data ../shared/datasets/social-ciao                  # scenario 'social'

**Scenario.** The dataset's scenario (:data:`refit_gym.scenarios.SCENARIOS`) decides the plan: ``--scenario``,
by default inferred from the loaded data by :func:`infer_scenario` (timestamped SequentialData: ``poi``;
SequentialData: ``sequential``; InteractionData with a social graph: ``social``; otherwise ``cf``). It fixes
the evaluation protocol (``cf`` / ``social``: masked full ranking; ``sequential`` / ``poi``: leave-one-out full
ranking of the one held-out item, where Recall@K = HR@K), the baselines and the default backbones.

**Rows** (a list of :class:`RowSpec`, see :func:`build_rows`), per scenario:

==============  ======================================  =======================  =============
scenario        baselines                               default ``--backbones``  reference row
==============  ======================================  =======================  =============
``cf``          MostPopular, ItemKNN, EASE              ``diffrec cfdiff``       EASE
``social``      MostPopular, ItemKNN, EASE              ``social-diffrec``       EASE
``sequential``  MostPopular, SASRec (one run per seed)  ``dreamrec``             SASRec
``poi``         MostPopular, SASRec (one run per seed)  ``dreamrec-poi``         SASRec
==============  ======================================  =======================  =============

ItemKNN's ``k`` and EASE's ``lam`` are chosen on validation by :func:`refit_gym.baselines.select_on_validation`;
SASRec is fitted with the scenario's ``baseline_defaults`` (20 epochs; seeded: ``torch.manual_seed(seed)`` and
``fit(seed=seed)``); MostPopular is deterministic. Then each pretrained backbone, and each backbone fine-tuned
with ReFiT, DDPO, PPO and A2C (all on the same reward: ``--reward``, by default the environment's registered
one) and ReFiT with the naive ``topk`` reward. Backbones are pretrained with ``scripts/pretrain.py`` (one per
seed) unless ``OUT/checkpoints/<backbone>-seed<k>.pt`` exists or ``--checkpoint-<backbone> PATH`` is given
(then used for every seed); fine-tuning is :func:`agents.finetune.finetune` with the defaults of
``agents/hyperparams/<algo>.yml`` (``--hyperparams METHOD=FILE`` overrides them per method), validated
``--eval-points`` times; the model reported is the checkpoint with the best **validation** NDCG@20
(``--select-metric``) among those evaluations and the pretrained start. Test metrics never choose anything.
Every row is evaluated with the scenario's protocol (:meth:`refit_gym.scenarios.Scenario.evaluate`). The
report compares the best fine-tuned model (by mean validation ``--select-metric``) with the scenario's
reference row on test NDCG@20 and Recall@20, and for sequence scenarios states whether the goal of the
issue (+20% test NDCG@20 over the pretrained backbone, and above SASRec) is met.

**Resumable.** Every (method, seed) result is written atomically to ``OUT/runs/<method>/seed<k>.json`` as soon
as it is done (``seedNA.json`` for deterministic rows) and reused by later invocations, so a benchmark can be
stopped, continued, or spread over several invocations (e.g. one ``--seeds`` value each); interrupted
pretraining and fine-tuning runs continue from their own last checkpoint. ``--report-only`` rebuilds the
report from what exists: a row with some of its seeds done shows their mean, marked ``(partial: n/N seeds)``;
a row with none, ``missing (0/N seeds)`` cells. ``OUT/plan.json`` records the dataset and the
:class:`Settings` (the scenario included): an invocation with other settings is refused.

**Cost and scaling** (skipped with ``--skip-scaling``; interaction scenarios only -- SequentialData has no
user / item subsets, so sequence scenarios skip it with a printed reason): wall-clock and peak memory of one
ReFiT fine-tuning epoch (every user once through a whole denoising trajectory with the ReFiT update, the
default ReFiT hyperparameters of the environment, a freshly initialised backbone of the benchmark's
architecture -- cost does not depend on the weights) against the number of users (fractions
``--scaling-fractions`` sampled with a fixed seed by ``InteractionData.subset_users``) and of items (the most
popular ones, ``subset_items``), the fitted log-log slopes, and the ratio of the fine-tuning epoch time to the
pretraining epoch time. Each point runs in a fresh subprocess: the peak resident memory of the epoch is the
kernel's high-water mark (``VmHWM``), reset after the setup through ``/proc/self/clear_refs`` so that loading
the full dataset before subsetting does not count (where that is unavailable, the process-lifetime
``ru_maxrss``, flagged ``peak_scope: process``); ``tracemalloc`` would miss torch's tensor allocations, which
do not go through Python's allocator.

Writes to ``--out`` (default ``results/<dataset name>``): ``report.md``, ``results.json``,
``validation_vs_time.png``, ``cost_scaling.png``, ``runs/``, ``checkpoints/``, ``pretrain/``, ``finetune/``,
``scaling/``, ``hyperparams/`` (the effective fine-tuning hyperparameters, rl-zoo format), ``logs/`` (one log
per run) and ``invocations.json`` (every command line and its wall-clock).
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from refit_gym.cli import HelpFormatter, run_main
from refit_gym.plots import plot_scaling, plot_validation

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"
TABLE_METRICS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")
RELATIVE_METRICS = ("ndcg@20", "recall@20")
SEEDLESS = "NA"  # file tag of deterministic rows
MACHINE_NOT_RECORDED = "machine not recorded (a record written before the benchmark recorded it)"
SCALING_SEED = 0  # the user sample of the scaling points (fixed, independent of --seeds)
PRETRAIN_TIMED_EPOCHS = 3  # pretraining epochs timed per scaling point (after one warm-up epoch)

#: baseline rows: key -> label, in table order; a scenario has the ones in its ``Scenario.baselines``
BASELINE_LABELS = {"pop": "MostPopular", "itemknn": "ItemKNN", "ease": "EASE", "sasrec": "SASRec"}
#: stochastic baselines: one run per seed (``torch.manual_seed(seed)`` before building it, ``seed`` to its fit)
SEEDED_BASELINES = ("sasrec",)
BACKBONE_LABELS = {"diffrec": "DiffRec", "cfdiff": "CF-Diff", "social-diffrec": "Social-DiffRec",
                   "dreamrec": "DreamRec", "dreamrec-poi": "DreamRec-POI"}
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
    "ppo": ("ppo", None, "PPO"),
    "a2c": ("a2c", None, "A2C"),
}
METHODS = tuple(BASELINE_LABELS) + ("pretrained",) + tuple(FINETUNE_METHODS)

# --quick: synthetic-size settings (tiny backbones, T = QUICK_STEPS, a few rollouts per fine-tuning run)
QUICK_STEPS = 5
QUICK_PRETRAIN_ARGS = ["--epochs", "3", "--patience", "0", "--steps", str(QUICK_STEPS)]
QUICK_BACKBONE_ARGS = {"diffrec": ["--hidden", "32", "--emb-size", "8"], "cfdiff": ["--emb-size", "8"],
                       "social-diffrec": ["--hidden", "32", "--emb-size", "8"],
                       "dreamrec": ["--hidden", "32"], "dreamrec-poi": ["--hidden", "32"]}
#: --quick fit settings of the baselines without a validation grid (over the scenario's ``baseline_defaults``)
QUICK_BASELINE_KWARGS: Dict[str, Dict[str, Any]] = {"sasrec": dict(epochs=1, d=16, n_layers=1)}
QUICK_N_ENVS = 16
QUICK_ROLLOUTS = 4


def quick_hyperparams(algo: str, steps: int = QUICK_STEPS) -> Dict[str, Any]:
    """The --quick fine-tuning settings of ``algo`` for a backbone with ``steps`` (T) denoising steps:
    ``QUICK_N_ENVS`` environments, ``QUICK_ROLLOUTS`` rollouts of whole trajectories (``n_timesteps`` in
    environment steps), PPO / A2C rollouts of one episode (``n_steps = T``)."""
    n_timesteps = QUICK_N_ENVS * steps * QUICK_ROLLOUTS
    return {
        "refit": dict(n_envs=QUICK_N_ENVS, n_timesteps=n_timesteps),
        "ddpo": dict(n_envs=QUICK_N_ENVS, n_timesteps=n_timesteps, batch_size=QUICK_N_ENVS * steps),
        "ppo": dict(n_envs=QUICK_N_ENVS, n_timesteps=n_timesteps, n_steps=steps, batch_size=QUICK_N_ENVS * steps),
        "a2c": dict(n_envs=QUICK_N_ENVS, n_timesteps=n_timesteps, n_steps=steps),
    }.get(algo, {})


QUICK_EVAL_POINTS = 2


# ============================================================================ the rows
@dataclass(frozen=True)
class RowSpec:
    """One row of the results table.

    Attributes:
        name: identifier, also the folder of its results (``OUT/runs/<name>/``); path-safe.
        kind: ``baseline`` (a baseline of the scenario: :data:`refit_gym.baselines.BASELINES` for ``cf`` /
            ``social``, :mod:`refit_gym.seq_baselines` for ``sequential`` / ``poi``), ``pretrained`` (a backbone
            checkpoint) or ``finetuned`` (a backbone fine-tuned by an RL algorithm).
        label: what the table shows.
        baseline: the baseline key (kind ``baseline``), one of the scenario's ``Scenario.baselines``.
        backbone, env_id: backbone kind and its environment id (kinds ``pretrained`` and ``finetuned``).
        algo, reward: the :data:`agents.ALGOS` key and the reward (kind ``finetuned``).
        method: the :data:`FINETUNE_METHODS` key (kind ``finetuned``): its hyperparameters are the method's.
        seeded: False for deterministic rows (one run, no seed).
        scenario: the :data:`refit_gym.scenarios.SCENARIOS` key of the benchmark: its protocol evaluates the
            row, and it decides how a baseline is fitted.
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

    def __post_init__(self):
        from refit_gym.scenarios import SCENARIOS

        if self.kind not in ("baseline", "pretrained", "finetuned"):
            raise ValueError(f"RowSpec {self.name!r}: kind {self.kind!r} is not baseline, pretrained or finetuned")
        needed = {"baseline": ("baseline",), "pretrained": ("backbone", "env_id"),
                  "finetuned": ("backbone", "env_id", "algo", "reward", "method")}[self.kind]
        missing = [f for f in needed if getattr(self, f) is None]
        if missing:
            raise ValueError(f"RowSpec {self.name!r} of kind {self.kind!r} needs {missing}")
        if self.scenario not in SCENARIOS:
            raise ValueError(f"RowSpec {self.name!r}: scenario {self.scenario!r} is not one of {sorted(SCENARIOS)}")
        if self.kind == "baseline" and self.baseline not in SCENARIOS[self.scenario].baselines:
            raise ValueError(f"RowSpec {self.name!r}: scenario {self.scenario!r} has baselines "
                             f"{list(SCENARIOS[self.scenario].baselines)}, not {self.baseline!r}")
        if not self.name or any(c in self.name for c in "/\\ ") or self.name.startswith("."):
            raise ValueError(f"RowSpec name {self.name!r} must be a non-empty path-safe identifier")


#: extra rows: one RowSpec each, appended to every plan of the row's scenario
EXTRA_ROWS: List[RowSpec] = []


def env_ids_by_backbone() -> Dict[str, str]:
    """Backbone kind -> its environment id (the first registered one when several ids share a backbone)."""
    from refit_gym.envs import ENV_IDS

    out: Dict[str, str] = {}
    for env_id, kind in ENV_IDS.items():
        out.setdefault(kind, env_id)
    return out


def infer_scenario(data) -> str:
    """The scenario name of a loaded dataset: ``poi`` for timestamped SequentialData, ``sequential`` for other
    SequentialData, ``social`` for InteractionData with a social graph (``data.social``), ``cf`` otherwise."""
    from refit_gym.data.sequential import SequentialData

    if isinstance(data, SequentialData):
        return "poi" if data.has_time else "sequential"
    return "social" if getattr(data, "social", None) is not None else "cf"


def default_backbones(scenario: str) -> List[str]:
    """``--backbones`` by default: ``diffrec cfdiff`` for ``cf``, the scenario's own backbone otherwise."""
    from refit_gym.scenarios import SCENARIOS

    return list(DEFAULT_BACKBONES.get(scenario, (SCENARIOS[scenario].backbone,)))


def scenario_methods(scenario: str) -> List[str]:
    """The :data:`METHODS` that exist for ``scenario``: its baselines, ``pretrained`` and the fine-tuning methods."""
    from refit_gym.scenarios import SCENARIOS

    return [m for m in METHODS if m not in BASELINE_LABELS or m in SCENARIOS[scenario].baselines]


def build_rows(backbones: Sequence[str], methods: Sequence[str] = METHODS, reward: Optional[str] = None,
               scenario: str = "cf") -> List[RowSpec]:
    """The plan's rows: the scenario's baselines among ``methods`` (in :data:`BASELINE_LABELS` order), then per
    backbone its pretrained and fine-tuned rows. Methods that do not exist for the scenario (e.g. ``sasrec``
    for ``cf``) are left out.

    ``reward``: the reward of the methods whose :data:`FINETUNE_METHODS` reward is None (default: each
    environment's registered reward). A backbone must be registered and follow the scenario's data kind
    (sequence backbones for ``sequential`` / ``poi``, history backbones for ``cf`` / ``social``), else ValueError.
    """
    import gymnasium

    from refit_gym.scenarios import SCENARIOS, scenario_for

    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; known: {sorted(SCENARIOS)}")
    sc = SCENARIOS[scenario]
    envs = env_ids_by_backbone()
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
    return rows + [r for r in EXTRA_ROWS if r.scenario == scenario]


# ============================================================================ files
def write_json(path: Path, obj: Any) -> None:
    """Atomic JSON write (temporary file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=str))
    os.replace(tmp, path)


def read_json(path: Path) -> Optional[Any]:
    """The JSON in ``path``, or None when absent (a corrupt file is an error naming it)."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise SystemExit(f"error: {path} is not valid JSON ({e}); delete it to recompute that cell") from None


def repo_relative(path: Path) -> str:
    """``path`` relative to the repository when it lies inside it (the form the reproduce lines print, run from
    the repository root), else as given."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(REPO.resolve()))
    except ValueError:
        return str(path)


def file_sha1(path: Path) -> str:
    """SHA-1 (hex) of a file's bytes (read in 1 MiB blocks)."""
    import hashlib

    h = hashlib.sha1()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def seed_tag(row: RowSpec, seed: int) -> str:
    return str(seed) if row.seeded else SEEDLESS


def run_path(out: Path, row: RowSpec, seed: int) -> Path:
    return out / "runs" / row.name / f"seed{seed_tag(row, seed)}.json"


def row_seeds(row: RowSpec, seeds: Sequence[int]) -> List[int]:
    """The seeds a row runs with (one for deterministic rows)."""
    return list(seeds) if row.seeded else list(seeds[:1])


@contextlib.contextmanager
def run_log(path: Path) -> Iterator[Callable[[str], None]]:
    """Send stdout, stderr and a ``log(msg)`` function to ``path`` (appended) for the duration."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", buffering=1) as fh:
        def log(msg: str) -> None:
            fh.write(f"[{time.strftime('%H:%M:%S')}] {msg}\n")

        with contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
            yield log


def load_script(name: str):
    """Import ``scripts/<name>.py`` once as a module (the scripts folder is not a package)."""
    key = f"refit_gym_script_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, SCRIPTS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module  # before executing it: dataclasses look their module up there
        spec.loader.exec_module(module)
    return sys.modules[key]


# ============================================================================ settings
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

    def fingerprint(self) -> Dict[str, Any]:
        d = asdict(self)
        d.pop("data")  # the dataset's name is checked instead: the same folder may be given by another path
        return d


def pretrain_argv(backbone: str, settings: Settings) -> List[str]:
    """``scripts/pretrain.py`` arguments (without data, output, seed and device) for ``backbone``."""
    extra = QUICK_BACKBONE_ARGS.get(backbone, []) if settings.quick else []
    return ["--backbone", backbone] + list(settings.pretrain_args) + extra


def backbone_kwargs_for(backbone: str, settings: Settings) -> Dict[str, Any]:
    """The architecture ``scripts/pretrain.py`` builds for ``backbone`` under ``settings``."""
    from refit_gym.scenarios import scenario_for

    script = load_script("pretrain")
    args = script.build_parser().parse_args(pretrain_argv(backbone, settings))
    return scenario_for(backbone).architecture(backbone, **script.backbone_kwargs(args))


def backbone_steps(backbone: str, settings: Settings, checkpoint: Optional[Path] = None) -> int:
    """T, the number of denoising steps of ``backbone``: the checkpoint's when one is given, else the one
    ``scripts/pretrain.py`` builds under ``settings`` (``--steps``, or the backbone's default schedule)."""
    if checkpoint is not None:
        from refit_gym.diffusion.checkpoint import read_checkpoint

        return int(read_checkpoint(checkpoint)["config"]["schedule"]["steps"])
    return int(backbone_kwargs_for(backbone, settings)["schedule"]["steps"])


def effective_baseline_kwargs(scenario: str, quick: bool) -> Dict[str, Dict[str, Any]]:
    """Fit settings of the scenario's baselines that have no validation grid: the scenario's
    ``baseline_defaults``, then :data:`QUICK_BASELINE_KWARGS` with ``quick`` (``{}`` for MostPopular)."""
    from refit_gym.baselines import DEFAULT_GRIDS
    from refit_gym.scenarios import SCENARIOS

    sc = SCENARIOS[scenario]
    return {b: {**sc.baseline_defaults.get(b, {}), **(QUICK_BASELINE_KWARGS.get(b, {}) if quick else {})}
            for b in sc.baselines if sc.sequential or b not in DEFAULT_GRIDS}


def effective_hyperparams(algo: str, env_id: str, quick: bool, override: Optional[Path],
                          steps: int = QUICK_STEPS) -> Dict[str, Any]:
    """Defaults of ``agents/hyperparams/<algo>.yml``, then the --quick settings (:func:`quick_hyperparams`
    for a backbone of ``steps`` denoising steps), then ``--hyperparams``."""
    from refit_gym.experiments.hyperparams import load_hyperparams

    params = load_hyperparams(algo, env_id)
    if quick:
        params.update(quick_hyperparams(algo, steps))
    if override is not None:
        params.update(load_hyperparams(algo, env_id, override))
    return params


# ============================================================================ runs
class Runner:
    """Computes (or reuses) the cells of the plan; every result lands in ``OUT/runs`` atomically."""

    def __init__(self, out: Path, data, settings: Settings, device: str, checkpoints: Dict[str, Path],
                 bar=None):
        from refit_gym.utils import describe_machine

        self.out, self.data, self.settings, self.device = out, data, settings, device
        self.given_checkpoints = checkpoints
        self.bar = bar
        self.machine = describe_machine(device)  # recorded in every cell this runner computes

    # ---------------------------------------------------------------- pretraining
    def checkpoint(self, backbone: str, seed: int) -> Tuple[Path, Dict[str, Any]]:
        """The pretrained checkpoint of ``backbone`` for ``seed`` and its record (pretraining it when absent)."""
        if backbone in self.given_checkpoints:
            path = self.given_checkpoints[backbone]
            return path, {"source": "given", "checkpoint": str(path)}
        path = self.out / "checkpoints" / f"{backbone}-seed{seed}.pt"
        record_path = path.with_suffix(".json")
        record = read_json(record_path)
        if path.is_file():
            return path, record or {"source": "found", "checkpoint": str(path)}
        work = self.out / "pretrain" / f"{backbone}-seed{seed}"
        argv = pretrain_argv(backbone, self.settings) + ["--data", self.settings.data, "--out", str(work),
                                                          "--seed", str(seed), "--device", self.device,
                                                          "--no-progress", "--resume"]
        if self.bar is not None:
            self.bar.set_postfix_str(f"pretraining {backbone} seed {seed}")
        t0 = time.perf_counter()
        with run_log(self.out / "logs" / f"pretrain-{backbone}-seed{seed}.log") as log:
            log("python scripts/pretrain.py " + shlex.join(argv))
            metrics = load_script("pretrain").main(argv)
        seconds = time.perf_counter() - t0
        tmp = path.with_name(f".{path.name}.tmp")
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(metrics["checkpoint"], tmp)
        os.replace(tmp, path)
        record = {"source": "pretrained", "checkpoint": str(path), "seconds": seconds,
                  "seconds_per_epoch": metrics.get("seconds_per_epoch"), "epochs_run": metrics.get("epochs_run"),
                  "best_epoch": metrics.get("best_epoch"), "argv": ["scripts/pretrain.py"] + argv}
        write_json(record_path, record)
        return path, record

    # ---------------------------------------------------------------- cells
    def run(self, row: RowSpec, seed: int) -> Dict[str, Any]:
        """Compute the cell (row, seed) and write it; returns its record."""
        t0 = time.perf_counter()
        tag = seed_tag(row, seed)
        with run_log(self.out / "logs" / f"{row.name}-seed{tag}.log") as log:
            log(f"{row.label} ({row.kind}), seed {tag}, data {self.data.name}")
            if row.kind == "baseline":
                record = self._baseline(row, seed, log)
            elif row.kind == "pretrained":
                record = self._pretrained(row, seed, log)
            else:
                record = self._finetuned(row, seed, log)
        record.update(method=row.name, label=row.label, kind=row.kind, seed=seed if row.seeded else None,
                      dataset=self.data.name, seconds=time.perf_counter() - t0, spec=asdict(row),
                      machine=self.machine, finished=time.strftime("%Y-%m-%dT%H:%M:%S"))
        write_json(run_path(self.out, row, seed), record)
        return record

    def _baseline(self, row: RowSpec, seed: int, log) -> Dict[str, Any]:
        """Fit the baseline ``row.baseline`` on train and evaluate it on valid and test with the scenario's
        protocol. ``cf`` / ``social``: ItemKNN's ``k`` and EASE's ``lam`` chosen on validation
        (:func:`refit_gym.baselines.select_on_validation` over ``DEFAULT_GRIDS``); any other baseline is
        :meth:`refit_gym.scenarios.Scenario.baseline_score_fn` with ``settings.baseline_kwargs`` (a seeded
        one, e.g. SASRec: ``torch.manual_seed(seed)`` first and ``seed`` passed to its fit)."""
        import torch

        from refit_gym.baselines import BASELINES, DEFAULT_GRIDS, select_on_validation
        from refit_gym.scenarios import SCENARIOS

        scenario = SCENARIOS[row.scenario]
        metric = self.settings.select_metric
        selection: List[Dict[str, Any]] = []
        t0 = time.perf_counter()
        if not scenario.sequential and row.baseline in DEFAULT_GRIDS:
            cls = BASELINES[row.baseline]
            pname, grid = DEFAULT_GRIDS[row.baseline]
            cast = int if pname == "k" else float  # as scripts/evaluate.py: ItemKNN's k is an integer
            log(f"choosing {pname} over {list(grid)} by valid {metric}")
            sel = select_on_validation(lambda v: cls(**{pname: cast(v)}), grid, self.data, metric=metric)
            model = sel.model
            selection = [{pname: cast(r["value"]), metric: r[metric]} for r in sel.table]
            params, selected_on = model.params(), f"valid {metric}"
            score_fn = lambda users, split: model.scores(users)  # noqa: E731  (masking: Scenario.evaluate)
        else:
            params = dict(self.settings.baseline_kwargs.get(row.baseline, {}))
            if row.seeded:
                torch.manual_seed(seed)  # the initial weights
                params["seed"] = seed  # the fit's batch order and dropout
            log(f"fitting {row.baseline} with {params}")
            score_fn = scenario.baseline_score_fn(row.baseline, self.data, **params)
            selected_on = "fixed settings (the scenario's baseline_defaults)"
        fit_seconds = time.perf_counter() - t0
        splits = {s: scenario.evaluate(score_fn, self.data, s) for s in ("valid", "test")}
        log(f"{BASELINE_LABELS[row.baseline]} {params}: valid {metric} {splits['valid'][metric]:.4f}, "
            f"test {metric} {splits['test'][metric]:.4f}")
        return dict(params=params, selection=selection, selected_on=selected_on, fit_seconds=fit_seconds, **splits)

    def _pretrained(self, row: RowSpec, seed: int, log) -> Dict[str, Any]:
        from refit_gym.experiments.finetune import evaluate_splits
        from refit_gym.diffusion import load_backbone

        path, record = self.checkpoint(row.backbone, seed)
        digest = file_sha1(path)
        known = self.known_metrics(row.backbone, path, digest)
        if known is not None:  # the same file scored for another seed: inference is deterministic, reuse it
            splits, reused_from = known
            log(f"{path}: metrics of the identical checkpoint reused from {reused_from}")
        else:
            adapter, _ = load_backbone(path, self.data, device=self.device)
            splits, reused_from = evaluate_splits(adapter, self.data, row.env_id), None
        log(f"{path}: valid ndcg@20 {splits['valid']['ndcg@20']:.4f}, test ndcg@20 {splits['test']['ndcg@20']:.4f}")
        return dict(checkpoint=str(path), checkpoint_sha1=digest, metrics_reused_from=reused_from, pretrain=record,
                    **splits)

    def known_metrics(self, backbone: str, checkpoint: Path, digest: str
                      ) -> Optional[Tuple[Dict[str, Dict[str, float]], str]]:
        """(``{"valid", "test"}`` metrics, the record's file) of ``checkpoint`` from any pretrained-row record of
        ``backbone`` made from a file with the same SHA-1, or None."""
        for f in sorted((self.out / "runs" / backbone).glob("seed*.json")):
            record = read_json(f)
            if record and record.get("checkpoint_sha1") == digest and record.get("checkpoint") == str(checkpoint):
                return {"valid": record["valid"], "test": record["test"]}, str(f)
        return None

    def pretrained_metrics(self, row: RowSpec, seed: int, checkpoint: Path) -> Optional[Dict[str, Dict[str, float]]]:
        """Validation and test metrics of ``checkpoint`` from the pretrained rows of ``row.backbone`` (a record
        of the same checkpoint file, by path and SHA-1), or None when none exists: fine-tuning then evaluates it."""
        known = self.known_metrics(row.backbone, checkpoint, file_sha1(checkpoint))
        return None if known is None else known[0]

    def _finetuned(self, row: RowSpec, seed: int, log) -> Dict[str, Any]:
        from refit_gym.experiments.finetune import finetune

        path, _ = self.checkpoint(row.backbone, seed)
        params = self.settings.hyperparams[f"{row.method}|{row.env_id}"]
        n_timesteps = int(float(params.get("n_timesteps", 1e5)))
        eval_freq = max(n_timesteps // self.settings.eval_points, 1)
        if self.bar is not None:
            self.bar.set_postfix_str(f"{row.name} seed {seed}")
        m = finetune(row.algo, row.env_id, self.data, path, reward=row.reward, hyperparams=params, seed=seed,
                     device=self.device, out=self.out / "finetune" / row.name / f"seed{seed}", eval_freq=eval_freq,
                     save_freq=eval_freq, resume=True, select_metric=self.settings.select_metric,
                     pretrained_metrics=self.pretrained_metrics(row, seed, path), log=log)
        return dict(checkpoint=str(path), valid=m["best"]["valid"], test=m["best"]["test"], pretrained=m["pretrained"],
                    final=m["final"], best_timesteps=m["best"]["num_timesteps"], num_timesteps=m["num_timesteps"],
                    history=m["history"], train_seconds=m["train_seconds"], hyperparams=m["hyperparams"],
                    eval_freq=eval_freq, selected_on=m["selected_on"])


# ============================================================================ cost and scaling
def scaling_points(fractions: Sequence[float]) -> List[Tuple[str, float, float]]:
    """(name, user fraction, item fraction): the users axis at all items, the items axis at all users."""
    fr = sorted({float(f) for f in fractions} | {1.0})
    pts = [(f"users{f:g}", f, 1.0) for f in fr if f < 1] + [(f"items{f:g}", 1.0, f) for f in fr if f < 1]
    return pts + [("all", 1.0, 1.0)]


def _rss_kb(field_name: str) -> Optional[int]:
    """``VmRSS`` / ``VmHWM`` of this process in kB from /proc (None where /proc is absent)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's RSS high-water mark to the current RSS (Linux >= 4.0); False where impossible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return _rss_kb("VmHWM") is not None
    except OSError:
        return False


def measure_scaling_point(spec: Dict[str, Any]) -> Dict[str, Any]:
    """One cost point, meant to run in a fresh process (see the module docstring). ``spec`` keys: data,
    backbone, env_id, backbone_kwargs, users_frac, items_frac, device, threads, max_rollouts."""
    import gc
    import resource

    import numpy as np
    import torch

    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    from agents import ReFiT
    from refit_gym.experiments.hyperparams import load_hyperparams, split_hyperparams
    from refit_gym.data import load_dataset
    from refit_gym.diffusion import build_backbone
    from refit_gym.diffusion.training import PretrainConfig, pretrain
    from refit_gym.envs.factory import make_batched_env
    from refit_gym.utils import resolve_device

    device = resolve_device(spec["device"])
    full = load_dataset(spec["data"])
    data = full
    if spec["users_frac"] < 1:
        n = max(1, round(spec["users_frac"] * full.n_users))
        users = np.sort(np.random.default_rng(SCALING_SEED).choice(full.n_users, size=n, replace=False))
        data = data.subset_users(users)
    if spec["items_frac"] < 1:
        m = max(1, round(spec["items_frac"] * full.n_items))
        popularity = np.asarray(full.train.sum(axis=0)).ravel()
        data = data.subset_items(np.sort(np.argsort(-popularity, kind="stable")[:m]))
    del full
    gc.collect()

    params = load_hyperparams("refit", spec["env_id"])  # the environment's default ReFiT hyperparameters
    zoo, kwargs = split_hyperparams(params)
    n_envs = int(zoo.get("n_envs", 16))
    env = make_batched_env(spec["backbone"], data, n_envs=n_envs, checkpoint="untrained",
                           backbone_kwargs=spec["backbone_kwargs"], device=device, seed=SCALING_SEED)
    model = ReFiT(env.adapter, env, seed=SCALING_SEED, device=device, **kwargs)
    T = env.adapter.schedule.steps
    steps_per_rollout = n_envs * T
    users_per_rollout = n_envs // model.n_traj_per_user
    rollouts_per_epoch = math.ceil(data.n_users / users_per_rollout)
    timed = rollouts_per_epoch if spec.get("max_rollouts") is None else min(rollouts_per_epoch,
                                                                             int(spec["max_rollouts"]))
    model.learn(steps_per_rollout)  # warm-up: one rollout + update (lazy initialisation, allocator pools)
    gc.collect()
    rss_before = _rss_kb("VmRSS")
    hwm_reset = _reset_peak_rss()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    model.learn(timed * steps_per_rollout, reset_num_timesteps=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    peak_kb = _rss_kb("VmHWM") if hwm_reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = dict(
        n_users=int(data.n_users), n_items=int(data.n_items), users_frac=spec["users_frac"],
        items_frac=spec["items_frac"], T=int(T), n_envs=n_envs, n_traj_per_user=model.n_traj_per_user,
        rollouts_per_epoch=rollouts_per_epoch, rollouts_timed=timed, extrapolated=timed < rollouts_per_epoch,
        timed_seconds=seconds, epoch_seconds=seconds * rollouts_per_epoch / timed,
        peak_rss_mb=peak_kb / 1024, rss_before_mb=None if rss_before is None else rss_before / 1024,
        epoch_extra_rss_mb=None if (rss_before is None or not hwm_reset) else (peak_kb - rss_before) / 1024,
        peak_scope="epoch" if hwm_reset else "process",
        cuda_peak_mb=torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
        device=str(device), threads=torch.get_num_threads(), hyperparams=params,
    )
    # pretraining epochs of the same architecture on the same data (scripts/pretrain.py's defaults otherwise):
    # the first one warms up, the median of the others is the pretraining epoch time; validation (untimed by
    # pretrain() anyway) is replaced by a constant so that it costs nothing here
    adapter = build_backbone(spec["backbone"], data, **spec["backbone_kwargs"])
    cfg = PretrainConfig(epochs=1 + PRETRAIN_TIMED_EPOCHS, patience=0, seed=SCALING_SEED)
    pre = pretrain(adapter, data, cfg, out_dir=None, device=device, tensorboard=False, progress=False,
                   evaluate_fn=lambda *_: {cfg.metric: 0.0}, log=lambda m: None)
    result["pretrain_epoch_seconds"] = float(np.median([h["epoch_seconds"] for h in pre.history[1:]]))
    result["finetune_over_pretrain"] = result["epoch_seconds"] / result["pretrain_epoch_seconds"]
    return result


def loglog_slope(x: Sequence[float], y: Sequence[Optional[float]]) -> Optional[float]:
    """Least-squares slope of log(y) against log(x); None with fewer than 2 usable points."""
    import numpy as np

    pts = [(a, b) for a, b in zip(x, y) if a and b is not None and a > 0 and b > 0]
    if len({a for a, _ in pts}) < 2:
        return None
    lx, ly = np.log([a for a, _ in pts]), np.log([b for _, b in pts])
    return float(np.polyfit(lx, ly, 1)[0])


def scaling_summary(points: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
    """Slopes of time and memory along each axis, from the measured points (name -> result)."""
    out: Dict[str, Any] = {}
    for axis, key, n_key in (("users", "users", "n_users"), ("items", "items", "n_items")):
        pts = sorted([p for name, p in points.items() if name.startswith(key) or name == "all"],
                     key=lambda p: p[n_key])
        x = [p[n_key] for p in pts]
        out[axis] = dict(n=x, time_slope=loglog_slope(x, [p["epoch_seconds"] for p in pts]),
                         memory_slope=loglog_slope(x, [p.get("epoch_extra_rss_mb") for p in pts]),
                         peak_rss_slope=loglog_slope(x, [p["peak_rss_mb"] for p in pts]))
    full = points.get("all")
    if full:
        out["finetune_over_pretrain"] = full["finetune_over_pretrain"]
        out["epoch_seconds"] = full["epoch_seconds"]
        out["pretrain_epoch_seconds"] = full["pretrain_epoch_seconds"]
    return out


def run_scaling(out: Path, settings: Settings, backbone: str, env_id: str, device: str, threads: Optional[int],
                max_rollouts: Optional[int], fractions: Sequence[float], bar=None,
                done: Optional[List[str]] = None) -> Dict[str, Any]:
    """Measure (or reuse) every scaling point of ``backbone``, each in a fresh subprocess."""
    kwargs = backbone_kwargs_for(backbone, settings)
    points: Dict[str, Dict[str, Any]] = {}
    for name, uf, itf in scaling_points(fractions):
        path = out / "scaling" / backbone / f"{name}.json"
        res = read_json(path)
        if res is None:
            if bar is not None:
                bar.set_postfix_str(f"scaling {backbone} {name}")
            spec = dict(data=settings.data, backbone=backbone, env_id=env_id, backbone_kwargs=kwargs, users_frac=uf,
                        items_frac=itf, device=device, threads=threads, max_rollouts=max_rollouts)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.result")
            path.parent.mkdir(parents=True, exist_ok=True)
            logfile = out / "logs" / f"scaling-{backbone}-{name}.log"
            logfile.parent.mkdir(parents=True, exist_ok=True)
            t0 = time.perf_counter()
            with open(logfile, "a") as fh:
                proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--scaling-point",
                                       json.dumps(spec), "--scaling-result", str(tmp)], stdout=fh, stderr=fh,
                                      cwd=str(REPO))
            if proc.returncode != 0 or not tmp.is_file():
                raise RuntimeError(f"scaling point {backbone}/{name} failed (exit {proc.returncode}); see {logfile}")
            res = json.loads(tmp.read_text())
            tmp.unlink()
            res.update(name=name, backbone=backbone, seconds=time.perf_counter() - t0)
            write_json(path, res)
            if done is not None:
                done.append(f"scaling/{backbone}/{name}")
        if bar is not None:
            bar.update(1)
        points[name] = res
    return dict(points=points, summary=scaling_summary(points), backbone_kwargs=kwargs)


# ============================================================================ the report
def fmt_mean_std(values: Sequence[float], digits: int = 4, pct: bool = False) -> str:
    import numpy as np

    v = np.asarray(values, dtype=float)
    unit = "%" if pct else ""
    mean = f"{v.mean():+.{digits}f}{unit}" if pct else f"{v.mean():.{digits}f}"
    return mean if len(v) < 2 else f"{mean} ± {v.std(ddof=1):.{digits}f}{unit}"


def aggregate(out: Path, rows: Sequence[RowSpec], seeds: Sequence[int]) -> List[Dict[str, Any]]:
    """Per row: the per-seed records found on disk, the means and sample stds, relative changes."""
    import numpy as np

    table = []
    for row in rows:
        expected = row_seeds(row, seeds)
        records = {s: read_json(run_path(out, row, s)) for s in expected}
        records = {s: r for s, r in records.items() if r is not None}
        entry: Dict[str, Any] = dict(name=row.name, label=row.label, kind=row.kind, spec=asdict(row),
                                     seeds_expected=len(expected), seeds_done=sorted(records),
                                     complete=len(records) == len(expected))
        if records:
            for split in ("valid", "test"):
                keys = sorted(set.intersection(*(set(r[split]) for r in records.values())))
                vals = {k: [float(r[split][k]) for r in records.values()] for k in keys}
                entry[split] = {k: dict(mean=float(np.mean(v)), std=float(np.std(v, ddof=1)) if len(v) > 1 else None,
                                        values=v) for k, v in vals.items()}
            entry["seconds"] = dict(mean=float(np.mean([r["seconds"] for r in records.values()])),
                                    values=[r["seconds"] for r in records.values()])
            entry["machines"] = sorted({r.get("machine") or MACHINE_NOT_RECORDED for r in records.values()})
            if row.kind == "finetuned":
                rel = {k: [100 * (r["test"][k] - r["pretrained"]["test"][k]) / r["pretrained"]["test"][k]
                           if r["pretrained"]["test"][k] else float("nan") for r in records.values()]
                       for k in RELATIVE_METRICS}
                entry["relative_to_pretrained_pct"] = {k: dict(mean=float(np.mean(v)), values=v) for k, v in rel.items()}
                entry["history"] = {str(s): r["history"] for s, r in records.items()}
        table.append(entry)
    return table


def seed0_checkpoint(out: Path, backbone: str) -> str:
    """The checkpoint seed 0 of ``backbone`` started from (a given one, as recorded by its pretrained row), or
    where the benchmark keeps the one it pretrains."""
    record = read_json(out / "runs" / backbone / "seed0.json")
    return record["checkpoint"] if record and record.get("checkpoint") else str(out / "checkpoints" / f"{backbone}-seed0.pt")


def machines_lines(table: List[Dict[str, Any]]) -> List[str]:
    """Where the times of the table were taken, as report lines: one line per machine naming its rows, or nothing
    when no record names its machine (results from before the benchmark recorded it)."""
    by_machine: Dict[str, List[str]] = {}
    for e in table:
        for m in e.get("machines", []):
            by_machine.setdefault(m, []).append(e["label"])
    if set(by_machine) <= {MACHINE_NOT_RECORDED}:
        return []
    return ["", "Machines (times are comparable only within one):"] + [
        f"- {m}: {', '.join(labels)}" for m, labels in sorted(by_machine.items())]


def seeds_note(entry: Dict[str, Any]) -> str:
    """``" (partial: n/N seeds)"`` for a row with only some of its seeds done, else ``""``."""
    if entry["complete"] or not entry["seeds_done"]:
        return ""
    return f" (partial: {len(entry['seeds_done'])}/{entry['seeds_expected']} seeds)"


def reference_sentence(table: List[Dict[str, Any]], select_metric: str, name: str = "ease",
                       label: str = "EASE") -> Tuple[str, Dict[str, Any]]:
    """Whether the best fine-tuned model (chosen by mean validation ``select_metric``) beats the reference row
    ``name`` (shown as ``label``: EASE for ``cf`` / ``social``, SASRec for sequences) on test NDCG@20 and
    Recall@20, means over seeds (a reference with only some of its seeds done is used and said to be partial).
    Returns (sentence, info); info is empty when a row is missing."""
    ref = next((e for e in table if e["name"] == name and e["seeds_done"]), None)
    tuned = [e for e in table if e["kind"] == "finetuned" and e["complete"]]
    if ref is None or not tuned:
        why = label if ref is None else "any fine-tuned model"
        return f"No comparison with {label} yet: the results of {why} are missing.", {}
    best = max(tuned, key=lambda e: e["valid"][select_metric]["mean"])
    parts = []
    info: Dict[str, Any] = dict(reference=name, reference_label=label, best=best["name"], best_label=best["label"],
                                chosen_on=f"mean valid {select_metric}")
    for k, metric_name in (("ndcg@20", "NDCG@20"), ("recall@20", "Recall@20")):
        a, b = best["test"][k]["mean"], ref["test"][k]["mean"]
        diff, rel = a - b, (100 * (a - b) / b if b else float("nan"))
        info[k] = dict(finetuned=a, reference=b, difference=diff, relative_pct=rel, beats=a > b)
        if name == "ease":
            info[k]["ease"] = b  # the key of earlier results.json files
        parts.append(f"{'beats' if a > b else 'does not beat'} {label} on test {metric_name} "
                     f"({a:.4f} vs {b:.4f}: {diff:+.4f}, {rel:+.1f}%)")
    info["reference_seeds"] = len(ref["seeds_done"])
    return (f"The best fine-tuned diffusion model by mean validation {select_metric}, {best['label']}, "
            f"{parts[0]} and {parts[1]}{seeds_note(ref).replace(' (partial', f' ({label} partial')}."), info


def goal_sentence(table: List[Dict[str, Any]], select_metric: str, ref_name: str = "sasrec", ref_label: str = "SASRec",
                  goal_pct: float = SEQUENCE_GOAL_PCT) -> Tuple[str, Dict[str, Any]]:
    """The issue's goal on sequence data, for each complete ReFiT row (method ``refit``; without one, the best
    fine-tuned row by mean validation ``select_metric``): a mean relative test NDCG@20 change over its own
    pretrained start (the table's ΔNDCG@20, percent) of at least ``goal_pct``, and a higher mean test NDCG@20
    than the reference row ``ref_name``. Returns (sentence, info); info ``met``: some row meets both."""
    head = f"Goal (+{goal_pct:g}% test NDCG@20 over the pretrained backbone, and above {ref_label})"
    tuned = [e for e in table if e["kind"] == "finetuned" and e["complete"]]
    if not tuned:
        return f"{head}: not measured yet, the fine-tuned results are missing.", {}
    ref = next((e for e in table if e["name"] == ref_name and e["seeds_done"]), None)
    targets = [e for e in tuned if e["spec"]["method"] == "refit"] or \
        [max(tuned, key=lambda e: e["valid"][select_metric]["mean"])]
    parts, rows = [], []
    for e in targets:
        rel = e["relative_to_pretrained_pct"]["ndcg@20"]
        a = e["test"]["ndcg@20"]["mean"]
        b = None if ref is None else ref["test"]["ndcg@20"]["mean"]
        row = dict(name=e["name"], label=e["label"], relative_pct=rel["mean"], relative_pct_values=rel["values"],
                   ndcg20=a, reference_ndcg20=b, met_relative=rel["mean"] >= goal_pct,
                   beats_reference=None if b is None else a > b)
        row["met"] = bool(row["met_relative"] and row["beats_reference"])
        rows.append(row)
        n = len(e["seeds_done"])
        vs = (f"{ref_label} missing" if b is None else
              f"{'above' if a > b else 'not above'} {ref_label}: {a:.4f} vs {b:.4f}"
              + seeds_note(ref).replace(" (partial", f" ({ref_label} partial"))
        verdict = "met" if row["met"] else (f"not decided ({ref_label} missing)" if b is None and row["met_relative"]
                                            else "not met")
        parts.append(f"{e['label']}{'' if e['spec']['method'] == 'refit' else f' (best by mean validation {select_metric})'}"
                     f" changes test NDCG@20 by {fmt_mean_std(rel['values'], 1, pct=True)} over its pretrained start "
                     f"(mean over {n} seed{'s' if n != 1 else ''}; {'at least' if row['met_relative'] else 'below'} "
                     f"+{goal_pct:g}%) and is {vs}: goal {verdict}")
    info = dict(target_pct=goal_pct, reference=ref_name, rows=rows, met=any(r["met"] for r in rows))
    return f"{head}: " + "; ".join(parts) + ".", info


def fmt_seconds(s: float) -> str:
    return f"{s:.1f} s" if s < 120 else (f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.2f} h")


SCENARIO_PROTOCOLS = {
    False: "masked full ranking over all items (the user's known items excluded) of every user with a held-out item",
    True: "leave-one-out full ranking over all items of each user's one held-out item (history not masked); with "
          "one target per user Recall@K = HR@K (hit rate)",
}


def write_report(out: Path, settings: Settings, rows: Sequence[RowSpec], seeds: Sequence[int],
                 scaling: Dict[str, Dict[str, Any]], invocation: Dict[str, Any], data_summary: str,
                 scaling_note: Optional[str] = None) -> Dict[str, Any]:
    """Build ``report.md``, ``results.json`` and the plots from the files in ``out``.

    The reference sentence compares the best fine-tuned model with the scenario's
    :data:`REFERENCE_BASELINE` row; sequence scenarios add the goal sentence (:func:`goal_sentence`).
    ``scaling_note``: why there are no scaling measurements (written instead of the section)."""
    from refit_gym.scenarios import SCENARIOS

    scenario = SCENARIOS[settings.scenario]
    table = aggregate(out, rows, seeds)
    ref_name = REFERENCE_BASELINE[scenario.name]
    ref_label = BASELINE_LABELS[ref_name]
    sentence, ref_info = reference_sentence(table, settings.select_metric, ref_name, ref_label)
    goal, goal_info = (goal_sentence(table, settings.select_metric, ref_name, ref_label, SEQUENCE_GOAL_PCT)
                       if scenario.sequential else (None, {}))
    invocations = read_json(out / "invocations.json") or []
    pretrain_records = [read_json(p) for p in sorted((out / "checkpoints").glob("*.json"))]
    pretrain_seconds = sum(r.get("seconds") or 0 for r in pretrain_records if r)
    run_seconds = sum(sum(e["seconds"]["values"]) for e in table if "seconds" in e)
    scaling_seconds = sum(p.get("seconds", 0) for res in scaling.values() for p in res["points"].values())
    plots = {k: plot(arg, out / f"{k}.png") for k, plot, arg in
             (("validation_vs_time", plot_validation, table), ("cost_scaling", plot_scaling, scaling))}

    n_seeds = len(seeds)
    from refit_gym.baselines import DEFAULT_GRIDS

    present = {r.baseline for r in rows if r.kind == "baseline"}
    grids = [f"{BASELINE_LABELS[b]}'s {DEFAULT_GRIDS[b][0]}" for b in BASELINE_LABELS
             if b in present and b in DEFAULT_GRIDS and not scenario.sequential]
    baseline_note = f"{' and '.join(grids)} chosen on validation; " if grids else ""
    fixed = "".join(f"{BASELINE_LABELS[b]} fitted with fixed settings {kw}"
                    f"{' and one run per seed' if b in SEEDED_BASELINES else ''}; "
                    for b, kw in settings.baseline_kwargs.items() if kw and b in present)
    headers = ["Recall@10", "Recall@20", "NDCG@10", "NDCG@20"]
    if scenario.sequential:
        headers = ["HR@10 (= Recall@10)", "HR@20 (= Recall@20)", "NDCG@10", "NDCG@20"]
    lines = [f"# Benchmark: {data_summary.split(':')[0]}", "",
             f"Data: {data_summary}.  ",
             f"Scenario: {scenario.name} (environment {scenario.env_id}); protocol: "
             f"{SCENARIO_PROTOCOLS[scenario.sequential]}.  ",
             f"Settings: {'--quick (synthetic-size settings; not the paper recipe)' if settings.quick else 'full'}; "
             f"seeds {list(seeds)}; model selection on validation {settings.select_metric} only "
             f"({baseline_note}the fine-tuned checkpoint among {settings.eval_points} evaluations "
             f"+ the start); {fixed}test metrics of the selected models.", "",
             "## Results (test, mean ± sample std over seeds)", "",
             "| method | " + " | ".join(headers) + " | ΔNDCG@20 vs pretrained | ΔRecall@20 vs pretrained | time / seed |",
             "|---|---|---|---|---|---|---|---|"]
    for e in table:
        if not e["seeds_done"]:
            miss = f"missing (0/{e['seeds_expected']} seeds)"
            lines.append(f"| {e['label']} | " + " | ".join([miss] * 7) + " |")
            continue
        cells = [fmt_mean_std(e["test"][k]["values"]) for k in TABLE_METRICS]
        if e["kind"] == "finetuned":
            cells += [fmt_mean_std(e["relative_to_pretrained_pct"][k]["values"], 1, pct=True) for k in RELATIVE_METRICS]
        else:
            cells += ["—", "—"]
        cells.append(fmt_seconds(e["seconds"]["mean"]))
        note = " (deterministic)" if not e["spec"]["seeded"] and n_seeds > 1 else seeds_note(e)
        lines.append(f"| {e['label']}{note} | " + " | ".join(cells) + " |")
    lines += machines_lines(table)
    lines += ["", "Δ: relative change of the fine-tuned model's test metric over its own pretrained start "
              "(same checkpoint, same seed), mean ± std over seeds. Time: wall-clock of one cell (fine-tuning "
              "and its evaluations; pretraining is counted separately below)."
              + (" With one held-out item per user, Recall@K = HR@K." if scenario.sequential else ""), "",
              sentence, ""]
    if goal is not None:
        lines += [goal, ""]
    if scaling_note:
        lines += ["## Cost and scaling of one ReFiT fine-tuning epoch", "", f"Not measured: {scaling_note}.", ""]

    if scaling:
        lines += ["## Cost and scaling of one ReFiT fine-tuning epoch", "",
                  "One epoch = every user once through a whole denoising trajectory with the ReFiT update "
                  "(default ReFiT hyperparameters of the environment; users drawn per rollout as in training). "
                  "Each point runs in a fresh process; peak memory = the RSS high-water mark during the epoch "
                  "(`VmHWM`, reset after the setup), shown as the increase over the resident set before the epoch.", "",
                  "| backbone | point | users | items | rollouts | epoch (s) | peak RSS (MB) | epoch Δ RSS (MB) | pretrain epoch (s) | fine-tune / pretrain |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for b, res in scaling.items():
            for name, p in res["points"].items():
                extra = "n/a" if p.get("epoch_extra_rss_mb") is None else f"{p['epoch_extra_rss_mb']:.1f}"
                ext = f" ({p['rollouts_timed']} timed, extrapolated)" if p.get("extrapolated") else ""
                lines.append(f"| {BACKBONE_LABELS.get(b, b)} | {name} | {p['n_users']} | {p['n_items']} | "
                             f"{p['rollouts_per_epoch']}{ext} | {p['epoch_seconds']:.3f} | {p['peak_rss_mb']:.0f} | "
                             f"{extra} | {p['pretrain_epoch_seconds']:.3f} | {p['finetune_over_pretrain']:.1f}× |")
        lines.append("")
        for b, res in scaling.items():
            s = res["summary"]
            for axis in ("users", "items"):
                ts, ms = s[axis]["time_slope"], s[axis]["memory_slope"]
                verdict = "n/a" if ts is None else ("consistent with linear cost (≤ 1.1)" if ts <= 1.1
                                                    else "super-linear (> 1.1)")
                lines.append(f"- {BACKBONE_LABELS.get(b, b)}, {axis}: log-log slope of epoch time "
                             f"{'n/a' if ts is None else f'{ts:.2f}'} — {verdict}; of epoch memory "
                             f"{'n/a' if ms is None else f'{ms:.2f}'}.")
            if "finetune_over_pretrain" in s:
                lines.append(f"- {BACKBONE_LABELS.get(b, b)}: one fine-tuning epoch takes "
                             f"{s['finetune_over_pretrain']:.1f}× one pretraining epoch "
                             f"({s['epoch_seconds']:.2f} s vs {s['pretrain_epoch_seconds']:.2f} s, all users and items).")
        lines.append("")

    this = invocation["seconds"]
    total_inv = sum(i.get("seconds", 0) for i in invocations)
    lines += ["## Wall-clock", "",
              f"- this invocation: {fmt_seconds(this)}; all {len(invocations)} invocations so far: {fmt_seconds(total_inv)}",
              f"- recorded compute in the result files: pretraining {fmt_seconds(pretrain_seconds)}, table cells "
              f"{fmt_seconds(run_seconds)}, scaling {fmt_seconds(scaling_seconds)}", "",
              "## Commands", "", "```bash"] + [shlex.join(i["argv"]) + ("  # interrupted" if i.get("interrupted") else "")
                                               for i in invocations] + ["```", "",
              "Single cells can be reproduced with the scripts the benchmark calls:", "", "```bash"]
    for r in pretrain_records:
        if r and r.get("argv"):
            lines.append("python " + shlex.join(r["argv"]))
    for row in rows:
        if row.kind == "finetuned":
            hp = repo_relative(out / "hyperparams" / f"{row.method}-{row.backbone}.yml")
            params = settings.hyperparams.get(f"{row.method}|{row.env_id}", {})
            eval_freq = max(int(float(params.get("n_timesteps", 1e5))) // settings.eval_points, 1)
            lines.append("python " + shlex.join(["scripts/train.py", "--algo", row.algo, "--env", row.env_id, "--data",
                         settings.data, "--checkpoint", seed0_checkpoint(out, row.backbone), "--reward",
                         row.reward, "--hyperparams", str(hp), "--seed", "0", "--eval-freq", str(eval_freq),
                         "--select-metric", settings.select_metric, "--out", f"runs/{row.name}-seed0"]))
        elif row.kind == "baseline" and not scenario.sequential:
            lines.append("python " + shlex.join(["scripts/evaluate.py", "--baseline", row.baseline, "--data",
                                                 settings.data, "--split", "test", "--select-metric",
                                                 settings.select_metric]))
        elif row.kind == "baseline":  # scripts/evaluate.py has no sequence baselines: the same calls as the cell
            lit = lambda v: json.dumps(v) if isinstance(v, str) else repr(v)  # noqa: E731  (double-quoted strings)
            kw = dict(settings.baseline_kwargs.get(row.baseline, {}), **({"seed": 0} if row.seeded else {}))
            args = "".join(f", {k}={lit(v)}" for k, v in kw.items())
            code = ("import torch; from refit_gym.data import load_dataset; from refit_gym.scenarios import SCENARIOS; "
                    f"s = SCENARIOS[{lit(scenario.name)}]; d = load_dataset({lit(settings.data)}); "
                    + ("torch.manual_seed(0); " if row.seeded else "")
                    + f"print(s.evaluate(s.baseline_score_fn({lit(row.baseline)}, d{args}), d, \"test\"))")
            lines.append("python -c " + shlex.quote(code))
    lines += ["```", "", "Plots: `validation_vs_time.png` (validation NDCG@20 against fine-tuning wall-clock: means over seeds with "
              "±1 std bands, the pretrained start dashed, the best baseline dotted), `cost_scaling.png` (epoch time; "
              "peak RSS during the epoch and RSS before it: rollout tensors scale with items, not users). Every number: `results.json`; per-seed records: `runs/`; logs: `logs/`.", ""]
    (out / "report.md").write_text("\n".join(lines))
    comparison = dict(sentence=sentence, **ref_info)
    extra: Dict[str, Any] = {"ease_comparison": comparison} if ref_name == "ease" else {}
    if goal is not None:
        extra["goal"] = dict(sentence=goal, **goal_info)
    results = dict(dataset=data_summary, scenario=scenario.name, settings=asdict(settings), seeds=list(seeds),
                   rows=table, reference_comparison=comparison, **extra, scaling=scaling, scaling_note=scaling_note,
                   wall_clock=dict(this_invocation=this, all_invocations=total_inv, pretraining=pretrain_seconds,
                                   cells=run_seconds, scaling=scaling_seconds),
                   invocation=invocation, invocations=invocations,
                   plots={k: str(v) if v else None for k, v in plots.items()})
    write_json(out / "results.json", results)
    return results


# ============================================================================ main
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--data", help="dataset spec or folder for refit_gym.data.load_dataset (e.g. synthetic)")
    p.add_argument("--quick", action="store_true", help="synthetic-size settings: tiny backbones, a few steps, 1 seed")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="default 0 1 2 (0 with --quick)")
    from refit_gym.scenarios import SCENARIOS

    p.add_argument("--scenario", choices=sorted(SCENARIOS), default=None,
                   help="protocol, baselines and default backbones (default: inferred from the data: timestamped "
                        "sequences poi, sequences sequential, a social graph social, otherwise cf)")
    p.add_argument("--backbones", nargs="+", default=None,
                   help="backbone kinds (default: diffrec cfdiff for cf, the scenario's backbone otherwise: "
                        "social-diffrec, dreamrec, dreamrec-poi)")
    p.add_argument("--methods", nargs="+", default=None, choices=METHODS,
                   help="rows to include (default: all that exist for the scenario; baselines: pop itemknn ease "
                        "for cf / social, pop sasrec for sequential / poi)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default results/<dataset name>)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--select-metric", default="ndcg@20", help="validation metric of every model selection")
    p.add_argument("--eval-points", type=int, default=None, help="validations per fine-tuning run (default 10; 2 quick)")
    p.add_argument("--hyperparams", action="append", default=[], metavar="METHOD=FILE",
                   help="rl-zoo YAML overriding the defaults (agents/hyperparams/<algo>.yml) of one fine-tuning "
                        f"method ({', '.join(FINETUNE_METHODS)}); repeatable")
    p.add_argument("--reward", default=None,
                   help="reward of the ReFiT, DDPO, PPO and A2C rows (default: the environment's registered reward; "
                        "the naive row always uses topk); its constructor arguments: reward_kwargs in --hyperparams")
    p.add_argument("--pretrain-args", default="", help="extra scripts/pretrain.py arguments, one quoted string")
    p.add_argument("--skip-scaling", action="store_true", help="no cost-and-scaling measurements")
    p.add_argument("--scaling-only", action="store_true", help="only the cost-and-scaling measurements")
    p.add_argument("--scaling-backbones", nargs="+", default=None, help="backbones measured (default: --backbones)")
    p.add_argument("--scaling-fractions", type=float, nargs="+", default=[0.25, 0.5, 1.0],
                   help="fractions of the users / of the items measured (1 is always added)")
    p.add_argument("--scaling-max-rollouts", type=int, default=None,
                   help="time at most this many rollouts per point and extrapolate to the epoch (quick checks)")
    p.add_argument("--report-only", action="store_true", help="rebuild the report from the result files; compute nothing")
    p.add_argument("--fail-fast", action="store_true", help="stop at the first failing cell (default: log it, go on)")
    from refit_gym.diffusion import BACKBONES

    for b in sorted(BACKBONES):
        p.add_argument(f"--checkpoint-{b}", type=Path, default=None, dest=f"checkpoint_{b.replace('-', '_')}",
                       metavar="PATH", help=argparse.SUPPRESS if b not in BACKBONE_LABELS else
                       f"pretrained {b} checkpoint used for every seed (default: pretrain one per seed)")
    p.add_argument("--scaling-point", default=None, help=argparse.SUPPRESS)  # internal: one cost point (JSON spec)
    p.add_argument("--scaling-result", type=Path, default=None, help=argparse.SUPPRESS)
    return p


def parse_hyperparam_overrides(items: Sequence[str]) -> Dict[str, Path]:
    """``METHOD=FILE`` items -> {method: file}, each checked."""
    out: Dict[str, Path] = {}
    for item in items:
        method, sep, path = item.partition("=")
        if not sep or method not in FINETUNE_METHODS:
            raise SystemExit(f"error: --hyperparams {item!r}: expected METHOD=FILE with METHOD in "
                             f"{sorted(FINETUNE_METHODS)}")
        if not Path(path).is_file():
            raise SystemExit(f"error: --hyperparams {item!r}: no such file {path}")
        out[method] = Path(path)
    return out


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Run the benchmark described by ``argv`` (see the module docstring); returns ``results.json``'s content
    plus ``computed`` / ``reused`` / ``failed`` lists of this invocation."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.scaling_point is not None:  # internal: one cost point in this fresh process
        write_json(args.scaling_result, measure_scaling_point(json.loads(args.scaling_point)))
        return {}
    if not args.data:
        raise SystemExit("error: --data is required (a dataset folder, or 'synthetic')")
    if args.skip_scaling and args.scaling_only:
        raise SystemExit("error: --skip-scaling and --scaling-only contradict each other")
    if any(not 0 < f <= 1 for f in args.scaling_fractions):
        raise SystemExit(f"error: --scaling-fractions must lie in (0, 1], got {args.scaling_fractions}")
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    from refit_gym.data import load_dataset
    from refit_gym.utils import progress_bar, resolve_device

    from refit_gym.data.dataset import DataError
    from refit_gym.scenarios import SCENARIOS, scenario_for

    data = load_dataset(args.data)
    scenario = SCENARIOS[args.scenario or infer_scenario(data)]
    try:
        scenario.check_data(data)
    except DataError as e:
        raise SystemExit(f"error: scenario {scenario.name!r} does not fit the data "
                         f"({'--scenario' if args.scenario else 'inferred'}): {e}") from None
    backbones = args.backbones or default_backbones(scenario.name)
    methods = args.methods or scenario_methods(scenario.name)
    absent = [m for m in methods if m not in scenario_methods(scenario.name)]
    if absent:
        raise SystemExit(f"error: --methods {absent}: not a row of scenario {scenario.name!r}; its methods: "
                         f"{scenario_methods(scenario.name)}")
    device = str(resolve_device(args.device))
    seeds = args.seeds if args.seeds is not None else ([0] if args.quick else [0, 1, 2])
    if len(set(seeds)) != len(seeds):
        raise SystemExit(f"error: --seeds has duplicates: {seeds}")
    out = args.out or REPO / "results" / data.name
    out.mkdir(parents=True, exist_ok=True)
    try:
        rows = build_rows(backbones, methods, args.reward, scenario.name)
        for b in backbones:
            scenario_for(b).check_data(data)  # e.g. social-diffrec needs a social graph, dreamrec-poi timestamps
    except (ValueError, DataError) as e:
        raise SystemExit(f"error: {e}") from None
    checkpoints = {}
    for b in backbones:
        path = getattr(args, f"checkpoint_{b.replace('-', '_')}", None)
        if path is not None:
            if not path.is_file():
                raise SystemExit(f"error: --checkpoint-{b} {path}: no such file")
            checkpoints[b] = path

    overrides = parse_hyperparam_overrides(args.hyperparams)
    settings = Settings(data=args.data, quick=args.quick, select_metric=args.select_metric, reward=args.reward,
                        eval_points=args.eval_points or (QUICK_EVAL_POINTS if args.quick else 10),
                        pretrain_args=(QUICK_PRETRAIN_ARGS if args.quick else []) + shlex.split(args.pretrain_args),
                        scenario=scenario.name, baseline_kwargs=effective_baseline_kwargs(scenario.name, args.quick))
    if settings.eval_points < 1:
        raise SystemExit("error: --eval-points must be >= 1")
    import yaml

    steps: Dict[str, int] = {}  # backbone -> T (--quick rollouts are whole trajectories of the actual T)
    for row in rows:
        if row.kind == "finetuned":
            key = f"{row.method}|{row.env_id}"
            if args.quick and row.backbone not in steps:
                steps[row.backbone] = backbone_steps(row.backbone, settings, checkpoints.get(row.backbone))
            if key not in settings.hyperparams:
                settings.hyperparams[key] = effective_hyperparams(row.algo, row.env_id, args.quick,
                                                                  overrides.get(row.method),
                                                                  steps.get(row.backbone, QUICK_STEPS))
            hp = out / "hyperparams" / f"{row.method}-{row.backbone}.yml"
            hp.parent.mkdir(parents=True, exist_ok=True)
            hp.write_text(yaml.safe_dump({row.env_id: settings.hyperparams[key]}, sort_keys=True))
    plan_path = out / "plan.json"
    plan = read_json(plan_path)
    if plan is not None:
        if plan.get("dataset") != data.name:
            raise SystemExit(f"error: {out} holds results of dataset {plan.get('dataset')!r}, not {data.name!r}; "
                             "use another --out")
        stored = plan.get("settings", {})
        mine = settings.fingerprint()
        clash = sorted(k for k in mine if k in stored and k != "hyperparams" and stored[k] != mine[k])
        clash += sorted(k for k, v in mine["hyperparams"].items() if k in stored.get("hyperparams", {})
                        and stored["hyperparams"][k] != v)
        if clash:
            raise SystemExit(f"error: {out} holds results made with other settings ({', '.join(clash)}); reusing them "
                             "would mix recipes. Use another --out (or delete the folder).")
        mine["hyperparams"] = {**stored.get("hyperparams", {}), **mine["hyperparams"]}
        write_json(plan_path, dict(dataset=data.name, settings=mine))
    else:
        write_json(plan_path, dict(dataset=data.name, settings=settings.fingerprint()))

    invocation = dict(argv=["python", "scripts/benchmark.py"] + argv, started=time.strftime("%Y-%m-%dT%H:%M:%S"),
                      device=device, report_only=args.report_only)
    computed: List[str] = []
    reused: List[str] = []
    failed: List[Dict[str, str]] = []
    cells = [] if args.scaling_only else [(row, s) for row in rows for s in row_seeds(row, seeds)]
    # cells in an order that completes whole seeds early: deterministic rows, then seed by seed
    cells.sort(key=lambda c: (c[0].seeded, seeds.index(c[1]) if c[0].seeded else -1))
    env_of = env_ids_by_backbone()
    do_scaling = not args.skip_scaling
    scaling_note = None
    if scenario.sequential and not args.skip_scaling:
        # the scaling points subset users and items (InteractionData.subset_users / subset_items)
        scaling_note = (f"the cost-and-scaling points need user and item subsets of the data, which the "
                        f"SequentialData of scenario {scenario.name!r} does not provide")
        if args.scaling_only:
            raise SystemExit(f"error: --scaling-only: {scaling_note}")
        print(f"[benchmark] skipping the cost and scaling measurements: {scaling_note}", file=sys.stderr)
        do_scaling = False
    scaling_backbones = args.scaling_backbones or backbones
    unknown = sorted(set(scaling_backbones) - set(env_of))
    if unknown:
        raise SystemExit(f"error: --scaling-backbones {unknown}: known backbones {sorted(env_of)}")
    n_scaling = len(scaling_points(args.scaling_fractions)) * len(scaling_backbones) if do_scaling else 0
    scaling: Dict[str, Dict[str, Any]] = {}
    interrupted = False
    if not args.report_only:
        bar = progress_bar(total=len(cells) + n_scaling, desc=f"benchmark {data.name}", unit="run", file=sys.stderr)
        runner = Runner(out, data, settings, device, checkpoints, bar)
        try:  # Ctrl-C or SIGTERM (see __main__): keep the finished cells, record the invocation, rebuild the report
            for row, seed in cells:
                tag = f"{row.name}/seed{seed_tag(row, seed)}"
                if run_path(out, row, seed).is_file():
                    reused.append(tag)
                else:
                    try:
                        runner.run(row, seed)
                        computed.append(tag)
                    except Exception as e:  # noqa: BLE001  (one failing cell must not lose the others)
                        log = out / "logs" / f"{row.name}-seed{seed_tag(row, seed)}.log"
                        with open(log, "a") as fh:
                            fh.write(traceback.format_exc())
                        failed.append(dict(cell=tag, error=f"{type(e).__name__}: {e}", log=str(log)))
                        bar.write(f"[benchmark] {tag} failed: {type(e).__name__}: {e} (see {log})")
                        if args.fail_fast:
                            raise
                bar.update(1)
            if do_scaling:
                for b in scaling_backbones:
                    try:
                        scaling[b] = run_scaling(out, settings, b, env_of[b], device, args.threads,
                                                 args.scaling_max_rollouts, args.scaling_fractions, bar, computed)
                    except Exception as e:  # noqa: BLE001
                        failed.append(dict(cell=f"scaling/{b}", error=f"{type(e).__name__}: {e}"))
                        bar.write(f"[benchmark] scaling/{b} failed: {type(e).__name__}: {e}")
                        if args.fail_fast:
                            raise
        except KeyboardInterrupt:
            interrupted = True
            bar.write("[benchmark] interrupted: the cell in progress is lost, the finished ones are on disk; "
                      "rebuilding the report from them")
        bar.set_postfix_str("")
        bar.close()
    if args.report_only or not scaling:  # the report shows whatever scaling points are on disk
        for b in scaling_backbones:
            pts = {name: read_json(out / "scaling" / b / f"{name}.json") for name, _, _ in
                   scaling_points(args.scaling_fractions)}
            pts = {k: v for k, v in pts.items() if v is not None}
            if pts and do_scaling:
                scaling[b] = dict(points=pts, summary=scaling_summary(pts))

    invocation["seconds"] = time.perf_counter() - started
    if interrupted:
        invocation["interrupted"] = True
    invocations = read_json(out / "invocations.json") or []
    if not args.report_only:
        write_json(out / "invocations.json", invocations + [invocation])
    results = write_report(out, settings, rows, seeds, scaling, invocation, data.summary(), scaling_note)
    print(f"[benchmark] report: {out / 'report.md'} ({len(computed)} computed, {len(reused)} reused, "
          f"{len(failed)} failed)", file=sys.stderr)
    for f in failed:
        print(f"[benchmark] FAILED {f['cell']}: {f['error']}", file=sys.stderr)
    return dict(results, computed=computed, reused=reused, failed=failed, interrupted=interrupted)


def _interrupt(signum, frame):
    """SIGTERM handler: stop like Ctrl-C (``timeout``, a scheduler's kill), so the invocation is recorded."""
    raise KeyboardInterrupt(f"signal {signum}")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _interrupt)
    sys.exit(run_main(main, "benchmark.py", exit_code=lambda r: 130 if r.get("interrupted") else 1 if r.get("failed") else 0))
