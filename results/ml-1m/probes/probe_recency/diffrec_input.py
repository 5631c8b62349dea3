"""Probe (ml-1m, session 15): the DiffRec start (binary input, /work/runs/s13/ml1m/diffrec/best.pt) run from a
recency-weighted history instead of the binary one, no training: each user's training items weighted
w_min + (1 - w_min) * j / (n - 1) by their position j in the user's list of train_list.npy (recency.py). Validation
NDCG@20 / Recall@20 only (training items masked), every user.

    python results/ml-1m/probes/probe_recency/diffrec_input.py CKPT > results/ml-1m/probes/probe_recency/diffrec_input.txt
"""
import sys

import numpy as np
import scipy.sparse as sp
import torch

from refit_gym.data import load_dataset
from refit_gym.diffusion.checkpoint import load_backbone
from refit_gym.metrics import evaluate

torch.set_num_threads(1)
data = load_dataset("../shared/datasets/ml-1m")
adapter, _ = load_backbone(sys.argv[1], data)
adapter.eval()
t = np.load("../shared/datasets/ml-1m/train_list.npy")
start = np.searchsorted(t[:, 0], np.arange(data.n_users))
n_u = np.bincount(t[:, 0], minlength=data.n_users)
frac = (np.arange(len(t)) - start[t[:, 0]]) / np.maximum(n_u[t[:, 0]] - 1, 1)
binary = sp.csr_matrix((np.ones(len(t), np.float32), (t[:, 0], t[:, 1])), shape=data.train.shape)
if (binary != data.train).nnz:
    raise SystemExit("train_list.npy does not match the loaded training matrix")
for w_min in (1.0, 0.5, 0.2, 0.0):
    W = sp.csr_matrix(((w_min + (1 - w_min) * frac).astype(np.float32), (t[:, 0], t[:, 1])), shape=data.train.shape)

    def score_fn(users, W=W):
        with torch.no_grad():
            return adapter.infer(torch.as_tensor(W[users].toarray()))

    m = evaluate(score_fn, data, "valid", ks=(20,))
    print(f"w_min {w_min}: valid NDCG@20 {m['ndcg@20']:.4f} Recall@20 {m['recall@20']:.4f}", flush=True)
