#!/bin/bash
# Probe aq (session 14): the strong variant's Pathwise recipe (probe aj: encoder held fixed, seed 0, 2,000 updates of 256
# users validated every 400; ../probe_aj_pathwise_frozen_encoder/frozen.yml) from a new start, after that start's
# heads (../probe_o_heads/heads.py: its chain and its encoder's own head c E^T on validation).
#   run.sh START OUT_PREFIX    e.g. run.sh /work/runs/s14/pre-ce-d02/best.pt /work/runs/s14/aq-d02
cd "$(dirname "$0")/../../../.."
. /work/venv/bin/activate
export PYTHONPATH=$PWD OMP_NUM_THREADS=1
CK=$1; R=$2
python results/seq-beauty/probes/probe_o_heads/heads.py $R-heads.json $CK > $R-heads.log 2>&1
python scripts/train.py --algo pathwise --env refit_gym/DreamRecCE-v0 --data ../shared/datasets/seq-beauty \
  --checkpoint $CK --reward refit-seq \
  --hyperparams results/seq-beauty/probes/probe_aj_pathwise_frozen_encoder/frozen.yml -n 5120000 --eval-freq 1024000 \
  --seed 0 --select-metric ndcg@20 --out $R --no-progress > $R.log 2>&1
