"""Tests of the collaborative graph signals against dense hand computations on tiny matrices."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from refit_gym.data import make_synthetic
from refit_gym.data.graph import (hop_signals, item_item_graph, row_max_normalise, social_item_signal,
                                  topk_per_row)

# 5 users x 6 items; item 5 is cold (no interactions), user 4 has one item
R_DENSE = np.array([
    [1, 1, 0, 1, 0, 0],
    [1, 0, 1, 0, 0, 0],
    [0, 1, 1, 1, 1, 0],
    [1, 1, 0, 0, 1, 0],
    [0, 0, 0, 1, 0, 0],
], dtype=np.float64)


def dense_topk(m: np.ndarray, k: int) -> np.ndarray:
    """Keep the k largest non-zero entries of each row (ties by lower column), by plain loops."""
    out = np.zeros_like(m)
    for r in range(m.shape[0]):
        nz = [c for c in range(m.shape[1]) if m[r, c] != 0]
        nz.sort(key=lambda c: (-m[r, c], c))
        for c in nz[:k]:
            out[r, c] = m[r, c]
    return out


def dense_graph(R: np.ndarray, top_m: int) -> np.ndarray:
    du, di = R.sum(1), R.sum(0)
    inv_sqrt_i = np.where(di > 0, 1 / np.sqrt(np.maximum(di, 1e-12)), 0.0)
    inv_u = np.where(du > 0, 1 / np.maximum(du, 1e-12), 0.0)
    G = np.diag(inv_sqrt_i) @ R.T @ np.diag(inv_u) @ R @ np.diag(inv_sqrt_i)
    np.fill_diagonal(G, 0.0)
    return dense_topk(G, top_m)


@pytest.mark.parametrize("k", [0, 1, 2, 3, 10])
def test_topk_per_row_matches_dense(k):
    rng = np.random.default_rng(0)
    m = rng.random((7, 9)) * (rng.random((7, 9)) < 0.6)
    m[2] = 0.0  # an empty row
    m[3, [1, 4, 6]] = 0.5  # ties: lower columns win
    got = topk_per_row(sp.csr_matrix(m), k)
    assert got.shape == m.shape
    np.testing.assert_array_equal(got.toarray(), dense_topk(m, k))
    assert np.diff(got.indptr).max(initial=0) <= k


def test_topk_per_row_ties_unsorted_indices_and_explicit_zeros():
    m = sp.csr_matrix((np.array([0.5, 0.0, 0.5, 0.9]), np.array([3, 0, 1, 2]), np.array([0, 4])), shape=(1, 4))
    before = m.copy()
    got = topk_per_row(m, 2)  # the product-like unsorted indices must not decide the tie
    assert got.nnz == 2 and got[0, 2] == 0.9 and got[0, 1] == 0.5 and got[0, 3] == 0
    assert (m != before).nnz == 0 and m.nnz == 4  # the input is left untouched


def spy_candidates(monkeypatch) -> list:
    """Records, per call of topk_per_row's candidate filter, whether it filtered (True) or declined (False)."""
    import refit_gym.data.graph as graph

    used, real = [], graph._candidates

    def spy(*args):
        mask = real(*args)
        used.append(mask is not None)
        return mask

    monkeypatch.setattr(graph, "_candidates", spy)
    return used


@pytest.mark.parametrize("k", [1, 3, 8])
def test_topk_per_row_candidate_filter_changes_no_result(k, monkeypatch):
    """The dense k-th-value filter only shortens the sort: with exact ties, values closer than the key's
    resolution (adjacent doubles, which the sort treats as ties: the lower column wins), negative values and rows
    at, below and above k entries, the result equals the full sort's (the filter switched off), entry for entry."""
    import refit_gym.data.graph as graph

    rng = np.random.default_rng(k)
    m = np.round(rng.normal(size=(60, 40)), 1) * (rng.random((60, 40)) < 0.5)  # many exact ties
    # one full row of distinct values closer than the key's resolution (the next few doubles after 0.3)
    m[5, :] = [np.nextafter(np.nextafter(0.3, 1.0), 1.0) if j % 3 == 2 else np.nextafter(0.3, 1.0) if j % 3
               else 0.3 for j in range(40)]
    m[6, : k] = 1.0  # exactly k entries
    m[7, : k - 1] = 1.0 if k > 1 else 0.0  # fewer than k
    csr = sp.csr_matrix(m)
    for r in range(csr.shape[0]):
        a, b = csr.indptr[r], csr.indptr[r + 1]
        idx = a + rng.permutation(b - a)
        csr.indices[a:b], csr.data[a:b] = csr.indices[idx].copy(), csr.data[idx].copy()
    csr.has_sorted_indices = False  # unsorted indices within rows, as sparse products return them
    used = spy_candidates(monkeypatch)
    filtered = topk_per_row(csr, k)
    assert used == [True]  # the filter ran on this matrix
    monkeypatch.setattr(graph, "_candidates", lambda *a: None)
    full = topk_per_row(csr, k)
    for got in (filtered, full):
        assert np.diff(got.indptr).max() <= k
    np.testing.assert_array_equal(filtered.indptr, full.indptr)
    np.testing.assert_array_equal(filtered.indices, full.indices)
    np.testing.assert_array_equal(filtered.data, full.data)
    assert filtered[5].indices.tolist() == list(range(k))  # near-ties: the lowest columns, as exact ties


def test_topk_per_row_uses_the_filter_when_it_is_cheaper(monkeypatch):
    """A row-dense product (the sequential reward's hop expansion) goes through the dense filter; a very sparse
    wide matrix is sorted whole."""
    rng = np.random.default_rng(0)
    dense_like = sp.csr_matrix(rng.random((16, 500)) * (rng.random((16, 500)) < 0.4))
    sparse_wide = sp.random(16, 200_000, density=1e-4, random_state=0, format="csr")
    used = spy_candidates(monkeypatch)
    topk_per_row(dense_like, 5)
    topk_per_row(sparse_wide, 1)
    assert used == [True, False]


@pytest.mark.parametrize("top_m", [1, 2, 10])
def test_item_item_graph_matches_dense_formula(top_m):
    G = item_item_graph(sp.csr_matrix(R_DENSE), top_m=top_m, batch_items=4)  # two item batches
    assert G.dtype == np.float32 and G.shape == (6, 6)
    assert G.diagonal().sum() == 0
    assert np.diff(G.indptr).max() <= top_m
    assert G[5].nnz == 0  # the cold item has no neighbours
    np.testing.assert_allclose(G.toarray(), dense_graph(R_DENSE, top_m), rtol=1e-6, atol=1e-7)


def test_hop_signals_match_dense():
    R = sp.csr_matrix(R_DENSE)
    G = item_item_graph(R, top_m=10)
    hops = hop_signals(R, G, n_hops=3, top_m=None, batch_users=2)
    assert len(hops) == 3 and all(h.shape == R.shape and h.dtype == np.float32 for h in hops)
    np.testing.assert_array_equal(hops[0].toarray(), R_DENSE)
    hop2 = row_max_normalise(R @ G).toarray()
    np.testing.assert_allclose(hops[1].toarray(), hop2, rtol=1e-6)
    Gd = dense_graph(R_DENSE, 10)
    r2 = R_DENSE @ Gd
    r2 = r2 / np.maximum(r2.max(1, keepdims=True), 1e-12)
    np.testing.assert_allclose(hops[1].toarray(), r2, rtol=1e-5, atol=1e-7)
    r3 = r2 @ Gd
    r3 = r3 / np.maximum(r3.max(1, keepdims=True), 1e-12)
    np.testing.assert_allclose(hops[2].toarray(), r3, rtol=1e-5, atol=1e-7)
    assert np.allclose(hops[1].max(axis=1).toarray().ravel(), 1.0)
    with pytest.raises(ValueError):
        hop_signals(R, G, n_hops=0)


def test_hop_signals_memory_bound():
    d = make_synthetic(seed=0)
    G = item_item_graph(d.train, top_m=5)
    assert np.diff(G.indptr).max() <= 5
    hops = hop_signals(d.train, G, n_hops=3, top_m=7, batch_users=64)
    for h in hops[1:]:
        assert np.diff(h.indptr).max() <= 7
        assert h.data.max() <= 1.0 + 1e-6 and h.data.min() > 0
    # the kept entries are each user's largest ones of the untruncated signal
    full = row_max_normalise(d.train @ G).toarray()
    kept = hops[1].toarray()
    for u in range(0, d.n_users, 37):
        k = int((kept[u] > 0).sum())
        np.testing.assert_allclose(np.sort(kept[u][kept[u] > 0]), np.sort(full[u])[-k:], rtol=1e-5)


def test_social_item_signal_dense():
    S = np.array([[0, 1, 1, 0, 0],
                  [1, 0, 0, 0, 0],
                  [1, 0, 0, 1, 0],
                  [0, 0, 1, 0, 0],
                  [0, 0, 0, 0, 0]], dtype=np.float64)  # user 4 has no friends
    sig = social_item_signal(sp.csr_matrix(S), sp.csr_matrix(R_DENSE), top_m=None)
    expect = np.diag(1 / np.maximum(S.sum(1), 1)) @ S @ R_DENSE
    expect = expect / np.maximum(expect.max(1, keepdims=True), 1e-12)
    assert sig.dtype == np.float32 and sig.shape == R_DENSE.shape
    np.testing.assert_allclose(sig.toarray(), expect, rtol=1e-6)
    assert sig[4].nnz == 0
    top2 = social_item_signal(sp.csr_matrix(S), sp.csr_matrix(R_DENSE), top_m=2)
    assert np.diff(top2.indptr).max() <= 2
    np.testing.assert_allclose(top2.toarray()[:, :], row_max_normalise(
        sp.csr_matrix(dense_topk(np.diag(1 / np.maximum(S.sum(1), 1)) @ S @ R_DENSE, 2))).toarray(), rtol=1e-6)
