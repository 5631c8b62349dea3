"""The registered ids with the ecosystem's own entry points: gym.make with defaults only, SB3's make_vec_env + PPO,
render modes, the default-backbone rule, the synthetic generators. Default backbones are pretrained for 1 epoch
into a per-session cache (the rule is under test here, not their quality)."""
from __future__ import annotations

import io
import warnings
from contextlib import redirect_stdout

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env as gym_check_env

import refit_gym  # noqa: F401  (registers the ids)
from refit_gym.data import SYNTHETIC_SPECS, DataError, load_dataset, make_synthetic_sequences
from refit_gym.data.synthetic_sequences import FOLLOW
from refit_gym.diffusion import CheckpointError
from refit_gym.envs import ENV_SPECS
from refit_gym.envs import defaults

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def default_cache(tmp_path_factory):
    """A fresh default-backbone cache for this module, with 1-epoch default backbones."""
    mp = pytest.MonkeyPatch()
    path = tmp_path_factory.mktemp("refit-gym-cache")
    mp.setenv("REFIT_GYM_CACHE", str(path))
    mp.setitem(defaults.DEFAULT_RECIPE, "epochs", 1)
    yield path
    mp.undo()


# ---------------------------------------------------------------------------------------------- synthetic data
@pytest.mark.parametrize("spec", sorted(SYNTHETIC_SPECS))
def test_every_synthetic_spec_loads_with_a_seed(spec):
    a, b, c = load_dataset(spec), load_dataset(f"{spec}:0"), load_dataset(f"{spec}:1")
    assert a.name == spec and a.n_users == 300 and a.n_items == 200
    assert np.array_equal(a.test_item if hasattr(a, "test_item") else a.test.indices,
                          b.test_item if hasattr(b, "test_item") else b.test.indices)
    assert not np.array_equal(a.test_item if hasattr(a, "test_item") else a.test.indices,
                              c.test_item if hasattr(c, "test_item") else c.test.indices)
    with pytest.raises(DataError, match="must be an integer"):
        load_dataset(f"{spec}:x")


def test_synthetic_sequences_plant_routes_and_times():
    d = make_synthetic_sequences(n_users=400, seed=3, timed=True)
    # each item's next items are dominated by one successor (its route): popularity cannot predict that
    seq = [np.r_[d.train_items[d.train_ptr[u]:d.train_ptr[u + 1]], d.valid_item[u], d.test_item[u]] for u in range(d.n_users)]
    pairs = {}
    for s in seq:
        for a, b in zip(s[:-1], s[1:]):
            pairs.setdefault(int(a), []).append(int(b))
    top_share = np.mean([max(np.bincount(v)) / len(v) for v in pairs.values() if len(v) >= 10])
    assert top_share > FOLLOW - 0.15
    last_train = d.train_times[d.train_ptr[1:] - 1]
    within = np.ones(len(d.train_times) - 1, bool)
    within[d.train_ptr[1:-1] - 1] = False  # pairs that cross users
    assert np.all(np.diff(d.train_times)[within] > 0) and np.all(d.valid_time > last_train)
    assert np.all(d.test_time > d.valid_time)
    assert not make_synthetic_sequences(n_users=20).has_time


# ---------------------------------------------------------------------------------------------- gym.make defaults
@pytest.mark.parametrize("env_id", sorted(ENV_SPECS))
def test_every_id_makes_an_environment_with_no_arguments(env_id, default_cache, capsys):
    env = gym.make(env_id)
    first = capsys.readouterr().err
    assert "pretraining the default" in first and str(default_cache) in first  # said once, where it goes
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert env.unwrapped.data.name == ENV_SPECS[env_id]["data"]
    path = defaults.default_checkpoint_path(ENV_SPECS[env_id]["backbone"], ENV_SPECS[env_id]["data"])
    assert path.is_file()
    env2 = gym.make(env_id)  # cached: no second pretraining, and the same backbone object
    assert capsys.readouterr().err == ""
    assert env2.unwrapped.process.adapter is env.unwrapped.process.adapter


def test_no_checkpoint_on_real_data_is_an_error_not_a_random_backbone(tmp_path):
    data = make_synthetic_sequences(n_users=20).interactions()  # a dataset object: no default backbone
    with pytest.raises(CheckpointError, match="only the synthetic datasets have a default backbone.*untrained"):
        gym.make("refit_gym/DiffRec-v0", data=data)
    with pytest.raises(ValueError, match="backbone_kwargs .* only apply to checkpoint='untrained'"):
        gym.make("refit_gym/DiffRec-v0", data=data, backbone_kwargs=dict(hidden=[8]))
    env = gym.make("refit_gym/DiffRec-v0", data=data, checkpoint="untrained", backbone_kwargs=dict(hidden=[8]))
    assert env.unwrapped.process.adapter.training is False


# ---------------------------------------------------------------------------------------------- rendering
def test_render_modes_follow_gymnasium(default_cache):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        env = gym.make("refit_gym/DiffRec-v0", render_mode="rgb_array")
        gym_check_env(env.unwrapped)  # includes the render check
    env.reset(seed=0)
    img = env.render()
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3 and img.max() == 255 and img.min() == 0
    ansi = gym.make("refit_gym/DiffRec-v0", render_mode="ansi")
    ansi.reset(seed=0)
    line = ansi.render()
    assert line.startswith("t=40/40 user=") and line.count(":") >= 10
    human = gym.make("refit_gym/DiffRec-v0", render_mode="human")
    human.reset(seed=0)
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert human.render() is None
    assert buf.getvalue().startswith("t=40/40")
    with pytest.raises(ValueError, match="supported render modes"):
        gym.make("refit_gym/DiffRec-v0", render_mode="rgb_array_list_x")


# ---------------------------------------------------------------------------------------------- SB3's helpers
def test_make_vec_env_and_ppo_a_few_hundred_steps(default_cache):
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    from agents import DenoiserPolicy

    venv = make_vec_env("refit_gym/DiffRec-v0", n_envs=4, seed=0)  # SB3 asks for render_mode="rgb_array"
    assert len({id(e.unwrapped.process.adapter) for e in venv.envs}) == 1  # one shared backbone
    venv.reset()
    assert venv.render().dtype == np.uint8
    model = PPO(DenoiserPolicy, venv, n_steps=40, batch_size=80, n_epochs=1, gamma=1.0, learning_rate=1e-5, seed=0,
                policy_kwargs=dict(log_prob_reduction="mean"))
    env_backbone = venv.envs[0].unwrapped.process.adapter
    assert model.policy.denoiser is not env_backbone  # the policy trains a copy of the environment's backbone
    before = {k: v.clone() for k, v in env_backbone.state_dict().items()}
    for k, v in model.policy.denoiser.state_dict().items():
        assert torch.equal(v, before[k])
    model.learn(320)
    assert model.num_timesteps == 320


def test_policy_without_a_backbone_refuses_an_ambiguous_choice(default_cache):
    from stable_baselines3 import PPO

    from agents import DenoiserPolicy
    from refit_gym.envs.factory import make_batched_env

    a = make_batched_env("diffrec", "synthetic", n_envs=2, checkpoint="untrained", backbone_seed=1)
    b = make_batched_env("diffrec", "synthetic", n_envs=2, checkpoint="untrained", backbone_seed=2)
    assert a.adapter is not b.adapter
    with pytest.raises(ValueError, match="2 fit these spaces"):
        PPO(DenoiserPolicy, a, n_steps=40, batch_size=80)


@pytest.mark.parametrize("env_id, wrong", [("refit_gym/DreamRec-v0", "synthetic"), ("refit_gym/DreamRecPOI-v0", "synthetic-seq"),
                                           ("refit_gym/SocialDiffRec-v0", "synthetic")])
def test_wrong_data_for_an_id_is_a_data_error_naming_its_synthetic_data(env_id, wrong, default_cache, capsys):
    for checkpoint in (None, "untrained"):
        with pytest.raises(DataError, match=f"its synthetic one is data='{ENV_SPECS[env_id]['data']}'"):
            gym.make(env_id, data=wrong, checkpoint=checkpoint)
    assert "pretraining" not in capsys.readouterr().err  # refused before any work


def test_dataset_objects_get_their_own_backbone(default_cache):
    from refit_gym.envs.factory import make_batched_env

    data = load_dataset("synthetic")
    path = defaults.default_checkpoint("diffrec", "synthetic")
    a = make_batched_env("diffrec", data, n_envs=2, checkpoint=path)
    b = make_batched_env("diffrec", data, n_envs=2, checkpoint=path)
    assert a.adapter is not b.adapter  # a trainer may update one in place (experiments.finetune passes objects)
    c, d = (make_batched_env("diffrec", "synthetic", n_envs=2, checkpoint=path) for _ in range(2))
    assert c.adapter is d.adapter and c.process.data is d.process.data  # spec strings share
