"""Data parallelism (refit_gym.distributed): two gloo processes equal one process on the same global batches.

One spawn of 2 processes runs (a) DiffRec pretraining with the sharded default evaluation and (b) Pathwise
fine-tuning; the test process runs both as one process with the same global batch and compares the trained
parameters to float tolerance.
"""
from __future__ import annotations

import os
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from refit_gym.data import make_synthetic

WORLD = 2
N_ENVS = 8  # global chains per Pathwise rollout
ROLLOUTS = 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def _worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(WORLD), RANK=str(rank))
    torch.set_num_threads(1)
    from refit_gym import distributed

    assert distributed.init_from_env("cpu") and distributed.world_size() == WORLD
    try:
        data = _data()
        pre, metrics, validated = _pretrain(data, out=os.path.join(out, "pretrain"))
        path, steps = _pathwise(data, N_ENVS // WORLD)
        torch.save({"pretrain": pre, "metrics": metrics, "validated": validated, "pathwise": path, "steps": steps},
                   os.path.join(out, f"rank{rank}.pt"))
    finally:
        distributed.shutdown()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(_free_port(), str(out)), nprocs=WORLD, join=True)
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    torch.set_num_threads(1)
    data = _data()
    single = {"pretrain": _pretrain(data), "pathwise": _pathwise(data, N_ENVS)}
    return out, ranks, single


def _assert_close(a, b):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=lambda m: f"{k}: {m}")


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


def test_single_process_helpers_are_identities():
    from refit_gym import distributed

    assert not distributed.active() and distributed.rank() == 0 and distributed.world_size() == 1
    assert distributed.is_main() and distributed.shard_bounds(7) == (0, 7)
    assert distributed.all_reduce_sum([1.0, 2.0]).tolist() == [1.0, 2.0]
    t = torch.arange(3.0)
    assert distributed.gather_rows(t, 3) is t
