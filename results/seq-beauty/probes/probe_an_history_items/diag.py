"""Probe an (session 14): where the chain's ranking goes at evaluation, for one or more backbone checkpoints.

Per checkpoint, on every validation user of seq-beauty: NDCG@20 of the chain (the scenario's protocol: history not
masked), of the same chain with the user's history masked (except the target), of the encoder's own head c E^T
(both ways); the share of the top-20 slots that hold history items; the share of targets that repeat a history item.

    python results/seq-beauty/probes/probe_an_history_items/diag.py OUT.json CKPT [CKPT ...]
"""
import json, sys
import numpy as np, torch
from refit_gym.diffusion.checkpoint import load_backbone
from refit_gym.data.sequential import load_sequential
from refit_gym.metrics import evaluate_sequential
from refit_gym.diffusion.seq_training import adapter_score_fn

torch.set_num_threads(1)
data = load_sequential("../shared/datasets/seq-beauty", max_len=50)
known = data.history_items("valid")
target = data.held_out("valid")
users = data.split_users["valid"]
rep = float(np.asarray(known[users, target[users]]).ravel().astype(bool).mean())
out = {"target_in_history": rep}
for ck in sys.argv[2:]:
    ad, _ = load_backbone(ck)
    ad.eval()
    chain = adapter_score_fn(ad, data, deterministic=True, seed=0, factored=False)

    def head(u, split):
        vis = data.history_items(split)[u]
        cond = torch.as_tensor(ad.encode_condition(u, vis, split=split))
        with torch.no_grad():
            return ad.context(cond)["c"] @ ad.encoder.item_weight.t()

    res = {}
    for name, fn in (("chain", chain), ("head", head)):
        with torch.no_grad():
            for mask in (False, True):
                r = evaluate_sequential(fn, data, "valid", (20,), mask_history=mask)
                res[f"{name}{'-masked' if mask else ''}"] = r["ndcg@20"]
            share = []
            for s in range(0, len(users), 2048):
                u = users[s:s + 2048]
                top = torch.topk(torch.as_tensor(fn(u, "valid")), 20, dim=1).indices.numpy()
                k = known[u]
                share.append(np.asarray(k[np.repeat(np.arange(len(u)), 20), top.ravel()]).ravel().astype(bool).mean())
            res[f"{name}-top20-history-share"] = float(np.mean(share))
    out[ck] = res
    print(ck, json.dumps(res), flush=True)
print("targets repeating a history item:", rep)
json.dump(out, open(sys.argv[1], "w"), indent=1)
