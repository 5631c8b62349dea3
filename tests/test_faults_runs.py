"""Faults of runs (issue 13): crashes and kill -9, Ctrl-C, two runs on one folder, a full disk, divergence of
every algorithm and of pretraining. Each test asserts a *named* error or the *intact* state afterwards (nothing
lost or mixed, the last good checkpoint kept and loadable)."""
from __future__ import annotations

import errno
import json
import os
import signal
from pathlib import Path

import pytest
import torch

from agents import ReFiT
from refit_gym.experiments.finetune import finetune
from agents.guards import DivergenceError, RunGuard, TrainingInterrupted
from agents.refit import NonFiniteTrainingError
from refit_gym.data import load_dataset
from refit_gym.diffusion import build_backbone, load_backbone, save_backbone
from refit_gym.diffusion.checkpoint import CheckpointError
from refit_gym.diffusion.divergence import PretrainingDivergedError
from refit_gym.diffusion.training import PretrainConfig, pretrain
from refit_gym.io_safety import (OutputLockedError, RunLock, atomic_write, load_agent,
                                 save_agent_atomic, unique_tmp)

from fault_helpers import HP, N_ENVS, QUIET, ROLLOUT, T, agent_zip, ckpt, refit_hp, rewrite_zip  # noqa: F401


# ============================================================================ lost and mixed work
def progress_steps(out: Path):
    import csv
    with open(out / "progress.csv", newline="") as fh:
        return [int(float(r["time/total_timesteps"])) for r in csv.DictReader(fh)]


def test_crash_then_resume_loses_no_update_and_appends_progress(data, ckpt, tmp_path):
    out = tmp_path / "run"

    def crash_at_last_validation(msg):
        if msg.startswith(f"step {4 * ROLLOUT}:"):  # mid-way through the 4th rollout, before its update
            raise RuntimeError("simulated crash (kill -9)")

    with pytest.raises(RuntimeError, match="simulated crash"):
        finetune("refit", "refit_gym/DiffRec-v0", data, ckpt, hyperparams=refit_hp(), out=out, save_freq=ROLLOUT,
                 eval_freq=2 * ROLLOUT, log=crash_at_last_validation)
    saved = ReFiT.load(out / "last_model.zip")
    assert saved.num_timesteps == 3 * ROLLOUT and saved._n_updates == 3  # every counted rollout has its update
    m = finetune("refit", "refit_gym/DiffRec-v0", data, ckpt, hyperparams=refit_hp(), out=out, save_freq=ROLLOUT,
                 eval_freq=2 * ROLLOUT, resume=True, **QUIET)
    assert m["num_timesteps"] == 4 * ROLLOUT and ReFiT.load(out / "last_model.zip")._n_updates == 4
    steps = progress_steps(out)  # appended, never going back (a validation adds a second row at its step)
    assert steps == sorted(steps) and set(steps) == {ROLLOUT, 2 * ROLLOUT, 3 * ROLLOUT, 4 * ROLLOUT}
    assert [h["num_timesteps"] for h in m["history"]] == [0, 2 * ROLLOUT, 4 * ROLLOUT]


def test_second_run_on_one_folder_is_refused_with_the_pid(data, ckpt, tmp_path):
    out = tmp_path / "run"
    with RunLock(out):
        with pytest.raises(OutputLockedError, match=rf"another run \(pid {os.getpid()}\)"):
            finetune("refit", "refit_gym/DiffRec-v0", data, ckpt, hyperparams=refit_hp(), out=out, **QUIET)
        with pytest.raises(OutputLockedError):
            pretrain(build_backbone("diffrec", data, hidden=[8], schedule=dict(steps=T)), data,
                     PretrainConfig(epochs=1), out_dir=out, progress=False, tensorboard=False, log=lambda m: None)
    assert not (out / "metrics.json").exists()
    with RunLock(out):  # released: the folder is usable again (the kernel also releases it on kill -9)
        pass
    a, b = unique_tmp(out / "last_model.zip"), unique_tmp(out / "last_model.zip")
    assert a != b and str(os.getpid()) in a.name
    stale = out / a.name.replace(f".{os.getpid()}.", ".999999999.")  # a dead writer's temp file
    stale.write_bytes(b"partial")
    with RunLock(out) as lock:
        assert lock.stale_removed == [stale.name] and not stale.exists()


def test_full_disk_names_the_path_and_leaves_no_temp_file(agent_zip, tmp_path, monkeypatch):
    target = tmp_path / "last_model.zip"
    target.write_bytes(b"previous good state")
    model = ReFiT.load(agent_zip)

    def full_disk(path, *a, **k):
        Path(path).write_bytes(b"x" * 4096)  # a partial write, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(model, "save", full_disk)
    with pytest.raises(OSError, match=rf"writing {target}: no space left on device") as info:
        save_agent_atomic(model, target)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert target.read_bytes() == b"previous good state" and sorted(p.name for p in tmp_path.iterdir()) == [target.name]
    with pytest.raises(OSError, match="no space left"):
        with atomic_write(tmp_path / "x.json") as tmp:
            tmp.write_text("{")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]

    from refit_gym.io_safety import resumable_csv_output
    csv_out = resumable_csv_output(tmp_path / "progress.csv")
    csv_out.write({"time/total_timesteps": 80}, {}, 80)
    real = csv_out.file

    class FullFile:  # the log file's disk fills up
        def __getattr__(self, name):
            return getattr(real, name)

        def write(self, text):
            raise OSError(errno.ENOSPC, "No space left on device")

    csv_out.file = FullFile()
    with pytest.raises(OSError, match=r"writing .*progress.csv: No space left on device"):
        csv_out.write({"time/total_timesteps": 160}, {}, 160)
    real.close()


def test_ctrl_c_saves_at_the_update_boundary_and_resumes(data, ckpt, tmp_path):
    out = tmp_path / "run"
    before = signal.getsignal(signal.SIGINT)  # default_int_handler, or SIG_IGN in a job started in the background

    def interrupt_at_first_validation(msg):
        if msg.startswith(f"step {ROLLOUT}:"):
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(TrainingInterrupted, match=rf"last_model.zip saved at step {ROLLOUT}; continue with --resume"):
        finetune("refit", "refit_gym/DiffRec-v0", data, ckpt, hyperparams=refit_hp(), out=out, eval_freq=ROLLOUT,
                 log=interrupt_at_first_validation)
    saved = ReFiT.load(out / "last_model.zip")
    assert saved.num_timesteps == ROLLOUT and saved._n_updates == 1
    first = json.loads((out / "train_state.json").read_text())  # the first segment's wall-clock, up to its save
    assert 0 < first["train_seconds"] <= first["wall_seconds"]
    m = finetune("refit", "refit_gym/DiffRec-v0", data, ckpt, hyperparams=refit_hp(), out=out, resume=True, **QUIET)
    assert m["num_timesteps"] == 4 * ROLLOUT and ReFiT.load(out / "last_model.zip")._n_updates == 4
    assert m["resumed_seconds"] == first["wall_seconds"]  # the benchmark adds it to the resumed cell's time
    assert json.loads((out / "train_state.json").read_text())["wall_seconds"] > first["wall_seconds"]
    assert signal.getsignal(signal.SIGINT) == before  # the handler the run found is restored


def test_cli_prints_one_line(capsys):
    """Scripts end named errors with one line (refit_gym.cli.run_main): Ctrl-C after its save exits 130, a damaged
    checkpoint and a locked folder exit 2; --debug keeps the exception."""
    from refit_gym.cli import run_main

    def interrupted(argv=None):
        raise TrainingInterrupted("interrupted: OUT/last_model.zip saved at step 80; continue with --resume")

    assert run_main(interrupted, "train.py", []) == 130
    assert capsys.readouterr().err.strip() == "train.py: interrupted: OUT/last_model.zip saved at step 80; continue with --resume"
    for error in (CheckpointError("x.pt: field 'config' is broken"), OutputLockedError("run/ is locked by pid 7")):
        def broken(argv=None, error=error):
            raise error

        assert run_main(broken, "train.py", []) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and str(error) in err
        with pytest.raises(type(error)):
            run_main(broken, "train.py", ["--debug"])


# ============================================================================ divergence
@pytest.mark.parametrize("algo", ["refit", "ddpo", "pathwise", "ppo", "a2c"])
def test_divergence_stops_with_a_named_error_and_keeps_the_last_good_save(data, ckpt, tmp_path, algo):
    """A good save, then the learning rate stored in it is set to 1e6 (as a careless edit or a schedule gone
    wrong would): the resumed run must stop with a named error and leave the good save in place."""
    from agents import ALGOS
    out = tmp_path / "run"
    finetune(algo, "refit_gym/DiffRec-v0", data, ckpt, hyperparams=HP[algo](n_timesteps=ROLLOUT), out=out, **QUIET)
    good = out / "last_model.zip"
    rewrite_zip(good, tmp_path / "lr.zip", edit_data=lambda d: d.__setitem__("learning_rate", 1e6))
    os.replace(tmp_path / "lr.zip", good)
    good_bytes = good.read_bytes()
    with pytest.raises(NonFiniteTrainingError) as info:
        finetune(algo, "refit_gym/DiffRec-v0", data, ckpt, hyperparams=HP[algo](n_timesteps=6 * ROLLOUT), out=out,
                 resume=True, save_freq=ROLLOUT, **QUIET)
    assert "out of bounds" not in str(info.value)
    assert any(word in str(info.value) for word in ("exploded", "non-finite")), str(info.value)
    assert good.read_bytes() == good_bytes  # the last good save is kept
    assert load_agent(ALGOS[algo], good).num_timesteps == ROLLOUT  # and it loads with finite weights
    backbone, _ = load_backbone(out / "best.pt")  # best.pt is a good checkpoint
    assert all(bool(torch.isfinite(p).all()) for p in backbone.parameters())


def test_fresh_divergent_runs_name_the_divergence(data, ckpt, tmp_path):
    """lr 1e6 from the start: PPO (whose actions SB3 clips to the box, hiding them from the environment's check)
    stops instead of exiting 0; ReFiT used directly stops on its exploding actions, not on the environment's
    "out of bounds" ValueError."""
    with pytest.raises(DivergenceError, match="exploded"):
        finetune("ppo", "refit_gym/DiffRec-v0", data, ckpt, hyperparams=HP["ppo"](learning_rate=1e6), out=tmp_path / "p",
                 save_freq=ROLLOUT, **QUIET)
    assert not (tmp_path / "p" / "last_model.zip").exists()  # nothing diverged was saved
    load_backbone(tmp_path / "p" / "best.pt", data)  # the selected model is the (good) start
    backbone, _ = load_backbone(ckpt)
    from refit_gym.envs.batched import BatchedDenoisingEnv
    model = ReFiT(backbone, BatchedDenoisingEnv(data, backbone, n_envs=N_ENVS, seed=0), seed=0, learning_rate=1e6)
    with pytest.raises(DivergenceError, match=r"ReFiT at update 2 .*actions exploded"):
        model.learn(5 * ROLLOUT)


def test_run_guard_refuses_exploding_weights(agent_zip):
    model = ReFiT.load(agent_zip)
    guard = RunGuard(lambda m: pytest.fail("must not save"), save_every=1, log=lambda m: None)
    guard.init_callback(model)
    guard.locals, guard.globals = {}, {}
    guard._norm0 = 1.0
    with torch.no_grad():
        next(model.policy.parameters()).mul_(1e6)
    guard.pending = True
    with pytest.raises(DivergenceError, match="parameter norm exploded"):
        guard.on_rollout_start()


def test_validation_collapse_stops_the_run_and_keeps_best(data, ckpt, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(DivergenceError, match=r"validation collapsed at step 80: recall@20"):
        # a ratio above 1 makes every validation a "collapse": the check itself is what is tested
        finetune("refit", "refit_gym/DiffRec-v0", data, ckpt, hyperparams=refit_hp(), out=out, eval_freq=ROLLOUT,
                 collapse_ratio=1.01, **QUIET)
    load_backbone(out / "best.pt", data)


def test_pretraining_divergence_keeps_the_last_good_state(data, tmp_path):
    quiet = dict(progress=False, tensorboard=False, log=lambda m: None)

    def fresh():
        torch.manual_seed(0)
        return build_backbone("diffrec", data, hidden=[16], schedule=dict(steps=T))

    with pytest.raises(PretrainingDivergedError, match=r"(exploded|non-finite).*nothing was saved"):
        pretrain(fresh(), data, PretrainConfig(epochs=2, lr=1e6, batch_size=32, seed=0), out_dir=tmp_path / "a", **quiet)
    assert not (tmp_path / "a" / "last_state.pt").exists() and not (tmp_path / "a" / "best.pt").exists()

    out = tmp_path / "b"
    pretrain(fresh(), data, PretrainConfig(epochs=1, batch_size=32, seed=0), out_dir=out, **quiet)
    st = torch.load(out / "last_state.pt", weights_only=True)
    st["optimizer"]["param_groups"][0]["lr"] = 1e6  # the resumed run's optimizer diverges
    torch.save(st, out / "last_state.pt")
    state = (out / "last_state.pt").read_bytes()
    with pytest.raises(PretrainingDivergedError, match=r"(exploded|non-finite).*last good state kept in .*last_state.pt"):
        pretrain(fresh(), data, PretrainConfig(epochs=3, batch_size=32, seed=0), out_dir=out, resume=True, **quiet)
    assert (out / "last_state.pt").read_bytes() == state


def test_kill_9_mid_run_loses_at_most_one_save_interval(tmp_path):
    """A real ``kill -9`` of ``scripts/train.py`` once it has saved: the kept zip is consistent (every counted
    rollout has its update), the dead run's lock does not block the resume, and the resumed run ends with
    exactly one update per rollout."""
    import subprocess
    import sys
    import time

    repo = Path(__file__).resolve().parents[1]
    full = load_dataset("synthetic")
    torch.manual_seed(0)
    tiny = build_backbone("diffrec", full, hidden=[32], schedule=dict(steps=T)).eval()
    ckpt = save_backbone(tiny, tmp_path / "backbone.pt", meta=dict(n_users=full.n_users))
    hp = tmp_path / "hp.yml"
    hp.write_text(f"refit_gym/DiffRec-v0:\n  n_envs: {N_ENVS}\n  n_timesteps: {1000 * ROLLOUT}\n  learning_rate: 0.001\n")
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(repo), OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, str(repo / "scripts" / "train.py"), "--data", "synthetic", "--checkpoint",
                             str(ckpt), "--hyperparams", str(hp), "--out", str(out), "--save-freq", str(ROLLOUT)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (out / "last_model.zip").is_file() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        time.sleep(0.3)  # let it run on: the kill may land in a rollout, an update or a save
    finally:
        proc.kill()  # SIGKILL
        proc.wait()
    assert (out / "last_model.zip").is_file(), "the run never saved"
    kept = ReFiT.load(out / "last_model.zip")
    assert kept.num_timesteps == kept._n_updates * ROLLOUT > 0
    m = finetune("refit", "refit_gym/DiffRec-v0", full, ckpt, hyperparams=str(hp), out=out, resume=True,
                 n_timesteps=kept.num_timesteps + ROLLOUT, **QUIET)
    assert m["num_timesteps"] == kept.num_timesteps + ROLLOUT
    assert ReFiT.load(out / "last_model.zip")._n_updates == kept._n_updates + 1
    assert not [p.name for p in out.iterdir() if p.name.startswith(".") and p.name != ".lock"]  # no temp file left
