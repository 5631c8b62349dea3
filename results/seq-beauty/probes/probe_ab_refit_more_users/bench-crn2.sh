#!/bin/bash
# session 11: the seq-beauty ReFiT row with 2 copies per user x 512 users (refit-crn2-k10-2400.yml, probe ab) and its
# continued-pretraining control, 3 seeds, from the session-10 start (pretrain-lr3e-4.sh); two cells at a time, so
# every cell runs beside exactly one other job. Argument: the round to run (1: ReFiT seeds 1, 2; 2: ReFiT seed 0 and
# the control of seed 1; 3: the controls of seeds 0 and 2)
cd /work/main
. /work/venv/bin/activate
export PYTHONPATH=/work/main OMP_NUM_THREADS=1
START=/work/runs/s10/dreamrec-lr3e-4-k10.pt
B="python scripts/benchmark.py --data ../shared/datasets/seq-beauty --checkpoint-dreamrec $START --threads 1 --device cpu
 --skip-scaling --eval-points 5 --hyperparams pathwise=results/seq-beauty/inputs/pathwise-k10.yml
 --hyperparams refit=results/seq-beauty/probes/probe_ab_refit_more_users/refit-crn2-k10-2400.yml --continued-budget refit"
O=/work/runs/s11/b
export B O METHOD=refit SEEDS="1 2 0"
exec bash results/bench-rounds.sh "$1"
