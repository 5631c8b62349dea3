"""Naive terminal rewards for comparison with ReFiT's, and a user-function reward.

All use the same held-out split as :class:`~refit_gym.rewards.collaborative.CollaborativeReward`
(so the condition the agent sees is identical whatever the reward).
"""
from __future__ import annotations

from typing import Any, Callable, Dict

import numpy as np
import torch

from refit_gym.data.dataset import InteractionData
from refit_gym.rewards.base import Reward, RewardState


class TopKReward(Reward):
    """Top-K ranking quality of the held-out items among the non-condition items.

    With ``r_1..r_K`` the K highest-scoring items outside the condition and ``hit_r = [r in H]``:

    * ``metric="ndcg"``: ``sum_r hit_r / log2(r + 1)`` divided by the ideal DCG of ``min(K, |H|)`` hits;
    * ``metric="recall"``: ``sum_r hit_r / min(K, |H|)`` (the hit rate of the held-out items).

    Users with no held-out item get 0. Membership is tested with sorted ``row * n_items + item`` keys
    (O(B K log nnz)); the only dense work is the O(B * n_items) top-K.

    Args:
        k: cut-off K (clipped to n_items).
        metric: "ndcg" or "recall".
    """

    name = "topk"
    METRICS = ("ndcg", "recall")

    def __init__(self, data: InteractionData, k: int = 20, metric: str = "ndcg", holdout: float = 0.2, device="cpu"):
        super().__init__(data, holdout, device)
        if int(k) < 1:
            raise ValueError(f"k={k!r}: the cut-off must be >= 1")
        if metric not in self.METRICS:
            raise ValueError(f"metric={metric!r}: expected one of {self.METRICS}")
        self.k, self.metric = min(int(k), self.n_items), metric

    def components(self, scores: torch.Tensor, state: RewardState) -> Dict[str, torch.Tensor]:
        scores = self._check_scores(scores, state)
        B, n = scores.shape
        top = torch.topk(self.visible_mask_fill(scores, state), self.k, dim=1).indices  # (B, K)
        hrows, hcols = state.tensors["heldout_index"]
        held_keys = hrows * n + hcols  # sorted: CSR order
        top_keys = torch.arange(B, device=scores.device).unsqueeze(1) * n + top
        pos = torch.searchsorted(held_keys, top_keys).clamp(max=max(held_keys.numel() - 1, 0))
        hit = (held_keys[pos] == top_keys).float() if held_keys.numel() else torch.zeros_like(top_keys, dtype=torch.float32)
        n_held = torch.as_tensor(np.diff(state.heldout.indptr), dtype=torch.long, device=scores.device)
        n_ideal = n_held.clamp(max=self.k)
        if self.metric == "recall":
            value = hit.sum(dim=1) / n_ideal.clamp(min=1)
        else:
            disc = 1.0 / torch.log2(torch.arange(2, self.k + 2, device=scores.device, dtype=torch.float32))
            idcg = torch.cat([torch.zeros(1, device=scores.device), disc.cumsum(0)])[n_ideal]
            value = (hit * disc).sum(dim=1) / idcg.clamp(min=1e-12)
        return {self.metric: torch.where(n_held > 0, value, torch.zeros_like(value))}

    def __repr__(self) -> str:
        return f"TopKReward(k={self.k}, metric={self.metric!r}, holdout={self.holdout})"


class ReconstructionReward(Reward):
    """``-mean_j (x0_j - r_j)^2`` with ``r`` the user's full binary training row (visible + held-out).

    The denoising objective itself: uninformative for ranking (it rewards reproducing the history,
    not ranking the held-out items above the rest); kept for the paper's comparison.
    """

    name = "reconstruction"

    def components(self, scores: torch.Tensor, state: RewardState) -> Dict[str, torch.Tensor]:
        scores = self._check_scores(scores, state)
        target = torch.zeros_like(scores)
        for rows, cols in (state.tensors["visible_index"], state.tensors["heldout_index"]):
            target[rows, cols] = 1.0
        return {"reconstruction": -((scores - target) ** 2).mean(dim=1)}


class FunctionReward(Reward):
    """Any terminal reward ``f(scores, context) -> (B,)``.

    ``scores`` is the ``(B, n_items)`` float32 score tensor; ``context`` a dict with ``users``
    (``(B,)`` int64 tensor), ``visible`` and ``heldout`` (CSR ``(B, n_items)``), ``visible_index``
    and ``heldout_index`` (``(rows, cols)`` int64 tensors) and ``data`` (the dataset; read only its
    training split if the reward must stay blind to evaluation data).
    """

    name = "function"

    def __init__(self, data: InteractionData, f: Callable[[torch.Tensor, Dict[str, Any]], torch.Tensor],
                 holdout: float = 0.2, device="cpu", name: str = "function"):
        super().__init__(data, holdout, device)
        if not callable(f):
            raise TypeError(f"f must be callable, got {type(f).__name__}")
        self.f, self.term = f, str(name)

    def components(self, scores: torch.Tensor, state: RewardState) -> Dict[str, torch.Tensor]:
        scores = self._check_scores(scores, state)
        ctx = {"users": torch.as_tensor(state.users, device=scores.device), "visible": state.visible,
               "heldout": state.heldout, "visible_index": state.tensors["visible_index"],
               "heldout_index": state.tensors["heldout_index"], "data": self.data}
        out = self.f(scores, ctx)
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != (state.batch_size,):
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"reward function {self.f!r} returned {got}; expected a tensor of shape ({state.batch_size},)")
        return {self.term: out.to(scores.device, torch.float32)}
