#!/usr/bin/env python
"""Pretrain a diffusion recommender backbone: the command line of :mod:`refit_gym.experiments.pretrain`
(``python scripts/pretrain.py --help`` lists the flags and examples)."""
from __future__ import annotations

import sys

from refit_gym.cli import run_main
from refit_gym.experiments.pretrain import (ARCHITECTURE_FLAGS, SCHEDULE_FLAGS, backbone_kwargs,  # noqa: F401
                                            build_parser, check_architecture_flags, main)

if __name__ == "__main__":
    from refit_gym import distributed

    try:
        status = run_main(main, "pretrain.py")
    finally:
        distributed.shutdown()  # under torchrun: leave the process group
    sys.exit(status)
