"""``python -m refit_gym <command> ...``: the ``refit-gym`` command (see :mod:`refit_gym.cli`)."""
import sys

from refit_gym.cli import main

sys.exit(main())
