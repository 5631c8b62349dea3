#!/bin/bash
# One Pathwise probe run from the report's DiffRec start (probe wide's 1,000-unit layer; rebuilt with
# probe_wide/run.sh's first command), the start competing in the selection (validation only); test read once for the
# selected model. Shared by the probes' run.sh scripts (probe_holdout, probe_listwise, probe_long, probe_lr).
#   pathwise-from-start.sh HYPERPARAMS OUT SEED UPDATES EVERY
#     HYPERPARAMS  the rl-zoo YAML (from the repository root); OUT the run folder (log: OUT.log)
#     UPDATES      updates of 256 users x 40 steps; EVERY: validate every EVERY updates
cd "$(dirname "$0")/../../.."
. /work/venv/bin/activate
export PYTHONPATH=$PWD OMP_NUM_THREADS=1
H=$1 OUT=$2 S=$3 U=$4 E=$5
mkdir -p "$(dirname "$OUT")"
python scripts/train.py --algo pathwise --env refit_gym/DiffRec-v0 --data ../shared/datasets/amazon-beauty \
  --checkpoint /work/runs/s16/ab-wide/pretrain/best.pt --reward graph-score --hyperparams "$H" \
  --n-timesteps $(( U * 10240 )) --eval-freq $(( E * 10240 )) --seed "$S" --select-metric ndcg@20 --out "$OUT" \
  --no-progress > "$OUT.log" 2>&1
