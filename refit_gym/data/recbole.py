"""RecBole atomic files: a tab-separated ``<name>.inter`` file whose header types every field
(``user_id:token  item_id:token  rating:float  timestamp:float``); raw tokens map to contiguous ids and each
user's history is split by time."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Optional, Sequence, Union

import numpy as np

from refit_gym.data.dataset import DataError, InteractionData
from refit_gym.data.splits import build_from_records, dedup_keep_earliest, per_user_temporal_split
from refit_gym.data.text_tables import contiguous_ids, parse_numbers, read_text, split_table

PathLike = Union[str, "os.PathLike[str]"]

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
    text = read_text(path)
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

    table, line_no = split_table(body, "\t", len(columns), src, first_line=2)
    if len(table) == 0:
        raise DataError(f"{src}: field 'user_id': the file has no interaction records")
    raw_users = table[:, fields["user_id"]]
    raw_items = table[:, fields["item_id"]]
    times = None
    if "timestamp" in fields:
        times = parse_numbers(table[:, fields["timestamp"]], np.float64, source=src, field_name="timestamp",
                               line_no=line_no)
    drop_counts = {}
    if "rating" in fields and rating_threshold is not None:
        ratings = parse_numbers(table[:, fields["rating"]], np.float64, source=src, field_name="rating",
                                 line_no=line_no)
        keep = ratings >= rating_threshold
        drop_counts["rating_below_threshold"] = int((~keep).sum())
        raw_users, raw_items, line_no = raw_users[keep], raw_items[keep], line_no[keep]
        times = None if times is None else times[keep]
        if not keep.any():
            raise DataError(f"{src}: field 'rating': no record has rating >= {rating_threshold}")
    if times is None:
        times = np.arange(len(raw_users), dtype=np.float64)

    users, user_map = contiguous_ids(raw_users, "first")
    items, item_map = contiguous_ids(raw_items, "first")
    kept, n_dup = dedup_keep_earliest(users, items, times)
    users, items, times = users[kept], items[kept], times[kept]
    codes = per_user_temporal_split(users, times, ratios)
    return build_from_records(
        users, items, times, codes, n_users=len(user_map), n_items=len(item_map), name=name or path.stem,
        source=src, user_map=user_map, item_map=item_map, drop_counts=drop_counts, n_dup=n_dup,
    )
