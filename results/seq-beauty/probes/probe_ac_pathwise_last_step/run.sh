#!/bin/bash
# Probe ac (session 11): the exact reward gradient through the last reverse step only, 3 seeds, from the benchmark's
# lr-3e-4 start; the rung between Pathwise through all 10 steps and REINFORCE (ReFiT) on the last step. Two seeds at a
# time, then the third beside one other job.
cd /work/main
. /work/venv/bin/activate
export PYTHONPATH=/work/main OMP_NUM_THREADS=1
S=/work/runs/s10/dreamrec-lr3e-4-k10.pt
run() {
  python scripts/train.py --algo pathwise --env refit_gym/DreamRec-v0 --data ../shared/datasets/seq-beauty --checkpoint $S \
    --reward refit-seq --hyperparams results/seq-beauty/probes/probe_ac_pathwise_last_step/last1.yml --seed $1 \
    --eval-freq 2048000 --select-metric ndcg@20 --out /work/runs/s11/ac/seed$1 --no-progress > /work/runs/s11/ac-seed$1.log 2>&1
}
for s in "$@"; do run $s & done
wait
