#!/bin/bash
# Probe t (session 9): ReFiT (the benchmark's 2,400-update recipe) and continued pretraining for 680 s (the seed-0
# ReFiT cell's training seconds) from a stronger start: the ce01 10-step start after the benchmark's seed-0
# continued-pretraining cell (36 more epochs; valid NDCG@20 0.0204, test 0.0174). Both in parallel, one core each.
cd /work/main
. /work/venv/bin/activate
export PYTHONPATH=/work/main OMP_NUM_THREADS=1
START=/work/runs/dreamrec-seqbeauty-ce01-k10-c36.pt
P=results/seq-beauty/probes/probe_t_stronger_start
python scripts/train.py --algo refit --env refit_gym/DreamRec-v0 --data ../shared/datasets/seq-beauty --checkpoint $START \
  --reward refit-seq --hyperparams results/seq-beauty/inputs/refit-crn-k10-2400.yml --seed 0 --eval-freq 4915200 \
  --select-metric ndcg@20 --out /work/runs/probe-t/refit > /work/runs/probe-t/refit.log 2>&1 &
python $P/continued.py $START 680 /work/runs/probe-t/continued > /work/runs/probe-t/continued.log 2>&1
wait
