"""Rewards of the denoising MDP: the held-out split, hand-computed values, and the cost contract."""
from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from refit_gym.data.dataset import InteractionData
from refit_gym.data.synthetic import make_synthetic
from refit_gym.rewards import (CollaborativeReward, FunctionReward, GraphScoreReward, ReconstructionReward, TopKReward,
                               make_reward,
                               split_heldout, split_latest)


def tiny_data(valid_item: int = 3, test_item: int = 2) -> InteractionData:
    """3 users x 4 items. User 0 trains on {0, 1}; user 1 on {2, 3}; user 2 on {0, 2, 3}; 0 and 1 are friends."""
    train = [(0, 0), (0, 1), (1, 2), (1, 3), (2, 0), (2, 2), (2, 3)]
    valid = [(0, valid_item), (1, 0), (2, 1)]
    test = [(0, test_item), (1, 1), (2, 1)]
    return InteractionData.from_pairs(np.array(train), np.array(valid), np.array(test), n_users=3, n_items=4,
                                      social=np.array([(0, 1)]), allow_empty=())


def lse(*v):
    return math.log(sum(math.exp(x) for x in v))


# ----------------------------------------------------------------------------- the split
def test_split_counts_partition_and_batch_independence():
    data = make_synthetic(n_users=80, n_items=60, seed=1, density=0.15)
    users = np.arange(80)
    keys = np.arange(80, dtype=np.uint64) * np.uint64(7919)
    vis, held = split_heldout(data.train[users], keys, 0.2)
    n = np.diff(data.train.indptr)
    n_hold = np.diff(held.indptr)
    expect = np.where(n >= 2, np.clip(np.floor(0.2 * n + 0.5), 1, n - 1), 0)
    np.testing.assert_array_equal(n_hold, expect)
    # visible and held-out partition the training rows
    assert (vis.multiply(held)).nnz == 0
    assert abs(vis + held - data.train).sum() == 0
    # a row's split depends on its key only, not on the rest of the batch
    v1, h1 = split_heldout(data.train[[5]], keys[[5]], 0.2)
    assert (h1 != held[5]).nnz == 0 and (v1 != vis[5]).nnz == 0
    # another key gives (almost surely) another split somewhere
    _, h2 = split_heldout(data.train[users], keys + np.uint64(1), 0.2)
    assert (h2 != held).nnz > 0


def test_split_latest_holds_out_each_users_most_recent_items():
    """holdout_order="latest": the same counts as the random split, the held-out items each user's most recent by
    train_time, the same every episode; refused for data without an order."""
    data = make_synthetic(n_users=80, n_items=60, seed=1, density=0.15)
    users = np.arange(80)
    vis, held = split_latest(data.train[users], data.train_time[users], 0.2)
    _, random_held = split_heldout(data.train[users], np.arange(80, dtype=np.uint64), 0.2)
    np.testing.assert_array_equal(np.diff(held.indptr), np.diff(random_held.indptr))
    assert (vis.multiply(held)).nnz == 0 and abs(vis + held - data.train).sum() == 0
    times = data.train_time
    for u in range(80):
        if held[u].nnz:  # every held-out item is at least as recent as every visible one
            assert times[u, held[u].indices].min() >= times[u, vis[u].indices].max()
    reward = CollaborativeReward(data, holdout_order="latest")
    a, b = reward.prepare(users, np.random.default_rng(0)), reward.prepare(users, np.random.default_rng(1))
    assert (a.heldout != held).nnz == 0 and (b.heldout != held).nnz == 0
    with pytest.raises(ValueError, match="no training order"):
        CollaborativeReward(tiny_data(), holdout_order="latest")
    with pytest.raises(ValueError, match="holdout_order"):
        GraphScoreReward(data, holdout_order="oldest")


def test_holdout_zero_holds_out_nothing_and_is_refused_where_the_reward_scores_held_out_items():
    """holdout=0: the condition is the whole training row (as at evaluation), for both orders; the rewards that score
    the held-out items refuse it by name rather than scoring an empty set."""
    data = make_synthetic(n_users=80, n_items=60, seed=1, density=0.15)
    users = np.arange(80)
    for vis, held in (split_heldout(data.train[users], np.arange(80, dtype=np.uint64), 0.0),
                      split_latest(data.train[users], data.train_time[users], 0.0)):
        assert held.nnz == 0 and abs(vis - data.train).sum() == 0
    state = GraphScoreReward(data, holdout=0.0).prepare(users, np.random.default_rng(0))
    assert state.heldout.nnz == 0 and abs(state.visible - data.train).sum() == 0
    assert ReconstructionReward(data, holdout=0.0).prepare(users, np.random.default_rng(0)).heldout.nnz == 0
    for cls in (CollaborativeReward, TopKReward):
        with pytest.raises(ValueError, match=f"holdout=0 .* the '{cls.name}' reward scores the held-out ones"):
            cls(data, holdout=0.0)


def test_graph_score_recency_weights_the_visible_row_before_the_hops():
    """recency=w_min: the graph target is (c * recency weights) W, so with EASE's graph it ranks as T-EASE."""
    data = make_synthetic(n_users=40, n_items=30, seed=2, density=0.2)
    users = np.arange(10)
    plain = GraphScoreReward(data, graph="cooc", n_hops=1, holdout_order="latest")
    timed = GraphScoreReward(data, graph="cooc", n_hops=1, holdout_order="latest", recency=0.2)
    a, b = plain.prepare(users, np.random.default_rng(0)), timed.prepare(users, np.random.default_rng(0))
    weighted = b.visible.multiply(data.recency_weights(0.2)[users]).toarray()
    np.testing.assert_allclose(b.tensors["graph_score"].numpy(), weighted @ timed.graph.toarray(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a.tensors["graph_score"].numpy(), b.visible.toarray() @ plain.graph.toarray(),
                               rtol=1e-5, atol=1e-6)


def test_prepare_rejects_bad_users():
    r = CollaborativeReward(tiny_data())
    with pytest.raises(ValueError, match="user id 3 out of range"):
        r.prepare(np.array([0, 3]), np.random.default_rng(0))
    with pytest.raises(ValueError, match="integer array"):
        r.prepare(np.array([0.5]), np.random.default_rng(0))


# ----------------------------------------------------------------------------- hand-computed values
def _split_of_user0(reward):
    state = reward.prepare(np.array([0]), np.random.default_rng(0))
    (c,) = state.visible.indices
    (h,) = state.heldout.indices
    assert {int(c), int(h)} == {0, 1}
    return state, int(c), int(h)


def test_collaborative_reward_matches_hand_computation():
    data = tiny_data()
    # G: from item 0 or 1 to item 2 with weight 2 and to item 3 with weight 1 (rows 2, 3 empty)
    G = sp.csr_matrix(np.array([[0, 0, 2, 1], [0, 0, 2, 1], [0, 0, 0, 0], [0, 0, 0, 0]], dtype=np.float32))
    lam, mu = 0.5, 0.25
    reward = CollaborativeReward(data, tau=2.0, hop_weight=lam, n_hops=1, social_weight=mu, graph=G)
    state, c, h = _split_of_user0(reward)
    s = [1.0, 2.0, 3.0, 0.0]
    scores = torch.tensor([s])
    z = [v / 2.0 for v in s]  # tau = 2
    norm = lse(*[z[j] for j in range(4) if j != c])  # the condition item c is masked out of the softmax
    logp = {j: z[j] - norm for j in range(4) if j != c}
    likelihood = logp[h]  # one held-out item
    hop1 = lam * (2 / 3 * logp[2] + 1 / 3 * logp[3])  # c G = [0, 0, 2, 1] normalised to sum 1
    social = mu * (0.5 * logp[2] + 0.5 * logp[3])  # friend (user 1) trains on items 2 and 3
    comps = reward.components(scores, state)
    assert set(comps) == {"likelihood", "hop1", "social"}
    assert comps["likelihood"].item() == pytest.approx(likelihood, rel=1e-6)
    assert comps["hop1"].item() == pytest.approx(hop1, rel=1e-6)
    assert comps["social"].item() == pytest.approx(social, rel=1e-6)
    assert reward(scores, state).item() == pytest.approx(likelihood + hop1 + social, rel=1e-6)


def test_collaborative_reward_never_reads_valid_or_test():
    kw = dict(hop_weight=0.3, n_hops=2, social_weight=0.2)
    r1 = CollaborativeReward(tiny_data(valid_item=3, test_item=2), **kw)
    r2 = CollaborativeReward(tiny_data(valid_item=2, test_item=3), **kw)
    scores = torch.tensor([[0.3, -1.0, 2.0, 0.5], [1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 2.0, 3.0]])
    users = np.array([0, 1, 2])
    out1 = r1(scores, r1.prepare(users, np.array([1, 2, 3])))
    out2 = r2(scores, r2.prepare(users, np.array([1, 2, 3])))
    torch.testing.assert_close(out1, out2, rtol=0, atol=0)


def test_hop_signal_uses_visible_items_only():
    data = make_synthetic(n_users=50, n_items=40, seed=2, density=0.2)
    reward = CollaborativeReward(data, hop_weight=1.0, n_hops=2, social_weight=0.0)
    state = reward.prepare(np.arange(50), np.random.default_rng(3))
    t = {k: v.numpy() for k, v in state.tensors.items() if k.startswith("target_")}
    hop1 = t["target_terms"] == 1
    q1 = sp.csr_matrix((t["target_weights"][hop1], (t["target_rows"][hop1], t["target_cols"][hop1])), shape=(50, 40))
    # the first hop recomputed from the visible rows alone: c G, condition items dropped, rows summing to 1
    expect = (state.visible @ reward.graph).toarray()
    expect[state.visible.toarray() > 0] = 0
    sums = expect.sum(1, keepdims=True)
    expect = np.divide(expect, sums, out=np.zeros_like(expect), where=sums > 0)
    np.testing.assert_allclose(q1.toarray(), expect, rtol=1e-5, atol=1e-7)
    q = sp.csr_matrix((t["target_weights"], (t["target_rows"], t["target_cols"])), shape=(50, 40))
    assert q.multiply(state.visible).nnz == 0  # no target on a condition item


def test_topk_reward_hand_computation():
    data = tiny_data()
    state, c, h = _split_of_user0(TopKReward(data))
    other = 1 - h  # == c
    # scores: item 3 first, then the held-out item, then item 2; the condition item is masked
    s = np.zeros(4, dtype=np.float32)
    s[3], s[h], s[2], s[other] = 3.0, 2.0, 1.0, 10.0
    scores = torch.tensor(s).unsqueeze(0)
    ndcg = TopKReward(data, k=20, metric="ndcg")
    assert ndcg(scores, state).item() == pytest.approx(1 / math.log2(3), rel=1e-6)
    assert TopKReward(data, k=1, metric="recall")(scores, state).item() == 0.0
    assert TopKReward(data, k=2, metric="recall")(scores, state).item() == 1.0


def test_topk_reward_zero_without_heldout_items():
    data = InteractionData.from_pairs(np.array([(0, 0), (1, 1), (1, 2)]), np.array([(0, 1)]), np.array([(1, 0)]))
    r = TopKReward(data)
    state = r.prepare(np.array([0, 1]), np.array([5, 6]))
    assert state.heldout[0].nnz == 0 and state.heldout[1].nnz == 1
    out = r(torch.randn(2, 3), state)
    assert out[0].item() == 0.0 and out.shape == (2,)


def test_reconstruction_and_function_rewards():
    data = tiny_data()
    r = ReconstructionReward(data)
    state = r.prepare(np.array([0, 2]), np.array([1, 2]))
    scores = torch.tensor([[1.0, 0.5, 0.0, 0.0], [0.0, 0.0, 1.0, 2.0]])
    # user 0 history [1, 1, 0, 0]; user 2 history [1, 0, 1, 1]
    expect = torch.tensor([-(0 + 0.25 + 0 + 0) / 4, -(1 + 0 + 0 + 1) / 4])
    torch.testing.assert_close(r(scores, state), expect)

    f = FunctionReward(data, lambda x, ctx: x[:, 0] + ctx["users"].float())
    torch.testing.assert_close(f(scores, f.prepare(np.array([0, 2]), np.array([1, 2]))), torch.tensor([1.0, 2.0]))
    bad = FunctionReward(data, lambda x, ctx: x)
    with pytest.raises(ValueError, match=r"expected a tensor of shape \(2,\)"):
        bad(scores, bad.prepare(np.array([0, 2]), np.array([1, 2])))


def test_make_reward_and_validation():
    data = tiny_data()
    assert isinstance(make_reward("refit", data), CollaborativeReward)
    assert isinstance(make_reward("collaborative", data), CollaborativeReward)
    assert isinstance(make_reward("topk", data, k=5), TopKReward)
    assert isinstance(make_reward("reconstruction", data), ReconstructionReward)
    assert isinstance(make_reward(lambda x, c: x.sum(1), data), FunctionReward)
    with pytest.raises(ValueError, match="unknown reward 'ndcg'"):
        make_reward("ndcg", data)
    with pytest.raises(ValueError, match="tau=0"):
        CollaborativeReward(data, tau=0)
    with pytest.raises(ValueError, match="holdout=1.0"):
        CollaborativeReward(data, holdout=1.0)
    r = CollaborativeReward(data)
    state = r.prepare(np.array([0]), np.array([1]))
    with pytest.raises(ValueError, match=r"scores have shape \(1, 3\), expected \(1, 4\)"):
        r(torch.zeros(1, 3), state)


def test_reward_cost_is_sparse_in_users_and_items():
    """No dense n_users x n_items array: 100k users x 2k items would be 800 MB dense in float32."""
    rng = np.random.default_rng(0)
    n_users, n_items = 100_000, 2_000
    users = np.repeat(np.arange(n_users), 4)
    items = rng.integers(0, n_items, size=len(users))
    pairs = np.stack([users, items], 1)
    social = rng.integers(0, n_users, size=(n_users, 2))
    data = InteractionData.from_pairs(pairs, pairs[:10], pairs[10:20], n_users=n_users, n_items=n_items, social=social)
    tracemalloc.start()
    try:
        reward = CollaborativeReward(data, hop_weight=0.5, n_hops=2, social_weight=0.5)
        batch = rng.integers(0, n_users, size=64)
        state = reward.prepare(batch, rng)
        out = reward(torch.randn(64, n_items), state)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out.shape == (64,) and torch.isfinite(out).all()
    assert peak < 100e6, f"reward used {peak / 1e6:.0f} MB of numpy/python memory"


def test_graph_score_reward_matches_hand_computation():
    data = tiny_data()
    # W: items 0/1 point to item 2 (weight 2) and 3 (weight 1); item 2 points to item 3 (weight 4)
    W = np.array([[0, 0, 2, 1], [0, 0, 2, 1], [0, 0, 0, 4], [0, 0, 0, 0]], dtype=np.float32)
    gamma = 0.5
    reward = GraphScoreReward(data, graph=W, n_hops=2, gamma=gamma)
    state, c, h = _split_of_user0(reward)
    visible = np.zeros(4)
    visible[c] = 1
    s = visible @ W + gamma * (visible @ W @ W)  # = [0, 0, 2, 1 + 4] for either visible item
    cand = [j for j in range(4) if j != c]

    def z(v):
        v = np.array([v[j] for j in cand], dtype=np.float64)
        return (v - v.mean()) / v.std()

    x0 = [0.3, -1.0, 2.0, 0.5]
    expected = -np.mean((z(x0) - z(s)) ** 2)
    assert reward(torch.tensor([x0]), state).item() == pytest.approx(expected, rel=1e-5)
    # the reward depends on the order-defining shape of x0 only: a positive affine map leaves it unchanged
    assert reward(torch.tensor([[3 * v + 7 for v in x0]]), state).item() == pytest.approx(expected, rel=1e-5)
    # scores that follow the graph scores exactly get the maximum, 0
    assert reward(torch.tensor([list(s)], dtype=torch.float32), state).item() == pytest.approx(0.0, abs=1e-6)


def test_graph_score_softmax_target_matches_hand_computation():
    data = make_synthetic(n_users=60, n_items=40, seed=1)
    reward = GraphScoreReward(data, graph="ease", target="softmax", temperature=0.5)
    state = reward.prepare(np.arange(4), np.random.default_rng(0))
    x0 = torch.randn(4, 40, generator=torch.Generator().manual_seed(1), requires_grad=True)
    r = reward(x0, state)
    for b in range(4):  # -KL(softmax(z(s)/tau) || softmax(z(x0)/tau)) over the candidates, in float64
        cand = ~np.isin(np.arange(40), state.visible[b].indices)
        rows = (x0[b].detach().double().numpy()[cand], state.tensors["graph_score"][b].double().numpy()[cand])
        z = [(v - v.mean()) / max(v.std(), 1e-8) for v in rows]  # a constant row (an isolated item) standardises to 0
        log_q, log_p = (v / 0.5 - np.log(np.exp(v / 0.5).sum()) for v in z)
        assert r[b].item() == pytest.approx((np.exp(log_p) * (log_q - log_p)).sum(), rel=1e-4, abs=1e-6)
    assert (r <= 1e-6).all()
    grad = torch.autograd.grad(r.sum(), x0)[0]
    assert torch.isfinite(grad).all() and (grad[torch.as_tensor(state.visible.toarray() > 0)] == 0).all()
    # the same order scores the maximum, 0, at any scale
    assert reward(3 * state.tensors["graph_score"] + 1, state).abs().max().item() < 1e-5
    assert not reward.supports_item_terms and GraphScoreReward(data, graph="cooc").supports_item_terms
    with pytest.raises(NotImplementedError, match="graph-score"):
        reward.item_terms(x0, state)
    with pytest.raises(ValueError, match="target="):
        GraphScoreReward(data, graph="cooc", target="listnet")
    with pytest.raises(ValueError, match="temperature="):
        GraphScoreReward(data, graph="cooc", target="softmax", temperature=0.0)


def test_graph_score_reward_builds_its_graphs():
    data = make_synthetic(n_users=60, n_items=40, seed=1)
    for graph in ("cooc", "ease"):
        reward = make_reward("graph-score", data, graph=graph)
        state = reward.prepare(np.arange(5), np.random.default_rng(0))
        r = reward(torch.randn(5, 40), state)
        assert r.shape == (5,) and torch.isfinite(r).all() and (r <= 0).all()
    with pytest.raises(ValueError, match="graph="):
        GraphScoreReward(data, graph="pagerank")
    with pytest.raises(ValueError, match="shape"):
        GraphScoreReward(data, graph=np.zeros((3, 3)))


# ----------------------------------------------------------------------------- per-item terms
def _item_term_rewards(data):
    w = torch.randn(data.n_items, generator=torch.Generator().manual_seed(0))
    return [GraphScoreReward(data, graph="cooc"), GraphScoreReward(data, graph="ease", n_hops=2), ReconstructionReward(data),
            FunctionReward(data, item_f=lambda x, ctx: w * x, name="linear"),
            FunctionReward(data, lambda x, ctx: (w * x).sum(1), item_f=lambda x, ctx: w * x)]


def test_item_terms_sum_to_the_reward():
    data = make_synthetic(n_users=60, n_items=40, seed=1)
    users = np.arange(12)
    for reward in _item_term_rewards(data):
        assert reward.supports_item_terms, reward
        state = reward.prepare(users, np.random.default_rng(0))
        for scale in (0.1, 1.0, 30.0):
            x0 = scale * torch.randn(len(users), data.n_items, generator=torch.Generator().manual_seed(int(10 * scale)))
            x0[0] = 0.5  # a constant row: the degenerate standardisation of the graph score
            terms = reward.item_terms(x0, state)
            assert terms.shape == (len(users), data.n_items) and terms.dtype == torch.float32
            torch.testing.assert_close(terms.sum(1), reward(x0, state), rtol=1e-5, atol=1e-5 * scale ** 2)
        if isinstance(reward, GraphScoreReward):  # visible (non-candidate) items carry nothing
            rows, cols = state.tensors["visible_index"]
            assert torch.all(terms[rows, cols] == 0)


def test_rewards_without_item_terms_say_so_by_name():
    data = tiny_data()
    for reward in (CollaborativeReward(data), TopKReward(data), FunctionReward(data, lambda x, ctx: x.sum(1))):
        assert not reward.supports_item_terms
        state = reward.prepare(np.array([0]), np.array([1]))
        with pytest.raises(NotImplementedError, match=f"reward '{reward.name}'.*no per-item terms"):
            reward.item_terms(torch.zeros(1, 4), state)
    with pytest.raises(TypeError, match="needs a reward function"):
        FunctionReward(data)
    bad = FunctionReward(data, item_f=lambda x, ctx: x.sum(1))
    with pytest.raises(ValueError, match=r"expected a tensor of shape \(1, 4\)"):
        bad.item_terms(torch.zeros(1, 4), bad.prepare(np.array([0]), np.array([1])))


def test_graph_score_item_terms_follow_the_reward_gradient():
    """Per-item credit follows ``sum_j d r_j / d x0_j`` in expectation (Stein's lemma): with the corrected
    terms it matches ``dR/dx0`` up to O(1/|N|); the plain squared gaps would miss the scale-invariance term."""
    n_items = 300
    data = make_synthetic(n_users=20, n_items=n_items, seed=0)
    graph = np.random.default_rng(0).random((n_items, n_items)).astype(np.float32) ** 4  # dense: s varies everywhere
    reward = GraphScoreReward(data, graph=graph, n_hops=1)
    state = reward.prepare(np.array([0]), np.array([1]))
    z_s = reward._standardised(torch.zeros(1, n_items), state)[1]
    for mix in (0.25, 0.8):
        x0 = (mix * z_s + (1 - mix ** 2) ** 0.5 * torch.randn(1, n_items, generator=torch.Generator().manual_seed(2)))
        x0 = x0.double().requires_grad_(True)
        true = torch.autograd.grad(reward.components(x0, state)["graph_score"].sum(), x0)[0][0]
        diag = torch.autograd.functional.jacobian(lambda x: reward.item_terms(x, state)[0], x0)[:, 0].diagonal()

        def squared_gaps(x):
            z_x, z, cand = reward._standardised(x, state)
            return (-(z_x - z).pow(2) / cand.sum())[0]

        plain = torch.autograd.functional.jacobian(squared_gaps, x0)[:, 0].diagonal()
        assert float((diag - true).norm() / true.norm()) < 0.03
        assert float((plain - true).norm() / true.norm()) > 0.2


# ----------------------------------------------------------------------------- factored scores (refit_gym.scores)
@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of 3 rows on 17 items, so that every path crosses chunk boundaries."""
    import refit_gym.scores as scores_module

    monkeypatch.setattr(scores_module, "CPU_CHUNK_ELEMENTS", 3 * 17)


def test_low_rank_logsumexp_matches_the_dense_softmax_and_its_gradients(small_chunks):
    from refit_gym.scores import low_rank_cross_entropy, low_rank_logsumexp

    g = torch.Generator().manual_seed(0)
    B, n, r = 10, 17, 5
    u = torch.randn(B, r, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(n, r, generator=g, dtype=torch.float64, requires_grad=True)
    rows = torch.tensor([7, 0, 0, 3, 9, 7] + [4] * n)  # unsorted, a repeat, and row 4 excluded entirely
    cols = torch.tensor([1, 16, 2, 5, 0, 1] + list(range(n)))
    dense = (u @ w.t()).index_put((rows, cols), torch.tensor(float("-inf"), dtype=torch.float64))
    expect = torch.logsumexp(dense, dim=1)
    got = low_rank_logsumexp(u, w, (rows, cols))
    assert got[4] == float("-inf") and torch.allclose(got[torch.arange(B) != 4], expect[torch.arange(B) != 4])
    weights = torch.randn(B, generator=g, dtype=torch.float64) * (torch.arange(B) != 4)
    grads = torch.autograd.grad((got.nan_to_num(neginf=0.0) * weights).sum(), (u, w))
    expect_grads = torch.autograd.grad((expect.nan_to_num(neginf=0.0) * weights).sum(), (u, w))
    for a, b in zip(grads, expect_grads):
        assert torch.isfinite(a).all() and torch.allclose(a, b)
    assert torch.autograd.gradcheck(lambda a, b: low_rank_logsumexp(a, b, (rows[:6], cols[:6])), (u, w))
    # equal row gradients (a sum or mean of the rows) take the gradients formed in the forward pass
    def part():
        return (u @ w.t()).index_put((rows[:6], cols[:6]), torch.tensor(float("-inf"), dtype=torch.float64))

    for reduce in (torch.sum, torch.mean):
        got = torch.autograd.grad(reduce(low_rank_logsumexp(u, w, (rows[:6], cols[:6]))), (u, w))
        for a, b in zip(got, torch.autograd.grad(reduce(torch.logsumexp(part(), dim=1)), (u, w))):
            assert torch.allclose(a, b)
        # ... less the part of rows whose gradient is 0 (rows without a target)
        mask = (torch.arange(B) % 3 != 1).double()
        got = torch.autograd.grad(reduce(low_rank_logsumexp(u, w, (rows[:6], cols[:6])) * mask), (u, w))
        for a, b in zip(got, torch.autograd.grad(reduce(torch.logsumexp(part(), dim=1) * mask), (u, w))):
            assert torch.allclose(a, b)
        only_w = torch.autograd.grad(reduce(low_rank_logsumexp(u.detach(), w)), w)[0]
        assert torch.allclose(only_w, torch.autograd.grad(reduce(torch.logsumexp(u.detach() @ w.t(), 1)), w)[0])
    with torch.no_grad():
        assert torch.allclose(low_rank_logsumexp(u, w, (rows[:6], cols[:6])), torch.logsumexp(part(), dim=1))
    target = torch.randint(0, n, (B,), generator=g)
    assert torch.allclose(low_rank_cross_entropy(u, w, target),
                          torch.nn.functional.cross_entropy(u @ w.t(), target, reduction="none"))


def test_a_reward_reads_factored_scores_as_the_dense_ones(small_chunks):
    """The ReFiT reward on ``LowRankScores`` equals it on their dense matrix (values and gradients in both factors);
    a reward that does not read factors (top-k) is handed the dense matrix."""
    from refit_gym.scores import LowRankScores

    data = make_synthetic(n_users=12, n_items=17, seed=3, density=0.3)
    users = np.arange(12)
    for reward in (CollaborativeReward(data, tau=0.5, hop_weight=0.2, n_hops=2), TopKReward(data, k=3)):
        state = reward.prepare(users, np.random.default_rng(0))
        g = torch.Generator().manual_seed(1)
        u = torch.randn(12, 4, generator=g, requires_grad=True)
        w = torch.randn(17, 4, generator=g, requires_grad=True)
        factored = reward.components(LowRankScores(u, w), state)
        dense = reward.components(u @ w.t(), state)
        assert factored.keys() == dense.keys()
        for name in dense:
            assert torch.allclose(factored[name], dense[name], atol=1e-5), name
        if reward.differentiable:
            a = torch.autograd.grad(reward(LowRankScores(u, w), state).sum(), (u, w))
            b = torch.autograd.grad(reward(u @ w.t(), state).sum(), (u, w))
            assert all(torch.allclose(x, y, atol=1e-5) for x, y in zip(a, b))
    with pytest.raises(ValueError, match="expected"):
        reward.components(LowRankScores(u[:3], w), state)
