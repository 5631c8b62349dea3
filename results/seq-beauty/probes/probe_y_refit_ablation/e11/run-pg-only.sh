#!/bin/bash
# probe y, third run: REINFORCE alone (score_grad off) from the same epoch-11 start (seed 0; one other job beside it)
cd /work/main
. /work/venv/bin/activate
export PYTHONPATH=/work/main OMP_NUM_THREADS=1
python results/seq-beauty/probes/probe_y_refit_ablation/probe.py pg-only /work/runs/s10/snap-k10.pt \
  /work/runs/s10/y-snap/pg-only > /work/runs/s10/y-snap-pg-only.log 2>&1
