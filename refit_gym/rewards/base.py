"""The reward contract of the denoising MDP, and the held-out split every built-in reward shares.

A reward object has two phases per episode:

* :meth:`Reward.prepare` at reset: for a batch of users it splits each user's *training* items
  into *visible* items (the condition the denoiser sees) and *held-out* items (what the terminal
  reward scores), and precomputes whatever sparse targets it needs. The result is a
  :class:`RewardState`.
* :meth:`Reward.__call__` at the terminal step: item scores ``(B, n_items)`` of the final ``x_0``
  -> rewards ``(B,)``. :meth:`Reward.components` returns the named terms (for logging; they sum to
  the reward).
* optionally :meth:`Reward.item_terms`: the reward split into one term per item, ``(B, n_items)``,
  summing to the reward, for rewards that are (close to) sums of per-item terms ``r_j`` that depend
  on ``x0_j`` only. Agents use them for per-item credit assignment (``ReFiT(credit="item")``):
  with a factorised Gaussian last step, ``sum_j (r_j - b_j) grad log pi_j(x0_j)`` is an unbiased
  policy gradient for exactly separable rewards, with far less variance than the trajectory
  estimator. :attr:`Reward.supports_item_terms` says whether a reward has them.

Only ``data.train`` is ever read: validation and test interactions never enter a reward.

Randomness and reproducibility
------------------------------
The held-out draw of a row depends only on that row's 64-bit *episode key* (and the row's items),
never on the other rows of the batch: every training interaction ``(row, item)`` gets the uniform
number ``U = hash(key_row, item)`` (SplitMix64 finaliser, a bijective counter-based hash), and the
``n_hold`` interactions with the smallest ``U`` are held out. This is one vectorised sort over the
batch's interactions, and a user gets the same split in a batch of 256 as alone, which is what
makes a batched environment reproduce single environments exactly (see ``refit_gym.envs``).
:meth:`Reward.prepare` accepts either such keys or a ``numpy.random.Generator`` (then one key per
row is drawn from it).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np
import scipy.sparse as sp
import torch

from refit_gym.data.dataset import as_interactions, rank_in_rows
from refit_gym.scores import LowRankScores

#: item scores as a reward receives them: the dense ``(B, n_items)`` matrix or its factors
Scores = Union[torch.Tensor, LowRankScores]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
KEY_HIGH = np.iinfo(np.int64).max  # episode keys are drawn uniformly in [0, 2**63 - 1)


def mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser applied elementwise to a uint64 array (a bijection of uint64; wraps mod 2**64)."""
    z = np.asarray(x, dtype=np.uint64) + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def hash_uniform(keys: np.ndarray, counters: np.ndarray) -> np.ndarray:
    """Uniform float64 numbers in [0, 1) from ``(key, counter)`` pairs (broadcast), via two SplitMix64 rounds."""
    z = mix64(np.asarray(keys, dtype=np.uint64) ^ mix64(np.asarray(counters, dtype=np.uint64)))
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def draw_episode_keys(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` episode keys (uint64, in [0, 2**63 - 1)) drawn from ``rng``."""
    return rng.integers(0, KEY_HIGH, size=n, dtype=np.int64).astype(np.uint64)


def as_episode_keys(rng_or_keys: Union[np.random.Generator, np.ndarray], n: int) -> np.ndarray:
    """Episode keys ``(n,)`` uint64 from a Generator (drawn) or an integer array (validated)."""
    if isinstance(rng_or_keys, np.random.Generator):
        return draw_episode_keys(rng_or_keys, n)
    keys = np.asarray(rng_or_keys)
    if keys.shape != (n,) or keys.dtype.kind not in "iu":
        raise ValueError(f"episode keys must be an integer array of shape ({n},), got dtype {keys.dtype}, shape {keys.shape}")
    if keys.dtype.kind == "i" and keys.size and keys.min() < 0:
        raise ValueError(f"episode keys must be non-negative, got {int(keys.min())}")
    return keys.astype(np.uint64)


def _hold_out_first(rows: sp.csr_matrix, priority: np.ndarray, rho: float):
    """``(visible, held-out)`` CSR ``(B, n_items)`` float32 of ``rows`` (CSR with sorted indices): row ``b`` with
    ``n_b`` items holds out ``n_hold = clip(floor(rho * n_b + 0.5), 1, n_b - 1)`` items if ``n_b >= 2`` and none
    otherwise (none at all when ``rho == 0``), those of the smallest ``priority`` (``(nnz,)``, aligned with the stored
    entries)."""
    counts = np.diff(rows.indptr)
    n_hold = np.where((counts >= 2) & (rho > 0), np.clip(np.floor(rho * counts + 0.5), 1, np.maximum(counts - 1, 1)),
                      0).astype(np.int64)
    row_of = np.repeat(np.arange(rows.shape[0]), counts)
    order = np.lexsort((priority, row_of))
    rank = np.arange(rows.nnz) - rows.indptr[:-1][row_of]  # row_of is sorted, so rank within row of order[p] is p - start
    held = np.zeros(rows.nnz, dtype=bool)
    held[order[rank < n_hold[row_of]]] = True

    def _sub(mask: np.ndarray, per_row: np.ndarray) -> sp.csr_matrix:
        indptr = np.concatenate([[0], np.cumsum(per_row)]).astype(rows.indptr.dtype)
        return sp.csr_matrix((rows.data[mask], rows.indices[mask], indptr), shape=rows.shape)

    return _sub(~held, counts - n_hold), _sub(held, n_hold)


def split_heldout(rows: sp.csr_matrix, keys: np.ndarray, rho: float):
    """Split each row's items into (visible, held-out) CSR matrices, both ``(B, n_items)`` float32.

    Row ``b`` with ``n_b`` items holds out ``n_hold = clip(floor(rho * n_b + 0.5), 1, n_b - 1)`` items
    if ``n_b >= 2`` and none otherwise (so a user always keeps at least one visible item and, with
    two or more items, always has at least one to predict); ``rho == 0`` holds out nothing (the condition is
    the whole row, as at evaluation). The held-out items are those with the
    smallest ``hash_uniform(keys[b], item)``. Cost O(nnz log nnz) for the batch, no dense arrays.
    """
    rows = sp.csr_matrix(rows, dtype=np.float32)
    rows.sort_indices()
    row_of = np.repeat(np.arange(rows.shape[0]), np.diff(rows.indptr))
    return _hold_out_first(rows, hash_uniform(keys[row_of], rows.indices.astype(np.uint64)), rho)


def split_latest(rows: sp.csr_matrix, times: sp.csr_matrix, rho: float):
    """Split each row's items into (visible, held-out) CSR matrices ``(B, n_items)`` float32 as
    :func:`split_heldout` does (the same ``n_hold`` per row), holding out each row's ``n_hold`` *most recent*
    items by ``times`` (CSR with the pattern of ``rows``; ties: the larger item id is the more recent), so the
    condition is the user's past and the targets what came after: a temporal split of the training history."""
    rows = sp.csr_matrix(rows, dtype=np.float32)
    rows.sort_indices()
    return _hold_out_first(rows, -rank_in_rows(rows, times), rho)  # the most recent first


def heldout_target(heldout: sp.csr_matrix) -> sp.csr_matrix:
    """Weights ``1/|H|`` on each row's held-out items (rows without held-out items stay empty): the
    target of the held-out log-likelihood term, CSR ``(B, n_items)``."""
    n_held = np.diff(heldout.indptr)
    inv_held = np.where(n_held > 0, 1.0 / np.maximum(n_held, 1), 0.0)
    return (sp.diags(inv_held) @ heldout).tocsr()


def csr_to_index(m: sp.csr_matrix, device) -> tuple:
    """(rows, cols) int64 tensors of the stored entries of a CSR matrix, in CSR order."""
    rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
    return (torch.as_tensor(rows, dtype=torch.long, device=device),
            torch.as_tensor(m.indices.astype(np.int64), dtype=torch.long, device=device))


@dataclass
class RewardState:
    """Per-episode state of a reward for a batch of B users.

    Attributes:
        users: ``(B,)`` int64 user ids.
        keys: ``(B,)`` uint64 episode keys the split was drawn from.
        visible: CSR ``(B, n_items)`` float32, the training items in the condition.
        heldout: CSR ``(B, n_items)`` float32, the training items held out of the condition (disjoint
            from ``visible``; usually the rest of the user's training items, but a sequence prefix
            hides the items after its target too).
        tensors: reward-specific tensors on the reward's device (e.g. sparse targets).
        hidden_tail: None, or ``(B,)`` int64: the condition is a *prefix* of each user's training
            sequence, without its last ``hidden_tail[b]`` positions (order-aware backbones receive it
            in ``encode_condition``; for order-free ones ``visible`` already says everything).
    """

    users: np.ndarray
    keys: np.ndarray
    visible: sp.csr_matrix
    heldout: sp.csr_matrix
    tensors: Dict[str, Any] = field(default_factory=dict)
    hidden_tail: Optional[np.ndarray] = None

    @property
    def batch_size(self) -> int:
        return int(self.users.shape[0])


class Reward:
    """Base class of terminal rewards on item scores. Subclasses implement :meth:`components` and,
    where the reward is a sum of per-item terms, :meth:`item_terms`.

    Args:
        data: the dataset: an InteractionData, or a dataset with an ``interactions()`` view such as
            :class:`~refit_gym.data.sequential.SequentialData` (kept as ``self.source`` for rewards
            that need more than the binary matrices, e.g. the item order); only training
            interactions are read.
        holdout: fraction ``rho`` in [0, 1) of each user's training items held out of the condition; 0 holds out
            none (the condition is the whole training row, as at evaluation), which rewards that score the
            held-out items (``reads_heldout``) refuse.
        device: where score tensors live.
        holdout_order: ``"random"`` (a random fraction per episode, :func:`split_heldout`) or ``"latest"`` (each
            user's most recent fraction by ``train_time``, :func:`split_latest`: the past predicts what followed,
            as a temporal split evaluates; the data must order its training interactions).

    Subclasses change *which* items are held out by overriding :meth:`split`.
    """

    name: str = "reward"
    #: whether :meth:`components` is a differentiable torch function of the scores (reward-gradient
    #: agents such as :class:`agents.pathwise.Pathwise` need it; rankings and top-k cut-offs are not)
    differentiable: bool = False
    #: whether the reward scores the held-out items of the default split (then ``holdout=0`` leaves it nothing to
    #: score and is refused); a subclass with its own :meth:`split` decides for itself
    reads_heldout: bool = False

    def __init__(self, data, holdout: float = 0.2, device="cpu", holdout_order: str = "random"):
        if not 0.0 <= float(holdout) < 1.0:
            raise ValueError(f"holdout={holdout!r}: expected a fraction in [0, 1)")
        if holdout_order not in ("random", "latest"):
            raise ValueError(f"holdout_order={holdout_order!r}: expected 'random' or 'latest'")
        if float(holdout) == 0.0 and self.reads_heldout and type(self).split is Reward.split:
            raise ValueError(f"holdout=0 holds out none of a user's training items, but the {self.name!r} reward "
                             f"scores the held-out ones; use a fraction in (0, 1)")
        self.source = data
        data = as_interactions(data)
        self.data = data
        self.n_users, self.n_items = data.n_users, data.n_items
        self.holdout, self.holdout_order = float(holdout), holdout_order
        if holdout_order == "latest" and data.train_time is None:
            raise ValueError(f"holdout_order='latest': {data.source} has no training order (train_time)")
        self.device = torch.device(device)

    def to(self, device) -> "Reward":
        """Move score computations to ``device`` (targets of already prepared states stay where they are)."""
        self.device = torch.device(device)
        return self

    # ------------------------------------------------------------------ reset
    def prepare(self, users: np.ndarray, rng: Union[np.random.Generator, np.ndarray]) -> RewardState:
        """Split the users' training items and precompute targets.

        Args:
            users: ``(B,)`` integer user ids in ``[0, n_users)``.
            rng: a ``numpy.random.Generator`` (one episode key per user is drawn from it) or the
                ``(B,)`` integer episode keys themselves (see the module docstring).
        """
        users = np.asarray(users)
        if users.ndim != 1 or users.dtype.kind not in "iu":
            raise ValueError(f"users must be a 1-d integer array, got dtype {users.dtype}, shape {users.shape}")
        users = users.astype(np.int64)
        if users.size and (users.min() < 0 or users.max() >= self.n_users):
            bad = users[(users < 0) | (users >= self.n_users)][0]
            raise ValueError(f"user id {int(bad)} out of range [0, {self.n_users - 1}]")
        keys = as_episode_keys(rng, len(users))
        split = self.split(users, keys)
        visible, heldout = split[:2]
        state = RewardState(users=users, keys=keys, visible=visible, heldout=heldout,
                            hidden_tail=split[2] if len(split) > 2 else None)
        state.tensors["visible_index"] = csr_to_index(visible, self.device)
        state.tensors["heldout_index"] = csr_to_index(heldout, self.device)
        self._prepare_targets(state)
        return state

    def split(self, users: np.ndarray, keys: np.ndarray):
        """Hook: ``(visible, heldout)`` CSR ``(B, n_items)`` float32 of ``users (B,)`` with episode keys
        ``keys (B,)``, disjoint sets of each user's training items, optionally followed by ``hidden_tail``
        ``(B,)`` int64 (see :class:`RewardState`). Default: a random fraction ``holdout`` held out, the
        rest visible (:func:`split_heldout`); with ``holdout_order="latest"`` the most recent fraction
        (:func:`split_latest`, the same every episode)."""
        if self.holdout_order == "latest":
            return split_latest(self.data.train[users], self.data.train_time[users], self.holdout)
        return split_heldout(self.data.train[users], keys, self.holdout)

    def _prepare_targets(self, state: RewardState) -> None:
        """Hook: add reward-specific tensors to ``state.tensors``."""

    # ------------------------------------------------------------------ terminal
    def components(self, scores: torch.Tensor, state: RewardState) -> Dict[str, torch.Tensor]:
        """Named reward terms, each ``(B,)`` float32; they sum to the reward."""
        raise NotImplementedError

    @property
    def supports_item_terms(self) -> bool:
        """Whether :meth:`item_terms` is available (True when a subclass implements it)."""
        return type(self).item_terms is not Reward.item_terms

    def item_terms(self, scores: torch.Tensor, state: RewardState) -> torch.Tensor:
        """Per-item terms ``(B, n_items)`` float32 of the terminal reward of item scores ``(B, n_items)``.

        Contract: ``item_terms(scores, state).sum(1)`` equals ``self(scores, state)`` up to float
        rounding, and term ``j`` depends on ``scores[:, j]`` alone (exactly separable rewards) or
        mainly (then the subclass documents the coupling and the bias it causes in per-item credit
        assignment). Items that do not enter the reward (e.g. the visible items) get 0. Only reward
        values are involved, never gradients of the reward.

        Rewards whose terms depend on the whole score vector (a softmax normaliser, a top-K ranking)
        do not implement it: the default raises NotImplementedError naming the reward.
        """
        raise NotImplementedError(
            f"reward {self.name!r} ({self!r}) has no per-item terms (Reward.item_terms): its value is not a sum of "
            "terms that each depend on one item's score; per-item credit assignment needs a reward such as "
            "'graph-score' or 'reconstruction' (or a FunctionReward with item_f)")

    def __call__(self, scores: Scores, state: RewardState) -> torch.Tensor:
        """Terminal rewards ``(B,)`` float32 of item scores ``(B, n_items)`` (a tensor or its factors)."""
        return self.scored(scores, state)[0]

    def scored(self, scores: Scores, state: RewardState) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """The terminal rewards ``(B,)`` float32 of item scores ``(B, n_items)`` (a tensor or its factors) and
        their named terms :meth:`components` (``{name: (B,)}``), computed once."""
        comps = self.components(self._check_scores(scores, state), state)
        return torch.stack(list(comps.values()), dim=0).sum(dim=0), comps

    #: whether :meth:`components` reads :class:`~refit_gym.scores.LowRankScores` itself; when False,
    #: :meth:`_check_scores` hands it the dense matrix
    reads_low_rank = False

    def _check_scores(self, scores: Scores, state: RewardState) -> Scores:
        """``scores`` on the reward's device as float32, after checking the shape ``(B, n_items)``; a
        :class:`~refit_gym.scores.LowRankScores` stays factored only for a reward that :attr:`reads_low_rank`."""
        if not isinstance(scores, (torch.Tensor, LowRankScores)):
            raise TypeError(f"scores must be a torch.Tensor or LowRankScores, got {type(scores).__name__}")
        if tuple(scores.shape) != (state.batch_size, self.n_items):
            raise ValueError(f"scores have shape {tuple(scores.shape)}, expected ({state.batch_size}, {self.n_items})")
        if isinstance(scores, LowRankScores) and not self.reads_low_rank:
            scores = scores.dense()
        return scores.to(self.device, torch.float32)

    @staticmethod
    def visible_mask_fill(z: torch.Tensor, state: RewardState, value: float = float("-inf")) -> torch.Tensor:
        """A copy of ``z`` ``(B, n_items)`` with the condition (visible) items set to ``value``."""
        rows, cols = state.tensors["visible_index"]
        out = z.clone()
        out[rows.to(z.device), cols.to(z.device)] = value
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(holdout={self.holdout})"
