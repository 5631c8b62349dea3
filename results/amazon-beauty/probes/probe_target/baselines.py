"""Probe target, part 2 (amazon-beauty, session 20): do the other training-only baselines add to EASE's row?

As ``targets.py`` (validation, every user, training items masked, the whole training history as input): EASE at
lambda = 100 blended with ItemKNN (k = 100, the benchmark's default) and with item popularity, ``z(EASE) + w z(other)``
with each row standardised over the user's unmasked items. A blend above EASE would be a target with information
EASE's row lacks.

    PYTHONPATH=. OMP_NUM_THREADS=1 python results/amazon-beauty/probes/probe_target/baselines.py \
        > results/amazon-beauty/probes/probe_target/baselines.txt
"""
import numpy as np

from common import data, report, z  # this folder: the shared data, mask and report
from refit_gym.baselines import EASE, ItemKNN, MostPopular

users = np.arange(data.n_users)


scores = {name: np.asarray(model.fit(data).scores(users), dtype=np.float32)
          for name, model in (("EASE 100", EASE(lam=100.0)), ("ItemKNN 100", ItemKNN(k=100)),
                              ("MostPopular", MostPopular()))}
for name, S in scores.items():
    report(name, S)
zE = z(scores["EASE 100"])
for other in ("ItemKNN 100", "MostPopular"):
    zO = z(scores[other])
    for w in (0.05, 0.1, 0.2, 0.3, 0.5):
        report(f"z(EASE 100) + {w:g} z({other})", zE + w * zO)
