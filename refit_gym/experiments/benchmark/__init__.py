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
with ReFiT, DDPO, Pathwise, PPO and A2C (all on the same reward: ``--reward``, by default the environment's
registered one) and ReFiT with the naive ``topk`` reward, and the backbone's **continued pretraining** (the
control every fine-tuning gain must beat: its own pretraining loss continued from the same pretrained
checkpoint of the seed for the training seconds of that seed's ReFiT cell -- ``--continued-budget`` names
another method -- with validation-only selection in which the start competes;
:func:`refit_gym.experiments.ladder.continued_pretraining`; its cell runs after the budget cell and fails with a
message naming the missing record without it). Backbones are pretrained as ``scripts/pretrain.py`` does
(:func:`refit_gym.experiments.pretrain.run_pretraining`, one per seed) unless
``OUT/checkpoints/<backbone>-seed<k>.pt`` exists or ``--checkpoint-<backbone> PATH`` is given
(then used for every seed); fine-tuning is :func:`refit_gym.experiments.finetune.finetune` with the defaults of
``agents/hyperparams/<algo>.yml`` (``--hyperparams METHOD=FILE`` overrides them per method), validated
``--eval-points`` times; the model reported is the checkpoint with the best **validation** NDCG@20
(``--select-metric``) among those evaluations and the pretrained start. Test metrics never choose anything.
Every row is evaluated with the scenario's protocol (:meth:`refit_gym.scenarios.Scenario.evaluate`). The
report compares the best fine-tuned model (by mean validation ``--select-metric``) with the scenario's
reference row on test NDCG@20 and Recall@20, and with its two controls: its pretrained start and the
continued-pretraining row of its backbone; for sequence scenarios it states whether the goal of the issue
(ReFiT +20% test NDCG@20 over its pretrained backbone and over that backbone's continued pretraining, and the
best fine-tuned row above SASRec) is met.

**Resumable.** Every (method, seed) result is written atomically to ``OUT/runs/<method>/seed<k>.json`` as soon
as it is done (``seedNA.json`` for deterministic rows) and reused by later invocations, so a benchmark can be
stopped, continued, or spread over several invocations (e.g. one ``--seeds`` value each); interrupted
pretraining and fine-tuning runs continue from their own last checkpoint. ``--report-only`` rebuilds the
report from what exists: a row with some of its seeds done shows their mean, marked ``(partial: n/N seeds)``;
a row with none, ``missing (0/N seeds)`` cells. ``OUT/plan.json`` records the dataset and the
:class:`Settings` (the scenario included): an invocation with other settings is refused. Cells run in
parallel processes or on other machines, each into its own ``--out``, come together with ``--merge FOLDER ...``
(their records, logs and invocations are copied; another dataset, other settings or a record that differs
from one already there is refused), e.g. ``--out results/seq-beauty --report-only --merge /tmp/a /tmp/b``.
A row is rerun with other settings after ``--retire ROW ... --retire-to FOLDER`` has moved its records, logs and
hyperparameter file into an archive with the plan they were made with, and taken its settings out of
``plan.json`` (:func:`~refit_gym.experiments.benchmark.files.retire_rows`; the invocation is recorded).

**Cost and scaling** (skipped with ``--skip-scaling``; interaction scenarios only -- SequentialData has no
user / item subsets, so sequence scenarios skip it with a printed reason): wall-clock and peak memory of one
ReFiT fine-tuning epoch (every user once through a whole denoising trajectory with the ReFiT update, the
default ReFiT hyperparameters of the environment, a freshly initialised backbone of the benchmark's
architecture -- cost does not depend on the weights) against the number of users (fractions
``--scaling-fractions`` sampled with a fixed seed by ``InteractionData.subset_users``) and of items (the most
popular ones, ``subset_items``), the fitted log-log slopes, and the ratio of the fine-tuning epoch time to the
pretraining epoch time. Each point runs in a fresh subprocess (``python -m
refit_gym.experiments.benchmark.scaling``): the peak resident memory of the epoch is the
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

from typing import Any

from refit_gym.experiments.benchmark.cells import BudgetMissingError, Runner
from refit_gym.experiments.benchmark.entry import (_interrupt, build_parser, check_reused, main,
                                                   parse_hyperparam_overrides)
from refit_gym.experiments.benchmark.files import (file_sha1, read_json, repo_relative, row_seeds, run_log, run_path,
                                                   seed_tag, write_json)
from refit_gym.experiments.benchmark.plan import (
    BACKBONE_LABELS, BASELINE_LABELS, CONTINUED, CONTINUED_BUDGET, CONTINUED_LABEL, DEFAULT_BACKBONES, EXTRA_ROWS,
    FINETUNE_METHODS, METHODS, QUICK_BACKBONE_ARGS, QUICK_BASELINE_KWARGS, QUICK_EVAL_POINTS, QUICK_N_ENVS,
    QUICK_PRETRAIN_ARGS, QUICK_ROLLOUTS, QUICK_STEPS, REFERENCE_BASELINE, REPO, ROW_KINDS, SEEDED_BASELINES, SEEDLESS,
    SEQUENCE_GOAL_PCT, RowSpec, Settings, backbone_kwargs_for, backbone_steps, build_rows, continued_params,
    default_backbones, effective_baseline_kwargs, effective_hyperparams, infer_scenario,
    pretrain_argv, quick_hyperparams, scenario_methods)
from refit_gym.experiments.benchmark.report import (aggregate, control_sentence, fmt_mean_std, fmt_seconds,
                                                    goal_sentence, reference_sentence, write_report)

#: the scaling module's names, imported when first used: ``python -m refit_gym.experiments.benchmark.scaling``
#: runs that module as ``__main__``, which must not find it imported already by this package
_SCALING_NAMES = ("SCALING_SEED", "PRETRAIN_TIMED_EPOCHS", "loglog_slope", "measure_scaling_point", "run_scaling",
                  "scaling_points", "scaling_summary")


def __getattr__(name: str) -> Any:
    """Returns the scaling module's ``name`` (imported lazily, see :data:`_SCALING_NAMES`)."""
    if name in _SCALING_NAMES:
        from refit_gym.experiments.benchmark import scaling

        return getattr(scaling, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
