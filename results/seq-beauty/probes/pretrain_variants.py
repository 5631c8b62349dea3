"""Probe: pretrain DreamRec variants on seq-beauty with the project's own loop (one thread each).

usage: python results/seq-beauty/probes/pretrain_variants.py DATA OUT_DIR NAME MINUTES [key=value ...]
  key=value: DreamRecAdapter keyword arguments (e.g. ce_weight=1.0 d=64); lr=..., seed=... and patience=... (default 3) go to PretrainConfig.
Writes OUT_DIR/NAME/{best.pt,history.json,last_state.pt} and OUT_DIR/NAME/probe.json (valid/test of the kept model).
"""
import json, sys, time
from pathlib import Path
import torch
from refit_gym.data.sequential import load_sequential
from refit_gym.diffusion.dreamrec import DreamRecAdapter
from refit_gym.diffusion.training import PretrainConfig, pretrain
from refit_gym.scenarios import SCENARIOS

torch.set_num_threads(1)
data_dir, out, name, minutes = sys.argv[1], Path(sys.argv[2]), sys.argv[3], float(sys.argv[4])
kw = {k: eval(v, {}) for k, v in (a.split("=", 1) for a in sys.argv[5:])}  # probe CLI only: literals
lr, seed, patience = kw.pop("lr", 1e-3), kw.pop("seed", 0), kw.pop("patience", 3)
torch.manual_seed(seed)
data = load_sequential(data_dir, max_len=50)
ev = SCENARIOS["sequential"].evaluate_backbone
adapter = DreamRecAdapter.from_data(data, **kw)
# every epoch validated on every user (eval_users=None), as when the probes ran
cfg = PretrainConfig(epochs=1000, lr=lr, batch_size=256, eval_every=1, patience=patience, metric="ndcg@20", seed=seed,
                     eval_users=None)
t = time.time()
pretrain(adapter, data, cfg, out_dir=out / name, max_seconds=minutes * 60, evaluate_fn=ev, tensorboard=False,
         progress=False, log=lambda s: print(name, s, flush=True), resume=True)
v, te = ev(adapter, data, "valid"), ev(adapter, data, "test")
res = {"settings": dict(kw, lr=lr, seed=seed), "valid": v, "test": te, "seconds": time.time() - t}
(out / name / "probe.json").write_text(json.dumps(res, indent=1))
print(name, "valid ndcg@20 %.4f test ndcg@20 %.4f recall@20 %.4f" % (v["ndcg@20"], te["ndcg@20"], te["recall@20"]), flush=True)
