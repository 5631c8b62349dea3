#!/bin/bash
# session 11: the seq-beauty ReFiT row with 16 copies per user x 128 users and a decaying learning rate
# (refit-crn16-lin-k10-2400.yml, probe ae) and its continued-pretraining control, 3 seeds, from the session-10 start
# (pretrain-lr3e-4.sh); two cells at a time, so every cell runs beside exactly one other job. Argument: the round to run
# (1: ReFiT seeds 0, 1; 2: ReFiT seed 2 and the control of seed 0; 3: the controls of seeds 1 and 2). The ReFiT cells
# of seeds 0 and 1 are probe ae's runs (the same settings, seed and start, run side by side by its run.sh): their
# folders were copied to $O/s<seed>/finetune/dreamrec-refit/seed<seed> before round 1, which resumed them (finished:
# nothing more trained) and recorded them.
cd /work/main
. /work/venv/bin/activate
export PYTHONPATH=/work/main OMP_NUM_THREADS=1
START=/work/runs/s10/dreamrec-lr3e-4-k10.pt
B="python scripts/benchmark.py --data ../shared/datasets/seq-beauty --checkpoint-dreamrec $START --threads 1 --device cpu
 --skip-scaling --eval-points 5 --hyperparams pathwise=results/seq-beauty/inputs/pathwise-k10.yml
 --hyperparams refit=results/seq-beauty/inputs/refit-crn16-lin-k10-2400.yml --continued-budget refit"
O=/work/runs/s11/c
export B O METHOD=refit
exec bash results/bench-rounds.sh "$1"
