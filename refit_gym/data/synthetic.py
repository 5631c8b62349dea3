"""A small synthetic implicit-feedback dataset with planted, learnable structure.

Generative model (all draws from one ``numpy.random.Generator`` seeded with ``seed``):

* Users are assigned to ``n_communities`` communities of (near-)equal size, and items to as many
  blocks, both by random permutation (so the structure is not visible in the ids).
* Item popularity follows a Zipf-like law ``pop_i ∝ (rank_i + 1) ** -0.8`` with random ranks.
* User ``u`` draws ``n_u`` distinct items (``n_u`` ~ Poisson(``density * n_items``), clipped to
  ``[3, n_items // 2]``) without replacement with weights ``pop_i * affinity``, where affinity is
  1 for items of the user's own block and ``NOISE_AFFINITY`` otherwise. Sampling uses the
  Gumbel-top-k trick, vectorised over user batches.
* Timestamps are i.i.d. uniform over one year (seconds); each user's timeline is split 80/10/10
  with at least one valid and one test item (``n_u >= 3`` guarantees a training item).
* With ``social=True``, about ``SOCIAL_DEGREE`` undirected edges per user are drawn, each within
  the user's community with probability ``SOCIAL_IN_COMMUNITY`` and uniformly otherwise.

Hence community-aware recommenders (item co-occurrence, social propagation) beat global
popularity on the test split, which the tests check.

:func:`load_synthetic` maps the dataset specs of :data:`SYNTHETIC_SPECS` (``synthetic``, ``synthetic-social``,
``synthetic-seq``, ``synthetic-poi``, each with an optional ``:<seed>``) to this generator and to
:func:`refit_gym.data.synthetic_sequences.make_synthetic_sequences`.
"""
from __future__ import annotations

import numpy as np

from refit_gym.data.dataset import DataError, InteractionData

NOISE_AFFINITY = 0.08
POPULARITY_EXPONENT = 0.8
SOCIAL_DEGREE = 6
SOCIAL_IN_COMMUNITY = 0.85
SECONDS_PER_YEAR = 365 * 24 * 3600
_T0 = 1_600_000_000.0  # an arbitrary epoch (2020-09-13) so timestamps look like Unix seconds
_MAX_BATCH_CELLS = 1 << 22  # dense user x item cells per sampling batch (32 MiB of float64)


def _balanced_labels(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """``(n,)`` labels in ``0..k-1`` with group sizes differing by at most one, randomly permuted."""
    return rng.permutation(np.arange(n) % k)


def _sample_without_replacement(log_w: np.ndarray, counts: np.ndarray, rng: np.random.Generator):
    """Per row of ``log_w`` ``(n_rows, n_cols)``, draw ``counts[row]`` distinct columns with probability ∝ ``exp(log_w)``.

    Gumbel-top-k: the ``k`` largest of ``log_w + Gumbel noise`` are a weighted sample without
    replacement. Returns (rows, cols) int64 arrays of the drawn cells, row-major.
    """
    keys = log_w + rng.gumbel(size=log_w.shape)
    order = np.argsort(-keys, axis=1, kind="stable")
    take = np.arange(log_w.shape[1])[None, :] < counts[:, None]
    rows = np.broadcast_to(np.arange(log_w.shape[0])[:, None], order.shape)[take]
    return rows.astype(np.int64), order[take].astype(np.int64)


def make_synthetic(n_users: int = 300, n_items: int = 200, n_communities: int = 4, density: float = 0.05,
                   seed: int = 0, social: bool = False, name: str = "synthetic") -> InteractionData:
    """Generate a deterministic synthetic dataset with planted user communities.

    Args:
        n_users: number of users (>= n_communities).
        n_items: number of items (>= 6 and >= n_communities).
        n_communities: number of user communities / item blocks.
        density: expected fraction of the catalogue each user interacts with.
        seed: seed of the generator; equal seeds give identical datasets.
        social: also generate user-user edges (mostly within communities).
        name: dataset name.

    Returns:
        An :class:`InteractionData` whose every user has >= 1 train, >= 1 valid and >= 1 test item,
        with ``train_time`` filled (Unix seconds). Sizes are exactly ``(n_users, n_items)``.
        ``source`` records the generator's arguments.
    """
    if n_communities < 1 or n_users < n_communities or n_items < max(6, n_communities):
        raise ValueError(f"make_synthetic: need n_communities >= 1, n_users >= n_communities and "
                         f"n_items >= max(6, n_communities); got n_users={n_users}, n_items={n_items}, "
                         f"n_communities={n_communities}")
    if not 0 < density <= 0.5:
        raise ValueError(f"make_synthetic: density={density} must be in (0, 0.5]")
    rng = np.random.default_rng(seed)
    community = _balanced_labels(n_users, n_communities, rng)
    block = _balanced_labels(n_items, n_communities, rng)
    log_pop = -POPULARITY_EXPONENT * np.log1p(rng.permutation(n_items))
    counts = np.clip(rng.poisson(density * n_items, size=n_users), 3, n_items // 2)

    users, items = [], []
    batch = max(1, _MAX_BATCH_CELLS // n_items)
    log_noise = np.log(NOISE_AFFINITY)
    for s in range(0, n_users, batch):  # loop over user batches; every batch is one vectorised draw
        c = community[s:s + batch]
        log_w = log_pop[None, :] + np.where(block[None, :] == c[:, None], 0.0, log_noise)
        r, i = _sample_without_replacement(log_w, counts[s:s + batch], rng)
        users.append(r + s)
        items.append(i)
    users = np.concatenate(users)
    items = np.concatenate(items)
    times = _T0 + rng.uniform(0.0, SECONDS_PER_YEAR, size=len(users))

    # per-user temporal 80/10/10 split with at least one valid and one test item
    order = np.lexsort((times, users))
    users, items, times = users[order], items[order], times[order]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(len(users)) - starts[users]
    n = counts[users]
    n_test = np.maximum(1, np.floor(0.1 * n)).astype(np.int64)
    n_valid = np.maximum(1, np.floor(0.1 * n)).astype(np.int64)
    n_train = n - n_valid - n_test
    code = np.where(rank < n_train, 0, np.where(rank < n_train + n_valid, 1, 2))
    pairs = np.stack([users, items], axis=1)

    edges = None
    if social:
        edges = _social_edges(community, rng)
    source = (f"synthetic(n_users={n_users}, n_items={n_items}, n_communities={n_communities}, "
              f"density={density}, seed={seed}, social={social})")
    return InteractionData.from_pairs(
        pairs[code == 0], pairs[code == 1], pairs[code == 2], n_users=n_users, n_items=n_items, social=edges,
        train_time=times[code == 0], name=name, source=source,
    )


def _social_edges(community: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``(m, 2)`` undirected user-user edges (u < v, unique), mostly within communities."""
    n_users = len(community)
    m = SOCIAL_DEGREE * n_users // 2
    src = rng.integers(0, n_users, size=m)
    members = np.argsort(community, kind="stable")  # users grouped by community
    sizes = np.bincount(community)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    c = community[src]
    inside = members[starts[c] + np.floor(rng.random(m) * sizes[c]).astype(np.int64)]
    anywhere = rng.integers(0, n_users, size=m)
    dst = np.where(rng.random(m) < SOCIAL_IN_COMMUNITY, inside, anywhere)
    e = np.sort(np.stack([src, dst], axis=1), axis=1)
    e = e[e[:, 0] != e[:, 1]]
    return np.unique(e, axis=0)


# ---------------------------------------------------------------------------------------------
# synthetic specs
# ---------------------------------------------------------------------------------------------
#: synthetic spec name -> what it generates (each accepts ``:<seed>``)
SYNTHETIC_SPECS = {
    "synthetic": "user-item interactions with planted communities (make_synthetic)",
    "synthetic-social": "the same plus a social graph (make_synthetic(social=True))",
    "synthetic-seq": "leave-one-out sequences with planted item routes (make_synthetic_sequences)",
    "synthetic-poi": "the same with check-in timestamps (make_synthetic_sequences(timed=True))",
}


def load_synthetic(spec: str, **kwargs):
    """The dataset of a synthetic spec ``<name>[:<seed>]`` (``name`` a key of :data:`SYNTHETIC_SPECS`);
    ``kwargs`` go to the generator. Raises DataError for an unknown name or a non-integer seed."""
    name, _, seed = spec.partition(":")
    if name not in SYNTHETIC_SPECS:
        raise DataError(f"dataset spec {spec!r}: unknown synthetic dataset; known: {sorted(SYNTHETIC_SPECS)}")
    if seed:
        try:
            kwargs["seed"] = int(seed)
        except ValueError:
            raise DataError(f"dataset spec {spec!r}: the seed after '{name}:' must be an integer") from None
    if name in ("synthetic", "synthetic-social"):
        return make_synthetic(**{"social": name == "synthetic-social", "name": name, **kwargs})
    from refit_gym.data.synthetic_sequences import make_synthetic_sequences

    return make_synthetic_sequences(**{"timed": name == "synthetic-poi", "name": name, **kwargs})
