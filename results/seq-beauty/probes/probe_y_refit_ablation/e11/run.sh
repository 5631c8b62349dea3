#!/bin/bash
# probe y on the snapshot start (the lr-3e-4 pretraining's best.pt at 02:31, respaced to 10 steps): the full recipe,
# then score-only (seed 0, one job beside the pretraining)
cd /work/main
. /work/venv/bin/activate
export PYTHONPATH=/work/main OMP_NUM_THREADS=1
S=/work/runs/s10/snap-k10.pt
python scripts/train.py --algo refit --env refit_gym/DreamRec-v0 --data ../shared/datasets/seq-beauty --checkpoint $S \
  --reward refit-seq --hyperparams results/seq-beauty/inputs/refit-crn-k10-2400.yml --seed 0 --eval-freq 4915200 \
  --select-metric ndcg@20 --out /work/runs/s10/y-snap/full > /work/runs/s10/y-snap-full.log 2>&1
python results/seq-beauty/probes/probe_y_refit_ablation/probe.py score-only $S /work/runs/s10/y-snap/score-only \
  > /work/runs/s10/y-snap-score-only.log 2>&1
