"""Pretrain a diffusion recommender backbone, then evaluate the best (validation-selected) model.

``scripts/pretrain.py`` is the command line over :func:`main`; the benchmark calls :func:`run_pretraining`.

Examples:
    python scripts/pretrain.py                                   # synthetic data, DiffRec, runs/pretrain-synthetic
    python scripts/pretrain.py --backbone diffrec --data ../shared/datasets/ml-1m --out runs/diffrec-ml1m
    python scripts/pretrain.py --backbone cfdiff --data ../shared/datasets/ml-1m --out runs/cfdiff-ml1m
    python scripts/pretrain.py --backbone social-diffrec --data ../shared/datasets/social-ciao
    python scripts/pretrain.py --backbone dreamrec --data ../shared/datasets/seq-beauty --max-seconds 600
    python scripts/pretrain.py --backbone dreamrec-poi --data ../shared/datasets/poi-gowalla
    python scripts/pretrain.py ... --resume                      # continue an interrupted run in --out

Writes to --out: best.pt (backbone checkpoint, readable by scripts/evaluate.py and scripts/train.py),
last_state.pt (resume state, written after every epoch), history.json (one row per epoch: training and validation
seconds, validation metrics), metrics.json (valid + test of the best model, the validation share of the
wall-clock), tb/ (TensorBoard).

Every backbone belongs to a scenario of refit_gym.scenarios (cf, social, sequential, poi), which loads and
checks the data and evaluates with the scenario's protocol (sequential / POI: leave-one-out HR@K and NDCG@K, or the
user split of --protocol user-split); one loop pretrains every backbone with the backbone's own objective
(DiffRec's for history backbones, the all-prefix next-item loss for sequence backbones). --resume continues from
--out/last_state.pt (it fails with a message naming the file if that state was written for another architecture or
dataset); --max-seconds bounds the run's cumulative wall time, across resumes.

Validation (refit_gym.diffusion.validation): by default early stopping scores a fixed sample of --eval-users
(1024) validation users (every validation user for the sequence scenarios, whose one held-out item per user makes a
sample's metrics too noisy: refit_gym.scenarios.SEQUENCE_PRETRAIN), at an interval that keeps validation within --eval-budget (1/4) of the wall-clock, and the
kept checkpoint gets a full pass at the end (its metrics.json / best.pt result). --eval-every N validates every N
epochs instead; --full-validation scores every validation user each time (the old behaviour with --eval-every 1).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

from refit_gym.options import HelpFormatter, add_device_argument, add_protocol_argument, protocol_kwargs


def build_parser() -> argparse.ArgumentParser:
    """The flags of ``scripts/pretrain.py``."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--backbone", default="diffrec", help="registered backbone name (diffrec, cfdiff, ...)")
    p.add_argument("--data", default="synthetic", help="dataset folder/file, or 'synthetic' (default)")
    add_protocol_argument(p)
    p.add_argument("--out", default=None, help="output folder (default runs/pretrain-<backbone>-<data name>)")
    # training settings: unset flags keep the scenario's defaults (Scenario.pretrain_config: PretrainConfig's
    # epochs 100, lr 1e-3, batch 400, patience 10, adaptive validation of 1024 users; sequences: epochs 50, batch 256,
    # patience 5)
    p.add_argument("--epochs", type=int, default=None, help="maximum epochs (default: the scenario's)")
    p.add_argument("--lr", type=float, default=None, help="AdamW learning rate (default 1e-3)")
    p.add_argument("--weight-decay", type=float, default=None, help="AdamW weight decay (default 0)")
    p.add_argument("--batch-size", type=int, default=None, help="users per step (default: the scenario's)")
    p.add_argument("--timestep-sampling", choices=["importance", "uniform"], default=None,
                   help="diffusion step sampling (default importance)")
    p.add_argument("--no-reweight", action="store_true", help="disable the SNR-difference loss weights")
    p.add_argument("--patience", type=int, default=None,
                   help="evaluations without gain before early stopping (0: off; default: the scenario's)")
    p.add_argument("--eval-every", type=int, default=None, help="epochs between validations (default: adaptive, "
                   "so that validation takes at most --eval-budget of the wall-clock)")
    p.add_argument("--eval-users", type=int, default=None, help="validation users that early stopping scores, a "
                   "fixed seeded sample (default: the scenario's, 1024, or all for sequences; the kept checkpoint "
                   "gets a full pass at the end)")
    p.add_argument("--full-validation", action="store_true", help="score every validation user at every "
                   "validation (no sample, no final pass)")
    p.add_argument("--eval-budget", type=float, default=None, help="largest share of the wall-clock the adaptive "
                   "validation interval lets validation take (default 0.25)")
    p.add_argument("--metric", default=None, help="validation metric for model selection (default: the "
                   "scenario's, recall@20 or ndcg@10 for sequences)")
    p.add_argument("--max-seconds", type=float, default=None, help="wall-time bound (seconds) of pretraining "
                   "(training and validation), cumulative over --resume sessions")
    # schedule (unset flags keep the backbone's default schedule: DiffRec's 40 steps linear-var, DreamRec's cosine)
    p.add_argument("--steps", type=int, default=None, help="T (DiffRec default 40)")
    p.add_argument("--noise-schedule", default=None, choices=["linear", "linear-var", "cosine"])
    p.add_argument("--noise-scale", type=float, default=None)
    p.add_argument("--noise-min", type=float, default=None)
    p.add_argument("--noise-max", type=float, default=None)
    p.add_argument("--mean-type", default=None, choices=["x0", "eps"])
    p.add_argument("--sampling-steps", type=int, default=None, help="noise level of the inference start (0: clean history)")
    p.add_argument("--inference-steps", type=int, default=None, help="reverse steps of the chain (validation, and "
                   "the default of environments and fine-tuning): K evenly spaced steps of T; training uses all T "
                   "(default: all T)")
    # architecture overrides
    p.add_argument("--hidden", type=int, nargs="+", default=None, help="DiffRec encoder widths (default: the scenario's, 600 200)")
    p.add_argument("--emb-size", type=int, default=None)
    p.add_argument("--dropout", type=float, default=None)
    p.add_argument("--backbone-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="any other keyword of the backbone's constructor, VALUE in JSON (e.g. --backbone-arg "
                   "residual=true --backbone-arg state_ce_weight=0.5); repeatable")
    p.add_argument("--seed", type=int, default=0)
    add_device_argument(p)
    p.add_argument("--resume", action="store_true", help="continue from --out/last_state.pt (if present; "
                   "else start afresh)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--no-test", action="store_true",
                   help="do not evaluate the kept checkpoint on test (metrics.json then has no 'test'): for runs "
                        "whose model is chosen later on validation, e.g. a run resumed in segments")
    p.add_argument("--json", action="store_true", help="print the final metrics as one JSON object on stdout")
    return p


SCHEDULE_FLAGS = ("noise_schedule", "noise_scale", "noise_min", "noise_max", "steps", "mean_type", "sampling_steps",
                  "inference_steps")
ARCHITECTURE_FLAGS = ("hidden", "emb_size", "dropout")


def check_architecture_flags(backbone: str, given, flag: Optional[str] = None) -> None:
    """SystemExit naming the first flag of ``given`` (argument names, e.g. ``["hidden"]``) that the
    constructor of ``backbone`` does not take, with the flags it does take (``flag``: the flag that named it,
    default ``--<name>``)."""
    from refit_gym.diffusion import BACKBONES
    from refit_gym.diffusion.checkpoint import constructor_parameters

    accepted = constructor_parameters(BACKBONES[backbone])
    for name in given:
        if name not in accepted:
            usable = [f"--{f.replace('_', '-')}" for f in ARCHITECTURE_FLAGS if f in accepted]
            raise SystemExit(
                f"error: {flag or '--' + name.replace('_', '-')}: backbone {backbone!r} does not take {name!r} (its constructor "
                f"takes {', '.join(accepted)}); architecture flags it takes: {', '.join(usable) or 'none'}")


def backbone_kwargs(args) -> dict:
    """The architecture flags that were given, and the backbone's default schedule updated by the schedule
    flags that were given (the architecture defaults come from the scenario: ``Scenario.architecture``).
    An architecture flag that the backbone's constructor does not take is a SystemExit naming it."""
    import inspect

    from refit_gym.diffusion import BACKBONES, ScheduleConfig

    kw = {name: getattr(args, name) for name in ARCHITECTURE_FLAGS if getattr(args, name) is not None}
    check_architecture_flags(args.backbone, kw)
    for item in args.backbone_arg:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"error: --backbone-arg {item!r}: expected KEY=VALUE")
        if key in kw or key in ("schedule",) + SCHEDULE_FLAGS:
            raise SystemExit(f"error: --backbone-arg {item!r}: set {key!r} with its own flag")
        check_architecture_flags(args.backbone, [key], flag="--backbone-arg")
        try:
            kw[key] = json.loads(value)
        except json.JSONDecodeError as e:
            raise SystemExit(f"error: --backbone-arg {item!r}: VALUE is not JSON ({e.msg}); write a string in quotes")
    default = next(inspect.signature(c.__init__).parameters["schedule"].default for c in BACKBONES[args.backbone].__mro__
                   if "schedule" in inspect.signature(c.__init__).parameters)  # subclasses may forward **kwargs
    default = default.to_dict() if isinstance(default, ScheduleConfig) else dict(default)
    kw["schedule"] = {**default, **{f: getattr(args, f) for f in SCHEDULE_FLAGS if getattr(args, f) is not None}}
    return kw


def config_overrides(args) -> Dict[str, Any]:
    """The :class:`~refit_gym.diffusion.training.PretrainConfig` fields set by the given flags (``--epochs``,
    ``--lr``, ``--weight-decay``, ``--batch-size``, ``--timestep-sampling``, ``--eval-every``, ``--patience``,
    ``--eval-users``, ``--eval-budget``; ``--full-validation`` sets ``eval_users=None``) and ``reweight`` (False
    with ``--no-reweight``); unset flags keep the scenario's defaults. SystemExit when ``--eval-users`` and
    ``--full-validation`` are both given."""
    full = getattr(args, "full_validation", False)
    eval_users = getattr(args, "eval_users", None)
    if full and eval_users is not None:
        raise SystemExit(f"error: --eval-users {eval_users} and --full-validation contradict each other: "
                         "give one of them")
    given = dict(epochs=args.epochs, lr=args.lr, weight_decay=args.weight_decay, batch_size=args.batch_size,
                 timestep_sampling=args.timestep_sampling, eval_every=args.eval_every, patience=args.patience,
                 eval_users=eval_users, eval_budget=getattr(args, "eval_budget", None))
    return {**{k: v for k, v in given.items() if v is not None}, **({"eval_users": None} if full else {}),
            "reweight": not args.no_reweight}


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """``scripts/pretrain.py``: parse ``argv`` and :func:`run_pretraining`; returns its metrics."""
    return run_pretraining(build_parser().parse_args(argv))


def run_pretraining(args: argparse.Namespace) -> Dict[str, Any]:
    """Pretrain as the parsed flags ``args`` (:func:`build_parser`) say, write ``--out`` (module docstring) and
    return the metrics written to ``metrics.json``: valid / test metrics of the best model, ``best_epoch``,
    ``seconds_per_epoch`` (training seconds per epoch), ``epochs_run``, ``session_wall_seconds`` (seconds),
    ``training_seconds`` and ``validation_seconds`` (over every epoch of the run, resumed sessions included, the
    final full pass counted as validation) and ``validation_share`` (validation / (training + validation)),
    ``checkpoint`` (the path of best.pt), the configs."""
    from refit_gym import distributed
    from refit_gym.diffusion import BACKBONES, load_backbone
    from refit_gym.scenarios import scenario_for
    from refit_gym.utils import resolve_device, set_global_seed

    distributed.init_from_env(resolve_device(args.device))  # under torchrun: join the process group
    main = distributed.is_main()
    log = (lambda msg: print(msg, file=sys.stderr, flush=True)) if main else (lambda msg: None)  # noqa: E731
    if args.backbone not in BACKBONES:
        raise SystemExit(f"error: unknown backbone {args.backbone!r}; known: {sorted(BACKBONES)}")
    kwargs = backbone_kwargs(args)  # before loading the data: an architecture flag the backbone does not take fails
    scenario = scenario_for(args.backbone)
    try:
        cfg = scenario.pretrain_config(**config_overrides(args), metric=args.metric or scenario.metric, seed=args.seed)
    except ValueError as e:  # a flag's value out of range, named by its PretrainConfig field
        raise SystemExit(f"error: {e} (the flag of the same name, e.g. --eval-every for eval_every)") from None
    device = distributed.local_device(resolve_device(args.device))
    protocol = protocol_kwargs(args)
    if not protocol and args.resume and args.out and (Path(args.out) / "best.pt").is_file():
        from refit_gym.diffusion.checkpoint import checkpoint_protocol

        protocol = checkpoint_protocol(Path(args.out) / "best.pt")  # the run's own protocol
    data = scenario.load(args.data, **protocol)
    log(f"data: {data.summary()}  (scenario {scenario.name!r})")
    out = Path(args.out or f"runs/pretrain-{args.backbone}-{data.name}")
    set_global_seed(args.seed)
    adapter = scenario.build_backbone(data, args.backbone, **kwargs)
    n_params = sum(p.numel() for p in adapter.parameters())
    log(f"backbone: {args.backbone} ({n_params:,} parameters), device {device}, output {out}"
        + (f", {distributed.world_size()} processes" if distributed.active() else ""))
    t0 = time.perf_counter()
    result = scenario.pretrain(adapter, data, cfg, out_dir=out, device=device, max_seconds=args.max_seconds,
                               progress=not args.no_progress and main, resume=args.resume, log=log)
    wall = time.perf_counter() - t0
    best, meta = load_backbone(out / "best.pt", data, device=device)
    metrics = {
        "backbone": args.backbone, "scenario": scenario.name, "data": data.name, "protocol": meta.get("protocol"),
        "best_epoch": result.best_epoch,
        "seconds_per_epoch": result.seconds_per_epoch, "epochs_run": len(result.history),
        "session_wall_seconds": wall,  # this session's pretraining (training + validation), without the final tests
        "training_seconds": result.train_seconds, "validation_seconds": result.valid_seconds,
        "validation_share": result.valid_share,
        "valid": scenario.evaluate_backbone(best, data, "valid"),
        "checkpoint": str(out / "best.pt"), "config": asdict(cfg), "backbone_config": best.config(),
    }
    if not args.no_test:
        metrics["test"] = scenario.evaluate_backbone(best, data, "test")
    if main:
        (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    log(f"best epoch {result.best_epoch}; {result.seconds_per_epoch:.2f} s per training epoch on {device}, "
        f"{wall / 60:.1f} min wall-clock this session; validation took {result.valid_share:.0%} of the run's "
        f"training + validation seconds ({result.valid_seconds:.1f} of {result.train_seconds + result.valid_seconds:.1f})")
    if "test" in metrics:
        t = metrics["test"]
        log("test: " + "  ".join(f"{k} {t[k]:.4f}" for k in t
                                 if k.endswith("@20") and k.split("@")[0] in ("recall", "ndcg", "hitrate")))
    log(f"checkpoint: {out / 'best.pt'}" + (f"; TensorBoard: tensorboard --logdir {out / 'tb'}" if (out / "tb").is_dir() else ""))
    if args.json and main:
        print(json.dumps(metrics))
    return metrics

