"""Evaluation protocols of sequence data: which users train, which are evaluated, and on what.

:data:`PROTOCOLS`:

* ``"loo"`` (leave-one-out, the format of ``dataset.pkl``): every user trains on its train sequence and is
  evaluated twice: on its validation item (history: the train sequence) and on its test item (history: train
  sequence + validation item). ``split_users[s]`` is every user for every split ``s``.
* ``"user-split"`` (PreferDiff / DreamRec-style papers): each user's full sequence (``train + val + test`` of
  the file, in that time order) and a seeded random split of the *users* into train / valid / test (default
  80/10/10). A train user's whole sequence is training data; a valid (test) user's last item is its target and
  the items before it are its history (truncated to the last ``max_len`` wherever a padded view is read,
  10 by default as in those papers). Valid and test users never train. Training covers *all prefixes* of the
  train users' sequences (:func:`prefix_windows`), however long, not only the last ``max_len`` items.

:func:`apply_protocol` turns a leave-one-out :class:`~refit_gym.data.sequential.SequentialData` into the
protocol's; :func:`~refit_gym.data.sequential.load_sequential` and :func:`~refit_gym.data.load_dataset`
(``protocol=``, ``split_seed=``, ``ratios=``) call it. (This module imports nothing of
:mod:`refit_gym.data.sequential`, which imports it.)
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np

from refit_gym.data.dataset import DataError

PROTOCOLS = ("loo", "user-split")
#: padded-view width (history length) of each protocol when ``max_len`` is not given
DEFAULT_MAX_LEN = {"loo": 50, "user-split": 10}
DEFAULT_RATIOS = (0.8, 0.1, 0.1)
#: the keyword arguments of the protocol choice (what :func:`refit_gym.data.load_dataset` routes here)
PROTOCOL_KWARGS = ("protocol", "split_seed", "ratios")


def check_protocol(protocol, where: str) -> str:
    """``protocol`` if it is a name of :data:`PROTOCOLS`; DataError naming ``where`` and the value otherwise."""
    if protocol not in PROTOCOLS:
        raise DataError(f"{where}: field 'protocol' is {protocol!r}; expected one of {list(PROTOCOLS)}")
    return protocol


def check_ratios(ratios, where: str) -> np.ndarray:
    """``(3,)`` float64 of positive finite (train, valid, test) fractions summing to 1; DataError otherwise."""
    try:
        r = np.asarray(ratios, dtype=np.float64)
    except (TypeError, ValueError):
        r = np.full(1, np.nan)
    if r.shape != (3,) or not np.isfinite(r).all() or (r <= 0).any() or abs(r.sum() - 1.0) > 1e-6:
        raise DataError(f"{where}: field 'ratios' is {ratios!r}; expected three positive (train, valid, test) "
                        "fractions summing to 1, e.g. (0.8, 0.1, 0.1)")
    return r


def resolve_split_users(protocol: str, split_users, n_users: int, where: str) -> Dict[str, np.ndarray]:
    """Checked ``split_users`` of a dataset (``{"train", "valid", "test"}`` -> sorted distinct int64 ids): None
    means every user in every split (loo only); user-split assigns each user to exactly one split."""
    check_protocol(protocol, where)
    if split_users is None:
        if protocol != "loo":
            raise DataError(f"{where}: field 'split_users' is None; protocol {protocol!r} needs the user split")
        everyone = np.arange(n_users, dtype=np.int64)
        return {"train": everyone, "valid": everyone, "test": everyone}
    if sorted(split_users) != ["test", "train", "valid"]:
        raise DataError(f"{where}: field 'split_users' has keys {sorted(split_users)}; expected train, valid, test")
    out = {k: np.asarray(v, dtype=np.int64) for k, v in split_users.items()}
    for k, v in out.items():
        if v.ndim != 1 or len(v) == 0 or (np.diff(v) <= 0).any() or v[0] < 0 or v[-1] >= n_users:
            raise DataError(f"{where}: field 'split_users[{k!r}]' must be non-empty, sorted, distinct user ids "
                            f"in [0, {n_users})")
    if protocol == "user-split":
        owner = np.concatenate([out[k] for k in ("train", "valid", "test")])
        if len(owner) != n_users or len(np.unique(owner)) != n_users:
            raise DataError(f"{where}: field 'split_users': the user split must assign every one of the {n_users} "
                            "users to exactly one of train / valid / test")
    elif any(len(v) != n_users for v in out.values()):
        raise DataError(f"{where}: field 'split_users': protocol 'loo' has every user in every split")
    return out


def split_user_ids(n_users: int, ratios, seed: int, where: str) -> Dict[str, np.ndarray]:
    """Seeded random split of ``0 .. n_users-1``: ``{"train", "valid", "test"}`` -> sorted int64 ids.

    Sizes: ``round(r_valid n)`` valid and ``round(r_test n)`` test users, the rest train; every split must be
    non-empty (DataError naming the sizes otherwise). The permutation is ``default_rng(seed).permutation``."""
    r = check_ratios(ratios, where)
    n_valid, n_test = int(round(r[1] * n_users)), int(round(r[2] * n_users))
    n_train = n_users - n_valid - n_test
    if min(n_train, n_valid, n_test) < 1:
        raise DataError(f"{where}: {n_users} users split {tuple(float(x) for x in r)} gives {n_train} train / "
                        f"{n_valid} valid / {n_test} test users; every split needs at least one")
    perm = np.random.default_rng(int(seed)).permutation(n_users).astype(np.int64)
    return {"train": np.sort(perm[:n_train]), "valid": np.sort(perm[n_train:n_train + n_valid]),
            "test": np.sort(perm[n_train + n_valid:])}


def append_per_row(flat: np.ndarray, ptr: np.ndarray, values: np.ndarray):
    """Append ``values[r]`` at the end of every ragged row r of ``(flat, ptr)``; returns the new ``(flat, ptr)``."""
    return np.insert(flat, ptr[1:], values), ptr + np.arange(len(ptr), dtype=ptr.dtype)


def prefix_windows(ptr: np.ndarray, users: np.ndarray, width: int):
    """Windows of at most ``width`` positions that hold every transition of the ``users``' rows exactly once.

    Row ``u`` (positions ``ptr[u] .. ptr[u+1]-1``) is cut from its end into windows overlapping by one position
    (ends ``e_j = ptr[u+1] - j (width - 1)``, starts ``max(ptr[u], e_j - width)``), so that the all-prefix loss
    of a window trains each of its transitions once, with the window's items before it as history (1 to
    ``width - 1`` items); the oldest window, when shorter than ``width``, also trains the first item from the
    empty history. Returns ``(positions (nnz,), row_ptr (n_windows + 1,))`` int64: the windows as ragged rows
    of positions into the rows' flat storage (window w is ``positions[row_ptr[w]:row_ptr[w+1]]``, oldest first)."""
    width = int(width)
    if width < 2:
        raise ValueError(f"width={width}: windows need a history and a target (>= 2)")
    users = np.asarray(users, dtype=np.int64)
    starts, ends = ptr[users], ptr[users + 1]
    n_win = np.maximum(1, -(-(ends - starts - 1) // (width - 1)))  # ceil((n - 1) / (width - 1)), at least 1
    k = np.repeat(np.arange(len(users)), n_win)
    j = np.arange(int(n_win.sum())) - np.repeat(np.cumsum(n_win) - n_win, n_win)
    end = ends[k] - j * (width - 1)
    start = np.maximum(starts[k], end - width)
    size = end - start
    row_ptr = np.concatenate([[0], np.cumsum(size)]).astype(np.int64)
    return np.repeat(start - row_ptr[:-1], size) + np.arange(int(row_ptr[-1])), row_ptr


def user_split(data, split_seed: int = 0, ratios: Sequence[float] = DEFAULT_RATIOS,
               max_len: Optional[int] = None):
    """The ``"user-split"`` dataset of a leave-one-out :class:`~refit_gym.data.sequential.SequentialData`.

    Rows of the result (same user ids, items, maps): a train user's row is its full sequence; a valid / test
    user's row is its full sequence without the last item (its history), and ``valid_item`` / ``test_item``
    hold that last item for the split's users and -1 for every other user. Timestamps follow the items.
    ``max_len`` defaults to :data:`DEFAULT_MAX_LEN` ``["user-split"]``.
    """
    where = data.source
    if data.protocol != "loo":
        raise DataError(f"{where}: field 'protocol' is {data.protocol!r}; user_split needs leave-one-out data")
    users = split_user_ids(data.n_users, ratios, split_seed, where)
    flat, ptr = append_per_row(data.train_items, data.train_ptr, data.valid_item)
    flat, ptr2 = append_per_row(flat, ptr, data.test_item)
    times = None
    if data.has_time:
        times, _ = append_per_row(data.train_times, data.train_ptr, data.valid_time)
        times, _ = append_per_row(times, ptr, data.test_time)
    evaluated = np.zeros(data.n_users, dtype=bool)
    evaluated[users["valid"]] = evaluated[users["test"]] = True
    last = ptr2[1:] - 1  # position of every user's last item in the full sequences
    keep = np.ones(len(flat), dtype=bool)
    keep[last[evaluated]] = False
    held = {s: np.full(data.n_users, -1, dtype=np.int64) for s in ("valid", "test")}
    held_t = {s: np.full(data.n_users, np.nan) for s in ("valid", "test")} if times is not None else {}
    for s in ("valid", "test"):
        held[s][users[s]] = flat[last[users[s]]]
        if times is not None:
            held_t[s][users[s]] = times[last[users[s]]]
    lengths = np.diff(ptr2) - evaluated
    return type(data)(
        name=data.name, n_users=data.n_users, n_items=data.n_items, train_items=flat[keep],
        train_ptr=np.concatenate([[0], np.cumsum(lengths)]), valid_item=held["valid"], test_item=held["test"],
        max_len=DEFAULT_MAX_LEN["user-split"] if max_len is None else max_len,
        train_times=None if times is None else times[keep], valid_time=held_t.get("valid"),
        test_time=held_t.get("test"), user_map=data.user_map, item_map=data.item_map, source=data.source,
        protocol="user-split", split_users=users, split_seed=int(split_seed),
        ratios=tuple(float(x) for x in check_ratios(ratios, where)))


def apply_protocol(data, protocol: str = "loo", split_seed: int = 0, ratios: Sequence[float] = DEFAULT_RATIOS,
                   max_len: Optional[int] = None):
    """``data`` (leave-one-out SequentialData) under ``protocol``: unchanged for ``"loo"`` (ratios and seed
    unused), :func:`user_split` for ``"user-split"``."""
    check_protocol(protocol, data.source)
    if protocol == "loo":
        return data
    return user_split(data, split_seed, ratios, max_len)


__all__ = ["DEFAULT_MAX_LEN", "DEFAULT_RATIOS", "PROTOCOLS", "PROTOCOL_KWARGS", "apply_protocol", "check_protocol",
           "check_ratios", "prefix_windows", "resolve_split_users", "split_user_ids", "user_split"]
