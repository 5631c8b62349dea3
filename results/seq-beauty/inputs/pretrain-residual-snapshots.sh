#!/bin/bash
# session 15: a strong DreamRec variant (BACKBONE: dreamrec-ce or dreamrec-poi-ce) pretrained with seq-beauty's
# session-14 settings (pretrain-strong-res.sh: the residual denoiser, dropout 0.2, lr 1e-3, batch 256, the chain respaced
# to 10 steps, every validation user after every epoch) without early stopping: the chain's validation peaks early
# while the encoder's own head c E^T, the fine-tuned chain's ceiling, still rises. Every STEP epochs the latest weights
# are written as a checkpoint (OUT/e<epoch>.pt) and their chain and head are scored on validation
# (OUT/heads-e<epoch>.json, ../probes/probe_o_heads/heads.py); the start is the snapshot whose head validates best
# (../../poi-gowalla/inputs/pick_start.py), validation only. Resumable: a snapshot already scored is skipped.
# --no-test keeps test out of each segment's output (added after session 15's runs, which printed it after every
# segment; nothing read it).
#   pretrain-residual-snapshots.sh BACKBONE DATA OUT LAST_EPOCH STEP SEED
#   e.g. pretrain-residual-snapshots.sh dreamrec-ce ../shared/datasets/seq-beauty /work/runs/s15/seed1 43 4 1
cd "$(dirname "$0")/../../.."
. /work/venv/bin/activate
BACKBONE=$1 DATA=$2 R=$3 LAST=$4 STEP=$5 SEED=$6
export PYTHONPATH=$PWD OMP_NUM_THREADS=1 DATA
P=results/seq-beauty/probes
mkdir -p $R
for ((e = STEP - 1; e <= LAST; e += STEP)); do
  [ -f $R/heads-e$e.json ] && continue
  rm -f $R/run/.lock
  python scripts/pretrain.py --backbone $BACKBONE --data $DATA --out $R/run --inference-steps 10 \
    --eval-every 1 --full-validation --metric ndcg@20 --patience 0 --epochs $((e + 1)) --max-seconds 100000 --seed $SEED \
    --device cpu --dropout 0.2 --backbone-arg residual=true --no-progress --resume --no-test >> $R/pretrain.log 2>&1
  python $P/probe_al_longer_strong/last_to_ckpt.py $R/run $R/e$e.pt >> $R/pretrain.log 2>&1
  python $P/probe_o_heads/heads.py $R/heads-e$e.json $R/e$e.pt > $R/heads-e$e.log 2>&1
done
python results/poi-gowalla/inputs/pick_start.py $R $R/start.pt > $R/pick_start.log
