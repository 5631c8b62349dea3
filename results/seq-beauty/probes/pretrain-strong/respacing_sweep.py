"""Validation NDCG@20 / HR@20 of a DreamRec checkpoint's deterministic chain respaced to K steps (weights unchanged).

    python results/seq-beauty/probes/pretrain-strong/respacing_sweep.py CKPT K [K ...]
"""
import sys

import torch

from refit_gym.data import load_dataset
from refit_gym.diffusion.checkpoint import load_backbone
from refit_gym.diffusion.seq_training import adapter_score_fn
from refit_gym.metrics import evaluate_sequential

torch.set_num_threads(1)
data = load_dataset("../shared/datasets/seq-beauty")
for k in map(int, sys.argv[2:]):
    adapter, _ = load_backbone(sys.argv[1], data)
    adapter.eval()
    adapter.set_inference_steps(k)
    with torch.no_grad():
        m = evaluate_sequential(adapter_score_fn(adapter, data, deterministic=True), data, "valid", ks=(20,))
    print(f"K = {k:3d}: valid NDCG@20 {m['ndcg@20']:.4f}  HR@20 {m['hitrate@20']:.4f}", flush=True)
