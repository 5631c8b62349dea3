"""Sequential fine-tuning: prefix -> next-item targets, the reward scoring with the trained backbone, the
differentiable terminal reward, the Pathwise agent, the environment's default reward and sequential evaluation."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from stable_baselines3.common.callbacks import BaseCallback

from conftest import REPO, tiny_seq_folder, walks
from refit_gym.data.sequential import SequentialData
from refit_gym.diffusion.checkpoint import save_backbone
from refit_gym.diffusion.dreamrec import DreamRecAdapter
from refit_gym.envs import BatchedDenoisingEnv
from refit_gym.rewards.sequential import SequentialCollaborativeReward

torch.set_num_threads(1)
T = 4
SEQ_KW = dict(d=8, hidden=[16], n_layers=1, schedule=dict(noise_schedule="cosine", steps=T, mean_type="x0"))


@pytest.fixture(scope="module")
def repeats() -> SequentialData:
    """Sequences with repeats and one longer than max_len = 4."""
    train = [[0, 1, 0, 2, 3], [4, 5, 4, 6], [7, 8], [1], [2, 3, 9, 2, 5, 6, 7]]
    return SequentialData.from_sequences(train, [5, 7, 9, 2, 1], [6, 8, 0, 3, 4], n_items=10, max_len=4)


def backbone(data, seed=0) -> DreamRecAdapter:
    torch.manual_seed(seed)
    return DreamRecAdapter.from_data(data, **SEQ_KW).eval()


def test_prefix_targets_are_new_items_after_a_hidden_tail(repeats):
    """targets='random': the target is a first occurrence among the last max_len positions, the visible items are
    exactly the prefix's, and the backbone's condition is the prefix in order (a later repeat never leaks in)."""
    reward = SequentialCollaborativeReward(repeats, targets="random", hop_weight=0.1)
    adapter = backbone(repeats)
    seqs = [repeats.train_items[repeats.train_ptr[u]:repeats.train_ptr[u + 1]].tolist() for u in range(5)]
    drawn = {u: set() for u in range(5)}
    users = np.arange(5)
    for k in range(60):
        state = reward.prepare(users, np.full(5, 1000 + 7919 * k, dtype=np.uint64))
        cond = adapter.encode_condition(users, state.visible, hidden_tail=state.hidden_tail)
        for u, s in enumerate(seqs):
            held = state.heldout[u].indices.tolist()
            p = len(s) - int(state.hidden_tail[u])
            assert sorted(state.visible[u].indices.tolist()) == sorted(set(s[:p]))
            if held:
                assert held == [s[p]] and s[p] not in s[:p] and p >= max(1, len(s) - repeats.max_len)
                drawn[u].add(p)
            kept = [int(i) for i in cond[u] if i != repeats.n_items]
            assert kept == s[max(len(s) - repeats.max_len, 0):p]  # the stored window, cut at the target
    # every eligible position is drawn; user 3 (one item) never has a target
    assert drawn == {0: {1, 3, 4}, 1: {1, 3}, 2: {1}, 3: set(), 4: {4, 5, 6}}


def test_unmasked_softmax_ranks_the_target_against_every_item(repeats):
    """mask_condition=False: the likelihood is log softmax over *every* item (prefix items included), dense and
    factored scores alike, and a repeat can be the target; the default masks the prefix items."""
    from refit_gym.scores import LowRankScores

    users, keys = np.arange(5), np.arange(5, dtype=np.uint64) * 7919 + 11
    u, w = torch.randn(5, 3), torch.randn(repeats.n_items, 3)
    for mask in (True, False):
        reward = SequentialCollaborativeReward(repeats, targets="random", hop_weight=0.0, mask_condition=mask)
        state = reward.prepare(users, keys)
        z = u @ w.t()
        if mask:
            z = z.index_put((torch.as_tensor(state.visible.tocoo().row, dtype=torch.long),
                             torch.as_tensor(state.visible.tocoo().col, dtype=torch.long)), torch.tensor(-np.inf))
        logp = z - torch.logsumexp(z, dim=1, keepdim=True)
        held = state.heldout.tocoo()
        expected = torch.zeros(5).index_put_((torch.as_tensor(held.row, dtype=torch.long),),
                                             logp[held.row, held.col], accumulate=True)
        for scores in (u @ w.t(), LowRankScores(u, w)):
            got = reward.components(scores, state)["likelihood"]
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    reward = SequentialCollaborativeReward(repeats, targets="random", hop_weight=0.1, mask_condition=False)
    drawn = set()
    for k in range(60):
        state = reward.prepare(users, np.full(5, 1000 + 7919 * k, dtype=np.uint64))
        drawn.add(len(repeats.train_items[repeats.train_ptr[0]:repeats.train_ptr[1]]) - int(state.hidden_tail[0]))
    assert drawn == {1, 2, 3, 4}  # user 0 = [0, 1, 0, 2, 3]: position 2 repeats item 0


def test_last_targets_unchanged(repeats):
    """targets='last' (the default) still holds out the last item, deterministically, with no hidden tail."""
    state = SequentialCollaborativeReward(repeats).prepare(np.arange(5), np.arange(5, dtype=np.uint64))
    assert state.hidden_tail is None and state.heldout[0].indices.tolist() == [3]
    with pytest.raises(ValueError, match="targets='next'"):
        SequentialCollaborativeReward(repeats, targets="next")


def run_chain(env, seed=0):
    torch.manual_seed(seed)
    env.reset_tensors(users=np.arange(env.num_envs) % env.num_users, seed=seed)
    x = None
    for _ in range(T):
        x = torch.randn(env.num_envs, env.adapter.action_dim, requires_grad=True)
        _, reward, done, _ = env.step_tensors(x)
    assert done
    return x, reward


def test_terminal_reward_is_the_step_reward_with_gradients(repeats):
    data = walks()
    env = BatchedDenoisingEnv(data, backbone(data), n_envs=6, reward="refit-seq", reward_kwargs=dict(targets="random"))
    x0, step_reward = run_chain(env)
    r = env.terminal_reward(x0)
    assert torch.allclose(r, step_reward) and r.requires_grad
    r.sum().backward()
    assert x0.grad is not None and torch.isfinite(x0.grad).all() and x0.grad.abs().sum() > 0
    emb = env.adapter.encoder.item_emb.weight
    assert emb.grad is not None and emb.grad.abs().sum() > 0  # scores() has parameters: they get the gradient too
    with pytest.raises(ValueError, match="not the final state"):
        env.terminal_reward(x0.detach() + 1.0)
    env.reset_tensors(users=np.arange(6))
    with pytest.raises(RuntimeError, match="at t = 4"):
        env.terminal_reward(x0)
    topk = BatchedDenoisingEnv(data, backbone(data), n_envs=6, reward="topk")
    x0, _ = run_chain(topk)
    with pytest.raises(NotImplementedError, match="no differentiable torch form"):
        topk.terminal_reward(x0)


def test_agents_make_the_environment_score_with_the_trained_backbone():
    """The reward reads the policy's item embeddings, not a frozen copy: the environment's adapter is the
    policy's denoiser, so changing the policy's embeddings changes the terminal reward."""
    from agents import Pathwise, ReFiT

    data = walks()
    for cls in (ReFiT, Pathwise):
        env = BatchedDenoisingEnv(data, backbone(data), n_envs=8, reward="refit-seq")
        model = cls(backbone(data), env, seed=0, n_traj_per_user=2, device="cpu")
        assert env.adapter is model.policy.denoiser
        x0, before = run_chain(env)
        with torch.no_grad():
            model.policy.denoiser.encoder.item_emb.weight.mul_(3.0)
        assert not torch.allclose(env.terminal_reward(x0.detach()), before)
    with pytest.raises(ValueError, match="n_items"):
        env.set_backbone(backbone(SequentialData.from_sequences([[0, 1]], [2], [3], n_items=5, max_len=8)))


def test_copies_of_an_episode_share_their_noisy_start():
    """DreamRec starts from pure noise: the episodes of a batch that share (user, key) (ReFiT's copies of a user)
    start from one x_T, so their per-user baseline compares only the policy's noise; any other pair differs."""
    from refit_gym.envs.core import first_of_episodes

    data = walks()
    env = BatchedDenoisingEnv(data, backbone(data), n_envs=5, reward="refit-seq")
    users, keys = np.array([3, 3, 4, 3, 4]), np.array([11, 11, 11, 12, 11], dtype=np.uint64)
    first, inverse = first_of_episodes(users, keys)
    np.testing.assert_array_equal(first, [0, 2, 3])
    np.testing.assert_array_equal(inverse, [0, 0, 1, 2, 1])
    x = env.reset_tensors(users=users, keys=keys)["x"]
    torch.testing.assert_close(x[0], x[1], rtol=0, atol=0)
    torch.testing.assert_close(x[2], x[4], rtol=0, atol=0)
    for a, b in ((0, 2), (0, 3), (2, 3)):
        assert not torch.equal(x[a], x[b])
    # a batch of distinct episodes draws as before: one draw for the whole batch
    distinct = env.reset_tensors(users=np.array([3, 4, 3, 4, 5]), keys=np.arange(5, dtype=np.uint64))["x"]
    assert len({tuple(row.tolist()) for row in distinct}) == 5


@pytest.mark.parametrize("algo", ["refit", "ddpo"])
def test_condition_encoder_runs_once_per_user(algo):
    """The copies of a user share its condition: the agent runs the sequence encoder on one row per user in the
    rollout and in every update chunk, and the update equals the one with a context per trajectory."""
    from agents import DDPO, ReFiT

    data = walks()
    cls = {"refit": ReFiT, "ddpo": DDPO}[algo]
    models = []
    for share in (True, False):
        env = BatchedDenoisingEnv(data, backbone(data), n_envs=8, reward="refit-seq")
        model = cls(backbone(data), env, seed=0, n_traj_per_user=4, kl_coef=0.1, train_last_k=3, batch_size=12,
                    device="cpu")
        if not share:
            model._shared_conditions = lambda condition, users: torch.arange(condition.shape[0])
        rows = []
        for m in (model.policy.denoiser.encoder, model.reference.encoder):  # count the rows of every encoder call
            m.register_forward_hook(lambda mod, inp, out: rows.append(inp[0].shape[0]))
            m.last = lambda seq, *a, _last=m.last: (rows.append(seq.shape[0]), _last(seq, *a))[1]
        model.learn(2 * 8 * model.policy.steps)
        models.append(model)
        # 8 chains = 2 users x 4 copies of one episode each: after the first reset of learn()'s setup (8 distinct
        # users), the environment encodes its 2 distinct conditions at each reset, and each rollout's frozen steps
        # run once per user in both cases; without shared contexts every update chunk encodes one row per trajectory
        assert rows[0] == 8
        assert set(rows[1:]) == {2} if share else max(rows[1:]) > 2, rows
    for a, b in zip(models[0].policy.parameters(), models[1].policy.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("train_last_k", [1, 2])
def test_antithetic_copies_mirror_their_noise_at_the_first_trained_step(train_last_k):
    """antithetic=True: the copies of a user share the first trained step's state, and copies i and i + n/2 take the
    noise e and -e there (their actions average to the shared mean, their log-probabilities are equal); later trained
    steps draw as usual; an odd number of copies is refused."""
    from agents import ReFiT

    data, n = walks(), 4
    for antithetic in (True, False):
        env = BatchedDenoisingEnv(data, backbone(data), n_envs=8, reward="refit-seq")
        model = ReFiT(backbone(data), env, seed=0, n_traj_per_user=n, train_last_k=train_last_k, antithetic=antithetic,
                      device="cpu")
        _, callback = model._setup_learn(1, None)
        traj = model.collect_trajectories(callback)
        state, action = (traj.xs[s].view(-1, n, traj.xs.shape[-1]) for s in (0, 1))
        assert torch.equal(state, state[:, :1].expand_as(state))
        pair_sum, log_prob = action[:, :2] + action[:, 2:], traj.log_prob[0].view(-1, 2, n // 2)  # (users, 2, n/2)
        assert not torch.equal(action[:, 0], action[:, 1])
        mirrored = torch.allclose(pair_sum, pair_sum[:, :1].expand_as(pair_sum), atol=1e-5) \
            and torch.allclose(log_prob[:, 0], log_prob[:, 1], rtol=1e-5)
        assert mirrored == antithetic
        if train_last_k > 1:  # the next trained step's copies no longer share their state: independent noise
            later = traj.xs[2].view(-1, n, traj.xs.shape[-1]) - traj.xs[1].view(-1, n, traj.xs.shape[-1])
            assert not torch.allclose(later[:, :2], -later[:, 2:], atol=1e-3)
    model.learn(2 * 8 * model.policy.steps)
    assert all(torch.isfinite(p).all() for p in model.policy.parameters())
    with pytest.raises(ValueError, match="even n_traj_per_user"):
        ReFiT(backbone(data), env, n_traj_per_user=3, antithetic=True, device="cpu")
    paired = ReFiT(backbone(data), env, seed=0, n_traj_per_user=n, antithetic=True, device="cpu")
    _, callback = paired._setup_learn(1, None)
    reset = paired.driver.reset  # copies that start from different x_T cannot be paired
    paired.driver.reset = lambda *a: (lambda obs: dict(obs, x=obs["x"] + torch.randn_like(obs["x"])))(reset(*a))
    with pytest.raises(ValueError, match="start from different x_T"):
        paired.collect_trajectories(callback)


def test_pathwise_raises_a_differentiable_reward_and_refuses_others(tmp_path):
    from agents import Pathwise
    from refit_gym.rewards import FunctionReward

    data = walks()
    target = torch.randn(data.n_items)
    reward = FunctionReward(data, f=lambda s, ctx: -(s - target).pow(2).mean(1), differentiable=True)
    env = BatchedDenoisingEnv(data, backbone(data), n_envs=16, reward=reward, seed=0)
    model = Pathwise(backbone(data), env, learning_rate=3e-2, train_last_k=None, seed=0, device="cpu")
    rewards = []

    class Record(BaseCallback):
        def _on_step(self) -> bool:
            return True

        def _on_rollout_end(self) -> None:
            rewards.append(float(self.locals["batch"].reward.detach().mean()))

    model.learn(15 * 16 * T, callback=Record())
    assert len(rewards) == 15 and np.mean(rewards[-3:]) > np.mean(rewards[:3])
    model.save(tmp_path / "pw.zip")
    loaded = Pathwise.load(tmp_path / "pw.zip", env=env, device="cpu")
    assert loaded.sample_noise and loaded.policy.train_last_k is None and loaded.num_timesteps == model.num_timesteps
    for a, b in zip(model.policy.parameters(), loaded.policy.parameters()):
        assert torch.equal(a, b)
    topk = BatchedDenoisingEnv(data, backbone(data), n_envs=16, reward="topk")
    with pytest.raises(ValueError, match="Pathwise needs the reward's gradient"):
        Pathwise(backbone(data), topk, device="cpu")


def test_frozen_parameters_stay_fixed_and_leave_the_optimizer(tmp_path):
    """frozen=[encoder]: Pathwise trains DreamRec's denoiser network only (the encoder and the item embeddings keep
    their pretrained values, out of the optimizer), through save/load; a name that matches no parameter is refused."""
    from agents import Pathwise

    data = walks()
    start = backbone(data)
    env = BatchedDenoisingEnv(data, backbone(data), n_envs=16, reward="refit-seq", seed=0)
    model = Pathwise(start, env, learning_rate=3e-2, train_last_k=None, frozen=["encoder"], seed=0, device="cpu")
    held = {id(p) for p in model.policy.optimizer.param_groups[0]["params"]}
    assert held and all(id(p) not in held for p in model.policy.denoiser.encoder.parameters())
    model.learn(5 * 16 * T)
    after = dict(model.policy.denoiser.named_parameters())
    moved = {n for n, p in start.named_parameters() if not torch.equal(p, after[n])}
    assert moved and all(n.startswith("denoiser.") or n == "null_c" for n in moved)
    model.save(tmp_path / "pw.zip")
    loaded = Pathwise.load(tmp_path / "pw.zip", env=env, device="cpu")
    assert loaded.policy.frozen == ["encoder"] and not loaded.policy.denoiser.encoder.item_emb.weight.requires_grad
    with pytest.raises(ValueError, match="'encodr' names no parameter"):
        Pathwise(backbone(data), env, frozen=["encodr"], device="cpu")


def test_refit_score_grad_with_frozen_item_embeddings_is_refused():
    """ReFiT's score_grad term differentiates the reward in the item embeddings; with them frozen it has nothing to
    train, and the first update says so instead of skipping the term."""
    from agents import ReFiT

    data = walks()
    env = BatchedDenoisingEnv(data, backbone(data), n_envs=8, reward="refit-seq", reward_kwargs=dict(targets="random"))
    model = ReFiT(backbone(data), env, n_traj_per_user=2, score_grad=True, train_last_k=1, frozen=["encoder"], seed=0,
                  device="cpu")
    with pytest.raises(ValueError, match="score_grad=True, but the reward's scores depend on no trainable parameter"):
        model.learn(total_timesteps=8 * T)


def test_finetune_uses_the_environment_reward_and_pathwise(tmp_path):
    """Without --reward, fine-tuning uses the environment's registered reward (refit-seq for DreamRec);
    ``algo='pathwise'`` runs through the same entry point."""
    from refit_gym.experiments.finetune import finetune

    data = walks()
    ckpt = save_backbone(backbone(data), tmp_path / "b.pt", meta=dict(n_users=data.n_users))
    for algo in ("refit", "pathwise"):
        copies = dict(n_traj_per_user=4) if algo == "refit" else {}  # the shipped 32 copies do not divide 8 chains
        m = finetune(algo, "refit_gym/DreamRec-v0", data, ckpt, hyperparams=dict(n_envs=8, n_timesteps=8 * T, **copies),
                     out=tmp_path / algo, select_metric="ndcg@20", log=lambda s: None)
        assert m["reward"] == "refit-seq" and m["num_timesteps"] == 8 * T
    m = finetune("refit", "refit_gym/DreamRec-v0", data, ckpt, out=tmp_path / "kw", log=lambda s: None,
                 hyperparams=dict(n_envs=8, n_timesteps=8 * T, n_traj_per_user=4, reward="refit-seq",
                                  reward_kwargs=dict(targets="random")))
    assert m["reward"] == "refit-seq"


def test_evaluate_script_reads_sequential_data(tmp_path):
    """scripts/evaluate.py evaluates a DreamRec checkpoint and a baseline on sequential data with the
    scenario's leave-one-out protocol (it raised AttributeError before)."""
    import sys

    from refit_gym.data import load_dataset
    from refit_gym.scenarios import SCENARIOS

    folder = tiny_seq_folder(tmp_path, walks())
    data = load_dataset(str(folder))
    ckpt = save_backbone(backbone(data), tmp_path / "b.pt", meta=dict(n_users=data.n_users))
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import evaluate
    finally:
        sys.path.remove(str(REPO / "scripts"))
    res = evaluate.main(["--checkpoint", str(ckpt), "--data", str(folder), "--split", "test", "--json"])
    assert res["ndcg@20"] == SCENARIOS["sequential"].evaluate_backbone(backbone(data), data, "test")["ndcg@20"]
    pop = evaluate.main(["--baseline", "pop", "--data", str(folder), "--split", "valid", "--json"])
    assert pop["model"] == "pop" and 0 <= pop["ndcg@20"] <= 1
    with pytest.raises(SystemExit, match="sequential data has baselines"):
        evaluate.main(["--baseline", "ease", "--data", str(folder)])


@pytest.mark.parametrize("env_id", ["refit_gym/DreamRec-v0", "refit_gym/DiffRec-v0"])
def test_ladder_runs_every_rung_and_resumes(tmp_path, env_id):
    """The headroom ladder on tiny data: every rung starts from the same checkpoint, the continued control gets
    the refit rung's wall-clock, the oracle diagnostic reads validation items, and a rerun reuses finished cells."""
    from refit_gym.data.synthetic import make_synthetic
    from refit_gym.experiments.ladder import markdown_table, oracle_reward, run_ladder
    from refit_gym.scenarios import scenario_for

    s = scenario_for(env_id)
    data = walks() if s.sequential else make_synthetic(n_users=40, n_items=30, seed=0, density=0.2)
    torch.manual_seed(0)
    b = backbone(data) if s.sequential else s.build_backbone(data, hidden=[16], schedule=dict(steps=T)).eval()
    ckpt = save_backbone(b, tmp_path / "b.pt", meta=dict(n_users=data.n_users))
    fine = dict(n_envs=8, n_timesteps=2 * 8 * T)
    recipe = {"refit": dict(fine, n_traj_per_user=4), "pathwise": fine, "oracle": fine,
              "continued": dict(batch_size=16)}
    rungs = ["start", "continued", "oracle", "pathwise", "refit"]
    ladder = run_ladder(env_id, data, ckpt, recipe, tmp_path / "ladder", seeds=[0], rungs=rungs, device="cpu",
                        log=lambda m: None)
    assert sorted(r["rung"] for r in ladder["records"]) == sorted(rungs[1:])
    start = s.evaluate_backbone(b, data, "test")
    assert ladder["start"]["test"] == start
    for r in ladder["records"]:  # each rung's selected model on test, the start competing
        assert set(r["best"]) >= {"valid", "test"} and r["train_seconds"] > 0
    table = markdown_table(ladder)
    assert "oracle (diagnostic)" in table and "continued" in table
    again = run_ladder(env_id, data, ckpt, recipe, tmp_path / "ladder", seeds=[0], rungs=rungs, device="cpu",
                       log=lambda m: None)
    assert again["records"] == ladder["records"]  # nothing recomputed
    # the oracle reward is the validation log-likelihood under softmax(scores)
    reward = oracle_reward(data)
    state = reward.prepare(np.arange(3), np.arange(3, dtype=np.uint64))
    scores = torch.randn(3, data.n_items)
    v = data.interactions().valid if hasattr(data, "interactions") else data.valid
    logp = torch.log_softmax(scores, dim=1)
    want = torch.stack([logp[u, v[u].indices].mean() for u in range(3)])
    assert torch.allclose(reward(scores, state), want, atol=1e-6)


def test_train_script_verdict_sets_start_best_and_ease_side_by_side():
    """scripts/train.py ends with pretrained / fine-tuned / EASE on test and a sentence saying whether it helped."""
    import sys

    from refit_gym.baselines import DEFAULT_GRIDS
    from refit_gym.data.synthetic import make_synthetic
    from refit_gym.scenarios import SCENARIOS

    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import train
    finally:
        sys.path.remove(str(REPO / "scripts"))
    data = make_synthetic(n_users=40, n_items=30, seed=0, density=0.2)
    m = lambda r, n: {"recall@20": r, "ndcg@20": n}  # noqa: E731
    metrics = {"pretrained": {"test": m(0.2, 0.10)}, "best": {"test": m(0.25, 0.12), "num_timesteps": 640},
               "selected_on": "valid ndcg@20"}
    lines = train.verdict(metrics, data, "refit_gym/DiffRec-v0")
    cf = SCENARIOS["cf"]
    valid = {lam: cf.evaluate(cf.baseline_score_fn("ease", data, lam=lam), data, "valid")["ndcg@20"]
             for lam in DEFAULT_GRIDS["ease"][1]}
    lam = max(valid, key=valid.get)  # the validation-chosen lambda, not the scenario's default
    ease = cf.evaluate(cf.baseline_score_fn("ease", data, lam=lam), data, "test")
    assert any(f"EASE (lam {lam:g}, chosen on valid)" in line and f"{ease['ndcg@20']:.4f}" in line
               for line in lines)
    assert lines[-1] == "fine-tuning helped: test ndcg@20 0.1000 -> 0.1200 (+20.0%) for the model selected on validation"
    assert metrics["baselines"]["ease"] == {"test": ease, "params": {"lam": lam}, "selected_on": "valid ndcg@20"}
    metrics["best"] = {"test": m(0.2, 0.10), "num_timesteps": 0}
    lines = train.verdict(metrics, walks(), "refit_gym/DreamRec-v0")
    assert len(lines) == 4 and lines[-1].startswith("fine-tuning did not help: no validation ndcg@20 beat")


@pytest.mark.parametrize("n_time_buckets", [0, 6])
def test_encoder_runs_real_lengths_with_the_full_width_states(n_time_buckets):
    """The encoder runs each row on its real items and one padding column (rows grouped by that width): every
    state a caller reads (real positions and the padding state just before them) and the gradients equal the
    full-width pass; the dropped columns hold the padding state."""
    from refit_gym.diffusion.seq_encoder import CausalSeqEncoder

    torch.manual_seed(0)
    L, pad = 12, 30
    enc = CausalSeqEncoder(pad, L, d=8, n_layers=2, heads=2, dropout=0.0, n_time_buckets=n_time_buckets).double()
    lengths = [0, 1, 2, 3, 5, 7, 8, 11, 12, 4, 1, 12]
    seq = torch.full((len(lengths), L), pad)
    times = torch.zeros_like(seq) if n_time_buckets else None  # bucket 0 = padding or first item
    for b, n in enumerate(lengths):
        if n:
            seq[b, L - n:] = torch.randint(0, pad, (n,))
            if n_time_buckets:
                times[b, L - n + 1:] = torch.randint(1, n_time_buckets, (n - 1,))
    torch.testing.assert_close(enc(seq, times), enc._encode(seq, times), rtol=1e-12, atol=1e-12)  # float64
    grads = []
    for out in (enc(seq, times), enc._encode(seq, times)):
        enc.zero_grad()
        (out[:, -1] ** 2).sum().backward()
        grads.append([p.grad.clone() for p in enc.parameters() if p.grad is not None])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    only_full = torch.full((2, L), 3)  # every row at full width: the one-group path
    t_full = torch.zeros_like(only_full) if n_time_buckets else None
    torch.testing.assert_close(enc(only_full, t_full), enc._encode(only_full, t_full))
    # the last state alone (inference's condition): the last block attends from the last query only; same values
    # and gradients, on both paths
    for s_, t_ in ((seq, times), (only_full, t_full)):
        torch.testing.assert_close(enc.last(s_, t_), enc(s_, t_)[:, -1], rtol=1e-12, atol=1e-12)
    grads = []
    for out in (enc.last(seq, times), enc(seq, times)[:, -1]):
        enc.zero_grad()
        (out ** 2).sum().backward()
        grads.append([p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in enc.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def _count_scoring(env) -> list:
    """Wrap ``env.reward_fn.components`` to count its calls; returns the counter (a one-element list)."""
    reward, calls = env.reward_fn, [0]
    components = reward.components

    def counted(*args, **kwargs):
        calls[0] += 1
        return components(*args, **kwargs)

    reward.components = counted
    return calls


def test_terminal_step_keeps_its_reward_graph_for_terminal_reward():
    """step_tensors(keep_graph=True) scores x0 once, on the graph: the step returns the reward without gradients,
    terminal_reward(x0) hands over that same graph once (no second scoring pass; same values and gradients as a
    fresh pass), and later calls or another tensor with the same values score again."""
    data = walks()
    env = BatchedDenoisingEnv(data, backbone(data), n_envs=6, reward="refit-seq", reward_kwargs=dict(targets="random"))
    calls = _count_scoring(env)
    env.reset_tensors(users=np.arange(6), seed=0)
    torch.manual_seed(0)
    for _ in range(T):
        x0 = torch.randn(6, env.adapter.action_dim, requires_grad=True)
        _, step_reward, done, info = env.step_tensors(x0, keep_graph=True)
    assert done and calls[0] == 1 and not step_reward.requires_grad
    assert not any(v.requires_grad for v in info["reward_components"].values())
    kept = env.terminal_reward(x0)
    assert calls[0] == 1 and kept.requires_grad and torch.equal(kept, step_reward)
    (g_kept,) = torch.autograd.grad(kept.sum(), x0)
    fresh = env.terminal_reward(x0)  # the kept graph was handed over once: this call scores again
    assert calls[0] == 2 and torch.allclose(fresh, kept)
    (g_fresh,) = torch.autograd.grad(fresh.sum(), x0)
    assert torch.allclose(g_kept, g_fresh)
    topk = BatchedDenoisingEnv(data, backbone(data), n_envs=6, reward="topk")
    topk.reset_tensors(users=np.arange(6), seed=0)
    with pytest.raises(NotImplementedError, match="no differentiable torch form"):
        topk.step_tensors(torch.zeros(6, topk.adapter.action_dim), keep_graph=True)


@pytest.mark.parametrize("algo", ["refit", "pathwise"])
def test_reward_gradient_agents_score_each_rollout_once(algo):
    """ReFiT with score_grad and Pathwise score the final states once per rollout (the terminal step's graph),
    and the reward's gradient reaches the item embeddings that score x0."""
    from agents import Pathwise, ReFiT

    data = walks()
    env = BatchedDenoisingEnv(data, backbone(data), n_envs=8, reward="refit-seq", reward_kwargs=dict(targets="random"))
    cls, kw = (ReFiT, dict(n_traj_per_user=2, score_grad=True, train_last_k=1)) if algo == "refit" else (Pathwise, {})
    model = cls(backbone(data), env, seed=0, device="cpu", learning_rate=1e-3, **kw)
    calls = _count_scoring(env)
    emb = model.policy.denoiser.encoder.item_emb.weight
    before = emb.detach().clone()
    model.learn(total_timesteps=3 * 8 * T)
    assert calls[0] == 3  # three rollouts, one scoring pass each
    assert not torch.equal(emb.detach(), before)
