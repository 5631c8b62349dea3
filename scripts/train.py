#!/usr/bin/env python
"""RL fine-tuning of a pretrained diffusion recommender (ReFiT, DDPO, Pathwise, or SB3's PPO / A2C).

Examples::

    python scripts/train.py                                                     # the main job: synthetic data,
                                                                                # pretraining, then Pathwise
    python scripts/train.py --algo refit --data synthetic                       # pretrains a backbone first
    python scripts/train.py --algo refit --data ../shared/datasets/ml-1m --checkpoint runs/diffrec-ml1m/best.pt \\
        --out runs/refit-ml1m --eval-freq 20000 --save-freq 20000 --tensorboard-log runs/refit-ml1m/tb
    python scripts/train.py --algo ddpo --hyperparams my.yml ...                # rl-zoo style overrides
    python scripts/train.py ... --resume                                        # continue from --out/last_model.zip
    python scripts/train.py --env refit_gym/DreamRec-v0 --checkpoint runs/dreamrec/best.pt --inference-steps 10
                                                                                # a 10-step chain from a T = 50 backbone
    torchrun --nproc_per_node=2 scripts/train.py --algo refit ...               # data parallel (refit, ddpo, pathwise)

Hyperparameters: the defaults of ``agents/hyperparams/<algo>.yml`` updated by ``--hyperparams FILE``,
both in rl-zoo3's format (top-level key = environment id; ``n_timesteps``, ``n_envs``, ``policy``,
``policy_kwargs`` as a dict or a ``"dict(...)"`` string of literals, learning rates as numbers or
``"lin_<value>"``; the rest are keyword arguments of the algorithm: the fields of its config dataclass,
e.g. ``agents.ReFiTConfig``, or SB3's constructor parameters for PPO/A2C). An unknown key or a value of the
wrong type stops the run with an error naming the file, the environment id and the key.

Writes to ``--out``: ``last_model.zip`` (the full agent: weights, optimizer, RNG state and step count,
every ``--save-freq`` steps and at the end), ``best.pt`` (backbone checkpoint of the best validation
``--select-metric`` (default Recall@20) seen at the ``--eval-freq`` evaluations, selected on validation only), ``final.pt`` (the
backbone at the end), ``metrics.json`` (validation and test metrics of the pretrained backbone, the
final and the best model, and the validation learning curve against training wall-clock), ``learning_curve.png``
(validation Recall@20 / NDCG@20 against steps, the pretrained start and the selected model marked), ``run.json``
(the settings ``--resume`` reuses), ``hyperparams.yml`` (the configuration as used, every default filled in),
``progress.csv``. Exported ``.pt`` files are plain
backbone checkpoints: ``scripts/evaluate.py --checkpoint OUT/best.pt``.

The work is done by :func:`refit_gym.experiments.finetune.finetune`; this script parses the command line and, without
``--checkpoint``, first pretrains a backbone with :func:`refit_gym.diffusion.training.pretrain` into
``OUT/pretrain/best.pt`` (reused on ``--resume``).

Under ``torchrun`` (``WORLD_SIZE > 1``) the run joins the process group (gloo on CPU, NCCL with ``--device cuda``,
one GPU per process) and leaves it at the end: ``n_envs`` stays the global batch (each process rolls out
``n_envs / WORLD_SIZE`` chains of whole users), the updates equal one process's, evaluation is sharded, and only
rank 0 logs and writes ``--out`` (which ``--resume`` needs on a filesystem every process sees). ReFiT, DDPO and
Pathwise run so; PPO and A2C refuse. Without ``--checkpoint`` the pretraining runs data-parallel too (interaction
backbones; sequence backbones need ``--checkpoint``).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict

from agents import ALGOS
from refit_gym import distributed
from refit_gym.experiments.finetune import DEFAULT_SELECT_METRIC, FinetuneError, finetune
from refit_gym.cli import run_main
from refit_gym.options import HelpFormatter, add_device_argument, add_protocol_argument, protocol_kwargs


def log(msg: str) -> None:
    """One ``[train]`` line on stderr (rank 0 only under torch.distributed)."""
    if distributed.is_main():
        print(f"[train] {msg}", file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    p.add_argument("--algo", choices=sorted(ALGOS), default="pathwise")
    p.add_argument("--env", default="refit_gym/DiffRec-v0", help="registered environment id")
    p.add_argument("--data", default=None, help="dataset spec for refit_gym.data.load_dataset (default: the "
                   "environment's synthetic dataset: synthetic, synthetic-social, synthetic-seq or synthetic-poi)")
    add_protocol_argument(p)
    p.add_argument("--checkpoint", type=Path, default=None, help="pretrained backbone (default: pretrain one first)")
    p.add_argument("--inference-steps", type=int, default=None,
                   help="reverse steps of the chain: K evenly spaced steps of the backbone's T (episodes, evaluation "
                        "and the exported best.pt / final.pt run K; default: the checkpoint's own, all T unless it "
                        "records one)")
    p.add_argument("--pretrain-epochs", type=int, default=30, help="epochs of the pretraining run without --checkpoint")
    p.add_argument("--reward", default=None,
                   help="terminal reward: refit, refit-seq, graph-score, topk, reconstruction (default: the "
                        "hyperparameters' 'reward', else the one registered with --env, e.g. refit-seq for DreamRec; "
                        "constructor arguments: reward_kwargs in --hyperparams)")
    p.add_argument("--hyperparams", type=Path, default=None, help="rl-zoo style YAML overriding the defaults")
    p.add_argument("-n", "--n-timesteps", type=int, default=None, help="override n_timesteps")
    p.add_argument("--seed", type=int, default=0)
    add_device_argument(p)
    p.add_argument("--tensorboard-log", default=None, help="TensorBoard folder (default: no TensorBoard)")
    p.add_argument("--eval-freq", type=int, default=0, help="validate every N environment steps (0: only at the end)")
    p.add_argument("--save-freq", type=int, default=10_000,
                   help="save last_model.zip every N environment steps, for --resume (0: only at the end)")
    p.add_argument("--select-metric", default=DEFAULT_SELECT_METRIC,
                   help="validation metric choosing best.pt")
    p.add_argument("--collapse-ratio", type=float, default=None,
                   help="stop when validation --select-metric falls below this fraction of the best (e.g. 0.5)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default runs/<algo>-<data>)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last_model.zip with the run's settings "
                   "(OUT/run.json): flags not given keep their values, run-defining flags that differ are refused")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                   help="progress bars (pretraining epochs, environment steps with an ETA) on stderr")
    p.add_argument("--verbose", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print metrics.json on stdout")
    return p


def data_protocol(args) -> Dict[str, Any]:
    """The ``load_dataset`` protocol arguments of the run: ``--protocol`` / ``--split-seed`` (or the saved ones on
    ``--resume``), else the protocol ``--checkpoint`` was pretrained under, else ``{}`` (the data's own split)."""
    kw = protocol_kwargs(args)
    if not kw and args.checkpoint is not None and Path(args.checkpoint).is_file():
        from refit_gym.diffusion.checkpoint import checkpoint_protocol

        kw = checkpoint_protocol(args.checkpoint)
    return kw


def obtain_backbone(args, data, kind: str, out: Path, device) -> Path:
    """The pretrained backbone checkpoint: ``--checkpoint`` or a fresh pretraining run in OUT/pretrain."""
    if args.checkpoint is not None:
        if not args.checkpoint.is_file():
            raise SystemExit(f"error: --checkpoint {args.checkpoint}: no such file")
        return args.checkpoint
    path = out / "pretrain" / "best.pt"
    if args.resume and path.is_file():
        log(f"reusing the pretrained backbone {path}")
        return path
    from refit_gym.scenarios import scenario_for

    log(f"no --checkpoint: pretraining a {kind} backbone for {args.pretrain_epochs} epochs into {path.parent}")
    scenario = scenario_for(kind)  # the same architecture and objective as scripts/pretrain.py, for every scenario
    adapter = scenario.build_backbone(scenario.check_data(data), kind)
    if distributed.active() and not adapter.pretrain_data_parallel:
        raise SystemExit(f"error: no --checkpoint under torchrun: {kind} pretrains as one process only; pretrain it "
                         "first with scripts/pretrain.py (without torchrun) and pass --checkpoint")
    # validated after every epoch (a reproducible selection: the main job's start is the same on every machine;
    # the adaptive default interval depends on measured time); a sample only on data with over 1024 validation users
    cfg = scenario.pretrain_config(epochs=args.pretrain_epochs, seed=args.seed, eval_every=1)
    scenario.pretrain(adapter, data, cfg, out_dir=path.parent, device=device,
                      progress=args.progress and distributed.is_main(), log=log)
    return path


def verdict(metrics: Dict[str, Any], data, env_id: str, metric: str = "ndcg@20") -> list:
    """Lines that set the pretrained start, the validation-selected fine-tuned model and the scenario's first
    reference baseline (EASE with its lambda chosen on validation for interaction data; skipped for sequences, whose
    SASRec takes minutes to fit) side by side on test, and say in words whether fine-tuning helped; the baseline's
    row is added to ``metrics``."""
    from refit_gym.scenarios import scenario_for

    scenario = scenario_for(env_id)
    rows = [("pretrained", metrics["pretrained"]["test"]), ("fine-tuned (best on valid)", metrics["best"]["test"])]
    if scenario.has_baseline_grid("ease"):  # its lambda chosen on validation, as the benchmark's EASE row
        params, score_fn, _ = scenario.baseline_on_validation("ease", data, metric)
        ease = scenario.evaluate(score_fn, data, "test")
        metrics["baselines"] = {"ease": {"test": ease, "params": params, "selected_on": f"valid {metric}"}}
        rows.append((f"EASE (lam {params['lam']:g}, chosen on valid)", ease))
    lines = [f"test {'':<28} recall@20  {metric}"] + [f"     {name:<28} {m['recall@20']:.4f}     {m[metric]:.4f}"
                                                      for name, m in rows]
    start, best = metrics["pretrained"]["test"][metric], metrics["best"]["test"][metric]
    if metrics["best"].get("num_timesteps") == 0:
        lines.append(f"fine-tuning did not help: no validation {metrics['selected_on'].split()[-1]} beat the pretrained "
                     "start, so the selected model is the start")
    else:
        change = 100 * (best / start - 1) if start else float("nan")
        lines.append(f"fine-tuning {'helped' if best > start else 'did not help'}: test {metric} {start:.4f} -> "
                     f"{best:.4f} ({change:+.1f}%) for the model selected on validation")
    return lines


def main(argv=None) -> Dict[str, Any]:
    """Parse ``argv`` and run (see the module docstring); returns the metrics (every rank under torchrun). Joins the
    torchrun process group when there is one to join and no group is active, and then leaves it at the end."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    from refit_gym.utils import resolve_device

    joined = not distributed.active() and distributed.init_from_env(resolve_device(args.device))
    try:
        return _run(args, argv)
    finally:
        if joined:
            distributed.shutdown()  # leave the process group this run joined


def _run(args, argv) -> Dict[str, Any]:
    from agents import NonFiniteTrainingError
    from refit_gym.experiments.hyperparams import load_hyperparams
    from refit_gym.data import load_dataset
    from refit_gym.envs import ENV_IDS, ENV_SPECS
    from refit_gym.run_settings import apply_saved_run, check_hyperparams, given_flags, save_run
    from refit_gym.utils import resolve_device, set_global_seed

    if args.env not in ENV_IDS:
        raise SystemExit(f"error: --env {args.env!r}: known environment ids {sorted(ENV_IDS)}")
    args.data = args.data or ENV_SPECS[args.env]["data"]
    loaded = (args.data, data_protocol(args))
    data = load_dataset(loaded[0], **loaded[1])
    out = args.out or Path("runs") / f"{args.algo}-{data.name}"
    saved = apply_saved_run(args, given_flags(build_parser, argv), out) if args.resume else {}
    if (args.data, data_protocol(args)) != loaded:  # the run's own data and protocol (OUT/run.json), not the default
        data = load_dataset(args.data, **data_protocol(args))
    # recorded in OUT/run.json (RUN_KEYS), so that --resume reloads the same protocol
    args.protocol, args.split_seed = getattr(data, "protocol", None), getattr(data, "split_seed", None)
    device = distributed.local_device(resolve_device(args.device))
    params = load_hyperparams(args.algo, args.env, args.hyperparams, reward=args.reward)
    check_hyperparams(saved, params, out)
    out.mkdir(parents=True, exist_ok=True)
    set_global_seed(args.seed)
    checkpoint = obtain_backbone(args, data, ENV_IDS[args.env], out, device)
    args.checkpoint = checkpoint  # recorded: a resumed run starts from the same backbone
    if distributed.is_main():
        save_run(args, out, params)
    try:
        metrics = finetune(args.algo, args.env, data, checkpoint, reward=args.reward, hyperparams=args.hyperparams,
                           seed=args.seed, device=device, out=out, eval_freq=args.eval_freq, save_freq=args.save_freq,
                           resume=args.resume, tensorboard_log=args.tensorboard_log, n_timesteps=args.n_timesteps,
                           progress=args.progress, verbose=args.verbose, select_metric=args.select_metric, log=log,
                           collapse_ratio=args.collapse_ratio, inference_steps=args.inference_steps)
    except FinetuneError as e:
        raise SystemExit(f"error: {e}") from e
    except NonFiniteTrainingError as e:
        last = out / "last_model.zip"
        raise SystemExit(f"error: {e}\nlast good checkpoint: {last if last.is_file() else 'none written'}") from e
    from refit_gym.plots import plot_learning_curve

    if distributed.is_main():
        log(f"learning curve: {plot_learning_curve(metrics, out / 'learning_curve.png')}")
    for line in verdict(metrics, data, args.env):  # every rank: the baseline's evaluation is sharded
        log(line)
    if args.json and distributed.is_main():
        print(json.dumps(metrics, default=str))
    return metrics


if __name__ == "__main__":
    sys.exit(run_main(main, "train.py"))
