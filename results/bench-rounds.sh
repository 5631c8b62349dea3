#!/bin/bash
# The three rounds that run one fine-tuned benchmark row and its continued-pretraining control for 3 seeds, two cells
# at a time so that every cell runs beside exactly one other job. The caller (a dataset's inputs script) sets, in the
# environment:
#   B       the benchmark command without --out, --methods and --seeds
#   O       the working folder: each seed's cells go to $O/s<seed> (merge them with --merge), logs to $O/s<seed>-*.log
#   METHOD  the fine-tuned row (refit, pathwise, ...) whose cells give the control its training seconds
#   SEEDS   the seed order "a b c" (default "0 1 2")
# Argument: the round. 1: the pretrained row and METHOD for seeds a and b; 2: METHOD for seed c and the control of
# seed a; 3: the controls of seeds b and c. Writes $O/DONE<round> when the round ends.
set -u
read -r a b c <<< "${SEEDS:-0 1 2}"
mkdir -p "$O"
cell() { $B --out "$O/s$1" --methods $2 --seeds $1 > "$O/s$1-$3.log" 2>&1; }
case $1 in
  1) cell $a "pretrained $METHOD" $METHOD & cell $b "pretrained $METHOD" $METHOD & wait ;;
  2) cell $c "pretrained $METHOD" $METHOD & cell $a continued continued & wait ;;
  3) cell $b continued continued & cell $c continued continued & wait ;;
  *) echo "bench-rounds.sh: the round is 1, 2 or 3, not '$1'" >&2; exit 2 ;;
esac
echo done > "$O/DONE$1"
