"""What targets.py and baselines.py share: amazon-beauty, the validation mask, the rows' standardisation and the
validation report of a full score matrix."""
import numpy as np
import torch

from refit_gym.data import load_dataset
from refit_gym.metrics import evaluate

torch.set_num_threads(1)
data = load_dataset("../shared/datasets/amazon-beauty")
known = data.known_items("valid").toarray().astype(bool)  # the items every metric masks


def z(S: np.ndarray) -> np.ndarray:
    """Standardise each row over its unmasked items (the masked ones are ranked out by the metric anyway)."""
    M = np.ma.masked_array(S, known)
    return ((S - M.mean(axis=1).data[:, None]) / np.maximum(M.std(axis=1).data[:, None], 1e-8)).astype(np.float32)


def report(name: str, S: np.ndarray) -> None:
    """Print validation NDCG@20 and Recall@20 of the score matrix ``S`` ``(n_users, n_items)``."""
    m = evaluate(lambda users: torch.from_numpy(S[users]), data, "valid", ks=(20,), batch_size=2048)
    print(f"{name:<40} valid NDCG@20 {m['ndcg@20']:.4f}  Recall@20 {m['recall@20']:.4f}", flush=True)
