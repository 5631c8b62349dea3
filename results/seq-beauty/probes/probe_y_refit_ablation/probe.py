"""Probe y (session 10): which part of the benchmark's ReFiT recipe lifts DreamRec on seq-beauty?

The recipe (``../../inputs/refit-crn-k10-2400.yml``) has two gradient terms: REINFORCE on the last reverse step (8
copies per user sharing x_T, the group advantage at the reward's scale) and ``score_grad``, the reward's exact
gradient in the item embeddings that score the sampled x0 (x0 held fixed). Modes:

* ``pg-only``: ``pg-only.yml`` (the recipe with ``score_grad: false``): REINFORCE alone.
* ``score-only``: the recipe itself with every advantage set to 0 (the same rollouts and cost; only the
  ``score_grad`` term trains).

    python results/seq-beauty/probes/probe_y_refit_ablation/probe.py MODE CHECKPOINT OUT [--seed 0]

Writes OUT/metrics.json (refit_gym.experiments.finetune.finetune) with the same 5 validations as the benchmark cell.
"""
import argparse
from pathlib import Path

import torch
import yaml

from agents.refit import ReFiT
from refit_gym.data import load_dataset
from refit_gym.experiments.finetune import finetune

HERE = Path(__file__).resolve().parent
ENV = "refit_gym/DreamRec-v0"
p = argparse.ArgumentParser()
p.add_argument("mode", choices=["pg-only", "score-only"])
p.add_argument("checkpoint")
p.add_argument("out")
p.add_argument("--seed", type=int, default=0)
p.add_argument("--data", default="../shared/datasets/seq-beauty")
p.add_argument("--n-timesteps", type=int, default=None, help="override the recipe's (a smoke test)")
args = p.parse_args()
torch.set_num_threads(1)
recipe = HERE / "pg-only.yml" if args.mode == "pg-only" else HERE.parent.parent / "inputs" / "refit-crn-k10-2400.yml"
params = yaml.safe_load(recipe.read_text())[ENV]
params["n_timesteps"] = args.n_timesteps or params["n_timesteps"]
if args.mode == "score-only":
    ReFiT.compute_advantages = lambda self, traj: torch.zeros(traj.n_steps, traj.n_traj, device=traj.rewards.device)
m = finetune("refit", ENV, load_dataset(args.data), args.checkpoint, hyperparams=params, seed=args.seed,
             out=args.out, eval_freq=int(params["n_timesteps"]) // 5, select_metric="ndcg@20",
             hyperparams_source=f"{recipe} ({args.mode})")
print({k: m[k] for k in ("best", "train_seconds")})
