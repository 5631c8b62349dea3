"""A/B timing of fine-tuning rollouts (run with PYTHONPATH=<tree>):
    python ab.py BACKBONE ALGO ROLLOUTS [DATASET SCENARIO [K]]     (default dataset ml-1m, scenario cf)
K respaces the chain to K reverse steps."""
import sys, time, torch, gymnasium
torch.set_num_threads(1)
from agents import ALGOS
from refit_gym.experiments.hyperparams import load_hyperparams, split_hyperparams
from refit_gym.envs.batched import BatchedDenoisingEnv
from refit_gym.data import load_dataset
from refit_gym.scenarios import SCENARIOS
from refit_gym.registry import ENV_OF_BACKBONE
bb, algo, R = sys.argv[1], sys.argv[2], int(sys.argv[3])
dataset, scenario = (sys.argv[4], sys.argv[5]) if len(sys.argv) > 5 else ("ml-1m", "cf")
data = load_dataset("../shared/datasets/" + dataset); sc = SCENARIOS[scenario]; torch.manual_seed(0)
ad = sc.build_backbone(sc.check_data(data), backbone=bb)
if len(sys.argv) > 6:
    ad.set_inference_steps(int(sys.argv[6]))
env_id = ENV_OF_BACKBONE[ad.backbone_name]
zoo, kw = split_hyperparams(load_hyperparams(algo, env_id)); N = int(zoo["n_envs"])
env = BatchedDenoisingEnv(data, ad, N, zoo.get("reward") or gymnasium.spec(env_id).kwargs["reward"], "cpu", zoo.get("reward_kwargs"), seed=0)
model = ALGOS[algo](ad, env, seed=0, device="cpu", **kw); T = ad.schedule.chain_steps
model.learn(N * T)
t = time.perf_counter(); c = time.process_time(); model.learn(N * T * R, reset_num_timesteps=True)
print(f"{bb} {algo}: {(time.perf_counter() - t) / R * 1e3:.1f} ms a rollout (cpu {(time.process_time() - c) / R * 1e3:.1f})", flush=True)
