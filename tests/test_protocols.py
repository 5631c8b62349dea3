"""The user-split protocol of sequence data (PreferDiff / DreamRec papers) beside leave-one-out: the split, no
leakage into training, histories, evaluation, the environment's user draws, checkpoints and the command line."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from conftest import tiny_seq_folder, walks
from refit_gym.data import load_dataset
from refit_gym.data.dataset import DataError
from refit_gym.data.seq_protocols import PROTOCOLS, user_split
from refit_gym.data.sequential import SequentialData, load_sequential
from refit_gym.data.synthetic_sequences import make_synthetic_sequences

torch.set_num_threads(1)
T = 4
SEQ_KW = dict(d=8, hidden=[16], n_layers=1, schedule=dict(noise_schedule="cosine", steps=T, mean_type="x0"))


def full_sequences(folder):
    """Every user's train + val + test of the pickle, 0-based."""
    raw = pickle.loads((folder / "dataset.pkl").read_bytes())
    return [[i - 1 for i in raw["train"][u] + raw["val"][u] + raw["test"][u]] for u in range(len(raw["train"]))]


@pytest.fixture()
def folder(tmp_path):
    return tiny_seq_folder(tmp_path, walks(n_users=40, n_items=20, max_len=8))


def row(data, u):
    return list(data.train_items[data.train_ptr[u]:data.train_ptr[u + 1]])


# ---------------------------------------------------------------------------------------------- the split
def test_split_sizes_disjoint_seeded_and_rebuilt_from_the_file(folder):
    d = load_sequential(folder, protocol="user-split", split_seed=3)
    tr, va, te = (d.split_users[k] for k in ("train", "valid", "test"))
    assert (len(tr), len(va), len(te)) == (32, 4, 4) and d.max_len == 10
    assert np.array_equal(np.sort(np.concatenate([tr, va, te])), np.arange(40))  # disjoint and complete
    assert np.array_equal(d.train_users, tr)
    again = load_dataset(str(folder), protocol="user-split", split_seed=3)
    assert all(np.array_equal(again.split_users[k], d.split_users[k]) for k in d.split_users)
    other = load_sequential(folder, protocol="user-split", split_seed=4)
    assert not np.array_equal(other.split_users["valid"], va)
    full = full_sequences(folder)
    for u in tr:  # a train user's row is its whole sequence, no target
        assert row(d, u) == full[u] and d.valid_item[u] == d.test_item[u] == -1
    for split, users in (("valid", va), ("test", te)):
        other_split = "test" if split == "valid" else "valid"
        for u in users:  # history + target = the whole sequence; no target in the other split
            assert row(d, u) + [d.held_out(split)[u]] == full[u] and d.held_out(other_split)[u] == -1
    assert "32 train / 4 valid / 4 test" in d.summary()


def test_loo_is_unchanged(folder):
    d, old = load_sequential(folder), load_sequential(folder, protocol="loo", max_len=50)
    assert d.protocol == "loo" and d.max_len == 50 and d.split_seed is None
    assert all(np.array_equal(v, np.arange(40)) for v in d.split_users.values())
    assert np.array_equal(d.train_items, old.train_items) and np.array_equal(d.valid_item, old.valid_item)
    assert np.array_equal(d.history("test", 8), d.padded(8, include_valid=True)[0])
    assert (d.history_items("test") != d.interactions().known_items("test")).nnz == 0


@pytest.mark.parametrize("kwargs, match", [
    (dict(protocol="user-split", ratios=(0.8, 0.1)), r"field 'ratios' is \(0.8, 0.1\)"),
    (dict(protocol="user-split", ratios=(0.9, 0.2, -0.1)), "field 'ratios'"),
    (dict(protocol="user-split", ratios=(0.98, 0.01, 0.01)), "every split needs at least one"),
    (dict(protocol="leave-one-out"), "field 'protocol' is 'leave-one-out'"),
])
def test_bad_protocol_or_ratios_name_file_field_value(folder, kwargs, match):
    with pytest.raises(DataError, match=match) as e:
        load_dataset(str(folder), **kwargs)
    assert "tiny-seq" in str(e.value)


def test_protocol_applies_to_sequences_only_and_to_synthetic_sequences():
    with pytest.raises(DataError, match="applies to sequence data"):
        load_dataset("synthetic", protocol="user-split")
    d = load_dataset("synthetic-seq", protocol="user-split", n_users=50, n_items=30)
    assert d.protocol == "user-split" and len(d.split_users["valid"]) == 5
    assert load_dataset("synthetic-seq", protocol="loo", n_users=50, n_items=30).protocol == "loo"


def test_dataset_checks_the_split_fields():
    d = user_split(walks(n_users=20), split_seed=0)
    bad_target = d.valid_item.copy()
    bad_target[d.split_users["train"][0]] = 3
    with pytest.raises(DataError, match="field 'valid_item' holds item 3 for user"):
        SequentialData(name="x", n_users=20, n_items=20, train_items=d.train_items, train_ptr=d.train_ptr,
                       valid_item=bad_target, test_item=d.test_item, protocol="user-split", split_users=d.split_users)
    overlap = dict(d.split_users, valid=d.split_users["test"])
    with pytest.raises(DataError, match="exactly one of train / valid / test"):
        SequentialData(name="x", n_users=20, n_items=20, train_items=d.train_items, train_ptr=d.train_ptr,
                       valid_item=d.valid_item, test_item=d.test_item, protocol="user-split", split_users=overlap)
    with pytest.raises(DataError, match="include_valid is leave-one-out only"):
        d.padded(include_valid=True)


# ---------------------------------------------------------------------------------------------- no leakage
def test_no_valid_or_test_user_in_training(folder):
    from refit_gym.baselines import MostPopular
    from refit_gym.diffusion.seq_training import sequence_batches
    from refit_gym.rewards.sequential import transition_counts

    d = load_sequential(folder, protocol="user-split")
    evaluated = np.concatenate([d.split_users["valid"], d.split_users["test"]])
    rows = np.concatenate([s.numpy() for s, _ in sequence_batches(d, 7, 10, torch.Generator().manual_seed(0))])
    expected = d.padded(10)[0][d.train_users]
    assert sorted(map(tuple, rows)) == sorted(map(tuple, expected))  # every train user once, nobody else
    inter = d.interactions()
    assert inter.train[evaluated].nnz == 0 and inter.valid.nnz == 4 and inter.test.nnz == 4
    train_only = SequentialData.from_sequences([row(d, u) for u in d.train_users], np.zeros(32, int),
                                               np.zeros(32, int), d.n_items)
    assert (transition_counts(d) != transition_counts(train_only)).nnz == 0
    pop = MostPopular().fit(d).popularity
    assert np.array_equal(pop, np.bincount(train_only.train_items, minlength=d.n_items))


def test_pretraining_rows_hold_every_train_transition_once(folder):
    """user-split trains all prefixes of the train users, however long: windows of max_len positions hold each
    of their transitions exactly once (leave-one-out keeps its last-max_len rows)."""
    from collections import Counter

    from refit_gym.diffusion.seq_training import sequence_batches

    d = load_sequential(folder, protocol="user-split", max_len=3)
    rows = np.concatenate([s.numpy() for s, _ in sequence_batches(d, 5, 3, torch.Generator().manual_seed(0))])
    assert rows.shape[1] == 3 and len(rows) > d.train_users.size
    got = Counter((int(a), int(b)) for r in rows for a, b in zip(r[:-1], r[1:]) if a != d.pad_id)
    want = Counter((a, b) for u in d.train_users for a, b in zip(row(d, u)[:-1], row(d, u)[1:]))
    assert got == want
    loo = load_sequential(folder, max_len=3)
    assert np.array_equal(loo.training_rows(3)[0], loo.padded(3)[0])


def test_histories_never_hold_their_target_and_are_at_most_max_len(folder):
    from refit_gym.diffusion.dreamrec import DreamRecAdapter

    d = load_sequential(folder, protocol="user-split", max_len=4)
    full = full_sequences(folder)
    adapter = DreamRecAdapter.from_data(d, **SEQ_KW)
    for split in ("valid", "test"):
        users = d.split_users[split]
        hist = d.history(split)
        cond = adapter.encode_condition(users, d.history_items(split)[users], split=split).astype(np.int64)
        for k, u in enumerate(users):
            want = full[u][:-1][-4:]  # the items before the target, the last max_len of them
            got = [i for i in hist[u] if i != d.pad_id]
            assert got == want and len(got) <= 4 and d.held_out(split)[u] == full[u][-1]
            assert [i for i in cond[k] if i != d.pad_id] == want


# ---------------------------------------------------------------------------------------------- evaluation
def test_evaluation_equals_a_hand_computed_metric():
    from refit_gym.metrics import evaluate_sequential

    # 6 users, items 0..4; seed 0 gives the split below (checked), each held-out user's target is its last item
    loo = SequentialData.from_sequences([[0, 1], [1, 2], [2, 3], [3, 4], [0, 2], [1, 3]], [2, 3, 4, 0, 4, 4],
                                        [3, 4, 0, 1, 1, 0], n_items=5)
    d = user_split(loo, split_seed=0, ratios=(4 / 6, 1 / 6, 1 / 6))
    (v,), (t,) = d.split_users["valid"], d.split_users["test"]
    scores = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0]])  # rank of item i is i for everybody
    fn = lambda users, split: scores.expand(len(users), 5)  # noqa: E731
    for split, u in (("valid", v), ("test", t)):
        r = int(d.held_out(split)[u])
        assert r == loo.test_item[u]
        m = evaluate_sequential(fn, d, split, ks=(1, 2, 5))
        assert m["n_users"] == 1
        for k in (1, 2, 5):
            assert m[f"hitrate@{k}"] == float(r < k)
            assert m[f"ndcg@{k}"] == pytest.approx(1 / np.log2(r + 2) if r < k else 0.0)
    with pytest.raises(ValueError, match="has no 'valid' target"):
        evaluate_sequential(fn, d, "valid", users=d.split_users["train"][:1])


@pytest.mark.parametrize("mask_history", [False, True])
def test_factored_scores_rank_as_their_dense_matrix(mask_history):
    """A score_fn may return LowRankScores (DreamRec's inference does): ranked chunk by chunk, without the dense
    matrix, to the metrics of a reference count over the dense matrix: ties favour the target, masked entries never
    count, NaN scores are never above, and a NaN target score ranks last (a diverged model misses)."""
    from refit_gym import scores as scores_module
    from refit_gym.metrics import evaluate_sequential
    from refit_gym.scores import LowRankScores

    d = make_synthetic_sequences(n_users=40, n_items=23, mean_len=6.0, seed=3)
    g = torch.Generator().manual_seed(0)
    u_all = torch.randint(-2, 3, (d.n_users, 3), generator=g).float()  # small integers: many exact ties
    w = torch.randint(-2, 3, (d.n_items, 3), generator=g).float()
    nan_item = int(d.held_out("test")[0])
    w[nan_item] = float("nan")
    factored = lambda users, split: LowRankScores(u_all[users], w)  # noqa: E731
    dense = lambda users, split: u_all[users] @ w.t()  # noqa: E731
    ks = (1, 3, 10)

    def reference(split):  # the dense matrix, masked to -inf, counted directly
        users = d.split_users[split]
        s = u_all[users] @ w.t()
        t = torch.as_tensor(d.held_out(split)[users])
        t_score = s.gather(1, t[:, None])
        if mask_history:
            m = d.history_items(split)[users].tocoo()
            s[torch.as_tensor(m.row, dtype=torch.long), torch.as_tensor(m.col, dtype=torch.long)] = -torch.inf
        rank = torch.where(t_score.squeeze(1).isnan(), d.n_items, (s > t_score).sum(1)).numpy()
        out = {}
        for k in ks:
            out[f"hitrate@{k}"] = out[f"recall@{k}"] = float((rank < k).mean())
            out[f"ndcg@{k}"] = float(np.where(rank < k, 1 / np.log2(rank + 2.0), 0.0).mean())
        return out, int((t == nan_item).sum())

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(scores_module, "CPU_CHUNK_ELEMENTS", 3 * 23)  # chunks of 3 rows
        for split in ("valid", "test"):
            want, n_nan = reference(split)
            for fn in (factored, dense):
                got = evaluate_sequential(fn, d, split, ks=ks, mask_history=mask_history, batch_size=16)
                assert got.pop("n_users") == len(d.split_users[split])
                assert got == pytest.approx(want, abs=1e-12)
            assert split == "valid" or n_nan >= 1  # the NaN-target rule is exercised


# ---------------------------------------------------------------------------------------------- end to end
def test_dreamrec_pretrain_finetune_evaluate_under_user_split(tmp_path, folder):
    from refit_gym.diffusion.checkpoint import CheckpointError, checkpoint_protocol, load_backbone
    from refit_gym.envs import BatchedDenoisingEnv
    from refit_gym.experiments.finetune import finetune
    from refit_gym.scenarios import SCENARIOS

    d = load_dataset(str(folder), protocol="user-split")
    sc = SCENARIOS["sequential"]
    torch.manual_seed(0)
    adapter = sc.build_backbone(d, **SEQ_KW)
    sc.pretrain(adapter, d, sc.pretrain_config(epochs=1, batch_size=16), out_dir=tmp_path / "pt", log=lambda s: None)
    ckpt = tmp_path / "pt" / "best.pt"
    with pytest.raises(CheckpointError, match="field 'data.protocol' is 'user-split' in the file"):
        sc.pretrain(sc.build_backbone(load_dataset(str(folder)), **SEQ_KW), load_dataset(str(folder)),
                    sc.pretrain_config(epochs=2, batch_size=16), out_dir=tmp_path / "pt", resume=True, log=lambda s: None)
    assert checkpoint_protocol(ckpt) == {"protocol": "user-split", "split_seed": 0, "ratios": (0.8, 0.1, 0.1)}
    with pytest.raises(CheckpointError, match="pretrained under protocol.*'user-split'.*--protocol"):
        load_backbone(ckpt, load_dataset(str(folder)))  # leave-one-out data: refused by name
    env = BatchedDenoisingEnv(d, load_backbone(ckpt, d)[0], n_envs=64, seed=0, reward="refit-seq")
    assert np.isin(env.reset_tensors()["user"].cpu().numpy(), d.train_users).all()  # episodes among train users
    with pytest.raises(ValueError, match="not a training user"):
        env.reset_tensors(users=np.full(64, d.split_users["valid"][0]))
    m = finetune("pathwise", "refit_gym/DreamRec-v0", d, ckpt, hyperparams=dict(n_envs=8, n_timesteps=8 * T),
                 out=tmp_path / "ft", select_metric="ndcg@20", log=lambda s: None)
    assert m["protocol"] == "user-split" and m["num_timesteps"] == 8 * T
    assert m["final"]["test"]["n_users"] == 4 and m["final"]["valid"]["n_users"] == 4
    assert checkpoint_protocol(tmp_path / "ft" / "final.pt")["protocol"] == "user-split"


def test_chain_agents_draw_train_users_only(folder):
    from agents import Pathwise
    from refit_gym.diffusion.dreamrec import DreamRecAdapter
    from refit_gym.envs import BatchedDenoisingEnv

    d = load_sequential(folder, protocol="user-split")
    torch.manual_seed(0)
    env = BatchedDenoisingEnv(d, DreamRecAdapter.from_data(d, **SEQ_KW), n_envs=64, reward="refit-seq")
    agent = Pathwise(DreamRecAdapter.from_data(d, **SEQ_KW), env, device="cpu", seed=0)
    users, _ = agent._draw_episodes()
    assert np.isin(users, d.train_users).all() and len(np.unique(users)) > 1


# ---------------------------------------------------------------------------------------------- command line
def test_protocol_option_is_defined_once_and_checked():
    import argparse

    from refit_gym.options import PROTOCOL_CHOICES, add_protocol_argument, protocol_argv, protocol_kwargs

    assert PROTOCOL_CHOICES == PROTOCOLS
    p = argparse.ArgumentParser()
    add_protocol_argument(p)
    assert protocol_kwargs(p.parse_args([])) == {}
    kw = protocol_kwargs(p.parse_args(["--protocol", "user-split", "--split-seed", "2"]))
    assert kw == {"protocol": "user-split", "split_seed": 2} and protocol_argv(kw) == ["--protocol", "user-split",
                                                                                          "--split-seed", "2"]
    with pytest.raises(SystemExit, match="--split-seed 2 applies to --protocol user-split"):
        protocol_kwargs(p.parse_args(["--split-seed", "2"]))


def test_evaluate_script_reuses_the_checkpoint_protocol(tmp_path, folder):
    import sys

    from conftest import REPO
    from refit_gym.diffusion.checkpoint import save_backbone
    from refit_gym.diffusion.dreamrec import DreamRecAdapter
    from refit_gym.diffusion.training import protocol_meta

    d = load_dataset(str(folder), protocol="user-split", split_seed=1)
    ckpt = save_backbone(DreamRecAdapter.from_data(d, **SEQ_KW), tmp_path / "b.pt",
                         meta=dict(n_users=d.n_users, **protocol_meta(d)))
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import evaluate
    finally:
        sys.path.remove(str(REPO / "scripts"))
    res = evaluate.main(["--checkpoint", str(ckpt), "--data", str(folder), "--json"])
    assert res["protocol"] == "user-split" and res["n_users"] == 4
    with pytest.raises(Exception, match="pretrained under protocol"):
        evaluate.main(["--checkpoint", str(ckpt), "--data", str(folder), "--protocol", "loo"])
    pop = evaluate.main(["--baseline", "pop", "--data", str(folder), "--protocol", "user-split", "--json"])
    assert pop["n_users"] == 4


def test_train_resume_keeps_the_protocol(tmp_path):
    import argparse

    from refit_gym.options import add_protocol_argument
    from refit_gym.run_settings import apply_saved_run, save_run

    p = argparse.ArgumentParser()
    p.add_argument("--data")
    add_protocol_argument(p)
    first = p.parse_args(["--data", "d", "--protocol", "user-split", "--split-seed", "3"])
    for k in ("algo", "env", "checkpoint", "reward", "hyperparams", "seed", "select_metric", "n_timesteps",
              "eval_freq", "save_freq", "tensorboard_log"):
        setattr(first, k, None)
    save_run(first, tmp_path, {})
    again = argparse.Namespace(**{k: None for k in vars(first)})
    apply_saved_run(again, [], tmp_path)
    assert (again.protocol, again.split_seed) == ("user-split", 3)
    changed = argparse.Namespace(**dict(vars(again), protocol="loo"))
    with pytest.raises(SystemExit, match="--protocol loo differs from this run's 'user-split'"):
        apply_saved_run(changed, ["protocol"], tmp_path)


def test_time_aware_dreamrec_under_user_split():
    from refit_gym.scenarios import SCENARIOS

    d = load_dataset("synthetic-poi", protocol="user-split", n_users=40, n_items=30)
    sc = SCENARIOS["poi"]
    torch.manual_seed(0)
    adapter = sc.build_backbone(d, **SEQ_KW)
    sc.pretrain(adapter, d, sc.pretrain_config(epochs=1, batch_size=16), log=lambda s: None)
    assert sc.evaluate_backbone(adapter, d, "test")["n_users"] == len(d.split_users["test"])
