#!/bin/bash
# Probe am (session 14): probe aj's recipe (Pathwise from the strong start, encoder held fixed, seed 0, 2,000 updates of
# 256 users validated every 400) on the start's chain respaced to K = 1 and K = 2 steps (before fine-tuning the
# deterministic chain scores best at K = 1: ../pretrain-strong/). n_timesteps = 2,000 x 256 x K.
cd "$(dirname "$0")/../../../.."
. /work/venv/bin/activate
export PYTHONPATH=$PWD OMP_NUM_THREADS=1
R=/work/runs/s14/am; mkdir -p $R
for K in 1 2; do
  python results/seq-beauty/inputs/respace.py /work/runs/s13/pre-ce/best.pt $K $R/start-k$K.pt
  python scripts/train.py --algo pathwise --env refit_gym/DreamRecCE-v0 --data ../shared/datasets/seq-beauty \
    --checkpoint $R/start-k$K.pt --reward refit-seq \
    --hyperparams results/seq-beauty/probes/probe_aj_pathwise_frozen_encoder/frozen.yml -n $((2000*256*K)) \
    --eval-freq $((400*256*K)) --seed 0 --select-metric ndcg@20 --out $R/k$K --no-progress > $R/k$K.log 2>&1
done
