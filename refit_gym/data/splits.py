"""Splitting rules of timestamped records into train / valid / test, and the dataset built from the split.

* :func:`per_user_temporal_split` -- each user's own timeline (RecBole files, MovieLens ``user_time``).
* :func:`global_temporal_split` -- the global time order (DiffRec's protocol, MovieLens ``global_time``).
"""
from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np

from refit_gym.data.dataset import InteractionData


def _check_ratios(ratios: Sequence[float]) -> np.ndarray:
    r = np.asarray(ratios, dtype=np.float64)
    if r.shape != (3,) or (r < 0).any() or r[0] <= 0 or not np.isclose(r.sum(), 1.0):
        raise ValueError(f"ratios={tuple(ratios)}: expected three non-negative (train, valid, test) "
                         "fractions summing to 1 with train > 0")
    return r


def per_user_temporal_split(users: np.ndarray, times: np.ndarray, ratios: Sequence[float] = (0.8, 0.1, 0.1)
                            ) -> np.ndarray:
    """Assign each interaction to a split (0 train, 1 valid, 2 test) by its rank in its user's timeline.

    A user's ``n`` interactions are ordered by timestamp, ties by input order. The last
    ``floor(n * ratios[2])`` go to test, the ``floor(n * ratios[1])`` before them to valid and the
    rest (at least one, because the floors sum to less than ``n``) to train. Hence users with few
    interactions keep all of them in train and may have an empty valid and/or test row (e.g. with
    0.8/0.1/0.1, users with fewer than 10 interactions have no valid and no test item); no
    interaction is ever dropped.

    Args:
        users: ``(n,)`` int user index of each interaction.
        times: ``(n,)`` float timestamps.
        ratios: (train, valid, test) fractions summing to 1.
    Returns:
        ``(n,)`` int8 split code aligned with the inputs.
    """
    r = _check_ratios(ratios)
    users = np.asarray(users, dtype=np.int64)
    order = np.lexsort((np.arange(len(users)), np.asarray(times), users))
    counts = np.bincount(users, minlength=users.max(initial=-1) + 1)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    su = users[order]
    rank = np.arange(len(order)) - starts[su]
    n = counts[su]
    n_test = np.floor(n * r[2] + 1e-9).astype(np.int64)
    n_valid = np.floor(n * r[1] + 1e-9).astype(np.int64)
    n_train = n - n_valid - n_test
    code_sorted = np.where(rank < n_train, 0, np.where(rank < n_train + n_valid, 1, 2)).astype(np.int8)
    code = np.empty_like(code_sorted)
    code[order] = code_sorted
    return code


def global_temporal_split(times: np.ndarray, ratios: Sequence[float] = (0.7, 0.1, 0.2)) -> np.ndarray:
    """Assign interactions to splits by their position in the global time order (DiffRec's protocol).

    All ``n`` interactions are ordered by timestamp (ties by input order); the first
    ``floor(n * ratios[0])`` are train, the next ``floor(n * (ratios[0] + ratios[1])) - floor(n * ratios[0])``
    valid and the rest test. Counting positions rather than cutting at timestamp quantiles keeps
    the split sizes exact when many interactions share a timestamp.

    Returns:
        ``(n,)`` int8 split code (0 train, 1 valid, 2 test) aligned with ``times``.
    """
    r = _check_ratios(ratios)
    n = len(times)
    order = np.argsort(np.asarray(times), kind="stable")
    cut1 = int(np.floor(n * r[0] + 1e-9))
    cut2 = int(np.floor(n * (r[0] + r[1]) + 1e-9))
    code = np.empty(n, dtype=np.int8)
    code[order[:cut1]] = 0
    code[order[cut1:cut2]] = 1
    code[order[cut2:]] = 2
    return code


def dedup_keep_earliest(users: np.ndarray, items: np.ndarray, times: np.ndarray) -> Tuple[np.ndarray, int]:
    """Index of the earliest (then first in file) record of every (user, item) pair, in file order, and the n dropped."""
    order = np.lexsort((np.arange(len(users)), times, items, users))
    su, si = users[order], items[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = (su[1:] != su[:-1]) | (si[1:] != si[:-1])
    kept = np.sort(order[first])
    return kept, len(users) - len(kept)


def build_from_records(users, items, times, codes, *, n_users, n_items, name, source, user_map, item_map,
                        drop_counts, n_dup) -> InteractionData:
    """Dataset from split-coded records. Valid / test may be empty (tiny inputs, or a zero ratio)."""
    pairs = np.stack([users, items], axis=1)
    tr = codes == 0
    data = InteractionData.from_pairs(
        pairs[tr], pairs[codes == 1], pairs[codes == 2], n_users=n_users, n_items=n_items,
        train_time=times[tr], name=name, source=source, user_map=user_map, item_map=item_map,
        allow_empty=("valid", "test"),
    )
    data.dedup_counts["raw"] = int(n_dup)
    data.drop_counts.update({k: int(v) for k, v in drop_counts.items()})
    return data
