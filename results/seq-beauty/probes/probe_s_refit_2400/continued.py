"""Probe s, the control: continued pretraining of the ce01 10-step start (seed 0) for SECONDS of training, the
benchmark's continued cell with another budget (refit_gym.experiments.ladder.continued_pretraining; validation
once, at the end; the start competes).

    python results/seq-beauty/probes/probe_s_refit_2400/continued.py SECONDS OUT_DIR
"""
import json
import sys
from pathlib import Path

import torch

from refit_gym.data import load_dataset
from refit_gym.experiments.ladder import continued_pretraining

torch.set_num_threads(1)
seconds, out = float(sys.argv[1]), Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
repo = Path(__file__).resolve().parents[4]
start = json.loads((repo / "results/seq-beauty/runs/dreamrec/seed0.json").read_text())
rec = continued_pretraining("refit_gym/DreamRec-v0", load_dataset("../shared/datasets/seq-beauty"),
                            Path("/work/runs/dreamrec-seqbeauty-ce01-k10.pt"), seconds, 0, out, "cpu", "ndcg@20",
                            {"valid": start["valid"], "test": start["test"]}, {}, print)
(out / "record.json").write_text(json.dumps(rec, indent=1))
print({k: rec[k] for k in ("train_seconds", "wall_seconds")}, "valid", rec["best"]["valid"]["ndcg@20"],
      "test", rec["best"]["test"]["ndcg@20"])
