#!/bin/bash
# Probe as (session 15): is the residual start's encoder head (0.0619 valid at epoch 27, the kept start) still rising?
# Its run folder (../../inputs/pretrain-strong-res.sh, then -p15.sh; stopped by patience at epoch 27 on the chain's
# metric while the loss was still falling) is resumed in a copy without early stopping, STEP epochs at a time; after
# each step the latest weights are written as a checkpoint (../probe_al_longer_strong/last_to_ckpt.py) and scored
# three ways (../probe_o_heads/heads.py: the chain and the encoder's own head c E^T, validation only).
#   run.sh OUT [LAST_EPOCH] [STEP]     e.g. run.sh /work/runs/s15/as 51 4
cd "$(dirname "$0")/../../../.."
. /work/venv/bin/activate
export PYTHONPATH=$PWD OMP_NUM_THREADS=1
R=$1; LAST=${2:-51}; STEP=${3:-4}
P=results/seq-beauty/probes
mkdir -p $R
[ -d $R/run ] || cp -r /work/runs/s14/pre-ce-res-d02-p15 $R/run
for ((e = 28 + STEP - 1; e <= LAST; e += STEP)); do
  [ -f $R/heads-e$e.json ] && continue
  rm -f $R/run/.lock
  python scripts/pretrain.py --backbone dreamrec-ce --data ../shared/datasets/seq-beauty --out $R/run --inference-steps 10 \
    --eval-every 1 --full-validation --metric ndcg@20 --patience 0 --epochs $((e + 1)) --max-seconds 100000 --seed 0 \
    --device cpu --dropout 0.2 --backbone-arg residual=true --no-progress --resume >> $R/pretrain.log 2>&1
  python $P/probe_al_longer_strong/last_to_ckpt.py $R/run $R/e$e.pt >> $R/pretrain.log 2>&1
  python $P/probe_o_heads/heads.py $R/heads-e$e.json $R/e$e.pt > $R/heads-e$e.log 2>&1
done
# then: the start among the snapshots by its head's validation (pick_start.py), and the row's Pathwise recipe from it
# (seed 0, 200 updates validated every 40: the benchmark cell's settings), validation only
python results/poi-gowalla/inputs/pick_start.py $R $R/start.pt > $R/pick_start.log
python scripts/train.py --algo pathwise --env refit_gym/DreamRecCE-v0 --data ../shared/datasets/seq-beauty \
  --checkpoint $R/start.pt --reward refit-seq --hyperparams results/seq-beauty/inputs/seq-pathwise-frozen-k10-200.yml \
  --eval-freq 102400 --seed 0 --select-metric ndcg@20 --out $R/pathwise --no-progress > $R/pathwise.log 2>&1
