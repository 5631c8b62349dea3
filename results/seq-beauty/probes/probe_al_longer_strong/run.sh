#!/bin/bash
# Probe al (session 13): does more pretraining of the strong variant raise its encoder toward SASRec, and the frozen-
# encoder Pathwise chain with it? The kept start's run (../../inputs/pretrain-strong.sh, stopped by patience at epoch
# 29) resumed without early stopping to 1,500 s in all; its last epoch's weights scored three ways (heads.py), then
# probe aj's recipe (Pathwise, encoder fixed, seed 0) from them.
cd "$(dirname "$0")/../../../.."
. /work/venv/bin/activate
export PYTHONPATH=$PWD OMP_NUM_THREADS=1
R=/work/runs/s13/long/pre-ce-long
cp -r /work/runs/s13/pre-ce $R   # the kept start's run folder, resumed in a copy
python scripts/pretrain.py --backbone dreamrec-ce --data ../shared/datasets/seq-beauty --out $R --inference-steps 10 \
  --eval-every 1 --full-validation --metric ndcg@20 --patience 0 --epochs 1000 --max-seconds 1500 --seed 0 --device cpu \
  --no-progress --resume > $R.log 2>&1
python results/seq-beauty/probes/probe_al_longer_strong/last_to_ckpt.py $R /work/runs/s13/long/last.pt
python results/seq-beauty/probes/probe_o_heads/heads.py results/seq-beauty/probes/probe_al_longer_strong/heads-last.json \
  /work/runs/s13/long/last.pt
python scripts/train.py --algo pathwise --env refit_gym/DreamRecCE-v0 --data ../shared/datasets/seq-beauty \
  --checkpoint /work/runs/s13/long/last.pt --reward refit-seq \
  --hyperparams results/seq-beauty/probes/probe_aj_pathwise_frozen_encoder/frozen.yml -n 5120000 --eval-freq 1024000 \
  --seed 0 --select-metric ndcg@20 --out /work/runs/s13/long/pathwise --no-progress > /work/runs/s13/long/pathwise.log 2>&1
