"""Timestep respacing (``inference_steps = K``): the reverse chain runs K evenly spaced steps of the T training steps,
with the schedule recomputed from the kept alpha-bars and the denoiser called with the training indices."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import tiny_diffrec, walks
from refit_gym.diffusion.checkpoint import CheckpointError, build_from_config, load_backbone, read_checkpoint, save_backbone
from refit_gym.diffusion.dreamrec import DreamRecAdapter
from refit_gym.diffusion.schedule import GaussianDiffusion, ScheduleConfig, respaced_timesteps
from refit_gym.envs.core import start_seed
from refit_gym.envs.factory import make_batched_env

torch.set_num_threads(1)
T = 12
N_ENVS = 8
SEQ_KW = dict(d=8, hidden=[16], n_layers=1, schedule=dict(noise_schedule="cosine", steps=T, mean_type="x0"))


@pytest.fixture(scope="module")
def seq():
    return walks()


def dreamrec(data, inference_steps=None, seed=0) -> DreamRecAdapter:
    torch.manual_seed(seed)
    adapter = DreamRecAdapter.from_data(data, **SEQ_KW).eval()
    return adapter if inference_steps is None else adapter.set_inference_steps(inference_steps)


def conditions(adapter, data, n=N_ENVS):
    from refit_gym.data.dataset import as_interactions

    users = np.arange(n)
    cond = adapter.encode_condition(users, as_interactions(data).train[users])
    return torch.as_tensor(cond), torch.as_tensor(users)


# ---------------------------------------------------------------------------------------------- the schedule
@pytest.mark.parametrize("cfg", [dict(noise_schedule="cosine", steps=T), dict(steps=T, mean_type="eps"),
                                 dict(noise_schedule="linear", steps=T, sampling_steps=3)])
def test_k_equal_t_is_the_full_chain(cfg):
    full, same = GaussianDiffusion(ScheduleConfig(**cfg)), GaussianDiffusion(ScheduleConfig(**cfg, inference_steps=T))
    assert not same.respaced and same.chain_steps == full.chain_steps == T
    np.testing.assert_array_equal(same.timesteps, np.arange(T))
    for name in full._np:
        np.testing.assert_array_equal(same.chain_table(name), full.table(name))
    i = torch.arange(T)
    assert same.model_index(i) is i


@pytest.mark.parametrize("schedule", ["cosine", "linear-var", "linear"])
@pytest.mark.parametrize("k", [1, 2, 5, T - 1])
def test_respaced_tables_satisfy_the_alpha_bar_identities(schedule, k):
    full = GaussianDiffusion(ScheduleConfig(noise_schedule=schedule, steps=T))
    r = GaussianDiffusion(ScheduleConfig(noise_schedule=schedule, steps=T, inference_steps=k))
    tau = r.timesteps
    assert r.respaced and r.chain_steps == len(tau) == k and tau[-1] == T - 1 and (k == 1 or tau[0] == 0)
    assert np.all(np.diff(tau) > 0)
    np.testing.assert_array_equal(tau, respaced_timesteps(T, k))
    abar, prev = r.chain_table("alphas_cumprod"), r.chain_table("alphas_cumprod_prev")
    np.testing.assert_allclose(abar, full.table("alphas_cumprod")[tau], rtol=1e-9)  # abar'_k = abar(tau_k)
    np.testing.assert_allclose(prev[1:], abar[:-1], rtol=1e-9) and np.testing.assert_equal(prev[0], 1.0)
    np.testing.assert_allclose(r.chain_table("betas"), 1 - abar / prev, rtol=1e-9)  # beta'_k = 1 - abar'_k/abar'_{k-1}
    # the posterior q(x_{k-1} | x_k, x0) keeps the marginals: mean sqrt(abar'_{k-1}) x0, variance 1 - abar'_{k-1}
    c1, c2 = r.chain_table("posterior_mean_coef1"), r.chain_table("posterior_mean_coef2")
    np.testing.assert_allclose(c1 + c2 * np.sqrt(abar), np.sqrt(prev), rtol=1e-10)
    np.testing.assert_allclose(r.chain_table("posterior_variance") + c2 ** 2 * (1 - abar), 1 - prev, atol=1e-12)
    # training keeps the full schedule
    for name in full._np:
        np.testing.assert_array_equal(r.table(name), full.table(name))


def test_inference_steps_out_of_range_or_not_an_integer_is_refused():
    for bad in (0, -1, T + 1, 2.5, True, "4"):
        with pytest.raises(ValueError, match="inference_steps"):
            ScheduleConfig(steps=T, inference_steps=bad)
    assert "inference_steps" not in ScheduleConfig(steps=T).to_dict()  # checkpoints of the full chain are unchanged
    assert ScheduleConfig(**ScheduleConfig(steps=T, inference_steps=3).to_dict()).inference_steps == 3


# ---------------------------------------------------------------------------------------------- the adapters
@pytest.mark.parametrize("kind", ["diffrec", "dreamrec"])
def test_k_equal_t_reproduces_the_current_chain_exactly(kind, data, seq):
    make = (lambda: tiny_diffrec(data, 16, T)) if kind == "diffrec" else (lambda: dreamrec(seq))
    a, b = make(), make().set_inference_steps(T)
    cond, users = conditions(a, data if kind == "diffrec" else seq)
    for deterministic in (True, False):
        got = [m.infer(cond, users, deterministic, torch.Generator().manual_seed(1)) for m in (a, b)]
        assert torch.equal(got[0], got[1])


@pytest.mark.parametrize("kind", ["diffrec", "dreamrec"])
def test_denoiser_sees_training_indices_and_the_chain_runs_k_steps(kind, data, seq):
    k = 4
    adapter = tiny_diffrec(data, 16, T) if kind == "diffrec" else dreamrec(seq)
    adapter.set_inference_steps(k)
    seen = []
    denoise = adapter.denoise
    adapter.denoise = lambda x, i, ctx: seen.append(i.unique().tolist()) or denoise(x, i, ctx)
    cond, users = conditions(adapter, data if kind == "diffrec" else seq)
    adapter.infer(cond, users)
    assert seen == [[int(t)] for t in adapter.schedule.timesteps[::-1]] and len(seen) == k


def test_diffrec_noisy_start_runs_k_steps(data):
    torch.manual_seed(0)
    from refit_gym.diffusion import build_backbone

    adapter = build_backbone("diffrec", data, hidden=[16], schedule=dict(steps=T, sampling_steps=5)).eval()
    adapter.set_inference_steps(3)
    assert adapter.schedule.chain_steps == adapter.inference_steps == 3
    cond, users = conditions(adapter, data)
    assert torch.isfinite(adapter.infer(cond, users, generator=torch.Generator().manual_seed(0))).all()
    with pytest.raises(ValueError, match="inference_steps=13"):
        adapter.set_inference_steps(T + 1)
    assert adapter.schedule.chain_steps == 3  # a refused value leaves the adapter as it was


def test_checkpoint_round_trip_keeps_k(tmp_path, data, seq):
    for adapter in (tiny_diffrec(data, 16, T), dreamrec(seq)):
        plain = save_backbone(adapter, tmp_path / f"{adapter.backbone_name}.pt")
        assert "inference_steps" not in read_checkpoint(plain)["config"]["schedule"]
        assert load_backbone(plain)[0].schedule.chain_steps == T
        path = save_backbone(adapter.set_inference_steps(5), tmp_path / f"{adapter.backbone_name}-5.pt")
        assert read_checkpoint(path)["config"]["schedule"]["inference_steps"] == 5
        loaded, _ = load_backbone(path)
        assert loaded.schedule.chain_steps == 5 and loaded.schedule.steps == T
        np.testing.assert_array_equal(loaded.schedule.timesteps, adapter.schedule.timesteps)
        cond, users = conditions(adapter, data if adapter.backbone_name == "diffrec" else seq)
        got = [m.infer(cond, users, generator=torch.Generator().manual_seed(0)) for m in (loaded, adapter)]
        assert torch.equal(*got)
        bad = dict(adapter.config(), schedule=dict(adapter.config()["schedule"], inference_steps=T + 1))
        with pytest.raises(CheckpointError, match="inference_steps"):
            build_from_config(adapter.backbone_name, bad, "x.pt")


# ---------------------------------------------------------------------------------------------- environments
def test_respaced_episode_has_k_steps_and_ends_at_the_backbones_inference(seq):
    from agents import DenoiserPolicy, ReFiT

    k = 4
    env = make_batched_env("dreamrec", seq, n_envs=N_ENVS, checkpoint="untrained", backbone_kwargs=SEQ_KW,
                           reward="refit-seq", seed=0, inference_steps=k)
    assert env.process.T == k and int(env.observation_space["t"].high[0]) == k
    model = ReFiT(DenoiserPolicy, env, policy_kwargs=dict(backbone=env.adapter), seed=0)
    obs = first = env.reset()
    keys = env.process.state.keys.copy()
    steps = 0
    while True:
        action, _ = model.predict(obs, deterministic=True)
        obs, _, dones, _ = env.step(action)
        steps += 1
        if dones.all():
            break
    assert steps == k
    cond, users = torch.as_tensor(first["condition"]), torch.as_tensor(first["user"][:, 0])
    expected = dreamrec(seq, k).infer(cond, users, deterministic=True,  # a separately built K-step backbone
                                      generator=torch.Generator().manual_seed(start_seed(keys)))
    got = env.adapter.scores(torch.as_tensor(action), env.adapter.context(cond, users))
    torch.testing.assert_close(got, expected)


def test_env_kwarg_reaches_gymnasium_make_and_refuses_bad_k(seq):
    import gymnasium

    env = gymnasium.make("refit_gym/DreamRec-v0", data=seq, checkpoint="untrained", backbone_kwargs=SEQ_KW,
                         inference_steps=3)
    assert env.unwrapped.process.T == 3 and env.unwrapped.adapter.schedule.steps == T
    # rl-zoo3's way (--env-kwargs inference_steps:3, DenoiserPolicy without a checkpoint): the environment's backbone
    from stable_baselines3.common.env_util import make_vec_env

    from agents import DenoiserPolicy, SafeA2C

    venv = make_vec_env("refit_gym/DreamRec-v0", n_envs=2, env_kwargs=dict(
        data="synthetic-seq", checkpoint="untrained", backbone_kwargs=SEQ_KW, inference_steps=3))
    model = SafeA2C(DenoiserPolicy, venv, n_steps=3, seed=0)
    assert model.policy.steps == 3 and model.policy.denoiser.schedule.steps == T
    model.learn(6)
    for bad in (0, T + 1):
        with pytest.raises(ValueError, match=f"inference_steps={bad}"):
            make_batched_env("dreamrec", seq, n_envs=2, checkpoint="untrained", backbone_kwargs=SEQ_KW,
                             inference_steps=bad)


def test_policy_needs_the_environments_chain(tmp_path, seq):
    from agents import DenoiserPolicy, ReFiT

    ckpt = save_backbone(dreamrec(seq), tmp_path / "b.pt", meta=dict(n_users=seq.n_users))
    env = make_batched_env("dreamrec", seq, n_envs=N_ENVS, checkpoint=ckpt, reward="refit-seq", inference_steps=3)
    with pytest.raises(ValueError, match="inference_steps"):
        ReFiT(str(ckpt), env, seed=0)
    model = ReFiT(DenoiserPolicy, env, policy_kwargs=dict(checkpoint=str(ckpt), inference_steps=3), seed=0)
    assert model.policy.steps == 3 and model.policy.denoiser.schedule.steps == T


@pytest.mark.parametrize("algo", ["pathwise", "refit"])
def test_agents_update_on_a_respaced_environment(algo, seq):
    from agents import Pathwise, ReFiT

    k = 3
    env = make_batched_env("dreamrec", seq, n_envs=N_ENVS, checkpoint="untrained", backbone_kwargs=SEQ_KW,
                           reward="refit-seq", seed=0, inference_steps=k)
    before = {n: p.clone() for n, p in env.adapter.named_parameters()}
    cls = {"pathwise": Pathwise, "refit": ReFiT}[algo]
    model = cls(env.adapter, env, seed=0, learning_rate=1e-2, n_traj_per_user=2, kl_coef=0.1, device="cpu")
    assert model.policy.steps == model.reference.schedule.chain_steps == k
    model.learn(N_ENVS * k)
    assert model.num_timesteps == N_ENVS * k
    after = dict(model.policy.denoiser.named_parameters())
    assert any(not torch.equal(before[n], after[n]) for n in before)
    assert model.policy.denoiser.config()["schedule"]["inference_steps"] == k  # what export_backbone writes


def test_finetune_with_inference_steps_exports_the_respaced_chain(tmp_path, seq):
    from refit_gym.experiments.finetune import finetune

    ckpt = save_backbone(dreamrec(seq), tmp_path / "b.pt", meta=dict(n_users=seq.n_users))
    for algo, extra in (("pathwise", {}), ("ppo", dict(n_steps=3, batch_size=24))):
        m = finetune(algo, "refit_gym/DreamRec-v0", seq, ckpt, hyperparams=dict(n_envs=8, n_timesteps=8 * 3, **extra),
                     out=tmp_path / algo, select_metric="ndcg@20", log=lambda s: None, inference_steps=3)
        assert m["inference_steps"] == 3 and m["num_timesteps"] == 8 * 3
        for name in ("best.pt", "final.pt"):
            assert read_checkpoint(tmp_path / algo / name)["config"]["schedule"]["inference_steps"] == 3


def test_evaluate_script_takes_inference_steps(tmp_path, seq):
    import importlib.util

    from conftest import REPO, tiny_seq_folder

    folder = tiny_seq_folder(tmp_path, seq)
    from refit_gym.data import load_dataset

    data = load_dataset(str(folder))
    ckpt = save_backbone(dreamrec(data), tmp_path / "b.pt", meta=dict(n_users=data.n_users))
    spec = importlib.util.spec_from_file_location("evaluate_script", REPO / "scripts" / "evaluate.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    base = ["--checkpoint", str(ckpt), "--data", str(folder), "--no-progress"]
    assert script.main(base)["params"] == {}
    assert script.main(base + ["--inference-steps", "4"])["params"] == {"inference_steps": 4}
    with pytest.raises(SystemExit, match="inference-steps"):
        script.main(base + ["--inference-steps", str(T + 1)])


def test_command_line_pretrain_train_evaluate_run_one_chain(tmp_path, capsys):
    """``pretrain --inference-steps`` records K in the checkpoint; ``train`` runs the checkpoint's K (or its own
    ``--inference-steps``, kept by ``--resume``) and exports it; ``evaluate`` reads it back."""
    import json

    from refit_gym import cli

    pre, hp = tmp_path / "pre", tmp_path / "hp.yml"
    assert cli.main(["pretrain", "--data", "synthetic", "--epochs", "1", "--hidden", "16", "--steps", "6",
                     "--inference-steps", "3", "--out", str(pre), "--device", "cpu", "--no-progress"]) == 0
    assert read_checkpoint(pre / "best.pt")["config"]["schedule"]["inference_steps"] == 3
    hp.write_text("refit_gym/DiffRec-v0:\n  n_envs: 16\n")
    for k, flags in ((3, []), (2, ["--inference-steps", "2"])):
        run = tmp_path / f"run{k}"
        assert cli.main(["train", "--checkpoint", str(pre / "best.pt"), "--out", str(run), "-n", str(16 * k),
                         "--hyperparams", str(hp), "--no-progress", "--json", *flags]) == 0
        metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert metrics["inference_steps"] == k and metrics["num_timesteps"] == 16 * k
        assert read_checkpoint(run / "best.pt")["config"]["schedule"]["inference_steps"] == k
        assert cli.main(["evaluate", "--checkpoint", str(run / "best.pt"), "--data", "synthetic", "--json"]) == 0
        assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["params"]["inference_steps"] == k
    assert json.loads((tmp_path / "run2" / "run.json").read_text())["inference_steps"] == 2
    assert cli.main(["train", "--out", str(tmp_path / "run2"), "--resume", "--inference-steps", "3"]) == 2
    assert "--inference-steps" in capsys.readouterr().err
