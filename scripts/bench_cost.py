#!/usr/bin/env python
"""Wall-clock of pretraining, evaluation and fine-tuning epochs against their matmul FLOP floor.

Examples::

    python scripts/bench_cost.py --data ../shared/datasets/ml-1m --threads 1 --json > results/ml-1m/cost/diffrec.json
    python scripts/bench_cost.py --data ../shared/datasets/seq-beauty --backbone dreamrec --threads 1 --max-seconds 40
    python scripts/bench_cost.py --data synthetic --checkpoint runs/diffrec/best.pt
    python scripts/bench_cost.py --data ../shared/datasets/seq-beauty --checkpoint runs/dreamrec/best.pt --inference-steps 10

For each operation (one pretraining epoch, one full validation, one fine-tuning epoch of each shipped recipe
``agents/hyperparams/{refit,ddpo,pathwise}.yml``): the measured seconds, the matmul FLOP floor counted from the
model's shapes, the machine's measured matmul rate at the operation's batch (same thread count), the floor
in seconds and ``ratio = measured / floor``. Operations longer than ``--max-seconds`` are timed on a part and
scaled (column ``timed``). See :mod:`refit_gym.experiments.cost` (timing) and :mod:`refit_gym.experiments.floors`
(the floors) for the definitions. Without
``--checkpoint`` a freshly initialised backbone of the scenario's architecture is used (timing does not depend
on the weights). ``--json`` prints one JSON object (numbers, the machine, torch version, threads) on stdout;
the table and progress go to stderr. ``--inference-steps K`` respaces the reverse chain to K of the T steps
(evaluation and fine-tuning run K steps; pretraining keeps T; the JSON's ``steps`` is then K, ``train_steps`` T).
"""
from __future__ import annotations

import argparse
import json
import sys

import torch

from refit_gym.options import add_device_argument


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="synthetic", help="dataset spec or folder for refit_gym.data.load_dataset")
    p.add_argument("--backbone", default=None, help="backbone kind (default: the scenario's for the data, e.g. "
                   "diffrec for interactions, dreamrec for sequences; with --checkpoint: the checkpoint's)")
    p.add_argument("--checkpoint", default=None, help="backbone checkpoint (default: a freshly initialised backbone)")
    p.add_argument("--inference-steps", type=int, default=None,
                   help="reverse steps of the chain, K of the T training steps (default: the backbone's own)")
    p.add_argument("--recipes", nargs="+", default=None, help="fine-tuning algorithms (default: refit ddpo pathwise)")
    p.add_argument("--max-seconds", type=float, default=60.0,
                   help="per operation: beyond it a part is timed and scaled (default 60)")
    p.add_argument("--probe", type=int, default=8, help="users of the FLOP-counting probes (default 8)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    add_device_argument(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    return p


def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from refit_gym.data import load_dataset
    from refit_gym.data.sequential import SequentialData
    from refit_gym.experiments.cost import RECIPES, format_table, measure_cost
    from refit_gym.scenarios import SCENARIOS, scenario_for
    from refit_gym.utils import resolve_device, set_global_seed

    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    device = resolve_device(args.device)
    data = load_dataset(args.data)
    set_global_seed(args.seed)
    if args.checkpoint:
        from refit_gym.diffusion import load_backbone

        adapter, _ = load_backbone(args.checkpoint, data, device=device)
        if args.backbone and args.backbone != adapter.backbone_name:
            raise SystemExit(f"error: --checkpoint holds a {adapter.backbone_name!r} backbone, not {args.backbone!r}")
        scenario = scenario_for(adapter.backbone_name)
    else:
        if args.backbone:
            scenario = scenario_for(args.backbone)
        else:
            timed = isinstance(data, SequentialData) and data.has_time
            scenario = SCENARIOS["poi" if timed else "sequential" if isinstance(data, SequentialData)
                                 else "social" if getattr(data, "social", None) is not None else "cf"]
        adapter = scenario.build_backbone(scenario.check_data(data), args.backbone)
    if args.inference_steps is not None:
        try:
            adapter.set_inference_steps(args.inference_steps)
        except ValueError as e:
            raise SystemExit(f"error: --inference-steps: {e}") from None
    log(f"data: {data.summary()}; backbone {adapter.backbone_name} "
        f"({sum(p.numel() for p in adapter.parameters()):,} parameters); threads {torch.get_num_threads()}")
    result = measure_cost(data, adapter, scenario, device, args.recipes or RECIPES, args.max_seconds, args.probe,
                          args.seed, log)
    result["checkpoint"] = args.checkpoint or "untrained"
    result["train_steps"] = int(adapter.schedule.steps)
    log(format_table(result))
    if args.json:
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    from refit_gym.cli import run_main

    sys.exit(run_main(main, "bench_cost.py"))
