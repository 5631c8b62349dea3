#!/bin/bash
# Probe ak (session 13): ReFiT on the strong start (dreamrec-ce, ../../inputs/pretrain-strong.sh) with the sequence
# Transformer held fixed (frozen.yml; the item embeddings train), seed 0, the row's 2,400 updates validated every
# 480. Compare: the ReFiT row's seed-0 cell (every parameter trains): validation 0.0490, test 0.0372; probe aj
# (Pathwise, encoder fixed): 0.0547 / 0.0429.
cd "$(dirname "$0")/../../../.."
. /work/venv/bin/activate
export PYTHONPATH=$PWD OMP_NUM_THREADS=1
python scripts/train.py --algo refit --env refit_gym/DreamRecCE-v0 --data ../shared/datasets/seq-beauty \
  --checkpoint /work/runs/s13/pre-ce/best.pt --reward refit-seq \
  --hyperparams results/seq-beauty/probes/probe_ak_refit_frozen_encoder/frozen.yml --eval-freq 19660800 \
  --seed 0 --select-metric ndcg@20 --out /work/runs/s13/ak --no-progress > /work/runs/s13/ak.log 2>&1
