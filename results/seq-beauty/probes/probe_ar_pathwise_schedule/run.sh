#!/bin/bash
# Probe ar (session 14): on the residual start (/work/runs/s14/res-last.pt, probe aq) Pathwise's validation peaks at the
# first evaluation (400 updates, 0.0609) and then falls slowly. Two cells, side by side, seed 0: probe aj's recipe
# validated every 100 updates for 1,000 (where is the peak?), and the same recipe at lr 3e-4 for 2,000 updates
# validated every 400 (lr3e-4.yml). Arguments: START OUT CELL (every100, lr3e-4; default both, side by side).
cd "$(dirname "$0")/../../../.."
. /work/venv/bin/activate
export PYTHONPATH=$PWD OMP_NUM_THREADS=1
CK=${1:-/work/runs/s14/res-last.pt}; R=${2:-/work/runs/s14/ar}; mkdir -p $R
P=results/seq-beauty/probes
T="python scripts/train.py --algo pathwise --env refit_gym/DreamRecCE-v0 --data ../shared/datasets/seq-beauty --checkpoint $CK
 --reward refit-seq --seed 0 --select-metric ndcg@20 --no-progress"
every100() { $T --hyperparams $P/probe_aj_pathwise_frozen_encoder/frozen.yml -n 2560000 --eval-freq 256000 \
  --out $R/every100 > $R/every100.log 2>&1; }
lr3e-4() { $T --hyperparams $P/probe_ar_pathwise_schedule/lr3e-4.yml -n 5120000 --eval-freq 1024000 --out $R/lr3e-4 \
  > $R/lr3e-4.log 2>&1; }
case ${3:-both} in
  every100) every100 ;;
  lr3e-4) lr3e-4 ;;
  both) every100 & lr3e-4 & wait ;;
esac
