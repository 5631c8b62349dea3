"""The one pretraining loop (refit_gym.diffusion.training.pretrain) and its validation policy (issues #11, #14).

* the loop's losses and weights equal the objective spelled out step by step (the loops it replaced) for both
  families, and validation shifts no training draw;
* the adaptive interval keeps validation within its share of the (fake) clock; the sample is fixed and seeded;
* the kept checkpoint's reported validation comes from a full pass.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import walks
from refit_gym.data import make_synthetic
from refit_gym.diffusion import build_backbone
from refit_gym.diffusion.checkpoint import read_checkpoint
from refit_gym.diffusion.objective import ImportanceSampler
from refit_gym.diffusion.seq_training import sequence_batches
from refit_gym.diffusion.training import PretrainConfig, pretrain
from refit_gym.utils import optimizer_kwargs
from refit_gym.diffusion.validation import (ValidationSchedule, adaptive_interval, validation_sample,
                                            validation_users)
from refit_gym.metrics import evaluate_backbone
from refit_gym.scenarios import SCENARIOS
from refit_gym.utils import set_global_seed

QUIET = dict(progress=False, tensorboard=False, log=lambda m: None)
SEQ_KW = dict(d=16, n_layers=1, heads=2, hidden=[32], emb_size=8, dropout=0.1,
              schedule=dict(noise_schedule="cosine", steps=5))


def _adamw(adapter, cfg):
    """The loop's optimizer: AdamW with torch's fused step where it applies (refit_gym.utils.optimizer_kwargs)."""
    params = list(adapter.parameters())
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay,
                             **optimizer_kwargs(torch.optim.AdamW, params))


def _history_reference(adapter, data, cfg):
    """DiffRec's objective step by step (the interaction loop before unification): importance-sampled indices,
    SNR weights, AdamW, user-weighted epoch means; no validation."""
    set_global_seed(cfg.seed)
    opt = _adamw(adapter, cfg)
    sampler, gen, rng, T = ImportanceSampler(adapter.schedule.steps), torch.Generator().manual_seed(cfg.seed), \
        np.random.default_rng(cfg.seed), adapter.schedule.steps
    losses = []
    for _ in range(cfg.epochs):
        adapter.train()
        perm, total = rng.permutation(np.arange(data.n_users)), 0.0
        for s in range(0, len(perm), cfg.batch_size):
            users = perm[s:s + cfg.batch_size]
            cond = torch.as_tensor(adapter.encode_condition(users, data.train[users]))
            i, p = sampler.sample(len(users), gen, "cpu")
            per_user = adapter.diffusion_loss(cond, torch.as_tensor(users), i, generator=gen, reweight=True)
            loss = (per_user / (T * p)).sum() / len(users)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sampler.update(i, per_user.detach())
            total += loss.item() * len(users)
        losses.append(total / data.n_users)
    return losses


def _sequence_reference(adapter, data, cfg):
    """The all-prefix sequence objective step by step (the sequence loop before unification): gradient norm
    clipped to 5, batch-mean epoch losses; no validation."""
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = _adamw(adapter, cfg)
    losses = []
    for _ in range(cfg.epochs):
        adapter.train()
        batch_losses = []
        for seq, buckets in sequence_batches(data, cfg.batch_size, adapter.max_len, gen):
            loss = adapter.sequence_loss(seq, buckets, gen)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(adapter.parameters(), 5.0)
            opt.step()
            batch_losses.append(loss.item())
        losses.append(float(np.mean(batch_losses)))
    return losses


@pytest.mark.parametrize("family", ["history", "sequence"])
def test_one_loop_reproduces_each_familys_objective(tmp_path, family):
    """Same seed, same losses and weights as the objective written out, whatever validation does in between."""
    if family == "history":
        data, name, kw, ev = make_synthetic(n_users=64, n_items=120, seed=0), "diffrec", \
            dict(hidden=[32], schedule=dict(steps=5), dropout=0.5), None
        cfg = PretrainConfig(epochs=3, batch_size=16, lr=3e-3, patience=0, seed=1, eval_every=1)
        reference = _history_reference
    else:
        data, name, kw, ev = walks(), "dreamrec", SEQ_KW, SCENARIOS["sequential"].evaluate_backbone
        cfg = PretrainConfig(epochs=3, batch_size=8, lr=1e-2, patience=0, seed=2, eval_every=1, metric="ndcg@10")
        reference = _sequence_reference
    torch.manual_seed(0)
    ref = build_backbone(name, data, **kw)
    torch.manual_seed(0)
    ours = build_backbone(name, data, **kw)
    expected = reference(ref, data, cfg)
    pretrain(ours, data, cfg, out_dir=tmp_path, evaluate_fn=ev, **QUIET)
    history = json.loads((tmp_path / "history.json").read_text())
    assert [r["train_loss"] for r in history] == expected
    assert all("valid/" + cfg.metric in r for r in history)  # validated after every epoch ...
    last = torch.load(tmp_path / "last_state.pt", weights_only=True)["model"]
    for k, v in ref.state_dict().items():  # ... without shifting a dropout mask or a noise draw
        assert torch.allclose(v, last[k], rtol=0, atol=0, equal_nan=True), k


# ---------------------------------------------------------------------------------------------- the share rule
def test_adaptive_interval_keeps_the_projected_share_within_the_budget():
    # 10 epochs of 1 s, 2 validations of 3 s: the next one of 3 s must wait until 6 + 3 <= (10 + k + 6 + 3) / 4
    assert adaptive_interval(10.0, 6.0, 10, 3.0, 0.0, 0.25) == 17
    # the final full pass (12 s) is reserved too
    assert adaptive_interval(10.0, 6.0, 10, 3.0, 12.0, 0.25) == 53
    assert adaptive_interval(100.0, 1.0, 100, 1.0, 0.0, 0.25) == 1  # cheap validation: every epoch
    assert adaptive_interval(0.0, 0.0, 0, 5.0, 0.0, 0.25) == 1  # nothing measured yet
    with pytest.raises(ValueError, match=r"eval_budget=1\.5"):
        adaptive_interval(1.0, 1.0, 1, 1.0, 0.0, 1.5)
    fixed = ValidationSchedule(every=3, budget=0.25, epochs=10)
    assert [e for e in range(10) if fixed.due(e)] == [2, 5, 8, 9]  # and always the last epoch
    with pytest.raises(ValueError, match=r"eval_every=0"):
        ValidationSchedule(every=0, budget=0.25, epochs=10)
    # a broadcast value wins over this rank's own decision (rank 0 decides under torch.distributed)
    adaptive = ValidationSchedule(every=None, budget=0.25, epochs=100)
    rows = [{"epoch": 0, "epoch_seconds": 1.0, "valid_seconds": 9.0}]
    assert adaptive.plan_next(0, rows, 0.0) == 1 + adaptive_interval(1.0, 9.0, 1, 9.0, 0.0, 0.25)
    assert adaptive.plan_next(0, rows, 0.0, broadcast=lambda v: 7.0) == 7 and adaptive.due(6) and not adaptive.due(5)


class FakeClock:
    """Seconds that pass only when told: training batches and validations advance it."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_validation_stays_within_a_quarter_of_a_fake_clock(tmp_path):
    data = make_synthetic(n_users=64, n_items=120, seed=0)
    clock = FakeClock()
    adapter = build_backbone("diffrec", data, hidden=[8], schedule=dict(steps=3))
    step = adapter.pretrain_loss

    def slow_step(batch, draws, cfg):  # a training batch costs 1 s
        clock.now += 1.0
        return step(batch, draws, cfg)

    def slow_validation(a, d, split, users=None):  # a validation costs 10 s
        clock.now += 10.0
        return {"recall@20": 0.5}

    adapter.pretrain_loss = slow_step
    cfg = PretrainConfig(epochs=40, batch_size=16, patience=0)  # 4 batches = 4 s per epoch
    res = pretrain(adapter, data, cfg, out_dir=tmp_path, evaluate_fn=slow_validation, clock=clock, **QUIET)
    history = json.loads((tmp_path / "history.json").read_text())
    assert [r["epoch_seconds"] for r in history] == [4.0] * 40
    validated = [r["epoch"] for r in history if r["valid_seconds"] > 0]
    assert validated[0] == 0 and validated[-1] == 39 and len(validated) < 10  # adaptive: far from every epoch
    assert all(r["valid_seconds"] == 10.0 for r in history if r["epoch"] in validated)
    for e in validated[1:-1]:  # at every scheduled validation the share so far is within the budget
        rows = history[:e + 1]
        valid = sum(r["valid_seconds"] for r in rows)
        assert valid <= 0.25 * (valid + sum(r["epoch_seconds"] for r in rows)) + 1e-9, e
    assert res.train_seconds == 160.0 and res.valid_seconds == 10.0 * len(validated)
    assert res.valid_share == pytest.approx(res.valid_seconds / (res.train_seconds + res.valid_seconds))
    # an explicit interval is kept as given
    every = pretrain(build_backbone("diffrec", data, hidden=[8], schedule=dict(steps=3)), data,
                     PretrainConfig(epochs=6, batch_size=16, patience=0, eval_every=2), evaluate_fn=slow_validation,
                     clock=clock, **QUIET)
    assert [r["epoch"] for r in every.history if r["valid_seconds"] > 0] == [1, 3, 5]


# ---------------------------------------------------------------------------------------------- the sample
def test_validation_sample_is_fixed_seeded_and_a_subset():
    data = make_synthetic(n_users=120, n_items=80, seed=0)
    users = validation_users(data)
    assert len(users) and (np.diff(data.valid.tocsr().indptr)[users] > 0).all()
    a, b = validation_sample(data, 20, seed=3), validation_sample(data, 20, seed=3)
    assert np.array_equal(a, b) and len(a) == 20 and np.all(np.diff(a) > 0) and np.isin(a, users).all()
    assert not np.array_equal(a, validation_sample(data, 20, seed=4))
    assert validation_sample(data, len(users), seed=3) is None and validation_sample(data, None, seed=3) is None
    with pytest.raises(ValueError, match=r"eval_users=0"):
        validation_sample(data, 0, seed=3)
    seq = walks()
    assert np.array_equal(validation_users(seq), seq.split_users["valid"])


def test_the_kept_checkpoint_reports_a_full_pass(tmp_path):
    data = make_synthetic(n_users=64, n_items=120, seed=0)
    n_valid = len(validation_users(data))
    calls = []

    def evaluate_fn(a, d, split, users=None):
        calls.append(None if users is None else users.copy())
        return evaluate_backbone(a, d, split, users=users)

    cfg = PretrainConfig(epochs=3, batch_size=16, lr=3e-3, patience=0, seed=1, eval_every=1, eval_users=10)
    torch.manual_seed(0)
    adapter = build_backbone("diffrec", data, hidden=[16], schedule=dict(steps=3))
    res = pretrain(adapter, data, cfg, out_dir=tmp_path, evaluate_fn=evaluate_fn, **QUIET)
    sample = validation_sample(data, 10, seed=1)
    assert len(calls) == 4 and calls[-1] is None  # 3 sampled validations, then the kept checkpoint's full pass
    assert all(np.array_equal(c, sample) for c in calls[:3])  # the same users every time
    full = evaluate_backbone(adapter, data, "valid")  # the adapter holds the kept weights
    assert res.best_valid["valid/recall@20"] == full["recall@20"] and full["n_users_evaluated"] == n_valid
    row = res.history[res.best_epoch]
    assert row["valid_users"] == 10 and not row["valid_full"]
    assert res.best_valid["valid_sample/recall@20"] == row["valid/recall@20"]
    meta = read_checkpoint(tmp_path / "best.pt")["meta"]
    assert meta["valid_full"] and meta["valid"]["recall@20"] == full["recall@20"] and meta["epoch"] == res.best_epoch
    st = torch.load(tmp_path / "last_state.pt", weights_only=True)
    assert "valid_full/recall@20" in json.loads(st["history"])[res.best_epoch]
    assert json.loads((tmp_path / "history.json").read_text()) == res.history
    # resuming the finished run repeats neither the training nor the full pass
    calls.clear()
    again = pretrain(build_backbone("diffrec", data, hidden=[16], schedule=dict(steps=3)), data, cfg,
                     out_dir=tmp_path, evaluate_fn=evaluate_fn, resume=True, **QUIET)
    assert calls == [] and again.best_valid == res.best_valid
    # an evaluate_fn that cannot score a sample is refused before training, by name
    with pytest.raises(TypeError, match=r"evaluate_fn .*<lambda>.* takes no 'users' keyword.*10 users"):
        pretrain(build_backbone("diffrec", data, hidden=[16], schedule=dict(steps=3)), data, cfg,
                 evaluate_fn=lambda a, d, s: {}, **QUIET)


def test_pretrain_config_names_a_bad_value():
    for kw, field in ((dict(eval_every=0), "eval_every=0"), (dict(eval_users=-1), "eval_users=-1"),
                      (dict(eval_budget=0.0), "eval_budget=0.0"), (dict(batch_size=0), "batch_size=0"),
                      (dict(timestep_sampling="unifrom"), "timestep_sampling='unifrom'")):
        with pytest.raises(ValueError, match=f"PretrainConfig.{field}"):
            PretrainConfig(**kw)


def test_pretrain_command_line_validation_flags():
    from refit_gym.experiments.pretrain import build_parser, config_overrides, main

    parse = lambda *a: config_overrides(build_parser().parse_args(list(a)))  # noqa: E731
    assert "eval_every" not in parse() and "eval_users" not in parse()  # the defaults: adaptive, a sample
    assert parse("--full-validation")["eval_users"] is None
    assert parse("--eval-users", "7", "--eval-budget", "0.1", "--eval-every", "3") == dict(
        eval_users=7, eval_budget=0.1, eval_every=3, reweight=True)
    with pytest.raises(SystemExit, match=r"--eval-users 7 and --full-validation contradict"):
        parse("--eval-users", "7", "--full-validation")
    # a value out of range is one error naming the field, before any data is read
    with pytest.raises(SystemExit, match=r"^error: PretrainConfig\.eval_every=0: expected a positive integer"):
        main(["--eval-every", "0", "--data", "no-such-folder"])


def test_continued_control_keeps_its_model_when_validation_beats_the_start(tmp_path):
    """The continued-pretraining control compared the start with a metric it never found (the kept row keys it
    'valid/ndcg@20'), so the start was always kept."""
    from refit_gym.diffusion.checkpoint import save_backbone
    from refit_gym.experiments.ladder import continued_pretraining

    data = make_synthetic(n_users=64, n_items=120, seed=0)
    torch.manual_seed(0)
    path = save_backbone(build_backbone("diffrec", data, hidden=[16], schedule=dict(steps=3)), tmp_path / "start.pt",
                         meta={"n_users": data.n_users})
    start = {"valid": {"ndcg@20": -1.0}, "test": {"ndcg@20": -1.0}}  # any trained epoch beats it
    m = continued_pretraining("refit_gym/DiffRec-v0", data, path, 2.0, 0, tmp_path / "run", "cpu", "ndcg@20", start,
                              {"seconds_per_epoch": 1.0, "batch_size": 32}, log=lambda s: None)
    assert m["epochs"] == 2 and m["best"] != start
    assert m["best"]["valid"]["ndcg@20"] > -1.0 and "ndcg@20" in m["best"]["test"]


def test_continued_control_validations_key_sets_the_validation_count(tmp_path):
    """``validations`` in the continued recipe sets how many validations an interaction run makes (every
    ``epochs // validations`` epochs and the last), and a count below 1 is one error naming it."""
    from refit_gym.diffusion.checkpoint import save_backbone
    from refit_gym.experiments.ladder import continued_pretraining

    data = make_synthetic(n_users=64, n_items=120, seed=0)
    torch.manual_seed(0)
    path = save_backbone(build_backbone("diffrec", data, hidden=[16], schedule=dict(steps=3)), tmp_path / "start.pt",
                         meta={"n_users": data.n_users})
    start = {"valid": {"ndcg@20": -1.0}, "test": {"ndcg@20": -1.0}}
    m = continued_pretraining("refit_gym/DiffRec-v0", data, path, 6.0, 0, tmp_path / "run", "cpu", "ndcg@20", start,
                              {"seconds_per_epoch": 1.0, "batch_size": 32, "validations": 2}, log=lambda s: None)
    assert m["epochs"] == 6
    assert [h["epoch"] for h in m["history"] if "ndcg@20" in h] == [2, 5]
    with pytest.raises(ValueError, match=r"continued validations=0"):
        continued_pretraining("refit_gym/DiffRec-v0", data, path, 6.0, 0, tmp_path / "run2", "cpu", "ndcg@20", start,
                              {"seconds_per_epoch": 1.0, "validations": 0}, log=lambda s: None)


def test_optimizer_kwargs_choose_the_fused_adam_step_and_respect_an_explicit_choice():
    """Adam / AdamW over CPU float parameters get ``fused=True`` (same update, float rounding aside); an explicit
    ``fused`` / ``foreach`` and other optimizers are left as given."""
    w = [torch.nn.Parameter(torch.randn(5, 3)), torch.nn.Parameter(torch.randn(3))]
    groups = [dict(params=w[:1], lr_scale=1.0), dict(params=w[1:], lr_scale=0.5)]
    assert optimizer_kwargs(torch.optim.AdamW, w) == {"fused": True}
    assert optimizer_kwargs(torch.optim.Adam, groups, {"eps": 1e-6}) == {"eps": 1e-6, "fused": True}
    assert optimizer_kwargs(torch.optim.Adam, w, {"foreach": False}) == {"foreach": False}
    assert optimizer_kwargs(torch.optim.Adam, w, {"fused": False}) == {"fused": False}
    assert optimizer_kwargs(torch.optim.SGD, w) == {}
    assert optimizer_kwargs(torch.optim.Adam, [torch.zeros(2, dtype=torch.long)]) == {}
    # the fused step is the same update rule as the default one
    grads = [torch.randn_like(p) for p in w]
    updated = []
    for kwargs in ({}, optimizer_kwargs(torch.optim.Adam, w)):
        params = [torch.nn.Parameter(p.detach().clone()) for p in w]
        opt = torch.optim.Adam(params, lr=1e-2, **kwargs)
        for _ in range(3):
            for p, g in zip(params, grads):
                p.grad = g.clone()
            opt.step()
        updated.append(params)
    for a, b in zip(*updated):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)


def test_continued_control_continues_with_its_starts_own_settings(tmp_path):
    """The control trains with the learning rate and batch size its start was pretrained with (the checkpoint's
    ``meta["pretrain"]``), unless its params set them; a start that records none gets the scenario's defaults."""
    from refit_gym.diffusion.checkpoint import save_backbone
    from refit_gym.experiments.ladder import continued_pretraining
    from refit_gym.scenarios import scenario_for

    data = make_synthetic(n_users=64, n_items=120, seed=0)
    torch.manual_seed(0)
    backbone = build_backbone("diffrec", data, hidden=[16], schedule=dict(steps=3))
    start = {"valid": {"ndcg@20": -1.0}, "test": {"ndcg@20": -1.0}}

    def lr_of(meta, params, name):
        path = save_backbone(backbone, tmp_path / f"{name}.pt", meta={"n_users": data.n_users, **meta})
        continued_pretraining("refit_gym/DiffRec-v0", data, path, 1.0, 0, tmp_path / name, "cpu", "ndcg@20", start,
                              {"seconds_per_epoch": 1.0, **params}, log=lambda s: None)
        group = torch.load(tmp_path / name / "last_state.pt", weights_only=True)["optimizer"]["param_groups"][0]
        return group["lr"]

    assert lr_of({"pretrain": {"lr": 7e-3, "batch_size": 32, "epochs": 99}}, {}, "own") == 7e-3
    assert lr_of({"pretrain": {"lr": 7e-3}}, {"lr": 2e-3}, "overridden") == 2e-3
    assert lr_of({}, {}, "unrecorded") == scenario_for("refit_gym/DiffRec-v0").pretrain_config().lr


def test_benchmark_continued_params_are_the_flags_given():
    """``--pretrain-args`` flags reach the continued control; unset flags (reweight included) do not, so the
    control keeps its start's own settings."""
    from refit_gym.experiments.benchmark.plan import Settings, continued_params

    def params(*argv):
        return continued_params("dreamrec", Settings(data="x", quick=False, select_metric="ndcg@20", eval_points=5,
                                                     pretrain_args=list(argv), scenario="sequential"))

    assert params() == {}
    assert params("--lr", "3e-4", "--epochs", "9") == {"lr": 3e-4}
    assert params("--no-reweight") == {"reweight": False}
