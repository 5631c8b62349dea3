"""Full-ranking top-K evaluation, the two protocols of the scenarios (:meth:`refit_gym.scenarios.Scenario.evaluate`
picks one): :func:`evaluate` (interaction data: Recall, NDCG, Precision, MRR and HitRate at several cut-offs) and
:func:`evaluate_sequential` (sequences: leave-one-out HR / NDCG, see its docstring).

The interaction protocol is DiffRec's (Wang et al., SIGIR 2023), which matches RecBole's full-sort evaluation:

* every item is ranked for every user (no negative sampling);
* the items a user already interacted with in the splits *before* the evaluated one are masked
  (``InteractionData.known_items``: train for 'valid', train + valid for 'test');
* the ground truth of a user is the set of items of the evaluated split; users with an empty
  ground truth are left out of the means and counted separately.

Definitions, for one user with ground-truth set ``T`` (``|T| >= 1``) and top-K list ``r_1..r_K``
(``hit_i = 1`` if ``r_i`` is in ``T``):

* ``Recall@K    = sum_i hit_i / |T|``  (DiffRec / RecBole; *not* divided by ``min(K, |T|)``,
  so Recall@K can stay below 1 when ``|T| > K``);
* ``Precision@K = sum_i hit_i / K``;
* ``NDCG@K      = DCG / IDCG`` with ``DCG = sum_i hit_i / log2(i + 1)`` and
  ``IDCG = sum_{i <= min(K, |T|)} 1 / log2(i + 1)`` (binary relevance);
* ``MRR@K       = 1 / (rank of the first hit)``, 0 when no hit is within the top K;
* ``HitRate@K   = 1`` if any hit is within the top K, else 0.

Everything is computed with tensor operations over a batch of users; ``torch.topk`` is called
once per batch with ``max(ks)``.
"""
from __future__ import annotations

import sys
from typing import Callable, Dict, Optional, Sequence, Union

import numpy as np
import scipy.sparse as sp
import torch

from refit_gym.scores import LowRankScores, chunk_bounds, chunk_rows, sorted_entries

METRICS = ("recall", "ndcg", "precision", "mrr", "hitrate")
DEFAULT_KS = (10, 20, 50, 100)

MaskLike = Union[sp.spmatrix, np.ndarray, torch.Tensor]


# ---------------------------------------------------------------------------- helpers
def _check_ks(ks: Sequence[int]) -> tuple:
    ks = tuple(int(k) for k in ks)
    if not ks:
        raise ValueError("ks must contain at least one cut-off")
    if min(ks) < 1:
        raise ValueError(f"every cut-off K must be >= 1, got ks={ks}")
    return ks


def as_bool_mask(x: Optional[MaskLike], shape, device) -> Optional[torch.Tensor]:
    """A dense ``torch.bool`` tensor of ``shape`` ``(B, n_items)`` on ``device`` from a scipy sparse
    matrix (non-zeros are True), a numpy array or a tensor (non-zeros are True); None stays None."""
    if x is None:
        return None
    if sp.issparse(x):
        csr = sp.csr_matrix(x)
        if csr.shape != tuple(shape):
            raise ValueError(f"mask has shape {csr.shape}, expected {tuple(shape)}")
        csr.eliminate_zeros()
        rows = np.repeat(np.arange(csr.shape[0], dtype=np.int64), np.diff(csr.indptr))
        out = torch.zeros(tuple(shape), dtype=torch.bool, device=device)
        if rows.size:
            out[torch.as_tensor(rows, device=device), torch.as_tensor(csr.indices.astype(np.int64), device=device)] = True
        return out
    t = torch.as_tensor(x, device=device)
    if tuple(t.shape) != tuple(shape):
        raise ValueError(f"mask has shape {tuple(t.shape)}, expected {tuple(shape)}")
    return t if t.dtype == torch.bool else t != 0


def metric_keys(ks: Sequence[int] = DEFAULT_KS) -> list:
    """Output keys in order: ``recall@K`` for every K, then ``ndcg@K``, ``precision@K``, ``mrr@K``, ``hitrate@K``."""
    return [f"{m}@{k}" for m in METRICS for k in _check_ks(ks)]


# ---------------------------------------------------------------------------- per-batch metrics
def ranking_metrics(
    scores: torch.Tensor,
    known: Optional[MaskLike],
    truth: MaskLike,
    ks: Sequence[int] = DEFAULT_KS,
) -> Dict[str, torch.Tensor]:
    """Per-user top-K metrics of a batch of full item rankings.

    Args:
        scores: ``(B, n_items)`` float scores, higher is better. Not modified.
        known: items to exclude from the ranking, ``(B, n_items)``: scipy sparse (non-zeros are
            excluded), or a bool / numeric array or tensor; None excludes nothing. Excluded items
            get a score of ``-inf`` and can never count as a hit, even if they are in ``truth``.
        truth: ground-truth items ``(B, n_items)``: scipy sparse or a dense bool / 0-1 array or tensor.
        ks: cut-offs K (positive ints). A K larger than ``n_items`` ranks all items (Precision
            still divides by K).

    Returns:
        A dict of float32 tensors of shape ``(B,)`` on ``scores.device``: ``"<metric>@<K>"`` for
        metric in ``recall, ndcg, precision, mrr, hitrate`` and every K (definitions in the module
        docstring), and ``"n_truth"``, the ground-truth size per user. Users with an empty ground
        truth get 0 for every metric; callers that average should leave them out (see :func:`evaluate`).
    """
    ks = _check_ks(ks)
    if scores.dim() != 2:
        raise ValueError(f"scores must be (B, n_items), got shape {tuple(scores.shape)}")
    B, n_items = scores.shape
    device = scores.device
    truth_m = as_bool_mask(truth, (B, n_items), device)
    known_m = as_bool_mask(known, (B, n_items), device)

    s = scores.float()
    if known_m is not None:
        s = s.masked_fill(known_m, float("-inf"))
    k_max = min(max(ks), n_items)
    top_val, top_idx = torch.topk(s, k_max, dim=1)  # (B, k_max), sorted descending
    # a masked item can only reach the top list when fewer than k_max items are unmasked: never a hit
    hits = truth_m.gather(1, top_idx) & torch.isfinite(top_val)  # (B, k_max) bool
    hits_f = hits.float()

    n_truth = truth_m.sum(dim=1).float()  # (B,)
    has_truth = n_truth > 0
    safe_truth = n_truth.clamp(min=1.0)
    ranks = torch.arange(1, k_max + 1, device=device, dtype=torch.float32)  # (k_max,)
    discount = 1.0 / torch.log2(ranks + 1.0)  # 1 / log2(i + 1), i = 1..k_max
    ideal_cum = torch.cumsum(discount, dim=0)  # IDCG for 1..k_max relevant items
    dcg_cum = torch.cumsum(hits_f * discount, dim=1)  # (B, k_max)
    hits_cum = torch.cumsum(hits_f, dim=1)  # (B, k_max)
    # rank (1-based) of the first hit, +inf when there is none in the top k_max
    first = torch.where(hits.any(dim=1), hits_f.argmax(dim=1).float() + 1.0,
                        torch.full((B,), float("inf"), device=device))

    out: Dict[str, torch.Tensor] = {}
    for k in ks:
        kk = min(k, n_items)
        n_hit = hits_cum[:, kk - 1]
        n_ideal = torch.minimum(n_truth, torch.tensor(float(kk), device=device)).clamp(min=1).long()
        idcg = ideal_cum[n_ideal - 1]
        hit_any = first <= kk
        zero = torch.zeros_like(n_hit)
        out[f"recall@{k}"] = torch.where(has_truth, n_hit / safe_truth, zero)
        out[f"ndcg@{k}"] = torch.where(has_truth, dcg_cum[:, kk - 1] / idcg, zero)
        out[f"precision@{k}"] = n_hit / float(k)
        out[f"mrr@{k}"] = torch.where(hit_any, 1.0 / first, zero)
        out[f"hitrate@{k}"] = hit_any.float()
    out["n_truth"] = n_truth
    return {key: out[key] for key in metric_keys(ks) + ["n_truth"]}


# ---------------------------------------------------------------------------- dataset evaluation
ScoreFn = Callable[[np.ndarray], torch.Tensor]


def evaluate(
    score_fn: ScoreFn,
    data,
    split: str = "test",
    ks: Sequence[int] = DEFAULT_KS,
    batch_size: int = 1024,
    users: Optional[np.ndarray] = None,
    progress: bool = False,
) -> Dict[str, float]:
    """Mean full-ranking metrics of ``score_fn`` on ``split`` of ``data``.

    Args:
        score_fn: ``score_fn(users)`` with ``users`` an int64 array ``(B,)`` returns item scores
            ``(B, n_items)`` (a tensor on any device, or an array). Called once per batch.
        data: an :class:`~refit_gym.data.InteractionData`.
        split: 'valid' (masks train items) or 'test' (masks train + valid items).
        ks: cut-offs K.
        batch_size: users per ``score_fn`` call.
        users: the users to evaluate (default: all); users whose ground truth in ``split`` is
            empty are skipped and counted.
        progress: show a tqdm bar on stderr.

    Returns:
        ``{"recall@K", "ndcg@K", "precision@K", "mrr@K", "hitrate@K" for every K: python float
        means over the evaluated users, "n_users_evaluated": int, "n_users_skipped_empty_truth": int}``.

    Raises:
        ValueError: for an unknown split, a bad ``batch_size``, out-of-range users, no user with
            a ground truth, or scores of the wrong shape.

    Under ``torch.distributed`` (:mod:`refit_gym.distributed`) this is a collective: every rank must call it
    with the same users; each scores its block of them and the metric sums are reduced.
    """
    ks = _check_ks(ks)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    truth = data.split(split)
    known = data.known_items(split)  # raises for 'train'
    if users is None:
        users = np.arange(data.n_users, dtype=np.int64)
    users = np.asarray(users, dtype=np.int64).reshape(-1)
    if users.size and (users.min() < 0 or users.max() >= data.n_users):
        raise ValueError(f"users must lie in [0, {data.n_users}), got range [{users.min()}, {users.max()}]")
    n_truth = np.diff(truth.indptr)[users]
    keep = users[n_truth > 0]
    n_skipped = int(users.size - keep.size)
    if keep.size == 0:
        raise ValueError(f"no user among the {users.size} requested has a ground truth in split {split!r}")

    from refit_gym import distributed

    keys = metric_keys(ks)
    sums = {key: 0.0 for key in keys}
    evaluated = keep.size
    keep = distributed.shard(keep)  # under torch.distributed each rank scores its block; the sums are reduced
    starts = range(0, keep.size, batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=f"evaluate[{split}]", unit="batch", file=sys.stderr)
    for start in starts:
        batch = keep[start:start + batch_size]
        scores = score_fn(batch)
        if not torch.is_tensor(scores):
            scores = torch.as_tensor(np.asarray(scores))
        if tuple(scores.shape) != (batch.size, data.n_items):
            raise ValueError(f"score_fn returned shape {tuple(scores.shape)} for {batch.size} users; "
                             f"expected ({batch.size}, {data.n_items})")
        per_user = ranking_metrics(scores, known[batch], truth[batch], ks)
        for key in keys:
            sums[key] += float(per_user[key].double().sum())
    totals = distributed.all_reduce_sum([sums[key] for key in keys])
    out: Dict[str, float] = {key: float(total) / evaluated for key, total in zip(keys, totals)}
    out["n_users_evaluated"] = int(evaluated)
    out["n_users_skipped_empty_truth"] = n_skipped
    return out


# ---------------------------------------------------------------------------- backbones
def backbone_score_fn(
    adapter,
    data,
    split: str = "test",
    device: Optional[Union[str, torch.device]] = None,
    condition_on: str = "train",
    deterministic: bool = True,
) -> ScoreFn:
    """A ``score_fn`` for :func:`evaluate` that runs a diffusion backbone's own inference.

    Follows DiffRec: the condition is built from the user's **training** history
    (``condition_on='train'``, the default for both splits) and the items of
    ``data.known_items(split)`` are masked by :func:`evaluate`. ``condition_on='train+valid'``
    conditions on train + valid and is only allowed for ``split='test'`` (for 'valid' it would
    leak the ground truth).

    Args:
        adapter: a ``DenoiserAdapter`` (e.g. from ``load_backbone``), providing
            ``encode_condition(users, visible_csr) -> (B, condition_dim)`` and
            ``infer(condition, users, deterministic) -> (B, n_items)``.
        data: the :class:`~refit_gym.data.InteractionData` the backbone was trained on.
        split: 'valid' or 'test' (decides which histories may be used).
        device: where to run; None keeps the adapter's current device, otherwise the adapter is
            moved there (``nn.Module.to`` is in place).
        condition_on: 'train' or 'train+valid'.
        deterministic: follow the posterior means (DiffRec's inference) rather than sampling.

    Returns:
        ``score_fn(users: int64 (B,)) -> float tensor (B, n_items)`` on the adapter's device. Each
        call runs under ``torch.no_grad`` in eval mode and restores the adapter's previous mode.
    """
    if split not in ("valid", "test"):
        raise ValueError(f"no evaluation protocol for split {split!r}; use 'valid' or 'test'")
    if condition_on == "train":
        history = data.train
    elif condition_on == "train+valid":
        if split != "test":
            raise ValueError("condition_on='train+valid' is only valid for split='test' "
                             "(conditioning on valid when evaluating valid leaks the ground truth)")
        history = (data.train + data.valid).tocsr().sign()
    else:
        raise ValueError(f"condition_on must be 'train' or 'train+valid', got {condition_on!r}")
    if int(getattr(adapter, "n_items", data.n_items)) != data.n_items:
        raise ValueError(f"the backbone ranks {adapter.n_items} items but the data has {data.n_items}")
    if device is not None:
        adapter.to(torch.device(device))
    dev = next(adapter.parameters()).device

    def score_fn(users: np.ndarray) -> torch.Tensor:
        users = np.asarray(users, dtype=np.int64)
        cond = adapter.encode_condition(users, history[users])
        cond_t = torch.as_tensor(np.asarray(cond, dtype=np.float32), device=dev)
        users_t = torch.as_tensor(users, device=dev)
        was_training = adapter.training
        adapter.eval()
        try:
            with torch.no_grad():
                return adapter.infer(cond_t, users_t, deterministic=deterministic)
        finally:
            adapter.train(was_training)

    return score_fn


def evaluate_backbone(adapter, data, split: str = "test", ks: Sequence[int] = DEFAULT_KS, batch_size: int = 1024,
                      device: Optional[Union[str, torch.device]] = None, users: Optional[np.ndarray] = None,
                      **kwargs) -> Dict[str, float]:
    """:func:`evaluate` of a backbone's own deterministic inference (see :func:`backbone_score_fn`) over ``users``
    (int64 ``(n,)``; default: all)."""
    return evaluate(backbone_score_fn(adapter, data, split, device=device, **kwargs), data, split, ks, batch_size,
                    users=users)


# ---------------------------------------------------------------------------- sequences: leave-one-out
SeqScoreFn = Callable[[np.ndarray, str], "torch.Tensor | np.ndarray | LowRankScores"]


def _target_ranks(scores: "torch.Tensor | LowRankScores", target: torch.Tensor,
                  masked: Optional[tuple] = None) -> torch.Tensor:
    """Per row, the number of items scored strictly above the row's ``target`` item: ``(B,)`` int64 on the CPU.

    ``scores``: ``(B, n_items)`` dense, or factored (:class:`~refit_gym.scores.LowRankScores`, formed here chunk by
    chunk of rows on the factors' device, so that a chunk's scores stay in cache). ``masked``: ``(rows, cols)``
    entries left out of the ranking (never counted; the target's own entry never is). A row whose target scores NaN
    ranks last (``n_items``): a diverged model misses; other NaN scores count as not above.
    """
    B, n = scores.shape
    factored = isinstance(scores, LowRankScores)
    if factored:
        u, weight_t = scores.u.detach().float(), scores.weight.detach().float().t().contiguous()
    device = u.device if factored else scores.device
    size = chunk_rows(n, device)
    target = target.to(device)
    rows, cols = sorted_entries(masked, device)
    bounds = None if rows is None else chunk_bounds(rows, B, size).tolist()
    out = torch.empty(B, dtype=torch.long, device=device)
    exact = torch.float32 if n < 2 ** 24 else torch.float64  # a sum of 0/1 entries, exact below 2^24 in float32
    for k, lo in enumerate(range(0, B, size)):
        hi = min(lo + size, B)
        block = u[lo:hi] @ weight_t if factored else scores[lo:hi]
        t_score = block.gather(1, target[lo:hi].unsqueeze(1))
        # 1.0 where score > target's: in place on a factored block (ours), else into a new one (the caller's scores
        # are not ours to modify)
        above = block.gt_(t_score) if factored else torch.gt(block, t_score, out=torch.empty_like(block))
        if rows is not None and bounds[k + 1] > bounds[k]:
            a, b = bounds[k], bounds[k + 1]
            above[rows[a:b] - lo, cols[a:b]] = 0.0  # left out
        count = above.sum(dim=1, dtype=exact).long()
        out[lo:hi] = torch.where(t_score.squeeze(1).isnan(), n, count)
    return out.cpu()


def evaluate_sequential(score_fn: SeqScoreFn, seq_data, split: str = "test", ks: Sequence[int] = (10, 20),
                        mask_history: bool = False, batch_size: int = 1024,
                        users: Optional[np.ndarray] = None) -> Dict[str, float]:
    """Leave-one-out full-ranking metrics of sequence data.

    One ground-truth item per evaluated user (the validation or test item), ranked against *all* items (no
    sampled negatives). The users are ``seq_data.split_users[split]`` (every user under leave-one-out, the
    split's users under user-split); the history that scores is ``seq_data.history(split)``: the train
    sequence for 'valid' and train + validation item for 'test' (loo), the items before the target (user-split).
    The usual leave-one-out ranking does *not* mask the history (repeat consumption is legitimate, e.g. POI
    revisits), hence ``mask_history=False`` by default; with True the known items of the split are excluded from
    the ranking *except* the ground truth itself. Ranks count strictly higher scores (ties favour the target; a
    NaN target score ranks last, other NaN scores are never above);
    ``HR@K = 1[rank < K]``, ``NDCG@K = 1[rank < K] / log2(rank + 2)``, averaged over users. With one target per
    user Recall@K equals HR@K: it is reported under both names (``recall@K``, ``hitrate@K``) so that code written
    for interaction data (selection on ``recall@20``, the benchmark tables) reads sequence results unchanged.

    Args:
        score_fn: ``score_fn(users (B,) int64, split) -> (B, n_items)`` scores (tensor, array, or
            :class:`~refit_gym.scores.LowRankScores`, ranked chunk by chunk without the dense matrix).
        seq_data: the :class:`~refit_gym.data.sequential.SequentialData`.
        split: 'valid' or 'test'. ks: cut-offs. mask_history: see above.
        batch_size: users per ``score_fn`` call. users: evaluate a subset of the split's users (default: all
            of them; a user without a target in ``split`` is a ValueError).
    Returns:
        ``{"hitrate@K": float, "recall@K": float (= hitrate@K, one target per user), "ndcg@K": float
        for K in ks, "n_users": int}``.
    """
    from refit_gym import distributed

    target_all = seq_data.held_out(split)
    users = seq_data.split_users[split] if users is None else np.asarray(users, dtype=np.int64)
    if len(users) and (target_all[users] < 0).any():
        bad = users[target_all[users] < 0][0]
        raise ValueError(f"user {int(bad)} has no {split!r} target under protocol {seq_data.protocol!r} (not in "
                         f"split_users[{split!r}])")
    known = seq_data.history_items(split) if mask_history else None
    lo, hi = distributed.shard_bounds(len(users))  # under torch.distributed each rank ranks its block (a collective)
    ranks = np.empty(hi - lo, dtype=np.int64)
    for s in range(lo, hi, batch_size):
        u = users[s:min(s + batch_size, hi)]
        scores = score_fn(u, split)
        if not isinstance(scores, LowRankScores):
            scores = torch.as_tensor(scores).detach().float().cpu()
        if tuple(scores.shape) != (len(u), seq_data.n_items):
            raise ValueError(f"score_fn returned shape {tuple(scores.shape)}; expected ({len(u)}, {seq_data.n_items})")
        masked = None
        if known is not None:
            m = known[u].tocoo()
            masked = (torch.as_tensor(m.row, dtype=torch.long), torch.as_tensor(m.col, dtype=torch.long))
        ranks[s - lo:s - lo + len(u)] = _target_ranks(scores, torch.as_tensor(target_all[u]), masked).numpy()
    ranks = distributed.gather_rows(torch.as_tensor(ranks), len(users)).numpy()
    out: Dict[str, float] = {}
    for k in ks:
        hit = ranks < k
        out[f"hitrate@{k}"] = out[f"recall@{k}"] = float(hit.mean())
        out[f"ndcg@{k}"] = float(np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0).mean())
    out["n_users"] = int(len(users))
    return out


def format_table(results: Dict[str, float], ks: Sequence[int] = DEFAULT_KS) -> str:
    """A plain-text table of :func:`evaluate`'s output: one row per metric, one column per K."""
    ks = _check_ks(ks)
    head = f"{'metric':<10}" + "".join(f"{'@' + str(k):>10}" for k in ks)
    rows = [head, "-" * len(head)]
    for m in METRICS:
        rows.append(f"{m:<10}" + "".join(f"{results[f'{m}@{k}']:>10.4f}" for k in ks))
    rows.append(f"users evaluated: {results['n_users_evaluated']}, "
                f"skipped (empty truth): {results['n_users_skipped_empty_truth']}")
    return "\n".join(rows)


__all__ = ["METRICS", "DEFAULT_KS", "ranking_metrics", "evaluate", "backbone_score_fn", "evaluate_backbone",
           "evaluate_sequential", "metric_keys",
           "as_bool_mask", "format_table"]
