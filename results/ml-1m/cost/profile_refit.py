"""Profile of ml-1m DiffRec's shipped ReFiT recipe (session 14): 10 rollouts timed, then torch.profiler and cProfile over 5.

    PYTHONPATH=. OMP_NUM_THREADS=1 python results/ml-1m/cost/profile_refit.py   # start: results/ml-1m/inputs/pretrain-diffrec.sh
"""
import time, tempfile, torch, numpy as np, cProfile, pstats, gymnasium
PROF = tempfile.mktemp(suffix='.prof')
torch.set_num_threads(1)
from agents import ALGOS
from refit_gym.experiments.hyperparams import load_hyperparams, split_hyperparams
from refit_gym.envs.batched import BatchedDenoisingEnv
from refit_gym.diffusion.checkpoint import load_backbone
from refit_gym.data.loaders import load_dataset
import refit_gym
data = load_dataset("../shared/datasets/ml-1m")
ad, _ = load_backbone("/work/runs/s13/ml1m/diffrec/best.pt", data)
env_id = "refit_gym/DiffRec-v0"
params = load_hyperparams("refit", env_id); zoo, kw = split_hyperparams(params)
reward = zoo.get("reward") or gymnasium.spec(env_id).kwargs["reward"]
env = BatchedDenoisingEnv(data, ad, 64, reward, "cpu", zoo.get("reward_kwargs"), seed=0)
model = ALGOS["refit"](ad, env, seed=0, device="cpu", **kw)
T = ad.schedule.chain_steps
model.learn(64 * T)
t = time.perf_counter(); model.learn(64 * T * 10, reset_num_timesteps=True); print("10 rollouts", time.perf_counter() - t)
from torch.profiler import profile, ProfilerActivity
with profile(activities=[ProfilerActivity.CPU]) as p:
    model.learn(64 * T * 5, reset_num_timesteps=True)
print(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))
cProfile.run('model.learn(64 * T * 5, reset_num_timesteps=True)', PROF)
pstats.Stats(PROF).sort_stats('cumulative').print_stats(35)
