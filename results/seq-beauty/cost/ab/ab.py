import sys, time, torch
torch.set_num_threads(1)
import refit_gym.scores as S
from refit_gym.data import load_dataset
from refit_gym.diffusion import build_backbone
from refit_gym.experiments.cost import time_finetune_epoch, time_pretrain_epoch
from refit_gym.scenarios import SCENARIOS
orig = S._LowRankLogSumExp.apply
mode = sys.argv[1]
if mode == "old":  # no gradients formed in the forward pass: the backward forms the scores again (session 9)
    S._LowRankLogSumExp.apply = staticmethod(lambda u, w, r, c, grads: orig(u, w, r, c, False))
data = load_dataset("../shared/datasets/seq-beauty")
torch.manual_seed(0)
adapter = build_backbone("dreamrec", data)
for algo in sys.argv[2:]:
    if algo == "pretrain":
        print(mode, algo, time_pretrain_epoch(adapter, data, SCENARIOS["sequential"], "cpu", 15.0, log=lambda s: None)[:2], flush=True)
    else:
        print(mode, algo, time_finetune_epoch(algo, "refit_gym/DreamRec-v0", data, adapter, "cpu", 15.0)[:2], flush=True)
