"""Tests of the data layer: loaders on the real shared datasets, malformed inputs, the synthetic generator."""
from __future__ import annotations

import sys
import types
import zipfile

import numpy as np
import pytest
import scipy.sparse as sp

from refit_gym.data import (DataError, InteractionData, load_dataset, load_diffrec, load_movielens_raw,
                            load_recbole, make_synthetic)
from refit_gym.data.splits import global_temporal_split, per_user_temporal_split

from conftest import shared_dataset

HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float"


def assert_mentions(exc_info, *parts):
    msg = str(exc_info.value)
    for p in parts:
        assert str(p) in msg, f"{p!r} not in error message {msg!r}"


def pairs_of(m: sp.csr_matrix) -> set:
    coo = m.tocoo()
    return set(zip(coo.row.tolist(), coo.col.tolist()))


# ------------------------------------------------------------------------------- real data
def test_ml1m_exact_sizes():
    d = load_diffrec(shared_dataset("ml-1m"))
    assert (d.n_users, d.n_items) == (5949, 2810)
    assert d.n_interactions() == {"train": 403277, "valid": 110722, "test": 57532}
    assert d.name == "ml-1m" and d.social is None
    # no timestamps in the format: train_time holds each pair's row of train_list.npy, the order recency reads
    rows = np.load(shared_dataset("ml-1m") / "train_list.npy")
    np.testing.assert_array_equal(d.train_time[rows[:, 0], rows[:, 1]].A1, np.arange(len(rows)))
    assert all(v == 0 for v in d.dedup_counts.values())
    for m in (d.train, d.valid, d.test):
        assert m.dtype == np.float32 and m.shape == (5949, 2810) and (m.data == 1).all()


def test_amazon_beauty_sizes():
    d = load_dataset(shared_dataset("amazon-beauty"))
    assert (d.n_users, d.n_items) == (15482, 8643)
    assert d.n_interactions() == {"train": 93413, "valid": 17289, "test": 27804}


@pytest.mark.parametrize("name,n_users,n_items,raw_counts", [
    ("social-ciao", 7291, 17867, (112502, 14062, 14064)),
    ("social-lastfm", 1879, 4614, (61978, 7747, 7748)),
])
def test_social_datasets(name, n_users, n_items, raw_counts):
    d = load_dataset(shared_dataset(name))
    assert (d.n_users, d.n_items) == (n_users, n_items)
    assert d.social is not None and d.social.nnz > 0
    assert (d.social != d.social.T).nnz == 0 and d.social.diagonal().sum() == 0
    n = d.n_interactions()
    # kept + removed duplicates == raw rows, split by split
    for f, raw in zip(("train", "valid", "test"), raw_counts):
        assert n[f] + d.dedup_counts[f] == raw
    if name == "social-ciao":  # the README says the raw data has a few duplicate pairs
        assert d.dedup_counts["train"] > 0
        assert "duplicates removed" in d.summary()


def test_ml100k_recbole():
    d = load_recbole(shared_dataset("ml-100k"), rating_threshold=4)
    assert sum(d.n_interactions().values()) == 55375
    assert d.drop_counts["rating_below_threshold"] == 100000 - 55375
    assert d.n_users == len(d.user_map) and d.n_items == len(d.item_map)
    assert sorted(d.user_map.values()) == list(range(d.n_users))
    # tokens are mapped in order of first appearance among the kept (rating >= 4) records
    lines = (shared_dataset("ml-100k") / "ml-100k.inter").read_text().splitlines()[1:]
    first_kept = next(ln.split("\t") for ln in lines if float(ln.split("\t")[2]) >= 4)
    assert d.user_map[first_kept[0]] == 0 and d.item_map[first_kept[1]] == 0
    assert d.train_time is not None and d.train_time.nnz == d.train.nnz
    assert (d.train.getnnz(axis=1) >= 1).all()
    assert load_dataset(shared_dataset("ml-100k")).n_interactions() == d.n_interactions()


# ------------------------------------------------------------------------------- DiffRec malformed
def write_diffrec(folder, train=None, valid=None, test=None, social=None):
    folder.mkdir(exist_ok=True)
    default = np.array([[0, 0], [0, 1], [1, 1], [1, 2]], dtype=np.int64)
    for fname, arr in (("train_list.npy", train), ("valid_list.npy", valid), ("test_list.npy", test)):
        np.save(folder / fname, default if arr is None else arr)
    if social is not None:
        np.save(folder / "social_list.npy", social)
    return folder


@pytest.mark.parametrize("field,arr,value", [
    ("train", np.array([[0, 0], [-1, 2]]), "-1"),
    ("valid", np.array([[0, 0.0], [1, 1.5]]), "1.5"),
    ("test", np.array([[0, 0.0], [np.nan, 1]]), "nan"),
    ("train", np.array([[0, 1, 2], [1, 2, 3]]), "(2, 3)"),
    ("valid", np.array([0, 1, 2]), "(3,)"),
    ("test", np.array([["a", "b"]]), "<U1"),
    ("test", np.zeros((0, 2), dtype=np.int64), "empty"),
])
def test_diffrec_malformed(tmp_path, field, arr, value):
    folder = write_diffrec(tmp_path / "d", **{field: arr})
    with pytest.raises(DataError) as e:
        load_diffrec(folder)
    assert_mentions(e, f"{field}_list.npy", f"'{field}'", value)


def test_diffrec_id_beyond_declared_size(tmp_path):
    folder = write_diffrec(tmp_path / "d", test=np.array([[0, 7]]))
    with pytest.raises(DataError) as e:
        load_diffrec(folder, n_items=3)
    assert_mentions(e, "test_list.npy", "'test'", "item id 7", "(3)")


def test_diffrec_social_beyond_users(tmp_path):
    folder = write_diffrec(tmp_path / "d", social=np.array([[0, 1], [1, 9]]))
    with pytest.raises(DataError) as e:
        load_diffrec(folder, n_users=2)
    assert_mentions(e, "social_list.npy", "'social'", "9")


def test_diffrec_missing_file(tmp_path):
    folder = write_diffrec(tmp_path / "d")
    (folder / "valid_list.npy").unlink()
    with pytest.raises(DataError) as e:
        load_diffrec(folder)
    assert_mentions(e, "valid_list.npy", "'valid'", "not found")


def test_diffrec_refuses_pickles(tmp_path):
    folder = write_diffrec(tmp_path / "d")
    np.save(folder / "train_list.npy", np.array([[0, 1], [1, None]], dtype=object), allow_pickle=True)
    with pytest.raises(DataError) as e:
        load_diffrec(folder)
    assert_mentions(e, "train_list.npy", "'train'")


def test_diffrec_duplicates_and_cold_items(tmp_path):
    train = np.array([[0, 0], [0, 1], [0, 1], [1, 1], [1, 1], [1, 2]], dtype=np.int32)
    social = np.array([[0, 1], [1, 0], [0, 1], [2, 2]])
    # item 3 is in valid only: in range, so it loads (ml-1m has such items too)
    folder = write_diffrec(tmp_path / "d", train=train, valid=np.array([[0, 3]]), social=social)
    d = load_diffrec(folder)
    assert (d.n_users, d.n_items) == (3, 4)
    assert d.train.nnz == 4 and d.dedup_counts["train"] == 2
    assert d.dedup_counts["social"] == 1 and d.dedup_counts["social_self_loops"] == 1
    assert pairs_of(d.social) == {(0, 1), (1, 0)}
    assert d.valid[0, 3] == 1 and d.train[:, 3].nnz == 0


def test_recency_weights_follow_the_training_order(tmp_path):
    """T-DiffRec's weights: linear from w_min (a user's oldest training interaction) to w_max (newest) in
    train_time's order, ties by item id, w_max for a single interaction; a DiffRec folder's order is its file's
    rows (the first of a duplicated pair); no order is a DataError naming the field."""
    train = np.array([[0, 3], [0, 1], [0, 2], [0, 3], [1, 0], [2, 2], [2, 0]])
    d = load_diffrec(write_diffrec(tmp_path / "d", train=train, valid=np.array([[1, 4], [2, 4]]), test=np.array([[0, 5]])))
    w = d.recency_weights(0.2, 1.0)
    assert w.shape == d.train.shape and pairs_of(w) == pairs_of(d.train)
    np.testing.assert_allclose(w[0, [3, 1, 2]].toarray().ravel(), [0.2, 0.6, 1.0])
    assert w[1, 0] == pytest.approx(1.0) and w[2, 2] == pytest.approx(0.2) and w[2, 0] == pytest.approx(1.0)
    timed = InteractionData.from_pairs(np.array([[0, 0], [0, 1], [0, 2]]), np.array([[0, 3]]), np.array([[0, 4]]),
                                       train_time=[5.0, 5.0, 1.0])
    np.testing.assert_allclose(timed.recency_weights(0.0).toarray()[0, :3], [0.5, 1.0, 0.0])  # tie: item 0 first
    untimed = InteractionData.from_pairs(np.array([[0, 0]]), np.array([[0, 1]]), np.array([[0, 2]]))
    with pytest.raises(DataError) as e:
        untimed.recency_weights(0.1)
    assert_mentions(e, "train_time")
    with pytest.raises(ValueError, match="w_min"):
        d.recency_weights(0.8, 0.5)


# ------------------------------------------------------------------------------- RecBole
def write_inter(path, rows, header=HEADER):
    path.write_text(header + "\n" + "".join("\t".join(map(str, r)) + "\n" for r in rows))
    return path


def test_recbole_split_rule_and_maps(tmp_path):
    # fields in a non-default order plus an ignored one; user "u1" has 10 positives, "u2" 4
    rows = [(100 + t, "i%d" % (t % 7), "u1", 5, "x") for t in range(10)]
    rows += [(50 + t, "i%d" % t, "u2", 4, "y") for t in (3, 1, 2, 0)]
    rows += [(1, "i9", "u2", 2, "z")]  # below threshold: dropped, counted
    path = write_inter(tmp_path / "toy.inter", rows,
                       header="timestamp:float\titem_id:token\tuser_id:token\trating:float\tnote:token")
    d = load_recbole(path)
    assert d.name == "toy" and d.drop_counts == {"rating_below_threshold": 1}
    assert d.user_map == {"u1": 0, "u2": 1}
    assert d.item_map["i0"] == 0 and "i9" not in d.item_map
    # u1: 10 interactions, items i0..i6 repeat -> keep the earliest of each pair: 7 unique
    assert d.dedup_counts["raw"] == 3
    # u1 has 7 unique -> floor(0.7)=0 valid, 0 test; u2 has 4 -> all train
    assert d.train.getnnz(axis=1).tolist() == [7, 4]
    d2 = load_recbole(path, ratios=(0.5, 0.25, 0.25))
    # u2's timeline by time: i0 (50), i1 (51), i2 (52), i3 (53) -> train i0,i1; valid i2; test i3
    assert d2.train[1].indices.tolist() == sorted([d.item_map["i0"], d.item_map["i1"]])
    assert d2.valid[1].indices.tolist() == [d.item_map["i2"]]
    assert d2.test[1].indices.tolist() == [d.item_map["i3"]]
    assert d2.train_time[1, d.item_map["i1"]] == 51.0
    d3 = load_recbole(path, rating_threshold=None)
    assert sum(d3.n_interactions().values()) == 12 and "i9" in d3.item_map


def test_per_user_split_small_users():
    users = np.repeat(np.arange(5), [1, 2, 3, 10, 20])
    codes = per_user_temporal_split(users, np.zeros(len(users)), (0.8, 0.1, 0.1))
    per_user = [np.bincount(codes[users == u], minlength=3).tolist() for u in range(5)]
    assert per_user == [[1, 0, 0], [2, 0, 0], [3, 0, 0], [8, 1, 1], [16, 2, 2]]
    # ties keep input order: the last rows of each user are the test ones
    assert codes[users == 4][-2:].tolist() == [2, 2]


def test_global_split_positions():
    times = np.array([5, 1, 3, 3, 2, 9, 7, 0, 4, 8], dtype=float)
    codes = global_temporal_split(times, (0.7, 0.1, 0.2))
    assert np.bincount(codes).tolist() == [7, 1, 2]
    assert times[codes == 0].max() <= times[codes == 1].min() <= times[codes == 2].min()


@pytest.mark.parametrize("header,message", [
    ("user_id\titem_id\trating\ttimestamp", "bad header field 'user_id'"),
    ("user_id:token\titem_id:tokn\trating:float", "bad header field 'item_id:tokn'"),
    ("user_id:token\trating:float\ttimestamp:float", "'item_id' is missing"),
])
def test_recbole_bad_header(tmp_path, header, message):
    path = write_inter(tmp_path / "bad.inter", [("1", "2", "3")], header=header)
    with pytest.raises(DataError) as e:
        load_recbole(path)
    assert_mentions(e, "bad.inter", "line 1", message)


@pytest.mark.parametrize("field,value,row", [
    ("rating", "five", ("u", "i", "five", "10")),
    ("timestamp", "nan", ("u", "i", "4", "nan")),
    ("timestamp", "2020-01-01", ("u", "i", "4", "2020-01-01")),
])
def test_recbole_bad_values(tmp_path, field, value, row):
    path = write_inter(tmp_path / "bad.inter", [("a", "b", "4", "1"), row])
    with pytest.raises(DataError) as e:
        load_recbole(path)
    assert_mentions(e, "bad.inter", f"field '{field}'", "line 3", repr(value))


def test_recbole_wrong_field_count(tmp_path):
    path = tmp_path / "bad.inter"
    path.write_text(HEADER + "\na\tb\t4\t1\n\nc\td\t5\n")
    with pytest.raises(DataError) as e:
        load_recbole(path)
    assert_mentions(e, "bad.inter", "line 4", "got 3", "'c\\td\\t5'")


def test_recbole_folder_needs_one_inter(tmp_path):
    with pytest.raises(DataError) as e:
        load_recbole(tmp_path)
    assert_mentions(e, "*.inter", "none")


# ------------------------------------------------------------------------------- MovieLens raw
def write_ratings(path, n_users=6, n_items=8, seed=0):
    rng = np.random.default_rng(seed)
    lines = []
    t = 978300000
    for u in range(1, n_users + 1):
        for i in rng.choice(np.arange(1, n_items + 1), size=5, replace=False):
            t += int(rng.integers(1, 100))
            lines.append(f"{u * 10}::{i}::{rng.integers(1, 6)}::{t}")
    path.write_text("\n".join(lines) + "\n")
    return lines


def test_movielens_raw_global_split(tmp_path):
    lines = write_ratings(tmp_path / "ratings.dat")
    recs = np.array([list(map(int, ln.split("::"))) for ln in lines])
    pos = recs[recs[:, 2] >= 4]
    d = load_movielens_raw(tmp_path / "ratings.dat")
    n = d.n_interactions()
    assert sum(n.values()) == len(pos)
    assert d.drop_counts["rating_below_threshold"] == len(recs) - len(pos)
    assert n["train"] == int(np.floor(0.7 * len(pos))) and n["valid"] == int(np.floor(0.8 * len(pos))) - n["train"]
    # ids follow sorted raw ids; the split is by global time
    assert list(d.user_map) == sorted(np.unique(pos[:, 0]).tolist())
    t_train = d.train_time.data.max()
    test_times = {(d.user_map[u], d.item_map[i]): t for u, i, _, t in pos}
    assert all(test_times[p] >= t_train for p in pairs_of(d.test))
    du = load_movielens_raw(tmp_path / "ratings.dat", split="user_time")
    assert (du.train.getnnz(axis=1) >= 1).all()
    assert sum(du.n_interactions().values()) == len(pos)


def test_movielens_zip_and_dispatch(tmp_path):
    write_ratings(tmp_path / "ratings.dat")
    with zipfile.ZipFile(tmp_path / "ml-1m.zip", "w") as zf:
        zf.write(tmp_path / "ratings.dat", "ml-1m/ratings.dat")
    a = load_movielens_raw(tmp_path / "ml-1m.zip")
    b = load_dataset(tmp_path / "ratings.dat")
    assert a.n_interactions() == b.n_interactions() and (a.test != b.test).nnz == 0
    assert "ml-1m/ratings.dat" in a.source


def test_movielens_bad_value(tmp_path):
    path = tmp_path / "ratings.dat"
    path.write_text("1::2::5::978300760\n1::3.5::4::978300761\n")
    with pytest.raises(DataError) as e:
        load_movielens_raw(path)
    assert_mentions(e, "ratings.dat", "field 'MovieID'", "line 2", "'3.5'")


# ------------------------------------------------------------------------------- dispatch
def test_load_dataset_dispatch(tmp_path, monkeypatch):
    assert load_dataset("synthetic").n_users == 300
    assert (load_dataset("synthetic:3", n_users=50).test != make_synthetic(n_users=50, seed=3).test).nnz == 0
    assert load_dataset(write_diffrec(tmp_path / "d")).n_users == 2
    with pytest.raises(DataError) as e:
        load_dataset(tmp_path / "nothing-here")
    assert_mentions(e, "nothing-here", "train_list.npy", ".inter", "ratings.dat")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as e:
        load_dataset(tmp_path / "empty")
    assert_mentions(e, "unrecognised", "synthetic")
    with pytest.raises(DataError):
        load_dataset("synthetic:x")
    seq = tmp_path / "seq"
    seq.mkdir()
    (seq / "dataset.pkl").write_bytes(b"")
    fake = types.ModuleType("refit_gym.data.sequential")
    fake.load_sequential = lambda folder, **kw: ("sequential", folder)
    monkeypatch.setitem(sys.modules, "refit_gym.data.sequential", fake)
    assert load_dataset(seq) == ("sequential", seq)


# ------------------------------------------------------------------------------- synthetic
def test_synthetic_determinism_and_sizes():
    a, b, c = make_synthetic(seed=1, social=True), make_synthetic(seed=1, social=True), make_synthetic(seed=2)
    for f in ("train", "valid", "test", "train_time", "social"):
        assert (getattr(a, f) != getattr(b, f)).nnz == 0
    assert (a.train != c.train).nnz > 0
    assert (a.n_users, a.n_items) == (300, 200)
    for f in ("train", "valid", "test"):
        assert (a.split(f).getnnz(axis=1) >= 1).all(), f
    # no pair in two splits; training precedes validation in each user's timeline
    assert a.train.multiply(a.valid).nnz == 0 and a.train.multiply(a.test).nnz == 0
    assert a.valid.multiply(a.test).nnz == 0
    assert a.train_time.nnz == a.train.nnz
    density = sum(a.n_interactions().values()) / (300 * 200)
    assert 0.03 < density < 0.07
    s = a.social
    assert (s != s.T).nnz == 0 and s.diagonal().sum() == 0 and s.nnz > 300
    small = make_synthetic(n_users=40, n_items=30, n_communities=3, seed=5)
    assert isinstance(small, InteractionData) and (small.n_users, small.n_items) == (40, 30)
    with pytest.raises(ValueError):
        make_synthetic(n_items=3)


def recall_at_k(scores: np.ndarray, data: InteractionData, k: int = 10) -> float:
    known = data.known_items("test").toarray() > 0
    scores = np.where(known, -np.inf, scores)
    top = np.argpartition(-scores, k, axis=1)[:, :k]
    target = data.test.toarray() > 0
    hits = np.take_along_axis(target, top, axis=1).sum(axis=1)
    return float(np.mean(hits / np.minimum(target.sum(axis=1), k)))


def test_synthetic_structure_is_learnable():
    d = make_synthetic(seed=0)
    R = (d.train + d.valid).tocsr()
    pop = np.asarray(R.sum(axis=0)).ravel()
    co = (R.T @ R).toarray()
    np.fill_diagonal(co, 0.0)
    knn = R @ (co / np.maximum(pop, 1)[None, :] ** 0.5)  # item co-occurrence, damped by popularity
    r_pop = recall_at_k(np.broadcast_to(pop, (d.n_users, d.n_items)).astype(float), d)
    r_knn = recall_at_k(np.asarray(knn), d)
    assert r_knn > 1.3 * r_pop, (r_knn, r_pop)


def test_synthetic_social_is_homophilous():
    d = make_synthetic(seed=0, social=True)
    # neighbours' training items predict a user's test items better than global popularity
    deg = np.asarray(d.social.sum(axis=1)).ravel()
    S = sp.diags(1.0 / np.maximum(deg, 1)) @ d.social
    social_scores = (S @ d.train).toarray()
    pop = np.asarray(d.train.sum(axis=0)).ravel()
    assert recall_at_k(social_scores + 1e-6 * pop, d) > recall_at_k(np.tile(pop, (d.n_users, 1)).astype(float), d)
