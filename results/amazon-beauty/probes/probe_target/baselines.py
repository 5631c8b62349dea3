"""Probe target, part 2 (amazon-beauty, session 20): do the other training-only baselines add to EASE's row?

As ``targets.py`` (validation, every user, training items masked, the whole training history as input): EASE at
lambda = 100 blended with ItemKNN (k = 100, the benchmark's default) and with item popularity, ``z(EASE) + w z(other)``
with each row standardised over the user's unmasked items. A blend above EASE would be a target with information
EASE's row lacks.

    PYTHONPATH=. OMP_NUM_THREADS=1 python results/amazon-beauty/probes/probe_target/baselines.py \
        > results/amazon-beauty/probes/probe_target/baselines.txt
"""
import numpy as np
import torch

from refit_gym.baselines import EASE, ItemKNN, MostPopular
from refit_gym.data import load_dataset
from refit_gym.metrics import evaluate

torch.set_num_threads(1)
data = load_dataset("../shared/datasets/amazon-beauty")
users = np.arange(data.n_users)
known = data.known_items("valid").toarray().astype(bool)


def z(S: np.ndarray) -> np.ndarray:
    """Standardise each row over its unmasked items."""
    M = np.ma.masked_array(S, known)
    return ((S - M.mean(axis=1).data[:, None]) / np.maximum(M.std(axis=1).data[:, None], 1e-8)).astype(np.float32)


def report(name: str, S: np.ndarray) -> None:
    m = evaluate(lambda u: torch.from_numpy(S[u]), data, "valid", ks=(20,), batch_size=2048)
    print(f"{name:<40} valid NDCG@20 {m['ndcg@20']:.4f}  Recall@20 {m['recall@20']:.4f}", flush=True)


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
