"""Tests of refit_gym.metrics: hand-computed values, masking, batching, backbone scoring."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from refit_gym.data import InteractionData
from refit_gym.metrics import backbone_score_fn, evaluate, format_table, metric_keys, ranking_metrics

# ----------------------------------------------------------------------------- the hand-computed case
# 4 users, 6 items. Scores per user (higher first); for split 'test' the known items are train + valid.
#
# user 0: scores 0.9 .. 0.4 for items 0..5, known {0} (train), truth {2, 5}
#         ranking after masking: 1, 2, 3, 4, 5 -> hits at ranks 2 and 5
# user 1: scores 0.1 .. 0.6 for items 0..5, known {5} (train), truth {4}
#         ranking after masking: 4, 3, 2, 1, 0 -> hit at rank 1
# user 2: some history (train {1}, valid {3}) but no test item -> skipped and counted
# user 3: scores 0.6 .. 0.1 for items 0..5, known {} , truth {0, 2, 3, 4}
#         ranking: 0, 1, 2, 3, 4, 5 -> hits at ranks 1, 3, 4, 5 (|T| = 4 > K for K = 1, 3)
#
# with d(i) = 1 / log2(i + 1): d1 = 1, d2 = 0.630930, d3 = 0.5, d4 = 0.430677, d5 = 0.386853
#
#            recall        ndcg                                       precision  mrr   hit
# u0 @1      0/2 = 0       0                                          0          0     0
# u0 @3      1/2           d2 / (d1 + d2) = 0.630930/1.630930=0.386853 1/3        1/2   1
# u0 @5      2/2 = 1       (d2 + d5) / (d1 + d2) = 1.017783/1.630930   2/5        1/2   1
#                            = 0.624051
# u1 @1,3,5  1             1                                          1, 1/3, 1/5  1   1
# u3 @1      1/4 (not 1)   d1 / d1 = 1 (IDCG over min(K,|T|) = 1)     1          1     1
# u3 @3      2/4           (d1 + d3) / (d1 + d2 + d3) = 1.5/2.130930  2/3        1     1
#                            = 0.703918
# u3 @5      4/4           (d1 + d3 + d4 + d5) / (d1 + d2 + d3 + d4)  4/5        1     1
#                            = 2.317530 / 2.561607 = 0.904717
#
# means over the 3 evaluated users (u0, u1, u3):
EXPECTED = {
    "recall@1": (0 + 1 + 0.25) / 3,  # 0.416667
    "recall@3": (0.5 + 1 + 0.5) / 3,  # 0.666667
    "recall@5": (1 + 1 + 1) / 3,  # 1.0
    "ndcg@1": (0 + 1 + 1) / 3,  # 0.666667
    "ndcg@3": (0.386853 + 1 + 0.703918) / 3,  # 0.696924
    "ndcg@5": (0.624051 + 1 + 0.904717) / 3,  # 0.842923
    "precision@1": (0 + 1 + 1) / 3,  # 0.666667
    "precision@3": (1 / 3 + 1 / 3 + 2 / 3) / 3,  # 0.444444
    "precision@5": (0.4 + 0.2 + 0.8) / 3,  # 0.466667
    "mrr@1": (0 + 1 + 1) / 3,  # 0.666667
    "mrr@3": (0.5 + 1 + 1) / 3,  # 0.833333
    "mrr@5": (0.5 + 1 + 1) / 3,  # 0.833333
    "hitrate@1": (0 + 1 + 1) / 3,  # 0.666667
    "hitrate@3": 1.0,
    "hitrate@5": 1.0,
}
KS = (1, 3, 5)
SCORES = torch.tensor([
    [0.9, 0.8, 0.7, 0.6, 0.5, 0.4],
    [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
    [0.3, 0.3, 0.3, 0.3, 0.3, 0.3],
    [0.6, 0.5, 0.4, 0.3, 0.2, 0.1],
])


@pytest.fixture
def hand_data() -> InteractionData:
    return InteractionData.from_pairs(
        train=np.array([[0, 0], [1, 5], [2, 1]]),
        valid=np.array([[2, 3]]),
        test=np.array([[0, 2], [0, 5], [1, 4], [3, 0], [3, 2], [3, 3], [3, 4]]),
        n_users=4, n_items=6,
    )


def score_table(users: np.ndarray) -> torch.Tensor:
    return SCORES[torch.as_tensor(users)]


@pytest.mark.parametrize("batch_size", [1, 2, 1024])
def test_evaluate_matches_hand_computed_values(hand_data, batch_size):
    res = evaluate(score_table, hand_data, split="test", ks=KS, batch_size=batch_size)
    assert res["n_users_evaluated"] == 3
    assert res["n_users_skipped_empty_truth"] == 1
    assert list(res) == metric_keys(KS) + ["n_users_evaluated", "n_users_skipped_empty_truth"]
    for key, value in EXPECTED.items():
        assert isinstance(res[key], float)
        assert res[key] == pytest.approx(value, abs=1e-5), key


def test_ranking_metrics_per_user_values(hand_data):
    users = np.array([0, 1, 3])
    out = ranking_metrics(SCORES[users], hand_data.known_items("test")[users], hand_data.test[users], ks=(3, 5))
    assert set(out) == set(metric_keys((3, 5))) | {"n_truth"}
    torch.testing.assert_close(out["n_truth"], torch.tensor([2.0, 1.0, 4.0]))
    torch.testing.assert_close(out["recall@3"], torch.tensor([0.5, 1.0, 0.5]))
    torch.testing.assert_close(out["ndcg@3"], torch.tensor([0.386853, 1.0, 0.703918]), atol=1e-5, rtol=0)
    torch.testing.assert_close(out["ndcg@5"], torch.tensor([0.624051, 1.0, 0.904717]), atol=1e-5, rtol=0)
    torch.testing.assert_close(out["mrr@5"], torch.tensor([0.5, 1.0, 1.0]))
    torch.testing.assert_close(out["precision@5"], torch.tensor([0.4, 0.2, 0.8]))


def test_known_item_with_highest_score_is_never_a_hit():
    scores = torch.tensor([[10.0, 1.0, 0.5, 0.2], [0.0, 0.0, 0.0, 9.0]])
    known = sp.csr_matrix(np.array([[1, 0, 0, 0], [0, 1, 1, 1]], dtype=np.float32))
    truth = np.array([[1, 0, 0, 0], [0, 0, 0, 1]], dtype=bool)  # truth overlaps the masked item
    out = ranking_metrics(scores, known, truth, ks=(1, 4))
    for m in ("recall", "ndcg", "precision", "mrr", "hitrate"):
        # user 1 has a single unmasked item, so masked (-inf) items fill its top 4: still no hit
        torch.testing.assert_close(out[f"{m}@4"], torch.zeros(2), msg=m)
    # without the mask the same items are hits at rank 1
    unmasked = ranking_metrics(scores, None, truth, ks=(1,))
    torch.testing.assert_close(unmasked["hitrate@1"], torch.ones(2))


def test_dense_and_sparse_inputs_agree_and_k_beyond_n_items():
    gen = torch.Generator().manual_seed(0)
    scores = torch.rand(5, 7, generator=gen)
    known = (torch.rand(5, 7, generator=gen) < 0.3)
    truth = (torch.rand(5, 7, generator=gen) < 0.4) & ~known
    a = ranking_metrics(scores, known, truth, ks=(3, 50))
    b = ranking_metrics(scores, sp.csr_matrix(known.numpy()), sp.csr_matrix(truth.numpy().astype(np.float32)), ks=(3, 50))
    for key in a:
        torch.testing.assert_close(a[key], b[key])
    has = truth.any(1)
    # K = 50 > n_items ranks every unmasked item: every truth item is found
    torch.testing.assert_close(a["recall@50"][has], torch.ones(int(has.sum())))


def _reference(scores, known, truth, k):
    """Per-user loop: the textbook definitions (slow, for the test only)."""
    rows = []
    for s, kn, t in zip(scores.tolist(), known.tolist(), truth.tolist()):
        cand = sorted((i for i in range(len(s)) if not kn[i]), key=lambda i: -s[i])[:k]
        rel = [t[i] for i in cand]
        n_t = sum(t)
        dcg = sum(r / math.log2(i + 2) for i, r in enumerate(rel))
        idcg = sum(1 / math.log2(i + 2) for i in range(min(k, n_t)))
        first = next((i + 1 for i, r in enumerate(rel) if r), None)
        rows.append([sum(rel) / n_t, dcg / idcg, sum(rel) / k, 1 / first if first else 0.0, float(first is not None)])
    return torch.tensor(rows)


def test_ranking_metrics_match_reference_on_random_data():
    gen = torch.Generator().manual_seed(1)
    scores = torch.randn(64, 40, generator=gen)  # continuous scores: no ties
    known = torch.rand(64, 40, generator=gen) < 0.2
    truth = (torch.rand(64, 40, generator=gen) < 0.15) & ~known
    truth[:, 0] |= ~truth.any(1) & ~known[:, 0]
    keep = truth.any(1)
    scores, known, truth = scores[keep], known[keep], truth[keep]
    for k in (1, 5, 10):
        out = ranking_metrics(scores, known, truth, ks=(k,))
        got = torch.stack([out[f"{m}@{k}"] for m in ("recall", "ndcg", "precision", "mrr", "hitrate")], 1)
        torch.testing.assert_close(got, _reference(scores, known, truth, k), atol=1e-5, rtol=1e-5)


def test_evaluate_user_subset_and_errors(hand_data):
    res = evaluate(score_table, hand_data, split="test", ks=(1,), users=np.array([1, 2]))
    assert res["n_users_evaluated"] == 1 and res["n_users_skipped_empty_truth"] == 1
    assert res["recall@1"] == 1.0
    with pytest.raises(ValueError, match="no user"):
        evaluate(score_table, hand_data, split="test", users=np.array([2]))
    with pytest.raises(ValueError, match="shape"):
        evaluate(lambda u: torch.zeros(len(u), 3), hand_data, split="test")
    with pytest.raises(ValueError, match="split"):
        evaluate(score_table, hand_data, split="train")
    with pytest.raises(ValueError, match="cut-off"):
        evaluate(score_table, hand_data, ks=(0,))
    assert "recall" in format_table(evaluate(score_table, hand_data, ks=(1, 3)), (1, 3))


def test_valid_split_masks_train_only(hand_data):
    # valid truth: user 2 -> item 3; known = train {1}. Scores for user 2 are all ties except the mask.
    scores = lambda u: torch.tensor([[0.0, 9.0, 0.0, 5.0, 0.0, 0.0]]).expand(len(u), -1)  # noqa: E731
    res = evaluate(scores, hand_data, split="valid", ks=(1,))
    assert res["n_users_evaluated"] == 1 and res["n_users_skipped_empty_truth"] == 3
    assert res["hitrate@1"] == 1.0  # item 1 (train) is masked, item 3 comes first


class _EchoAdapter(torch.nn.Module):
    """A stand-in backbone whose inference returns its condition (the visible history)."""

    n_items = 6

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1))
        self.seen_training = []

    def encode_condition(self, users, visible):
        return visible.toarray().astype(np.float32)

    def infer(self, condition, users=None, deterministic=True):
        self.seen_training.append(self.training)
        assert not torch.is_grad_enabled()
        return condition * self.w + torch.linspace(0, 0.1, self.n_items)


def test_backbone_score_fn_conditions_on_train_and_restores_mode(hand_data):
    adapter = _EchoAdapter().train()
    fn = backbone_score_fn(adapter, hand_data, "test")
    out = fn(np.array([2]))
    # user 2: train {1} only, valid item 3 not visible with condition_on='train'
    assert out[0, 1] > 1 and out[0, 3] < 1
    assert adapter.seen_training == [False] and adapter.training
    out = backbone_score_fn(adapter, hand_data, "test", condition_on="train+valid")(np.array([2]))
    assert out[0, 3] > 1
    with pytest.raises(ValueError, match="leaks"):
        backbone_score_fn(adapter, hand_data, "valid", condition_on="train+valid")


def test_backbone_score_fn_with_real_diffrec_adapter(hand_data):
    from refit_gym.diffusion.adapters import build_backbone

    adapter = build_backbone("diffrec", hand_data, hidden=[8], schedule={"steps": 3})
    res = evaluate(backbone_score_fn(adapter, hand_data, "test"), hand_data, split="test", ks=(1, 3))
    assert res["n_users_evaluated"] == 3 and 0.0 <= res["ndcg@3"] <= 1.0
