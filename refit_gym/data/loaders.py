"""Loaders from the on-disk formats the diffusion-recommender community publishes to :class:`InteractionData`.

Formats:

* **DiffRec** (:func:`load_diffrec`): a folder of ``train_list.npy``, ``valid_list.npy`` and
  ``test_list.npy``, each an ``(n, 2)`` integer array of 0-based (user, item) pairs, plus an
  optional ``social_list.npy`` of (user, user) edges (the social-recommendation variants).
* **RecBole atomic files** (:func:`load_recbole`): a tab-separated ``<name>.inter`` file whose
  header types every field (``user_id:token  item_id:token  rating:float  timestamp:float``).
  The loader maps raw tokens to contiguous ids and splits each user's history by time.
* **Raw MovieLens-1M** (:func:`load_movielens_raw`): the official GroupLens ``ratings.dat``
  (``UserID::MovieID::Rating::Timestamp``) or ``ml-1m.zip``, prepared with DiffRec's protocol.
* **Synthetic** data (:func:`refit_gym.data.synthetic.make_synthetic`).

:func:`load_dataset` picks the loader from a spec string or path. Every loader raises
:class:`~refit_gym.data.dataset.DataError` naming the file, the field, the line (for text
formats) and the offending value, and records every record it filters out in
``InteractionData.drop_counts`` and every duplicate it removes in ``InteractionData.dedup_counts``.

Text files are parsed with whole-file string operations and numpy conversions; Python-level
loops only run on the error path, to find the first offending line.
"""
from __future__ import annotations

import os
import tempfile
import urllib.request
import zipfile
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple, Union

import numpy as np

from refit_gym.data.dataset import DataError, InteractionData, validate_pairs
from refit_gym.data.synthetic import SYNTHETIC_SPECS, load_synthetic

PathLike = Union[str, "os.PathLike[str]"]

DIFFREC_FILES = {"train": "train_list.npy", "valid": "valid_list.npy", "test": "test_list.npy"}
DIFFREC_SOCIAL_FILE = "social_list.npy"
MOVIELENS_1M_URL = "https://files.grouplens.org/datasets/movielens/ml-1m.zip"

ACCEPTED_FORMATS = (
    "'synthetic', 'synthetic-social', 'synthetic-seq' or 'synthetic-poi' (optionally ':<seed>'); "
    "a DiffRec folder holding train_list.npy / valid_list.npy / test_list.npy (+ optional social_list.npy); "
    "a RecBole .inter file or a folder holding exactly one; "
    "a MovieLens-1M ratings.dat or ml-1m.zip (or a folder holding one); "
    "a sequential folder holding dataset.pkl"
)


# ---------------------------------------------------------------------------------------------
# DiffRec .npy pairs
# ---------------------------------------------------------------------------------------------
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
        The dataset; ``train_time`` is None (the format carries no timestamps). Duplicate pairs
        within a split are removed and counted in ``dedup_counts``.
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
    )


# ---------------------------------------------------------------------------------------------
# delimited text parsing (shared by RecBole and MovieLens)
# ---------------------------------------------------------------------------------------------
def _read_text(path: Path) -> str:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc})") from None


def _split_table(text: str, sep: str, n_fields: int, source: str, first_line: int = 1
                 ) -> Tuple[np.ndarray, np.ndarray]:
    """Split delimited text into a ``(n_rows, n_fields)`` array of strings.

    Blank lines are skipped. Returns the table and the 1-based file line number of each row
    (``first_line`` is the number of the first line of ``text``). A row with the wrong number
    of fields raises :class:`DataError` quoting its line.
    """
    lines = text.replace("\r\n", "\n").split("\n")
    line_no = np.arange(first_line, first_line + len(lines))
    lengths = np.fromiter(map(len, lines), dtype=np.int64, count=len(lines))
    keep = lengths > 0
    if not keep.all():
        lines = [ln for ln, k in zip(lines, keep) if k]
        line_no = line_no[keep]
    if not lines:
        return np.empty((0, n_fields), dtype=str), line_no
    tokens = "\n".join(lines).replace("\n", sep).split(sep)
    if len(tokens) != len(lines) * n_fields:
        counts = np.char.count(np.asarray(lines), sep) + 1
        r = int(np.flatnonzero(counts != n_fields)[0])
        raise DataError(
            f"{source}: line {line_no[r]}: expected {n_fields} fields separated by {sep!r}, "
            f"got {counts[r]} in {lines[r]!r}"
        )
    return np.asarray(tokens).reshape(len(lines), n_fields), line_no


def _parse_numbers(col: np.ndarray, dtype, *, source: str, field_name: str, line_no: np.ndarray) -> np.ndarray:
    """Convert a column of strings to ``dtype``; the first unparsable or non-finite value raises DataError."""
    try:
        vals = col.astype(dtype)
    except (ValueError, OverflowError):
        kind = "an integer" if np.dtype(dtype).kind in "iu" else "a number"
        convert = int if np.dtype(dtype).kind in "iu" else float
        for r, v in enumerate(col):  # error path only: find the first offending row
            try:
                x = convert(v)
            except (ValueError, OverflowError):
                raise DataError(
                    f"{source}: field '{field_name}' line {line_no[r]}: cannot parse {str(v)!r} as {kind}"
                ) from None
            if np.dtype(dtype).kind in "iu" and not np.iinfo(dtype).min <= x <= np.iinfo(dtype).max:
                raise DataError(f"{source}: field '{field_name}' line {line_no[r]}: value {str(v)!r} is beyond "
                                f"{np.dtype(dtype).name} [{np.iinfo(dtype).min}, {np.iinfo(dtype).max}]")
        raise  # pragma: no cover - numpy refused a value Python accepts
    if vals.dtype.kind == "f":
        bad = ~np.isfinite(vals)
        if bad.any():
            r = int(np.argmax(bad))
            raise DataError(f"{source}: field '{field_name}' line {line_no[r]}: value {str(col[r])!r} is not finite")
    return vals


def _contiguous_ids(raw: np.ndarray, order: str) -> Tuple[np.ndarray, Dict]:
    """Map raw ids to ``0..n-1``: ``order='first'`` by first appearance, ``'sorted'`` by sorted raw id.

    Returns the ``(n,)`` int64 index array and the dict raw id -> index (raw ids as Python scalars).
    """
    uniq, first, inverse = np.unique(raw, return_index=True, return_inverse=True)
    if order == "first":
        rank = np.empty(len(uniq), dtype=np.int64)
        rank[np.argsort(first, kind="stable")] = np.arange(len(uniq))
        idx = rank[inverse.ravel()]
        keys = uniq[np.argsort(rank)]
    elif order == "sorted":
        idx = inverse.ravel().astype(np.int64)
        keys = uniq
    else:
        raise ValueError(f"unknown id order {order!r}; expected 'first' or 'sorted'")
    return idx, dict(zip(keys.tolist(), range(len(keys))))


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


def _dedup_keep_earliest(users: np.ndarray, items: np.ndarray, times: np.ndarray) -> Tuple[np.ndarray, int]:
    """Index of the earliest (then first in file) record of every (user, item) pair, in file order, and the n dropped."""
    order = np.lexsort((np.arange(len(users)), times, items, users))
    su, si = users[order], items[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = (su[1:] != su[:-1]) | (si[1:] != si[:-1])
    kept = np.sort(order[first])
    return kept, len(users) - len(kept)


def _build_from_records(users, items, times, codes, *, n_users, n_items, name, source, user_map, item_map,
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


# ---------------------------------------------------------------------------------------------
# RecBole atomic files
# ---------------------------------------------------------------------------------------------
RECBOLE_TYPES = ("token", "token_seq", "float", "float_seq")


def _find_one(folder: Path, pattern: str, what: str) -> Path:
    found = sorted(folder.glob(pattern))
    if len(found) != 1:
        names = ", ".join(p.name for p in found) or "none"
        raise DataError(f"{folder}: expected exactly one {what} ({pattern}), found {names}")
    return found[0]


def load_recbole(folder_or_inter_file: PathLike, rating_threshold: Optional[float] = 4.0,
                 ratios: Sequence[float] = (0.8, 0.1, 0.1), name: Optional[str] = None) -> InteractionData:
    """Load a RecBole atomic ``.inter`` file as implicit feedback with a per-user temporal split.

    The file is tab-separated; its first line types each field as ``name:type`` (types
    ``token``, ``token_seq``, ``float``, ``float_seq``), in any order, e.g.
    ``user_id:token  item_id:token  rating:float  timestamp:float``. ``user_id`` and ``item_id``
    are required; ``rating`` and ``timestamp`` are used when present; other fields are ignored.

    Processing, in order:

    1. Records with ``rating < rating_threshold`` are dropped (counted in
       ``drop_counts['rating_below_threshold']``); skipped when there is no rating field or the
       threshold is None.
    2. Raw user / item tokens are mapped to contiguous ids in order of first appearance among the
       kept records (``user_map`` / ``item_map``: raw token string -> index).
    3. Repeated (user, item) records keep their earliest one (counted in ``dedup_counts['raw']``),
       so a pair never lands in two splits.
    4. Each user's records are split by :func:`per_user_temporal_split` with ``ratios``: ordered by
       timestamp (file order without a timestamp field, or for ties), the last
       ``floor(n * ratios[2])`` go to test, the ``floor(n * ratios[1])`` before them to valid and the
       rest (always >= 1) to train. Users with few records therefore have empty valid / test rows;
       nothing is dropped. On tiny files (or with a zero ratio) a whole valid / test split may be
       empty; that is allowed.

    Args:
        folder_or_inter_file: the ``.inter`` file, or a folder holding exactly one.
        rating_threshold: minimum rating kept as a positive (None keeps every record).
        ratios: (train, valid, test) fractions summing to 1.
        name: dataset name; defaults to the file's stem.

    Returns:
        The dataset with ``train_time`` holding training timestamps (seconds; file positions when
        the file has no timestamp field).

    Raises:
        DataError: a bad header, a missing required field, a row with the wrong number of fields,
            an unparsable / non-finite rating or timestamp (naming file, field, line and value),
            or no record left after filtering.
    """
    path = Path(folder_or_inter_file)
    if path.is_dir():
        path = _find_one(path, "*.inter", "RecBole interaction file")
    text = _read_text(path)
    src = str(path)
    header, _, body = text.partition("\n")
    header = header.rstrip("\r")
    columns = header.split("\t")
    fields: Dict[str, int] = {}
    for j, col in enumerate(columns):
        fname, colon, ftype = col.partition(":")
        if not colon or not fname or ftype not in RECBOLE_TYPES:
            raise DataError(
                f"{src}: line 1: bad header field {col!r}: expected 'name:type' with type in {RECBOLE_TYPES} "
                f"(a RecBole header looks like 'user_id:token<TAB>item_id:token<TAB>rating:float<TAB>timestamp:float')"
            )
        if fname in fields:
            raise DataError(f"{src}: line 1: field '{fname}' appears twice in the header {header!r}")
        fields[fname] = j
    for required in ("user_id", "item_id"):
        if required not in fields:
            raise DataError(f"{src}: line 1: required field '{required}' is missing from the header {header!r}")

    table, line_no = _split_table(body, "\t", len(columns), src, first_line=2)
    if len(table) == 0:
        raise DataError(f"{src}: field 'user_id': the file has no interaction records")
    raw_users = table[:, fields["user_id"]]
    raw_items = table[:, fields["item_id"]]
    times = None
    if "timestamp" in fields:
        times = _parse_numbers(table[:, fields["timestamp"]], np.float64, source=src, field_name="timestamp",
                               line_no=line_no)
    drop_counts = {}
    if "rating" in fields and rating_threshold is not None:
        ratings = _parse_numbers(table[:, fields["rating"]], np.float64, source=src, field_name="rating",
                                 line_no=line_no)
        keep = ratings >= rating_threshold
        drop_counts["rating_below_threshold"] = int((~keep).sum())
        raw_users, raw_items, line_no = raw_users[keep], raw_items[keep], line_no[keep]
        times = None if times is None else times[keep]
        if not keep.any():
            raise DataError(f"{src}: field 'rating': no record has rating >= {rating_threshold}")
    if times is None:
        times = np.arange(len(raw_users), dtype=np.float64)

    users, user_map = _contiguous_ids(raw_users, "first")
    items, item_map = _contiguous_ids(raw_items, "first")
    kept, n_dup = _dedup_keep_earliest(users, items, times)
    users, items, times = users[kept], items[kept], times[kept]
    codes = per_user_temporal_split(users, times, ratios)
    return _build_from_records(
        users, items, times, codes, n_users=len(user_map), n_items=len(item_map), name=name or path.stem,
        source=src, user_map=user_map, item_map=item_map, drop_counts=drop_counts, n_dup=n_dup,
    )


# ---------------------------------------------------------------------------------------------
# raw MovieLens-1M
# ---------------------------------------------------------------------------------------------
def _read_movielens_text(path: Path) -> Tuple[str, str]:
    """Text of ``ratings.dat`` (plain or inside a zip) and a source label for messages."""
    if path.suffix.lower() == ".zip":
        if not path.is_file():
            raise DataError(f"{path}: file not found")
        try:
            with zipfile.ZipFile(path) as zf:
                members = [m for m in zf.namelist() if m.rsplit("/", 1)[-1] == "ratings.dat"]
                if not members:
                    raise DataError(f"{path}: the archive holds no ratings.dat (expected ml-1m/ratings.dat)")
                member = sorted(members, key=len)[0]
                raw = zf.read(member)
        except zipfile.BadZipFile as exc:
            raise DataError(f"{path}: not a valid zip archive ({exc})") from None
        src = f"{path}!{member}"
    else:
        if not path.is_file():
            raise DataError(f"{path}: file not found")
        raw = path.read_bytes()
        src = str(path)
    # GroupLens ships ratings.dat as ASCII; latin-1 decodes any byte, so parsing errors name the value
    return raw.decode("latin-1"), src


def _k_core(users: np.ndarray, items: np.ndarray, min_user: int, min_item: int) -> np.ndarray:
    """Boolean mask of records surviving iterative removal of users / items below the minimum counts."""
    keep = np.ones(len(users), dtype=bool)
    if min_user <= 1 and min_item <= 1:
        return keep
    while True:  # each pass is vectorised; the number of passes is small in practice
        uc = np.bincount(users[keep], minlength=users.max(initial=-1) + 1)
        ic = np.bincount(items[keep], minlength=items.max(initial=-1) + 1)
        new = keep & (uc[users] >= min_user) & (ic[items] >= min_item)
        if new.sum() == keep.sum():
            return new
        keep = new


def load_movielens_raw(path: PathLike, name: str = "ml-1m", *, split: str = "global_time",
                       ratios: Optional[Sequence[float]] = None, rating_threshold: float = 4.0,
                       min_user_interactions: int = 0, min_item_interactions: int = 0) -> InteractionData:
    """Prepare the official MovieLens-1M ratings with DiffRec's protocol.

    Input: ``ratings.dat`` (lines ``UserID::MovieID::Rating::Timestamp``, integer fields,
    timestamps in seconds) or the GroupLens ``ml-1m.zip`` holding ``ml-1m/ratings.dat``.

    What is implemented (DiffRec, Wang et al. 2023, "Diffusion Recommender Model"):

    1. Ratings ``>= rating_threshold`` (default 4) become positive interactions; the others are
       dropped and counted in ``drop_counts['rating_below_threshold']``.
    2. Optional iterative k-core filtering with ``min_user_interactions`` / ``min_item_interactions``
       (counted in ``drop_counts['k_core']``). The defaults (0) filter nothing. DiffRec's shared
       ml-1m arrays (5,949 users, 2,810 items) were filtered further by an unpublished rule, so
       this function does not reproduce their exact counts.
    3. Ids: users and items are re-indexed ``0..n-1`` in ascending order of their raw MovieLens
       id (``user_map`` / ``item_map``: raw int id -> index), over the kept interactions.
    4. Split, ``split='global_time'`` (default, DiffRec's "temporal split"): all interactions are
       ordered by timestamp (ties by file order) and cut at the 70% / 80% positions into
       train / valid / test (:func:`global_temporal_split`, default ``ratios=(0.7, 0.1, 0.2)``).
       Users active only late have no training items; valid / test may hold items never seen
       in training. ``split='user_time'``: each user's own timeline is cut by
       :func:`per_user_temporal_split` (default ``ratios=(0.8, 0.1, 0.1)``), so every user has
       at least one training item.

    MovieLens-1M has no repeated (user, movie) ratings; should a file have some, the earliest is
    kept and the rest counted in ``dedup_counts['raw']``.

    Args:
        path: ``ratings.dat`` or ``ml-1m.zip``.
        name: dataset name.
        split: ``'global_time'`` or ``'user_time'``.
        ratios: (train, valid, test) fractions; the default depends on ``split`` (see above).
        rating_threshold: minimum rating kept.
        min_user_interactions, min_item_interactions: k-core thresholds (0 = no filtering).
    """
    if split not in ("global_time", "user_time"):
        raise ValueError(f"split={split!r}: expected 'global_time' (DiffRec) or 'user_time'")
    text, src = _read_movielens_text(Path(path))
    table, line_no = _split_table(text, "::", 4, src)
    if len(table) == 0:
        raise DataError(f"{src}: field 'UserID': the file has no ratings")
    cols = {}
    for j, fname in enumerate(("UserID", "MovieID", "Rating", "Timestamp")):
        cols[fname] = _parse_numbers(table[:, j], np.int64, source=src, field_name=fname, line_no=line_no)
    for fname in ("UserID", "MovieID"):
        neg = cols[fname] < 0
        if neg.any():
            r = int(np.argmax(neg))
            raise DataError(f"{src}: field '{fname}' line {line_no[r]}: negative id {cols[fname][r]}")

    keep = cols["Rating"] >= rating_threshold
    drop_counts = {"rating_below_threshold": int((~keep).sum())}
    raw_u, raw_i, times = cols["UserID"][keep], cols["MovieID"][keep], cols["Timestamp"][keep].astype(np.float64)
    core = _k_core(raw_u, raw_i, min_user_interactions, min_item_interactions)
    drop_counts["k_core"] = int((~core).sum())
    raw_u, raw_i, times = raw_u[core], raw_i[core], times[core]
    if len(raw_u) == 0:
        raise DataError(f"{src}: field 'Rating': no rating survives the threshold {rating_threshold} "
                        f"and k-core filtering")

    users, user_map = _contiguous_ids(raw_u, "sorted")
    items, item_map = _contiguous_ids(raw_i, "sorted")
    kept, n_dup = _dedup_keep_earliest(users, items, times)
    users, items, times = users[kept], items[kept], times[kept]
    if split == "global_time":
        codes = global_temporal_split(times, ratios or (0.7, 0.1, 0.2))
    else:
        codes = per_user_temporal_split(users, times, ratios or (0.8, 0.1, 0.1))
    return _build_from_records(
        users, items, times, codes, n_users=len(user_map), n_items=len(item_map), name=name, source=src,
        user_map=user_map, item_map=item_map, drop_counts=drop_counts, n_dup=n_dup,
    )


def download_movielens(dest: PathLike, url: str = MOVIELENS_1M_URL, overwrite: bool = False) -> Path:
    """Download the official MovieLens-1M zip from GroupLens into folder ``dest``; return its path.

    Needs internet access (never called by the tests). The file is written to a temporary name
    and renamed when complete, so an interrupted download never leaves a truncated
    ``ml-1m.zip``. An existing file is kept unless ``overwrite``. The MovieLens licence forbids
    redistributing the data: keep it out of version control.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / url.rsplit("/", 1)[-1]
    if target.exists() and not overwrite:
        return target
    fd, tmp = tempfile.mkstemp(dir=dest, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as resp:  # noqa: S310 (fixed https URL)
            while True:
                chunk = resp.read(1 << 20)
                if not chunk:
                    break
                out.write(chunk)
        zipfile.ZipFile(tmp).close()  # refuse an HTML error page or a truncated archive
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return target


# ---------------------------------------------------------------------------------------------
# dispatch
# ---------------------------------------------------------------------------------------------
def _load_sequential(folder: Path, **kwargs):
    try:
        from refit_gym.data.sequential import load_sequential
    except ModuleNotFoundError as exc:
        if exc.name != "refit_gym.data.sequential":
            raise
        raise DataError(f"{folder}: sequential dataset (dataset.pkl): use refit_gym.data.sequential, "
                        "which is not available in this installation") from None
    return load_sequential(folder, **kwargs)


def load_dataset(spec: Union[str, "os.PathLike[str]"], **kwargs) -> InteractionData:
    """Load a dataset from a spec string or path, picking the loader from what the path holds.

    Accepted specs:

    * ``"synthetic"``, ``"synthetic-social"``, ``"synthetic-seq"``, ``"synthetic-poi"``, each optionally
      ``:<seed>``: the synthetic generators (:func:`load_synthetic`).
    * a folder with ``train_list.npy``: :func:`load_diffrec`.
    * a folder with ``dataset.pkl``: ``refit_gym.data.sequential.load_sequential``.
    * a ``.inter`` file, or a folder with exactly one: :func:`load_recbole`.
    * ``ratings.dat`` or a ``.zip`` (MovieLens-1M), or a folder holding ``ratings.dat`` /
      ``ml-1m.zip``: :func:`load_movielens_raw`.

    ``kwargs`` go to the chosen loader.

    Raises:
        DataError: the path does not exist or holds none of the formats above (the message lists them).
    """
    if isinstance(spec, str) and spec.partition(":")[0] in SYNTHETIC_SPECS:
        return load_synthetic(spec, **kwargs)

    path = Path(spec)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder. Accepted dataset specs: {ACCEPTED_FORMATS}")
    if path.is_dir():
        if (path / DIFFREC_FILES["train"]).is_file():
            return load_diffrec(path, **kwargs)
        if (path / "dataset.pkl").is_file():
            return _load_sequential(path, **kwargs)
        if any(path.glob("*.inter")):
            return load_recbole(path, **kwargs)
        for raw in ("ratings.dat", "ml-1m.zip", "ml-1m/ratings.dat"):
            if (path / raw).is_file():
                return load_movielens_raw(path / raw, **kwargs)
    else:
        if path.suffix == ".inter":
            return load_recbole(path, **kwargs)
        if path.name == "ratings.dat" or path.suffix.lower() == ".zip":
            return load_movielens_raw(path, **kwargs)
        if path.name == "dataset.pkl":
            return _load_sequential(path.parent, **kwargs)
    raise DataError(f"{path}: unrecognised dataset format. Accepted dataset specs: {ACCEPTED_FORMATS}")
