"""ReFiT's collaborative-signal reward.

For one user let ``C`` be the visible (condition) training items, ``H`` the held-out training items
(``C`` and ``H`` partition the user's training items, see :func:`~refit_gym.rewards.base.split_heldout`),
``N = {items} \\ C`` the items the model may recommend, and ``x0`` the final item scores. With

    log p(j) = x0_j / tau - log sum_{l in N} exp(x0_l / tau)            for j in N

(a softmax over the non-condition items: condition items are masked out, as the CF ranking masks a user's known
items; with ``mask_condition=False`` the sum runs over every item, as a ranking that keeps the history does, e.g. the
sequence scenarios'), the terminal reward is

    R = (1/|H|) sum_{j in H} log p(j)                                     [likelihood; 0 if H is empty]
      + lambda * sum_{k=1..K} gamma^(k-1) sum_{j in N} q_k(j) log p(j)     [hop_k]
      + mu * sum_{j in N} q_s(j) log p(j)                                  [social; only with social data]

The first term is the exact multinomial log-likelihood of the held-out items, averaged over them.
The soft targets are built from the *visible* items only, so a held-out item never feeds its own
user's signal directly:

* ``s_1 = topM(c G)``, ``s_k = topM(maxnorm(s_{k-1}) G)`` with ``c`` the binary visible row and
  ``G`` the degree-normalised item-item graph of the training data (top-``graph_top_m`` per row,
  :func:`refit_gym.data.graph.item_item_graph`); ``topM`` keeps the ``top_m`` largest entries of
  the row. ``q_k = s_k restricted to N, normalised to sum 1`` (a zero row gives a zero term).
* ``q_s`` = the items of the user's social neighbours, ``D_s^-1 S R`` (training items only,
  :func:`refit_gym.data.graph.social_item_signal`), restricted to ``N`` and normalised to sum 1.

All terms are weighted sums of ``log p`` over sparse ``(row, item, weight)`` triplets, so the cost
per batch is O(nnz of the targets) sparse work at reset plus O(B * n_items) for the log-softmax;
nothing of size ``n_users x n_items`` is ever dense. :meth:`CollaborativeReward.components`
returns the terms already weighted (``likelihood``, ``hop1`` .. ``hopK``, ``social``) so that
they sum to ``R``.
"""
from __future__ import annotations

from typing import Dict, List, Optional

import numpy as np
import scipy.sparse as sp
import torch

from refit_gym.data.dataset import InteractionData
from refit_gym.data.graph import item_item_graph, row_max_normalise, social_item_signal, topk_per_row
from refit_gym.rewards.base import Reward, RewardState, Scores, heldout_target
from refit_gym.scores import LowRankScores


def _row_sum_normalise(m: sp.csr_matrix) -> sp.csr_matrix:
    """Divide each row by its sum (rows summing to 0 stay 0)."""
    s = np.asarray(m.sum(axis=1)).ravel()
    inv = np.zeros_like(s, dtype=np.float64)
    nz = s > 0
    inv[nz] = 1.0 / s[nz]
    return (sp.diags(inv) @ m).tocsr()


def _outside(m: sp.csr_matrix, condition: sp.csr_matrix) -> sp.csr_matrix:
    """``m`` with the entries at condition items removed (``condition`` binary, same shape)."""
    out = (m - m.multiply(condition)).tocsr()
    out.eliminate_zeros()
    return out


class CollaborativeReward(Reward):
    """The ReFiT terminal reward (see the module docstring for the exact formula).

    Args:
        data: the dataset (only ``data.train`` and ``data.social`` are read).
        holdout: ``rho``, the fraction of each user's training items held out (default 0.2).
        holdout_order: which of them: ``"random"`` per episode, or ``"latest"`` (the most recent by the data's
            ``train_time``; see :class:`~refit_gym.rewards.base.Reward`).
        tau: softmax temperature (> 0).
        hop_weight: ``lambda`` >= 0, weight of the high-order terms (0 disables them).
        n_hops: ``K`` >= 0, number of item-item hops.
        gamma: decay in (0, 1] of the hop weights ``gamma^(k-1)``.
        social_weight: ``mu`` >= 0, weight of the social term (ignored when ``data.social`` is None).
        top_m: entries kept per user and hop in the soft targets.
        graph_top_m: entries kept per row of the item-item graph ``G``.
        graph: a precomputed ``G`` (CSR ``(n_items, n_items)``); built from ``data.train`` if None.
        standardize: score each row's standardised scores ``(s - mean(s)) / std(s)`` (over all items)
            instead of the raw ones, so the reward depends on the ranking geometry only and not on the scale
            of ``x0`` (which a ranking ignores); ``tau`` is then in units of the scores' spread.
        mask_condition: the softmax leaves the condition items out (True, the default: they are masked in a CF
            ranking), or runs over every item (False: for a protocol that ranks the history too, so the
            reward also penalises scoring the condition items above the targets).
        device: where score tensors live.
    """

    name = "refit"
    reads_heldout = True
    differentiable = True

    def __init__(self, data: InteractionData, holdout: float = 0.2, tau: float = 1.0, hop_weight: float = 0.1,
                 n_hops: int = 2, gamma: float = 0.5, social_weight: float = 0.1, top_m: int = 200,
                 graph_top_m: int = 50, graph: Optional[sp.csr_matrix] = None, standardize: bool = False,
                 mask_condition: bool = True, device="cpu", holdout_order: str = "random"):
        super().__init__(data, holdout, device, holdout_order)
        self.standardize, self.mask_condition = bool(standardize), bool(mask_condition)
        data = self.data  # the InteractionData view (the argument may be e.g. a SequentialData)
        if not tau > 0:
            raise ValueError(f"tau={tau!r}: the temperature must be > 0")
        if hop_weight < 0 or social_weight < 0:
            raise ValueError(f"hop_weight={hop_weight!r}, social_weight={social_weight!r}: weights must be >= 0")
        if int(n_hops) < 0:
            raise ValueError(f"n_hops={n_hops!r}: expected >= 0")
        if not 0 < gamma <= 1:
            raise ValueError(f"gamma={gamma!r}: expected a decay in (0, 1]")
        if int(top_m) < 1:
            raise ValueError(f"top_m={top_m!r}: expected >= 1")
        self.tau, self.hop_weight, self.n_hops, self.gamma = float(tau), float(hop_weight), int(n_hops), float(gamma)
        self.social_weight = float(social_weight) if data.social is not None else 0.0
        self.top_m = int(top_m)
        self.graph = None
        if self.hop_weight > 0 and self.n_hops > 0:
            if graph is None:
                graph = item_item_graph(data.train, int(graph_top_m))
            graph = sp.csr_matrix(graph, dtype=np.float32)
            if graph.shape != (self.n_items, self.n_items):
                raise ValueError(f"graph has shape {graph.shape}, expected ({self.n_items}, {self.n_items})")
            self.graph = graph
        # D_s^-1 S R over all users: O(n_users * top_m) memory, sparse
        self.social_signal = (social_item_signal(data.social, data.train, self.top_m)
                              if self.social_weight > 0 else None)

    @property
    def term_names(self) -> List[str]:
        names = ["likelihood"]
        if self.graph is not None:
            names += [f"hop{k}" for k in range(1, self.n_hops + 1)]
        if self.social_signal is not None:
            names.append("social")
        return names

    def _prepare_targets(self, state: RewardState) -> None:
        C, H = state.visible, state.heldout
        targets = [heldout_target(H)]  # weight 1/|H| per held-out item
        if self.graph is not None:
            cur = C
            for k in range(1, self.n_hops + 1):
                cur = row_max_normalise(topk_per_row((cur @ self.graph).tocsr(), self.top_m)).tocsr()
                q = _row_sum_normalise(_outside(cur, C))
                targets.append(self.hop_weight * self.gamma ** (k - 1) * q)
        if self.social_signal is not None:
            q = _row_sum_normalise(_outside(self.social_signal[state.users], C))
            targets.append(self.social_weight * q)
        self._pack_targets(state, targets)

    def _pack_targets(self, state: RewardState, targets: List[sp.spmatrix]) -> None:
        """Store the weighted target matrices (one ``(B, n_items)`` per term of :attr:`term_names`, in
        order) as the flat ``(row, col, weight, term)`` tensors :meth:`components` reads."""
        B = state.batch_size
        rows, cols, vals, seg = [], [], [], []
        for s, t in enumerate(targets):
            t = sp.csr_matrix(t)
            rows.append(np.repeat(np.arange(B), np.diff(t.indptr)))
            cols.append(t.indices)
            vals.append(t.data)
            seg.append(np.full(t.nnz, s))
        dev = self.device
        cat = np.concatenate
        state.tensors["target_rows"] = torch.as_tensor(cat(rows), dtype=torch.long, device=dev)
        state.tensors["target_cols"] = torch.as_tensor(cat(cols).astype(np.int64), dtype=torch.long, device=dev)
        state.tensors["target_weights"] = torch.as_tensor(cat(vals), dtype=torch.float32, device=dev)
        state.tensors["target_terms"] = torch.as_tensor(cat(seg), dtype=torch.long, device=dev)

    def _scaled(self, scores: torch.Tensor) -> torch.Tensor:
        """``scores / tau``, standardised per row first when ``standardize`` (``(B, n_items)``)."""
        if self.standardize:
            scores = (scores - scores.mean(dim=1, keepdim=True)) / scores.std(dim=1, keepdim=True).clamp_min(1e-8)
        return scores / self.tau

    def _softmax_support(self, z: torch.Tensor, state: RewardState) -> torch.Tensor:
        """``z`` ``(B, n_items)`` with the items outside the softmax at -inf: the condition items when
        ``mask_condition``, none otherwise (then ``z`` itself)."""
        return self.visible_mask_fill(z, state) if self.mask_condition else z

    def log_probs(self, scores: torch.Tensor, state: RewardState) -> torch.Tensor:
        """``log softmax(scores / tau)`` over the non-condition items, ``(B, n_items)`` (-inf at condition items;
        over every item when not ``mask_condition``)."""
        z = self._softmax_support(self._scaled(scores), state)
        return z - torch.logsumexp(z, dim=1, keepdim=True)

    @property
    def reads_low_rank(self) -> bool:
        """Factored scores are read as such (:func:`refit_gym.scores.low_rank_logsumexp`) unless standardised."""
        return not self.standardize

    def components(self, scores: Scores, state: RewardState) -> Dict[str, torch.Tensor]:
        scores = self._check_scores(scores, state)
        t = state.tensors
        rows, cols, w, seg = t["target_rows"], t["target_cols"], t["target_weights"], t["target_terms"]
        # lse (B,): targets lie outside the condition (or nothing is masked), so it is finite where used
        if isinstance(scores, LowRankScores):
            scaled = scores.scaled(1.0 / self.tau)
            lse = scaled.logsumexp(t["visible_index"] if self.mask_condition else None)
            target_scores = scaled.at(rows, cols)
        else:
            scaled = self._scaled(scores)
            lse = torch.logsumexp(self._softmax_support(scaled, state), dim=1)
            target_scores = scaled[rows, cols]
        logp = target_scores - lse[rows]  # (E,)
        names = self.term_names
        out = torch.zeros(len(names), state.batch_size, dtype=torch.float32, device=logp.device)
        out.index_put_((seg, rows), w * logp, accumulate=True)
        return {name: out[s] for s, name in enumerate(names)}

    def __repr__(self) -> str:
        return (f"CollaborativeReward(holdout={self.holdout}, tau={self.tau}, hop_weight={self.hop_weight}, "
                f"n_hops={self.n_hops}, gamma={self.gamma}, social_weight={self.social_weight}, "
                f"mask_condition={self.mask_condition})")
