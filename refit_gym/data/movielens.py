"""Raw MovieLens-1M: the official GroupLens ``ratings.dat`` (``UserID::MovieID::Rating::Timestamp``) or
``ml-1m.zip``, prepared with DiffRec's protocol; and its download."""
from __future__ import annotations

import os
import tempfile
import urllib.request
import zipfile
from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import numpy as np

from refit_gym.data.dataset import DataError, InteractionData
from refit_gym.data.splits import (build_from_records, dedup_keep_earliest, global_temporal_split,
                                   per_user_temporal_split)
from refit_gym.data.text_tables import contiguous_ids, parse_numbers, split_table

PathLike = Union[str, "os.PathLike[str]"]

MOVIELENS_1M_URL = "https://files.grouplens.org/datasets/movielens/ml-1m.zip"


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
    table, line_no = split_table(text, "::", 4, src)
    if len(table) == 0:
        raise DataError(f"{src}: field 'UserID': the file has no ratings")
    cols = {}
    for j, fname in enumerate(("UserID", "MovieID", "Rating", "Timestamp")):
        cols[fname] = parse_numbers(table[:, j], np.int64, source=src, field_name=fname, line_no=line_no)
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

    users, user_map = contiguous_ids(raw_u, "sorted")
    items, item_map = contiguous_ids(raw_i, "sorted")
    kept, n_dup = dedup_keep_earliest(users, items, times)
    users, items, times = users[kept], items[kept], times[kept]
    if split == "global_time":
        codes = global_temporal_split(times, ratios or (0.7, 0.1, 0.2))
    else:
        codes = per_user_temporal_split(users, times, ratios or (0.8, 0.1, 0.1))
    return build_from_records(
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
