"""Tests of refit_gym.baselines and scripts/evaluate.py."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from conftest import REPO, shared_dataset
from refit_gym.baselines import EASE, TEASE, ItemKNN, MostPopular, NotFittedError, select_on_validation
from refit_gym.data import InteractionData
from refit_gym.metrics import evaluate, metric_keys


def random_data(n_users=40, n_items=12, density=0.25, seed=0) -> InteractionData:
    """Random binary interactions split 60/20/20 per interaction."""
    rng = np.random.default_rng(seed)
    pairs = np.argwhere(rng.random((n_users, n_items)) < density)
    part = rng.choice(3, size=len(pairs), p=[0.6, 0.2, 0.2])
    return InteractionData.from_pairs(pairs[part == 0], pairs[part == 1], pairs[part == 2],
                                      n_users=n_users, n_items=n_items)


# ----------------------------------------------------------------------------- EASE
def test_ease_closed_form_equals_constrained_ridge():
    data = random_data()
    lam = 3.0
    model = EASE(lam=lam).fit(data)
    x = data.train.toarray().astype(np.float64)
    n = x.shape[1]
    # column j of B solves min ||x_j - X_{-j} b||^2 + lam ||b||^2 with b_j = 0
    direct = np.zeros((n, n))
    for j in range(n):
        others = np.delete(np.arange(n), j)
        xo = x[:, others]
        direct[others, j] = np.linalg.solve(xo.T @ xo + lam * np.eye(n - 1), xo.T @ x[:, j])
    np.testing.assert_allclose(model.weights, direct, rtol=1e-4, atol=1e-6)
    assert np.all(np.diag(model.weights) == 0)
    users = np.array([0, 5, 7])
    np.testing.assert_allclose(model.scores(users).numpy(), x[users] @ direct, rtol=1e-4, atol=1e-5)


def test_ease_errors():
    data = random_data()
    with pytest.raises(ValueError, match="max_items"):
        EASE(lam=1.0, max_items=5).fit(data)
    with pytest.raises(ValueError, match="lam"):
        EASE(lam=0.0)
    with pytest.raises(NotFittedError):
        EASE().scores(np.array([0]))
    with pytest.raises(IndexError, match="user"):
        EASE(lam=1.0).fit(data).scores(np.array([data.n_users]))


def test_t_ease_scores_the_recency_weighted_history_with_eases_weights():
    """T-EASE: EASE's B of the binary training matrix, applied to the recency weights of the history; w_min = 1
    is EASE itself; data without an order is refused by name."""
    rng = np.random.default_rng(1)
    base = random_data()
    coo = base.train.tocoo()
    timed = InteractionData.from_pairs(np.c_[coo.row, coo.col], np.argwhere(base.valid.toarray() > 0),
                                       np.argwhere(base.test.toarray() > 0), n_users=base.n_users,
                                       n_items=base.n_items, train_time=rng.permutation(coo.nnz).astype(float))
    t = TEASE(lam=3.0, w_min=0.2).fit(timed)
    e = EASE(lam=3.0).fit(timed)
    np.testing.assert_allclose(t.weights, e.weights)
    users = np.array([0, 5, 7])
    w = timed.recency_weights(0.2, 1.0)[users].toarray()
    np.testing.assert_allclose(t.scores(users).numpy(), w @ e.weights, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(TEASE(lam=3.0, w_min=1.0).fit(timed).scores(users).numpy(), e.scores(users).numpy(),
                               rtol=1e-5, atol=1e-6)
    assert t.params() == {"lam": 3.0, "w_min": 0.2}
    with pytest.raises(ValueError, match="train_time"):
        TEASE(lam=3.0).fit(base)
    with pytest.raises(ValueError, match="w_min"):
        TEASE(w_min=1.5)


# ----------------------------------------------------------------------------- ItemKNN
def dense_cosine(x: np.ndarray, shrink: float = 0.0) -> np.ndarray:
    norms = np.sqrt((x ** 2).sum(0))
    sim = (x.T @ x) / (norms[:, None] * norms[None, :] + shrink + 1e-6)
    np.fill_diagonal(sim, 0.0)
    return sim


@pytest.mark.parametrize("shrink", [0.0, 2.0])
def test_itemknn_all_neighbours_equals_dense_cosine(shrink):
    data = random_data(seed=1)
    x = data.train.toarray().astype(np.float64)
    model = ItemKNN(k=1000, shrink=shrink, max_block_bytes=8 * 12 * 5).fit(data)  # blocks of 5 items
    np.testing.assert_allclose(model.similarity.toarray(), dense_cosine(x, shrink), rtol=1e-5, atol=1e-7)
    users = np.arange(data.n_users)
    np.testing.assert_allclose(model.scores(users).numpy(), x @ dense_cosine(x, shrink), rtol=1e-5, atol=1e-6)


def test_itemknn_keeps_top_k_per_item():
    data = random_data(n_users=60, n_items=15, seed=2)
    x = data.train.toarray().astype(np.float64)
    k = 3
    sim = dense_cosine(x)
    s = ItemKNN(k=k).fit(data).similarity.toarray()
    assert np.all((s > 0).sum(0) <= k)
    for j in range(sim.shape[1]):
        kept = s[:, j] > 0
        # every kept neighbour's similarity is the dense one, and none dropped beats a kept one
        np.testing.assert_allclose(s[kept, j], sim[kept, j], rtol=1e-5)
        if kept.any():
            assert sim[~kept, j].max(initial=0) <= sim[kept, j].min() + 1e-6
    with pytest.raises(ValueError, match="k must"):
        ItemKNN(k=0)


# ----------------------------------------------------------------------------- MostPopular
def test_most_popular_ordering():
    train = np.array([[0, 2], [1, 2], [2, 2], [0, 1], [1, 1], [2, 0]])
    data = InteractionData.from_pairs(train, np.array([[0, 3]]), np.array([[1, 3]]), n_users=3, n_items=4)
    model = MostPopular().fit(data)
    scores = model.scores(np.array([0, 2]))
    assert scores.shape == (2, 4) and scores.dtype == torch.float32
    torch.testing.assert_close(scores[0], torch.tensor([1.0, 2.0, 3.0, 0.0]))
    assert torch.equal(scores[0], scores[1])
    assert torch.argsort(scores[0], descending=True).tolist() == [2, 1, 0, 3]


# ----------------------------------------------------------------------------- selection
def test_select_on_validation_picks_the_table_maximum():
    data = random_data(n_users=80, n_items=20, seed=3)
    grid = [0.1, 10.0, 1000.0]
    sel = select_on_validation(lambda lam: EASE(lam=lam), grid, data, metric="recall@5")
    assert [row["value"] for row in sel.table] == grid
    values = [row["recall@5"] for row in sel.table]
    assert sel.value == grid[int(np.argmax(values))]
    assert sel.model.lam == sel.value and sel.model.weights is not None
    with pytest.raises(ValueError, match="metric"):
        select_on_validation(lambda lam: EASE(lam=lam), grid, data, metric="auc")


# ----------------------------------------------------------------------------- real data
def load_ml1m() -> InteractionData:
    folder = shared_dataset("ml-1m")
    return InteractionData.from_pairs(*(np.load(folder / f"{s}_list.npy") for s in ("train", "valid", "test")),
                                      name="ml-1m")


@pytest.mark.shared_data
def test_ease_reaches_published_numbers_on_ml1m():
    data = load_ml1m()
    res = evaluate(EASE(lam=1000.0).fit(data).scores, data, split="test", ks=(20,))
    # published (DiffRec paper, EASE on ml-1m): recall@20 0.1816, ndcg@20 0.1165
    assert res["recall@20"] >= 0.17
    assert res["ndcg@20"] >= 0.113


# ----------------------------------------------------------------------------- the script
def load_script():
    spec = importlib.util.spec_from_file_location("evaluate_script", REPO / "scripts" / "evaluate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_diffrec_folder(folder: Path, data: InteractionData) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for s in ("train", "valid", "test"):
        m = sp.coo_matrix(data.split(s))
        np.save(folder / f"{s}_list.npy", np.stack([m.row, m.col], 1).astype(np.int64))
    return folder


def test_script_baseline_pop_prints_one_json_object(tmp_path, capsys):
    folder = write_diffrec_folder(tmp_path / "tiny", random_data(seed=4))
    script = load_script()
    script.main(["--baseline", "pop", "--data", str(folder), "--split", "test", "--ks", "5", "10", "--json"])
    out = capsys.readouterr().out
    obj = json.loads(out)  # exactly one JSON document, nothing else on stdout
    for key in metric_keys((5, 10)) + ["n_users_evaluated", "n_users_skipped_empty_truth", "split", "model"]:
        assert key in obj, key
    assert obj["split"] == "test" and obj["model"] == "pop"
    assert obj["n_users_evaluated"] + obj["n_users_skipped_empty_truth"] == 40


def test_script_ease_selects_on_validation_and_table_output(tmp_path, capsys):
    folder = write_diffrec_folder(tmp_path / "tiny", random_data(n_users=60, n_items=15, seed=5))
    script = load_script()
    script.main(["--baseline", "ease", "--data", str(folder), "--ks", "5", "--json"])
    obj = json.loads(capsys.readouterr().out)
    assert obj["param_source"] == "valid:ndcg@20" and len(obj["selection"]) == 6
    assert obj["params"]["lam"] in [row["lam"] for row in obj["selection"]]
    script.main(["--baseline", "itemknn", "--param", "5", "--data", str(folder), "--ks", "5", "--split", "valid"])
    captured = capsys.readouterr()
    assert "recall" in captured.out and "itemknn" in captured.out and "[evaluate]" in captured.err


def test_script_checkpoint_json(tmp_path, capsys):
    from refit_gym.diffusion.adapters import build_backbone
    from refit_gym.diffusion.checkpoint import save_backbone

    data = random_data(seed=6)
    folder = write_diffrec_folder(tmp_path / "tiny", data)
    ckpt = save_backbone(build_backbone("diffrec", data, hidden=[8], schedule={"steps": 3}), tmp_path / "m.pt")
    load_script().main(["--checkpoint", str(ckpt), "--data", str(folder), "--ks", "5", "--device", "auto", "--json"])
    obj = json.loads(capsys.readouterr().out)
    assert obj["model"] == "checkpoint:diffrec" and obj["params"] == {"condition_on": "train"}
    assert 0.0 <= obj["ndcg@5"] <= 1.0
