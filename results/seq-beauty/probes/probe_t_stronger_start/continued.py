"""Probe t, the control: continued pretraining of START (seed 0) for SECONDS of training, the benchmark's continued
cell (refit_gym.experiments.ladder.continued_pretraining; the start competes). When probes t and w ran (session 9)
it trained for SECONDS at the scenario's lr 1e-3 and validated once, at the end; since session 10 it runs the whole
epochs nearest to SECONDS at the start's own lr and validates about 10 times, so a rerun is not the recorded run.

    python results/seq-beauty/probes/probe_t_stronger_start/continued.py START SECONDS OUT_DIR
"""
import json
import sys
from pathlib import Path

import torch

from refit_gym.data import load_dataset
from refit_gym.diffusion.checkpoint import load_backbone
from refit_gym.experiments.ladder import continued_pretraining
from refit_gym.scenarios import SCENARIOS

torch.set_num_threads(1)
start, seconds, out = Path(sys.argv[1]), float(sys.argv[2]), Path(sys.argv[3])
out.mkdir(parents=True, exist_ok=True)
data = load_dataset("../shared/datasets/seq-beauty")
adapter, _ = load_backbone(start, data, device="cpu")
ev = SCENARIOS["sequential"].evaluate_backbone
pretrained = {split: ev(adapter, data, split) for split in ("valid", "test")}
rec = continued_pretraining("refit_gym/DreamRec-v0", data, start, seconds, 0, out, "cpu", "ndcg@20", pretrained, {},
                            print)
(out / "record.json").write_text(json.dumps(dict(rec, start=str(start), pretrained=pretrained), indent=1))
print({k: rec[k] for k in ("train_seconds", "wall_seconds")}, "start valid", pretrained["valid"]["ndcg@20"], "test",
      pretrained["test"]["ndcg@20"], "| continued valid", rec["best"]["valid"]["ndcg@20"], "test",
      rec["best"]["test"]["ndcg@20"])
