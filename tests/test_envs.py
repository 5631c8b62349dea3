"""The denoising MDP environments: checkers, seeding, batched == single, errors, SB3 integration."""
from __future__ import annotations

import subprocess
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import refit_gym  # noqa: F401  (registers the ids)
from refit_gym.data.synthetic import make_synthetic
from refit_gym.diffusion.adapters import DenoiserAdapter, build_backbone
from refit_gym.diffusion.checkpoint import CheckpointError, save_backbone
from refit_gym.diffusion.schedule import ScheduleConfig
from refit_gym.envs import BatchedDenoisingEnv, DenoisingEnv, DenoisingVectorEnv

T = 5
SMALL = {
    "refit_gym/DiffRec-v0": {"hidden": [32], "schedule": {"steps": T}},
    "refit_gym/CFDiff-v0": {"d_model": 16, "heads": 2, "emb_size": 8, "schedule": {"steps": T}},
}
# Both checkers advise a [-1, 1] action Box; the action space is the backbone's raw x space on purpose
# (see DenoisingEnv's docstring), so these two warnings are expected and nothing else is allowed.
EXPECTED = ("symmetric and normalized",)


@pytest.fixture(scope="module")
def data():
    return make_synthetic(n_users=60, n_items=40, seed=0, density=0.2, social=True)


@pytest.fixture(scope="module")
def adapter(data):
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return build_backbone("diffrec", data, hidden=[32], schedule={"steps": T}).eval()


def run_checkers(env):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gym_check_env(env, skip_render_check=True)  # the envs declare no render modes
        sb3_check_env(env)
    other = [str(w.message) for w in caught if not any(e in str(w.message) for e in EXPECTED)]
    assert not other, other


class LinearAdapter(DenoiserAdapter):
    """A tiny backbone unknown to refit-gym: x0_hat = W x + b, condition = visible items scaled to [0, 2]."""

    backbone_name = "test-linear"
    condition_bounds = (0.0, 2.0)

    def __init__(self, n_items: int):
        super().__init__(ScheduleConfig(steps=T), n_items, n_items, n_items)
        self.lin = torch.nn.Linear(n_items, n_items)

    def encode_condition(self, users, visible):
        return 2.0 * np.asarray(visible.toarray(), dtype=np.float32)

    def denoise(self, x, i, context):
        return self.lin(x)

    def start(self, condition, context, generator=None):
        return 0.5 * condition + 0.01 * torch.randn(condition.shape, generator=generator)

    def config(self):
        return {"n_items": self.n_items}


# ----------------------------------------------------------------------------- checkers
@pytest.mark.parametrize("env_id", sorted(SMALL))
def test_checkers_pass_for_registered_ids(env_id, data):
    env = gym.make(env_id, data=data, checkpoint="untrained", backbone_kwargs=SMALL[env_id])
    run_checkers(env.unwrapped)
    obs, _ = env.reset(seed=0)
    assert set(obs) == {"x", "t", "user", "condition"}
    assert obs["t"].dtype == np.int64 and obs["user"].dtype == np.int64 and obs["x"].dtype == np.float32
    assert isinstance(env.observation_space["user"], gym.spaces.Box)


def test_checkers_pass_for_a_custom_adapter(data):
    torch.manual_seed(0)
    env = DenoisingEnv(data, LinearAdapter(data.n_items), reward="topk")
    run_checkers(env)
    assert env.observation_space["condition"].high.max() == 2.0
    obs, _ = env.reset(seed=3)
    assert obs["condition"].max() == 2.0
    venv = BatchedDenoisingEnv(data, LinearAdapter(data.n_items), n_envs=3, seed=0)
    obs = venv.reset()
    assert obs["x"].shape == (3, data.n_items)


# ----------------------------------------------------------------------------- episodes and seeding
def test_episode_structure_and_reward_components(data, adapter):
    env = DenoisingEnv(data, adapter)
    obs, info = env.reset(seed=0, options={"user": 7})
    assert obs["user"][0] == 7 and obs["t"][0] == T and info["n_heldout"] >= 1
    for k in range(T):
        obs, r, term, trunc, info = env.step(obs["x"] + 0.1)
        assert obs["t"][0] == T - k - 1 and trunc is False
        if k < T - 1:
            assert r == 0.0 and not term and info == {}
    assert term and set(info["reward_components"]) == {"likelihood", "hop1", "hop2", "social"}
    assert r == pytest.approx(sum(info["reward_components"].values()), rel=1e-5)
    with pytest.raises(RuntimeError, match="terminated"):
        env.step(obs["x"])


def _rollout_single(data, adapter, seed, actions):
    env = DenoisingEnv(data, adapter)
    obs_log, rew_log = [], []
    obs, _ = env.reset(seed=seed)
    for ep in range(actions.shape[0]):
        if ep:
            obs, _ = env.reset()
        obs_log.append(obs)
        for k in range(T):
            obs, r, *_ = env.step(actions[ep, k])
            obs_log.append(obs)
            rew_log.append(r)
    return obs_log, np.array(rew_log)


def test_batched_equals_single_envs(data, adapter):
    n, seed, episodes = 3, 10, 2
    rng = np.random.default_rng(0)
    actions = rng.normal(0.3, 0.5, size=(n, episodes, T, data.n_items)).astype(np.float32)
    venv = BatchedDenoisingEnv(data, adapter, n_envs=n)
    venv.seed(seed)
    obs = venv.reset()
    b_obs, b_rew = [obs], []
    for ep in range(episodes):
        for k in range(T):
            obs, r, done, infos = venv.step(actions[:, ep, k])
            b_rew.append(r)
            b_obs.append({key: np.stack([i["terminal_observation"][key] for i in infos]) for key in obs} if done.all() else obs)
            if done.all() and ep < episodes - 1:
                b_obs.append(obs)  # the auto-reset observation of the next episode
    b_rew = np.stack(b_rew, 1)
    for k in range(n):
        s_obs, s_rew = _rollout_single(data, adapter, seed + k, actions[k])
        assert len(s_obs) == len(b_obs)
        for so, bo in zip(s_obs, b_obs):
            for key in so:
                np.testing.assert_array_equal(so[key], bo[key][k], err_msg=key)
        np.testing.assert_allclose(s_rew, b_rew[k], rtol=1e-6, atol=1e-7)
    assert b_rew[:, T - 1].any()  # the terminal rewards are not trivial


def test_vector_env_via_make_vec_matches_batched(data):
    kw = SMALL["refit_gym/DiffRec-v0"]
    venv = gym.make_vec("refit_gym/DiffRec-v0", num_envs=4, data=data, checkpoint="untrained", backbone_kwargs=kw)
    assert isinstance(venv.unwrapped, DenoisingVectorEnv)
    sync = BatchedDenoisingEnv(data, venv.unwrapped.batched.adapter, n_envs=4, seed=5)
    obs, _ = venv.reset(seed=5)
    obs_b = sync.reset()
    for key in obs:
        np.testing.assert_array_equal(obs[key], obs_b[key])
    for k in range(T):
        obs, r, term, trunc, info = venv.step(obs["x"])
        obs_b, r_b, done, infos = sync.step(obs_b["x"])
    assert term.all() and not trunc.any() and info["_final_obs"].all()
    np.testing.assert_array_equal(info["final_obs"]["t"], 0)
    np.testing.assert_allclose(r, r_b, rtol=1e-6)
    np.testing.assert_array_equal(obs["user"], obs_b["user"])  # same auto-reset draws


def test_heldout_items_never_visible(data, adapter):
    venv = BatchedDenoisingEnv(data, adapter, n_envs=16, seed=0)
    for _ in range(3):
        obs = venv.reset()
        state = venv.process.state
        held = state.heldout.toarray() > 0
        assert held.any()
        assert not (obs["condition"][held]).any()
        assert not (np.abs(obs["x"][held]) > 0).any()  # DiffRec starts from the condition
        # and the condition is exactly the visible training items
        np.testing.assert_array_equal(obs["condition"], state.visible.toarray())
        train = data.train[state.users].toarray()
        np.testing.assert_array_equal(held | (obs["condition"] > 0), train > 0)


def test_torch_fast_path(data, adapter):
    venv = BatchedDenoisingEnv(data, adapter, n_envs=4)
    obs = venv.reset_tensors(users=[1, 2, 3, 4], seed=0)
    assert all(isinstance(v, torch.Tensor) for v in obs.values())
    assert obs["user"].squeeze(1).tolist() == [1, 2, 3, 4]
    ctx = adapter.context(obs["condition"], obs["user"].squeeze(1))
    with torch.no_grad():
        for k in range(T):
            i = torch.full((4,), T - 1 - k, dtype=torch.long)
            mean, std = adapter.reverse_step(obs["x"], i, ctx)
            obs, r, term, info = venv.step_tensors(mean)
    assert term and r.shape == (4,) and set(info["reward_components"]) >= {"likelihood"}
    assert int(obs["t"][0]) == 0


def test_terminal_item_terms_on_demand(data, adapter):
    venv = BatchedDenoisingEnv(data, adapter, n_envs=4, reward="graph-score", reward_kwargs=dict(graph="cooc"))
    with pytest.raises(RuntimeError, match="before reset"):
        venv.terminal_item_terms()
    obs = venv.reset_tensors(seed=0)
    for k in range(T):
        with pytest.raises(RuntimeError, match=f"at t = {T - k}"):
            venv.terminal_item_terms()
        obs, r, term, info = venv.step_tensors(obs["x"] + 0.1 * torch.randn(obs["x"].shape))
    assert term and "item_terms" not in info  # the fast path's outputs are unchanged
    terms = venv.terminal_item_terms()
    assert terms.shape == (4, data.n_items)
    torch.testing.assert_close(terms.sum(1), r, rtol=1e-5, atol=1e-6)
    venv.reset_tensors()
    with pytest.raises(RuntimeError, match="terminal step"):
        venv.terminal_item_terms()
    # the single env has it too; a reward without per-item terms is named
    env = DenoisingEnv(data, adapter, reward="topk")
    obs, _ = env.reset(seed=0)
    for _ in range(T):
        obs, *_ = env.step(obs["x"])
    with pytest.raises(NotImplementedError, match="reward 'topk'"):
        env.terminal_item_terms()


# ----------------------------------------------------------------------------- errors
def test_bad_actions_raise(data, adapter):
    env = DenoisingEnv(data, adapter)
    obs, _ = env.reset(seed=0)
    x = obs["x"]
    for value, match in ((np.nan, "NaN value"), (np.inf, "infinite value"), (1e6, "out of bounds")):
        a = x.copy()
        a[3] = value
        with pytest.raises(ValueError, match=match):
            env.step(a)
    with pytest.raises(ValueError, match=r"action has shape \(39,\)"):
        env.step(x[:-1])
    with pytest.raises(ValueError, match="real-valued"):
        env.step(np.array(["a"] * data.n_items))
    assert env.process.t == T  # nothing was applied
    venv = BatchedDenoisingEnv(data, adapter, n_envs=2, seed=0)
    venv.reset()
    with pytest.raises(ValueError, match=r"actions have shape"):
        venv.step(np.zeros((3, data.n_items), dtype=np.float32))
    with pytest.raises(ValueError, match=r"NaN value nan at \[1, 0\]"):
        venv.step_tensors(torch.tensor([[0.0] * data.n_items, [float("nan")] * data.n_items]))


def test_bad_reset_options_raise(data, adapter):
    env = DenoisingEnv(data, adapter)
    with pytest.raises(ValueError, match=r"options\['user'\]=60 out of range \[0, 59\]"):
        env.reset(options={"user": 60})
    with pytest.raises(ValueError, match=r"out of range"):
        env.reset(options={"user": -1})
    with pytest.raises(TypeError, match="expected an integer user id"):
        env.reset(options={"user": 1.5})
    with pytest.raises(TypeError, match="expected an integer user id"):
        env.reset(options={"user": True})
    with pytest.raises(ValueError, match="unknown reset options"):
        env.reset(options={"users": [1]})
    venv = BatchedDenoisingEnv(data, adapter, n_envs=2)
    venv.set_options({"users": np.array([1, 99])})
    with pytest.raises(ValueError, match=r"users\[1\]=99 out of range"):
        venv.reset()
    venv.set_options({"users": np.array([1, 2, 3])})
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        venv.reset()
    venv.set_options([{"user": 4}, {"user": 5}])
    assert venv.reset()["user"].ravel().tolist() == [4, 5]
    with pytest.raises(TypeError, match=r"users\[0\]=0.5"):
        venv.reset_tensors(users=[0.5, None])


def test_construction_errors(data, adapter, tmp_path):
    with pytest.raises(ValueError, match="unknown reward"):
        DenoisingEnv(data, adapter, reward="nope")
    other = make_synthetic(n_users=30, n_items=25, seed=1)
    with pytest.raises(ValueError, match="ranks 40 items"):
        DenoisingEnv(other, adapter)
    path = save_backbone(adapter, tmp_path / "diffrec.pt")
    env = gym.make("refit_gym/DiffRec-v0", data=data, checkpoint=path)
    assert env.unwrapped.adapter.backbone_name == "diffrec"
    with pytest.raises(CheckpointError, match="expects a 'cfdiff' backbone"):
        gym.make("refit_gym/CFDiff-v0", data=data, checkpoint=path)


# ----------------------------------------------------------------------------- SB3 VecEnv API
def test_vecenv_api_and_sb3_training(data, adapter):
    from stable_baselines3 import PPO

    venv = BatchedDenoisingEnv(data, adapter, n_envs=4, seed=0)
    venv.reset()
    assert venv.env_is_wrapped(gym.Wrapper) == [False] * 4
    assert venv.get_attr("user", [0, 2]) == [int(venv.process.users[0]), int(venv.process.users[2])]
    assert all(isinstance(g, np.random.Generator) for g in venv.get_attr("np_random"))
    assert venv.get_attr("num_envs") == [4] * 4
    assert venv.env_method("has_attr", "num_envs", indices=[1]) == [True]
    venv.set_attr("np_random", np.random.default_rng(1), indices=2)
    with pytest.raises(ValueError, match="shared by all 4 slots"):
        venv.set_attr("foo", 1, indices=[0])
    model = PPO("MultiInputPolicy", venv, n_steps=T, batch_size=10, n_epochs=1, seed=0)
    model.learn(total_timesteps=2 * T * 4)
    venv.close()


def test_import_refit_gym_is_light():
    code = "import sys, refit_gym, gymnasium; assert 'torch' not in sys.modules; assert 'refit_gym/CFDiff-v0' in gymnasium.registry"
    subprocess.run([sys.executable, "-c", code], check=True)
