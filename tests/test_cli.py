"""The ``refit-gym`` command: subcommands over the scripts, --help with defaults, user errors as one line (exit 2),
--debug, the console-script declaration, and pretrain -> train -> evaluate end to end on tiny synthetic data."""
from __future__ import annotations

import json
import subprocess
import sys
import re
from pathlib import Path

import pytest
import torch

from refit_gym import cli
from refit_gym.data.loaders import ACCEPTED_FORMATS
from refit_gym.diffusion import CheckpointError

from conftest import REPO

torch.set_num_threads(1)


def test_console_script_and_module_entry_point():
    section = (REPO / "pyproject.toml").read_text().split("[project.scripts]", 1)[1].split("\n[", 1)[0]
    module, _, func = re.search(r'^refit-gym = "([\w.:]+)"$', section, re.M).group(1).partition(":")
    assert module == "refit_gym.cli" and callable(getattr(cli, func))
    proc = subprocess.run([sys.executable, "-m", "refit_gym", "--help"], capture_output=True, text=True, cwd=REPO,
                          timeout=120)
    assert proc.returncode == 0
    for command in ("pretrain", "train", "evaluate", "benchmark", "hyperparams"):
        assert command in proc.stdout


@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
def test_help_shows_defaults_and_device_is_auto_everywhere(command, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main([command, "--help"])
    assert e.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert out.startswith(f"usage: refit-gym {command}")
    assert "(default: auto)" in out  # --device means the same in every command
    assert "(default: None)" not in out  # no noise for unset options


def test_device_is_one_rule(capsys):
    """resolve_device is the only reading of --device: auto -> CUDA if present, else CPU; a device that is not there
    or an unknown name is a DeviceError, printed as one line (exit 2) by every command."""
    from refit_gym.utils import DeviceError, resolve_device

    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(DeviceError, match="'gpu': not a device name"):
        resolve_device("gpu")
    assert cli.main(["evaluate", "--baseline", "pop", "--data", "synthetic", "--device", "gpu"]) == 2
    assert capsys.readouterr().err.strip().endswith("DeviceError: device='gpu': not a device name; use auto, cpu, "
                                                    "cuda or cuda:N (--debug shows the traceback)")


def test_no_command_and_hyperparams(capsys):
    assert cli.main([]) == 2
    assert "pretrain" in capsys.readouterr().err
    assert cli.main(["hyperparams", "ppo"]) == 0
    assert capsys.readouterr().out.strip().endswith("agents/hyperparams/ppo.yml")
    assert cli.main(["hyperparams", "sac"]) == 2
    assert capsys.readouterr().err.strip() == ("refit-gym hyperparams: error: no shipped hyperparameters for 'sac'; "
                                               "known: a2c, ddpo, pathwise, ppo, refit")


def test_user_errors_are_one_line_with_exit_2_and_debug_shows_the_traceback(tmp_path, capsys):
    missing = tmp_path / "missing.pt"
    assert cli.main(["evaluate", "--checkpoint", str(missing), "--data", "synthetic"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (f"refit-gym evaluate: error: CheckpointError: {missing}: no such checkpoint file "
                       "(--debug shows the traceback)")
    assert not any("Traceback" in line for line in err)
    with pytest.raises(CheckpointError):
        cli.main(["evaluate", "--checkpoint", str(missing), "--data", "synthetic", "--debug"])
    capsys.readouterr()
    assert cli.main(["train", "--data", str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"refit-gym train: error: DataError: {tmp_path / 'nowhere'}: no such file or folder. Accepted dataset specs: "
        + ACCEPTED_FORMATS
        + " (--debug shows the traceback)"]
    with pytest.raises(SystemExit) as e:  # argparse's own usage errors keep their status 2
        cli.main(["train", "--bogus"])
    assert e.value.code == 2


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    pre = tmp_path_factory.mktemp("pre")
    assert cli.main(["pretrain", "--data", "synthetic", "--epochs", "1", "--hidden", "16", "--steps", "5",
                     "--out", str(pre), "--device", "cpu", "--no-progress"]) == 0
    return pre / "best.pt"


def test_pretrain_train_evaluate_end_to_end(tiny_checkpoint, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main(["train", "--algo", "refit", "--checkpoint", str(tiny_checkpoint), "--out", str(run), "-n", "640",
                     "--no-progress", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert metrics["num_timesteps"] == 640
    assert (run / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # beside metrics.json
    assert cli.main(["evaluate", "--checkpoint", str(run / "best.pt"), "--data", "synthetic", "--json"]) == 0
    assert "recall@20" in json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_tensorboard_one_folder_per_run_and_a2c_logs_every_validation(tiny_checkpoint, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = tmp_path / "tb"
    for k in (1, 2):  # two runs into the same --tensorboard-log: two sub-folders, never one flat folder
        assert cli.main(["train", "--algo", "a2c", "--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / f"r{k}"),
                         "-n", "1280", "--eval-freq", "640", "--tensorboard-log", str(tb), "--no-progress"]) == 0
    assert sorted(p.name for p in tb.iterdir()) == ["a2c_DiffRec-v0_1", "a2c_DiffRec-v0_2"]
    acc = EventAccumulator(str(tb / "a2c_DiffRec-v0_1")).Reload()
    steps = [e.step for e in acc.Scalars("eval/recall@20")]
    assert steps == [640, 1280]  # A2C (log_interval 100 updates, never reached here) still logs every validation


def test_resume_needs_no_repeated_flags_and_refuses_changes_by_name(tiny_checkpoint, tmp_path, capsys):
    run, hp = tmp_path / "run", tmp_path / "hp.yml"
    hp.write_text("refit_gym/DiffRec-v0:\n  learning_rate: !!float 1e-5\n")
    assert cli.main(["train", "--algo", "a2c", "--checkpoint", str(tiny_checkpoint), "--out", str(run), "-n", "640",
                     "--hyperparams", str(hp), "--reward", "topk", "--no-progress"]) == 0
    capsys.readouterr()
    # only --resume --out (and a longer -n): the algorithm, checkpoint, reward and hyperparameters are the run's
    assert cli.main(["train", "--resume", "--out", str(run), "-n", "1280", "--no-progress", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (metrics["algo"], metrics["num_timesteps"], metrics["reward"]) == ("a2c", 1280, "topk")
    assert metrics["checkpoint"] == str(tiny_checkpoint) and not (run / "pretrain").exists()  # no new backbone
    # a run-defining flag that differs is refused by name
    assert cli.main(["train", "--resume", "--out", str(run), "--reward", "refit"]) == 2
    assert "--resume: --reward refit differs from this run's 'topk'" in capsys.readouterr().err
    # hyperparameters are compared by value: the override file edited in place is refused, naming the key
    hp.write_text("refit_gym/DiffRec-v0:\n  learning_rate: !!float 3e-5\n")
    assert cli.main(["train", "--resume", "--out", str(run), "-n", "1920"]) == 2
    assert "learning_rate: 1e-05 -> 3e-05" in capsys.readouterr().err


def test_resume_keeps_progress_csv_whole(tiny_checkpoint, tmp_path):
    run = tmp_path / "run"
    assert cli.main(["train", "--algo", "a2c", "--checkpoint", str(tiny_checkpoint), "--out", str(run), "-n", "640",
                     "--eval-freq", "640", "--no-progress"]) == 0
    first = (run / "progress.csv").read_text().splitlines()
    assert cli.main(["train", "--resume", "--out", str(run), "-n", "1280", "--no-progress"]) == 0
    rows = (run / "progress.csv").read_text().splitlines()
    assert rows[:len(first)] == first and len(rows) > len(first)


def test_custom_algorithm_path(tiny_checkpoint, tmp_path, monkeypatch):
    """The documented path: register a class in agents.ALGOS; finetune() (what refit-gym train runs) uses it."""
    from agents import ALGOS, ReFiT
    from refit_gym.experiments.finetune import finetune

    class Mine(ReFiT):
        """A custom algorithm: ReFiT's constructor (checkpoint, env, seed=, device=, tensorboard_log=, verbose=, ...)."""

    monkeypatch.setitem(ALGOS, "mine", Mine)
    m = finetune("mine", "refit_gym/DiffRec-v0", "synthetic", tiny_checkpoint, out=tmp_path / "mine",
                 hyperparams=dict(n_envs=16, n_timesteps=160, n_traj_per_user=4), log=lambda msg: None)
    assert m["algo"] == "mine" and m["num_timesteps"] == 160


def test_installed_console_script_runs():
    """The ``refit-gym`` executable that ``pip install -e .`` puts beside this Python (skipped when not installed)."""
    exe = Path(sys.executable).parent / "refit-gym"
    if not exe.is_file():
        pytest.skip(f"{exe} is not installed (pip install -e .)")
    proc = subprocess.run([str(exe), "hyperparams", "refit"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("refit.yml")


def test_train_data_defaults_to_the_environments_synthetic_data(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "seq"
    # a DiffRec checkpoint for the DreamRec id: refused as one line, after the id's own data (synthetic-seq) loaded
    assert cli.main(["train", "--env", "refit_gym/DreamRec-v0", "--checkpoint", str(tiny_checkpoint), "--out", str(out),
                     "--no-progress"]) == 2
    assert "expects a 'dreamrec' backbone" in capsys.readouterr().err
    assert json.loads((out / "run.json").read_text())["data"] == "synthetic-seq"
