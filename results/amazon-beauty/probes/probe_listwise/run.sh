#!/bin/bash
# Probe listwise (amazon-beauty, session 18): Pathwise from probe wide's 1,000-unit start (the report's DiffRec start)
# with the graph-score reward's top-weighted softmax target at temperature TAU (pathwise-ease100-softmax-tTAU.yml),
# validated once at the end, the start competing (validation only); test read once for the selected model. Compare:
# the same start and seed with the report's recipe (the z-score target), ../probe_wide/run/.
#   run.sh OUT TAU [SEED] [UPDATES]    e.g. run.sh /work/runs/s18/ab-lw 2
cd "$(dirname "$0")/../../../.."
. /work/venv/bin/activate
export PYTHONPATH=$PWD OMP_NUM_THREADS=1
R=$1
T=$2
S=${3:-0}
N=$(( ${4:-100} * 10240 ))   # updates of 256 users x 40 steps
mkdir -p $R
python scripts/train.py --algo pathwise --env refit_gym/DiffRec-v0 --data ../shared/datasets/amazon-beauty \
  --checkpoint /work/runs/s16/ab-wide/pretrain/best.pt --reward graph-score \
  --hyperparams results/amazon-beauty/probes/probe_listwise/pathwise-ease100-softmax-t$T.yml --n-timesteps $N \
  --eval-freq $N --seed $S --select-metric ndcg@20 --out $R/t$T-s$S-u$(( N / 10240 )) --no-progress \
  > $R/t$T-s$S-u$(( N / 10240 )).log 2>&1
