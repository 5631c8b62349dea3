"""Write a copy of a backbone checkpoint whose reverse chain runs K evenly spaced steps (``inference_steps: K``).

The weights are unchanged; only ``config.schedule.inference_steps`` is set, so every consumer of the copy
(evaluation, environments, every agent, ``scripts/benchmark.py --checkpoint-dreamrec``) runs the K-step chain.

    python results/seq-beauty/inputs/respace.py /work/runs/dreamrec-seqbeauty-ce01.pt 10 /work/runs/dreamrec-seqbeauty-ce01-k10.pt
"""
import sys

from refit_gym.diffusion.checkpoint import load_backbone, save_backbone

src, k, dst = sys.argv[1], int(sys.argv[2]), sys.argv[3]
adapter, meta = load_backbone(src)
adapter.set_inference_steps(k)
meta = dict(meta, respaced_from=str(src))
print(save_backbone(adapter, dst, meta), "inference_steps =", adapter.schedule_cfg.inference_steps)
