"""Write the latest weights of a pretraining run (OUT/last_state.pt, read and checked by the loop's own
load_training_state) as a backbone checkpoint, with the architecture and data tensors of the run's best.pt.

    python results/seq-beauty/probes/probe_al_longer_strong/last_to_ckpt.py RUN_DIR DST
"""
import sys
from pathlib import Path

import torch

from refit_gym.diffusion.checkpoint import load_backbone, save_backbone
from refit_gym.diffusion.train_state import load_training_state

run, dst = Path(sys.argv[1]), sys.argv[2]
adapter, meta = load_backbone(run / "best.pt")
# digest and finiteness checked; the optimizer is a throwaway the saved state loads into
state = load_training_state(run / "last_state.pt", adapter, torch.optim.AdamW(adapter.parameters()), None)
print(save_backbone(adapter, dst, dict(meta, source="last_state", epoch=int(state["epoch"]))), "epoch", state["epoch"])
