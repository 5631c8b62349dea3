#!/bin/bash
# Probe long (amazon-beauty, session 18): the report's Pathwise recipe (../../inputs/pathwise-ease100.yml) from the
# report's DiffRec start (probe wide's 1,000-unit layer) for UPDATES updates instead of 100, validated every 100, the
# start competing (validation only); test read once for the selected model. The report's seed-0 curve rose 0.0623,
# 0.0655, 0.0666, 0.0670 at updates 25, 50, 75, 100: does it keep rising?
#   run.sh OUT [UPDATES] [SEED]    e.g. run.sh /work/runs/s18/ab-long 300
U=${2:-300} S=${3:-0}
exec bash "$(dirname "$0")/../pathwise-from-start.sh" results/amazon-beauty/inputs/pathwise-ease100.yml "$1/u$U-s$S" $S $U 100
