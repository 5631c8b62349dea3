"""The in-memory interaction dataset every other layer reads.

`InteractionData` holds one implicit-feedback dataset: ``n_users`` x ``n_items`` binary
matrices for the train / valid / test splits (scipy CSR, float32, values 1.0), optional
per-interaction timestamps of the training split, optional user-user social edges and
optional maps from raw ids to the contiguous 0-based indices used everywhere else.

Construction goes through :func:`InteractionData.from_pairs`, which validates every input
and raises :class:`DataError` naming the source file, the field and the offending value.
Duplicate (user, item) pairs are removed explicitly and counted in ``dedup_counts``.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import Dict, Mapping, Optional, Sequence

import numpy as np
import scipy.sparse as sp


class DataError(ValueError):
    """Bad input data: the message names the file, the field and the offending value."""


class DataWarning(UserWarning):
    """Suspicious but usable input data (e.g. pairs shared by train and test); the message names the file."""


#: largest number of users or items (ids used directly as indices must be below it): a sane bound checked
#: before anything is allocated; override with the environment variable ``REFIT_GYM_MAX_IDS``
MAX_IDS = int(os.environ.get("REFIT_GYM_MAX_IDS", 2**27))
#: what :meth:`InteractionData.from_pairs` does with (user, item) pairs present in two splits
OVERLAP_POLICIES = ("warn", "error", "count")


SPLITS = ("train", "valid", "test")


def validate_pairs(
    pairs, *, source: str, field_name: str, n_rows: Optional[int] = None, n_cols: Optional[int] = None,
    row_name: str = "user", col_name: str = "item",
) -> np.ndarray:
    """Check an ``(n, 2)`` array of integer id pairs and return it as int64.

    Raises :class:`DataError` for a wrong shape, NaN / infinite / non-integer values,
    negative ids, ids >= the declared sizes or (without a declared size) ids >= :data:`MAX_IDS`.
    ``source`` is the file (or object) the pairs came from, ``field_name`` the split or field, both
    quoted in the message.
    """
    arr = np.asarray(pairs)
    where = f"{source}: field '{field_name}'"
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise DataError(f"{where}: expected an array of shape (n, 2) of ({row_name}, {col_name}) pairs, got shape {arr.shape}")
    if arr.dtype.kind not in "iuf":
        raise DataError(f"{where}: expected integer ids, got dtype {arr.dtype}")
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr)
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise DataError(f"{where}: row {r} has a non-finite {(row_name, col_name)[c]} id {arr[r, c]!r}")
        huge = np.abs(arr) >= 2.0**63
        if huge.any():
            r, c = np.argwhere(huge)[0]
            raise DataError(f"{where}: row {r} has {(row_name, col_name)[c]} id {arr[r, c]!r}, beyond int64")
        frac = arr != np.round(arr)
        if frac.any():
            r, c = np.argwhere(frac)[0]
            raise DataError(f"{where}: row {r} has a non-integer {(row_name, col_name)[c]} id {arr[r, c]!r}")
    if arr.dtype.kind == "u" and arr.size and int(arr.max()) >= 2**63:
        r, c = np.argwhere(arr >= 2**63)[0]
        raise DataError(f"{where}: row {r} has {(row_name, col_name)[c]} id {int(arr[r, c])}, beyond int64")
    arr = arr.astype(np.int64, copy=False)
    for c, (name, limit) in enumerate(((row_name, n_rows), (col_name, n_cols))):
        col = arr[:, c]
        if col.size and col.min() < 0:
            r = int(np.argmin(col))
            raise DataError(f"{where}: row {r} has a negative {name} id {int(col[r])}")
        if limit is not None and col.size and col.max() >= limit:
            r = int(np.argmax(col))
            raise DataError(
                f"{where}: row {r} has {name} id {int(col[r])}, beyond the declared number of {name}s ({limit})"
            )
        if limit is None and col.size and col.max() >= MAX_IDS:
            r = int(np.argmax(col))
            raise DataError(f"{where}: row {r} has {name} id {int(col[r])}, beyond the bound {MAX_IDS} on {name} ids "
                            "(ids index the matrices directly; re-index them, or raise REFIT_GYM_MAX_IDS)")
    return arr


def check_size(value: int, what: str, source: str) -> int:
    """A declared or inferred number of users/items must be in ``[1, MAX_IDS]``; returns it."""
    if not 0 < int(value) <= MAX_IDS:
        raise DataError(f"{source}: field '{what}' is {value}, outside [1, {MAX_IDS}] (raise REFIT_GYM_MAX_IDS for "
                        "larger catalogues)")
    return int(value)


def pairs_to_csr(pairs: np.ndarray, shape) -> sp.csr_matrix:
    """Binary float32 CSR matrix from validated, duplicate-free ``(n, 2)`` pairs."""
    data = np.ones(len(pairs), dtype=np.float32)
    m = sp.csr_matrix((data, (pairs[:, 0], pairs[:, 1])), shape=shape, dtype=np.float32)
    m.sort_indices()
    return m


def dedup_pairs(pairs: np.ndarray, n_cols: int):
    """Drop repeated rows of ``pairs`` (non-negative int64); return (unique pairs in first-seen order, kept
    index, n dropped). The scalar key ``row * n_cols + col`` is used only when it cannot overflow int64;
    otherwise rows are compared as pairs."""
    n_cols = max(int(n_cols), 1, int(pairs[:, 1].max(initial=0)) + 1)
    if len(pairs) and (int(pairs[:, 0].max()) + 1) * n_cols < 2**63:
        keys = pairs[:, 0] * np.int64(n_cols) + pairs[:, 1]
        _, first = np.unique(keys, return_index=True)
    else:
        _, first = np.unique(pairs.reshape(-1, 2), axis=0, return_index=True)
    first.sort()
    return pairs[first], first, len(pairs) - len(first)


@dataclass
class InteractionData:
    """An implicit-feedback dataset split into train / valid / test.

    Attributes:
        name: a short name (the folder name for loaded data).
        n_users, n_items: sizes of the id spaces; every matrix is ``(n_users, n_items)``.
        train, valid, test: binary float32 CSR matrices of shape ``(n_users, n_items)``.
        train_time: optional float64 CSR matrix aligned with ``train`` holding each training
            interaction's timestamp in seconds (same sparsity pattern), or None.
        social: optional binary float32 CSR matrix ``(n_users, n_users)`` of user-user edges
            (symmetrised, no self loops), or None.
        user_map, item_map: optional dicts raw id -> contiguous index.
        dedup_counts: number of duplicate pairs removed per field (reported, never silent).
        overlap_counts: number of (user, item) pairs present in two splits, per pair of splits
            (``"train&valid"``, ``"train&test"``, ``"valid&test"``); nonzero counts are warned about.
        drop_counts: number of raw records a loader filtered out, per reason (e.g. ratings below a
            threshold, users or items below a minimum count); empty when nothing was filtered.
        source: where the data came from (a path or "synthetic(...)").
    """

    name: str
    n_users: int
    n_items: int
    train: sp.csr_matrix
    valid: sp.csr_matrix
    test: sp.csr_matrix
    train_time: Optional[sp.csr_matrix] = None
    social: Optional[sp.csr_matrix] = None
    user_map: Optional[Dict] = None
    item_map: Optional[Dict] = None
    dedup_counts: Dict[str, int] = field(default_factory=dict)
    source: str = ""
    drop_counts: Dict[str, int] = field(default_factory=dict)
    overlap_counts: Dict[str, int] = field(default_factory=dict)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_pairs(
        cls,
        train,
        valid,
        test,
        *,
        n_users: Optional[int] = None,
        n_items: Optional[int] = None,
        social=None,
        train_time=None,
        name: str = "data",
        source: str = "<memory>",
        sources: Optional[Mapping[str, str]] = None,
        user_map=None,
        item_map=None,
        allow_empty: Sequence = (),
        overlap: str = "warn",
    ) -> "InteractionData":
        """Validate (user, item) pairs and build the dataset.

        Args:
            train, valid, test: ``(n, 2)`` integer arrays of (user, item) pairs, 0-based.
            n_users, n_items: declared sizes; inferred as ``max id + 1`` over all splits when None.
                An id at or beyond a declared size raises :class:`DataError`.
            social: optional ``(m, 2)`` (user, user) edges; symmetrised, self loops dropped (counted in
                ``dedup_counts['social_self_loops']``), repeated directed edges counted in ``dedup_counts['social']``.
            train_time: optional ``(n,)`` timestamps (seconds) aligned with ``train`` rows.
            sources: optional per-field file names used in error messages (defaults to ``source``).
            allow_empty: split names that may be empty (by default every split must have pairs).
            overlap: pairs present in two splits (a leak: test items the model trained on, masked away at
                evaluation) are counted in ``overlap_counts``; ``"warn"`` issues a :class:`DataWarning` naming
                the files and counts, ``"error"`` raises :class:`DataError`, ``"count"`` only counts (for derived
                views where overlaps are expected, e.g. sequences revisiting items).
        """
        if overlap not in OVERLAP_POLICIES:
            raise ValueError(f"overlap={overlap!r}: expected one of {OVERLAP_POLICIES}")
        sources = dict(sources or {})
        src = lambda f: sources.get(f, source)  # noqa: E731
        arrays = {}
        for f, p in (("train", train), ("valid", valid), ("test", test)):
            arrays[f] = validate_pairs(p, source=src(f), field_name=f, n_rows=n_users, n_cols=n_items)
            if len(arrays[f]) == 0 and f not in allow_empty:
                raise DataError(f"{src(f)}: field '{f}' is empty: no (user, item) pairs")
        if n_users is None:
            n_users = int(max(a[:, 0].max(initial=-1) for a in arrays.values())) + 1
        if n_items is None:
            n_items = int(max(a[:, 1].max(initial=-1) for a in arrays.values())) + 1
        if n_users <= 0 or n_items <= 0:
            raise DataError(f"{source}: empty dataset (n_users={n_users}, n_items={n_items})")
        check_size(n_users, "n_users", source)
        check_size(n_items, "n_items", source)

        dedup: Dict[str, int] = {}
        times = None
        if train_time is not None:
            times = np.asarray(train_time, dtype=np.float64).reshape(-1)
            if len(times) != len(arrays["train"]):
                raise DataError(
                    f"{src('train')}: field 'timestamp' has {len(times)} values for {len(arrays['train'])} train pairs"
                )
            if not np.isfinite(times).all():
                r = int(np.argmin(np.isfinite(times)))
                raise DataError(f"{src('train')}: field 'timestamp' row {r} is not finite ({times[r]!r})")
        mats = {}
        time_m = None
        for f in SPLITS:
            arr, kept, n_dup = dedup_pairs(arrays[f], n_items)
            dedup[f] = int(n_dup)
            mats[f] = pairs_to_csr(arr, (n_users, n_items))
            if f == "train" and times is not None:
                # the first occurrence of a duplicated pair keeps its timestamp
                time_m = sp.csr_matrix((times[kept], (arr[:, 0], arr[:, 1])), shape=(n_users, n_items), dtype=np.float64)
                time_m.sort_indices()
        overlaps = {f"{a}&{b}": int(mats[a].multiply(mats[b]).nnz)
                    for a, b in (("train", "valid"), ("train", "test"), ("valid", "test"))}
        if any(overlaps.values()):
            where = ", ".join(sorted({src(f) for f in SPLITS}))
            msg = (f"{where}: (user, item) pairs present in two splits: "
                   + ", ".join(f"{k} {v}" for k, v in overlaps.items() if v)
                   + " (they are masked away at evaluation, so the metrics ignore them)")
            if overlap == "error":
                raise DataError(msg)
            if overlap == "warn":
                warnings.warn(msg, DataWarning, stacklevel=2)
        social_m = None
        if social is not None:
            s = validate_pairs(social, source=src("social"), field_name="social", n_rows=n_users, n_cols=n_users,
                               row_name="user", col_name="user")
            self_loops = s[:, 0] == s[:, 1]
            dedup["social_self_loops"] = int(self_loops.sum())
            s = s[~self_loops]
            # count repeats of the same directed edge in the input; an edge listed in both
            # directions is the normal undirected encoding, not a duplicate
            s, _, n_dup = dedup_pairs(s, n_users)
            dedup["social"] = int(n_dup)
            both, _, _ = dedup_pairs(np.concatenate([s, s[:, ::-1]], axis=0), n_users)
            social_m = pairs_to_csr(both, (n_users, n_users))
        return cls(
            name=name, n_users=int(n_users), n_items=int(n_items), train=mats["train"], valid=mats["valid"],
            test=mats["test"], train_time=time_m, social=social_m, user_map=user_map, item_map=item_map,
            dedup_counts=dedup, source=source, overlap_counts=overlaps,
        )

    # ------------------------------------------------------------------ views
    @property
    def train_users(self) -> np.ndarray:
        """``(n_users,)`` int64: the users whose rows are training data, every user (interaction data splits
        interactions, not users; :class:`~refit_gym.data.sequential.SequentialData` under user-split differs)."""
        return np.arange(self.n_users, dtype=np.int64)

    def split(self, name: str) -> sp.csr_matrix:
        """The CSR matrix of split ``name`` ('train', 'valid' or 'test')."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {SPLITS}")
        return getattr(self, name)

    def known_items(self, split: str) -> sp.csr_matrix:
        """Items to mask when ranking for ``split``: train for 'valid', train + valid for 'test'."""
        if split == "valid":
            return self.train
        if split == "test":
            return (self.train + self.valid).tocsr().sign()
        raise ValueError(f"no evaluation protocol for split {split!r}; use 'valid' or 'test'")

    def recency_weights(self, w_min: float, w_max: float = 1.0) -> sp.csr_matrix:
        """T-DiffRec's time-aware interaction weights (Wang et al., SIGIR 2023): CSR ``(n_users, n_items)``
        float32 with the sparsity of ``train``, user u's j-th training interaction in time order (0-based, of
        ``n_u``; ties by item id) weighted ``w_min + (w_max - w_min) * j / (n_u - 1)`` (``w_max`` when ``n_u = 1``),
        so the most recent interaction weighs ``w_max``. The order is ``train_time``'s: timestamps, or the rows of
        the training file where the format has none (:func:`~refit_gym.data.load_diffrec_folder`; ml-1m's file order
        behaves as time, amazon-beauty's does not: results/ml-1m/probes/probe_recency). Cost O(nnz log nnz).

        Raises:
            ValueError: unless ``0 <= w_min <= w_max``.
            DataError: ``train_time`` is None (no order to weight by)."""
        if not 0.0 <= float(w_min) <= float(w_max):
            raise ValueError(f"recency weights w_min={w_min}, w_max={w_max}: expected 0 <= w_min <= w_max")
        if self.train_time is None:
            raise DataError(f"{self.source}: field 'train_time' is missing: the training interactions have no "
                            "order, so recency weights are undefined")
        train = self.train.tocsr()
        train.sort_indices()
        try:
            rank = rank_in_rows(train, self.train_time).astype(np.float64)
        except ValueError as e:
            raise DataError(f"{self.source}: field 'train_time' does not fit field 'train': {e}") from None
        counts = np.diff(train.indptr)
        row = np.repeat(np.arange(self.n_users), counts)
        frac = rank / np.maximum(counts[row] - 1, 1)
        frac[counts[row] == 1] = 1.0
        weights = float(w_min) + (float(w_max) - float(w_min)) * frac
        return sp.csr_matrix((weights.astype(np.float32), train.indices.copy(), train.indptr.copy()),
                             shape=train.shape)

    def n_interactions(self) -> Dict[str, int]:
        return {f: int(self.split(f).nnz) for f in SPLITS}

    def subset_items(self, items: np.ndarray) -> "InteractionData":
        """The dataset restricted to the given item indices (re-indexed 0..len(items)-1), all users kept."""
        items = np.asarray(items, dtype=np.int64)
        sub = lambda m: None if m is None else m[:, items].tocsr()  # noqa: E731
        return InteractionData(
            name=f"{self.name}[{len(items)} items]", n_users=self.n_users, n_items=len(items),
            train=sub(self.train), valid=sub(self.valid), test=sub(self.test), train_time=sub(self.train_time),
            social=self.social, user_map=self.user_map, item_map=None, dedup_counts=dict(self.dedup_counts),
            drop_counts=dict(self.drop_counts),
            source=self.source,
        )

    def subset_users(self, users: np.ndarray) -> "InteractionData":
        """The dataset restricted to the given user indices (re-indexed), all items kept."""
        users = np.asarray(users, dtype=np.int64)
        sub = lambda m: None if m is None else m[users].tocsr()  # noqa: E731
        social = None if self.social is None else self.social[users][:, users].tocsr()
        return InteractionData(
            name=f"{self.name}[{len(users)} users]", n_users=len(users), n_items=self.n_items,
            train=sub(self.train), valid=sub(self.valid), test=sub(self.test), train_time=sub(self.train_time),
            social=social, user_map=None, item_map=self.item_map, dedup_counts=dict(self.dedup_counts),
            drop_counts=dict(self.drop_counts),
            source=self.source,
        )

    def summary(self) -> str:
        n = self.n_interactions()
        parts = [f"{self.name}: {self.n_users} users, {self.n_items} items, "
                 f"train/valid/test = {n['train']}/{n['valid']}/{n['test']}"]
        if self.social is not None:
            parts.append(f"social edges (directed) = {self.social.nnz}")
        dropped = {k: v for k, v in self.dedup_counts.items() if v}
        if dropped:
            parts.append(f"duplicates removed = {dropped}")
        filtered = {k: v for k, v in self.drop_counts.items() if v}
        if filtered:
            parts.append(f"records filtered out = {filtered}")
        return "; ".join(parts)

    def __repr__(self) -> str:  # keep reprs short: the matrices are large
        return f"InteractionData({self.summary()})"


def rank_in_rows(rows: sp.csr_matrix, times: sp.csr_matrix) -> np.ndarray:
    """``(nnz,)`` int64: each stored entry of ``rows`` (CSR with sorted indices) ranked within its row by
    ``times`` (CSR with the same sparsity pattern), 0 for the oldest, ties by column (the larger column later).
    The one ordering of a user's interactions in time (recency weights, the latest-items hold-out).
    Raises ValueError when the patterns differ."""
    times = sp.csr_matrix(times, dtype=np.float64)
    times.sort_indices()
    if not (np.array_equal(rows.indptr, times.indptr) and np.array_equal(rows.indices, times.indices)):
        raise ValueError("times do not have the sparsity pattern of the rows")
    row = np.repeat(np.arange(rows.shape[0]), np.diff(rows.indptr))
    order = np.lexsort((rows.indices, times.data, row))  # by row, then time, then column
    rank = np.empty(rows.nnz, dtype=np.int64)
    rank[order] = np.arange(rows.nnz) - rows.indptr[row[order]]
    return rank


def as_interactions(data) -> InteractionData:
    """The :class:`InteractionData` view of a dataset.

    ``data`` itself if it is an InteractionData; otherwise ``data.interactions()`` for datasets
    that offer a binary-matrix view (e.g. :class:`~refit_gym.data.sequential.SequentialData`,
    whose view keeps every training interaction, see its docstring). Anything else raises
    TypeError naming the type.
    """
    if isinstance(data, InteractionData):
        return data
    view = getattr(data, "interactions", None)
    if callable(view):
        out = view()
        if isinstance(out, InteractionData):
            return out
    raise TypeError(f"expected an InteractionData or a dataset with an interactions() view (e.g. SequentialData), "
                    f"got {type(data).__name__}")
