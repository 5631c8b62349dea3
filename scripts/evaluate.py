#!/usr/bin/env python
"""Full-ranking evaluation of a diffusion backbone checkpoint or of a classic baseline.

Examples::

    python scripts/evaluate.py --checkpoint runs/diffrec.pt --data /work/shared/datasets/ml-1m --split test --json
    python scripts/evaluate.py --baseline ease --data /work/shared/datasets/ml-1m --split test --json
    python scripts/evaluate.py --baseline itemknn --param 200 --data synthetic

    python scripts/evaluate.py --checkpoint runs/dreamrec.pt --data ../shared/datasets/seq-beauty --json
    python scripts/evaluate.py --baseline sasrec --data ../shared/datasets/seq-beauty

Baselines are fitted on the training split only. Without ``--param`` the hyperparameter (EASE's
``lam``, ItemKNN's ``k``) is chosen on the validation split over a fixed grid by ``--select-metric``.
Sequential data (a ``dataset.pkl`` folder) is evaluated with its scenario's protocol
(``refit_gym.scenarios``: the sequence scenario of the checkpoint's backbone, else ``sequential``;
HR@K = Recall@K and NDCG@K of each evaluated user's one held-out item; baselines ``pop`` and ``sasrec``)
under ``--protocol`` (default: the checkpoint's, else leave-one-out; a checkpoint pretrained under
another protocol is refused).
With ``--json`` exactly one JSON object is printed on stdout; every log line goes to stderr.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

from refit_gym.cli import run_main
from refit_gym.options import HelpFormatter, add_device_argument, add_protocol_argument, protocol_kwargs


def log(msg: str) -> None:
    print(f"[evaluate] {msg}", file=sys.stderr, flush=True)


def load_data(spec: str, **kwargs):
    """An InteractionData from ``spec`` (anything ``refit_gym.data.load_dataset`` accepts; ``kwargs`` to it)."""
    from refit_gym.data import load_dataset

    return load_dataset(spec, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--checkpoint", type=Path, help="a refit-gym backbone checkpoint (.pt)")
    what.add_argument("--baseline", choices=["pop", "itemknn", "ease", "t-ease", "sasrec"],
                      help="a classic baseline fitted on train (sequential data: pop, sasrec)")
    p.add_argument("--data", default="synthetic",
                   help="dataset spec accepted by refit_gym.data.load_dataset (default: synthetic)")
    add_protocol_argument(p)
    p.add_argument("--split", choices=["valid", "test"], default="test")
    p.add_argument("--ks", type=int, nargs="+", default=[10, 20, 50, 100], help="cut-offs K")
    p.add_argument("--param", type=float, default=None,
                   help="baseline hyperparameter (EASE lam, ItemKNN k); default: chosen on validation")
    p.add_argument("--select-metric", default="ndcg@20", help="validation metric for the grid search")
    p.add_argument("--inference-steps", type=int, default=None,
                   help="reverse steps of a backbone's chain: K evenly spaced steps of its T (default: the "
                        "checkpoint's own, all T unless it records one)")
    p.add_argument("--condition-on", choices=["train", "train+valid"], default="train",
                   help="history that conditions a backbone (DiffRec: train)")
    add_device_argument(p)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="a progress bar on stderr")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    return p


def run_baseline(args, data) -> Dict:
    from refit_gym.baselines import BASELINES, DEFAULT_GRIDS, select_on_validation

    cls = BASELINES[args.baseline]
    out: Dict = {"model": args.baseline, "params": {}}
    if args.baseline == "pop":
        model = cls().fit(data)
    else:
        pname, grid = DEFAULT_GRIDS[args.baseline]
        cast = int if pname == "k" else float
        if args.param is not None:
            if cast is int and not float(args.param).is_integer():
                raise SystemExit(f"error: --param for {args.baseline} is the integer {pname}, got {args.param}")
            value = cast(args.param)
            model = cls(**{pname: value}).fit(data)
            out["param_source"] = "given"
        else:
            log(f"choosing {pname} on the valid split by {args.select_metric} over {grid}")
            sel = select_on_validation(lambda v: cls(**{pname: cast(v)}), grid, data, metric=args.select_metric,
                                       batch_size=args.batch_size, verbose=True)
            model = sel.model
            out["param_source"] = f"valid:{args.select_metric}"
            out["selection"] = [{pname: cast(r["value"]), args.select_metric: r[args.select_metric]}
                                for r in sel.table]
    out["params"] = model.params()
    out["score_fn"] = model.scores
    return out


def load_checkpoint(args, data, device):
    """The backbone of ``--checkpoint``, its chain respaced to ``--inference-steps`` when given."""
    from refit_gym.diffusion.checkpoint import load_backbone

    adapter, _ = load_backbone(args.checkpoint, data=data, device=device)
    if args.inference_steps is not None:
        try:
            adapter.set_inference_steps(args.inference_steps)
        except ValueError as e:
            raise SystemExit(f"error: --inference-steps: {e}") from None
    return adapter


def chain_params(adapter) -> Dict:
    """``{"inference_steps": K}`` when the backbone's chain is set to K steps (a respaced checkpoint or
    ``--inference-steps``), else ``{}``."""
    k = adapter.schedule_cfg.inference_steps
    return {} if k is None else {"inference_steps": int(k)}


def run_checkpoint(args, data, device) -> Dict:
    from refit_gym.metrics import backbone_score_fn

    adapter = load_checkpoint(args, data, device)
    score_fn = backbone_score_fn(adapter, data, args.split, device=device, condition_on=args.condition_on)
    return {"model": f"checkpoint:{adapter.backbone_name}", "checkpoint": str(args.checkpoint),
            "params": {"condition_on": args.condition_on, **chain_params(adapter)}, "score_fn": score_fn}


def run_sequential(args, data, device) -> Dict:
    """Leave-one-out evaluation of a sequence checkpoint or baseline with its scenario (see the module docstring)."""
    from refit_gym.scenarios import SCENARIOS, scenario_for

    if args.checkpoint is not None:
        adapter = load_checkpoint(args, data, device)
        scenario = scenario_for(adapter.backbone_name)
        if not scenario.sequential:
            raise SystemExit(f"error: --checkpoint {args.checkpoint} holds a {adapter.backbone_name!r} backbone, which "
                             f"does not read sequences; data {data.name!r} is sequential")
        score_fn, spec = scenario.backbone_score_fn(adapter, data), {"model": f"checkpoint:{adapter.backbone_name}",
                                                                      "checkpoint": str(args.checkpoint),
                                                                      "params": chain_params(adapter)}
    else:
        scenario = SCENARIOS["sequential"]
        if args.baseline not in scenario.baselines:
            raise SystemExit(f"error: --baseline {args.baseline}: sequential data has baselines {list(scenario.baselines)}")
        if args.param is not None:
            raise SystemExit("error: --param applies to interaction baselines (EASE, ItemKNN) only")
        score_fn, spec = scenario.baseline_score_fn(args.baseline, data), {"model": args.baseline, "params": {}}
    log(f"evaluating {spec['model']} on {args.split} ({scenario.name} protocol)")
    return {**scenario.evaluate(score_fn, data, args.split, ks=args.ks, batch_size=args.batch_size), **spec,
            "scenario": scenario.name}


def main(argv: Optional[List[str]] = None) -> Dict:
    """Parse ``argv``, evaluate, print the result; returns the result dict (without the scorer)."""
    args = build_parser().parse_args(argv)
    if args.batch_size < 1:
        raise SystemExit("error: --batch-size must be >= 1")
    if min(args.ks) < 1:
        raise SystemExit("error: every --ks value must be >= 1")
    if args.baseline == "pop" and args.param is not None:
        raise SystemExit("error: --baseline pop has no hyperparameter; drop --param")
    if args.checkpoint is not None and args.param is not None:
        raise SystemExit("error: --param applies to baselines only")
    if args.baseline is not None and args.inference_steps is not None:
        raise SystemExit("error: --inference-steps applies to --checkpoint only")
    from refit_gym.metrics import evaluate, format_table
    from refit_gym.utils import resolve_device

    device = resolve_device(args.device)
    t0 = time.perf_counter()
    protocol = protocol_kwargs(args)
    if not protocol and args.checkpoint is not None and args.checkpoint.is_file():
        from refit_gym.diffusion.checkpoint import checkpoint_protocol

        protocol = checkpoint_protocol(args.checkpoint)  # the protocol the backbone was pretrained under
    data = load_data(args.data, **protocol)
    log(f"data: {data.summary()}")
    if hasattr(data, "padded"):  # ordered sequences: the scenario's leave-one-out protocol
        res = run_sequential(args, data, device)
        result = {**res, "split": args.split, "data": data.name, "protocol": data.protocol,
                  "seconds": round(time.perf_counter() - t0, 3)}
        print(json.dumps(result) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))
        return result
    if args.baseline == "sasrec":
        raise SystemExit(f"error: --baseline sasrec needs sequential data; {data.name!r} is an interaction dataset")
    spec = run_baseline(args, data) if args.baseline else run_checkpoint(args, data, device)
    score_fn = spec.pop("score_fn")
    log(f"evaluating {spec['model']} {spec['params']} on {args.split}")
    res = evaluate(score_fn, data, split=args.split, ks=args.ks, batch_size=args.batch_size, progress=args.progress)
    result = {**res, "split": args.split, "model": spec.pop("model"), "data": data.name,
              **spec, "seconds": round(time.perf_counter() - t0, 3)}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['model']} {result['params']} on {result['data']} [{args.split}]")
        print(format_table(res, args.ks))
    return result


if __name__ == "__main__":
    sys.exit(run_main(main, "evaluate.py"))
