#!/usr/bin/env python
"""The headroom ladder (refit_gym.experiments.ladder): continued pretraining, an oracle-reward diagnostic,
the exact reward gradient (Pathwise), REINFORCE (ReFiT) and PPO, on one start and one reward, 3 seeds.

Examples::

    python scripts/ladder.py --env refit_gym/DreamRec-v0 --data ../shared/datasets/seq-beauty \\
        --checkpoint runs/dreamrec-seqbeauty/best.pt --recipe results/seq-beauty/ladder/recipe.yml \\
        --out results/seq-beauty/ladder
    python scripts/ladder.py ... --rungs refit pathwise --seeds 0        # a subset
    python scripts/ladder.py ... --report-only                           # rebuild report.md from ladder.json
    python scripts/ladder.py --out OUT --merge OUT/a OUT/b               # one ladder from rungs run apart

The recipe is YAML: ``{rung: settings}``; fine-tuning rungs take rl-zoo-style hyperparameters of their
algorithm (``reward``, ``reward_kwargs``, ``n_envs``, ``n_timesteps``, ``eval_freq``, ...), ``continued``
takes PretrainConfig overrides. Writes ``OUT/ladder.json`` (every record; an interrupted ladder resumes cell
by cell), ``OUT/report.md`` and each cell's run in ``OUT/<rung>/seed<k>/``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml


def build_parser() -> argparse.ArgumentParser:
    from refit_gym.options import HelpFormatter, add_device_argument, add_protocol_argument
    from refit_gym.experiments.ladder import RUNGS

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    p.add_argument("--env", default="refit_gym/DiffRec-v0", help="registered environment id")
    p.add_argument("--data", help="dataset folder")
    add_protocol_argument(p)
    p.add_argument("--checkpoint", type=Path, help="the pretrained backbone every rung starts from")
    p.add_argument("--recipe", type=Path, help="YAML {rung: settings}")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--rungs", nargs="+", choices=RUNGS, default=["start", "continued", "oracle", "pathwise", "refit"],
                   help="rungs to run")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="one record per rung and seed")
    p.add_argument("--select-metric", default="ndcg@20", help="validation metric of every model selection")
    add_device_argument(p)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--report-only", action="store_true", help="rebuild OUT/report.md from OUT/ladder.json")
    p.add_argument("--merge", type=Path, nargs="+", default=None,
                   help="ladder folders run on the same start (e.g. rungs split over processes): write their union "
                        "to OUT/ladder.json and the report")
    return p


def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    import json

    import torch

    from refit_gym.experiments.ladder import markdown_table, merge_ladders, run_ladder
    from refit_gym.utils import resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.merge:
        ladder = merge_ladders([json.loads((d / "ladder.json").read_text()) for d in args.merge])
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "ladder.json").write_text(json.dumps(ladder, indent=1, default=str))
    elif args.report_only:
        ladder = json.loads((args.out / "ladder.json").read_text())
    else:
        if args.data is None or args.checkpoint is None or args.recipe is None:
            raise SystemExit("error: --data, --checkpoint and --recipe are required to run a ladder")
        if not args.recipe.is_file():
            raise SystemExit(f"error: --recipe {args.recipe}: no such file")
        recipe = yaml.safe_load(args.recipe.read_text()) or {}
        from refit_gym.data import load_dataset
        from refit_gym.diffusion.checkpoint import checkpoint_protocol
        from refit_gym.options import protocol_kwargs

        protocol = protocol_kwargs(args) or (checkpoint_protocol(args.checkpoint) if args.checkpoint.is_file() else {})
        data = load_dataset(args.data, **protocol)  # default protocol: the checkpoint's
        ladder = run_ladder(args.env, data, args.checkpoint, recipe, args.out, seeds=args.seeds, rungs=args.rungs,
                            device=resolve_device(args.device), select_metric=args.select_metric,
                            log=lambda s: print(f"[ladder] {s}", file=sys.stderr, flush=True))
    table = markdown_table(ladder)
    (args.out / "report.md").write_text(f"# Ladder: {ladder['env']} on {ladder['data']}\n\nStart: `{ladder['checkpoint']}`; "
                                        f"selection on validation {ladder['select_metric']}; test of the selected "
                                        f"models, mean ± sample std over seeds.\n\n{table}\n")
    print(table)
    return ladder


if __name__ == "__main__":
    from refit_gym.cli import run_main

    sys.exit(run_main(main, "ladder.py"))
