"""Synthetic sequential and POI data with planted, learnable next-item structure.

Generative model (all draws from one ``numpy.random.Generator`` seeded with ``seed``):

* Items are split into ``n_communities`` blocks by random permutation; each block's items are put on a
  random cycle (the block's "route").
* Users are assigned to communities (near-equal sizes, randomly permuted). User ``u`` has ``n_u + 2``
  events (``n_u`` ~ Poisson(``mean_len``) clipped to ``[2, max_len]``): the first item is a uniform
  item of the user's block; each next item is, with probability ``FOLLOW``, the successor of the current
  item on its block's route, and otherwise a uniform item of the user's block (probability
  ``1 - FOLLOW - NOISE``) or of the whole catalogue (``NOISE``).
* The last two events are the validation and test targets (leave-one-out), the rest the training
  sequence, so a model that learns the routes predicts the next item far better than popularity.
* With ``timed=True`` (POI check-ins) each event has a Unix-seconds timestamp: gaps are exponential with a
  mean of ``GAP_HOURS`` hours, so the time-aware backbone has time gaps to read.
"""
from __future__ import annotations

import numpy as np

from refit_gym.data.sequential import SequentialData

FOLLOW = 0.7
NOISE = 0.05
GAP_HOURS = 6.0
_T0 = 1_600_000_000.0  # 2020-09-13, so timestamps look like Unix seconds


def make_synthetic_sequences(n_users: int = 300, n_items: int = 200, n_communities: int = 4, mean_len: float = 10.0,
                             max_len: int = 20, seed: int = 0, timed: bool = False,
                             name: str = "synthetic-seq") -> SequentialData:
    """Generate a deterministic leave-one-out :class:`SequentialData` with planted item routes.

    Args:
        n_users: number of users (>= n_communities).
        n_items: number of items (>= 2 * n_communities, so every route has at least two items).
        n_communities: number of user communities / item blocks.
        mean_len: mean training-sequence length (Poisson), clipped to ``[2, max_len]``.
        max_len: longest training sequence and the width of the padded views.
        seed: seed of the generator; equal seeds give identical datasets.
        timed: add timestamps (Unix seconds, exponential gaps): POI-style data.
        name: dataset name.

    Returns:
        A SequentialData of exactly ``n_users`` users and ``n_items`` items; every user has a training
        sequence of >= 2 items plus one validation and one test item; ``train_times`` / ``valid_time`` /
        ``test_time`` are set iff ``timed``. ``source`` records the generator's arguments.
    """
    if n_communities < 1 or n_users < n_communities or n_items < 2 * n_communities:
        raise ValueError(f"make_synthetic_sequences: need n_communities >= 1, n_users >= n_communities and "
                         f"n_items >= 2 * n_communities; got n_users={n_users}, n_items={n_items}, "
                         f"n_communities={n_communities}")
    if max_len < 2 or not mean_len > 0:
        raise ValueError(f"make_synthetic_sequences: need max_len >= 2 and mean_len > 0; got max_len={max_len}, "
                         f"mean_len={mean_len}")
    rng = np.random.default_rng(seed)
    block = rng.permutation(np.arange(n_items) % n_communities)
    successor = np.empty(n_items, dtype=np.int64)
    members = []
    for c in range(n_communities):
        route = rng.permutation(np.flatnonzero(block == c))
        successor[route] = np.roll(route, -1)
        members.append(route)
    community = rng.permutation(np.arange(n_users) % n_communities)
    lengths = np.clip(rng.poisson(mean_len, size=n_users), 2, max_len) + 2  # + valid + test

    total = int(lengths.sum())
    ptr = np.concatenate([[0], np.cumsum(lengths)])
    user_of = np.repeat(np.arange(n_users), lengths)
    # candidate draws for every event, vectorised; the walk itself is a loop over positions only
    u_draw = rng.random(total)
    flat, sizes = np.concatenate(members), np.array([len(m) for m in members])
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    c = community[user_of]
    in_block = flat[starts[c] + np.floor(rng.random(total) * sizes[c]).astype(np.int64)]
    anywhere = rng.integers(0, n_items, size=total)
    items = np.empty(total, dtype=np.int64)
    pos = np.arange(total) - ptr[user_of]
    items[pos == 0] = in_block[pos == 0]
    for k in range(1, int(lengths.max())):
        idx = np.flatnonzero(pos == k)
        prev = items[idx - 1]
        r = u_draw[idx]
        items[idx] = np.where(r < FOLLOW, successor[prev], np.where(r < 1.0 - NOISE, in_block[idx], anywhere[idx]))

    times = None
    if timed:
        gaps = rng.exponential(GAP_HOURS * 3600.0, size=total)
        gaps[pos == 0] = rng.uniform(0.0, 30 * 86400.0, size=n_users)
        times = _T0 + _segment_cumsum(gaps, ptr)
    last = ptr[1:] - 1
    train = [items[ptr[u]:last[u] - 1] for u in range(n_users)]
    kw = {}
    if timed:
        kw = dict(train_times=[times[ptr[u]:last[u] - 1] for u in range(n_users)], valid_time=times[last - 1],
                  test_time=times[last])
    source = (f"synthetic_sequences(n_users={n_users}, n_items={n_items}, n_communities={n_communities}, "
              f"mean_len={mean_len}, max_len={max_len}, seed={seed}, timed={timed})")
    return SequentialData.from_sequences(train, items[last - 1], items[last], n_items, max_len=max_len, name=name,
                                         source=source, **kw)


def _segment_cumsum(values: np.ndarray, ptr: np.ndarray) -> np.ndarray:
    """Cumulative sums of ``values`` restarted at every row start of ``ptr`` ``(n_rows + 1,)``."""
    c = np.cumsum(values)
    starts = ptr[:-1]
    offset = np.repeat(c[starts] - values[starts], np.diff(ptr))
    return c - offset


__all__ = ["make_synthetic_sequences"]
