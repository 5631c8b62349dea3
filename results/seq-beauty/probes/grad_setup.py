"""The batch, reward and gradient helpers shared by probes l and n (gradient alignment on one batch).

``gradient_probe(ckpt, B)``: the checkpoint in eval mode (no dropout, so every estimator differentiates the same
function of the noise), ``B`` users with at least two training items drawn with seed 0, their conditions (the train
sequence less its last item) and targets (that item), the item embeddings held fixed, the chain's parameters less
the item embeddings, the reward ``log softmax(x0 E^T)[target]`` at tau 1 and ``flat_grad(loss)`` over those
parameters.
"""
from types import SimpleNamespace

import numpy as np
import torch

from refit_gym.data import load_dataset
from refit_gym.data.dataset import as_interactions
from refit_gym.diffusion.checkpoint import load_backbone


def gradient_probe(ckpt: str, B: int = 32, data_dir: str = "../shared/datasets/seq-beauty") -> SimpleNamespace:
    data = load_dataset(data_dir)
    adapter, _ = load_backbone(ckpt, data)
    adapter.eval()
    params = [p for n, p in adapter.named_parameters() if not n.startswith("encoder.item_emb")]
    rng = np.random.default_rng(0)
    lengths = np.asarray((adapter.seq_items != adapter.pad_id).sum(1))
    users = rng.choice(np.flatnonzero(lengths >= 2), B, replace=False)
    visible = as_interactions(data).train[users]
    cond = torch.as_tensor(adapter.encode_condition(users, visible, hidden_tail=np.ones(B, dtype=np.int64)))
    target = adapter.seq_items[torch.as_tensor(users), -1]
    emb = adapter.encoder.item_weight.detach()

    def reward(x0, tgt):
        return torch.log_softmax(x0 @ emb.t(), dim=-1).gather(1, tgt[:, None]).squeeze(1)

    def flat_grad(loss):
        g = torch.autograd.grad(loss, params, allow_unused=True)
        return torch.cat([(gi if gi is not None else torch.zeros_like(p)).reshape(-1) for gi, p in zip(g, params)])

    return SimpleNamespace(adapter=adapter, params=params, cond=cond, target=target, emb=emb,
                           K=adapter.schedule.chain_steps, B=B, reward=reward, flat_grad=flat_grad)
