"""Adding a backbone: a ``DenoiserAdapter`` subclass registered with ``register_backbone`` and one row of the identity
table (:data:`refit_gym.registry.ENVIRONMENTS`); every table derived from the row (gymnasium's ids, ``ENV_SPECS`` /
``ENV_IDS``, the scenario, the default reward, the label) then knows the new id with no other edit."""
from __future__ import annotations

import gymnasium
import numpy as np
import pytest
import torch
from torch import nn

from refit_gym.data import load_dataset
from refit_gym.diffusion import BACKBONES, DenoiserAdapter, HistoryAdapter, ScheduleConfig, register_backbone
from refit_gym.envs import ENV_IDS, ENV_SPECS, register_envs
from refit_gym.registry import (BACKBONE_LABELS, ENV_OF_BACKBONE, ENVIRONMENTS, REWARD_OF_BACKBONE,
                                SCENARIO_OF_BACKBONE, register_environment)
from refit_gym.scenarios import SCENARIOS, scenario_for

ENV_ID, KIND, T, N_ENVS = "refit_gym/TinyRec-v0", "tinyrec", 5, 16
ROW = {"backbone": KIND, "reward": "refit", "data": "synthetic", "scenario": "cf", "label": "TinyRec"}


@pytest.fixture
def gymnasium_id_removed_afterwards():
    yield
    gymnasium.registry.pop(ENV_ID, None)


def test_a_new_backbone_is_an_adapter_and_one_registry_row(monkeypatch, tmp_path, gymnasium_id_removed_afterwards):
    from refit_gym.experiments.benchmark.plan import build_rows
    from refit_gym.experiments.finetune import finetune

    monkeypatch.setenv("REFIT_GYM_CACHE", str(tmp_path / "cache"))  # gymnasium.make's default backbone goes here

    # 1. the backbone: DiffRec's shape (a HistoryAdapter diffuses the history vector: condition, start and
    #    training target come with it) with a one-hidden-layer MLP denoiser; denoise() and config() are all it adds
    class TinyRec(HistoryAdapter):
        """One hidden layer over [x, embedding of the diffusion index]; predicts x0 (the schedule's default)."""

        backbone_name = KIND

        def __init__(self, n_items: int, schedule=None, hidden: int = 32, emb_size: int = 8):
            cfg = ScheduleConfig(**(schedule or dict(steps=T)))
            super().__init__(cfg, n_items, n_items, n_items)
            self._cfg = dict(n_items=int(n_items), schedule=cfg.to_dict(), hidden=int(hidden), emb_size=int(emb_size))
            self.index_emb = nn.Embedding(cfg.steps, emb_size)
            self.net = nn.Sequential(nn.Linear(n_items + emb_size, hidden), nn.Tanh(), nn.Linear(hidden, n_items))

        def denoise(self, x, i, context):
            return self.net(torch.cat([x, self.index_emb(i)], dim=-1))

        def config(self):
            return dict(self._cfg)

    assert issubclass(TinyRec, DenoiserAdapter)
    monkeypatch.setitem(BACKBONES, KIND, TinyRec)  # restored after the test; register_backbone is what a user writes
    assert register_backbone(TinyRec) is TinyRec and BACKBONES[KIND] is TinyRec

    # 2. one registry row (in the library: a line of registry.py's table), registered as `import refit_gym` does
    monkeypatch.setitem(ENVIRONMENTS, ENV_ID, ROW)  # removed after the test (its gymnasium id by the fixture)
    register_envs()
    register_environment(ENV_ID, dict(ROW))  # idempotent: what a package outside refit_gym calls for its row
    with pytest.raises(ValueError, match="already registered"):
        register_environment(ENV_ID, {**ROW, "label": "Other"})

    # every derived table sees the row
    assert ENV_SPECS[ENV_ID] == {"backbone": KIND, "reward": "refit", "data": "synthetic"} and ENV_IDS[ENV_ID] == KIND
    assert gymnasium.spec(ENV_ID).kwargs == ENV_SPECS[ENV_ID]
    assert (SCENARIO_OF_BACKBONE[KIND], REWARD_OF_BACKBONE[KIND], BACKBONE_LABELS[KIND]) == ("cf", "refit", "TinyRec")
    assert ENV_OF_BACKBONE[KIND] == ENV_ID and ENV_OF_BACKBONE["dreamrec-ce"] == "refit_gym/DreamRecCE-v0"
    scenario = scenario_for(ENV_ID)
    assert scenario is scenario_for(KIND) is SCENARIOS["cf"] and scenario.backbone == "diffrec"  # cf's default stays

    # gymnasium.make(id) alone: the synthetic default data and a default TinyRec pretrained once and cached
    env = gymnasium.make(ENV_ID)
    inner = env.unwrapped
    assert isinstance(inner.adapter, TinyRec) and inner.data.name == "synthetic"
    obs, _ = env.reset(seed=0)
    steps, terminated, truncated = 0, False, False
    while not (terminated or truncated):
        obs, reward, terminated, truncated, _ = env.step(obs["x"])
        steps += 1
    assert terminated and steps == T and np.isfinite(reward)
    env.close()

    # pretraining through the scenario, then fine-tuning its checkpoint by the id
    data = load_dataset("synthetic")
    torch.manual_seed(0)
    adapter = scenario.build_backbone(data, KIND, hidden=16)
    assert isinstance(adapter, TinyRec) and adapter.config()["hidden"] == 16  # cf's diffrec architecture not applied
    result = scenario.pretrain(adapter, data, scenario.pretrain_config(epochs=2), out_dir=tmp_path / "pretrain",
                               log=lambda msg: None)
    assert len(result.history) == 2
    ckpt = tmp_path / "pretrain" / "best.pt"
    m = finetune("pathwise", ENV_ID, "synthetic", ckpt, out=tmp_path / "run", log=lambda msg: None,
                 hyperparams=dict(n_envs=N_ENVS, n_timesteps=2 * N_ENVS * T, learning_rate=1e-3))
    assert m["env"] == ENV_ID and m["reward"] == "refit" and m["num_timesteps"] == 2 * N_ENVS * T
    assert np.isfinite(m["final"]["valid"][scenario.metric])

    # the label where labels are read: the benchmark's rows (and through BACKBONE_LABELS, its tables and figures)
    rows = build_rows([KIND], methods=["pretrained", "pathwise"], scenario="cf")
    assert [(r.label, r.env_id) for r in rows] == [("TinyRec (pretrained)", ENV_ID), ("TinyRec + Pathwise", ENV_ID)]
