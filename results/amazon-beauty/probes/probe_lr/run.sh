#!/bin/bash
# Probe lr (amazon-beauty, session 18): the report's Pathwise recipe from the report's DiffRec start (probe wide's
# 1,000-unit layer) at learning rate LR (pathwise-ease100-lrLR.yml) for UPDATES updates (default 100), validated every EVERY updates (default
# 100), the start competing (validation only); test read once for the selected model. Compare: lr 1e-4, ../probe_wide/run/ (seed 0).
#   run.sh OUT LR [SEED] [UPDATES] [EVERY]    e.g. run.sh /work/runs/s18/ab-lr 3e-4 0 300; LR lin3e-4: linear decay
L=$2 S=${3:-0} U=${4:-100} E=${5:-100}
exec bash "$(dirname "$0")/../pathwise-from-start.sh" \
  results/amazon-beauty/probes/probe_lr/pathwise-ease100-lr$L.yml "$1/lr$L-s$S-u$U" $S $U $E
