"""Attacks and faults (issue 13): every file the library reads, every crash, every second run, every divergence.

Each test performs one attack or fault and asserts either a *named* error (its class and the file, field or
value in the message) or the *intact* state afterwards (no code ran, nothing lost or mixed, the last good
checkpoint still loads). Tiny synthetic data and models: the whole file runs in well under a minute on 2 cores.
"""
from __future__ import annotations

import base64
import errno
import json
import os
import signal
import warnings
import zipfile
from pathlib import Path

import cloudpickle
import numpy as np
import pytest
import torch

from agents import DDPO, ReFiT, SafeA2C
from agents.finetune import finetune
from agents.guards import DivergenceError, RunGuard, TrainingInterrupted, check_train_state
from agents.refit import NonFiniteTrainingError
from refit_gym.data import load_dataset
from refit_gym.data.dataset import DataError, DataWarning, InteractionData, dedup_pairs
from refit_gym.data.synthetic import make_synthetic
from refit_gym.diffusion import build_backbone, load_backbone, save_backbone
from refit_gym.diffusion.checkpoint import CheckpointError
from refit_gym.diffusion.divergence import PretrainingDivergedError
from refit_gym.diffusion.training import PretrainConfig, pretrain
from refit_gym.envs.batched import BatchedDenoisingEnv
from refit_gym.io_safety import (OutputLockedError, RunLock, atomic_write, cli_errors, load_agent, read_json_file,
                                 save_agent_atomic, unique_tmp)

T, N_ENVS = 5, 16
ROLLOUT = T * N_ENVS  # environment steps per rollout (one update each)
QUIET = dict(log=lambda msg: None)


@pytest.fixture(scope="module")
def data():
    return make_synthetic(n_users=64, n_items=120, seed=0)


@pytest.fixture(scope="module")
def ckpt(data, tmp_path_factory):
    torch.manual_seed(0)
    tiny = build_backbone("diffrec", data, hidden=[32], schedule=dict(steps=T)).eval()
    return save_backbone(tiny, tmp_path_factory.mktemp("ckpt") / "backbone.pt", meta=dict(n_users=data.n_users))


def refit_hp(**kw):
    return dict(dict(n_envs=N_ENVS, n_timesteps=4 * ROLLOUT, learning_rate=1e-3, n_traj_per_user=4), **kw)


def sb3_hp(**kw):
    return dict(dict(n_envs=N_ENVS, n_timesteps=3 * ROLLOUT, n_steps=T, learning_rate=1e-3,
                     policy_kwargs="dict(log_prob_reduction='mean', net_arch=[16])"), **kw)


HP = {"refit": refit_hp, "ddpo": refit_hp, "ppo": lambda **kw: sb3_hp(batch_size=40, n_epochs=1, **kw), "a2c": sb3_hp}


@pytest.fixture(scope="module")
def agent_zip(data, ckpt, tmp_path_factory):
    """A genuine ReFiT agent zip after one update."""
    backbone, _ = load_backbone(ckpt)
    model = ReFiT(backbone, BatchedDenoisingEnv(data, backbone, n_envs=N_ENVS, seed=0), seed=0, learning_rate=1e-3)
    model.learn(ROLLOUT)
    path = tmp_path_factory.mktemp("agent") / "agent.zip"
    model.save(path)
    return path


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


# ============================================================================ code execution
@pytest.mark.parametrize("key", ["lr_schedule", "learning_rate", "observation_space", "policy_class"])
def test_tampered_agent_zip_runs_no_code(agent_zip, tmp_path, key):
    marker = tmp_path / "pwned"
    cmd = f"touch {marker}"

    def evil(progress, cmd=cmd):  # a cloudpickled function (by value: defined in a test)
        os.system(cmd)
        return 1e-3

    bad = serialized(evil) if key in ("lr_schedule", "learning_rate") else serialized(Payload(marker))
    path = rewrite_zip(agent_zip, tmp_path / "evil.zip", edit_data=lambda d: d.__setitem__(key, bad))
    before = path.read_bytes()
    if key == "lr_schedule":  # rebuilt from learning_rate by SB3: never decoded at all
        model = ReFiT.load(path)
        model.lr_schedule(1.0)
    else:
        with pytest.raises(CheckpointError, match=rf"evil\.zip: field 'data\.{key}': refuses to unpickle global"):
            ReFiT.load(path)
        with pytest.raises(CheckpointError, match=f"data.{key}"):
            load_agent(SafeA2C, path)
    assert not marker.exists() and path.read_bytes() == before


def test_resume_from_tampered_zip_refuses_and_creates_nothing(data, ckpt, tmp_path):
    out, marker = tmp_path / "run", tmp_path / "pwned"
    finetune("refit", "refit_gym/DiffRec-v0", data, ckpt, hyperparams=refit_hp(n_timesteps=ROLLOUT), out=out, **QUIET)
    rewrite_zip(out / "last_model.zip", tmp_path / "evil.zip",
                edit_data=lambda d: d.__setitem__("learning_rate", serialized(Payload(marker))))
    os.replace(tmp_path / "evil.zip", out / "last_model.zip")
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != "hyperparams.yml"}
    with pytest.raises(CheckpointError, match="last_model.zip: field 'data.learning_rate'"):
        finetune("refit", "refit_gym/DiffRec-v0", data, ckpt, hyperparams=refit_hp(n_timesteps=2 * ROLLOUT), out=out,
                 resume=True, **QUIET)
    assert not marker.exists()
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != "hyperparams.yml"} == before


@pytest.mark.parametrize("fault, match", [
    ("negative_steps", r"field 'data.num_timesteps' is -5"),
    ("nan_weights", r"field 'policy\..*' holds non-finite values"),
    ("truncated", r"not a readable agent zip"),
    ("no_data", r"no 'data' entry"),
    ("bad_json", r"entry 'data' is not valid JSON"),
])
def test_damaged_agent_zip_is_named(agent_zip, tmp_path, fault, match):
    path = tmp_path / "bad.zip"
    if fault == "negative_steps":
        rewrite_zip(agent_zip, path, edit_data=lambda d: d.__setitem__("num_timesteps", -5))
    elif fault == "nan_weights":
        model = ReFiT.load(agent_zip)
        with torch.no_grad():
            next(model.policy.parameters()).fill_(float("nan"))
        model.save(path)
    elif fault == "truncated":
        path.write_bytes(agent_zip.read_bytes()[:300])
    elif fault == "no_data":
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("policy.pth", b"")
    else:
        rewrite_zip(agent_zip, path, replace={"data": b"{not json"})
    with pytest.raises(CheckpointError, match=match):
        ReFiT.load(path)


def test_ppo_and_a2c_zips_hold_no_pickled_backbone(data, ckpt, tmp_path):
    backbone, _ = load_backbone(ckpt)
    env = BatchedDenoisingEnv(data, backbone, n_envs=N_ENVS, seed=0)
    from agents import DenoiserPolicy
    model = SafeA2C(DenoiserPolicy, env, n_steps=T, policy_kwargs=dict(backbone=backbone))
    model.save(tmp_path / "a2c.zip")
    stored = json.loads(zipfile.ZipFile(tmp_path / "a2c.zip").read("data"))["policy_kwargs"]
    assert "DiffRecAdapter" not in json.dumps(stored) and "backbone_spec" in json.dumps(stored)
    loaded = load_agent(SafeA2C, tmp_path / "a2c.zip", env=env)  # RMSprop (A2C's optimizer) is allow-listed
    assert "backbone" not in loaded.policy_kwargs and loaded.policy_kwargs["optimizer_class"] is torch.optim.RMSprop


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
    assert progress_steps(out) == [ROLLOUT, 2 * ROLLOUT, 3 * ROLLOUT, 4 * ROLLOUT]  # appended, no repeats
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


def test_ctrl_c_saves_at_the_update_boundary_and_resumes(data, ckpt, tmp_path):
    out = tmp_path / "run"

    def interrupt_at_first_validation(msg):
        if msg.startswith(f"step {ROLLOUT}:"):
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(TrainingInterrupted, match=rf"last_model.zip saved at step {ROLLOUT}; continue with --resume"):
        finetune("refit", "refit_gym/DiffRec-v0", data, ckpt, hyperparams=refit_hp(), out=out, eval_freq=ROLLOUT,
                 log=interrupt_at_first_validation)
    saved = ReFiT.load(out / "last_model.zip")
    assert saved.num_timesteps == ROLLOUT and saved._n_updates == 1
    m = finetune("refit", "refit_gym/DiffRec-v0", data, ckpt, hyperparams=refit_hp(), out=out, resume=True, **QUIET)
    assert m["num_timesteps"] == 4 * ROLLOUT and ReFiT.load(out / "last_model.zip")._n_updates == 4
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_cli_prints_one_line(capsys):
    @cli_errors
    def main(argv=None):
        raise TrainingInterrupted("interrupted: OUT/last_model.zip saved at step 80; continue with --resume")

    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 130 and capsys.readouterr().err.strip().count("\n") == 0

    @cli_errors
    def main2(argv=None):
        raise CheckpointError("x.pt: field 'config' is broken")

    with pytest.raises(SystemExit, match=r"^error: x.pt: field 'config' is broken$"):
        main2()
    with pytest.raises(CheckpointError):  # called from Python with arguments: the exception itself
        main2(["--x"])


# ============================================================================ silent wrong data
def diffrec_folder(tmp_path: Path, train, valid, test, empty=()) -> Path:
    folder = tmp_path / "d"
    folder.mkdir(exist_ok=True)
    for name, arr in (("train", train), ("valid", valid), ("test", test)):
        if name in empty:
            (folder / f"{name}_list.npy").write_bytes(b"")
        else:
            np.save(folder / f"{name}_list.npy", np.asarray(arr, dtype=np.int64))
    return folder


BASE = [[0, 0], [1, 1], [2, 2]]


@pytest.mark.parametrize("uid, iid, field", [(0, 2**40, "item"), (2**62, 1, "user"), (3, 2**62 - 1, "item")])
def test_huge_ids_are_refused_before_allocation(tmp_path, uid, iid, field):
    folder = diffrec_folder(tmp_path, [[uid, iid], [1, 1]], BASE, BASE)
    value = uid if field == "user" else iid
    with pytest.raises(DataError, match=rf"train_list.npy: field 'train': row 0 has {field} id {value}, beyond the "
                                        rf"bound \d+ on {field} ids"):
        load_dataset(str(folder))


def test_dedup_is_overflow_free():
    big = np.array([[2**62, 2**62 - 1], [2**62 - 1, 2**62], [2**62, 2**62 - 1], [5, 7]], dtype=np.int64)
    unique, kept, dropped = dedup_pairs(big, n_cols=2**62 + 1)
    assert dropped == 1 and kept.tolist() == [0, 1, 3] and unique.tolist() == big[[0, 1, 3]].tolist()


def test_split_overlaps_are_counted_warned_or_refused(tmp_path):
    folder = diffrec_folder(tmp_path, [[0, 0], [1, 1], [2, 2]], [[0, 1]], [[1, 1], [2, 0]])
    with pytest.warns(DataWarning, match=r"test_list.npy.*train&test 1"):
        d = load_dataset(str(folder))
    assert d.overlap_counts == {"train&valid": 0, "train&test": 1, "valid&test": 0}
    from refit_gym.data.loaders import load_diffrec
    with pytest.raises(DataError, match="pairs present in two splits: train&test 1"):
        load_diffrec(folder, overlap="error")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_synthetic(n_users=40, n_items=50)  # clean data: no warning


def test_empty_npy_and_movielens_overflow_name_the_file(tmp_path):
    folder = diffrec_folder(tmp_path, BASE, BASE, BASE, empty=("valid",))
    with pytest.raises(DataError, match=r"valid_list.npy: field 'valid': cannot read as a numpy array"):
        load_dataset(str(folder))
    ratings = tmp_path / "ratings.dat"
    ratings.write_text("1::2::5::978300760\n99999999999999999999999::3::5::978300761\n")
    with pytest.raises(DataError, match=r"ratings.dat: field 'UserID' line 2: value '99999999999999999999999' is "
                                        r"beyond int64"):
        load_dataset(str(ratings))
    with pytest.raises(DataError, match=r"field 'n_items' is 1099511627776"):
        InteractionData.from_pairs(BASE, BASE, BASE, n_items=2**40)


# ============================================================================ checkpoints trusted too far
def tamper_checkpoint(src: Path, dst: Path, edit) -> Path:
    blob = torch.load(src, weights_only=True)
    edit(blob)
    torch.save(blob, dst)
    return dst


@pytest.mark.parametrize("edit, match", [
    (lambda b: b["config"].__setitem__("bogus", 1), r"field 'config.bogus' is not an argument of backbone 'diffrec'"),
    (lambda b: b["config"].update(n_items=2**20, hidden=[2**20]), r"field 'config' asks for [\d,]+ parameters, beyond the limit"),
    (lambda b: b["config"].__setitem__("n_items", 10**12), r"field 'config.n_items' is 1000000000000, beyond the bound"),
    (lambda b: b["config"]["schedule"].__setitem__("steps", 0), r"field 'config.schedule.steps' is 0"),
    (lambda b: next(iter(b["state_dict"].values())).fill_(float("nan")), r"field 'state_dict\..*' holds non-finite"),
    (lambda b: b.__setitem__("config", [1, 2]), r"field 'config' is a list"),
])
def test_damaged_backbone_checkpoint_is_named(ckpt, tmp_path, edit, match):
    path = tamper_checkpoint(ckpt, tmp_path / "bad.pt", edit)
    with pytest.raises(CheckpointError, match=rf"bad\.pt: {match}"):
        load_backbone(path)


def test_nan_weights_are_never_written(ckpt, tmp_path):
    backbone, _ = load_backbone(ckpt)
    with torch.no_grad():
        next(backbone.parameters()).fill_(float("inf"))
    with pytest.raises(CheckpointError, match=r"best.pt: refusing to write: field 'state_dict\..*' holds non-finite"):
        save_backbone(backbone, tmp_path / "best.pt")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name, text, match", [
    ("train_state.json", "{\"history\": [", r"train_state.json: not valid JSON at line 1"),
    ("train_state.json", "[1, 2]", r"train_state.json: top-level value is a list"),
    ("train_state.json", "{\"train_seconds\": -3}", r"train_state.json: field 'train_seconds' is -3"),
    ("metrics.json", "\x00\x01", r"metrics.json: not valid JSON"),
])
def test_corrupt_state_files_are_named_on_resume(data, ckpt, tmp_path, name, text, match):
    out = tmp_path / "run"
    finetune("refit", "refit_gym/DiffRec-v0", data, ckpt, hyperparams=refit_hp(n_timesteps=ROLLOUT), out=out, **QUIET)
    (out / name).write_text(text)
    with pytest.raises(CheckpointError, match=match):
        finetune("refit", "refit_gym/DiffRec-v0", data, ckpt, hyperparams=refit_hp(n_timesteps=2 * ROLLOUT), out=out,
                 resume=True, **QUIET)
    assert ReFiT.load(out / "last_model.zip").num_timesteps == ROLLOUT  # the saved agent is untouched


def test_train_state_fields_are_checked(tmp_path):
    good = {"history": [{"num_timesteps": 0}], "train_seconds": 1.5, "best_timesteps": 0, "best_valid": {}}
    assert check_train_state(tmp_path / "s.json", good) is good
    with pytest.raises(CheckpointError, match=r"s.json: field 'best_timesteps' is -1"):
        check_train_state(tmp_path / "s.json", dict(good, best_timesteps=-1))
    with pytest.raises(CheckpointError, match=r"s.json: field 'history'"):
        check_train_state(tmp_path / "s.json", dict(good, history=[{"num_timesteps": "x"}]))
    (tmp_path / "m.json").write_text("")
    with pytest.raises(CheckpointError, match=r"m.json: not valid JSON"):
        read_json_file(tmp_path / "m.json")


# ============================================================================ divergence
@pytest.mark.parametrize("algo", ["refit", "ddpo", "ppo", "a2c"])
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
