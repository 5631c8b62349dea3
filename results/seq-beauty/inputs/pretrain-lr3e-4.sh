#!/bin/bash
# The DreamRec start of the seq-beauty benchmark since session 10: the project's DreamRec (MSE on x0 + 0.1 x
# full-softmax cross-entropy, T = 50) pretrained at lr 3e-4 (probe u: the default 1e-3 swings validation by 20%
# between epochs), one core, validated every 2 epochs on every validation user (50-step chain), for 2,600 s in all
# (106 epochs; best epoch 81: valid NDCG@20 0.0208, test 0.0162; validation at 0.018-0.021 from epoch 53 on), then
# respaced to 10 steps (valid 0.0230). It ran as three commands, as below: the first stopped early at epoch 23
# (patience 6 validations; best epoch 11), and was resumed without early stopping, to 2,100 s and then to 2,600 s.
# A resumed run equals an uninterrupted one (refit_gym.diffusion.training.pretrain), so one command with
# --patience 0 --max-seconds 2600 gives the same weights, up to where the time bound falls.
set -e
OUT=${1:-/work/runs/s10/pre-lr3e-4}
P="python scripts/pretrain.py --backbone dreamrec --data ../shared/datasets/seq-beauty --out $OUT --lr 3e-4 --epochs 1000
   --eval-every 2 --full-validation --metric ndcg@20 --seed 0 --device cpu --no-progress"
$P --max-seconds 2700 --patience 6
$P --max-seconds 2100 --patience 0 --resume
$P --max-seconds 2600 --patience 0 --resume
python results/seq-beauty/inputs/respace.py $OUT/best.pt 10 ${2:-/work/runs/s10/dreamrec-lr3e-4-k10.pt}
