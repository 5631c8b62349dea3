"""The DiffRec on-disk format: a folder of ``train_list.npy``, ``valid_list.npy`` and ``test_list.npy``, each an
``(n, 2)`` integer array of 0-based (user, item) pairs, plus an optional ``social_list.npy`` of (user, user) edges
(the social-recommendation variants)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

import numpy as np

from refit_gym.data.dataset import DataError, InteractionData, validate_pairs

PathLike = Union[str, "os.PathLike[str]"]

DIFFREC_FILES = {"train": "train_list.npy", "valid": "valid_list.npy", "test": "test_list.npy"}
DIFFREC_SOCIAL_FILE = "social_list.npy"


def _load_npy_pairs(path: Path, field_name: str) -> np.ndarray:
    """Read one ``.npy`` pair file (no pickles); a missing or unreadable file raises DataError."""
    if not path.is_file():
        raise DataError(f"{path}: field '{field_name}': file not found")
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:  # object arrays, truncated, empty or non-npy files
        raise DataError(f"{path}: field '{field_name}': cannot read as a numpy array ({exc})") from None
    # shape, dtype, NaN, negative and fractional ids are checked (and named) here
    return validate_pairs(arr, source=str(path), field_name=field_name)


def load_diffrec(folder: PathLike, name: Optional[str] = None, *, n_users: Optional[int] = None,
                 n_items: Optional[int] = None, overlap: str = "warn") -> InteractionData:
    """Load a DiffRec-format dataset folder.

    Args:
        folder: directory holding ``train_list.npy``, ``valid_list.npy``, ``test_list.npy``
            (``(n, 2)`` int arrays of 0-based (user, item) pairs) and optionally
            ``social_list.npy`` (``(m, 2)`` (user, user) edges, symmetrised on load).
        name: dataset name; defaults to the folder's name.
        n_users, n_items: declared sizes. By default ``max id + 1`` over the three splits (and
            the social edges for users), as DiffRec does; an id at or beyond a declared size
            raises :class:`DataError` naming the file. Without declared sizes, ids must be below
            :data:`refit_gym.data.dataset.MAX_IDS` (checked before anything is allocated).
        overlap: ``"warn"`` (a :class:`~refit_gym.data.dataset.DataWarning`) or ``"error"`` for pairs present in
            two splits; counted in ``overlap_counts`` either way.

    Returns:
        The dataset; the format carries no timestamps, so ``train_time`` holds each training pair's row in
        ``train_list.npy`` (as the RecBole loader does for files without a timestamp field): an order, meaningful
        where the files list each user's interactions in time order (the format does not say; ml-1m's order
        behaves as time, amazon-beauty's does not: results/ml-1m/probes/probe_recency), read by
        :meth:`~refit_gym.data.InteractionData.recency_weights`. Duplicate pairs within a split are
        removed and counted in ``dedup_counts`` (the first occurrence keeps its row).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a directory (expected a DiffRec folder with {', '.join(DIFFREC_FILES.values())})")
    paths = {f: folder / fname for f, fname in DIFFREC_FILES.items()}
    arrays = {f: _load_npy_pairs(p, f) for f, p in paths.items()}
    social = None
    social_path = folder / DIFFREC_SOCIAL_FILE
    if social_path.exists():
        social = _load_npy_pairs(social_path, "social")
    if n_users is None and social is not None:  # from_pairs bounds the split ids; bound the social ids here
        social = validate_pairs(social, source=str(folder / DIFFREC_SOCIAL_FILE), field_name="social")
    if n_users is None:
        cols = [a[:, 0] for a in arrays.values()] + ([] if social is None else [social.ravel()])
        n_users = int(max(c.max(initial=-1) for c in cols)) + 1
    sources = {f: str(p) for f, p in paths.items()}
    sources["social"] = str(social_path)
    return InteractionData.from_pairs(
        arrays["train"], arrays["valid"], arrays["test"], n_users=n_users, n_items=n_items, social=social,
        name=name or folder.name, source=str(folder), sources=sources, overlap=overlap,
        train_time=np.arange(len(arrays["train"]), dtype=np.float64),
    )
