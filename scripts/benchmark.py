#!/usr/bin/env python
"""The results table, the cost and the scaling of ReFiT on one dataset, in one command: the command line of
:mod:`refit_gym.experiments.benchmark` (``python scripts/benchmark.py --help`` lists the flags and examples)."""
from __future__ import annotations

import signal
import sys

from refit_gym.cli import run_main
from refit_gym.experiments.benchmark import _interrupt, main  # noqa: F401  (refit-gym benchmark uses both)

if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _interrupt)
    sys.exit(run_main(main, "benchmark.py", exit_code=lambda r: 130 if r.get("interrupted") else 1 if r.get("failed") else 0))
