"""Scenario environments (sequential, POI, social): registration, checkers, policy = backbone inference,
short ReFiT runs, the sequential reward, the scenario registry and the pretrain script. Tiny data; seconds."""
from __future__ import annotations

import json
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import refit_gym.envs  # noqa: F401  (registers the ids)
from agents import DenoiserPolicy, ReFiT
from refit_gym.data.dataset import DataError, InteractionData
from refit_gym.data.sequential import SequentialData
from refit_gym.data.synthetic import make_synthetic
from refit_gym.diffusion import BACKBONES, CheckpointError
from refit_gym.envs import ENV_IDS
from refit_gym.envs.core import start_seed
from refit_gym.envs.factory import make_batched_env
from refit_gym.rewards import make_reward
from refit_gym.rewards.sequential import SequentialCollaborativeReward, transition_counts
from refit_gym.scenarios import SCENARIOS, scenario_for

from conftest import REPO, shared_dataset, tiny_seq_folder, walks

torch.set_num_threads(1)

T, N_ENVS = 5, 8
SEQ_KW = dict(d=16, hidden=[32], n_layers=1, schedule=dict(noise_schedule="cosine", steps=T, mean_type="x0"))
SOCIAL_KW = dict(hidden=[32], schedule=dict(steps=T))
EXPECTED_WARNINGS = ("symmetric and normalized",)


@pytest.fixture(scope="module")
def seq_data():
    return walks()


@pytest.fixture(scope="module")
def poi_data():
    return walks(timed=True, seed=1)


@pytest.fixture(scope="module")
def social_data():
    return make_synthetic(n_users=40, n_items=30, seed=0, density=0.2, social=True)


CASES = {  # id -> (data fixture, backbone kwargs)
    "refit_gym/DreamRec-v0": ("seq_data", SEQ_KW),
    "refit_gym/DreamRecCE-v0": ("seq_data", SEQ_KW),
    "refit_gym/DreamRecPOI-v0": ("poi_data", SEQ_KW),
    "refit_gym/DreamRecPOICE-v0": ("poi_data", SEQ_KW),
    "refit_gym/SocialDiffRec-v0": ("social_data", SOCIAL_KW),
}


def case(env_id, request):
    name, kw = CASES[env_id]
    return request.getfixturevalue(name), kw


# ---------------------------------------------------------------------------------------------- environments
@pytest.mark.parametrize("env_id", sorted(CASES))
def test_registered_ids_pass_gymnasium_and_sb3_checkers(env_id, request):
    data, kw = case(env_id, request)
    env = gym.make(env_id, data=data, checkpoint="untrained", backbone_kwargs=kw)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gym_check_env(env.unwrapped, skip_render_check=True)
        sb3_check_env(env.unwrapped)
    other = [str(w.message) for w in caught if not any(e in str(w.message) for e in EXPECTED_WARNINGS)]
    assert not other, other
    inner = env.unwrapped
    assert isinstance(inner.data, InteractionData) and inner.adapter.backbone_name == ENV_IDS[env_id]
    assert inner.reward_fn.name == gym.spec(env_id).kwargs["reward"] == scenario_for(env_id).reward


@pytest.mark.parametrize("env_id", sorted(CASES))
def test_deterministic_policy_reproduces_backbone_inference(env_id, request):
    data, kw = case(env_id, request)
    env = make_batched_env(ENV_IDS[env_id], data, n_envs=N_ENVS, checkpoint="untrained", backbone_kwargs=kw,
                           reward=scenario_for(env_id).reward, seed=0)
    model = ReFiT(DenoiserPolicy, env, policy_kwargs=dict(backbone=env.adapter), seed=0)
    obs = first = env.reset()
    keys = env.process.state.keys.copy()  # the env seeds adapter.start with the batch's episode keys
    for _ in range(T):
        action, _ = model.predict(obs, deterministic=True)
        obs, _, dones, _ = env.step(action)
    assert dones.all()
    cond, users = torch.as_tensor(first["condition"]), torch.as_tensor(first["user"][:, 0])
    gen = torch.Generator().manual_seed(start_seed(keys))
    expected = env.adapter.infer(cond, users, deterministic=True, generator=gen)  # (N_ENVS, n_items)
    got = env.adapter.scores(torch.as_tensor(action), env.adapter.context(cond, users))
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("env_id", sorted(CASES))
def test_short_refit_learn_on_each_scenario(env_id, request):
    data, kw = case(env_id, request)
    env = make_batched_env(ENV_IDS[env_id], data, n_envs=N_ENVS, checkpoint="untrained", backbone_kwargs=kw,
                           reward=scenario_for(env_id).reward, seed=0)
    before = {k: v.clone() for k, v in env.adapter.state_dict().items()}
    model = ReFiT(env.adapter, env, learning_rate=1e-3, n_traj_per_user=4, kl_coef=0.1, seed=0)
    model.learn(2 * T * N_ENVS)
    assert model.num_timesteps == 2 * T * N_ENVS
    after = model.policy.denoiser.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if after[k].is_floating_point())
    assert all(torch.isfinite(p).all() for p in model.policy.parameters())


def test_sequence_ids_refuse_unordered_data(social_data):
    with pytest.raises(DataError, match="needs a SequentialData.*data='synthetic-seq'"):
        gym.make("refit_gym/DreamRec-v0", data=social_data, checkpoint="untrained", backbone_kwargs=SEQ_KW)
    with pytest.raises(TypeError, match="ordered sequences"):
        make_reward("refit-seq", social_data)


def test_cf_ids_accept_sequential_data_views(seq_data):
    env = gym.make("refit_gym/DiffRec-v0", data=seq_data, checkpoint="untrained", backbone_kwargs=dict(hidden=[16], schedule=dict(steps=T)))
    obs, _ = env.reset(seed=0)
    assert obs["condition"].shape == (seq_data.n_items,) and env.unwrapped.data is seq_data.interactions()


# ---------------------------------------------------------------------------------------------- the reward
def test_sequential_reward_holds_out_the_last_item_and_matches_a_hand_computation():
    # items 0..4; user 0: 0 1 2 (2 held out); the transitions 1 -> x in the other users: 1->3, 1->4, 1->3
    d = SequentialData.from_sequences([[0, 1, 2], [1, 3], [1, 4, 1, 3]], [3, 0, 2], [4, 2, 0], n_items=5, max_len=4)
    r = SequentialCollaborativeReward(d, n_recent=1, n_hops=1, hop_weight=0.5, tau=1.0)
    st = r.prepare(np.array([0, 1, 2]), np.array([1, 2, 3], dtype=np.uint64))
    np.testing.assert_array_equal(st.heldout.toarray(), [[0, 0, 1, 0, 0], [0, 0, 0, 1, 0], [0, 0, 0, 1, 0]])
    np.testing.assert_array_equal(st.visible.toarray(), [[1, 1, 0, 0, 0], [0, 1, 0, 0, 0], [0, 1, 0, 0, 1]])
    # the split ignores the episode key
    assert (r.prepare(np.array([0]), np.array([99], dtype=np.uint64)).heldout != st.heldout[:1]).nnz == 0
    scores = torch.tensor([[0.3, -1.0, 0.5, 2.0, -0.2]])
    st0 = r.prepare(np.array([0]), np.array([0], dtype=np.uint64))
    comps = r.components(scores, st0)
    logp = lambda j: scores[0, j] - torch.logsumexp(scores[0, [2, 3, 4]], 0)  # noqa: E731  (0, 1 visible: masked)
    # recent item 1; K[1] = {2: 1 (own), 3: 2, 4: 1}, k_1 = 4; own 1->2 removed: s = {3: 2/4, 4: 1/4} -> q = {3: 2/3, 4: 1/3}
    torch.testing.assert_close(comps["likelihood"], logp(2).reshape(1))
    torch.testing.assert_close(comps["hop1"], (0.5 * (2 / 3 * logp(3) + 1 / 3 * logp(4))).reshape(1))
    torch.testing.assert_close(r(scores, st0), comps["likelihood"] + comps["hop1"])


def test_sequential_reward_edge_cases():
    d = SequentialData.from_sequences([[2, 0, 1, 2], [1, 1], [0, 1, 2, 3], [3, 0, 3]], [0] * 4, [1] * 4, n_items=4,
                                      max_len=4)
    # n_last=1: a repeated last item is held out everywhere; one distinct item (user 1) stays visible
    st = SequentialCollaborativeReward(d, n_last=1).prepare(np.arange(4), np.zeros(4, dtype=np.uint64))
    np.testing.assert_array_equal(st.heldout.toarray(), [[0, 0, 1, 0], [0, 0, 0, 0], [0, 0, 0, 1], [0, 0, 0, 1]])
    np.testing.assert_array_equal(st.visible.toarray(), [[1, 1, 0, 0], [0, 1, 0, 0], [1, 1, 1, 0], [1, 0, 0, 0]])
    # n_last=2: user 3's last two positions cover all its distinct items -> nothing held out
    st = SequentialCollaborativeReward(d, n_last=2).prepare(np.arange(4), np.zeros(4, dtype=np.uint64))
    np.testing.assert_array_equal(st.heldout.toarray(), [[0, 1, 1, 0], [0, 0, 0, 0], [0, 0, 1, 1], [0, 0, 0, 0]])
    assert st.heldout.multiply(st.visible).nnz == 0
    counts = transition_counts(d).toarray()  # pairs never cross users: 3 + 1 + 3 + 2 transitions
    assert counts.sum() == 9 and counts[2, 0] == 1 and counts[1, 1] == 1 and counts[3, 0] == 1 and counts[2, 3] == 1
    with pytest.raises(ValueError, match="n_last"):
        SequentialCollaborativeReward(d, n_last=0)


def test_sequential_reward_in_env_never_shows_the_held_out_item(seq_data):
    env = gym.make("refit_gym/DreamRec-v0", data=seq_data, checkpoint="untrained", backbone_kwargs=SEQ_KW).unwrapped
    for u in range(seq_data.n_users):
        obs, _ = env.reset(seed=u, options={"user": u})
        seq = seq_data.train_items[seq_data.train_ptr[u]:seq_data.train_ptr[u + 1]]
        cond = obs["condition"][obs["condition"] != seq_data.pad_id].astype(int)
        assert env.process.state.heldout.indices.tolist() == [seq[-1]]
        np.testing.assert_array_equal(cond, seq[:-1][-len(cond):])  # the visible prefix, in order


# ---------------------------------------------------------------------------------------------- scenarios
def test_scenario_registry_is_consistent():
    assert set(SCENARIOS) == {"cf", "social", "sequential", "poi"}
    for s in SCENARIOS.values():
        assert s.env_id in gym.registry and ENV_IDS[s.env_id] == s.backbone
        assert scenario_for(s.env_id) is s and scenario_for(s.backbone) is s
        assert s.reward in ("refit", "refit-seq")
    with pytest.raises(DataError, match="needs a SequentialData"):
        SCENARIOS["sequential"].load(make_synthetic(n_users=10, n_items=10))


def test_scenario_evaluation_and_baselines(seq_data, social_data):
    seq = SCENARIOS["sequential"]
    adapter = seq.build_backbone(seq_data, **SEQ_KW)
    m = seq.evaluate_backbone(adapter, seq_data, "test")
    assert set(m) == {"hitrate@10", "recall@10", "ndcg@10", "hitrate@20", "recall@20", "ndcg@20", "n_users"}
    assert m["recall@20"] == m["hitrate@20"] and 0 <= m["ndcg@10"] <= 1
    rows = seq.baseline_rows(seq_data, splits=("valid", "test"), fit_kwargs={"sasrec": {"epochs": 1, "d": 16}})
    assert [(r["model"], r["split"]) for r in rows] == [("sasrec", "valid"), ("sasrec", "test"), ("pop", "valid"),
                                                       ("pop", "test")]
    soc = SCENARIOS["social"]
    rows = soc.baseline_rows(social_data, names=("pop", "ease"))
    assert {r["model"] for r in rows} == {"pop", "ease"} and all("recall@20" in r for r in rows)
    m = soc.evaluate_backbone(soc.build_backbone(social_data, **SOCIAL_KW), social_data, "valid")
    assert 0 <= m["recall@20"] <= 1


def pretrain_script():
    """The ``scripts/pretrain.py`` module."""
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import pretrain
    finally:
        sys.path.remove(str(REPO / "scripts"))
    return pretrain


@pytest.mark.parametrize("backbone", ["dreamrec", "dreamrec-poi"])
def test_pretrain_script_sequence_scenarios(tmp_path, seq_data, backbone):
    timed = backbone == "dreamrec-poi"
    folder = tiny_seq_folder(tmp_path, seq_data, timed)
    pretrain = pretrain_script()
    out = tmp_path / "run"
    metrics = pretrain.main(["--backbone", backbone, "--data", str(folder), "--out", str(out), "--epochs", "2",
                             "--steps", "5", "--hidden", "32", "--no-progress"])
    scenario = scenario_for(backbone)
    assert (out / "best.pt").is_file() and json.loads((out / "metrics.json").read_text())["scenario"] == scenario.name
    assert metrics["config"]["metric"] == "ndcg@10" and "hitrate@20" in metrics["test"]
    assert metrics["backbone_config"]["schedule"]["noise_schedule"] == "cosine"  # DreamRec's own schedule kept
    env = gym.make(scenario.env_id, data=str(folder), checkpoint=out / "best.pt")
    obs, _ = env.reset(seed=0)
    assert obs["x"].shape == (64,)
    other = "refit_gym/DreamRec-v0" if timed else "refit_gym/DreamRecPOI-v0"
    # a POI id on untimed data is refused for the data (before the checkpoint is read)
    with pytest.raises(Exception, match=f"expects a '{ENV_IDS[other]}' backbone" if timed else "needs timestamped"):
        gym.make(other, data=str(folder), checkpoint=out / "best.pt")


def test_pretrain_script_resumes_sequence_runs(tmp_path, seq_data):
    folder = tiny_seq_folder(tmp_path, seq_data)
    pretrain = pretrain_script()
    common = ["--backbone", "dreamrec", "--data", str(folder), "--steps", "5", "--hidden", "32", "--patience", "0",
              "--batch-size", "16", "--eval-every", "1", "--no-progress"]
    full = pretrain.main(common + ["--out", str(tmp_path / "full"), "--epochs", "3"])
    half = tmp_path / "half"
    first = pretrain.main(common + ["--out", str(half), "--epochs", "1", "--resume", "--no-test"])  # starts afresh
    assert json.loads((half / "history.json").read_text())[-1]["epoch"] == 0 and (half / "last_state.pt").is_file()
    assert "test" not in first and "test" not in json.loads((half / "metrics.json").read_text())  # --no-test
    resumed = pretrain.main(common + ["--out", str(half), "--epochs", "3", "--resume"])
    assert resumed["epochs_run"] == 3 and resumed["best_epoch"] == full["best_epoch"]
    assert resumed["valid"] == full["valid"] and resumed["test"] == full["test"]
    a = torch.load(tmp_path / "full" / "best.pt", weights_only=True)["state_dict"]
    b = torch.load(half / "best.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # a state written for another architecture is refused, naming the file and the field
    with pytest.raises(CheckpointError,
                       match=r"half[/\\]last_state\.pt.*'config\.hidden' is \[32\] in the file, \[16\] in this run"):
        pretrain.main([("16" if x == "32" else x) for x in common] + ["--out", str(half), "--epochs", "4", "--resume"])


def test_pretrain_script_rejects_architecture_flags_the_backbone_does_not_take():
    pretrain = pretrain_script()
    # checked before the data is loaded (the folder does not exist)
    with pytest.raises(SystemExit, match=r"^error: --hidden: backbone 'cfdiff' does not take 'hidden' .*"
                                         r"architecture flags it takes: --emb-size, --dropout$"):
        pretrain.main(["--backbone", "cfdiff", "--hidden", "32", "--data", "no-such-folder"])
    # the benchmark reads the architecture through backbone_kwargs: same check
    with pytest.raises(SystemExit, match="--hidden: backbone 'cfdiff'"):
        pretrain.backbone_kwargs(pretrain.build_parser().parse_args(["--backbone", "cfdiff", "--hidden", "8"]))
    # arguments forwarded with **kwargs count: dreamrec-poi takes DreamRec's
    args = pretrain.build_parser().parse_args(["--backbone", "dreamrec-poi", "--hidden", "32", "--emb-size", "8",
                                               "--dropout", "0.2"])
    kw = pretrain.backbone_kwargs(args)
    from refit_gym.diffusion.checkpoint import constructor_parameters

    assert kw["hidden"] == [32] and kw["emb_size"] == 8 and kw["dropout"] == 0.2
    # any other constructor keyword: --backbone-arg KEY=JSON, checked the same way
    parse = pretrain.build_parser().parse_args
    kw = pretrain.backbone_kwargs(parse(["--backbone", "dreamrec-ce", "--backbone-arg", "residual=true",
                                         "--backbone-arg", "state_ce_weight=0.5"]))
    assert kw["residual"] is True and kw["state_ce_weight"] == 0.5
    for arg, msg in (("residul=true", "--backbone-arg: backbone 'dreamrec-ce' does not take 'residul'"),
                     ("residual=yes", "VALUE is not JSON"), ("residual", "expected KEY=VALUE"),
                     ("dropout=0.3", "set 'dropout' with its own flag")):
        with pytest.raises(SystemExit, match=msg):
            pretrain.backbone_kwargs(parse(["--backbone", "dreamrec-ce", "--dropout", "0.2", "--backbone-arg", arg]))
    assert {"hidden", "emb_size", "dropout", "time_aware", "n_users"} <= set(
        constructor_parameters(BACKBONES["dreamrec-poi"]))


# ---------------------------------------------------------------------------------------------- real data
@pytest.mark.parametrize("name,env_id", [("seq-beauty", "refit_gym/DreamRec-v0"),
                                         ("poi-gowalla", "refit_gym/DreamRecPOI-v0"),
                                         ("social-lastfm", "refit_gym/SocialDiffRec-v0")])
def test_real_data_envs_step(name, env_id):
    path = shared_dataset(name)
    s = scenario_for(env_id)
    data = s.load(path)
    kw = SEQ_KW if s.sequential else SOCIAL_KW
    env = make_batched_env(ENV_IDS[env_id], data, n_envs=4, checkpoint="untrained", backbone_kwargs=kw, reward=s.reward, seed=0)
    obs = env.reset()
    for _ in range(T):
        obs, rewards, dones, infos = env.step(np.zeros((4, env.adapter.action_dim), dtype=np.float32))
    assert dones.all() and np.isfinite(rewards).all() and "likelihood" in infos[0]["reward_components"]


@pytest.mark.parametrize("env_id", ["refit_gym/DreamRec-v0", "refit_gym/SocialDiffRec-v0"])
def test_finetune_evaluates_with_the_scenario_protocol(tmp_path, seq_data, social_data, env_id):
    """refit_gym.experiments.finetune (what scripts/train.py and the benchmark run) validates and tests each scenario with
    its own protocol: leave-one-out HR/NDCG for sequences, masked full ranking for interaction data."""
    from refit_gym.experiments.finetune import finetune
    from refit_gym.diffusion.checkpoint import load_backbone, save_backbone

    s = scenario_for(env_id)
    data = seq_data if s.sequential else social_data
    torch.manual_seed(0)
    backbone = s.build_backbone(data, **(SEQ_KW if s.sequential else SOCIAL_KW)).eval()
    ckpt = save_backbone(backbone, tmp_path / "backbone.pt", meta=dict(n_users=data.n_users))
    m = finetune("refit", env_id, data, ckpt,
                 hyperparams=dict(n_envs=N_ENVS, n_timesteps=2 * N_ENVS * T, n_traj_per_user=4),
                 out=tmp_path / "run", eval_freq=N_ENVS * T, select_metric="ndcg@20", log=lambda msg: None)
    assert m["pretrained"]["test"] == s.evaluate_backbone(backbone, data, "test")
    assert [h["num_timesteps"] for h in m["history"]] == [0, N_ENVS * T, 2 * N_ENVS * T]
    for part in ("pretrained", "final", "best"):
        assert {"recall@20", "ndcg@20"} <= set(m[part]["test"])
        assert ("precision@20" in m[part]["valid"]) == (not s.sequential)  # only the CF protocol has precision
    best, _ = load_backbone(tmp_path / "run" / "best.pt", data)
    assert m["best"]["test"] == s.evaluate_backbone(best, data, "test")
