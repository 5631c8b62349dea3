#!/bin/bash
# session 10: the seq-beauty DreamRec rows from the lr-3e-4 start (pretrain.sh), 3 seeds; two cells at a time, so
# every cell runs beside exactly one other job (the timing of a ReFiT cell and of its control are comparable); the
# continued control trains at its start's own lr (3e-4, from the checkpoint)
cd /work/main
. /work/venv/bin/activate
export PYTHONPATH=/work/main OMP_NUM_THREADS=1
START=/work/runs/s10/dreamrec-lr3e-4-k10.pt
while [ ! -s $START ]; do sleep 20; done
# no other job beside the two cells (probe y runs on the other core until then)
while pgrep -f "probe_y_refit_ablation|probe-y-snap|y-snap/full" > /dev/null; do sleep 20; done
python results/seq-beauty/probes/probe_x_guidance/probe.py $START /work/runs/s10/probe-x.json --steps 10 \
  --weights 0 0.5 1 2 > /work/runs/s10/probe-x.log 2>&1
B="python scripts/benchmark.py --data ../shared/datasets/seq-beauty --checkpoint-dreamrec $START --threads 1 --device cpu
 --skip-scaling --eval-points 5 --hyperparams pathwise=results/seq-beauty/inputs/pathwise-k10.yml
 --hyperparams refit=results/seq-beauty/inputs/refit-crn-k10-2400.yml --continued-budget refit"
O=/work/runs/s10/b
mkdir -p $O
cell() { $B --out $O/s$1 --methods $2 --seeds $1 > $O/s$1-$3.log 2>&1; }
cell 0 "pretrained refit" refit & cell 1 "pretrained refit" refit & wait
cell 0 continued continued & cell 2 "pretrained refit" refit & wait
cell 1 continued continued & cell 2 continued continued & wait
cell 0 pathwise pathwise & cell 1 pathwise pathwise & wait
cell 2 pathwise pathwise
echo done > $O/DONE
