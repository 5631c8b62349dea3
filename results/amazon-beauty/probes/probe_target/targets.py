"""Probe target (amazon-beauty, session 20): how good is each candidate *target* of the reward, ranked as it is?

The report's Pathwise row distils the graph-score reward's target, EASE's scores at lambda = 100 (1 hop), and tests at
97% of EASE's NDCG@20: a model that reaches its target cannot pass it. This probe ranks candidate targets directly
(no training) on validation, every user, training items masked, the input the user's whole training history:

1. EASE at lambda = 100 (the report's target and baseline), and at 50 and 200;
2. EASE with a second hop (``s = c W + gamma c W^2``, graph-score's ``n_hops: 2``), gamma on a grid;
3. the DiffRec start (CKPT, the deterministic chain evaluation runs);
4. blends ``z(EASE) + w z(DiffRec)`` of the two standardised score rows (each over the user's unmasked items), w on a
   grid: what a reward anchored to the start (a KL to the reference, or a target mixing in the start's scores) would aim
   at.

A target that ranks above EASE on validation is one whose distillation could pass EASE.

    PYTHONPATH=. OMP_NUM_THREADS=1 python results/amazon-beauty/probes/probe_target/targets.py \
        /work/runs/s16/ab-wide/pretrain/best.pt > results/amazon-beauty/probes/probe_target/targets.txt
"""
import sys
import time

import numpy as np

from common import data, report, z  # this folder: the shared data, mask and report
from refit_gym.baselines import EASE
from refit_gym.diffusion.checkpoint import load_backbone
from refit_gym.metrics import backbone_score_fn

X = data.train.astype(np.float32)


t0 = time.time()
ease = {}
for lam in (50.0, 100.0, 200.0):
    W = EASE(lam=lam).fit(data).weights
    ease[lam] = np.asarray(X @ W, dtype=np.float32)
    report(f"EASE lambda {lam:g}", ease[lam])
    if lam == 100.0:
        W100 = W
two_hop = np.asarray(ease[100.0] @ W100, dtype=np.float32)  # c W^2
for gamma in (0.1, 0.25, 0.5):
    report(f"EASE 100, 2 hops, gamma {gamma:g}", ease[100.0] + gamma * two_hop)
del two_hop
print(f"# EASE targets: {time.time() - t0:.0f} s", flush=True)

adapter, _ = load_backbone(sys.argv[1], data)
adapter.eval()
fn = backbone_score_fn(adapter, data, "valid")
D = np.empty_like(ease[100.0])
for start in range(0, data.n_users, 1024):
    users = np.arange(start, min(start + 1024, data.n_users))
    D[users] = fn(users).numpy()
report("DiffRec start", D)
print(f"# DiffRec scores: {time.time() - t0:.0f} s", flush=True)
zE, zD = z(ease[100.0]), z(D)
for w in (0.1, 0.2, 0.3, 0.5, 1.0):
    report(f"z(EASE 100) + {w:g} z(DiffRec)", zE + w * zD)
