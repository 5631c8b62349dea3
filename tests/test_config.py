"""Typed configurations: each chain algorithm's defaults written once (its ``config_class``) and used as written;
hyperparameter files checked against them with errors naming file, environment id and key; adding an algorithm
is one class and its config."""
from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
import yaml

from agents import ALGOS, ChainAlgorithm, ChainConfig, PolicyConfig, ReFiT, ReFiTConfig
from refit_gym.diffusion import save_backbone
from refit_gym.envs.batched import BatchedDenoisingEnv
from refit_gym.experiments.hyperparams import FinetuneError, load_hyperparams
from refit_gym.registry import ENVIRONMENTS
from conftest import tiny_diffrec

T, N_ENVS = 5, 16
ENV_ID = "refit_gym/DiffRec-v0"
CHAIN_ALGOS = sorted(a for a, cls in ALGOS.items() if issubclass(cls, ChainAlgorithm))


@pytest.fixture(scope="module")
def backbone(data):
    return tiny_diffrec(data, hidden=16, steps=T)


def used(model: ChainAlgorithm, name: str):
    """The value of hyperparameter ``name`` that ``model`` runs with."""
    if name in PolicyConfig.keys():
        return getattr(model.policy, name)
    if name == "stats_window_size":
        return model._stats_window_size
    if name == "policy_kwargs":  # what the caller added beyond the policy options and the architecture
        extra = {k: v for k, v in model.policy_kwargs.items() if k not in PolicyConfig.keys() and k != "backbone_spec"}
        return extra or None
    value = getattr(model, name)
    return value(1.0) if name == "clip_range" else value  # DDPO keeps its clip range as a schedule


@pytest.mark.parametrize("algo", CHAIN_ALGOS)
def test_config_defaults_are_what_the_algorithm_uses(algo, data, backbone):
    cls = ALGOS[algo]
    assert cls.config_class is not ChainConfig and issubclass(cls.config_class, ChainConfig)
    model = cls(backbone, BatchedDenoisingEnv(data, backbone, n_envs=N_ENVS, seed=0), seed=0)
    for name, default in cls.config_class.defaults().items():
        assert used(model, name) == default, name


def test_constructor_refuses_unknown_keys_and_wrong_types(data, backbone):
    env = BatchedDenoisingEnv(data, backbone, n_envs=N_ENVS, seed=0)
    with pytest.raises(TypeError, match=r"ReFiTConfig: unknown hyperparameter 'kl_cof' \(did you mean 'kl_coef'\?\); "
                                        r"known: .*kl_coef"):
        ReFiT(backbone, env, kl_cof=0.1)
    with pytest.raises(TypeError, match=r"ReFiTConfig: kl_coef='0.1' is not a number"):
        ReFiT(backbone, env, kl_coef="0.1")
    with pytest.raises(TypeError, match="config must be a ReFiTConfig, got float"):
        ReFiT(backbone, env, 1e-3)  # SB3's positional learning rate: keywords only here
    model = ReFiT(backbone, env, ReFiTConfig(kl_coef=0.2, n_traj_per_user=2), n_traj_per_user=8, seed=0)
    assert (model.kl_coef, model.n_traj_per_user) == (0.2, 8)  # keywords override the config


def test_hyperparameter_file_errors_name_file_environment_and_key(tmp_path):
    bad = tmp_path / "hp.yml"
    bad.write_text(f"{ENV_ID}:\n  kl_cof: 0.1\n")
    with pytest.raises(FinetuneError, match=rf"hp.yml: environment '{ENV_ID}': refit: unknown hyperparameter 'kl_cof' "
                                            r"\(did you mean 'kl_coef'\?\); known: .*kl_coef.*n_envs"):
        load_hyperparams("refit", ENV_ID, bad)
    with pytest.raises(FinetuneError, match=r"hp.yml: .* ppo: unknown hyperparameter 'kl_cof'"):
        load_hyperparams("ppo", ENV_ID, bad)  # SB3's algorithms: checked against the constructor's signature
    bad.write_text(f"{ENV_ID}:\n  learning_rate: 1e-4\n")  # YAML 1.1: a string
    with pytest.raises(FinetuneError, match=r"hp.yml: .*learning_rate='1e-4' is not a number or a schedule .*!!float"):
        load_hyperparams("pathwise", ENV_ID, bad)
    with pytest.raises(FinetuneError, match=r"^recipe: environment .*RunConfig: n_envs='16' is not an integer"):
        load_hyperparams("refit", ENV_ID, dict(n_envs="16"), source="recipe")
    # a combination is checked once the sources are merged, and names them all
    seq_id = "refit_gym/DreamRec-v0"
    with pytest.raises(FinetuneError, match=r"refit.yml \+ recipe: .*credit='item' needs train_last_k=1"):
        load_hyperparams("refit", seq_id, dict(credit="item", train_last_k=10), source="recipe")
    assert load_hyperparams("refit", seq_id, dict(credit="item", train_last_k=1))["credit"] == "item"


def test_shipped_reward_kwargs_follow_the_shipped_reward():
    """DreamRec's shipped Pathwise settings configure refit-seq (``targets``, ``hop_weight``): another reward chosen
    by the caller does not receive them, while reward_kwargs the caller sets always apply."""
    seq_id = "refit_gym/DreamRec-v0"
    shipped = load_hyperparams("pathwise", seq_id)["reward_kwargs"]
    assert shipped == {"targets": "random", "hop_weight": 0.0}
    assert load_hyperparams("pathwise", seq_id, reward="refit-seq")["reward_kwargs"] == shipped
    assert "reward_kwargs" not in load_hyperparams("pathwise", seq_id, reward="topk")
    assert "reward_kwargs" not in load_hyperparams("pathwise", seq_id, dict(reward="reconstruction"))
    assert "reward_kwargs" not in load_hyperparams("pathwise", seq_id, reward=object())  # a built reward
    mine = load_hyperparams("pathwise", seq_id, dict(reward_kwargs={"k": 5}), reward="topk")
    assert mine["reward_kwargs"] == {"k": 5}


# ---------------------------------------------------------------------------- adding an algorithm
@dataclass
class TinyConfig(ChainConfig):
    """The toy algorithm's hyperparameters."""

    n_traj_per_user: int = 1
    """no baseline across copies: one chain per user"""
    step_scale: float = 0.5
    """weight of the toy loss"""


class Tiny(ChainAlgorithm):
    """A toy: sampled chains; each update raises the log-probability of the last steps whose reward beat the
    batch mean (REINFORCE on the last step, batch-mean baseline)."""

    config_class = TinyConfig

    def collect_rollout(self, callback):
        obs = self.driver.reset(*self._draw_episodes())
        x, cond, users = obs["x"], obs["condition"], obs["user"].reshape(-1)
        ctx = self.policy.denoiser.context(cond, users)
        with torch.no_grad():
            for t in range(self.policy.steps, 0, -1):
                t_vec = torch.full((x.shape[0],), t, dtype=torch.long, device=self.device)
                x1, x = x, self.policy.step_distribution(x, t_vec, ctx).sample(self._generator)
                rewards, _ = self.driver.step(x)
                self.num_timesteps += x.shape[0]
                callback.update_locals(locals())
                if not callback.on_step():
                    return None
        return dict(x1=x1, x0=x, cond=cond, users=users, rewards=rewards)

    def train(self, batch):
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        self.policy.optimizer.zero_grad(set_to_none=True)
        ctx = self.policy.denoiser.context(batch["cond"], batch["users"])
        ones = torch.ones(len(batch["users"]), dtype=torch.long, device=self.device)
        log_prob = self.policy.step_distribution(batch["x1"], ones, ctx).log_prob(batch["x0"])
        loss = -self.step_scale * ((batch["rewards"] - batch["rewards"].mean()) * log_prob).mean()
        loss.backward()
        self.logger.record("train/grad_norm", self._clip_and_step())
        self._n_updates += 1


def test_adding_an_algorithm_is_one_class_and_its_config(monkeypatch, tmp_path):
    from refit_gym.data import load_dataset
    from refit_gym.experiments.finetune import finetune

    monkeypatch.setitem(ALGOS, "tiny", Tiny)
    data = load_dataset("synthetic")
    ckpt = save_backbone(tiny_diffrec(data, hidden=16, steps=T),
                         tmp_path / "backbone.pt", meta=dict(n_users=data.n_users))
    quiet = dict(log=lambda msg: None)
    with pytest.raises(FinetuneError, match=r"recipe: environment .*tiny: unknown hyperparameter 'step_scal' "
                                            r"\(did you mean 'step_scale'\?\)"):
        finetune("tiny", ENV_ID, data, ckpt, hyperparams=dict(step_scal=1.0), out=tmp_path / "bad",
                 hyperparams_source="recipe", **quiet)
    m = finetune("tiny", ENV_ID, data, ckpt, hyperparams=dict(n_envs=N_ENVS, n_timesteps=2 * N_ENVS * T,
                 learning_rate=1e-3, step_scale=0.25), out=tmp_path / "run", **quiet)
    assert m["algo"] == "tiny" and m["num_timesteps"] == 2 * N_ENVS * T and m["reward"] == ENVIRONMENTS[ENV_ID]["reward"]
    # the configuration as used, every default included, is recorded
    recorded = yaml.safe_load((tmp_path / "run" / "hyperparams.yml").read_text())[ENV_ID]
    assert recorded == m["hyperparams"]
    assert {**TinyConfig.defaults(), "step_scale": 0.25, "learning_rate": 1e-3}.items() <= recorded.items()
    assert recorded["n_envs"] == N_ENVS and recorded["reward"] == "refit"
