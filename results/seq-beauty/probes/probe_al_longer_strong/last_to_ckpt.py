"""Write the latest weights of a pretraining run (OUT/last_state.pt, its 'model' state) as a backbone checkpoint, with the
architecture and data tensors of the run's best.pt.

    python results/seq-beauty/probes/probe_al_longer_strong/last_to_ckpt.py RUN_DIR DST
"""
import sys
from pathlib import Path

import torch

from refit_gym.diffusion.checkpoint import load_backbone, save_backbone

run, dst = Path(sys.argv[1]), sys.argv[2]
adapter, meta = load_backbone(run / "best.pt")
state = torch.load(run / "last_state.pt", map_location="cpu", weights_only=True)  # tensors and plain data only
adapter.load_state_dict(state["model"])
print(save_backbone(adapter, dst, dict(meta, source="last_state", epoch=int(state["epoch"]))), "epoch", state["epoch"])
