"""rl-zoo3 as a client, in subprocesses: ``rl_zoo3.train`` and ``rl_zoo3.enjoy`` with only ``--gym-packages refit_gym
--env <id>`` and the shipped hyperparameter file (plus a short ``-n`` and an output folder). Skipped with a reason when
rl_zoo3 is not installed (``pip install -e ".[zoo]"``)."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

from conftest import REPO

pytestmark = pytest.mark.skipif(importlib.util.find_spec("rl_zoo3") is None,
                                reason="rl_zoo3 is not installed (pip install -e '.[zoo]')")


@pytest.fixture(scope="module")
def zoo_env(tmp_path_factory):
    """Environment of the subprocesses: this checkout importable, one thread, a cache holding a 1-epoch default
    DiffRec backbone (the default rule is tested in test_ecosystem.py; here the clients are)."""
    import torch

    from refit_gym.envs import defaults

    cache = tmp_path_factory.mktemp("zoo-cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("REFIT_GYM_CACHE", str(cache))
    mp.setitem(defaults.DEFAULT_RECIPE, "epochs", 1)
    torch.set_num_threads(1)
    defaults.default_checkpoint("diffrec", "synthetic")
    mp.undo()
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
                REFIT_GYM_CACHE=str(cache), OMP_NUM_THREADS="1", MPLBACKEND="Agg")


def run(args, env, cwd):
    proc = subprocess.run([sys.executable, "-m", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.parametrize("algo", ["ppo"])  # a2c.yml has the same layout (checked by hand: README)
def test_zoo_train_then_enjoy_with_the_shipped_config(algo, zoo_env, tmp_path):
    conf = str(REPO / "agents" / "hyperparams" / f"{algo}.yml")
    env_id = "refit_gym/DiffRec-v0"
    out = run(["rl_zoo3.train", "--gym-packages", "refit_gym", "--env", env_id, "--algo", algo, "--conf-file", conf,
               "-n", "1280", "-f", "logs", "--seed", "0"], zoo_env, tmp_path)
    run_dir = tmp_path / "logs" / algo / "refit_gym-DiffRec-v0_1"
    assert (run_dir / "refit_gym-DiffRec-v0.zip").is_file(), out[-2000:]
    # 16 environments x 2 rollouts of n_steps 40 = 32 episodes of T = 40 steps, in the zoo's Monitor files
    monitors = sorted(run_dir.glob("*.monitor.csv"))
    assert len(monitors) == 16
    assert sum(len(m.read_text().splitlines()) - 2 for m in monitors) == 1280 // 40
    # enjoy WITHOUT --no-render: the environment renders in 'human' mode (text lines on stdout)
    shown = run(["rl_zoo3.enjoy", "--gym-packages", "refit_gym", "--env", env_id, "--algo", algo, "-f", "logs",
                 "-n", "41"], zoo_env, tmp_path)
    assert "t=40/40 user=" in shown and "Episode Reward" in shown
