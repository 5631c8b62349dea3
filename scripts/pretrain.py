#!/usr/bin/env python
"""Pretrain a diffusion recommender backbone, then evaluate the best (validation-selected) model.

Examples:
    python scripts/pretrain.py                                   # synthetic data, DiffRec, runs/pretrain-synthetic
    python scripts/pretrain.py --backbone diffrec --data ../shared/datasets/ml-1m --out runs/diffrec-ml1m
    python scripts/pretrain.py --backbone cfdiff --data ../shared/datasets/ml-1m --out runs/cfdiff-ml1m
    python scripts/pretrain.py ... --resume                      # continue an interrupted run in --out

Writes to --out: best.pt (backbone checkpoint, readable by scripts/evaluate.py and scripts/train.py),
last_state.pt (resume state), history.json, metrics.json (valid + test of the best model), tb/ (TensorBoard).
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

# Backbone architecture defaults (DiffRec's published ml-1m setting; CF-Diff sized to match).
BACKBONE_DEFAULTS = {
    "diffrec": dict(hidden=[600, 200], emb_size=10, dropout=0.5),
    "cfdiff": dict(n_hops=3, d_model=256, heads=4, emb_size=16, dropout=0.5, top_m=50),
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="diffrec", help="registered backbone name (diffrec, cfdiff, ...)")
    p.add_argument("--data", default="synthetic", help="dataset folder/file, or 'synthetic' (default)")
    p.add_argument("--out", default=None, help="output folder (default runs/pretrain-<backbone>-<data name>)")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--batch-size", type=int, default=400)
    p.add_argument("--timestep-sampling", choices=["importance", "uniform"], default="importance")
    p.add_argument("--no-reweight", action="store_true", help="disable the SNR-difference loss weights")
    p.add_argument("--patience", type=int, default=10, help="evaluations without gain before early stopping (0: off)")
    p.add_argument("--eval-every", type=int, default=1)
    p.add_argument("--metric", default="recall@20", help="validation metric for model selection")
    # schedule
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--noise-schedule", default="linear-var", choices=["linear", "linear-var", "cosine"])
    p.add_argument("--noise-scale", type=float, default=0.005)
    p.add_argument("--noise-min", type=float, default=0.005)
    p.add_argument("--noise-max", type=float, default=0.01)
    p.add_argument("--mean-type", default="x0", choices=["x0", "eps"])
    p.add_argument("--sampling-steps", type=int, default=0, help="noise level of the inference start (0: clean history)")
    # architecture overrides
    p.add_argument("--hidden", type=int, nargs="+", default=None, help="DiffRec encoder widths (default 600 200)")
    p.add_argument("--emb-size", type=int, default=None)
    p.add_argument("--dropout", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="cpu, cuda or auto")
    p.add_argument("--resume", action="store_true", help="continue from --out/last_state.pt")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--json", action="store_true", help="print the final metrics as one JSON object on stdout")
    return p


def backbone_kwargs(args) -> dict:
    kw = dict(BACKBONE_DEFAULTS.get(args.backbone, {}))
    for name in ("hidden", "emb_size", "dropout"):
        v = getattr(args, name)
        if v is not None:
            kw[name] = v
    kw["schedule"] = dict(noise_schedule=args.noise_schedule, noise_scale=args.noise_scale, noise_min=args.noise_min,
                          noise_max=args.noise_max, steps=args.steps, mean_type=args.mean_type,
                          sampling_steps=args.sampling_steps)
    return kw


def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    import torch

    from refit_gym.data import load_dataset
    from refit_gym.diffusion import build_backbone, load_backbone
    from refit_gym.diffusion.training import PretrainConfig, pretrain
    from refit_gym.metrics import evaluate_backbone
    from refit_gym.utils import resolve_device, set_global_seed

    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    device = resolve_device(args.device)
    data = load_dataset(args.data)
    log(f"data: {data.summary()}")
    out = Path(args.out or f"runs/pretrain-{args.backbone}-{data.name}")
    set_global_seed(args.seed)
    kwargs = backbone_kwargs(args)
    if args.backbone not in BACKBONE_DEFAULTS:
        kwargs.pop("hidden", None), kwargs.pop("emb_size", None), kwargs.pop("dropout", None)
    adapter = build_backbone(args.backbone, data, **kwargs)
    n_params = sum(p.numel() for p in adapter.parameters())
    log(f"backbone: {args.backbone} ({n_params:,} parameters), device {device}, output {out}")
    cfg = PretrainConfig(epochs=args.epochs, lr=args.lr, weight_decay=args.weight_decay, batch_size=args.batch_size,
                         timestep_sampling=args.timestep_sampling, reweight=not args.no_reweight,
                         eval_every=args.eval_every, patience=args.patience, metric=args.metric, seed=args.seed)
    result = pretrain(adapter, data, cfg, out_dir=out, device=device, progress=not args.no_progress,
                      resume=args.resume, log=log)
    best, meta = load_backbone(out / "best.pt", data, device=device)
    metrics = {
        "backbone": args.backbone, "data": data.name, "best_epoch": result.best_epoch,
        "seconds_per_epoch": result.seconds_per_epoch, "epochs_run": len(result.history),
        "valid": evaluate_backbone(best, data, "valid", device=device),
        "test": evaluate_backbone(best, data, "test", device=device),
        "checkpoint": str(out / "best.pt"), "config": asdict(cfg), "backbone_config": best.config(),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    t = metrics["test"]
    log(f"best epoch {result.best_epoch}; {result.seconds_per_epoch:.2f} s/epoch on {device}")
    log(f"test: recall@20 {t['recall@20']:.4f}  ndcg@20 {t['ndcg@20']:.4f}  ({t['n_users_evaluated']} users)")
    log(f"checkpoint: {out / 'best.pt'}; TensorBoard: tensorboard --logdir {out / 'tb'}")
    if args.json:
        print(json.dumps(metrics))
    return metrics


if __name__ == "__main__":
    main()
