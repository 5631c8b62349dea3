"""Non-neural reference recommenders: MostPopular, ItemKNN and EASE, plus validation-based selection.

Every model follows the same small interface:

* ``fit(data) -> self`` learns from ``data.train`` only (a binary CSR ``(n_users, n_items)``);
* ``scores(users) -> torch.Tensor`` returns float32 scores ``(B, n_items)`` on the CPU for an int64
  array of ``B`` user indices, computed from the users' *training* histories.

``model.scores`` is therefore a ready ``score_fn`` for :func:`refit_gym.metrics.evaluate`, which
masks the known items of the evaluated split. As in DiffRec's and EASE's published ml-1m numbers,
the test evaluation uses the model fitted on train only (it is not refitted on train + valid).
"""
from __future__ import annotations

import sys
from typing import Any, Callable, Dict, Iterable, List, NamedTuple, Optional

import numpy as np
import scipy.linalg
import scipy.sparse as sp
import torch

from refit_gym.metrics import evaluate


class NotFittedError(RuntimeError):
    """``scores`` was called before ``fit``."""


class Recommender:
    """Base class: holds the training matrix and validates user indices."""

    name: str = "base"

    def __init__(self) -> None:
        self._train: Optional[sp.csr_matrix] = None

    @property
    def n_items(self) -> int:
        self._check_fitted()
        return self._train.shape[1]

    def params(self) -> Dict[str, Any]:
        """The model's hyperparameters (JSON-able)."""
        return {}

    def fit(self, data) -> "Recommender":
        """Learn from ``data.train`` (an InteractionData); returns self."""
        train = sp.csr_matrix(data.train, dtype=np.float32)
        if train.ndim != 2 or train.shape[1] == 0:
            raise ValueError(f"training matrix must be (n_users, n_items) with n_items > 0, got {train.shape}")
        self._train = train
        self._fit(train)
        return self

    def _fit(self, train: sp.csr_matrix) -> None:
        raise NotImplementedError

    def scores(self, users: np.ndarray) -> torch.Tensor:
        """Float32 scores ``(B, n_items)`` (CPU tensor) for the int64 user indices ``users`` ``(B,)``."""
        self._check_fitted()
        users = np.asarray(users, dtype=np.int64).reshape(-1)
        n_users = self._train.shape[0]
        if users.size and (users.min() < 0 or users.max() >= n_users):
            raise IndexError(f"user indices must lie in [0, {n_users}), got range [{users.min()}, {users.max()}]")
        out = np.ascontiguousarray(self._scores(users), dtype=np.float32)
        return torch.from_numpy(out)

    def _scores(self, users: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _check_fitted(self) -> None:
        if self._train is None:
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit(data) first")

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"


class MostPopular(Recommender):
    """Scores every item by its number of training interactions (the same ranking for all users).

    On sequence data (a :class:`~refit_gym.data.sequential.SequentialData`) it counts every entry of the train
    sequences, repeats included (a POI visited twice counts twice)."""

    name = "pop"

    def fit(self, data) -> "MostPopular":
        if not hasattr(data, "train_items"):
            return super().fit(data)
        super().fit(data.interactions())  # users and items of the binary view; the counts keep the repeats
        rows = np.repeat(np.arange(data.n_users), np.diff(data.train_ptr))
        trains = np.isin(rows, data.train_users)  # training rows only (user-split: not the evaluated histories)
        self.popularity = np.bincount(data.train_items[trains], minlength=data.n_items).astype(np.float32)
        return self

    def _fit(self, train: sp.csr_matrix) -> None:
        #: ``(n_items,)`` float32 training interaction counts
        self.popularity = np.asarray(train.sum(axis=0), dtype=np.float32).reshape(-1)

    def _scores(self, users: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.popularity, (users.size, self.popularity.size))


class ItemKNN(Recommender):
    """Item-based k-nearest-neighbours with cosine similarity.

    ``sim(i, j) = <x_i, x_j> / (||x_i|| ||x_j|| + shrink + 1e-6)`` over the binary item columns of
    the training matrix. For every target item ``j`` only its ``k`` most similar items ``i != j``
    (with positive similarity) are kept, so the sparse similarity matrix ``S`` (``S[i, j] = sim(i, j)``)
    has at most ``k * n_items`` non-zeros. The score of item ``j`` for user ``u`` is
    ``sum_i x_ui S[i, j]``, i.e. ``history @ S``.

    The similarity is computed by blocks of target items so that peak memory is
    ``O(n_items * block)`` (``block`` chosen from ``max_block_bytes``), never ``O(n_items^2)``.

    Args:
        k: neighbours kept per item (>= 1).
        shrink: shrinkage term added to the cosine denominator (>= 0).
        max_block_bytes: budget for one dense similarity block (float64), default 256 MiB.
    """

    name = "itemknn"

    def __init__(self, k: int = 100, shrink: float = 0.0, max_block_bytes: int = 256 * 2**20):
        super().__init__()
        if int(k) < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if shrink < 0:
            raise ValueError(f"shrink must be >= 0, got {shrink}")
        self.k, self.shrink, self.max_block_bytes = int(k), float(shrink), int(max_block_bytes)
        self.similarity: Optional[sp.csr_matrix] = None

    def params(self) -> Dict[str, Any]:
        return {"k": self.k, "shrink": self.shrink}

    def _fit(self, train: sp.csr_matrix) -> None:
        n = train.shape[1]
        items = train.T.tocsr().astype(np.float64)  # (n_items, n_users): one row per item
        norms = np.sqrt(np.asarray(items.multiply(items).sum(axis=1)).reshape(-1))  # (n_items,)
        k = min(self.k, n - 1)  # an item has at most n - 1 neighbours
        block = int(max(1, min(n, self.max_block_bytes // max(1, 8 * n))))
        rows_l, cols_l, vals_l = [], [], []
        for start in range(0, n, block):  # loop over item blocks, not users
            cols = np.arange(start, min(n, start + block))
            dots = (items @ items[cols].T).toarray()  # (n_items, b) co-occurrence counts
            sim = dots / (norms[:, None] * norms[None, cols] + self.shrink + 1e-6)
            sim[cols, np.arange(cols.size)] = 0.0  # no self-similarity
            if k <= 0:
                continue
            top = np.argpartition(-sim, k - 1, axis=0)[:k]  # (k, b): rows of the k largest per column
            val = np.take_along_axis(sim, top, axis=0)
            keep = val > 0
            rows_l.append(top[keep])
            cols_l.append(np.broadcast_to(cols[None, :], top.shape)[keep])
            vals_l.append(val[keep])
        if rows_l:
            rows, cols, vals = (np.concatenate(a) for a in (rows_l, cols_l, vals_l))
        else:
            rows = cols = np.zeros(0, dtype=np.int64)
            vals = np.zeros(0)
        self.similarity = sp.csr_matrix((vals.astype(np.float32), (rows, cols)), shape=(n, n))

    def _scores(self, users: np.ndarray) -> np.ndarray:
        return (self._train[users] @ self.similarity).toarray()


class EASE(Recommender):
    """EASE^R (Steck, WWW 2019): a linear item-item model with a zero diagonal, in closed form.

    Solves ``min_B ||X - X B||_F^2 + lam ||B||_F^2`` subject to ``diag(B) = 0`` for the binary
    training matrix ``X`` ``(n_users, n_items)``:
    ``P = (X^T X + lam I)^{-1}``, ``B = I - P diag(1 / diag(P))``, i.e. ``B_ij = -P_ij / P_jj``
    off the diagonal and 0 on it. Scores are ``X_u B``.

    ``B`` is a dense ``n_items x n_items`` matrix (computed in float64, kept in float32), so memory
    and time grow as ``n_items^2`` and ``n_items^3``; fitting raises beyond ``max_items``.

    Args:
        lam: L2 regularisation (> 0).
        max_items: largest item count accepted by :meth:`fit` (default 20,000: ~3.2 GB for the
            float64 Gram matrix and its inverse).
    """

    name = "ease"

    def __init__(self, lam: float = 500.0, max_items: int = 20_000):
        super().__init__()
        if not lam > 0:
            raise ValueError(f"lam must be > 0, got {lam}")
        self.lam, self.max_items = float(lam), int(max_items)
        self.weights: Optional[np.ndarray] = None

    def params(self) -> Dict[str, Any]:
        return {"lam": self.lam}

    def _fit(self, train: sp.csr_matrix) -> None:
        n = train.shape[1]
        if n > self.max_items:
            gib = 2 * n * n * 8 / 2**30
            raise ValueError(f"EASE needs a dense {n} x {n} float64 inverse (~{gib:.1f} GiB); this exceeds "
                             f"max_items={self.max_items}. Pass EASE(max_items=...) to allow it, or use ItemKNN.")
        x = train.astype(np.float64)
        gram = (x.T @ x).toarray()  # (n, n)
        gram[np.diag_indices(n)] += self.lam
        # Gram + lam I is symmetric positive definite: a Cholesky solve is cheaper and stabler than inv
        p = scipy.linalg.cho_solve(scipy.linalg.cho_factor(gram, overwrite_a=True), np.eye(n), overwrite_b=True)
        b = -p / np.diag(p)[None, :]
        b[np.diag_indices(n)] = 0.0
        #: ``(n_items, n_items)`` float32 item-item weights B
        self.weights = b.astype(np.float32)

    def _scores(self, users: np.ndarray) -> np.ndarray:
        return self._train[users] @ self.weights  # sparse (B, n) @ dense (n, n)


class TEASE(EASE):
    """EASE with T-DiffRec's recency weights: :class:`EASE`'s item-item weights ``B`` (fitted on the binary
    training matrix) applied to the recency-weighted history, ``scores = W_u B`` with ``W``
    :meth:`~refit_gym.data.InteractionData.recency_weights` ``(w_min, 1)`` (a user's oldest training item weighs
    ``w_min``, the newest 1). The order-aware counterpart of :class:`EASE`, beside the T-DiffRec backbone; the data
    must order its training interactions (``train_time``).

    Args:
        lam: L2 regularisation (> 0). w_min: the oldest interaction's weight, in [0, 1] (T-DiffRec's 0.1).
        max_items: as :class:`EASE`.
    """

    name = "t-ease"

    def __init__(self, lam: float = 500.0, w_min: float = 0.1, max_items: int = 20_000):
        super().__init__(lam, max_items)
        if not 0.0 <= float(w_min) <= 1.0:
            raise ValueError(f"w_min must be in [0, 1], got {w_min}")
        self.w_min = float(w_min)
        self._recency: Optional[sp.csr_matrix] = None

    def params(self) -> Dict[str, Any]:
        return {"lam": self.lam, "w_min": self.w_min}

    def fit(self, data) -> "TEASE":
        """EASE on ``data.train``, and the recency weights of ``data`` (an InteractionData with ``train_time``)."""
        self._recency = sp.csr_matrix(data.recency_weights(self.w_min, 1.0), dtype=np.float32)
        super().fit(data)
        return self

    def _scores(self, users: np.ndarray) -> np.ndarray:
        return self._recency[users] @ self.weights


BASELINES: Dict[str, type] = {"pop": MostPopular, "itemknn": ItemKNN, "ease": EASE, "t-ease": TEASE}
#: default hyperparameter grids for :func:`select_on_validation`: (parameter name, values)
DEFAULT_GRIDS: Dict[str, tuple] = {
    "ease": ("lam", [100.0, 250.0, 500.0, 1000.0, 2000.0, 4000.0]),
    "t-ease": ("lam", [100.0, 250.0, 500.0, 1000.0, 2000.0, 4000.0]),
    "itemknn": ("k", [50, 100, 200, 500]),
}


class Selection(NamedTuple):
    """Result of :func:`select_on_validation`."""

    model: Recommender  #: the best model, fitted on train
    value: Any  #: the chosen grid value
    table: List[Dict[str, Any]]  #: one row per grid value: {"value": v, <metric keys>: floats}


def select_on_validation(
    make_model: Callable[[Any], Recommender],
    grid: Iterable[Any],
    data,
    metric: str = "ndcg@20",
    ks: Optional[Iterable[int]] = None,
    batch_size: int = 1024,
    verbose: bool = False,
) -> Selection:
    """Fit ``make_model(v)`` on train for every ``v`` in ``grid`` and keep the best on the 'valid' split.

    Args:
        make_model: builds an unfitted model from one grid value, e.g. ``lambda lam: EASE(lam)``.
        grid: candidate values (non-empty).
        data: an InteractionData.
        metric: the key of :func:`~refit_gym.metrics.evaluate`'s output to maximise, e.g. 'ndcg@20'.
        ks: cut-offs to evaluate (default: just the metric's K).
        batch_size: users per scoring batch.
        verbose: print one line per grid value on stderr.

    Returns:
        ``Selection(model, value, table)``; ties keep the first grid value. Only the best model is
        kept in memory.
    """
    grid = list(grid)
    if not grid:
        raise ValueError("grid must contain at least one value")
    name, _, k_str = metric.partition("@")
    if not k_str.isdigit() or name not in ("recall", "ndcg", "precision", "mrr", "hitrate"):
        raise ValueError(f"metric must look like 'ndcg@20' (recall/ndcg/precision/mrr/hitrate @ K), got {metric!r}")
    ks = tuple(ks) if ks is not None else (int(k_str),)
    if int(k_str) not in ks:
        ks = ks + (int(k_str),)
    best: Optional[Selection] = None
    table: List[Dict[str, Any]] = []
    for value in grid:
        model = make_model(value).fit(data)
        res = evaluate(model.scores, data, split="valid", ks=ks, batch_size=batch_size)
        table.append({"value": value, **res})
        if verbose:
            print(f"[select] {model!r}: valid {metric} = {res[metric]:.4f}", file=sys.stderr)
        if best is None or res[metric] > best.table[0][metric]:
            best = Selection(model, value, [res])
        del model
    return Selection(best.model, best.value, table)


__all__ = ["Recommender", "NotFittedError", "MostPopular", "ItemKNN", "EASE", "TEASE", "BASELINES", "DEFAULT_GRIDS",
           "Selection", "select_on_validation"]
