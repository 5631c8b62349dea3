#!/bin/bash
# Probe ap (session 14): Pathwise from the strong start (10-step chain) with only the sequence Transformer held fixed:
# the item embeddings (the encoder's input and the chain's scoring) train with the denoiser. Probe aj: with every
# parameter training the chain peaks at 0.0469 and falls; with the whole encoder fixed it stays at 0.054-0.055, 7% below
# the encoder's own head (0.0587). Seed 0, 2,000 updates of 256 users validated every 400.
cd "$(dirname "$0")/../../../.."
. /work/venv/bin/activate
export PYTHONPATH=$PWD OMP_NUM_THREADS=1
CK=${1:-/work/runs/s13/pre-ce/best.pt}; R=${2:-/work/runs/s14/ap}; SEED=${3:-0}
python scripts/train.py --algo pathwise --env refit_gym/DreamRecCE-v0 --data ../shared/datasets/seq-beauty \
  --checkpoint $CK --reward refit-seq \
  --hyperparams results/seq-beauty/probes/probe_ap_pathwise_item_emb/transformer-frozen.yml -n 5120000 \
  --eval-freq 1024000 --seed $SEED --select-metric ndcg@20 --out $R --no-progress > $R.log 2>&1
