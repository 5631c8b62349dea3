"""Session 16: the same operations timed with the code of two commits, alone on the machine, one thread.

Run from a checkout of each commit (PYTHONPATH=that checkout): python ab.py LABEL CHECKPOINT REPEATS. Prints one JSON
line per repeat: the seconds of one pretraining epoch (``time_pretrain_epoch``), one full validation
(``time_evaluation``, every seq-beauty user) and one epoch of the shipped Pathwise and ReFiT recipes.
"""
import copy
import json
import sys

import torch

torch.set_num_threads(1)
from refit_gym.data import load_dataset  # noqa: E402
from refit_gym.diffusion import load_backbone  # noqa: E402
from refit_gym.experiments.cost import (evaluated_users, time_evaluation, time_finetune_epoch,  # noqa: E402
                                        time_pretrain_epoch)
from refit_gym.scenarios import scenario_for  # noqa: E402

label, ckpt, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3])
data = load_dataset("../shared/datasets/seq-beauty")
adapter, _ = load_backbone(ckpt, data, device="cpu")
scenario = scenario_for(adapter.backbone_name)
users = evaluated_users(data)
for r in range(repeats):
    row = {"code": label, "checkpoint": ckpt, "repeat": r,
           "pretrain_epoch": time_pretrain_epoch(adapter, data, scenario, "cpu", None, log=lambda s: None)[0],
           "evaluation": time_evaluation(adapter.eval(), data, scenario, users, 1e9)[0]}
    for algo in ("pathwise", "refit"):
        row[algo] = time_finetune_epoch(algo, scenario.env_id, data, copy.deepcopy(adapter), "cpu", 30.0)[0]
    print(json.dumps(row), flush=True)
