"""The cost study: FLOP floors counted from shapes (hand-checked on a tiny MLP) and a smoke run of bench_cost."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from refit_gym.data import make_synthetic
from refit_gym.diffusion.adapters import DiffRecAdapter
from refit_gym.experiments.cost import largest_weight, matmul_rate
from refit_gym.experiments.floors import (UnitFlops, count_flops, evaluation_flops, pretrain_epoch_flops,
                                          recipe_rollout_flops, unit_flops)

REPO = Path(__file__).resolve().parents[1]

# DiffRecMLP(n_items=20, hidden=[8], emb_size=4): Linear(4, 4) index embedding, Linear(24, 8) encoder, Linear(8, 20)
# decoder. Forward per row: 2 * (4*4 + 24*8 + 8*20) = 736. Backward of the parameters: every weight gradient
# (736 again) plus the input gradients the chain needs: the decoder's input (2*8*20 = 320) and the encoder's
# input (2*24*8 = 384: its index-embedding part carries a gradient); the noisy x and the sinusoidal embedding
# need none. 736 + 320 + 384 = 1440.
FWD, BWD = 736, 1440


@pytest.fixture(scope="module")
def tiny():
    data = make_synthetic(n_users=30, n_items=20, seed=0)
    torch.manual_seed(0)
    adapter = DiffRecAdapter(n_items=20, hidden=[8], emb_size=4, dropout=0.0, schedule={"steps": 5})
    return data, adapter


def test_unit_flops_of_a_known_mlp(tiny):
    data, adapter = tiny
    u = unit_flops(adapter, data, probe=3)
    assert (u.step_fwd, u.step_bwd) == (FWD, BWD)
    assert (u.ctx_fwd, u.ctx_bwd, u.score_fwd, u.score_bwd) == (0, 0, 0, 0)  # DiffRec: identity context and scores
    assert evaluation_flops(u, 5, 30) == 30 * 5 * FWD
    assert pretrain_epoch_flops(adapter, data, probe=4) == 30 * (FWD + BWD)  # one forward + backward per user
    assert largest_weight(adapter) == largest_weight(adapter, linear_only=True) == (24, 8)  # the encoder 24 -> 8


def test_low_rank_cross_entropy_counts_its_three_products():
    # forward + backward of the chunked full-softmax cross-entropy multiply three times: the scores u W^T, the
    # row gradients p W and the item gradients p^T u (accumulated in place with addmm_, which FlopCounterMode
    # alone misses): 3 x 2 B n d
    from refit_gym.scores import low_rank_cross_entropy
    B, n, d = 7, 50, 4
    u, w = torch.randn(B, d, requires_grad=True), torch.randn(n, d, requires_grad=True)
    assert count_flops(lambda: low_rank_cross_entropy(u, w, torch.arange(B)).mean().backward()) == 3 * 2 * B * n * d


def test_recipe_floors_by_hand():
    u = UnitFlops(ctx_fwd=10, ctx_bwd=20, step_fwd=FWD, step_bwd=BWD, score_fwd=3, score_bwd=6)
    # ReFiT, 8 chains = 2 users x 4 copies, all T = 5 steps trained, KL on
    refit = recipe_rollout_flops(u, 5, "refit", dict(n_envs=8, n_traj_per_user=4, train_last_k=None, kl_coef=0.01),
                                 shared_start=True)
    assert refit == {"context": 2 * 30, "frozen_steps": 0, "sampling": 0, "trained_steps": 8 * 5 * (FWD + BWD),
                     "reference": 8 * 5 * FWD + 2 * 10, "scores": 8 * 3, "extra_epochs": 0, "minibatch_context": 0}
    # Pathwise, 4 chains of 4 users, the last step trained, no KL: frozen steps per user (deterministic start)
    pw = recipe_rollout_flops(u, 5, "pathwise", dict(n_envs=4, n_traj_per_user=1, train_last_k=1, kl_coef=0.0),
                              shared_start=False)
    assert pw == {"context": 4 * 30, "frozen_steps": 4 * 4 * FWD, "sampling": 0, "trained_steps": 4 * (FWD + BWD),
                  "reference": 0, "scores": 4 * (3 + 6), "extra_epochs": 0, "minibatch_context": 0}
    # ReFiT with score_grad: the scores' backward to the item-scoring parameters (half of score_bwd), x0 held fixed
    grad = recipe_rollout_flops(u, 5, "refit", dict(n_envs=8, n_traj_per_user=4, train_last_k=1, score_grad=True),
                                shared_start=True)
    assert grad["scores"] == 8 * (3 + 3) and grad["frozen_steps"] == 2 * 4 * FWD
    # DDPO, 3 epochs of minibatches of 40 rows of the 5 * 8 = 40: 3 minibatches, each holding both users
    ddpo = recipe_rollout_flops(u, 5, "ddpo", dict(n_envs=8, n_traj_per_user=4, n_epochs=3, batch_size=40),
                                shared_start=True)
    assert ddpo["extra_epochs"] == 2 * ddpo["trained_steps"]
    assert ddpo["sampling"] == 8 * 5 * FWD  # the states its minibatches read: every chain's steps, forward once
    assert ddpo["minibatch_context"] == pytest.approx(2 * 2 * 30)


@pytest.mark.parametrize("protocol,timed", [("loo", False), ("loo", True), ("user-split", False)])
def test_sequence_pretraining_floor_matches_a_full_count(protocol, timed):
    """The floor counts the rows pretraining reads (``training_rows``: under user-split the train users' windows,
    not every user's row) with their time buckets, and equals one count of the whole epoch's objective."""
    from conftest import walks
    from refit_gym.data.seq_protocols import apply_protocol
    from refit_gym.diffusion.dreamrec import DreamRecAdapter, DreamRecPOIAdapter, time_gap_buckets

    data = apply_protocol(walks(n_users=24, n_items=20, max_len=8, timed=timed), protocol, split_seed=0)
    torch.manual_seed(0)
    cls = DreamRecPOIAdapter if timed else DreamRecAdapter
    adapter = cls.from_data(data, d=16, n_layers=1, heads=2, hidden=[32], emb_size=8, n_time_buckets=4)
    items, times = data.training_rows(adapter.max_len)
    assert protocol == "loo" or len(items) != data.n_users
    seq = torch.as_tensor(items)
    buckets = torch.as_tensor(time_gap_buckets(times, 4)) if timed else None
    full = count_flops(lambda: adapter.sequence_loss(seq, buckets, torch.Generator().manual_seed(0)).backward())
    assert pretrain_epoch_flops(adapter, data, probe=4) == pytest.approx(full, rel=1e-9)


def test_frozen_parameters_count_no_backward():
    """A recipe's units are counted on its agent's backbone: with DreamRec's encoder (and the item table it holds)
    frozen, as DreamRec-CE's Pathwise recipe does, the context has no backward and the scores' backward reaches x0
    only (half of it); the forward passes and the denoiser's backward are unchanged."""
    from agents.policies import freeze_parameters
    from conftest import walks
    from refit_gym.diffusion.dreamrec import DreamRecAdapter

    data = walks(n_users=24, n_items=20, max_len=8)
    torch.manual_seed(0)
    adapter = DreamRecAdapter.from_data(data, d=16, n_layers=1, heads=2, hidden=[32], emb_size=8)
    full = unit_flops(adapter, data, probe=4)
    freeze_parameters(adapter, ["encoder"])
    frozen = unit_flops(adapter, data, probe=4)
    assert full.ctx_bwd > 0 and frozen.ctx_bwd == 0
    assert frozen.score_bwd == full.score_bwd / 2 == frozen.score_fwd
    assert (frozen.ctx_fwd, frozen.step_fwd, frozen.step_bwd, frozen.score_fwd) == \
        (full.ctx_fwd, full.step_fwd, full.step_bwd, full.score_fwd)
    # measure_cost counts a recipe's units on the backbone time_finetune_epoch hands back: the agent's, frozen as the
    # shipped recipe freezes it (DreamRec-CE's Pathwise: the encoder)
    from refit_gym.diffusion.dreamrec import DreamRecCEAdapter
    from refit_gym.experiments.cost import time_finetune_epoch

    ce = DreamRecCEAdapter.from_data(data, d=16, n_layers=1, heads=2, hidden=[32], emb_size=8, schedule={"steps": 4})
    *_, params, tuned = time_finetune_epoch("pathwise", "refit_gym/DreamRecCE-v0", data, ce, "cpu", max_seconds=0.1)
    assert params["frozen"] == ["encoder"] and unit_flops(tuned, data, probe=4).ctx_bwd == 0 < unit_flops(ce, data).ctx_bwd


def test_matmul_rate_is_positive():
    assert matmul_rate(16, 32, 32, min_seconds=0.01, repeats=1) > 0


def test_bench_cost_smoke(capsys):
    spec = importlib.util.spec_from_file_location("bench_cost", REPO / "scripts" / "bench_cost.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    threads = torch.get_num_threads()
    try:
        result = mod.main(["--data", "synthetic", "--threads", "1", "--max-seconds", "0.2", "--probe", "4", "--json"])
    finally:
        torch.set_num_threads(threads)
    out = json.loads(capsys.readouterr().out)
    assert out["operations"].keys() == {"pretrain_epoch", "evaluation", "finetune_refit", "finetune_ddpo",
                                        "finetune_pathwise"}
    assert out["machine"]["threads"] == 1 and out["machine"]["torch"] == torch.__version__
    assert out["env_id"] == "refit_gym/DiffRec-v0"  # the recipes of the backbone's own environment id
    for op in out["operations"].values():
        assert op["seconds"] > 0 and op["flops"] > 0 and op["rate"] > 0 and 0 < op["fraction_timed"] <= 1
        assert op["ratio"] == pytest.approx(op["seconds"] / (op["flops"] / op["rate"]))
        assert op["cpu_seconds"] > 0 and op["ratio_cpu"] == pytest.approx(op["cpu_seconds"] * op["rate_cpu"] / op["flops"])
    for name, op in out["operations"].items():  # every operation but pretraining runs its floor's bare passes too
        assert ("bare_seconds" in op) == (name != "pretrain_epoch")
        if "bare_seconds" in op:
            assert op["bare_seconds"] > 0 and op["library_ratio"] * op["bare_ratio"] == pytest.approx(op["ratio"])
    assert result["operations"]["finetune_refit"]["fraction_timed"] < 1  # scaled from a part of the epoch


@pytest.mark.parametrize("algo, params", [
    ("refit", dict(n_envs=8, n_traj_per_user=4, train_last_k=1, kl_coef=0.01, max_grad_norm=1.0)),
    ("refit", dict(n_envs=8, n_traj_per_user=4, train_last_k=None, kl_coef=0.0)),
    ("ddpo", dict(n_envs=8, n_traj_per_user=4, n_epochs=2, batch_size=12, max_grad_norm=1.0)),
    ("pathwise", dict(n_envs=4, n_traj_per_user=1, train_last_k=1, kl_coef=0.0)),
])
@pytest.mark.parametrize("shared", [True, False])
def test_bare_rollout_runs_exactly_the_floors_passes(tiny, algo, params, shared):
    # the bare loop is the floor made to run: its matmul FLOPs are the floor's, pass for pass (DiffRec: no context,
    # identity scores, so the floor's count is exact here)
    import copy
    from refit_gym.experiments.bare import _BareRecipe, bare_rollout_seconds
    data, adapter = tiny
    bare = _BareRecipe(copy.deepcopy(adapter), data, algo, params, shared)
    inp = bare.inputs()
    floor = sum(recipe_rollout_flops(unit_flops(adapter, data, probe=3), 5, algo, params, shared).values())
    assert count_flops(lambda: bare.rollout(inp)) == floor
    assert bare_rollout_seconds(copy.deepcopy(adapter), data, algo, params, shared, rollouts=2) > 0


def test_bare_evaluation_seconds_scales_a_timed_part(tiny):
    from refit_gym.experiments.bare import bare_evaluation_seconds
    from refit_gym.experiments.cost import evaluated_users
    data, adapter = tiny
    users = evaluated_users(data)
    assert bare_evaluation_seconds(adapter, data, users, batch=4, max_seconds=0.0) > 0  # one batch of 4, scaled
    floor = evaluation_flops(unit_flops(adapter, data, probe=3), 5, 4)
    assert count_flops(lambda: bare_evaluation_seconds(adapter, data, users[:4], batch=4)) == floor


def test_bare_factored_scores_cost_the_floors_score_flops():
    # DreamRec's scores are factored: the bare loop reduces them through the chunked softmax normaliser, which never
    # forms the (B, n_items) matrix; its product and the gradients it forms are the floor's score FLOPs: with x0
    # held fixed (score_grad) score_fwd + score_bwd / 2, differentiated through x0 as well (Pathwise) both
    import numpy as np
    from conftest import walks
    from refit_gym.diffusion.dreamrec import DreamRecAdapter
    from refit_gym.experiments.bare import _reduce
    from refit_gym.diffusion.context import detach_context
    from refit_gym.experiments.floors import probe_conditions

    data = walks(n_users=24, n_items=20, max_len=8)
    torch.manual_seed(0)
    adapter = DreamRecAdapter.from_data(data, d=16, n_layers=1, heads=2, hidden=[32], emb_size=8).eval()
    u = unit_flops(adapter, data, probe=4)
    cond, users = probe_conditions(adapter, data, np.arange(4))
    with torch.no_grad():
        ctx = detach_context(adapter.context(cond, users))
        x = adapter.start(cond, ctx, torch.Generator().manual_seed(0))
    assert count_flops(lambda: _reduce(adapter.reward_scores(x, ctx)).backward()) == 4 * (u.score_fwd + u.score_bwd / 2)
    x = x.clone().requires_grad_(True)
    assert count_flops(lambda: _reduce(adapter.reward_scores(x, ctx)).backward()) == 4 * (u.score_fwd + u.score_bwd)


def test_a_users_copies_share_their_start_so_the_floor_runs_frozen_steps_once_per_user(tiny):
    # DreamRec starts from noise, yet the environment starts the copies of one episode key from one draw, as the
    # agents' groups are: their frozen steps run once per user (ReFiT shares them), and the floor counts them so
    from conftest import walks
    from refit_gym.diffusion.dreamrec import DreamRecAdapter
    from refit_gym.experiments.cost import copies_share_start

    data, adapter = tiny
    seqs = walks(n_users=24, n_items=20, max_len=8)
    torch.manual_seed(0)
    dreamrec = DreamRecAdapter.from_data(seqs, d=16, n_layers=1, heads=2, hidden=[32], emb_size=8)
    assert copies_share_start(data, adapter, "cpu") and copies_share_start(seqs, dreamrec, "cpu", copies=3)
