"""Delimited text parsing shared by the RecBole and MovieLens loaders.

Whole-file string operations and numpy conversions; Python-level loops only run on the error path, to find
the first offending line, whose number and value the :class:`~refit_gym.data.dataset.DataError` names.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Tuple

import numpy as np

from refit_gym.data.dataset import DataError


def read_text(path: Path) -> str:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc})") from None


def split_table(text: str, sep: str, n_fields: int, source: str, first_line: int = 1
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


def parse_numbers(col: np.ndarray, dtype, *, source: str, field_name: str, line_no: np.ndarray) -> np.ndarray:
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


def contiguous_ids(raw: np.ndarray, order: str) -> Tuple[np.ndarray, Dict]:
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
