"""Shared fixtures and helpers of the fault tests (issue 13): ``test_faults_files.py`` (what the library reads:
agent zips, datasets, checkpoints, state files) and ``test_faults_runs.py`` (crashes, second runs, full disks,
Ctrl-C, divergence). Tiny synthetic data and models throughout."""
from __future__ import annotations

import base64
import json
import os
import shutil
import zipfile
from pathlib import Path

import cloudpickle
import pytest

from agents import ReFiT
from refit_gym.experiments.finetune import finetune
from refit_gym.diffusion import load_backbone, save_backbone
from refit_gym.envs.batched import BatchedDenoisingEnv
from conftest import tiny_diffrec

T, N_ENVS = 5, 16
ROLLOUT = T * N_ENVS  # environment steps per rollout (one update each)
QUIET = dict(log=lambda msg: None)


@pytest.fixture(scope="module")
def ckpt(data, tmp_path_factory):
    return save_backbone(tiny_diffrec(data, hidden=32, steps=T), tmp_path_factory.mktemp("ckpt") / "backbone.pt", meta=dict(n_users=data.n_users))


def refit_hp(**kw):
    return dict(dict(n_envs=N_ENVS, n_timesteps=4 * ROLLOUT, learning_rate=1e-3, n_traj_per_user=4), **kw)


def sb3_hp(**kw):
    return dict(dict(n_envs=N_ENVS, n_timesteps=3 * ROLLOUT, n_steps=T, learning_rate=1e-3,
                     policy_kwargs="dict(log_prob_reduction='mean', net_arch=[16])"), **kw)


HP = {"refit": refit_hp, "ddpo": refit_hp, "pathwise": lambda **kw: refit_hp(n_traj_per_user=1, **kw), "ppo": lambda **kw: sb3_hp(batch_size=40, n_epochs=1, **kw), "a2c": sb3_hp}


@pytest.fixture(scope="module")
def agent_zip(data, ckpt, tmp_path_factory):
    """A genuine ReFiT agent zip after one update."""
    backbone, _ = load_backbone(ckpt)
    model = ReFiT(backbone, BatchedDenoisingEnv(data, backbone, n_envs=N_ENVS, seed=0), seed=0, learning_rate=1e-3)
    model.learn(ROLLOUT)
    path = tmp_path_factory.mktemp("agent") / "agent.zip"
    model.save(path)
    return path


@pytest.fixture(scope="module")
def finished_run(data, ckpt, tmp_path_factory):
    """The output folder of a finished one-rollout ReFiT run (tests copy it before damaging it)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    finetune("refit", "refit_gym/DiffRec-v0", data, ckpt, hyperparams=refit_hp(n_timesteps=ROLLOUT), out=out, **QUIET)
    return out


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".lock"))
    return dst


def rewrite_zip(src: Path, dst: Path, edit_data=None, replace=None) -> Path:
    """Copy an agent zip, editing its ``data`` JSON (``edit_data(dict)``) or replacing whole entries."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            blob = zin.read(name)
            if name == "data" and edit_data is not None:
                d = json.loads(blob)
                edit_data(d)
                blob = json.dumps(d).encode()
            if replace and name in replace:
                blob = replace[name]
            zout.writestr(name, blob)
    return dst


def serialized(obj) -> dict:
    return {":type:": "<class 'function'>", ":serialized:": base64.b64encode(cloudpickle.dumps(obj)).decode()}


class Payload:
    """A pickle that runs ``os.system`` when loaded."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)
