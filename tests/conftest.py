"""Shared test fixtures: where the real datasets live (a skip marker when they are absent); small interaction data and
a tiny DiffRec for the agents' tests; small sequential data."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from refit_gym.data.sequential import SequentialData

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("REFIT_GYM_DATASETS", REPO.parent / "shared" / "datasets"))


@pytest.fixture(scope="module")
def data():
    """64 users x 120 items of synthetic interactions (seed 0): the agents' tests' data (a module's own ``data``
    fixture overrides it)."""
    from refit_gym.data.synthetic import make_synthetic

    return make_synthetic(n_users=64, n_items=120, seed=0)


def tiny_diffrec(data, hidden: int, steps: int):
    """A DiffRec with one hidden layer of ``hidden`` units and ``steps`` denoising steps, seeded with 0, in eval mode."""
    import torch

    from refit_gym.diffusion import build_backbone

    torch.manual_seed(0)
    return build_backbone("diffrec", data, hidden=[hidden], schedule=dict(steps=steps)).eval()


def shared_dataset(name: str) -> Path:
    """Path of ``../shared/datasets/<name>``; skips the test with a clear reason when it is absent."""
    path = SHARED / name
    if not path.exists():
        pytest.skip(f"shared dataset {path} is absent (set REFIT_GYM_DATASETS or place ../shared/datasets beside the repo)")
    return path


def walks(n_users=32, n_items=20, seed=0, timed=False, max_len=8) -> SequentialData:
    """Users walk the item cycle k -> k+1 from random starts (valid/test continue the walk)."""
    rng = np.random.default_rng(seed)
    starts, lengths = rng.integers(0, n_items, n_users), rng.integers(3, 9, n_users)
    ws = [list((s + np.arange(n + 2)) % n_items) for s, n in zip(starts, lengths)]
    ts = [list(1_300_000_000.0 + 3600.0 * np.arange(len(w)) * (1 + u % 3)) for u, w in enumerate(ws)] if timed else None
    return SequentialData.from_sequences(
        [w[:-2] for w in ws], [w[-2] for w in ws], [w[-1] for w in ws], n_items, max_len=max_len, name="walks",
        train_times=None if ts is None else [t[:-2] for t in ts], valid_time=None if ts is None else [t[-2] for t in ts],
        test_time=None if ts is None else [t[-1] for t in ts])


def tiny_seq_folder(tmp_path, seq_data, timed: bool = False):
    """``seq_data`` written as a ``tmp_path/tiny-seq/dataset.pkl`` folder (timestamped when ``timed``)."""
    e = (lambda i, k: (int(i) + 1, f"2010-06-{k + 1:02d} 10:00:00")) if timed else (lambda i, k: int(i) + 1)  # noqa: E731
    seqs = [seq_data.train_items[seq_data.train_ptr[u]:seq_data.train_ptr[u + 1]] for u in range(seq_data.n_users)]
    raw = {"train": {u: [e(i, k) for k, i in enumerate(seqs[u])] for u in range(seq_data.n_users)},
           "val": {u: [e(seq_data.valid_item[u], 20)] for u in range(seq_data.n_users)},
           "test": {u: [e(seq_data.test_item[u], 21)] for u in range(seq_data.n_users)},
           "umap": {u: u for u in range(seq_data.n_users)}, "smap": {i: i + 1 for i in range(seq_data.n_items)}}
    folder = tmp_path / "tiny-seq"
    folder.mkdir()
    (folder / "dataset.pkl").write_bytes(pickle.dumps(raw, protocol=4))
    return folder
