"""ReFiT's collaborative reward for sequential (and POI) data: last-item hold-out and transition neighbours.

For sequences the natural "what comes next" target is the *end* of the user's training sequence,
not a random subset of it, and the natural high-order neighbours of a user are the items that
*follow* the user's recent items in other users' sequences. For one user with training sequence
``s_1 .. s_n`` (time order):

* ``targets="last"`` (default): **held-out items** ``H`` = the distinct items of the last ``n_last``
  positions ``s_{n-n_last+1} .. s_n``; **visible items** ``C`` = the user's other training items (so
  with repeat consumption an item seen earlier *and* at the end is held out everywhere: the condition
  never contains a held-out item). If ``H`` would cover all of the user's distinct items, nothing is
  held out (as in :func:`~refit_gym.rewards.base.split_heldout`, a user always keeps a visible item);
  the likelihood term is then 0. The split ignores the episode key: it is deterministic, one fixed
  target per user (a pair that pretraining has already fitted).
* ``targets="random"``: a *prefix -> next item* pair drawn per episode. Among the positions
  ``p >= 2`` whose item does not occur earlier in the sequence (a new item, so it can be ranked
  against the non-condition items; with ``mask_condition=False`` every position ``p >= 2``, a repeat
  included, since the softmax then ranks it against every item) and that lie in the last ``max_len``
  positions (what a sequence backbone stores of the data's ``max_len``), one is drawn uniformly with a
  hash of the episode key;
  ``C`` = the distinct items of ``s_1 .. s_{p-1}``, ``H = {s_p}``, and the ``n - p + 1`` positions
  from ``p`` on are hidden from the condition (``RewardState.hidden_tail``; order-aware backbones
  such as DreamRec drop them from the sequence, so a later repeat of a prefix item never leaks in).
  A user without such a position keeps all items visible and gets no likelihood term. Every
  training transition of the user becomes a target over the episodes, as in the backbone's
  all-prefix pretraining.
* **transition graph** ``P`` (``n_items x n_items``): with ``K[a, b]`` the number of times ``b``
  directly follows ``a`` in the training sequences (all users, repeats counted) and
  ``k_a = sum_b K[a, b]``, ``P[a, b] = K[a, b] / k_a`` restricted to the ``graph_top_m`` largest
  entries of row ``a`` (the normaliser ``k_a`` is the full row total).
* **recent items** ``w_0``: the last ``n_recent`` *visible* positions of the sequence, the most
  recent with weight 1, the one before ``recency_decay``, then ``recency_decay**2`` ... (an item at
  several recent positions sums its weights), max-normalised.
* **hop k** (``k = 1..n_hops``): ``s_k = w_{k-1} P - w_{k-1} P_u``, where ``P_u[a, b] = K_u[a, b] / k_a``
  on the kept entries of ``P`` and ``K_u`` counts the user's *own* transitions (every pair of
  consecutive training items of this user, the hidden last transition included). So ``s_k`` uses
  exactly the other users' sequences; ``w_k = maxnorm(topM(s_k))`` (``top_m`` entries) feeds the next
  hop, and the target ``q_k = s_k`` restricted to ``N = {items} \\ C``, normalised to sum 1.

The terminal reward has :class:`~refit_gym.rewards.collaborative.CollaborativeReward`'s form
(softmax over the non-condition items with temperature ``tau``)::

    R = (1/|H|) sum_{j in H} log p(j) + lambda * sum_k gamma^(k-1) sum_{j in N} q_k(j) log p(j)

with components ``likelihood`` and ``hop1 .. hopK``. All targets are sparse ``(row, item, weight)``
triplets built with scipy products at reset (cost O(batch sequence length + nnz of the targets));
nothing of size ``n_users x n_items`` is dense.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import scipy.sparse as sp

from refit_gym.data.graph import row_max_normalise, topk_per_row
from refit_gym.data.sequential import SequentialData
from refit_gym.rewards.base import RewardState, hash_uniform, heldout_target
from refit_gym.rewards.collaborative import CollaborativeReward, _outside, _row_sum_normalise

_ZERO_TOL = 1e-12  # float64 residue of the exact own-transition subtraction
#: ``targets`` options of :class:`SequentialCollaborativeReward`
TARGETS = ("last", "random")
_PREFIX_COUNTER = np.uint64(0x5E9_7A26E7)  # hash counter of the prefix draw (any fixed value)


def transition_counts(seq_data: SequentialData) -> sp.csr_matrix:
    """``K`` ``(n_items, n_items)`` float64 CSR: ``K[a, b]`` = times item ``b`` directly follows ``a``
    in the training sequences of ``seq_data`` (the rows of ``train_users``, repeats counted; validation/test
    items and, under user-split, the valid / test users' histories never enter)."""
    items, ptr = seq_data.train_items, seq_data.train_ptr
    same_user = np.ones(max(len(items) - 1, 0), dtype=bool)
    same_user[ptr[1:-1] - 1] = False  # the pair (last of user u, first of user u+1)
    rows = np.repeat(np.arange(seq_data.n_users), np.diff(ptr))[:-1]
    same_user &= np.isin(rows, seq_data.train_users)
    a, b = items[:-1][same_user], items[1:][same_user]
    n = seq_data.n_items
    return sp.csr_matrix((np.ones(len(a)), (a, b)), shape=(n, n), dtype=np.float64)  # duplicates summed


def transition_graph(seq_data: SequentialData, top_m: int = 50) -> Tuple[sp.csr_matrix, np.ndarray]:
    """The transition graph ``P`` and the row totals ``k`` of the module docstring.

    Returns:
        ``(P (n_items, n_items) float64 CSR with at most top_m entries per row, k (n_items,) float64)``;
        ``P[a, b] = K[a, b] / k_a`` on the kept entries (rows of items never followed are empty).
    """
    if int(top_m) < 1:
        raise ValueError(f"top_m={top_m!r}: expected >= 1")
    K = transition_counts(seq_data)
    total = np.asarray(K.sum(axis=1)).ravel()
    inv = np.divide(1.0, total, out=np.zeros_like(total), where=total > 0)
    P = (sp.diags(inv) @ topk_per_row(K, int(top_m))).tocsr()
    P.sort_indices()
    return P, total


def _batch_positions(seq_data: SequentialData, users: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """``(rows (N,), pos (N,))``: for every training position of the batch users, its batch row and its
    index into ``seq_data.train_items`` (rows ascending, positions in time order within a row)."""
    starts = seq_data.train_ptr[users]
    lengths = seq_data.train_ptr[users + 1] - starts
    rows = np.repeat(np.arange(len(users)), lengths)
    offsets = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return rows, np.repeat(starts, lengths) + offsets


def _lookup(m: sp.csr_matrix, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``m[rows[k], cols[k]]`` for every k, as a float64 array ``(len(rows),)`` (0 where not stored)."""
    if len(rows) == 0:
        return np.zeros(0)
    return np.asarray(m[rows, cols], dtype=np.float64).ravel()


class SequentialCollaborativeReward(CollaborativeReward):
    """The ReFiT reward for sequences: hold out the last item(s), reward transition neighbours.

    See the module docstring for the exact formula.

    Args:
        data: a :class:`~refit_gym.data.sequential.SequentialData` (the item order is needed; its
            ``interactions()`` view is what the environment and the softmax use).
        n_last: number of final training positions held out (>= 1).
        tau: softmax temperature (> 0).
        hop_weight: ``lambda`` >= 0 (0 disables the transition terms).
        n_hops: ``K`` >= 0 transition hops.
        gamma: decay in (0, 1] of the hop weights.
        n_recent: number of recent visible positions that seed the hops (>= 1).
        recency_decay: weight ratio in (0, 1] between consecutive recent positions.
        top_m: entries kept per user and hop.
        graph_top_m: entries kept per row of the transition graph.
        targets: ``"last"`` (the last ``n_last`` positions) or ``"random"`` (a prefix -> next-item pair
            per episode), see the module docstring.
        standardize: softmax over per-row standardised scores (see :class:`CollaborativeReward`).
        mask_condition: the softmax leaves the condition (prefix) items out (True, the default) or runs over
            every item (False), as the sequence scenarios' ranking does (it keeps the history): the reward then
            also penalises scoring prefix items above the target (see :class:`CollaborativeReward`).
        device: where score tensors live.
    """

    name = "refit-seq"

    def __init__(self, data, n_last: int = 1, tau: float = 1.0, hop_weight: float = 0.1, n_hops: int = 1,
                 gamma: float = 0.5, n_recent: int = 3, recency_decay: float = 0.5, top_m: int = 200,
                 graph_top_m: int = 50, targets: str = "last", standardize: bool = False, mask_condition: bool = True,
                 device="cpu"):
        if not isinstance(data, SequentialData):
            raise TypeError(f"the 'refit-seq' reward needs ordered sequences (a SequentialData, e.g. from a "
                            f"dataset.pkl folder), got {type(data).__name__}; use reward='refit' for unordered data")
        # the parent validates tau/gamma/top_m; its item-item graph and social term are not used here
        super().__init__(data, holdout=0.0, tau=tau, hop_weight=0.0, n_hops=0, gamma=gamma, social_weight=0.0,
                         top_m=top_m, standardize=standardize, mask_condition=mask_condition, device=device)
        if int(n_last) < 1 or int(n_recent) < 1:
            raise ValueError(f"n_last={n_last!r}, n_recent={n_recent!r}: both must be >= 1")
        if hop_weight < 0 or int(n_hops) < 0:
            raise ValueError(f"hop_weight={hop_weight!r}, n_hops={n_hops!r}: expected >= 0")
        if not 0 < recency_decay <= 1:
            raise ValueError(f"recency_decay={recency_decay!r}: expected a ratio in (0, 1]")
        if targets not in TARGETS:
            raise ValueError(f"targets={targets!r}: expected one of {TARGETS}")
        self.seq, self.targets = data, targets
        self.n_last, self.n_recent, self.recency_decay = int(n_last), int(n_recent), float(recency_decay)
        self.hop_weight, self.n_hops = float(hop_weight), int(n_hops)
        self.graph: Optional[sp.csr_matrix] = None
        if self.hop_weight > 0 and self.n_hops > 0:
            self.graph, total = transition_graph(data, graph_top_m)
            self.inv_total = np.divide(1.0, total, out=np.zeros_like(total), where=total > 0)

    # ------------------------------------------------------------------ the split
    def split(self, users: np.ndarray, keys: np.ndarray):
        """``targets="last"``: hold out the distinct items of each user's last ``n_last`` training positions
        (keys unused); ``"random"``: a prefix -> next-item pair per episode (:meth:`split_prefix`). Users must
        be training users (``data.train_users``; under user-split a valid / test user's row is not training data)."""
        outside = ~np.isin(users, self.seq.train_users)
        if outside.any():
            raise ValueError(f"user {int(users[outside][0])} is not a training user of '{self.seq.name}' (protocol "
                             f"{self.seq.protocol!r}): rewards read training rows only")
        if self.targets == "random":
            return self.split_prefix(users, keys)
        rows, pos = _batch_positions(self.seq, users)
        B, n = len(users), self.n_items
        from_end = self.seq.train_ptr[users + 1][rows] - 1 - pos
        last = from_end < self.n_last
        held = sp.csr_matrix((np.ones(int(last.sum()), dtype=np.float32), (rows[last], self.seq.train_items[pos[last]])),
                             shape=(B, n))
        held.sum_duplicates()
        held.data[:] = 1.0
        train = sp.csr_matrix(self.data.train[users], dtype=np.float32)
        everything = np.diff(held.indptr) >= np.diff(train.indptr)  # nothing would stay visible
        if everything.any():
            held = (sp.diags((~everything).astype(np.float32)) @ held).tocsr()
            held.eliminate_zeros()
        visible = (train - held).tocsr()
        visible.eliminate_zeros()
        for m in (visible, held):
            m.sort_indices()
        return visible.astype(np.float32), held.astype(np.float32)

    def split_prefix(self, users: np.ndarray, keys: np.ndarray):
        """``(visible, heldout, hidden_tail)`` of ``targets="random"`` (module docstring): per user, the
        target position is drawn uniformly among the eligible ones with ``hash_uniform(key)``.

        Returns CSR ``(B, n_items)`` float32 (the prefix's distinct items; the target item) and
        ``hidden_tail (B,)`` int64 (positions from the target on; 0 for users without a target)."""
        rows, pos = _batch_positions(self.seq, users)
        items = self.seq.train_items[pos]
        B, n = len(users), self.n_items
        starts = self.seq.train_ptr[users]
        lengths = self.seq.train_ptr[users + 1] - starts
        idx = pos - starts[rows]  # 0-based position within the sequence
        order = np.lexsort((idx, items, rows))  # groups of (row, item), earliest position first
        first = np.ones(len(order), dtype=bool)
        first[1:] = (rows[order][1:] != rows[order][:-1]) | (items[order][1:] != items[order][:-1])
        new_item = np.empty_like(first)
        new_item[order] = first
        # the part of the sequence a backbone holds: its last max_len positions (a target earlier than that
        # would condition on items the stored sequence no longer has)
        # a repeat can be a target only when the softmax ranks it against every item (not mask_condition)
        eligible = (new_item | (not self.mask_condition)) & (idx >= np.maximum(1, lengths - self.seq.max_len)[rows])
        count = np.bincount(rows[eligible], minlength=B)
        choice = np.floor(hash_uniform(keys, np.full(B, _PREFIX_COUNTER)) * count).astype(np.int64)  # in [0, count)
        rank = np.cumsum(eligible) - 1 - np.concatenate([[0], np.cumsum(count)])[:-1][rows]
        chosen = eligible & (rank == choice[rows])
        cut = lengths.copy()
        cut[rows[chosen]] = idx[chosen]
        prefix = idx < cut[rows]
        visible = sp.csr_matrix((np.ones(int(prefix.sum()), dtype=np.float32), (rows[prefix], items[prefix])),
                                shape=(B, n))
        visible.sum_duplicates()
        visible.data[:] = 1.0
        held = sp.csr_matrix((np.ones(int(chosen.sum()), dtype=np.float32), (rows[chosen], items[chosen])),
                             shape=(B, n))
        for m in (visible, held):
            m.sort_indices()
        return visible, held, (lengths - cut).astype(np.int64)

    # ------------------------------------------------------------------ the targets
    def recent_items(self, users: np.ndarray, visible: sp.csr_matrix,
                     hidden_tail: Optional[np.ndarray] = None) -> sp.csr_matrix:
        """``w_0`` ``(B, n_items)`` float64 CSR: the weighted last ``n_recent`` visible positions, max-normalised
        (positions in the ``hidden_tail (B,)`` of a prefix split never count, even when their item is visible)."""
        rows, pos = _batch_positions(self.seq, users)
        items = self.seq.train_items[pos]
        vis = _lookup(visible, rows, items) > 0
        if hidden_tail is not None:
            from_end = self.seq.train_ptr[users + 1][rows] - 1 - pos
            vis &= from_end >= np.asarray(hidden_tail)[rows]
        seen = np.cumsum(vis)  # visible positions up to and including p (global running count)
        lengths = np.bincount(rows, minlength=len(users))
        ends = np.cumsum(lengths)
        before = np.concatenate([[0], seen])[ends - lengths]  # count before each row starts
        total = np.concatenate([[0], seen])[ends] - before
        rank = total[rows] - (seen - before[rows])  # 0 = most recent visible position of the row
        keep = vis & (rank < self.n_recent)
        w = sp.csr_matrix((self.recency_decay ** rank[keep], (rows[keep], items[keep])),
                          shape=(len(users), self.n_items), dtype=np.float64)
        w.sum_duplicates()
        return row_max_normalise(w).tocsr()

    def _own_transitions(self, users: np.ndarray):
        """``(row, a, b, 1/k_a)`` arrays of the batch users' own transitions kept in ``P``."""
        rows, pos = _batch_positions(self.seq, users)
        items = self.seq.train_items[pos]
        same = rows[1:] == rows[:-1]
        r, a, b = rows[:-1][same], items[:-1][same], items[1:][same]
        kept = _lookup(self.graph, a, b) > 0
        r, a, b = r[kept], a[kept], b[kept]
        return r, a, b, self.inv_total[a]

    def _prepare_targets(self, state: RewardState) -> None:
        C, H = state.visible, state.heldout
        targets = [heldout_target(H)]  # weight 1/|H| per held-out item
        if self.graph is not None:
            B = state.batch_size
            r, a, b, own_w = self._own_transitions(state.users)
            cur = self.recent_items(state.users, C, state.hidden_tail)
            for k in range(1, self.n_hops + 1):
                own = sp.csr_matrix((_lookup(cur, r, a) * own_w, (r, b)), shape=(B, self.n_items))
                s = (cur @ self.graph - own).tocsr()
                s.data[s.data < _ZERO_TOL] = 0.0  # exact cancellations (and float residue) of own transitions
                s.eliminate_zeros()
                q = _row_sum_normalise(_outside(s, C))
                targets.append(self.hop_weight * self.gamma ** (k - 1) * q)
                cur = row_max_normalise(topk_per_row(s, self.top_m)).tocsr()
        self._pack_targets(state, targets)

    def __repr__(self) -> str:
        return (f"SequentialCollaborativeReward(n_last={self.n_last}, tau={self.tau}, hop_weight={self.hop_weight}, "
                f"n_hops={self.n_hops}, gamma={self.gamma}, n_recent={self.n_recent}, "
                f"recency_decay={self.recency_decay}, targets={self.targets!r}, mask_condition={self.mask_condition})")
