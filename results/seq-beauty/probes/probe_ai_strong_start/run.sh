#!/bin/bash
# Probe ai (session 13): do fine-tuning rungs lift the strong variant (dreamrec-ce: DreamRec + the encoder's own
# next-item cross-entropy)? Start: probe pretraining `sa` (../pretrain_variants.py ... sa 40 ce_weight=0.1
# state_ce_weight=1.0 lr=1e-3 patience=5; best epoch 11 on the 50-step chain), converted to dreamrec-ce and respaced
# to 10 steps (../../inputs/as_dreamrec_ce.py). Argument: the rung (pathwise | pathwise-mix | refit), run one at a time beside the
# production pretraining. Pathwise: 1,000 updates (a quarter of the row's recipe), validated every 250; ReFiT: 600
# updates (a quarter), validated every 150. pathwise-mix: Pathwise with the pretraining loss mixed in at weight 1
# (pathwise-mix.yml).
cd "$(dirname "$0")/../../../.."
. /work/venv/bin/activate
export PYTHONPATH=$PWD OMP_NUM_THREADS=1
S=/work/runs/s13/sa-e11-ce-k10.pt
I=results/seq-beauty/inputs
case $1 in
  pathwise) A="--algo pathwise --hyperparams $I/seq-pathwise-k10.yml -n 2560000 --eval-freq 640000" ;;
  pathwise-mix) A="--algo pathwise --hyperparams results/seq-beauty/probes/probe_ai_strong_start/pathwise-mix.yml -n 2560000 --eval-freq 640000" ;;
  refit) A="--algo refit --hyperparams $I/seq-refit-k10.yml -n 24576000 --eval-freq 6144000" ;;
esac
python scripts/train.py $A --env refit_gym/DreamRecCE-v0 --data ../shared/datasets/seq-beauty --checkpoint $S \
  --reward refit-seq --seed 0 --select-metric ndcg@20 --out /work/runs/s13/ai-$1 --no-progress > /work/runs/s13/ai-$1.log 2>&1
