"""A dense collaborative-signal reward: agreement of the final scores with multi-hop graph scores.

For one user let ``C`` be the visible (condition) items, ``N = {items} \\ C`` the candidate items,
``c`` the binary visible row and ``W`` an item-item graph (``graph="cooc"``: the degree-normalised
co-occurrence graph of :func:`refit_gym.data.graph.item_item_graph`; ``graph="ease"``: the positive
part of EASE's closed-form item-item weights; or any ``(n_items, n_items)`` sparse matrix). The
collaborative score of the candidates is the k-hop path sum

    s = sum_{k=1..K} gamma^(k-1) c W^k                  (u -> i -> j paths, then i -> j -> l, ...)

and, with ``z(v)`` the standardisation of ``v`` over ``N`` (zero mean, unit variance), the terminal
reward is

    R = - (1/|N|) sum_{j in N} (z(x0)_j - z(s)_j)^2          (in [-4, 0]; 0 when the orders agree exactly)

so it rewards final scores that rank the candidates like the user's multi-hop neighbourhood does,
whatever the scale of ``x0``. Every candidate weighs the same, the bulk of the catalogue as much as the few items at
the top that a top-20 list shows. ``target="softmax"`` weighs the top instead: with ``p = softmax(z(s) / tau)`` and
``q = softmax(z(x0) / tau)`` over ``N`` (temperature ``tau > 0``, a listwise, ListNet-style target),

    R = - KL(p || q) = sum_{j in N} p_j (log q_j - log p_j)            (<= 0; 0 when the orders agree exactly)

whose gradient in ``z(x0)`` is ``(p - q) / tau``: only items that ``s`` or ``x0`` puts near the top carry weight, the
more so the smaller ``tau``. Its optimum is the same, ``z(x0) = z(s)``. Unlike the held-out log-likelihood of
:class:`~refit_gym.rewards.collaborative.CollaborativeReward`, every candidate item carries signal,
so the score-function gradient is far less noisy. Only ``data.train`` is read (through ``W`` and the
visible items); the held-out split is the same as every other reward's, so the condition the agent
sees is identical whatever the reward.

Per-item terms (:meth:`GraphScoreReward.item_terms`, for per-item credit assignment). With
``n = |N|``, ``rho = (1/n) sum_{j in N} z(x0)_j z(s)_j`` (the correlation of ``x0`` and ``s`` over
the candidates) and ``a = (1/n) sum_{j in N} z(x0)_j^2`` (1, or 0 when ``x0`` is constant on ``N``),

    r_j = -(1/n) [ (z(x0)_j - z(s)_j)^2 + (rho - 1) (z(x0)_j^2 - a) ]        for j in N, 0 elsewhere

Their sum is ``R`` exactly (the second part sums to 0 over ``N``). The second part is there because
the plain squared gaps ``-(z(x0)_j - z(s)_j)^2 / n``, which also sum to ``R``, are a poor split:
``R = 2 (rho - 1)`` does not depend on the scale of ``x0``, but each squared gap does, and the
terms couple through the mean and std of ``x0`` over ``N``. Per-item credit follows, in expectation,
``sum_j d r_j / d x0_j`` instead of ``d R / d x0_j``; the terms left out,
``sum_{k != j} d r_k / d x0_j``, amount for the squared gaps to ``(2 / (n sigma)) (1 - rho) z(x0)_j``
(``sigma`` the std of ``x0`` over ``N``; up to O(1/n) relative), as large as the true gradient
``d R / d x0_j = (2 / (n sigma)) (z(s)_j - rho z(x0)_j)`` unless ``rho`` is near 1: per-item credit
would add a systematic shrinkage of the spread of the policy mean (measured on random data,
n = 500: 77% relative error at rho = 0.25, 33% at rho = 0.8). The correction cancels that leading
cross-derivative; what remains comes from the O(1/n) dependence of the mean, std and ``rho`` on a
single item, so per-item credit with these terms has a relative bias of O(1/|N|) (measured 0.6% at
n = 500). They are still not exactly separable: the estimator is not exactly unbiased.

Cost: ``W`` is kept to ``graph_top_m`` entries per row (O(n_items * graph_top_m) memory); ``s`` is a
sparse product per batch at reset, O(nnz(c) * graph_top_m) per hop, and the reward is O(B * n_items).
"""
from __future__ import annotations

from types import SimpleNamespace
from typing import Dict, Optional, Union

import numpy as np
import scipy.sparse as sp
import torch

from refit_gym.data.dataset import InteractionData
from refit_gym.data.graph import item_item_graph, topk_per_row
from refit_gym.rewards.base import Reward, RewardState

GRAPHS = ("cooc", "ease")
TARGETS = ("zscore", "softmax")


def ease_graph(train: sp.csr_matrix, lam: float = 1000.0, top_m: Optional[int] = None):
    """EASE's item-item weights ``B = I - P diag(1/diag P)``, ``P = (X^T X + lam I)^-1``, zero diagonal.

    ``top_m=None``: the dense float32 array ``(n_items, n_items)`` with its negative weights (they
    order the bulk of the candidates); otherwise the positive part, ``top_m`` largest per row, as CSR.
    """
    from refit_gym.baselines import EASE  # the closed form lives with the baselines

    weights = EASE(lam=lam).fit(SimpleNamespace(train=train)).weights  # EASE.fit reads only .train
    if top_m is None:
        return weights
    return topk_per_row(sp.csr_matrix(np.maximum(weights, 0.0)), top_m).astype(np.float32)


class GraphScoreReward(Reward):
    """Agreement of ``x0`` with the user's multi-hop collaborative scores (formula in the module docstring).

    Args:
        data: the dataset (only ``data.train`` is read).
        graph: "cooc", "ease", or a precomputed ``(n_items, n_items)`` matrix ``W`` (sparse or dense).
        n_hops: K >= 1, path lengths summed. gamma: decay in (0, 1] of the hop weights.
        graph_top_m: entries kept per row of ``W``; None keeps "ease" dense (O(n_items^2) memory, like
            EASE itself; a pruned positive EASE graph loses the order of the bulk of the candidates).
        ease_lambda: EASE's L2 weight (graph="ease").
        holdout: fraction of training items held out of the condition (same split as every reward).
        holdout_order: ``"random"`` or ``"latest"``, as :class:`~refit_gym.rewards.base.Reward`.
        recency: None (the binary visible row ``c``), or ``w_min``: ``c`` weighted by recency before the hops
            (:meth:`~refit_gym.data.InteractionData.recency_weights` ``(w_min, 1)``; with ``graph="ease"`` and one
            hop the target ranks as :class:`~refit_gym.baselines.TEASE`); the data must order its training items.
        target: ``"zscore"`` (the squared gap of the standardised scores, every candidate alike) or ``"softmax"``
            (``-KL(p || q)`` of the candidates' softmaxes at ``temperature``, top-weighted); module docstring.
        temperature: ``tau > 0`` of ``target="softmax"``, in units of the candidates' standard deviation.
    """

    name = "graph-score"
    differentiable = True

    def __init__(self, data: InteractionData, graph: Union[str, sp.spmatrix, np.ndarray] = "ease", n_hops: int = 1,
                 gamma: float = 0.5, graph_top_m: Optional[int] = None, ease_lambda: float = 1000.0, holdout: float = 0.2,
                 device="cpu", holdout_order: str = "random", recency: Optional[float] = None,
                 target: str = "zscore", temperature: float = 1.0):
        super().__init__(data, holdout, device, holdout_order)
        if target not in TARGETS:
            raise ValueError(f"target={target!r}: expected one of {TARGETS}")
        if not float(temperature) > 0:
            raise ValueError(f"temperature={temperature!r}: expected > 0")
        self.target, self.temperature = target, float(temperature)
        # the visible row weighted by recency (T-DiffRec's weights, oldest item w_min = recency, newest 1): T-EASE's input
        self.recency = None if recency is None else self.data.recency_weights(float(recency), 1.0)
        if int(n_hops) < 1:
            raise ValueError(f"n_hops={n_hops!r}: expected >= 1")
        if not 0 < gamma <= 1:
            raise ValueError(f"gamma={gamma!r}: expected a decay in (0, 1]")
        if isinstance(graph, str):
            if graph not in GRAPHS:
                raise ValueError(f"graph={graph!r}: expected one of {GRAPHS} or a sparse matrix")
            W = item_item_graph(self.data.train, int(graph_top_m or 50)) if graph == "cooc" else \
                ease_graph(self.data.train, float(ease_lambda), graph_top_m)
        else:
            W = sp.csr_matrix(graph, dtype=np.float32) if sp.issparse(graph) else np.asarray(graph, dtype=np.float32)
        if W.shape != (self.n_items, self.n_items):
            raise ValueError(f"graph has shape {W.shape}, expected ({self.n_items}, {self.n_items})")
        self.graph, self.n_hops, self.gamma = W, int(n_hops), float(gamma)

    def _prepare_targets(self, state: RewardState) -> None:
        cur = state.visible if self.recency is None else state.visible.multiply(self.recency[state.users]).tocsr()
        s = 0.0
        for k in range(self.n_hops):
            cur = cur @ self.graph  # sparse @ sparse stays sparse; sparse @ dense is a dense (B, n_items) array
            s = s + cur * self.gamma ** k
        s = s.toarray() if sp.issparse(s) else np.asarray(s)
        state.tensors["graph_score"] = torch.as_tensor(s, dtype=torch.float32, device=self.device)

    def _standardise(self, v: torch.Tensor, candidate: torch.Tensor) -> torch.Tensor:
        """``z(v)`` over the candidate items of each row (0 elsewhere): ``(B, n_items)``."""
        n = candidate.sum(dim=1, keepdim=True).clamp(min=1)
        v = torch.where(candidate, v, torch.zeros_like(v))
        mean = v.sum(dim=1, keepdim=True) / n
        dev = torch.where(candidate, v - mean, torch.zeros_like(v))
        std = (dev.pow(2).sum(dim=1, keepdim=True) / n).sqrt()
        return dev / std.clamp(min=1e-8)

    def _standardised(self, scores: torch.Tensor, state: RewardState):
        """``(z(x0), z(s), candidate)``, each ``(B, n_items)`` (z is 0 outside the candidates)."""
        scores = self._check_scores(scores, state)
        candidate = torch.isfinite(self.visible_mask_fill(scores, state))
        return self._standardise(scores, candidate), self._standardise(state.tensors["graph_score"], candidate), candidate

    def components(self, scores: torch.Tensor, state: RewardState) -> Dict[str, torch.Tensor]:
        z_x, z_s, candidate = self._standardised(scores, state)
        if self.target == "softmax":
            log_q, log_p = (torch.log_softmax(z.masked_fill(~candidate, float("-inf")) / self.temperature, dim=1)
                            for z in (z_x, z_s))
            gap = torch.where(candidate, log_q - log_p, torch.zeros_like(log_q))  # -inf - -inf off the candidates
            return {"graph_score": (log_p.exp() * gap).sum(dim=1)}
        gap = z_x - z_s
        n = candidate.sum(dim=1).clamp(min=1)
        return {"graph_score": -gap.pow(2).sum(dim=1) / n}

    @property
    def supports_item_terms(self) -> bool:
        """The squared gaps split per item (:meth:`item_terms`); the softmax target's normaliser couples every item."""
        return self.target == "zscore"

    def item_terms(self, scores: torch.Tensor, state: RewardState) -> torch.Tensor:
        """Per-item terms ``(B, n_items)`` summing to the reward: the squared gaps plus a correction that
        sums to 0 (formula, and the O(1/|N|) bias of per-item credit with them, in the module docstring);
        0 at the visible (non-candidate) items."""
        if not self.supports_item_terms:
            return super().item_terms(scores, state)  # raises, naming the reward
        z_x, z_s, candidate = self._standardised(scores, state)
        n = candidate.sum(dim=1, keepdim=True).clamp(min=1)
        a = z_x.pow(2).sum(dim=1, keepdim=True) / n
        rho = (z_x * z_s).sum(dim=1, keepdim=True) / n
        terms = -((z_x - z_s).pow(2) + (rho - 1) * (z_x.pow(2) - a)) / n
        return torch.where(candidate, terms, torch.zeros_like(terms))

    def __repr__(self) -> str:
        kind = f"nnz={self.graph.nnz}" if sp.issparse(self.graph) else "dense"
        target = "" if self.target == "zscore" else f", target=softmax, temperature={self.temperature}"
        return f"GraphScoreReward(n_hops={self.n_hops}, gamma={self.gamma}, graph={kind}{target})"
