"""Schedule algebra, denoisers, adapters, checkpoints and pretraining."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from refit_gym.data import make_synthetic
from refit_gym.data.graph import item_item_graph
from refit_gym.diffusion import (CFDiffAdapter, CheckpointError, GaussianDiffusion, ScheduleConfig,
                                 build_backbone, load_backbone, save_backbone)
from refit_gym.diffusion.schedule import make_betas
from refit_gym.diffusion.training import ImportanceSampler, PretrainConfig, pretrain

SCHEDULES = [
    ScheduleConfig(noise_schedule="linear-var", steps=40),
    ScheduleConfig(noise_schedule="linear", noise_scale=0.1, noise_min=0.001, noise_max=0.02, steps=10),
    ScheduleConfig(noise_schedule="cosine", steps=25, mean_type="eps"),
]


@pytest.mark.parametrize("cfg", SCHEDULES, ids=lambda c: c.noise_schedule)
def test_posterior_matches_closed_form(cfg):
    """mu and var of q(x_{i-1} | x_i, x0) against Bayes' rule for two Gaussians, in float64."""
    d = GaussianDiffusion(cfg)
    betas = make_betas(cfg)
    abar = np.cumprod(1 - betas)
    for i in range(1, cfg.steps):
        # q(x_i | x_{i-1}) = N(sqrt(1-b_i) x_{i-1}, b_i); prior q(x_{i-1} | x0) = N(sqrt(abar_{i-1}) x0, 1 - abar_{i-1})
        a_prev = abar[i - 1]
        prec = (1 - betas[i]) / betas[i] + 1 / (1 - a_prev)
        var = 1 / prec
        x0, xi = 0.7, -0.3
        mean = var * (np.sqrt(1 - betas[i]) * xi / betas[i] + np.sqrt(a_prev) * x0 / (1 - a_prev))
        m, v = d.q_posterior(torch.tensor([[x0]]), torch.tensor([[xi]]), torch.tensor([i]))
        assert v.item() == pytest.approx(var, rel=1e-4)
        assert m.item() == pytest.approx(mean, rel=1e-4, abs=1e-7)
    # the last step (i = 0) uses the clipped variance var_1, and its mean is x0 itself
    m0, v0 = d.q_posterior(torch.tensor([[0.7]]), torch.tensor([[-0.3]]), torch.tensor([0]))
    assert m0.item() == pytest.approx(0.7, rel=1e-5)
    assert v0.item() == pytest.approx(d.table("posterior_variance")[1], rel=1e-5)
    assert np.all(d.table("posterior_variance_clipped") > 0)


def test_linear_var_schedule_has_linear_variance():
    cfg = ScheduleConfig(noise_schedule="linear-var", noise_scale=0.005, noise_min=0.005, noise_max=0.01, steps=40)
    abar = GaussianDiffusion(cfg).table("alphas_cumprod")
    np.testing.assert_allclose(1 - abar, np.linspace(0.005 * 0.005, 0.005 * 0.01, 40), rtol=1e-9)


def test_q_sample_moments():
    cfg = ScheduleConfig(noise_schedule="linear", noise_scale=1.0, noise_min=0.01, noise_max=0.2, steps=10)
    d = GaussianDiffusion(cfg)
    x0 = torch.full((20000, 1), 2.0)
    i = torch.full((20000,), 7)
    x = d.q_sample(x0, i, generator=torch.Generator().manual_seed(0))
    abar = d.table("alphas_cumprod")[7]
    assert x.mean().item() == pytest.approx(2 * np.sqrt(abar), abs=0.02)
    assert x.var().item() == pytest.approx(1 - abar, rel=0.05)


def test_eps_parameterisation_inverts_q_sample():
    cfg = ScheduleConfig(noise_schedule="cosine", steps=20, mean_type="eps")
    d = GaussianDiffusion(cfg)
    x0, eps, i = torch.randn(5, 7), torch.randn(5, 7), torch.arange(5) * 3
    xi = d.q_sample(x0, i, eps)
    torch.testing.assert_close(d.x0_from_output(eps, xi, i), x0, rtol=1e-3, atol=1e-3)


def test_bad_schedule_config():
    with pytest.raises(ValueError, match="noise_schedule"):
        ScheduleConfig(noise_schedule="quadratic")
    with pytest.raises(ValueError, match="steps"):
        ScheduleConfig(steps=1)
    with pytest.raises(ValueError, match="noise range"):
        ScheduleConfig(noise_min=0.02, noise_max=0.01)


def test_timestep_weight():
    d = GaussianDiffusion(ScheduleConfig())
    i = torch.arange(40)
    w = d.timestep_weight(i)
    snr = d.table("snr")
    assert w[0].item() == 1.0
    np.testing.assert_allclose(w[1:].numpy(), (snr[:-1] - snr[1:]).astype(np.float32), rtol=1e-4)


@pytest.fixture(scope="module")
def data():
    return make_synthetic(n_users=120, n_items=80, seed=3)


@pytest.mark.parametrize("name", ["diffrec", "cfdiff"])
def test_infer_and_checkpoint_round_trip(tmp_path, data, name):
    kw = dict(hidden=[32]) if name == "diffrec" else dict(d_model=32, heads=2, top_m=10)
    a = build_backbone(name, data, schedule=dict(steps=5), **kw).eval()
    users = np.arange(10)
    cond = torch.as_tensor(a.encode_condition(users, data.train[users]))
    scores = a.infer(cond, torch.as_tensor(users))
    assert scores.shape == (10, data.n_items) and torch.isfinite(scores).all()
    path = save_backbone(a, tmp_path / "b.pt", meta={"n_users": data.n_users})
    b, meta = load_backbone(path, data)
    torch.testing.assert_close(b.infer(cond, torch.as_tensor(users)), scores, rtol=0, atol=0)
    assert meta["n_users"] == data.n_users and b.config() == a.config()


def test_t_diffrec_weights_its_condition_by_recency_and_keeps_them(tmp_path, data):
    """time_weights=[w_min, w_max]: the condition is each visible training item's recency weight (w_min = 0 kept
    as 0), a visible non-training item weighs w_max; binary DiffRec is unchanged; the weights travel with the
    checkpoint, so the loaded backbone encodes the same conditions; a user without weights is refused."""
    users = np.arange(12)
    visible = (data.train[users] + data.valid[users]).tocsr().sign()
    binary = build_backbone("diffrec", data, schedule=dict(steps=5), hidden=[16])
    np.testing.assert_array_equal(binary.encode_condition(users, visible), visible.toarray())
    assert not any(k.startswith("recency") for k in binary.state_dict())  # DiffRec's checkpoints are unchanged
    t = build_backbone("diffrec", data, schedule=dict(steps=5), hidden=[16], time_weights=[0.0, 0.9])
    cond = t.encode_condition(users, visible)
    expected = np.where(data.valid[users].toarray() > 0, 0.9, data.recency_weights(0.0, 0.9)[users].toarray())
    np.testing.assert_allclose(cond, expected, atol=1e-6)
    assert (cond[data.train[users].toarray() > 0] == 0).any()  # each user's oldest item
    b, _ = load_backbone(save_backbone(t, tmp_path / "t.pt", meta={"n_users": data.n_users}), data)
    assert b.config()["time_weights"] == [0.0, 0.9]
    np.testing.assert_array_equal(b.encode_condition(users, visible), cond)
    with pytest.raises(ValueError, match="no recency weights"):
        b.encode_condition(np.array([data.n_users]), visible[:1])
    default = build_backbone("t-diffrec", data, hidden=[16])  # T-DiffRec: DiffRec with time_weights [0.1, 1.0]
    assert default.config()["time_weights"] == [0.1, 1.0]
    np.testing.assert_allclose(default.encode_condition(users, data.train[users]),
                               data.recency_weights(0.1, 1.0)[users].toarray(), atol=1e-6)
    with pytest.raises(ValueError, match="w_min=0.5"):
        build_backbone("diffrec", data, hidden=[16], time_weights=[0.5, 0.2])


def test_checkpoint_rejects_other_data(tmp_path, data):
    a = build_backbone("diffrec", data, schedule=dict(steps=5), hidden=[16])
    path = save_backbone(a, tmp_path / "b.pt", meta={"n_users": data.n_users})
    other = make_synthetic(n_users=120, n_items=90, seed=3)
    with pytest.raises(CheckpointError, match=r"b\.pt.*n_items.*90"):
        load_backbone(path, other)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt"):
        load_backbone(tmp_path / "junk.pt")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_backbone(tmp_path / "missing.pt")


def test_checkpoint_refuses_arbitrary_pickles(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"format": "refit-gym-backbone", "x": Evil()}, f, protocol=2)
    with pytest.raises(CheckpointError, match="evil.pt"):
        load_backbone(path)


def test_cfdiff_hops_use_only_the_condition(data):
    a = CFDiffAdapter.from_data(data, schedule=dict(steps=4), d_model=16, heads=2, top_m=10)
    cond = torch.zeros(2, data.n_items)
    cond[0, 3] = 1.0
    hops = a.context(cond)
    assert hops.shape == (2, 3, data.n_items)
    assert torch.equal(hops[:, 0], cond)
    assert hops[1].abs().sum() == 0  # an empty condition yields empty hop signals
    assert hops[0, 1].max().item() == pytest.approx(1.0)


def _rebuilt_context(a: CFDiffAdapter, cond: torch.Tensor) -> torch.Tensor:
    """CF-Diff's hop signals with the sparse graph rebuilt from the buffers (the former, uncached code)."""
    gt = torch.sparse_coo_tensor(a.graph_indices.flip(0), a.graph_values, (a.n_items, a.n_items),
                                 check_invariants=False).coalesce()
    hops, cur = [cond], cond
    for _ in range(1, a.config()["n_hops"]):
        cur = torch.sparse.mm(gt, cur.t()).t()
        cur = cur / cur.abs().amax(dim=-1, keepdim=True).clamp_min(1e-12)
        hops.append(cur)
    return torch.stack(hops, dim=1)


def test_cfdiff_caches_its_sparse_graph(data, monkeypatch):
    a = CFDiffAdapter.from_data(data, schedule=dict(steps=4), d_model=16, heads=2, top_m=10).eval()
    users = np.arange(12)
    cond = torch.as_tensor(a.encode_condition(users, data.train[users]))
    expected = _rebuilt_context(a, cond)
    builds = []
    real = torch.sparse_coo_tensor
    monkeypatch.setattr(torch, "sparse_coo_tensor", lambda *args, **kw: builds.append(1) or real(*args, **kw))
    assert torch.equal(a.context(cond), expected) and len(builds) == 1
    assert torch.equal(a.context(cond), expected) and len(builds) == 1  # second call: no rebuild
    assert a.infer(cond).shape == (12, data.n_items) and len(builds) == 1  # the whole chain reuses it
    # modified in place (load_state_dict copies into the buffers): rebuilt
    state = {k: v.clone() for k, v in a.state_dict().items()}
    state["graph_values"] = state["graph_values"] * 0.5 + 0.1
    a.load_state_dict(state)
    assert len(builds) == 1 and torch.equal(a.context(cond), _rebuilt_context(a, cond)) and len(builds) == 3
    # replaced (set_graph, checkpoint loading): rebuilt
    a.set_graph(item_item_graph(data.train, 5))
    assert torch.equal(a.context(cond), _rebuilt_context(a, cond)) and len(builds) == 5
    # moved or cast with .to(): invalidated, rebuilt on the buffers' new device / dtype
    a.to(torch.float64)
    assert a._graph_t().dtype == torch.float64 and len(builds) == 6
    assert torch.equal(a.context(cond.double()), _rebuilt_context(a, cond.double())) and len(builds) == 7
    if torch.cuda.is_available():
        a.to("cuda")
        assert a._graph_t().device.type == "cuda" and len(builds) == 8
        a.to("cpu")
        assert a._graph_t().device.type == "cpu" and len(builds) == 9


def test_importance_sampler_switches_after_history():
    s = ImportanceSampler(steps=4, history=2)
    np.testing.assert_allclose(s.probs(), 0.25)
    s.update(torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]), torch.tensor([1.0, 1.0, 2.0, 2.0, 1.0, 1.0, 4.0, 4.0]))
    p = s.probs()
    assert p.argmax() == 3 and p.sum() == pytest.approx(1.0)


def test_pretrain_improves_and_resumes(tmp_path, data):
    torch.manual_seed(0)
    cfg = PretrainConfig(epochs=4, batch_size=32, lr=3e-3, patience=0, seed=1)
    kw = dict(schedule=dict(steps=5), hidden=[64])
    a = build_backbone("diffrec", data, **kw)
    res = pretrain(a, data, cfg, out_dir=tmp_path / "full", progress=False, log=lambda m: None)
    assert (tmp_path / "full" / "best.pt").exists()
    hist = json.loads((tmp_path / "full" / "history.json").read_text())
    assert len(hist) == 4 and hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert res.best_valid["valid/recall@20"] > 0
    # stop after 2 epochs, resume to 4: identical weights to the straight run
    torch.manual_seed(0)
    b = build_backbone("diffrec", data, **kw)
    pretrain(b, data, PretrainConfig(**{**cfg.__dict__, "epochs": 2}), out_dir=tmp_path / "half", progress=False,
             log=lambda m: None)
    torch.manual_seed(0)
    c = build_backbone("diffrec", data, **kw)
    pretrain(c, data, cfg, out_dir=tmp_path / "half", progress=False, resume=True, log=lambda m: None)
    last_full = torch.load(tmp_path / "full" / "last_state.pt", weights_only=True)["model"]
    last_half = torch.load(tmp_path / "half" / "last_state.pt", weights_only=True)["model"]
    for k in last_full:
        torch.testing.assert_close(last_full[k], last_half[k], rtol=0, atol=0)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device (the noise generator must live on it)"))])
def test_pretrain_draws_noise_on_the_training_device_and_resumes_there(tmp_path, data, device):
    """The diffusion noise is drawn by a generator on the training device (torch refuses a CPU generator for a
    CUDA draw), and its state travels with last_state.pt: a resumed run equals the straight one."""
    cfg = PretrainConfig(epochs=2, batch_size=64, patience=0, seed=3)
    kw = dict(schedule=dict(steps=5), hidden=[16])
    quiet = dict(progress=False, tensorboard=False, log=lambda m: None, device=device)
    torch.manual_seed(0)
    straight = build_backbone("diffrec", data, **kw)
    pretrain(straight, data, cfg, out_dir=tmp_path / "straight", **quiet)
    torch.manual_seed(0)
    resumed = build_backbone("diffrec", data, **kw)
    pretrain(resumed, data, PretrainConfig(**{**cfg.__dict__, "epochs": 1}), out_dir=tmp_path / "resumed", **quiet)
    pretrain(resumed, data, cfg, out_dir=tmp_path / "resumed", resume=True, **quiet)
    st = torch.load(tmp_path / "resumed" / "last_state.pt", weights_only=True)
    assert ("torch_dev_gen" in st) == (device == "cuda")
    for (name, p), q in zip(straight.named_parameters(), resumed.parameters()):
        assert p.device.type == device and torch.equal(p, q), name


def test_pretrain_resume_refuses_a_state_of_other_data_or_architecture(tmp_path, data):
    cfg = PretrainConfig(epochs=1, batch_size=64, patience=0)
    kw = dict(schedule=dict(steps=5), hidden=[16])
    quiet = dict(progress=False, tensorboard=False, log=lambda m: None)
    pretrain(build_backbone("diffrec", data, **kw), data, cfg, out_dir=tmp_path, **quiet)
    st = torch.load(tmp_path / "last_state.pt", weights_only=True)
    assert {"model", "optimizer", "sampler", "torch_gen", "torch_global", "np_rng", "epoch", "history", "best",
            "best_epoch", "bad", "best_model", "run"} <= set(st)
    cfg2 = PretrainConfig(epochs=2, batch_size=64, patience=0)
    with pytest.raises(CheckpointError, match=r"last_state\.pt.*'config\.hidden' is \[16\] in the file, \[32\]"):
        pretrain(build_backbone("diffrec", data, schedule=dict(steps=5), hidden=[32]), data, cfg2, out_dir=tmp_path,
                 resume=True, **quiet)
    other = make_synthetic(n_users=120, n_items=80, seed=4)
    with pytest.raises(CheckpointError, match=r"last_state\.pt.*'data\.digest'.*the training data differ"):
        pretrain(build_backbone("diffrec", other, **kw), other, cfg2, out_dir=tmp_path, resume=True, **quiet)
    # a state written before the fingerprint was stored still resumes (unchecked)
    del st["run"]
    torch.save(st, tmp_path / "last_state.pt")
    res = pretrain(build_backbone("diffrec", data, **kw), data, cfg2, out_dir=tmp_path, resume=True, **quiet)
    assert [r["epoch"] for r in res.history] == [0, 1]
