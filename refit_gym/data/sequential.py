"""Sequential and POI datasets, loaded safely from ``dataset.pkl`` (leave-one-out, or the user split of
:mod:`refit_gym.data.seq_protocols`).

Format (the one the sequential-recommendation community publishes, e.g. ``seq-beauty``,
``seq-ml-1m``, ``poi-gowalla``): a pickled dict of builtins only::

    {"train": {user: [item, ...]},     # time order, oldest first
     "val":   {user: [item]},          # exactly one item per user (leave-one-out)
     "test":  {user: [item]},
     "umap":  {raw_user: user},        # users are 0-based
     "smap":  {raw_item: item}}        # items are 1-based

For POI data every entry is an ``(item, 'YYYY-MM-DD HH:MM:SS')`` tuple instead of an int.

Decisions (checked, with a :class:`DataError` naming the file, the field and the value):

* The pickle is read with :class:`RestrictedUnpickler`, which refuses *every* global: builtin
  containers, ints, floats, strings and tuples need none, so anything else is an attack or a
  foreign format.
* Users: the ``train`` keys must be exactly ``0 .. n_users-1``; ``val`` and ``test`` must have the
  same keys. Every user needs a non-empty train sequence.
* Items: 1-based in the file, 0-based here (``item - 1``). The id space is ``1 .. max(smap values)``,
  so ``n_items = max(smap values)``. That equals ``len(smap)`` for contiguous maps (seq-beauty);
  poi-gowalla's smap has 19 gaps, so its ``n_items`` is 9,689 with 9,670 mapped ids (the unmapped
  ids never occur: they are cold items). An id that is 0, beyond ``n_items`` or not a value of
  smap is an error; so is a non-integer id (bools and floats included).
* ``val`` / ``test`` lists must hold exactly one entry (the leave-one-out protocol); any other
  length is an error rather than a silent truncation.
* Timestamps are parsed vectorised with ``numpy.datetime64`` after a vectorised format check
  (exactly ``YYYY-MM-DD HH:MM:SS``), and stored as float64 seconds since the Unix epoch.

Layout: the canonical storage is ragged (``train_items`` flat, ``train_ptr`` row pointers, like
CSR); padded views are right-aligned: the most recent item sits in the last column and padding
(``pad_id == n_items``) fills the left. Sequences longer than ``max_len`` keep their most recent
``max_len`` items in the padded view (the ragged storage and :meth:`SequentialData.interactions`
keep everything).
"""
from __future__ import annotations

import io
import pickle
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import scipy.sparse as sp

from refit_gym.data.dataset import DataError, InteractionData
from refit_gym.data.seq_protocols import (DEFAULT_MAX_LEN, append_per_row, apply_protocol, check_protocol,
                                          prefix_windows, resolve_split_users)

TIME_FORMAT = "YYYY-MM-DD HH:MM:SS"


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that refuses every global (class or function) reference.

    Plain containers, numbers, strings and tuples are encoded by opcodes that need no global, so a
    ``dataset.pkl`` of builtins loads unchanged, while a pickle that tries to build any object
    (``os.system``, ``builtins.eval``, a numpy array, ...) fails before anything is called.
    """

    def __init__(self, file, source: str = "<pickle>"):
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str):
        raise DataError(
            f"{self.source}: refusing to load global '{module}.{name}': dataset pickles may hold only builtin "
            "containers, numbers and strings"
        )


def restricted_load(path) -> object:
    """Load a pickle file with :class:`RestrictedUnpickler`; any unpickling failure becomes a DataError."""
    path = Path(path)
    with open(path, "rb") as f:
        raw = f.read()
    try:
        return RestrictedUnpickler(io.BytesIO(raw), source=str(path)).load()
    except DataError:
        raise
    except Exception as e:  # truncated file, bad opcode, ...
        raise DataError(f"{path}: not a readable pickle ({type(e).__name__}: {e})") from e


# ---------------------------------------------------------------------------------------------- layout
def pad_right_aligned(flat: np.ndarray, ptr: np.ndarray, max_len: int, fill) -> np.ndarray:
    """Ragged rows -> ``(n_rows, max_len)`` array, right-aligned, keeping each row's last ``max_len`` values.

    Args:
        flat: ``(nnz,)`` values of all rows, concatenated.
        ptr: ``(n_rows + 1,)`` row pointers (row r is ``flat[ptr[r]:ptr[r+1]]``).
        fill: the padding value (also fixes the output dtype with ``flat``).
    """
    lengths = np.diff(ptr)
    n_rows = len(lengths)
    out = np.full((n_rows, max_len), fill, dtype=np.result_type(flat.dtype, np.asarray(fill).dtype))
    rows = np.repeat(np.arange(n_rows), lengths)
    j = np.arange(len(flat)) - np.repeat(ptr[:-1], lengths)  # position within its row
    col = j + max_len - lengths[rows]  # right-aligned column
    keep = col >= 0
    out[rows[keep], col[keep]] = flat[keep]
    return out




# ---------------------------------------------------------------------------------------------- dataset
@dataclass
class SequentialData:
    """A sequential (or POI) dataset under an evaluation protocol (:mod:`refit_gym.data.seq_protocols`).

    Rows: ``train_items`` row ``u`` is user u's observed sequence before its held-out item(s). Under ``"loo"``
    that is every user's train sequence; under ``"user-split"`` it is the full sequence of a train user and the
    *history* of a valid / test user (an input at evaluation, never training data). Training reads only the
    rows of :attr:`train_users` (``sequence_batches``, the rewards, the baselines); :meth:`interactions`'
    ``train`` matrix holds only those rows.

    Attributes:
        name, source: short name and the file it came from.
        n_users, n_items: id-space sizes; items are 0-based, ``pad_id == n_items``.
        max_len: length of the padded views below (the longest history a view holds).
        train_items: ``(nnz,)`` int64, every user's row (above) concatenated in time order.
        train_ptr: ``(n_users + 1,)`` int64 row pointers into ``train_items``.
        valid_item, test_item: ``(n_users,)`` int64, the held-out next item of each split; -1 for a user
            outside ``split_users[split]`` (user-split only).
        protocol: ``"loo"`` or ``"user-split"``; split_seed, ratios: the user split's draw (None for loo).
        split_users: ``{"train", "valid", "test"}`` -> sorted ``(n_s,)`` int64 user ids (every user for loo).
        train_times: ``(nnz,)`` float64 seconds aligned with ``train_items``, or None.
        valid_time, test_time: ``(n_users,)`` float64 seconds, or None.
        user_map, item_map: raw id -> 0-based index (from umap / smap), or None.
        train_seq: ``(n_users, max_len)`` int64 padded view (right-aligned, ``pad_id`` on the left).
        train_len: ``(n_users,)`` int64 number of real entries in each ``train_seq`` row.
        train_ts: ``(n_users, max_len)`` float64 padded timestamps (NaN on padding), or None.
    """

    name: str
    n_users: int
    n_items: int
    train_items: np.ndarray
    train_ptr: np.ndarray
    valid_item: np.ndarray
    test_item: np.ndarray
    max_len: int = 50
    train_times: Optional[np.ndarray] = None
    valid_time: Optional[np.ndarray] = None
    test_time: Optional[np.ndarray] = None
    user_map: Optional[Dict] = None
    item_map: Optional[Dict] = None
    source: str = "<memory>"
    protocol: str = "loo"
    split_users: Optional[Dict[str, np.ndarray]] = None
    split_seed: Optional[int] = None
    ratios: Optional[Tuple[float, float, float]] = None
    train_seq: np.ndarray = field(init=False, repr=False)
    train_len: np.ndarray = field(init=False, repr=False)
    train_ts: Optional[np.ndarray] = field(init=False, repr=False)
    _interactions: Optional[InteractionData] = field(default=None, init=False, repr=False, compare=False)
    _history_items: Optional[sp.csr_matrix] = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self):
        where = self.source
        self.max_len = int(self.max_len)
        if self.max_len < 1:
            raise DataError(f"{where}: max_len={self.max_len}: need at least 1")
        self.train_items = np.asarray(self.train_items, dtype=np.int64)
        self.train_ptr = np.asarray(self.train_ptr, dtype=np.int64)
        self.valid_item = np.asarray(self.valid_item, dtype=np.int64)
        self.test_item = np.asarray(self.test_item, dtype=np.int64)
        if self.train_ptr.shape != (self.n_users + 1,) or self.train_ptr[0] != 0 or self.train_ptr[-1] != len(self.train_items):
            raise DataError(f"{where}: field 'train_ptr' does not describe {self.n_users} rows of {len(self.train_items)} items")
        empty = np.flatnonzero(np.diff(self.train_ptr) <= 0)
        if len(empty):
            raise DataError(f"{where}: field 'train' of user {int(empty[0])} is an empty sequence")
        self.split_users = resolve_split_users(self.protocol, self.split_users, self.n_users, where)
        for f in ("train_items", "valid_item", "test_item"):
            a = getattr(self, f)
            if f != "train_items" and a.shape != (self.n_users,):
                raise DataError(f"{where}: field '{f}' has shape {a.shape}, expected ({self.n_users},)")
            held = np.ones(len(a), dtype=bool)
            if f != "train_items":  # a target exactly for the split's users, -1 for the others
                held[:] = False
                held[self.split_users["valid" if f == "valid_item" else "test"]] = True
                bad = np.flatnonzero(~held & (a != -1))
                if len(bad):
                    raise DataError(f"{where}: field '{f}' holds item {int(a[bad[0]])} for user {int(bad[0])}, "
                                    f"who is not in split_users; expected -1")
            bad = np.flatnonzero(held & ((a < 0) | (a >= self.n_items)))
            if len(bad):
                raise DataError(f"{where}: field '{f}' holds item {int(a[bad[0]])} outside [0, {self.n_items})")
        if self.train_times is not None:
            self.train_times = np.asarray(self.train_times, dtype=np.float64)
            if self.train_times.shape != self.train_items.shape:
                raise DataError(f"{where}: field 'train_times' has shape {self.train_times.shape}, expected {self.train_items.shape}")
            self.valid_time = np.asarray(self.valid_time, dtype=np.float64)
            self.test_time = np.asarray(self.test_time, dtype=np.float64)
        self.train_seq = pad_right_aligned(self.train_items, self.train_ptr, self.max_len, self.pad_id)
        self.train_len = np.minimum(np.diff(self.train_ptr), self.max_len)
        self.train_ts = (None if self.train_times is None
                         else pad_right_aligned(self.train_times, self.train_ptr, self.max_len, np.nan))

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_sequences(cls, train: Sequence[Sequence[int]], valid: Sequence[int], test: Sequence[int], n_items: int,
                       *, max_len: int = 50, train_times=None, valid_time=None, test_time=None, name: str = "data",
                       source: str = "<memory>") -> "SequentialData":
        """Build from Python lists of 0-based item ids (``train[u]`` in time order); mainly for tests."""
        lengths = np.fromiter((len(s) for s in train), dtype=np.int64, count=len(train))
        ptr = np.concatenate([[0], np.cumsum(lengths)])
        flat = np.fromiter(chain.from_iterable(train), dtype=np.int64, count=int(ptr[-1]))
        times = None
        if train_times is not None:
            times = np.fromiter(chain.from_iterable(train_times), dtype=np.float64, count=int(ptr[-1]))
        return cls(name=name, n_users=len(train), n_items=int(n_items), train_items=flat, train_ptr=ptr,
                   valid_item=np.asarray(valid), test_item=np.asarray(test), max_len=max_len, train_times=times,
                   valid_time=valid_time, test_time=test_time, source=source)

    # ------------------------------------------------------------------ views
    @property
    def pad_id(self) -> int:
        """The padding item id, ``n_items`` (one past the last real item)."""
        return self.n_items

    @property
    def has_time(self) -> bool:
        return self.train_times is not None

    @property
    def train_users(self) -> np.ndarray:
        """``(n_train,)`` int64: the users whose rows are training data (every user for loo)."""
        return self.split_users["train"]

    def padded(self, max_len: Optional[int] = None, include_valid: bool = False
               ) -> Tuple[np.ndarray, Optional[np.ndarray], np.ndarray]:
        """Right-aligned padded sequences of every user.

        Args:
            max_len: width of the output (default ``self.max_len``).
            include_valid: append the validation item (the history used to predict the test item).
        Returns:
            ``(items (n_users, L) int64 with pad_id, times (n_users, L) float64 with NaN or None,
            lengths (n_users,) int64)``.
        """
        L = self.max_len if max_len is None else int(max_len)
        if include_valid and self.protocol != "loo":
            raise DataError(f"{self.source}: protocol {self.protocol!r} has no validation item to append to every "
                            "row (include_valid is leave-one-out only; use history(split))")
        if not include_valid and L == self.max_len:
            return self.train_seq, self.train_ts, self.train_len
        flat, ptr, times = self.train_items, self.train_ptr, self.train_times
        if include_valid:
            if times is not None:
                times, _ = append_per_row(times, ptr, self.valid_time)
            flat, ptr = append_per_row(flat, ptr, self.valid_item)
        items = pad_right_aligned(flat, ptr, L, self.pad_id)
        ts = None if times is None else pad_right_aligned(times, ptr, L, np.nan)
        return items, ts, np.minimum(np.diff(ptr), L)

    def training_rows(self, max_len: int) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """The rows pretraining reads: ``(items (n_rows, max_len) int64, times (n_rows, max_len) float64 | None)``,
        right-aligned. loo: every user's :meth:`padded` row (its last ``max_len`` items). user-split: the train
        users' sequences cut by :func:`~refit_gym.data.seq_protocols.prefix_windows` (every transition once)."""
        if self.protocol == "loo":
            items, times, _ = self.padded(max_len)
            return items[self.train_users], None if times is None else times[self.train_users]
        idx, ptr = prefix_windows(self.train_ptr, self.train_users, max_len)
        times = None if self.train_times is None else pad_right_aligned(self.train_times[idx], ptr, max_len, np.nan)
        return pad_right_aligned(self.train_items[idx], ptr, max_len, self.pad_id), times

    def history(self, split: str, max_len: Optional[int] = None) -> np.ndarray:
        """``(n_users, L)`` int64 right-aligned histories that predict ``split``'s targets (``pad_id`` on the left):
        loo: the train sequence for 'valid', train sequence + validation item for 'test'; user-split: every
        row as stored (a valid / test user's row is its history; other users' rows mean nothing for ``split``)."""
        if split not in ("valid", "test"):
            raise ValueError(f"split={split!r}: expected 'valid' or 'test'")
        return self.padded(max_len, include_valid=self.protocol == "loo" and split == "test")[0]

    def history_items(self, split: str) -> sp.csr_matrix:
        """Binary CSR ``(n_users, n_items)`` float32: the items of each user's history for ``split`` (the
        set of :meth:`history`'s items, before truncation to ``max_len``). loo: ``interactions().known_items``."""
        if split not in ("valid", "test"):
            raise ValueError(f"split={split!r}: expected 'valid' or 'test'")
        if self.protocol == "loo":
            return self.interactions().known_items(split)
        if self._history_items is None:
            rows = np.repeat(np.arange(self.n_users, dtype=np.int64), np.diff(self.train_ptr))
            m = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, self.train_items)),
                              shape=(self.n_users, self.n_items))
            m.data[:], self._history_items = 1.0, m  # the constructor summed repeated pairs, sorted the indices
        return self._history_items

    def held_out(self, split: str) -> np.ndarray:
        """The ``(n_users,)`` ground-truth item of ``split`` ('valid' or 'test'); -1 for users outside
        ``split_users[split]``."""
        if split == "valid":
            return self.valid_item
        if split == "test":
            return self.test_item
        raise ValueError(f"no leave-one-out target for split {split!r}; use 'valid' or 'test'")

    def interactions(self) -> InteractionData:
        """The dataset as binary train / valid / test CSR matrices (cached).

        The full train sequences of :attr:`train_users` are used (no ``max_len`` truncation; under user-split the
        valid / test users' rows are histories, not training data: their ``train`` rows are empty, and their
        ``valid`` / ``test`` rows hold their target); repeated (user, item) pairs,
        common in POI data, are merged and counted in ``dedup_counts['train']``; ``train_time`` holds
        the first visit's timestamp.
        """
        if self._interactions is None:
            users = np.repeat(np.arange(self.n_users, dtype=np.int64), np.diff(self.train_ptr))
            trains = np.zeros(self.n_users, dtype=bool)
            trains[self.train_users] = True
            rows = trains[users]
            v, t = self.split_users["valid"], self.split_users["test"]
            self._interactions = InteractionData.from_pairs(
                np.stack([users[rows], self.train_items[rows]], 1), np.stack([v, self.valid_item[v]], 1),
                np.stack([t, self.test_item[t]], 1), n_users=self.n_users, n_items=self.n_items,
                train_time=None if self.train_times is None else self.train_times[rows], name=self.name,
                source=self.source, item_map=self.item_map,
                user_map=self.user_map, overlap="count",  # a next item may revisit the history: counted, expected
            )
        return self._interactions

    def summary(self) -> str:
        """One line: sizes, lengths and, under user-split, the users per split and mean history lengths."""
        lengths = np.diff(self.train_ptr)
        if self.protocol == "loo":
            s = (f"{self.name}: {self.n_users} users, {self.n_items} items, {len(self.train_items)} train interactions "
                 f"(+ {self.n_users} valid + {self.n_users} test), train length median {int(np.median(lengths))}, "
                 f"max {int(lengths.max())}; padded to {self.max_len}")
        else:
            tr, v, t = (self.split_users[k] for k in ("train", "valid", "test"))
            hist = lambda u: float(np.minimum(lengths[u], self.max_len).mean())  # noqa: E731
            s = (f"{self.name} ({self.protocol}, seed {self.split_seed}, ratios {self.ratios}): {self.n_users} users = "
                 f"{len(tr)} train / {len(v)} valid / {len(t)} test, {self.n_items} items, {int(lengths[tr].sum())} "
                 f"train interactions; mean history length (last {self.max_len}) valid {hist(v):.2f}, test {hist(t):.2f}")
        return s + ("; timestamped" if self.has_time else "")

    def __repr__(self) -> str:
        return f"SequentialData({self.summary()})"


# ---------------------------------------------------------------------------------------------- loading
def _int_array(values: list, where: str) -> np.ndarray:
    """int64 array of a list that must hold Python ints only (bools, floats and strings refused)."""
    arr = np.fromiter(values, dtype=object, count=len(values))
    bad = np.flatnonzero(np.frompyfunc(type, 1, 1)(arr) != int) if len(arr) else np.empty(0, dtype=np.int64)
    if len(bad):
        v = values[int(bad[0])]
        raise DataError(f"{where}: entry {int(bad[0])} is {v!r} ({type(v).__name__}), expected an integer item id")
    return arr.astype(np.int64)


def parse_timestamps(strings: np.ndarray, where: str) -> np.ndarray:
    """Vectorised parse of ``'YYYY-MM-DD HH:MM:SS'`` strings -> float64 seconds since the Unix epoch."""
    s = np.asarray(strings)
    if s.dtype.kind != "U":
        bad = next((k for k, v in enumerate(strings) if not isinstance(v, str)), 0)
        raise DataError(f"{where}: entry {bad} has timestamp {strings[bad]!r}, expected a string {TIME_FORMAT!r}")
    ok = ((np.char.str_len(s) == 19) & (np.char.find(s, "-") == 4) & (np.char.find(s, " ") == 10)
          & (np.char.find(s, ":") == 13))
    if not ok.all():
        k = int(np.argmin(ok))
        raise DataError(f"{where}: entry {k} has timestamp {s[k]!r}, expected format {TIME_FORMAT!r}")
    try:
        dt = s.astype("datetime64[s]")
    except ValueError:
        for k, v in enumerate(s):  # error path only: find the offending value
            try:
                np.datetime64(v, "s")
            except ValueError:
                raise DataError(f"{where}: entry {k} has timestamp {v!r}, not a valid {TIME_FORMAT!r}") from None
        raise
    return dt.astype(np.int64).astype(np.float64)


def _split_entries(entries: list, timed: bool, where: str):
    """Flat entry list -> (item ids as in the file, timestamps or None)."""
    if not timed:
        return _int_array(entries, where), None
    pairs = np.empty((len(entries), 2), dtype=object)
    try:
        pairs[:] = entries
    except (ValueError, TypeError):
        bad = next(k for k, e in enumerate(entries) if not (isinstance(e, (tuple, list)) and len(e) == 2))
        raise DataError(f"{where}: entry {bad} is {entries[bad]!r}, expected an (item, '{TIME_FORMAT}') pair") from None
    items = _int_array(list(pairs[:, 0]), where)
    times = parse_timestamps(np.array(list(pairs[:, 1])) if len(pairs) else np.array([], dtype="U19"), where)
    return items, times


def load_sequential(folder_or_pkl, max_len: Optional[int] = None, name: Optional[str] = None,
                    protocol: str = "loo", split_seed: int = 0, ratios: Sequence[float] = (0.8, 0.1, 0.1)
                    ) -> SequentialData:
    """Load a leave-one-out ``dataset.pkl`` (a folder holding one, or the file itself) under ``protocol``.

    Args:
        folder_or_pkl: path of the folder or of the pickle.
        max_len: width of the padded views (most recent items kept; default
            :data:`~refit_gym.data.seq_protocols.DEFAULT_MAX_LEN` of the protocol: 50 loo, 10 user-split).
        name: dataset name (default: the folder name).
        protocol, split_seed, ratios: ``"loo"`` (the file's split) or ``"user-split"`` (a seeded random
            (train, valid, test) split of the users, see :mod:`refit_gym.data.seq_protocols`).
    Raises:
        DataError: unreadable or unsafe pickle, any of the checks in this module's docstring, an unknown
            protocol or bad ratios.
    """
    check_protocol(protocol, str(folder_or_pkl))
    if max_len is None:
        max_len = DEFAULT_MAX_LEN[protocol]
    path = Path(folder_or_pkl)
    if path.is_dir():
        path = path / "dataset.pkl"
    if not path.is_file():
        raise DataError(f"{path}: no such dataset file")
    src = str(path)
    name = name or path.parent.name
    d = restricted_load(path)
    if not isinstance(d, dict):
        raise DataError(f"{src}: top level is a {type(d).__name__}, expected a dict with keys train, val, test, umap, smap")
    missing = [k for k in ("train", "val", "test", "umap", "smap") if k not in d]
    if missing:
        raise DataError(f"{src}: missing key(s) {missing}; found {sorted(map(str, d))}")
    for k in ("train", "val", "test", "umap", "smap"):
        if not isinstance(d[k], dict):
            raise DataError(f"{src}: field '{k}' is a {type(d[k]).__name__}, expected a dict")

    # users: train keys must be 0..n-1, val/test the same keys
    train = d["train"]
    n_users = len(train)
    if n_users == 0:
        raise DataError(f"{src}: field 'train' has no users")
    keys = _int_array(list(train.keys()), f"{src}: field 'train' (user keys)")
    order = np.argsort(keys, kind="stable")
    if not np.array_equal(keys[order], np.arange(n_users)):
        bad = keys[order][np.argmax(keys[order] != np.arange(n_users))]
        raise DataError(f"{src}: field 'train' has user key {int(bad)}; keys must be exactly 0..{n_users - 1}")
    seqs = [train[u] for u in range(n_users)]
    for k in ("val", "test"):
        if d[k].keys() != train.keys():
            extra = next((u for u in d[k] if u not in train), None)
            absent = next((u for u in range(n_users) if u not in d[k]), None)
            raise DataError(f"{src}: field '{k}' users differ from 'train' (e.g. user {absent if absent is not None else extra!r})")

    # smap: 1-based item ids; n_items = largest id
    smap_vals = _int_array(list(d["smap"].values()), f"{src}: field 'smap' (values)")
    if len(smap_vals) == 0:
        raise DataError(f"{src}: field 'smap' is empty")
    if smap_vals.min() < 1:
        raise DataError(f"{src}: field 'smap' maps to item {int(smap_vals.min())}; items are 1-based")
    if len(np.unique(smap_vals)) != len(smap_vals):
        raise DataError(f"{src}: field 'smap' maps two raw items to the same id")
    n_items = int(smap_vals.max())
    known = np.zeros(n_items + 1, dtype=bool)
    known[smap_vals] = True

    # train sequences
    lengths = np.fromiter((len(s) if isinstance(s, (list, tuple)) else -1 for s in seqs), dtype=np.int64, count=n_users)
    if (lengths < 0).any():
        u = int(np.argmax(lengths < 0))
        raise DataError(f"{src}: field 'train' of user {u} is a {type(seqs[u]).__name__}, expected a list")
    if (lengths == 0).any():
        raise DataError(f"{src}: field 'train' of user {int(np.argmin(lengths))} is an empty sequence")
    timed = isinstance(seqs[0][0], (tuple, list))
    flat = list(chain.from_iterable(seqs))
    train_items, train_times = _split_entries(flat, timed, f"{src}: field 'train'")

    def check_items(ids: np.ndarray, fld: str) -> np.ndarray:
        bad = np.flatnonzero((ids < 1) | (ids > n_items))
        if len(bad):
            raise DataError(f"{src}: field '{fld}' holds item id {int(ids[bad[0]])}; ids are 1-based up to {n_items} (smap)")
        bad = np.flatnonzero(~known[ids])
        if len(bad):
            raise DataError(f"{src}: field '{fld}' holds item id {int(ids[bad[0]])}, which is not a value of 'smap'")
        return ids - 1

    train_items = check_items(train_items, "train")
    held = {}
    for k in ("val", "test"):
        lists = [d[k][u] for u in range(n_users)]
        lens = np.fromiter((len(x) if isinstance(x, (list, tuple)) else -1 for x in lists), dtype=np.int64, count=n_users)
        if (lens != 1).any():
            u = int(np.argmax(lens != 1))
            raise DataError(f"{src}: field '{k}' of user {u} is {lists[u]!r}; leave-one-out needs a list of exactly one item")
        items, times = _split_entries([x[0] for x in lists], timed, f"{src}: field '{k}'")
        held[k] = (check_items(items, k), times)

    umap = d["umap"]
    item_map = {raw: int(v) - 1 for raw, v in d["smap"].items()}
    data = SequentialData(
        name=name, n_users=n_users, n_items=n_items, train_items=train_items,
        train_ptr=np.concatenate([[0], np.cumsum(lengths)]), valid_item=held["val"][0], test_item=held["test"][0],
        max_len=max_len, train_times=train_times, valid_time=held["val"][1], test_time=held["test"][1],
        user_map=dict(umap), item_map=item_map, source=src,
    )
    return apply_protocol(data, protocol, split_seed, ratios, max_len)
