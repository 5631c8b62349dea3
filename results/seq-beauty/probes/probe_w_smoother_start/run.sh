#!/bin/bash
# Probe w (session 9, seed 0): ReFiT (the benchmark recipe, 2,400 updates) and then continued pretraining for ReFiT's
# measured training seconds, each alone on the machine, from the start of probe u (lr 3e-4, epoch 44) respaced to 10
# steps: python results/seq-beauty/inputs/respace.py /work/runs/probe-u/lr3e-4/best.pt 10 /work/runs/dreamrec-seqbeauty-lr3e-4-k10.pt
cd /work/main
. /work/venv/bin/activate
export PYTHONPATH=/work/main OMP_NUM_THREADS=1
START=/work/runs/dreamrec-seqbeauty-lr3e-4-k10.pt
python scripts/train.py --algo refit --env refit_gym/DreamRec-v0 --data ../shared/datasets/seq-beauty --checkpoint $START \
  --reward refit-seq --hyperparams results/seq-beauty/inputs/refit-crn-k10-2400.yml --seed 0 --eval-freq 4915200 \
  --select-metric ndcg@20 --out /work/runs/probe-w/refit > /work/runs/probe-w/refit.log 2>&1
SECONDS_REFIT=$(python -c "import json; print(json.load(open('/work/runs/probe-w/refit/metrics.json'))['train_seconds'])")
python results/seq-beauty/probes/probe_t_stronger_start/continued.py $START $SECONDS_REFIT /work/runs/probe-w/continued \
  > /work/runs/probe-w/continued.log 2>&1
