"""Agents: DenoiserPolicy with SB3's PPO/A2C, ReFiT, DDPO, saving/resuming, NaN safety, scripts/train.py."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from stable_baselines3 import A2C
from stable_baselines3.common.callbacks import BaseCallback

from agents import ALGOS, DenoiserPolicy, NonFiniteTrainingError, RatioLoggingPPO, ReFiT
from agents.distributions import DenoiserGaussian
from refit_gym.data.synthetic import make_synthetic
from refit_gym.diffusion import build_backbone, load_backbone, save_backbone
from refit_gym.envs.batched import BatchedDenoisingEnv

T, N_ENVS = 5, 16


@pytest.fixture(scope="module")
def data():
    return make_synthetic(n_users=64, n_items=120, seed=0)


@pytest.fixture(scope="module")
def backbone(data):
    torch.manual_seed(0)
    return build_backbone("diffrec", data, hidden=[32], schedule=dict(steps=T)).eval()


@pytest.fixture
def env(data, backbone):
    return BatchedDenoisingEnv(data, backbone, n_envs=N_ENVS, seed=0)


def weights(module: torch.nn.Module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def same_weights(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def deterministic_rollout(model_or_policy, env):
    """Final x_0 ``(n_envs, D)`` of a deterministic rollout through the numpy VecEnv API, and the
    first observation (the env auto-resets after the terminal step)."""
    first = obs = env.reset()
    for _ in range(T):
        action, _ = model_or_policy.predict(obs, deterministic=True)
        obs, _, dones, _ = env.step(action)
    assert dones.all()
    return action, first


# ---------------------------------------------------------------------------- the policy
def test_log_prob_is_the_closed_form_gaussian_density():
    torch.manual_seed(1)
    B, D = 3, 7
    mean, std, a = torch.randn(B, D), torch.rand(B, 1) + 0.1, torch.randn(B, D)
    exact = torch.distributions.Normal(mean, std.expand(B, D)).log_prob(a).sum(-1)
    dist = DenoiserGaussian(D, "sum").proba_distribution(mean, std)
    torch.testing.assert_close(dist.log_prob(a), exact)
    torch.testing.assert_close(DenoiserGaussian(D, "mean").proba_distribution(mean, std).log_prob(a), exact / D)
    closed = -((a - mean) ** 2).sum(-1) / (2 * std[:, 0] ** 2) - D * torch.log(std[:, 0]) - D / 2 * math.log(2 * math.pi)
    torch.testing.assert_close(dist.log_prob(a), closed)
    ref = torch.randn(B, D)
    torch.testing.assert_close(dist.kl_to_mean(ref), ((mean - ref) ** 2).sum(-1) / (2 * std[:, 0] ** 2))
    # inactive rows: deterministic, zero log-prob and entropy
    frozen = DenoiserGaussian(D).proba_distribution(mean, std, torch.tensor([True, False, True]))
    assert torch.equal(frozen.sample()[1], mean[1]) and frozen.log_prob(a)[1] == 0 and frozen.entropy()[1] == 0


def test_policy_keeps_pretrained_weights_and_reproduces_backbone_inference(env, backbone):
    model = RatioLoggingPPO(DenoiserPolicy, env, n_steps=T, batch_size=40, policy_kwargs=dict(backbone=backbone), seed=0)
    assert same_weights(weights(model.policy.denoiser), weights(backbone))  # ortho_init never touched it
    groups = {g["name"]: g for g in model.policy.optimizer.param_groups}
    denoiser_ids = {id(p) for p in model.policy.denoiser.parameters()}
    assert denoiser_ids == {id(p) for p in groups["denoiser"]["params"]}
    assert not denoiser_ids & {id(p) for p in groups["value"]["params"]}

    x0, first = deterministic_rollout(model, env)
    condition, users = torch.as_tensor(first["condition"]), torch.as_tensor(first["user"][:, 0])
    expected = backbone.infer(condition, users, deterministic=True)
    np.testing.assert_array_equal(x0, expected.numpy())


def test_train_last_k_freezes_early_steps(env, backbone):
    policy = A2C(DenoiserPolicy, env, policy_kwargs=dict(backbone=backbone, train_last_k=2)).policy
    obs = {k: torch.as_tensor(v) for k, v in env.reset().items()}
    actions, _, log_prob = policy(obs)  # t = T > 2: deterministic, log-prob 0
    dist = policy.get_distribution(obs)
    assert torch.equal(actions, dist.mean) and torch.all(log_prob == 0) and not dist.mean.requires_grad
    obs["t"][:8] = 1  # a mixed batch: gradients reach the denoiser through the active rows only
    dist = policy.get_distribution(obs)
    grad_frozen = torch.autograd.grad(dist.mean[8:].sum(), list(policy.denoiser.parameters()), allow_unused=True,
                                      retain_graph=True)
    assert all(g is None or torch.all(g == 0) for g in grad_frozen)
    grad_active = torch.autograd.grad(dist.mean[:8].sum(), list(policy.denoiser.parameters()), allow_unused=True)
    assert any(g is not None and torch.any(g != 0) for g in grad_active)


def test_lr_scale_survives_sb3_learning_rate_updates(env, backbone):
    model = A2C(DenoiserPolicy, env, n_steps=T, learning_rate=1e-3,
                policy_kwargs=dict(backbone=backbone, denoiser_lr_scale=0.0))
    before = weights(model.policy.denoiser)
    model.learn(2 * T * N_ENVS)
    assert same_weights(before, weights(model.policy.denoiser))  # lr 0 for the denoiser: frozen


# ---------------------------------------------------------------------------- short learning runs
@pytest.mark.parametrize("algo", ["ppo", "a2c", "refit", "ddpo"])
def test_short_learn_updates_the_denoiser(algo, env, backbone):
    before = weights(backbone)
    if algo in ("ppo", "a2c"):
        extra = dict(n_steps=T, batch_size=40, n_epochs=2) if algo == "ppo" else dict(n_steps=T)
        model = ALGOS[algo](DenoiserPolicy, env, learning_rate=1e-3, seed=0, policy_kwargs=dict(
            backbone=backbone, log_prob_reduction="mean"), **extra)
    else:
        model = ALGOS[algo](backbone, env, learning_rate=1e-3, n_traj_per_user=4, kl_coef=0.1, seed=0, batch_size=32)
    model.learn(2 * T * N_ENVS)
    assert model.num_timesteps == 2 * T * N_ENVS
    assert not same_weights(before, weights(model.policy.denoiser))
    assert same_weights(before, weights(backbone))  # the caller's backbone is never trained in place
    assert all(torch.isfinite(p).all() for p in model.policy.parameters())


def test_refit_callbacks_and_value_baseline(env, backbone):
    calls = []

    class Recorder(BaseCallback):
        def _on_training_start(self): calls.append("start")
        def _on_rollout_start(self): calls.append("rollout_start")
        def _on_step(self): calls.append("step"); return True
        def _on_rollout_end(self): calls.append("rollout_end")
        def _on_training_end(self): calls.append("end")

    model = ReFiT(backbone, env, baseline="value", n_traj_per_user=1, train_last_k=2, seed=0)
    model.learn(T * N_ENVS, callback=Recorder())
    assert calls == ["start", "rollout_start"] + ["step"] * T + ["rollout_end", "end"]
    recorder = Recorder()
    recorder.init_callback(model)
    traj = model.collect_trajectories(recorder)
    assert traj.xs.shape == (3, N_ENVS, backbone.action_dim) and traj.t.tolist() == [2, 1]


def test_group_copies_share_user_and_condition(env, backbone):
    model = ReFiT(backbone, env, n_traj_per_user=4, seed=0)
    _, callback = model._setup_learn(1, None)
    traj = model.collect_trajectories(callback)
    users, cond = traj.users.view(-1, 4), traj.condition.view(-1, 4, traj.condition.shape[-1])
    assert torch.all(users == users[:, :1]) and torch.equal(cond, cond[:, :1].expand_as(cond))
    adv = model.compute_advantages(traj)[0].view(-1, 4)
    torch.testing.assert_close(adv.mean(1), torch.zeros(adv.shape[0]), atol=1e-5, rtol=0)


class _KLOffWithReference(float):
    """A kl_coef of 0 that still passes ``kl_coef > 0``: the former behaviour (reference run, KL weighted by 0)."""

    def __gt__(self, other):
        return True


@pytest.mark.parametrize("algo", ["refit", "ddpo"])
def test_kl_off_skips_the_reference_with_identical_updates(algo, data, backbone):
    runs = {}
    for name, coef in (("skip", 0.0), ("former", _KLOffWithReference(0.0))):
        env = BatchedDenoisingEnv(data, backbone, n_envs=N_ENVS, seed=0)
        model = ALGOS[algo](backbone, env, learning_rate=1e-3, n_traj_per_user=4, seed=0, batch_size=32)
        model.kl_coef = coef
        ref_calls = []
        reverse_step = model.reference.reverse_step
        model.reference.reverse_step = lambda *a, **k: ref_calls.append(1) or reverse_step(*a, **k)
        model.learn(2 * T * N_ENVS, log_interval=None)  # no dump: the last recorded values stay readable
        runs[name] = (weights(model.policy), len(ref_calls), dict(model.logger.name_to_value))
    (w_skip, calls_skip, log_skip), (w_former, calls_former, log_former) = runs["skip"], runs["former"]
    assert calls_skip == 0 and calls_former == 2 * T  # T trained steps per rollout, 2 rollouts
    assert same_weights(w_skip, w_former)
    assert "train/kl" not in log_skip and "train/kl" in log_former
    assert log_skip["train/loss"] == log_former["train/loss"]


# ---------------------------------------------------------------------------- save, load, resume, NaN
@pytest.mark.parametrize("algo", ["refit", "ddpo"])
def test_save_load_round_trip_and_bitwise_resume(algo, env, backbone, data, tmp_path):
    cls = ALGOS[algo]
    kwargs = dict(learning_rate=1e-3, n_traj_per_user=4, kl_coef=0.05, seed=3, batch_size=32)
    straight = cls(backbone, env, **kwargs).learn(4 * T * N_ENVS)

    half = cls(backbone, env, **kwargs).learn(2 * T * N_ENVS)
    half.save(tmp_path / "half.zip")
    loaded = cls.load(tmp_path / "half.zip", env=BatchedDenoisingEnv(data, backbone, n_envs=N_ENVS, seed=99))
    assert same_weights(weights(loaded.policy), weights(half.policy))
    obs = env.reset()
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], half.predict(obs, deterministic=True)[0])
    assert loaded.num_timesteps == 2 * T * N_ENVS

    loaded.learn(2 * T * N_ENVS, reset_num_timesteps=False)
    assert loaded.num_timesteps == straight.num_timesteps
    assert same_weights(weights(loaded.policy), weights(straight.policy))
    assert same_weights(weights(loaded.reference), weights(backbone))
    opt_a, opt_b = loaded.policy.optimizer.state_dict(), straight.policy.optimizer.state_dict()
    for k in opt_a["state"]:
        assert all(torch.equal(opt_a["state"][k][n], opt_b["state"][k][n]) for n in opt_a["state"][k])


def test_nan_loss_stops_training_and_keeps_last_good_checkpoint(env, backbone, tmp_path, monkeypatch):
    model = ReFiT(backbone, env, learning_rate=1e-3, seed=0)

    class SaveEachRollout(BaseCallback):
        def _on_rollout_start(self):
            self.model.save(tmp_path / "last.zip")

        def _on_step(self):
            return True

    model.learn(2 * T * N_ENVS, callback=SaveEachRollout())
    good = weights(model.policy)
    evaluate_rows = ReFiT.evaluate_rows

    def poisoned(self, rows):
        log_prob, kl, values = evaluate_rows(self, rows)
        return log_prob * float("nan"), kl, values

    monkeypatch.setattr(ReFiT, "evaluate_rows", poisoned)
    with pytest.raises(NonFiniteTrainingError, match="non-finite loss at update 3"):
        model.learn(2 * T * N_ENVS, callback=SaveEachRollout(), reset_num_timesteps=False)
    assert same_weights(good, weights(model.policy))  # no step was taken with the bad gradient
    saved = ReFiT.load(tmp_path / "last.zip")
    assert same_weights(good, weights(saved.policy))


def test_sb3_policy_save_load_and_export(env, backbone, data, tmp_path):
    model = RatioLoggingPPO(DenoiserPolicy, env, n_steps=T, batch_size=40, learning_rate=1e-3, seed=0,
                            policy_kwargs=dict(backbone=backbone, log_prob_reduction="mean"))
    model.learn(T * N_ENVS)
    model.save(tmp_path / "ppo.zip")
    loaded = RatioLoggingPPO.load(tmp_path / "ppo.zip", env=env)
    obs = env.reset()
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0])
    model.policy.export_backbone(tmp_path / "tuned.pt", meta=dict(n_users=data.n_users))
    tuned, _ = load_backbone(tmp_path / "tuned.pt", data)
    assert same_weights(weights(tuned), weights(model.policy.denoiser))


# ---------------------------------------------------------------------------- scripts/train.py
def test_train_script_end_to_end_and_resume(tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    try:
        import train
    finally:
        sys.path.pop(0)
    from refit_gym.data import load_dataset

    data = load_dataset("synthetic")
    torch.manual_seed(0)
    tiny = build_backbone("diffrec", data, hidden=[32], schedule=dict(steps=T)).eval()
    ckpt = save_backbone(tiny, tmp_path / "backbone.pt", meta=dict(n_users=data.n_users))
    hp = tmp_path / "hp.yml"
    hp.write_text("refit_gym/DiffRec-v0:\n  n_envs: 16\n  n_timesteps: 320\n  learning_rate: 0.001\n"
                  "  n_traj_per_user: 4\n  policy_kwargs: \"dict(std_floor=0.0)\"\n")
    common = ["--algo", "refit", "--data", "synthetic", "--checkpoint", str(ckpt), "--hyperparams", str(hp),
              "--eval-freq", "160", "--save-freq", "160"]
    straight = train.main(common + ["--out", str(tmp_path / "a")])
    assert straight["num_timesteps"] == 320 and {"pretrained", "final", "best"} <= set(straight)
    assert {"recall@20", "ndcg@20"} <= set(straight["best"]["valid"]) and (tmp_path / "a" / "best.pt").is_file()
    assert json.loads((tmp_path / "a" / "metrics.json").read_text())["selected_on"] == "valid recall@20"

    train.main(common + ["--out", str(tmp_path / "b"), "-n", "160"])
    resumed = train.main(common + ["--out", str(tmp_path / "b"), "--resume"])
    assert resumed["num_timesteps"] == 320
    a, _ = load_backbone(tmp_path / "a" / "final.pt")
    b, _ = load_backbone(tmp_path / "b" / "final.pt")
    assert same_weights(weights(a), weights(b))


def test_finetune_start_competes_for_the_best_model(tmp_path):
    """With a zero learning rate no validation beats the start (strictly), so the pretrained backbone is the
    selected model: best == pretrained, selected at step 0, and its test metrics are not recomputed."""
    from agents.finetune import finetune
    from refit_gym.data import load_dataset

    data = load_dataset("synthetic")
    torch.manual_seed(0)
    tiny = build_backbone("diffrec", data, hidden=[32], schedule=dict(steps=T)).eval()
    ckpt = save_backbone(tiny, tmp_path / "backbone.pt", meta=dict(n_users=data.n_users))
    m = finetune("refit", "refit_gym/DiffRec-v0", data, ckpt, hyperparams=dict(n_envs=16, n_timesteps=16 * T * 2,
                 learning_rate=0.0), out=tmp_path / "run", eval_freq=16 * T, log=lambda msg: None)
    assert m["best"]["num_timesteps"] == 0 and m["best"]["test"] == m["pretrained"]["test"]
    assert m["final"]["valid"] == m["pretrained"]["valid"]
    b, _ = load_backbone(tmp_path / "run" / "best.pt")
    assert same_weights(weights(b), weights(tiny))
