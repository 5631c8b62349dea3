"""Item scores kept as their factors: ``u @ weight.T`` without the dense ``(B, n_items)`` matrix.

A backbone whose final state lives in an embedding space (DreamRec: ``x0 (B, d)`` against the item embeddings
``E (n_items, d)``) scores every item by an inner product. A softmax over those scores (the ReFiT reward's
log-likelihood, DreamRec's cross-entropy) needs ``log sum_j exp(u_b . w_j)`` per row. Formed densely, that is a
``(B, n_items)`` product followed by several full passes over it (scale, mask, max, exp, sum, and as many again
backwards); on a CPU those passes are bound by memory traffic, not arithmetic, and cost several times the
product itself. :func:`low_rank_logsumexp` computes the same numbers row chunk by row chunk, each chunk's scores
small enough to stay in cache. When gradients are wanted, the forward pass forms them from the same chunk for an
upstream gradient of ones, and the backward pass scales them: ``6 B n d`` FLOPs for forward plus backward, as
dense, in a fraction of the time. (Only item-factor gradients under unequal row weights form the scores again.)

:class:`LowRankScores` carries the factors from a backbone (``DenoiserAdapter.reward_scores``) to a reward that
can use them (:class:`~refit_gym.rewards.collaborative.CollaborativeReward`); every other reward receives
:meth:`LowRankScores.dense` (:meth:`refit_gym.rewards.base.Reward._check_scores`), so the form is an
optimisation that never changes a value beyond float rounding.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import torch

__all__ = ["LowRankScores", "chunk_bounds", "chunk_rows", "low_rank_cross_entropy", "low_rank_logsumexp",
           "sorted_entries"]

#: entries of one chunk's ``(rows, n_items)`` score block on a CPU: 2 MiB of float32, which stays in cache
CPU_CHUNK_ELEMENTS = 2 ** 19
#: the same on an accelerator, where kernel launches rather than memory traffic are the cost: 256 MiB
DEVICE_CHUNK_ELEMENTS = 2 ** 26


def chunk_rows(n_items: int, device: torch.device) -> int:
    """Rows per chunk of a row-wise pass over a ``(B, n_items)`` matrix on ``device`` (see :data:`CPU_CHUNK_ELEMENTS`)."""
    elements = CPU_CHUNK_ELEMENTS if device.type == "cpu" else DEVICE_CHUNK_ELEMENTS
    return max(1, elements // max(n_items, 1))


def sorted_entries(entries: Optional[Tuple[torch.Tensor, torch.Tensor]], device: torch.device
                   ) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
    """``(rows, cols)`` int64 entries on ``device``, stably sorted by row (what :func:`chunk_bounds` reads), or
    ``(None, None)`` when ``entries`` is None or empty."""
    if entries is None or not entries[0].numel():
        return None, None
    rows, cols = (t.to(device, torch.long) for t in entries)
    order = torch.argsort(rows, stable=True)
    return rows[order], cols[order]


def chunk_bounds(rows: Optional[torch.Tensor], n_rows: int, size: int) -> Optional[torch.Tensor]:
    """For sorted ``rows (E,)``, the index of the first entry of every chunk ``[k * size, ...)``: ``(n_chunks + 1,)``."""
    if rows is None:
        return None
    starts = torch.arange(0, n_rows + size, size, device=rows.device).clamp_max(n_rows)
    return torch.searchsorted(rows, starts)


def _masked_block(u: torch.Tensor, weight: torch.Tensor, lo: int, hi: int, rows, cols, bounds, k: int) -> torch.Tensor:
    """The scores ``(hi - lo, n_items)`` of rows ``lo:hi`` with the excluded entries at -inf."""
    s = u[lo:hi] @ weight.t()
    if rows is not None:
        a, b = int(bounds[k]), int(bounds[k + 1])
        if b > a:
            s[rows[a:b] - lo, cols[a:b]] = float("-inf")
    return s


def _softmax_block(s: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(logsumexp (rows,), softmax (rows, n_items))`` of a score block, the softmax formed in place of ``s``.
    A row whose scores are all -inf gets logsumexp -inf and a zero softmax."""
    m = s.amax(dim=1)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    s.sub_(m[:, None]).exp_()
    total = s.sum(dim=1)
    s.mul_(torch.where(total > 0, 1.0 / total, torch.zeros_like(total))[:, None])
    return m + total.log(), s


class _LowRankLogSumExp(torch.autograd.Function):
    """``log sum_j exp(u_b . w_j)`` in row chunks. With ``grads=True`` the forward pass also forms, from the same
    chunk, the gradients for an upstream gradient of ones: ``G_u = softmax @ weight`` and ``G_w = softmax^T @ u``.
    The backward pass then scales them (``grad_u = g[:, None] * G_u``; ``grad_w = c * G_w`` when every row has
    the same upstream gradient ``c``, as under a mean or sum of the rows, less the part of the rows whose gradient
    is 0) instead of forming the scores again. Only ``grad_w`` under unequal nonzero row gradients forms them all
    again."""

    @staticmethod
    def forward(ctx, u, weight, rows, cols, grads: bool):
        B, n = u.shape[0], weight.shape[0]
        size = chunk_rows(n, u.device)
        bounds = chunk_bounds(rows, B, size)
        need_u, need_w = grads and ctx.needs_input_grad[0], grads and ctx.needs_input_grad[1]
        out = torch.empty(B, dtype=u.dtype, device=u.device)
        grad_u = torch.empty_like(u) if need_u else None
        grad_w = torch.zeros_like(weight) if need_w else None
        for k, lo in enumerate(range(0, B, size)):
            hi = min(lo + size, B)
            block = _masked_block(u, weight, lo, hi, rows, cols, bounds, k)
            if not (need_u or need_w):
                out[lo:hi] = torch.logsumexp(block, dim=1)
                continue
            out[lo:hi], p = _softmax_block(block)
            if need_u:
                grad_u[lo:hi] = p @ weight
            if need_w:
                grad_w.addmm_(p.t(), u[lo:hi])
        ctx.save_for_backward(u, weight, out, rows, cols, bounds, grad_u, grad_w)
        ctx.size = size
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        u, weight, lse, rows, cols, bounds, unit_u, unit_w = ctx.saved_tensors
        need_u, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_u = grad[:, None] * unit_u if need_u and unit_u is not None else None
        grad_w = None
        live = grad != 0
        values = grad[live]
        if need_w and unit_w is not None and (values.numel() == 0 or bool((values == values[0]).all())):
            # one upstream gradient c on every row but some zero ones (rows without a target, a masked mean):
            # c * (the forward's sum over all rows - the zero rows' part, formed again for those rows only)
            c = values[0] if values.numel() else torch.zeros((), dtype=grad.dtype, device=grad.device)
            grad_w = unit_w * c
            dead = torch.nonzero(~live).squeeze(1)
            if values.numel() and dead.numel():
                grad_w.sub_(_rows_item_gradient(u, weight, lse, rows, cols, dead), alpha=float(c))
        elif need_w or (need_u and grad_u is None):  # unequal row gradients: form the scores again
            got_u, got_w = _formed_again(u, weight, lse, rows, cols, bounds, ctx.size, grad, need_u and grad_u is None,
                                         need_w)
            grad_u, grad_w = (got_u if grad_u is None else grad_u), got_w
        return grad_u, grad_w, None, None, None


def _formed_again(u, weight, lse, rows, cols, bounds, size: int, grad, need_u: bool, need_w: bool):
    """``(grad_u or None, grad_w or None)`` of the rows' log-sum-exps under the upstream gradient ``grad (B,)``, the
    scores formed again chunk by chunk."""
    grad_u = torch.empty_like(u) if need_u else None
    grad_w = torch.zeros_like(weight) if need_w else None
    safe_lse = torch.where(torch.isfinite(lse), lse, torch.zeros_like(lse))  # all-excluded rows: p = 0
    for k, lo in enumerate(range(0, u.shape[0], size)):
        hi = min(lo + size, u.shape[0])
        p = _masked_block(u, weight, lo, hi, rows, cols, bounds, k)
        p.sub_(safe_lse[lo:hi, None]).exp_().mul_(grad[lo:hi, None])  # softmax * upstream gradient
        if need_u:
            grad_u[lo:hi] = p @ weight
        if need_w:
            grad_w.addmm_(p.t(), u[lo:hi])
    return grad_u, grad_w


def _rows_item_gradient(u, weight, lse, rows, cols, subset: torch.Tensor) -> torch.Tensor:
    """``sum_{b in subset} softmax_b^T u_b`` ``(n_items, r)`` for the sorted row indices ``subset``, their
    exclusions kept."""
    sub_rows = sub_cols = None
    if rows is not None:
        position = torch.full((u.shape[0],), -1, dtype=torch.long, device=u.device)
        position[subset] = torch.arange(len(subset), device=u.device)
        keep = position[rows] >= 0
        sub_rows, sub_cols = position[rows[keep]], cols[keep]  # still sorted: subset is
    size = chunk_rows(weight.shape[0], u.device)
    bounds = chunk_bounds(sub_rows, len(subset), size)
    ones = torch.ones(len(subset), dtype=u.dtype, device=u.device)
    return _formed_again(u[subset], weight, lse[subset], sub_rows, sub_cols, bounds, size, ones, False, True)[1]


def low_rank_logsumexp(u: torch.Tensor, weight: torch.Tensor,
                       exclude: Optional[Tuple[torch.Tensor, torch.Tensor]] = None) -> torch.Tensor:
    """``log sum_j exp(u_b . weight_j)`` per row ``(B,)``, over the items not excluded for that row.

    Equals ``torch.logsumexp((u @ weight.T).index_put_(exclude, -inf), 1)`` (-inf for a row with every item
    excluded) and is differentiable in ``u`` and ``weight``, without the ``(B, n_items)`` matrix: the scores are
    formed in row chunks (:data:`CPU_CHUNK_ELEMENTS`), and when gradients are wanted each chunk also forms them
    (see :class:`_LowRankLogSumExp`; the backward pass scales them).

    Args:
        u: ``(B, r)`` float row factors.
        weight: ``(n_items, r)`` float item factors.
        exclude: ``(rows (E,), cols (E,))`` int64 entries left out of each row's sum (e.g. the items a user
            already has), or None.
    """
    if u.dim() != 2 or weight.dim() != 2 or u.shape[1] != weight.shape[1]:
        raise ValueError(f"u {tuple(u.shape)} and weight {tuple(weight.shape)}: expected (B, r) and (n_items, r)")
    rows, cols = sorted_entries(exclude, u.device)
    grads = torch.is_grad_enabled() and (u.requires_grad or weight.requires_grad)
    return _LowRankLogSumExp.apply(u, weight, rows, cols, grads)


def low_rank_cross_entropy(u: torch.Tensor, weight: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Full-softmax cross-entropy ``(B,)`` of the scores ``u @ weight.T`` against items ``target (B,)``:
    ``F.cross_entropy(u @ weight.T, target, reduction="none")`` without the ``(B, n_items)`` matrix."""
    return low_rank_logsumexp(u, weight) - (u * weight[target]).sum(dim=-1)


@dataclass(frozen=True)
class LowRankScores:
    """Item scores ``u @ weight.T`` ``(B, n_items)`` held as their factors (see the module docstring).

    Attributes:
        u: ``(B, r)`` row factors (for DreamRec the final state ``x0``).
        weight: ``(n_items, r)`` item factors (the item embeddings); both may carry autograd.
    """

    u: torch.Tensor
    weight: torch.Tensor

    @property
    def shape(self) -> Tuple[int, int]:
        return int(self.u.shape[0]), int(self.weight.shape[0])

    def dense(self) -> torch.Tensor:
        """The ``(B, n_items)`` score matrix."""
        return self.u @ self.weight.t()

    def scaled(self, factor: float) -> "LowRankScores":
        """The scores times ``factor``."""
        return self if factor == 1.0 else LowRankScores(self.u * factor, self.weight)

    def at(self, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """``scores[rows, cols]`` ``(E,)``."""
        return (self.u[rows] * self.weight[cols]).sum(dim=-1)

    def logsumexp(self, exclude: Optional[Tuple[torch.Tensor, torch.Tensor]] = None) -> torch.Tensor:
        """:func:`low_rank_logsumexp` of the scores ``(B,)``."""
        return low_rank_logsumexp(self.u, self.weight, exclude)

    def to(self, device, dtype=torch.float32) -> "LowRankScores":
        return LowRankScores(self.u.to(device, dtype), self.weight.to(device, dtype))
