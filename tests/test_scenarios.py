"""Sequential, POI and social scenarios: safe loading, the DreamRec / Social-DiffRec adapters,
the SASRec baseline and leave-one-out evaluation. Everything runs in seconds on one thread."""
from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest
import torch

from refit_gym.data.dataset import DataError, InteractionData
from refit_gym.data.graph import social_item_signal
from refit_gym.data.sequential import (SequentialData, load_sequential, pad_right_aligned, parse_timestamps,
                                       restricted_load)
from refit_gym.diffusion import BACKBONES, CheckpointError, ScheduleConfig, load_backbone, save_backbone
from refit_gym.diffusion.dreamrec import DreamRecAdapter, time_gap_buckets
from refit_gym.diffusion.seq_training import adapter_score_fn
from refit_gym.diffusion.training import PretrainConfig, pretrain
from refit_gym.diffusion.social import SocialDiffRecAdapter
from refit_gym.scenarios import SCENARIOS
from refit_gym.baselines import MostPopular
from refit_gym.metrics import evaluate_sequential
from refit_gym.seq_baselines import SASRec

from conftest import shared_dataset

torch.set_num_threads(1)

T0 = 1_300_000_000.0  # a timestamp in seconds


def planted_sequences(n_users=48, n_items=20, seed=0, timed=False) -> SequentialData:
    """Each user walks the item cycle k -> k+1 (mod n_items) from a random start; valid/test continue the walk."""
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, n_items, n_users)
    lengths = rng.integers(4, 10, n_users)
    walks = [list((s + np.arange(n + 2)) % n_items) for s, n in zip(starts, lengths)]
    times = [list(T0 + 3600.0 * np.arange(len(w)) * (1 + u % 3)) for u, w in enumerate(walks)] if timed else None
    return SequentialData.from_sequences(
        [w[:-2] for w in walks], [w[-2] for w in walks], [w[-1] for w in walks], n_items, max_len=8,
        train_times=None if times is None else [t[:-2] for t in times],
        valid_time=None if times is None else [t[-2] for t in times],
        test_time=None if times is None else [t[-1] for t in times], name="planted")


def write_pickle(path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=4)
    return path


def good_raw(timed=False):
    e = (lambda i, k: (i, f"2010-06-0{k} 10:00:00")) if timed else (lambda i, k: i)
    return {"train": {0: [e(1, 1), e(2, 2)], 1: [e(3, 1)]}, "val": {0: [e(3, 3)], 1: [e(1, 2)]},
            "test": {0: [e(1, 4)], 1: [e(2, 3)]}, "umap": {10: 0, 11: 1}, "smap": {"a": 1, "b": 2, "c": 3}}


# ---------------------------------------------------------------------------------------------- safe loading
class _Evil:
    def __init__(self, cmd):
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


def test_restricted_unpickler_refuses_code_execution(tmp_path):
    marker = tmp_path / "pwned"
    path = write_pickle(tmp_path / "dataset.pkl", {"train": _Evil(f"echo pwned > {marker}")})
    with pytest.raises(DataError) as e:
        load_sequential(tmp_path)
    assert "system" in str(e.value) and str(path) in str(e.value)
    assert not marker.exists(), "the malicious reduce ran"


def test_restricted_unpickler_refuses_any_global(tmp_path):
    path = write_pickle(tmp_path / "x.pkl", {"a": np.arange(3)})
    with pytest.raises(DataError, match="numpy"):
        restricted_load(path)
    (tmp_path / "bad.pkl").write_bytes(b"\x80\x04not a pickle")
    with pytest.raises(DataError, match="not a readable pickle"):
        restricted_load(tmp_path / "bad.pkl")


@pytest.mark.parametrize("timed", [False, True])
def test_load_small_pickle(tmp_path, timed):
    d = load_sequential(write_pickle(tmp_path / "dataset.pkl", good_raw(timed)), max_len=3)
    assert (d.n_users, d.n_items) == (2, 3)
    np.testing.assert_array_equal(d.train_seq, [[3, 0, 1], [3, 3, 2]])  # 0-based, pad = 3, right-aligned
    np.testing.assert_array_equal(d.train_len, [2, 1])
    np.testing.assert_array_equal(d.valid_item, [2, 0])
    np.testing.assert_array_equal(d.test_item, [0, 1])
    assert d.item_map == {"a": 0, "b": 1, "c": 2}
    x = d.interactions()
    assert x.n_interactions() == {"train": 3, "valid": 2, "test": 2}
    if timed:
        day = 86400.0
        base = np.datetime64("2010-06-01T10:00:00", "s").astype(np.int64)
        np.testing.assert_array_equal(d.train_ts[0], [np.nan, base, base + day])
        np.testing.assert_array_equal(d.valid_time, [base + 2 * day, base + day])
    else:
        assert d.train_ts is None and not d.has_time


def _mutations():
    def mut(f):
        def apply(timed):
            raw = good_raw(timed)
            f(raw, timed)
            return raw
        return apply

    def setitem(path, value):
        def f(raw, timed):
            obj = raw
            for k in path[:-1]:
                obj = obj[k]
            obj[path[-1]] = value(timed) if callable(value) else value
        return f

    e = lambda i: (lambda t: (i, "2010-06-01 10:00:00") if t else i)  # noqa: E731
    return {
        "missing key": (mut(lambda r, t: r.pop("smap")), "missing key"),
        "item id 0": (mut(setitem(["train", 0, 0], e(0))), "1-based"),
        "item beyond smap": (mut(setitem(["test", 1, 0], e(4))), "up to 3"),
        "item not in smap": (mut(lambda r, t: r["smap"].update({"c": 4})), "not a value of 'smap'"),
        "float id": (mut(setitem(["train", 1], lambda t: [(1.0, "2010-06-01 10:00:00")] if t else [1.0])), "integer"),
        "string id": (mut(setitem(["train", 1], lambda t: [("x", "2010-06-01 10:00:00")] if t else ["x"])), "integer"),
        "empty sequence": (mut(setitem(["train", 1], [])), "empty sequence"),
        "val of length 2": (mut(setitem(["val", 0], lambda t: [e(1)(t), e(2)(t)])), "exactly one"),
        "user keys": (mut(lambda r, t: r["train"].update({5: r["train"].pop(1)})), "user key"),
        "val users": (mut(lambda r, t: r["val"].pop(1)), "users differ"),
    }


@pytest.mark.parametrize("timed", [False, True])
@pytest.mark.parametrize("case", sorted(_mutations()))
def test_malformed_pickles(tmp_path, case, timed):
    make, fragment = _mutations()[case]
    path = write_pickle(tmp_path / "dataset.pkl", make(timed))
    with pytest.raises(DataError, match=fragment) as e:
        load_sequential(path)
    assert str(path) in str(e.value)


def test_malformed_top_level_and_timestamps(tmp_path):
    with pytest.raises(DataError, match="top level is a list"):
        load_sequential(write_pickle(tmp_path / "a.pkl", [1, 2]))
    raw = good_raw(timed=True)
    raw["train"][1] = [(3, "2010-06-01T10:00")]
    with pytest.raises(DataError, match="2010-06-01T10:00"):
        load_sequential(write_pickle(tmp_path / "b.pkl", raw))
    raw["train"][1] = [(3, "2010-13-45 10:00:00")]  # right shape, impossible date
    with pytest.raises(DataError, match="2010-13-45"):
        load_sequential(write_pickle(tmp_path / "c.pkl", raw))
    np.testing.assert_array_equal(parse_timestamps(np.array(["1970-01-01 00:01:00"]), "x"), [60.0])


def test_padding_layout():
    out = pad_right_aligned(np.array([1, 2, 3, 4, 5, 6]), np.array([0, 1, 4, 6]), 2, -1)
    np.testing.assert_array_equal(out, [[-1, 1], [3, 4], [5, 6]])
    d = planted_sequences()
    items, _, lengths = d.padded(8, include_valid=True)
    np.testing.assert_array_equal(items[:, -1], d.valid_item)
    np.testing.assert_array_equal(lengths, np.minimum(np.diff(d.train_ptr) + 1, 8))


def test_time_gap_buckets():
    t = np.array([[np.nan, 0.0, 60.0, 60.0 + 3 * 60], [np.nan, np.nan, np.nan, 5.0]])
    np.testing.assert_array_equal(time_gap_buckets(t, 8), [[0, 0, 2, 3], [0, 0, 0, 0]])


# ---------------------------------------------------------------------------------------------- real data
@pytest.mark.shared_data
def test_real_seq_beauty():
    d = load_sequential(shared_dataset("seq-beauty"))
    assert (d.n_users, d.n_items) == (22363, 12101)
    assert len(d.train_items) + 2 * d.n_users == 198502
    assert d.train_seq.shape == (22363, 50) and not d.has_time
    assert d.interactions().n_interactions()["valid"] == 22363


@pytest.mark.shared_data
def test_real_poi_gowalla():
    d = load_sequential(shared_dataset("poi-gowalla"))
    assert d.n_users == 10376 and len(d.item_map) == 9670 and d.n_items == 9689  # smap has gaps
    assert len(d.train_items) + 2 * d.n_users == 113426
    real = d.train_seq != d.pad_id
    assert np.isnan(d.train_ts[~real]).all() and np.isfinite(d.train_ts[real]).all()
    assert (np.diff(d.train_ts, axis=1)[real[:, :-1]] >= 0).all()  # time order
    assert (d.valid_time <= d.test_time).all()


@pytest.mark.shared_data
def test_real_social_ciao_signal():
    folder = shared_dataset("social-ciao")
    load = lambda n: np.load(folder / f"{n}_list.npy", allow_pickle=False)  # noqa: E731
    data = InteractionData.from_pairs(load("train"), load("valid"), load("test"), social=load("social"),
                                      name="social-ciao", source=str(folder))
    assert (data.n_users, data.n_items) == (7291, 17867)
    signal = social_item_signal(data.social, data.train, 50)
    a = SocialDiffRecAdapter(data.n_items, data.n_users, hidden=(16,), top_m=50, signal=signal)
    users = np.array([0, 5, 7290])
    expected = signal[users].toarray()
    np.testing.assert_allclose(a.social_rows(torch.as_tensor(users)).numpy(), expected, rtol=1e-6)


# ---------------------------------------------------------------------------------------------- DreamRec
SMALL = dict(d=16, n_layers=1, heads=2, hidden=(32,), emb_size=8, dropout=0.0,
             schedule=ScheduleConfig(noise_schedule="cosine", steps=5))


@pytest.mark.parametrize("time_aware", [False, True])
def test_dreamrec_infer_and_checkpoint(tmp_path, time_aware):
    d = planted_sequences(timed=time_aware)
    torch.manual_seed(0)
    a = DreamRecAdapter.from_data(d, time_aware=time_aware, guidance=0.5, **SMALL).eval()
    assert "dreamrec" in BACKBONES and a.action_dim == 16 and a.condition_dim == (16 if time_aware else 8)
    users = np.arange(6)
    cond = torch.as_tensor(a.encode_condition(users, d.interactions().train[users]))
    assert cond.shape == (6, a.condition_dim) and cond.dtype == torch.float32
    low, high = a.condition_bounds  # the environment's observation Box
    assert float(cond.min()) >= low and float(cond.max()) <= high
    s1 = a.infer(cond, generator=torch.Generator().manual_seed(3))
    assert s1.shape == (6, d.n_items) and torch.isfinite(s1).all()
    path = save_backbone(a, tmp_path / "dreamrec.pt", meta={"n_users": d.n_users})
    b, meta = load_backbone(path, data=d.interactions())
    assert isinstance(b, DreamRecAdapter) and meta["n_users"] == d.n_users
    cond_b = torch.as_tensor(b.encode_condition(users, d.interactions().train[users]))
    torch.testing.assert_close(cond_b, cond)  # the sequences travel with the checkpoint
    torch.testing.assert_close(b.infer(cond_b, generator=torch.Generator().manual_seed(3)), s1, rtol=0, atol=0)


def test_dreamrec_condition_order_visibility_and_no_leak():
    # user 0 revisits item 2; its validation item (2) repeats a train item, user 1's (5) is new
    d = SequentialData.from_sequences([[2, 0, 1, 2], [3, 4]], [2, 5], [1, 0], n_items=6, max_len=4)
    a = DreamRecAdapter.from_data(d, **SMALL)
    train = d.interactions().train
    np.testing.assert_array_equal(a.encode_condition([0, 1], train), [[2, 0, 1, 2], [6, 6, 3, 4]])
    hide = train.tolil()
    hide[0, 2] = 0  # an environment hides item 2 of user 0: both visits disappear, order kept
    np.testing.assert_array_equal(a.encode_condition([0], hide.tocsr()[0]), [[6, 6, 0, 1]])
    known = d.interactions().known_items("test")
    # no split: valid item appended only when it provably is new (user 1), never a leak for user 0
    np.testing.assert_array_equal(a.encode_condition([0, 1], known), [[2, 0, 1, 2], [6, 3, 4, 5]])
    np.testing.assert_array_equal(a.encode_condition([0, 1], known, split="test"), [[0, 1, 2, 2], [6, 3, 4, 5]])
    np.testing.assert_array_equal(a.encode_condition([0, 1], known, split="valid"), [[2, 0, 1, 2], [6, 6, 3, 4]])
    with pytest.raises(ValueError, match="no stored sequence"):
        a.encode_condition([2], train[:1])


def test_dreamrec_diffusion_loss_decreases():
    d = planted_sequences()
    torch.manual_seed(0)
    a = DreamRecAdapter.from_data(d, **SMALL)
    users = np.arange(d.n_users)
    cond = torch.as_tensor(a.encode_condition(users, d.interactions().train))
    i = torch.arange(d.n_users) % a.schedule.steps

    def eval_loss():
        a.eval()
        with torch.no_grad():
            return a.diffusion_loss(cond, None, i, torch.Generator().manual_seed(1)).mean().item()

    before = eval_loss()
    assert np.isfinite(before)
    opt = torch.optim.Adam(a.parameters(), lr=1e-2)
    a.train()
    gen = torch.Generator().manual_seed(0)
    for _ in range(30):
        loss = a.diffusion_loss(cond, None, torch.randint(0, a.schedule.steps, (d.n_users,), generator=gen), gen).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert eval_loss() < 0.8 * before


def test_dreamrec_pretrain_learns_planted_pattern():
    d = planted_sequences(timed=True)
    torch.manual_seed(0)
    a = DreamRecAdapter.from_data(d, time_aware=True, ce_weight=0.5, **SMALL)
    cfg = PretrainConfig(epochs=25, batch_size=16, lr=1e-2, seed=0, patience=0, eval_every=25, metric="ndcg@10")
    res = pretrain(a, d, cfg, evaluate_fn=SCENARIOS["poi"].evaluate_backbone, progress=False, log=lambda m: None)
    hist = [r["train_loss"] for r in res.history]
    assert np.isfinite(hist).all() and hist[-1] < hist[0] and res.best_epoch == 24  # validated once, at the end
    m = evaluate_sequential(adapter_score_fn(a, d), d, "test", ks=(1, 5))
    assert m["hitrate@5"] > 0.5  # random ranking gives 5 / 20


def test_dreamrec_state_ce_adds_the_guidance_vectors_own_cross_entropy(tmp_path):
    """state_ce_weight w adds w * CE(c E^T, target) to each pair's loss (the same draws otherwise), and dreamrec-ce
    is DreamRec with w = 1 by default, kept through a checkpoint; dreamrec-poi-ce is the time-aware DreamRec-POI with
    w = 1."""
    from refit_gym.diffusion.dreamrec import DreamRecCEAdapter, DreamRecPOICEAdapter
    from refit_gym.scores import low_rank_cross_entropy

    d = planted_sequences(timed=False)
    torch.manual_seed(0)
    plain = DreamRecAdapter.from_data(d, **SMALL)
    strong = DreamRecAdapter.from_data(d, state_ce_weight=0.5, **SMALL)
    strong.load_state_dict(plain.state_dict())
    c = torch.randn(6, SMALL["d"])
    target = torch.arange(6) % d.n_items
    i = torch.arange(6) % plain.schedule.steps
    base = plain.pair_loss(c, target, i, torch.Generator().manual_seed(3))
    extra = strong.pair_loss(c, target, i, torch.Generator().manual_seed(3))
    ce = low_rank_cross_entropy(c, plain.encoder.item_weight, target)
    assert torch.allclose(extra, base + 0.5 * ce, atol=1e-6) and float(ce.detach().min()) > 0
    ce_model = DreamRecCEAdapter.from_data(d, **SMALL)
    assert ce_model.state_ce_weight == 1.0 and DreamRecCEAdapter.backbone_name == "dreamrec-ce"
    loaded, _ = load_backbone(save_backbone(ce_model, tmp_path / "ce.pt", {}), d)
    assert type(loaded) is DreamRecCEAdapter and loaded.state_ce_weight == 1.0
    timed = planted_sequences(timed=True)
    poi = DreamRecPOICEAdapter.from_data(timed, **SMALL)
    assert poi.state_ce_weight == 1.0 and poi.time_aware and DreamRecPOICEAdapter.backbone_name == "dreamrec-poi-ce"
    loaded, _ = load_backbone(save_backbone(poi, tmp_path / "poi.pt", {}), timed)
    assert type(loaded) is DreamRecPOICEAdapter and loaded.time_aware and loaded.state_ce_weight == 1.0


def test_dreamrec_residual_denoiser_starts_from_the_guidance_vector(tmp_path):
    """residual=True: the x0 estimate is c + the network's output, so with the network's output zeroed the whole
    chain returns c and ranks as the encoder's own head c E^T; the option is kept through a checkpoint."""
    d = planted_sequences(timed=False)
    torch.manual_seed(0)
    plain = DreamRecAdapter.from_data(d, **SMALL).eval()
    res = DreamRecAdapter.from_data(d, residual=True, **SMALL).eval()
    res.load_state_dict(plain.state_dict())
    users = np.arange(5)
    cond = torch.as_tensor(res.encode_condition(users, d.history_items("valid")[users], split="valid"))
    ctx = res.context(cond)
    x, i = torch.randn(5, SMALL["d"]), torch.full((5,), 2)
    with torch.no_grad():
        torch.testing.assert_close(res.denoise(x, i, ctx), ctx["c"] + plain.denoise(x, i, plain.context(cond)))
        last = res.denoiser.net[-1]
        last.weight.zero_(), last.bias.zero_()
        scores = res.infer(cond, torch.as_tensor(users), deterministic=True)
    torch.testing.assert_close(scores, ctx["c"] @ res.encoder.item_weight.t())
    loaded, _ = load_backbone(save_backbone(res, tmp_path / "res.pt", {}), d)
    assert loaded.residual and not plain.residual


def _seq_pretrain(d, out, epochs, resume=False, init_seed=0, arch=None, **kwargs):
    """A tiny DreamRec (dropout on, so the global generator matters) pretrained by the 'sequential' scenario."""
    scenario = SCENARIOS["sequential"]
    torch.manual_seed(init_seed)
    a = DreamRecAdapter.from_data(d, **{**SMALL, "dropout": 0.1, **(arch or {})})
    cfg = scenario.pretrain_config(epochs=epochs, batch_size=16, lr=1e-2, patience=0, seed=2, eval_every=1)
    res = scenario.pretrain(a, d, cfg, out_dir=out, resume=resume, log=lambda m: None, **kwargs)
    return a, res


def _without_timings(history):
    return [{k: v for k, v in row.items() if not k.endswith("seconds")} for row in history]


def test_sequence_pretrain_resumes_bit_identically(tmp_path):
    d = planted_sequences()
    full, res_full = _seq_pretrain(d, tmp_path / "full", epochs=4)
    _seq_pretrain(d, tmp_path / "half", epochs=2)  # "stopped" after epoch 1
    st = torch.load(tmp_path / "half" / "last_state.pt", weights_only=True)
    assert st["epoch"] == 1 and st["elapsed_seconds"] > 0 and len(json.loads(st["history"])) == 2
    # another initialisation: the resumed weights come from the state
    half, res_half = _seq_pretrain(d, tmp_path / "half", epochs=4, resume=True, init_seed=7)
    a = torch.load(tmp_path / "full" / "last_state.pt", weights_only=True)
    b = torch.load(tmp_path / "half" / "last_state.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 3
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert _without_timings(res_full.history) == _without_timings(res_half.history) == \
        _without_timings(json.loads((tmp_path / "half" / "history.json").read_text()))
    assert res_full.best_epoch == res_half.best_epoch and len(res_half.history) == 4
    for k, v in full.state_dict().items():  # both hold the selected (best) weights
        assert torch.equal(v, half.state_dict()[k]), k
    # resuming a finished run trains nothing more
    again, res_again = _seq_pretrain(d, tmp_path / "half", epochs=4, resume=True)
    assert _without_timings(res_again.history) == _without_timings(res_half.history)
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in half.state_dict().items())


def test_sequence_pretrain_resume_refuses_other_data_or_architecture(tmp_path):
    d = planted_sequences()
    _seq_pretrain(d, tmp_path / "run", epochs=1)
    with pytest.raises(CheckpointError, match=r"run[/\\]last_state\.pt.*'config\.d' is 16 in the file, 8 in this run"):
        _seq_pretrain(d, tmp_path / "run", epochs=2, resume=True, arch={"d": 8})
    other = planted_sequences(seed=1)  # same name and sizes, other sequences
    with pytest.raises(CheckpointError, match=r"run[/\\]last_state\.pt.*'data\.digest'"):
        _seq_pretrain(other, tmp_path / "run", epochs=2, resume=True)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "last_state.pt").write_bytes(b"not a state")
    with pytest.raises(CheckpointError, match=r"junk[/\\]last_state\.pt: not a readable resume state"):
        _seq_pretrain(d, tmp_path / "junk", epochs=1, resume=True)
    _, res = _seq_pretrain(d, tmp_path / "run", epochs=2, resume=False)  # without resume: started afresh
    assert [r["epoch"] for r in res.history] == [0, 1]


def test_sequence_pretrain_max_seconds_is_cumulative_over_resumes(tmp_path):
    d = planted_sequences()
    _, res = _seq_pretrain(d, tmp_path / "run", epochs=3, max_seconds=0.0)  # out of time after one batch
    assert len(res.history) == 1 and res.history[0]["batches"] == 1 and res.best_epoch == 0
    _, res = _seq_pretrain(d, tmp_path / "run", epochs=3, resume=True, max_seconds=0.0)  # budget already used
    assert len(res.history) == 1
    _, res = _seq_pretrain(d, tmp_path / "run", epochs=3, resume=True)  # no bound: the remaining epochs
    assert [r["epoch"] for r in res.history] == [0, 1, 2] and res.history[2]["batches"] == 3


# ---------------------------------------------------------------------------------------------- Social DiffRec
def tiny_social_data(seed=0) -> InteractionData:
    rng = np.random.default_rng(seed)
    n_users, n_items = 16, 24
    pairs = np.unique(np.stack([rng.integers(0, n_users, 200), rng.integers(0, n_items, 200)], 1), axis=0)
    rng.shuffle(pairs)
    social = np.stack([np.arange(n_users), (np.arange(n_users) + 1) % n_users], 1)
    return InteractionData.from_pairs(pairs[:120], pairs[120:140], pairs[140:], n_users=n_users, n_items=n_items,
                                      social=social, name="tiny-social")


def test_social_diffrec_infer_checkpoint_and_loss(tmp_path):
    data = tiny_social_data()
    torch.manual_seed(0)
    a = SocialDiffRecAdapter.from_data(data, hidden=(16,), dropout=0.0, top_m=10)
    users = np.arange(data.n_users)
    cond = torch.as_tensor(a.encode_condition(users, data.train))
    users_t = torch.as_tensor(users)
    a.eval()
    s1 = a.infer(cond, users_t)
    assert s1.shape == (data.n_users, data.n_items) and torch.isfinite(s1).all()
    with pytest.raises(ValueError, match="user ids"):
        a.infer(cond)
    b, _ = load_backbone(save_backbone(a, tmp_path / "social.pt", meta={"n_users": data.n_users}), data=data)
    assert isinstance(b, SocialDiffRecAdapter)
    torch.testing.assert_close(b.infer(cond, users_t), s1, rtol=0, atol=0)

    i = torch.arange(data.n_users) % a.schedule.steps
    before = a.diffusion_loss(cond, users_t, i, torch.Generator().manual_seed(1)).mean().item()
    opt = torch.optim.Adam(a.parameters(), lr=1e-2)
    a.train()
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        loss = a.diffusion_loss(cond, users_t, torch.randint(0, a.schedule.steps, (data.n_users,), generator=gen), gen)
        opt.zero_grad()
        loss.mean().backward()
        opt.step()
    a.eval()
    after = a.diffusion_loss(cond, users_t, i, torch.Generator().manual_seed(1)).mean().item()
    assert np.isfinite(before) and after < before


def test_social_signal_uses_neighbours():
    data = tiny_social_data()
    a = SocialDiffRecAdapter.from_data(data, hidden=(8,))
    rows = a.social_rows(torch.tensor([3])).numpy()[0]
    neighbours = data.social[3].indices
    items = np.unique(data.train[neighbours].indices)
    assert set(np.flatnonzero(rows)) == set(items)


# ---------------------------------------------------------------------------------------------- SASRec and evaluation
def test_evaluate_sequential_hand_computed():
    d = SequentialData.from_sequences([[0, 1], [2]], [2, 3], [3, 0], n_items=4, max_len=2)
    table = torch.tensor([[0.1, 0.9, 0.5, 0.4], [0.8, 0.0, 0.3, 0.2]])
    score_fn = lambda users, split: table[users]  # noqa: E731
    m = evaluate_sequential(score_fn, d, "test", ks=(1, 3))
    # user 0: target 3 (0.4) has 2 higher -> rank 2; user 1: target 0 (0.8) rank 0
    assert m["hitrate@1"] == 0.5 and m["hitrate@3"] == 1.0
    assert m["ndcg@3"] == pytest.approx((1 / np.log2(4) + 1) / 2)
    # masking train + valid: user 0 loses items 0, 1, 2 -> rank 0; user 1's target 0 is never masked
    assert evaluate_sequential(score_fn, d, "test", ks=(1,), mask_history=True)["hitrate@1"] == 1.0


def test_sasrec_beats_random_and_popularity_on_planted_pattern():
    d = planted_sequences(n_users=64)
    torch.manual_seed(0)
    model = SASRec(d.n_items, max_len=d.max_len, d=16, n_layers=1, heads=1, dropout=0.0)
    model.fit(d, epochs=15, batch_size=16, lr=1e-2)
    assert model.history[-1] < model.history[0]
    for split in ("valid", "test"):
        m = evaluate_sequential(model.scores, d, split, ks=(1, 5))
        assert m["hitrate@1"] > 0.5, (split, m)  # random: 1 / 20
    popular = MostPopular().fit(d)
    pop = evaluate_sequential(lambda users, split: popular.scores(users), d, "test", ks=(1, 5))
    assert pop["hitrate@5"] < 0.6


def test_most_popular_on_sequences_counts_repeats():
    """One MostPopular for both data kinds: on sequences every train entry counts, a repeated item twice."""
    d = SequentialData.from_sequences([[0, 1, 0, 2], [1, 1, 3]], [2, 0], [3, 2], 4, max_len=8, name="repeats")
    popular = MostPopular().fit(d)
    np.testing.assert_array_equal(popular.popularity, [2, 3, 1, 1])
    assert d.interactions().train.sum() == 5  # the binary view counts (user, item) pairs once
    np.testing.assert_array_equal(popular.scores(np.array([0, 1])).numpy(), [[2, 3, 1, 1]] * 2)
