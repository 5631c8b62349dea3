"""Data parallelism (refit_gym.distributed): two gloo processes equal one process on the same global batches.

One spawn of 2 processes runs (a) DiffRec pretraining with the sharded default evaluation, (b) Pathwise, ReFiT
(trajectory and per-item credit) and DDPO fine-tuning, (c) ``scripts/train.py`` (ReFiT), interrupted and resumed,
joining and leaving its own process group; the test process runs them as one process with the same global batch and
compares the trained parameters (the logged update statistics, the metrics, the files written) to float tolerance.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from refit_gym.data import make_synthetic

WORLD = 2
N_ENVS = 8  # global chains per Pathwise rollout
ROLLOUTS = 3


def _free_port() -> int:
    return _free_ports(1)[0]


def _free_ports(n: int) -> list:
    """``n`` distinct free local ports (held open together while they are picked)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _data():
    return make_synthetic(n_users=40, n_items=30, seed=0)


def _adapter(data):
    from refit_gym.diffusion.adapters import DiffRecAdapter

    torch.manual_seed(0)
    return DiffRecAdapter(n_items=data.n_items, hidden=[16], emb_size=4, dropout=0.0, schedule={"steps": 5})


class _RankClock:
    """A fake clock that runs 1 + 3 * rank seconds per reading, so that every rank measures other times: the
    adaptive validation interval must still be the same on every rank (rank 0 decides)."""

    def __init__(self):
        from refit_gym import distributed

        self.now, self.tick = 0.0, 1.0 + 3.0 * distributed.rank()

    def __call__(self):
        self.now += self.tick
        return self.now


def _pretrain(data, out=None):
    """Six epochs of 3 global batches (16, 16, 8 users) under the adaptive validation interval; the last epoch is
    made the best one, so the returned weights are the trained ones. Returns (weights, the last validation's
    metrics, the validated epochs)."""
    from refit_gym.diffusion.training import PretrainConfig, pretrain
    from refit_gym.metrics import evaluate_backbone

    calls = []
    clock = _RankClock()

    def evaluate_fn(a, d, split):
        clock.now += 20.0  # validation is slow next to training
        calls.append(evaluate_backbone(a, d, split))  # the default evaluation: sharded under torch.distributed
        return {"recall@20": float(len(calls))}

    adapter = _adapter(data)
    cfg = PretrainConfig(epochs=6, batch_size=16, timestep_sampling="uniform", patience=0, seed=0)
    res = pretrain(adapter, data, cfg, out_dir=out, device="cpu", tensorboard=False, progress=False,
                   evaluate_fn=evaluate_fn, log=lambda m: None, clock=clock)
    validated = [r["epoch"] for r in res.history if r["valid_seconds"] > 0]
    return {k: v.clone() for k, v in adapter.state_dict().items()}, calls[-1], validated


def _pathwise(data, n_envs):
    from agents import Pathwise
    from refit_gym.envs.batched import BatchedDenoisingEnv

    adapter = _adapter(data).eval()
    env = BatchedDenoisingEnv(data, adapter, n_envs, "refit", "cpu", seed=0)
    model = Pathwise(adapter, env, learning_rate=1e-2, kl_coef=0.1, train_last_k=2, pretrain_coef=0.5, seed=0,
                     device="cpu")
    model.learn(ROLLOUTS * N_ENVS * adapter.schedule.steps)
    return {k: v.detach().clone() for k, v in model.policy.state_dict().items()}, model.num_timesteps


CHAINS = ("refit", "refit-item", "ddpo")
#: statistics of the last update that the ranks reduce: rank 0 logs the one-process values
LOGGED = ("train/item_adv_std", "rollout/reward_mean", "rollout/reward_std", "rollout/ep_rew_mean", "train/loss", "train/policy_loss",
          "train/kl", "train/value_loss", "train/grad_norm", "train/ratio_mean", "train/ratio_max", "train/ratio_min",
          "train/clip_fraction", "train/n_updates")


def _chain(data, n_envs, algo):
    """ReFiT (group baseline, KL, 2 trained steps, gradient accumulated in chunks of 3 rows; or per-item credit on the
    last step) or DDPO (value baseline, 2 epochs of minibatches of 5 of the 16 global rows: the last minibatch has
    one row, so one rank has none)."""
    from stable_baselines3.common.logger import Logger

    from agents import DDPO, ReFiT
    from refit_gym.envs.batched import BatchedDenoisingEnv

    class Recording(Logger):
        def __init__(self):
            super().__init__(None, [])
            self.seen = {}

        def record(self, key, value, exclude=None):
            self.seen[key] = value
            super().record(key, value, exclude)

    adapter = _adapter(data).eval()
    reward = "reconstruction" if algo == "refit-item" else "refit"  # a reward with per-item terms
    env = BatchedDenoisingEnv(data, adapter, n_envs, reward, "cpu", seed=0)
    common = dict(learning_rate=1e-2, n_traj_per_user=2, kl_coef=0.1, train_last_k=2, seed=0, device="cpu")
    if algo == "refit":
        model = ReFiT(adapter, env, batch_size=3, **common)
    elif algo == "refit-item":  # per-item credit: per-item group baselines, item_adv_std reduced
        model = ReFiT(adapter, env, batch_size=3, exploration_scale=10.0,
                      **{**common, "train_last_k": 1, "credit": "item"})
    else:
        model = DDPO(adapter, env, baseline="value", n_epochs=2, batch_size=5, clip_range=0.05, **common)
    model.set_logger(Recording())
    model.learn(ROLLOUTS * N_ENVS * adapter.schedule.steps)
    logged = {k: float(model.logger.seen[k]) for k in LOGGED if k in model.logger.seen}
    return {k: v.detach().clone() for k, v in model.policy.state_dict().items()}, logged


TRAIN_HP = """refit_gym/DiffRec-v0:
  n_envs: 8
  n_timesteps: 120
  learning_rate: 0.01
  n_traj_per_user: 2
  train_last_k: 2
  kl_coef: 0.1
"""


def _train(out: Path, *extra: str):
    """``scripts/train.py`` (ReFiT, 8 chains of 4 users per rollout, T = 5: 40 steps a rollout) on the synthetic data
    from ``out/backbone.pt``."""
    from refit_gym.cli import load_script

    return load_script("train").main(["--algo", "refit", "--data", "synthetic", "--checkpoint", str(out / "backbone.pt"),
                                      "--hyperparams", str(out / "hp.yml"), "--eval-freq", "80", "--save-freq", "40",
                                      "--no-progress", "--device", "cpu", *extra])


def _train_inputs(out: Path) -> None:
    from refit_gym.data import load_dataset
    from refit_gym.diffusion import build_backbone
    from refit_gym.diffusion.checkpoint import save_backbone

    data = load_dataset("synthetic")
    torch.manual_seed(0)
    save_backbone(build_backbone("diffrec", data, hidden=[16], schedule=dict(steps=5)), out / "backbone.pt",
                  meta=dict(n_users=data.n_users))
    (out / "hp.yml").write_text(TRAIN_HP)


def _worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(WORLD), RANK=str(rank))
    torch.set_num_threads(1)
    from refit_gym import distributed

    assert distributed.init_from_env("cpu") and distributed.world_size() == WORLD
    try:
        data = _data()
        pre, metrics, validated = _pretrain(data, out=os.path.join(out, "pretrain"))
        path, steps = _pathwise(data, N_ENVS // WORLD)
        chains = {algo: _chain(data, N_ENVS // WORLD, algo) for algo in CHAINS}
        ports = _free_ports(2) if rank == 0 else [None, None]  # picked late, the same on every rank
        torch.distributed.broadcast_object_list(ports, src=0)
    finally:
        distributed.shutdown()
    # scripts/train.py joins the process group itself (a fresh one) and leaves it at the end
    os.environ["MASTER_PORT"] = str(ports[0])
    first = _train(Path(out), "--out", os.path.join(out, "two"), "-n", "80")
    if rank == 0:
        shutil.copytree(os.path.join(out, "two"), os.path.join(out, "two-first"))
    os.environ["MASTER_PORT"] = str(ports[1])
    resumed = _train(Path(out), "--out", os.path.join(out, "two"), "--resume", "-n", "120")
    left = not torch.distributed.is_initialized()
    torch.save({"pretrain": pre, "metrics": metrics, "validated": validated, "pathwise": path, "steps": steps, **chains,
                "train": {"first": first["num_timesteps"], "resumed": resumed, "left": left}},
               os.path.join(out, f"rank{rank}.pt"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    _train_inputs(out)
    mp.spawn(_worker, args=(_free_port(), str(out)), nprocs=WORLD, join=True)
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]
    torch.set_num_threads(1)
    data = _data()
    single = {"pretrain": _pretrain(data), "pathwise": _pathwise(data, N_ENVS),
              **{algo: _chain(data, N_ENVS, algo) for algo in CHAINS},
              "train": _train(out, "--out", str(out / "one"))}
    # the 2-process run's first part (2 rollouts) resumed by one process (n_envs is the global batch on any N)
    shutil.copytree(out / "two-first", out / "two-then-one")
    single["resumed_alone"] = _train(out, "--out", str(out / "two-then-one"), "--resume", "-n", "120")
    return out, ranks, single


def _assert_close(a, b, rtol=1e-5, atol=1e-6):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=rtol, atol=atol, msg=lambda m: f"{k}: {m}")


def test_pretraining_two_processes_equal_one(runs):
    out, ranks, single = runs
    weights, metrics, _ = single["pretrain"]
    # the adaptive interval followed rank 0's clock on every rank: the same epochs, not all of them
    assert ranks[0]["validated"] == ranks[1]["validated"] and ranks[0]["validated"][-1] == 5
    assert len(ranks[0]["validated"]) < 6
    for r in ranks:
        _assert_close(r["pretrain"], weights)
        for key, value in metrics.items():  # the sharded evaluation reduces to the same metrics
            assert r["metrics"][key] == pytest.approx(value, rel=1e-6, abs=1e-9), key
    assert metrics["n_users_evaluated"] == 40
    assert not np.allclose(weights["net.emb.weight"].numpy(), _adapter(_data()).state_dict()["net.emb.weight"].numpy())
    assert (out / "pretrain" / "best.pt").is_file() and (out / "pretrain" / "last_state.pt").is_file()  # rank 0 wrote


def test_pathwise_two_processes_equal_one(runs):
    _, ranks, single = runs
    weights, steps = single["pathwise"]
    for r in ranks:
        assert r["steps"] == steps == ROLLOUTS * N_ENVS * 5  # global environment steps
        _assert_close(r["pathwise"], weights)


@pytest.mark.parametrize("algo", CHAINS)
def test_refit_and_ddpo_two_processes_equal_one(runs, algo):
    """Users sharded whole (group baselines on one rank), losses over the global batch, DDPO's minibatches drawn
    over the global rows: the same parameters as one process, and rank 0 logs the one-process statistics."""
    _, ranks, single = runs
    weights, logged = single[algo]
    assert not torch.equal(weights["denoiser.net.emb.weight"], _adapter(_data()).state_dict()["net.emb.weight"])
    assert {"rollout/reward_std", "train/kl", "train/ratio_max"} <= logged.keys()
    assert ("train/clip_fraction" in logged) == (algo == "ddpo")
    # per-item advantages divide item-term differences by the std of 2 copies' rewards: the rounding of rewards
    # computed in batches of another size is amplified (to ~1e-4 relative in the gradient, 1e-6 in the weights)
    rtol, atol = (1e-3, 2e-5) if algo == "refit-item" else (1e-4, 1e-6)
    for r in ranks:
        _assert_close(r[algo][0], weights, atol=atol)
    for key, value in logged.items():
        assert ranks[0][algo][1][key] == pytest.approx(value, rel=rtol, abs=1e-6), key


def test_train_two_processes_equal_one_and_resume(runs):
    """``scripts/train.py`` under 2 processes, stopped after 2 rollouts and resumed for the 3rd (by 2 processes, and
    by one): the same final backbone and metrics as one uninterrupted process; rank 0 alone wrote the output folder
    (the same files as one process: one best.pt, final.pt, last_model.zip, ...); every rank returned the metrics and
    left its process group."""
    from refit_gym.diffusion import load_backbone

    out, ranks, single = runs
    one, two = out / "one", out / "two"
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())
    assert {"best.pt", "final.pt", "last_model.zip", "metrics.json", "progress.csv", "run.json"} <= {p.name for p in two.iterdir()}
    a, _ = load_backbone(one / "final.pt")
    for other in (two, out / "two-then-one"):  # resumed on 2 processes, and on one
        b, _ = load_backbone(other / "final.pt")
        _assert_close(b.state_dict(), a.state_dict(), atol=1e-5)  # Adam after 3 updates: gradient rounding, normalised
    assert not torch.equal(a.state_dict()["net.emb.weight"], _train_start(out)["net.emb.weight"])
    written = json.loads((two / "metrics.json").read_text())
    for r in ranks:
        assert r["train"]["first"] == 80 and r["train"]["left"]
        assert r["train"]["resumed"]["num_timesteps"] == single["train"]["num_timesteps"] == 120
        for name in ("pretrained", "final", "best"):
            for split in ("valid", "test"):
                for key, value in single["train"][name][split].items():
                    assert r["train"]["resumed"][name][split][key] == pytest.approx(value, rel=1e-5, abs=1e-7)
                    assert written[name][split][key] == pytest.approx(value, rel=1e-5, abs=1e-7)


def _train_start(out: Path):
    from refit_gym.diffusion import load_backbone

    return load_backbone(out / "backbone.pt")[0].state_dict()


def test_all_reduce_gradients_keeps_unused_parameters_without_gradient():
    """A parameter no rank used keeps grad None (as on one process: the optimizer skips it; zeros would move Adam's
    moments); one that some rank used gets the sum, zeros standing for the ranks that did not."""
    out = mp.get_context("spawn").Queue()
    mp.spawn(_grad_worker, args=(_free_port(), out), nprocs=WORLD, join=True)
    results = sorted(out.get() for _ in range(WORLD))
    for rank, (used, unused, extra) in results:
        assert used == [1.0, 1.0] and unused is None and extra == [3.0], rank


def _grad_worker(rank: int, port: int, out) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(WORLD), RANK=str(rank))
    from refit_gym import distributed

    distributed.init_from_env("cpu")
    try:
        used, unused = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(1))
        if rank == 0:  # rank 1 has no rows: no gradient at all
            used.sum().backward()
        extra = distributed.all_reduce_gradients([used, unused], [1.0 + rank])
        out.put((rank, (used.grad.tolist(), unused.grad, extra.tolist())))
    finally:
        distributed.shutdown()


def test_single_process_helpers_are_identities():
    from refit_gym import distributed

    assert not distributed.active() and distributed.rank() == 0 and distributed.world_size() == 1
    assert distributed.is_main() and distributed.shard_bounds(7) == (0, 7)
    assert distributed.all_reduce_sum([1.0, 2.0]).tolist() == [1.0, 2.0]
    t = torch.arange(3.0)
    assert distributed.gather_rows(t, 3) is t
    assert distributed.all_agree(True) and not distributed.all_agree(False)
    assert distributed.all_reduce_max([1.0, -2.0]).tolist() == [1.0, -2.0]
    assert distributed.mean_std(torch.tensor([1.0, 3.0])) == (2.0, 1.0)
    assert distributed.all_reduce_gradients([torch.nn.Parameter(torch.ones(1))], [2.0]).tolist() == [2.0]


def test_host_collectives_use_cuda_tensors_under_nccl(monkeypatch):
    """NCCL reduces only CUDA tensors: the float / flag collectives put theirs on the current CUDA device under
    NCCL and on the CPU under gloo (the NCCL path itself needs GPUs; this checks the choice it depends on)."""
    from refit_gym import distributed

    assert distributed.collective_device() == torch.device("cpu")  # no process group
    monkeypatch.setattr(distributed, "active", lambda: True)
    monkeypatch.setattr(distributed.dist, "get_backend", lambda *a: "gloo")
    assert distributed.collective_device() == torch.device("cpu")
    monkeypatch.setattr(distributed.dist, "get_backend", lambda *a: "nccl")
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    assert distributed.collective_device() == torch.device("cuda", 1)
