"""Probe an, part 2 (session 14): how much of the chain's validation NDCG@20 its start noise costs.

Per checkpoint: the chain as evaluated (x_T ~ N(0, I), seed 0), the chain from x_T = 0, and the mean of the scores of M
chains from independent x_T (scores are linear in x0, so this is the ranking of the mean x0), M = 4 and 16.

    python results/seq-beauty/probes/probe_an_history_items/noise.py OUT.json CKPT [CKPT ...]
"""
import json, sys
import torch
from refit_gym.diffusion.checkpoint import load_backbone
from refit_gym.data.sequential import load_sequential
from refit_gym.metrics import evaluate_sequential
from refit_gym.diffusion.seq_training import adapter_score_fn

torch.set_num_threads(1)
data = load_sequential("../shared/datasets/seq-beauty", max_len=50)
out = {}
for ck in sys.argv[2:]:
    ad, _ = load_backbone(ck)
    ad.eval()
    res = {}
    with torch.no_grad():
        res["chain"] = evaluate_sequential(adapter_score_fn(ad, data, seed=0), data, "valid", (20,))["ndcg@20"]
        for m in (4, 16):
            fns = [adapter_score_fn(ad, data, seed=s, factored=False) for s in range(m)]
            res[f"mean-of-{m}"] = evaluate_sequential(lambda u, sp: sum(f(u, sp) for f in fns) / m, data, "valid",
                                                      (20,))["ndcg@20"]
        start = ad.start
        ad.start = lambda condition, context, generator=None: torch.zeros_like(start(condition, context, generator))
        res["zero-start"] = evaluate_sequential(adapter_score_fn(ad, data, seed=0), data, "valid", (20,))["ndcg@20"]
    out[ck] = res
    print(ck, json.dumps(res), flush=True)
json.dump(out, open(sys.argv[1], "w"), indent=1)
