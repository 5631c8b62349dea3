#!/bin/bash
# Probe aj (session 13): Pathwise on the strong start (dreamrec-ce, ../../inputs/pretrain-strong.sh; valid NDCG@20 of
# the 10-step chain 0.0371, of its encoder's own head c E^T 0.0587) with the encoder held fixed (frozen.yml), seed 0,
# 2,000 updates validated every 400. Compare: the benchmark's Pathwise cell of seed 2 on the same start (every
# parameter trains): 0.0469 after 800 updates, then down to 0.0382 at 4,000.
cd "$(dirname "$0")/../../../.."
. /work/venv/bin/activate
export PYTHONPATH=$PWD OMP_NUM_THREADS=1
python scripts/train.py --algo pathwise --env refit_gym/DreamRecCE-v0 --data ../shared/datasets/seq-beauty \
  --checkpoint /work/runs/s13/pre-ce/best.pt --reward refit-seq \
  --hyperparams results/seq-beauty/probes/probe_aj_pathwise_frozen_encoder/frozen.yml -n 5120000 --eval-freq 1024000 \
  --seed 0 --select-metric ndcg@20 --out /work/runs/s13/aj --no-progress > /work/runs/s13/aj.log 2>&1
