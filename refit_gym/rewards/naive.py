"""Naive terminal rewards for comparison with ReFiT's, and a user-function reward.

All use the same held-out split as :class:`~refit_gym.rewards.collaborative.CollaborativeReward`
(so the condition the agent sees is identical whatever the reward).
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional

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
    reads_heldout = True
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
    differentiable = True

    def _squared_errors(self, scores: torch.Tensor, state: RewardState) -> torch.Tensor:
        """``(x0_j - r_j)^2`` ``(B, n_items)``."""
        scores = self._check_scores(scores, state)
        target = torch.zeros_like(scores)
        for rows, cols in (state.tensors["visible_index"], state.tensors["heldout_index"]):
            target[rows, cols] = 1.0
        return (scores - target) ** 2

    def components(self, scores: torch.Tensor, state: RewardState) -> Dict[str, torch.Tensor]:
        return {"reconstruction": -self._squared_errors(scores, state).mean(dim=1)}

    def item_terms(self, scores: torch.Tensor, state: RewardState) -> torch.Tensor:
        """``-(x0_j - r_j)^2 / n_items`` ``(B, n_items)``: exactly separable (term j reads x0_j only)."""
        return -self._squared_errors(scores, state) / self.n_items


class FunctionReward(Reward):
    """Any terminal reward ``f(scores, context) -> (B,)``, optionally with per-item terms
    ``item_f(scores, context) -> (B, n_items)``.

    ``scores`` is the ``(B, n_items)`` float32 score tensor; ``context`` a dict with ``users``
    (``(B,)`` int64 tensor), ``visible`` and ``heldout`` (CSR ``(B, n_items)``), ``visible_index``
    and ``heldout_index`` (``(rows, cols)`` int64 tensors) and ``data`` (the dataset; read only its
    training split if the reward must stay blind to evaluation data).

    With ``item_f`` the reward supports :meth:`item_terms` (per-item credit assignment); ``f`` may
    then be omitted, and the reward is ``item_f(...).sum(1)``. When both are given, ``f`` must equal
    the sum of ``item_f`` (not checked), e.g. a linear reward ``item_f = lambda x, ctx: w * x``.
    ``differentiable=True`` declares that ``f`` (or ``item_f``) is a differentiable torch function of the
    scores, so reward-gradient agents may backpropagate through it.
    """

    name = "function"

    def __init__(self, data: InteractionData, f: Optional[Callable[[torch.Tensor, Dict[str, Any]], torch.Tensor]] = None,
                 holdout: float = 0.2, device="cpu", name: str = "function",
                 item_f: Optional[Callable[[torch.Tensor, Dict[str, Any]], torch.Tensor]] = None,
                 differentiable: bool = False):
        super().__init__(data, holdout, device)
        self.differentiable = bool(differentiable)
        if f is None and item_f is None:
            raise TypeError("FunctionReward needs a reward function f (or per-item terms item_f)")
        for what, fn in (("f", f), ("item_f", item_f)):
            if fn is not None and not callable(fn):
                raise TypeError(f"{what} must be callable, got {type(fn).__name__}")
        self.f, self.item_f, self.term = f, item_f, str(name)

    @property
    def supports_item_terms(self) -> bool:
        return self.item_f is not None

    def _context(self, scores: torch.Tensor, state: RewardState) -> Dict[str, Any]:
        return {"users": torch.as_tensor(state.users, device=scores.device), "visible": state.visible,
                "heldout": state.heldout, "visible_index": state.tensors["visible_index"],
                "heldout_index": state.tensors["heldout_index"], "data": self.data}

    def components(self, scores: torch.Tensor, state: RewardState) -> Dict[str, torch.Tensor]:
        scores = self._check_scores(scores, state)
        if self.f is None:
            return {self.term: self.item_terms(scores, state).sum(dim=1)}
        out = self.f(scores, self._context(scores, state))
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != (state.batch_size,):
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"reward function {self.f!r} returned {got}; expected a tensor of shape ({state.batch_size},)")
        return {self.term: out.to(scores.device, torch.float32)}

    def item_terms(self, scores: torch.Tensor, state: RewardState) -> torch.Tensor:
        """``item_f(scores, context)`` ``(B, n_items)`` float32; NotImplementedError without ``item_f``."""
        if self.item_f is None:
            return super().item_terms(scores, state)
        scores = self._check_scores(scores, state)
        out = self.item_f(scores, self._context(scores, state))
        shape = (state.batch_size, self.n_items)
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != shape:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"per-item reward function {self.item_f!r} returned {got}; expected a tensor of shape {shape}")
        return out.to(scores.device, torch.float32)

    def __repr__(self) -> str:
        return f"FunctionReward(name={self.term!r}, holdout={self.holdout}, item_terms={self.item_f is not None})"
