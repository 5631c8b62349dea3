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

from stable_baselines3.common.vec_env import VecMonitor

from agents import ALGOS, DDPO, DenoiserPolicy, NonFiniteTrainingError, RatioLoggingPPO, ReFiT
from agents.distributions import DenoiserGaussian
from refit_gym.experiments.hyperparams import split_hyperparams
from refit_gym.diffusion import load_backbone, save_backbone
from refit_gym.envs.batched import BatchedDenoisingEnv
from refit_gym.rewards import FunctionReward
from conftest import tiny_diffrec

T, N_ENVS = 5, 16


@pytest.fixture(scope="module")
def backbone(data):
    return tiny_diffrec(data, hidden=32, steps=T)


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
    # per-dimension weights (per-item credit): weights 1 give the log-density, inactive rows 0
    w = torch.randn(B, D)
    per_dim = torch.distributions.Normal(mean, std.expand(B, D)).log_prob(a)
    torch.testing.assert_close(dist.weighted_log_prob(a, w), (w * per_dim).sum(-1))
    torch.testing.assert_close(DenoiserGaussian(D, "mean").proba_distribution(mean, std).weighted_log_prob(a, w),
                               (w * per_dim).mean(-1))
    torch.testing.assert_close(dist.weighted_log_prob(a, torch.ones(B, D)), dist.log_prob(a))
    assert frozen.weighted_log_prob(a, w)[1] == 0


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


def test_group_advantage_keeps_the_reward_scale_without_normalisation(env, backbone):
    """normalize_advantage=False: the group advantage is R - mean over the user's copies (the reward's own scale),
    the default divides it by the copies' std; per-item advantages follow the same switch and still sum to it."""
    model = ReFiT(backbone, env, n_traj_per_user=4, seed=0, normalize_advantage=False)
    _, callback = model._setup_learn(1, None)
    traj = model.collect_trajectories(callback)
    R = traj.rewards.double().view(-1, 4)
    centred = (R - R.mean(1, keepdim=True)).float().reshape(1, -1)
    torch.testing.assert_close(model.compute_advantages(traj)[:1], centred, rtol=1e-5, atol=1e-6)
    model.normalize_advantage = True
    scaled = centred / (R.std(1, unbiased=False, keepdim=True).expand_as(R).float().reshape(1, -1) + 1e-8)
    torch.testing.assert_close(model.compute_advantages(traj)[:1], scaled, rtol=1e-4, atol=1e-5)


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


@pytest.mark.parametrize("algo", ["refit", "ddpo", "pathwise"])
def test_a_context_no_trained_parameter_reaches_is_the_environments(algo, data):
    """CF-Diff's hop signals depend on no trained parameter: after the first rollout (which finds that out) the agent
    reads the context its environment computed at the reset, for the rollout, the reference and the update, and its
    updates equal those of the former path, which computed it again for each of them and for the frozen steps' first
    copies."""
    from refit_gym.diffusion import CFDiffAdapter

    runs = {}
    for reuse in (True, False):
        torch.manual_seed(0)
        adapter = CFDiffAdapter.from_data(data, schedule=dict(steps=T), d_model=16, heads=2, top_m=10)
        env = BatchedDenoisingEnv(data, adapter, n_envs=N_ENVS, seed=0)
        kwargs = dict(n_traj_per_user=4, batch_size=32) if algo != "pathwise" else {}
        model = ALGOS[algo](adapter, env, learning_rate=1e-3, seed=0, kl_coef=0.1, train_last_k=2, **kwargs)
        if not reuse:
            model._ctx_trained = True  # as if a trained parameter reached it: computed wherever it is needed
        rows = []
        for m in (model.policy.denoiser, model.reference):  # count the rows of every context call
            m.context = lambda cond, *a, _c=m.context: rows.append(cond.shape[0]) or _c(cond, *a)
        model.learn(3 * T * N_ENVS)
        runs[reuse] = (weights(model.policy), rows)
    (w_reuse, rows_reuse), (w_former, rows_former) = runs[True], runs[False]
    users = N_ENVS // model.n_traj_per_user
    # learn()'s first reset (16 distinct users), then per rollout the environment's reset once per user; the first
    # rollout's agent computes it once more, to find out whether a trained parameter reaches it
    assert rows_reuse == [N_ENVS] + [users, users] + [users] * 2, rows_reuse
    assert len(rows_former) > len(rows_reuse) + 2
    assert same_weights(w_reuse, w_former)


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


# ---------------------------------------------------------------------------- per-item credit
G = 4  # copies per user in the per-item credit tests


def item_credit_model(data, backbone, reward="graph-score", **kwargs):
    env = BatchedDenoisingEnv(data, backbone, n_envs=N_ENVS, seed=0, reward=reward)
    return ReFiT(backbone, env, **{**dict(seed=0, credit="item", train_last_k=1, n_traj_per_user=G), **kwargs})


def linear_reward(data):
    """``R = sum_j w_j x0_j``: exactly separable, ``d E[R] / d theta = d (w . mu_theta) / d theta``."""
    w = torch.randn(data.n_items, generator=torch.Generator().manual_seed(1))
    return w, FunctionReward(data, item_f=lambda x, ctx: w * x, name="linear")


def flat_grad(params):
    return torch.cat([p.grad.reshape(-1) for p in params])


@pytest.fixture
def one_thread():
    """Single-threaded torch for the test (multithreaded float32 reductions change the summation order)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_item_credit_gradient_matches_hand_computation(data, backbone, reduction, one_thread):
    model = item_credit_model(data, backbone, log_prob_reduction=reduction, batch_size=5, kl_coef=0.0)  # 4 chunks
    _, callback = model._setup_learn(1, None)
    traj = model.collect_trajectories(callback)
    N, D = traj.n_traj, data.n_items
    assert traj.n_steps == 1 and traj.item_rewards.shape == (N, D)
    torch.testing.assert_close(traj.item_rewards.sum(1), traj.rewards, rtol=1e-5, atol=1e-5)
    params = list(model.policy.denoiser.parameters())
    model.policy.optimizer.zero_grad(set_to_none=True)
    totals, log_ratio = model.accumulate_gradients(traj)
    assert log_ratio.abs().max() < 1e-3  # recomputed in chunks: equal up to float rounding

    # by hand: A_nj = (r_nj - mean over the user's copies of r_j) / std over the copies of R
    r = traj.item_rewards.view(-1, G, D)
    R = traj.rewards.double().view(-1, G)
    adv = (r - r.mean(1, keepdim=True)) / (R.std(1, unbiased=False) + 1e-8).float().view(-1, 1, 1)
    adv = adv.reshape(N, D)
    # the item advantages split the trajectory advantage among the items
    torch.testing.assert_close(adv.sum(1), model.compute_advantages(traj)[0], rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(model.compute_item_advantages(traj), adv)
    t = torch.ones(N, dtype=torch.long)
    ctx = model.policy.denoiser.context(traj.condition, traj.users)
    mean, _ = model.policy.denoiser.reverse_step(traj.xs[0], t - 1, ctx)
    log_pi = torch.distributions.Normal(mean, model.policy.step_std(t)).log_prob(traj.xs[1])  # (N, D), per item
    loss = -(adv * log_pi).sum() / N / (D if reduction == "mean" else 1)
    expected = torch.autograd.grad(loss, params)
    for p, e in zip(params, expected):
        torch.testing.assert_close(p.grad, e, rtol=1e-4, atol=1e-6 * float(e.abs().max()))
    assert totals["policy_loss"] == pytest.approx(float(loss.detach()), rel=1e-4, abs=1e-6)
    assert totals["item_adv_std"] == pytest.approx(float(adv.std(unbiased=False)), rel=1e-5)


def test_item_credit_is_closer_to_the_exact_gradient(data, backbone):
    """A linear reward is exactly separable: both estimators are (up to a positive per-user scale) unbiased for
    ``d (w . mu) / d theta``, but the per-item one is far less noisy (D = 120 items, 16 trajectories)."""
    w, reward = linear_reward(data)
    cosines = {}
    for credit in ("trajectory", "item"):
        model = item_credit_model(data, backbone, reward=reward, credit=credit)
        _, callback = model._setup_learn(1, None)
        params = list(model.policy.denoiser.parameters())
        cos = []
        for _ in range(3):
            traj = model.collect_trajectories(callback)
            model.policy.optimizer.zero_grad(set_to_none=True)
            model.accumulate_gradients(traj)
            estimate = -flat_grad(params)  # the gradient of the loss descends; of the reward, ascends
            t = traj.t[0].expand(traj.n_traj)
            mean = model.policy.step_distribution(traj.xs[0], t, model.policy.denoiser.context(traj.condition, traj.users)).mean
            exact = torch.cat([g.reshape(-1) for g in torch.autograd.grad((mean * w).sum(), params)])
            cos.append(float(torch.nn.functional.cosine_similarity(estimate, exact, dim=0)))
        cosines[credit] = float(np.mean(cos))
    assert cosines["item"] > 0.7 and cosines["item"] > cosines["trajectory"] + 0.3, cosines  # measured 0.90 vs 0.27


def test_item_credit_learns_and_is_plain_hyperparameter(data, backbone):
    _, kwargs = split_hyperparams(dict(n_envs=N_ENVS, credit="item", train_last_k=1, n_traj_per_user=G,
                                       learning_rate=1e-3, reward_kwargs=dict(graph="cooc")))
    env = BatchedDenoisingEnv(data, backbone, n_envs=N_ENVS, seed=0, reward="graph-score", reward_kwargs=dict(graph="cooc"))
    model = ReFiT(backbone, env, seed=0, **kwargs)
    assert model.credit == "item"
    before = weights(model.policy.denoiser)
    model.learn(2 * T * N_ENVS, log_interval=None)
    assert not same_weights(before, weights(model.policy.denoiser))
    assert all(torch.isfinite(p).all() for p in model.policy.parameters())
    assert model.logger.name_to_value["train/item_adv_std"] > 0


@pytest.mark.parametrize("kwargs,match", [
    (dict(train_last_k=None), "credit='item' needs train_last_k=1 .got None"),
    (dict(train_last_k=2), "credit='item' needs train_last_k=1 .got 2"),
    (dict(reward="refit"), "reward 'refit' .* has no per-item terms"),
    (dict(reward="topk"), "reward 'topk'"),
    (dict(n_traj_per_user=1), "n_traj_per_user=1: need >= 2 copies per user for the group baseline"),
    (dict(baseline="value"), "credit='item' needs baseline='group'"),
    (dict(credit="items"), "credit='items'"),
])
def test_item_credit_refuses_bad_settings(data, backbone, kwargs, match):
    with pytest.raises(ValueError, match=match):
        item_credit_model(data, backbone, **kwargs)


def test_item_credit_errors(data, backbone):
    env = BatchedDenoisingEnv(data, backbone, n_envs=N_ENVS, seed=0, reward="graph-score")
    with pytest.raises(ValueError, match="BatchedDenoisingEnv passed directly"):
        ReFiT(backbone, VecMonitor(env), credit="item", train_last_k=1)
    with pytest.raises(ValueError, match="DDPO's clipped surrogate uses trajectory credit only"):
        DDPO(backbone, env, credit="item", train_last_k=1)
    # baseline "none" is meaningful per item (A_nj = r_nj) and needs no copies
    model = item_credit_model(data, backbone, baseline="none", n_traj_per_user=1)
    _, callback = model._setup_learn(1, None)
    traj = model.collect_trajectories(callback)
    assert torch.equal(model.compute_item_advantages(traj), traj.item_rewards)


def test_item_credit_save_load_and_bitwise_resume(data, backbone, tmp_path):
    kwargs = dict(learning_rate=1e-3, kl_coef=0.05, seed=3)
    straight = item_credit_model(data, backbone, **kwargs).learn(2 * T * N_ENVS)
    half = item_credit_model(data, backbone, **kwargs).learn(T * N_ENVS)
    half.save(tmp_path / "half.zip")
    assert ReFiT.load(tmp_path / "half.zip").credit == "item"
    loaded = ReFiT.load(tmp_path / "half.zip", env=BatchedDenoisingEnv(data, backbone, n_envs=N_ENVS, seed=9,
                                                                        reward="graph-score"))
    assert loaded.credit == "item" and loaded.baseline == "group"
    loaded.learn(T * N_ENVS, reset_num_timesteps=False)
    assert same_weights(weights(loaded.policy), weights(straight.policy))
    with pytest.raises(ValueError, match="reward 'refit'"):  # the checks run on load too
        ReFiT.load(tmp_path / "half.zip", env=BatchedDenoisingEnv(data, backbone, n_envs=N_ENVS, seed=9))


# ---------------------------------------------------------------------------- scripts/train.py
def test_train_script_end_to_end_and_resume(tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    try:
        import train
    finally:
        sys.path.pop(0)
    from refit_gym.data import load_dataset

    data = load_dataset("synthetic")
    tiny = tiny_diffrec(data, hidden=32, steps=T)
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
    resumed = train.main(common + ["--out", str(tmp_path / "b"), "--resume", "-n", "320"])  # -n is remembered
    assert resumed["num_timesteps"] == 320
    a, _ = load_backbone(tmp_path / "a" / "final.pt")
    b, _ = load_backbone(tmp_path / "b" / "final.pt")
    assert same_weights(weights(a), weights(b))


def test_finetune_start_competes_for_the_best_model(tmp_path):
    """With a zero learning rate no validation beats the start (strictly), so the pretrained backbone is the
    selected model: best == pretrained, selected at step 0, and its test metrics are not recomputed."""
    from refit_gym.experiments.finetune import finetune
    from refit_gym.data import load_dataset

    data = load_dataset("synthetic")
    tiny = tiny_diffrec(data, hidden=32, steps=T)
    ckpt = save_backbone(tiny, tmp_path / "backbone.pt", meta=dict(n_users=data.n_users))
    m = finetune("refit", "refit_gym/DiffRec-v0", data, ckpt, hyperparams=dict(n_envs=16, n_timesteps=16 * T * 2,
                 learning_rate=0.0), out=tmp_path / "run", eval_freq=16 * T, log=lambda msg: None)
    assert m["best"]["num_timesteps"] == 0 and m["best"]["test"] == m["pretrained"]["test"]
    assert m["final"]["valid"] == m["pretrained"]["valid"]
    b, _ = load_backbone(tmp_path / "run" / "best.pt")
    assert same_weights(weights(b), weights(tiny))
