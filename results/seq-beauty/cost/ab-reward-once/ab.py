"""A/B of scoring each rollout once (session 11): one ReFiT and one Pathwise epoch (refit_gym.experiments.cost, 15-second
samples scaled to the epoch; an untrained DreamRec on seq-beauty, one thread), timed with the code on PYTHONPATH:
run it once with a checkout of 91b6d69 (the terminal reward scored by the environment, then again with gradients)
and once with a checkout after it (the terminal step's graph handed to the agent)."""
import sys

import torch

torch.set_num_threads(1)
import refit_gym
from refit_gym.data import load_dataset
from refit_gym.diffusion import build_backbone
from refit_gym.experiments.cost import time_finetune_epoch

data = load_dataset("../shared/datasets/seq-beauty")
torch.manual_seed(0)
adapter = build_backbone("dreamrec", data)
for algo in sys.argv[1:]:
    print(refit_gym.__file__, algo, time_finetune_epoch(algo, "refit_gym/DreamRec-v0", data, adapter, "cpu", 15.0)[:2],
          flush=True)
