#!/bin/bash
# Probe ao (session 14): Pathwise from the strong start (/work/runs/s13/pre-ce/best.pt, 10-step chain), encoder held
# fixed, seed 0, 2,000 updates of 256 users validated every 400, with the reward's softmax over every item
# (unmasked.yml). Probe an found no validation target repeats a history item on seq-beauty, yet 5.8% of the
# fine-tuned chain's top-20 slots hold history items (masking them: 0.0550 -> 0.0610); the masked reward never
# penalises them.
cd "$(dirname "$0")/../../../.."
. /work/venv/bin/activate
export PYTHONPATH=$PWD OMP_NUM_THREADS=1
CK=${1:-/work/runs/s13/pre-ce/best.pt}; R=${2:-/work/runs/s14/ao}; SEED=${3:-0}
python scripts/train.py --algo pathwise --env refit_gym/DreamRecCE-v0 --data ../shared/datasets/seq-beauty \
  --checkpoint $CK --reward refit-seq \
  --hyperparams results/seq-beauty/probes/probe_ao_unmasked_softmax/unmasked.yml -n 5120000 --eval-freq 1024000 \
  --seed $SEED --select-metric ndcg@20 --out $R --no-progress > $R.log 2>&1
