"""Collaborative signals on the user-item training graph, with sparse products only.

Notation: ``R`` is the binary (n_users, n_items) training matrix, ``d_u`` and ``d_i`` user and item
degrees. The degree-normalised item-item propagation matrix is

    G = D_i^{-1/2} R^T D_u^{-1} R D_i^{-1/2}            (n_items, n_items)

so that for a user's history row ``r``, ``r G`` scores items reached by u -> i -> u' -> j paths
(the 2-hop item signal) and ``r G^{k-1}`` the k-hop one (k = 1 is the history itself). ``G`` is
kept to its ``top_m`` largest entries per row (self loops excluded), so memory is
O(n_items * top_m); hop signals of users are computed in user batches and kept to ``top_m``
entries per user, so memory is O(n_users * top_m). Social signals use the user-user graph ``S``:
``D_s^{-1} S R`` scores the items of a user's social neighbours.
"""
from __future__ import annotations

from typing import List, Optional

import numpy as np
import scipy.sparse as sp
import torch


def topk_per_row(m: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Keep the ``k`` largest entries of each CSR row (ties broken by lower column index). Vectorised,
    O(nnz log nnz) at most: where a row's ``k``-th largest value is cheaper to find densely than by sorting
    (:func:`_candidates`), only the entries that can make a row's top ``k`` are sorted.

    Explicit zeros are not entries. Works on unsorted indices (as sparse products return) and
    never modifies its input. Returns a CSR matrix of the same shape and dtype with at most ``k``
    stored entries per row (the input itself when no row has more than ``k``).
    """
    m = sp.csr_matrix(m)
    if m.nnz and not m.data.all():  # copy first: sp.csr_matrix shares the caller's arrays
        m = m.copy()
        m.eliminate_zeros()
    n_rows = m.shape[0]
    counts = np.diff(m.indptr)
    if k <= 0:
        return sp.csr_matrix(m.shape, dtype=m.dtype)
    if counts.max(initial=0) <= k:
        return m
    rows = np.repeat(np.arange(n_rows), counts)
    # order by (row asc, value desc, column asc) through a composite float64 key: the row index plus the value
    # mapped into [0, 0.5] decreasingly (4-5x faster than a 3-key lexsort). Values closer than ~1e-9 of the
    # matrix's value range count as ties (then the lower column wins).
    lo, hi = float(m.data.min()), float(m.data.max())
    scale = max(hi - lo, np.finfo(np.float64).tiny)
    cand = _candidates(rows, m.indices, m.data, counts, k, m.shape[1], scale)
    if cand is None:  # every entry, with columns in order within each row (a stable sort then breaks ties)
        if not m.has_sorted_indices:  # copy: never touch the input
            m = m.copy()
            m.sort_indices()
        cols, data = m.indices, m.data
    else:  # the entries that can rank in the top k, columns in any order (the column is the sort's second key)
        rows, cols, data = rows[cand], m.indices[cand], m.data[cand]
        counts = np.bincount(rows, minlength=n_rows)
    key = rows + 0.5 * (hi - data.astype(np.float64)) / scale
    order = np.argsort(key, kind="stable") if cand is None else np.lexsort((cols, key))
    rank = np.arange(len(order)) - np.repeat(np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
    keep = order[rank < k]
    keep.sort()
    out = sp.csr_matrix((data[keep], cols[keep], np.concatenate([[0], np.cumsum(np.minimum(counts, k))])),
                        shape=m.shape)
    out.sort_indices()
    return out


#: rows x columns of one dense block of :func:`_candidates` (32 MB of float64)
_DENSE_BLOCK = 1 << 22


def _candidates(rows: np.ndarray, cols: np.ndarray, data: np.ndarray, counts: np.ndarray, k: int, n_cols: int,
                scale: float):
    """Boolean mask over the entries (row-major CSR order) of those whose value is at least their row's ``k``-th
    largest minus ``1e-6 * scale`` (every entry of a row with at most ``k``), or None where finding the ``k``-th
    largest values densely (``torch.topk`` over the rows with more than ``k`` entries, in blocks of
    :data:`_DENSE_BLOCK` elements) would cost more than sorting the ``nnz`` entries (a row-dense product such as a
    hop expansion of 64 users over 12,101 items). Every entry outside the mask
    sorts after ``k`` entries of its row in :func:`topk_per_row`'s key (its value is below theirs by far more than
    the key's float64 resolution), so the mask changes no result, only the length of the sort."""
    big = np.flatnonzero(counts > k)
    nnz = len(data)
    if len(big) * n_cols > 0.5 * nnz * np.log2(max(nnz, 2)):  # measured: ~5 ns a dense cell, ~5 ns a sort step
        return None
    kth = np.full(len(counts), -np.inf)
    if len(big) == len(counts):  # every row (the common case: a hop expansion): no gather
        b_rows, b_cols, b_data = rows, cols, data
    else:
        on_big = np.repeat(counts > k, counts)
        pos = np.full(len(counts), -1)
        pos[big] = np.arange(len(big))
        b_rows, b_cols, b_data = pos[rows[on_big]], cols[on_big], data[on_big]
    step = max(1, _DENSE_BLOCK // max(n_cols, 1))
    bounds = np.searchsorted(b_rows, np.arange(0, len(big) + step, step))  # b_rows is sorted: row-major order
    for s, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        first = s * step
        block = np.full((min(step, len(big) - first), n_cols), -np.inf)
        block.ravel()[(b_rows[a:b] - first) * n_cols + b_cols[a:b]] = b_data[a:b]
        top = torch.topk(torch.from_numpy(block), k, dim=1, sorted=False).values  # 8x np.partition's speed here
        kth[big[first:first + step]] = top.min(dim=1).values.numpy()
    return data >= kth[rows] - 1e-6 * scale


def _inv(x: np.ndarray, power: float) -> np.ndarray:
    out = np.zeros_like(x, dtype=np.float64)
    nz = x > 0
    out[nz] = x[nz] ** (-power)
    return out


def item_item_graph(train: sp.csr_matrix, top_m: int = 50, batch_items: int = 4096) -> sp.csr_matrix:
    """The normalised item-item matrix ``G`` (float32 CSR, ``top_m`` entries per row, no self loops).

    Computed in item batches so the transient dense-ish block is at most ``batch_items`` rows.
    """
    R = sp.csr_matrix(train, dtype=np.float64)
    du = np.asarray(R.sum(axis=1)).ravel()
    di = np.asarray(R.sum(axis=0)).ravel()
    Rn = sp.diags(_inv(du, 0.5)) @ R @ sp.diags(_inv(di, 0.5))  # D_u^{-1/2} R D_i^{-1/2}
    Rt = Rn.T.tocsr()
    blocks = []
    for s in range(0, R.shape[1], batch_items):
        blk = (Rt[s:s + batch_items] @ Rn).tocsr()
        rows = np.repeat(np.arange(blk.shape[0]), np.diff(blk.indptr)) + s
        blk.data[blk.indices == rows] = 0.0  # drop self loops
        blocks.append(topk_per_row(blk, top_m))
    G = sp.vstack(blocks).tocsr().astype(np.float32)
    G.eliminate_zeros()
    return G


def hop_signals(history: sp.csr_matrix, G: sp.csr_matrix, n_hops: int = 3, top_m: Optional[int] = 200,
                batch_users: int = 4096) -> List[sp.csr_matrix]:
    """k-hop item signals for each user row of ``history``: ``[r, r G, r G^2, ...]`` (``n_hops`` of them).

    Each hop k >= 2 is row-normalised to max 1 and kept to ``top_m`` entries per user.
    Returns a list of float32 CSR matrices of shape (n_users, n_items).
    """
    if n_hops < 1:
        raise ValueError(f"n_hops={n_hops}: need at least 1")
    H = sp.csr_matrix(history, dtype=np.float32)
    out = [H]
    cur = H
    for _ in range(1, n_hops):
        parts = []
        for s in range(0, cur.shape[0], batch_users):
            blk = (cur[s:s + batch_users] @ G).tocsr()
            if top_m is not None:
                blk = topk_per_row(blk, top_m)
            parts.append(row_max_normalise(blk))
        cur = sp.vstack(parts).tocsr().astype(np.float32)
        out.append(cur)
    return out


def row_max_normalise(m: sp.csr_matrix) -> sp.csr_matrix:
    """Divide every row by its largest absolute entry (zero rows stay zero)."""
    m = sp.csr_matrix(m)
    mx = np.zeros(m.shape[0])
    counts = np.diff(m.indptr)
    nz = counts > 0
    if nz.any():
        mx[nz] = np.maximum.reduceat(np.abs(m.data), m.indptr[:-1][nz])
    return sp.diags(_inv(mx, 1.0)) @ m


def social_item_signal(social: sp.csr_matrix, train: sp.csr_matrix, top_m: Optional[int] = 200) -> sp.csr_matrix:
    """Items of each user's social neighbours: ``D_s^{-1} S R``, kept to ``top_m`` per user, max-normalised."""
    S = sp.csr_matrix(social, dtype=np.float64)
    ds = np.asarray(S.sum(axis=1)).ravel()
    sig = (sp.diags(_inv(ds, 1.0)) @ S @ sp.csr_matrix(train, dtype=np.float64)).tocsr()
    if top_m is not None:
        sig = topk_per_row(sig, top_m)
    return row_max_normalise(sig).astype(np.float32).tocsr()
