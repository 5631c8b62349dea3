"""Probe at: is the best fine-tuned DreamRec-CE row (Pathwise, encoder fixed) below SASRec on seq-beauty's test
NDCG@20, user by user? Both models' per-user test ranks of the held-out item (leave-one-out, every user, history not
masked: the benchmark's protocol, refit_gym.metrics.evaluate_sequential) for one seed: SASRec fitted with the
benchmark's settings and seed (scenario 'sequential', baseline_defaults: 20 epochs), and the Pathwise cell's selected
checkpoint of the same seed. Prints each model's mean NDCG@20 / HR@20 (they must equal the report's cells), the
paired difference with a 95% bootstrap interval over users (10,000 resamples) and the per-user win / loss counts.
Test only: both models were kept before this probe (no choice depends on it).

    python results/seq-beauty/probes/probe_at_paired_sasrec/paired.py SEED PATHWISE_BEST_PT OUT.json
"""
import json
import sys
import time

import numpy as np
import torch

from refit_gym.data import load_dataset
from refit_gym.diffusion.checkpoint import load_backbone
from refit_gym.diffusion.seq_training import adapter_score_fn
from refit_gym.metrics import evaluate_sequential
from refit_gym.scenarios import SCENARIOS

torch.set_num_threads(1)
seed, ckpt, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
data = load_dataset("../shared/datasets/seq-beauty")
sc = SCENARIOS["sequential"]
users = data.split_users["test"]
target = torch.as_tensor(data.held_out("test")[users])


def ranks(score_fn) -> np.ndarray:
    """(n_users,) int64: how many items score strictly above the test item (evaluate_sequential's rank)."""
    out = []
    with torch.no_grad():
        for s in range(0, len(users), 1024):
            u = users[s:s + 1024]
            scores = torch.as_tensor(score_fn(u, "test")).float()
            t = target[s:s + 1024]
            out.append((scores > scores.gather(1, t[:, None])).sum(1).numpy())
    return np.concatenate(out)


def ndcg20(r: np.ndarray) -> np.ndarray:
    return np.where(r < 20, 1.0 / np.log2(r + 2.0), 0.0)


t0 = time.perf_counter()
torch.manual_seed(seed)
sasrec_fn = sc.baseline_score_fn("sasrec", data, seed=seed)  # the scenario's baseline_defaults: 20 epochs
fit_s = time.perf_counter() - t0
adapter, _ = load_backbone(ckpt, data)
adapter.eval()
models = {"sasrec": sasrec_fn, "dreamrec-ce-pathwise": adapter_score_fn(adapter, data, deterministic=True)}
res = {"seed": seed, "checkpoint": ckpt, "sasrec_fit_seconds": fit_s, "n_users": int(len(users))}
per_user = {}
for name, fn in models.items():
    r = ranks(fn)
    per_user[name] = ndcg20(r)
    check = evaluate_sequential(fn, data, "test", ks=(20,))["ndcg@20"]  # the library's own metric, same ranks
    res[name] = {"ndcg@20": float(per_user[name].mean()), "hitrate@20": float((r < 20).mean()),
                 "ndcg@20_evaluate_sequential": float(check)}
    print(f"{name}: test NDCG@20 {per_user[name].mean():.4f} (evaluate_sequential {check:.4f}), "
          f"HR@20 {(r < 20).mean():.4f}", flush=True)
diff = per_user["dreamrec-ce-pathwise"] - per_user["sasrec"]
gen = np.random.default_rng(0)
boot = np.array([diff[gen.integers(0, len(diff), len(diff))].mean() for _ in range(10000)])
lo, hi = np.quantile(boot, [0.025, 0.975])
res["difference"] = {"mean": float(diff.mean()), "ci95": [float(lo), float(hi)],
                     "relative": float(diff.mean() / per_user["sasrec"].mean()),
                     "users_better": int((diff > 0).sum()), "users_worse": int((diff < 0).sum()),
                     "users_equal": int((diff == 0).sum())}
print(f"Pathwise - SASRec: {diff.mean():+.4f} (95% bootstrap over users [{lo:+.4f}, {hi:+.4f}]); "
      f"users better {res['difference']['users_better']}, worse {res['difference']['users_worse']}")
json.dump(res, open(out, "w"), indent=1)
