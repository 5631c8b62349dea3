#!/bin/bash
# Probe au (session 15): the Pathwise row's spread over *pretraining* seeds. The report's DreamRec-CE rows share one
# start (pretraining seed 0), so their spread holds the fine-tuning seed only, while SASRec's three seeds each train
# a model. Here the strong start is pretrained again with seed SEED (../../inputs/pretrain-residual-snapshots.sh:
# the session-14 settings, snapshots every 4 epochs to epoch 43, the start picked by its head's validation), then the
# Pathwise row's recipe runs from it with the same seed (encoder fixed, 200 updates validated every 40:
# ../../inputs/seq-pathwise-frozen-k10-200.yml), the checkpoint selected on validation, its test read once.
# Seed 0 is probe as (the session-14 run continued, snapshots 31-51).
#   run.sh SEED OUT     e.g. run.sh 1 /work/runs/s15/au-s1
cd "$(dirname "$0")/../../../.."
. /work/venv/bin/activate
export PYTHONPATH=$PWD OMP_NUM_THREADS=1
S=$1; R=$2
bash results/seq-beauty/inputs/pretrain-residual-snapshots.sh dreamrec-ce ../shared/datasets/seq-beauty $R 43 4 $S
python scripts/train.py --algo pathwise --env refit_gym/DreamRecCE-v0 --data ../shared/datasets/seq-beauty \
  --checkpoint $R/start.pt --reward refit-seq --hyperparams results/seq-beauty/inputs/seq-pathwise-frozen-k10-200.yml \
  --eval-freq 102400 --seed $S --select-metric ndcg@20 --out $R/pathwise --no-progress > $R/pathwise.log 2>&1
