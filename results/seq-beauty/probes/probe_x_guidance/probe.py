"""Probe x (session 10): classifier-free guidance at inference on a pretrained DreamRec, no training.

For each chain length K and guidance weight w, the validation (and, with --test, test) metrics of the same weights
with ``denoise = (1 + w) f(x, c) - w f(x, null)`` (DreamRec trains the null vector with cfg_dropout 0.1). Prints one
JSON line per (K, w) and writes them all to OUT.

    python results/seq-beauty/probes/probe_x_guidance/probe.py CHECKPOINT OUT.json --steps 10 50 --weights 0 0.5 1 2 4
"""
import argparse
import json
import time

import torch

from refit_gym.data import load_dataset
from refit_gym.diffusion.checkpoint import load_backbone
from refit_gym.scenarios import SCENARIOS

p = argparse.ArgumentParser()
p.add_argument("checkpoint")
p.add_argument("out")
p.add_argument("--data", default="../shared/datasets/seq-beauty")
p.add_argument("--steps", type=int, nargs="+", default=[10])
p.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.5, 1.0, 2.0, 4.0])
p.add_argument("--test", action="store_true", help="also read test (only for the kept setting)")
args = p.parse_args()
torch.set_num_threads(1)
data = load_dataset(args.data)
scenario = SCENARIOS["sequential"]
adapter, _ = load_backbone(args.checkpoint, data)
rows = []
for k in args.steps:
    adapter.set_inference_steps(k)
    for w in args.weights:
        adapter.guidance = float(w)
        t0 = time.perf_counter()
        row = dict(steps=k, guidance=w, valid=scenario.evaluate_backbone(adapter, data, "valid"))
        if args.test:
            row["test"] = scenario.evaluate_backbone(adapter, data, "test")
        row["seconds"] = time.perf_counter() - t0
        print(json.dumps(row), flush=True)
        rows.append(row)
json.dump(dict(checkpoint=args.checkpoint, rows=rows), open(args.out, "w"), indent=1)
