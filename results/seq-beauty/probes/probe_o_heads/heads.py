"""Probe o: where does a Pathwise-trained DreamRec lose ranking quality against SASRec: its encoder or its chain?

For each checkpoint given, validation NDCG@20 / HR@20 (leave-one-out, all 22,363 users) of
* ``chain-deterministic``: the reverse chain's posterior means from x_T (what the benchmark evaluates);
* ``chain-sampled``: the chain with its Gaussian noise (one draw, seed 0), as Pathwise trains it;
* ``encoder-dot``: the sequence encoder's state c scored directly against the item embeddings, c E^T (SASRec's
  head on DreamRec's encoder, no diffusion).

    python results/seq-beauty/probes/probe_o_heads/heads.py OUT.json CKPT [CKPT ...]

The dataset is seq-beauty unless ``DATA`` names another sequence dataset folder (session 15: poi-gowalla).
"""
import json
import os
import sys

import numpy as np
import torch

from refit_gym.data import load_dataset
from refit_gym.diffusion.checkpoint import load_backbone
from refit_gym.diffusion.seq_training import adapter_score_fn
from refit_gym.metrics import evaluate_sequential

torch.set_num_threads(1)
out, ckpts = sys.argv[1], sys.argv[2:]
data = load_dataset(os.environ.get("DATA", "../shared/datasets/seq-beauty"))
res = {}
for ckpt in ckpts:
    adapter, _ = load_backbone(ckpt, data)
    adapter.eval()
    known = data.history_items("valid")

    def encoder_dot(users, split):
        cond = torch.as_tensor(adapter.encode_condition(users, known[users], split=split))
        with torch.no_grad():
            return adapter.context(cond)["c"] @ adapter.encoder.item_weight.t()

    row = {}
    with torch.no_grad():
        for name, fn in (("chain-deterministic", adapter_score_fn(adapter, data, deterministic=True)),
                         ("chain-sampled", adapter_score_fn(adapter, data, deterministic=False, seed=0)),
                         ("encoder-dot", encoder_dot)):
            m = evaluate_sequential(fn, data, "valid", ks=(20,))
            row[name] = {k: m[k] for k in ("ndcg@20", "hitrate@20")}
            print(f"{ckpt}: {name:20s} valid NDCG@20 {m['ndcg@20']:.4f}  HR@20 {m['hitrate@20']:.4f}", flush=True)
    res[ckpt] = row
json.dump(res, open(out, "w"), indent=1)
