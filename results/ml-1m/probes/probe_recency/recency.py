"""Probe (ml-1m, session 15): does the order of each user's training interactions carry the temporal signal that
ml-1m's temporal split evaluates, and how much of it do order-blind models (EASE, DiffRec's binary input) leave?

DiffRec's ml-1m files list each user's training pairs in a fixed order (``train_list.npy``, users ascending; item ids
numbered by first appearance). If that order is time, a user's last training items are closer to their validation
and test items than their first ones. Measured here without training a diffusion model:

1. EASE (the report's baseline, lambda 1000 and the validation-chosen 4000) scored from the first 20% or the last 20%
   of each user's training items (file order) only;
2. EASE applied to a recency-weighted history: item j of a user's n training items (file order) weighted
   ``w_min + (1 - w_min) * j / (n - 1)``, T-DiffRec's linear time weights (Wang et al., 2023), w_min on a grid;
   w_min = 1 is the binary input of every model in the report;
3. a ridge regression from the first 80% to the last 20% of each history (a temporal target, binary input).

Metrics: Recall@20 / NDCG@20 over all items, training items masked (validation), training + validation items masked
(test), every user with a target; the input is the training history for both splits, as in the report.

    python results/ml-1m/probes/probe_recency/recency.py > results/ml-1m/probes/probe_recency/recency.txt
    python results/ml-1m/probes/probe_recency/recency.py ../shared/datasets/amazon-beauty 100 > results/ml-1m/probes/probe_recency/recency-amazon-beauty.txt

Arguments (optional): another DiffRec-format folder, and the EASE lambdas to use (default 1000 4000).
"""
import sys

import numpy as np
import scipy.sparse as sp

D = (sys.argv[1] if len(sys.argv) > 1 else "../shared/datasets/ml-1m").rstrip("/") + "/"
LAMBDAS = [float(x) for x in sys.argv[2:]] or [1000.0, 4000.0]
t, v, te = (np.load(D + f"{s}_list.npy") for s in ("train", "valid", "test"))
nu = int(max(a[:, 0].max() for a in (t, v, te))) + 1
ni = int(max(a[:, 1].max() for a in (t, v, te))) + 1


def dense(pairs, weights=None):
    w = np.ones(len(pairs)) if weights is None else weights
    return sp.csr_matrix((w, (pairs[:, 0], pairs[:, 1])), shape=(nu, ni)).toarray()


if not (np.diff(t[:, 0]) >= 0).all():
    raise SystemExit("train_list.npy: users are not contiguous; the file order per user is undefined")
X, V, Te = dense(t), dense(v), dense(te)
start = np.searchsorted(t[:, 0], np.arange(nu))
n_u = np.bincount(t[:, 0], minlength=nu)
pos = np.arange(len(t)) - start[t[:, 0]]            # 0..n-1: position in the user's training list
frac = pos / np.maximum(n_u[t[:, 0]] - 1, 1)        # 0 (first) .. 1 (last)
k = np.maximum(1, np.round(0.2 * n_u)).astype(int)[t[:, 0]]
first = dense(t[pos < k]); last = dense(t[pos >= n_u[t[:, 0]] - k]); head80 = dense(t[pos < n_u[t[:, 0]] - k])
disc = 1 / np.log2(np.arange(2, 22))


def metrics(S, T, mask):
    S = np.where(mask > 0, -np.inf, S)
    top = np.argpartition(-S, 20, axis=1)[:, :20]
    top = np.take_along_axis(top, np.argsort(-np.take_along_axis(S, top, 1), 1), 1)
    rel = np.take_along_axis(T, top, 1)
    n = T.sum(1); ok = n > 0
    idcg = np.cumsum(disc)[np.minimum(n, 20).astype(int) - 1]
    return (rel.sum(1)[ok] / np.minimum(n[ok], 20)).mean(), ((rel * disc).sum(1)[ok] / idcg[ok]).mean()


def show(name, S):
    rv, nv = metrics(S, V, X)
    rt, nt = metrics(S, Te, X + V)
    print(f"{name:48s} valid R@20 {rv:.4f} N@20 {nv:.4f} | test R@20 {rt:.4f} N@20 {nt:.4f}", flush=True)


for lam in LAMBDAS:
    P = np.linalg.inv(X.T @ X + lam * np.eye(ni))
    B = -P / np.diag(P)
    B[np.diag_indices(ni)] = 0
    print(f"EASE lambda {lam:g}")
    show("  binary history (the report's EASE)", X @ B)
    show("  first 20% of the history only", first @ B)
    show("  last 20% of the history only", last @ B)
    for w_min in (0.0, 0.2, 0.5):
        show(f"  recency-weighted history, w_min {w_min}", dense(t, w_min + (1 - w_min) * frac) @ B)
    show("  ridge first 80% -> last 20% (temporal target)", X @ np.linalg.solve(head80.T @ head80 + lam * np.eye(ni),
                                                                            head80.T @ last))
