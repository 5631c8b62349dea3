#!/bin/bash
# session 15: the POI backbone's strong variant (dreamrec-poi-ce: DreamRec-POI plus the encoder's own next-item
# cross-entropy) with seq-beauty's session-14 settings: the residual denoiser (--backbone-arg residual=true), SASRec's
# dropout 0.2, lr 1e-3, batch 256, the chain respaced to 10 steps, every validation user after every epoch. No early
# stopping: on seq-beauty the chain's validation peaked early while the encoder's own head c E^T, the fine-tuned
# chain's ceiling, still rose. Every STEP epochs the latest weights are written as a checkpoint (e<epoch>.pt) and
# their chain and head are scored on validation (heads-e<epoch>.json); the start is the checkpoint whose head
# validates best (pick_start.py), validation only.
#   pretrain-strong-res.sh OUT [LAST_EPOCH] [STEP]     e.g. pretrain-strong-res.sh /work/runs/s15/poi-ce 44 3
cd "$(dirname "$0")/../../.."
. /work/venv/bin/activate
export PYTHONPATH=$PWD OMP_NUM_THREADS=1 DATA=../shared/datasets/poi-gowalla
R=$1; LAST=${2:-44}; STEP=${3:-3}
P=results/seq-beauty/probes
mkdir -p $R
for ((e = STEP - 1; e <= LAST; e += STEP)); do
  [ -f $R/heads-e$e.json ] && continue
  rm -f $R/run/.lock
  python scripts/pretrain.py --backbone dreamrec-poi-ce --data $DATA --out $R/run --inference-steps 10 \
    --eval-every 1 --full-validation --metric ndcg@20 --patience 0 --epochs $((e + 1)) --max-seconds 100000 --seed 0 \
    --device cpu --dropout 0.2 --backbone-arg residual=true --no-progress --resume >> $R/pretrain.log 2>&1
  python $P/probe_al_longer_strong/last_to_ckpt.py $R/run $R/e$e.pt >> $R/pretrain.log 2>&1
  python $P/probe_o_heads/heads.py $R/heads-e$e.json $R/e$e.pt > $R/heads-e$e.log 2>&1
done
