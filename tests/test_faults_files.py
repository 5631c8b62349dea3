"""Attacks on what the library reads (issue 13): tampered and damaged agent zips, malformed datasets, damaged
backbone checkpoints, corrupt JSON state files. Each test asserts a *named* error (class, and the file, field
or value in the message) and that nothing ran and nothing was changed."""
from __future__ import annotations

import json
import os
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from agents import ReFiT, SafeA2C
from refit_gym.experiments.finetune import finetune
from agents.guards import check_train_state
from refit_gym.data import load_dataset
from refit_gym.data.dataset import DataError, DataWarning, InteractionData, dedup_pairs
from refit_gym.data.synthetic import make_synthetic
from refit_gym.diffusion import load_backbone, save_backbone
from refit_gym.diffusion.checkpoint import CheckpointError
from refit_gym.envs.batched import BatchedDenoisingEnv
from refit_gym.io_safety import load_agent, read_json_file

from fault_helpers import (N_ENVS, QUIET, ROLLOUT, T, Payload, agent_zip, ckpt, copy_run,  # noqa: F401 (fixtures)
                           finished_run, refit_hp, rewrite_zip, serialized)


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


def test_resume_from_tampered_zip_refuses_and_creates_nothing(data, ckpt, finished_run, tmp_path):
    out, marker = copy_run(finished_run, tmp_path / "run"), tmp_path / "pwned"
    rewrite_zip(out / "last_model.zip", tmp_path / "evil.zip",
                edit_data=lambda d: d.__setitem__("learning_rate", serialized(Payload(marker))))
    os.replace(tmp_path / "evil.zip", out / "last_model.zip")
    kept = lambda: {p.name: p.read_bytes() for p in out.iterdir() if p.name not in ("hyperparams.yml", ".lock")}  # noqa: E731
    before = kept()
    with pytest.raises(CheckpointError, match="last_model.zip: field 'data.learning_rate'"):
        finetune("refit", "refit_gym/DiffRec-v0", data, ckpt, hyperparams=refit_hp(n_timesteps=2 * ROLLOUT), out=out,
                 resume=True, **QUIET)
    assert not marker.exists()
    assert kept() == before


@pytest.mark.parametrize("fault, match", [
    ("negative_steps", r"field 'data.num_timesteps' is -5"),
    ("nan_weights", r"field 'policy\..*' holds non-finite values"),
    ("truncated", r"not a readable agent zip"),
    ("no_data", r"no 'data' entry"),
    ("bad_json", r"entry 'data' is not valid JSON"),
], ids=["negative_steps", "nan_weights", "truncated", "no_data", "bad_json"])
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
    from refit_gym.data.diffrec_format import load_diffrec
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
    """Edit a checkpoint's dict and re-sign it (a deliberate attacker recomputes the digest)."""
    from refit_gym.diffusion.checkpoint import state_digest
    blob = torch.load(src, weights_only=True)
    edit(blob)
    if isinstance(blob.get("state_dict"), dict):
        blob["digest"] = state_digest(blob["state_dict"])
    torch.save(blob, dst)
    return dst


@pytest.mark.parametrize("edit, match", [
    (lambda b: b["config"].__setitem__("bogus", 1), r"field 'config.bogus' is not an argument of backbone 'diffrec'"),
    (lambda b: b["config"].update(n_items=2**20, hidden=[2**20]), r"field 'config' asks for [\d,]+ parameters, beyond the limit"),
    (lambda b: b["config"].__setitem__("n_items", 10**12), r"field 'config.n_items' is 1000000000000, beyond the bound"),
    (lambda b: b["config"]["schedule"].__setitem__("steps", 0), r"field 'config.schedule.steps' is 0"),
    (lambda b: next(iter(b["state_dict"].values())).fill_(float("nan")), r"field 'state_dict\..*' holds non-finite"),
    (lambda b: b.__setitem__("config", [1, 2]), r"field 'config' is a list"),
], ids=["unknown_key", "4tb_layer", "huge_int", "steps_0", "nan_weights", "config_list"])
def test_damaged_backbone_checkpoint_is_named(ckpt, tmp_path, edit, match):
    path = tamper_checkpoint(ckpt, tmp_path / "bad.pt", edit)
    with pytest.raises(CheckpointError, match=rf"bad\.pt: {match}"):
        load_backbone(path)


def test_flipped_weight_bit_is_detected(ckpt, tmp_path):
    """PyTorch does not check the zip CRCs: a flipped bit in a weight would load silently without the digest."""
    blob = torch.load(ckpt, weights_only=True)
    key = next(iter(blob["state_dict"]))
    blob["state_dict"][key].view(torch.int32)[0] ^= 1  # one bit of one weight, digest left as written
    torch.save(blob, tmp_path / "flipped.pt")
    with pytest.raises(CheckpointError, match=r"flipped.pt: field 'state_dict' does not match the file's field 'digest'"):
        load_backbone(tmp_path / "flipped.pt")


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
], ids=["truncated_json", "wrong_type", "negative_seconds", "binary_metrics"])
def test_corrupt_state_files_are_named_on_resume(data, ckpt, finished_run, tmp_path, name, text, match):
    out = copy_run(finished_run, tmp_path / "run")
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


def test_damaged_resume_state_and_hyperparameter_file_are_named(data, tmp_path):
    from refit_gym.experiments.hyperparams import FinetuneError, load_hyperparams
    from refit_gym.diffusion import build_backbone
    from refit_gym.diffusion.training import PretrainConfig, pretrain
    out = tmp_path / "pre"
    quiet = dict(out_dir=out, progress=False, tensorboard=False, log=lambda m: None)
    pretrain(build_backbone("diffrec", data, hidden=[8], schedule=dict(steps=T)), data,
             PretrainConfig(epochs=1, batch_size=32), **quiet)
    st = torch.load(out / "last_state.pt", weights_only=True)
    next(iter(st["model"].values())).view(torch.int32).reshape(-1)[0] ^= 1  # one flipped bit, digest as written
    torch.save(st, out / "last_state.pt")
    with pytest.raises(CheckpointError, match=r"last_state.pt: field 'model' does not match the file's field 'digest'"):
        pretrain(build_backbone("diffrec", data, hidden=[8], schedule=dict(steps=T)), data,
                 PretrainConfig(epochs=2, batch_size=32), resume=True, **quiet)
    bad = tmp_path / "hp.yml"
    bad.write_text("refit_gym/DiffRec-v0: [unclosed\n")
    with pytest.raises(FinetuneError, match=r"hp.yml: not valid YAML"):
        load_hyperparams("refit", "refit_gym/DiffRec-v0", bad)
