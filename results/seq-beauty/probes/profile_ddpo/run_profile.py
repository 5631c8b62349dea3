"""Profiles of DDPO's shipped seq-beauty recipe (agents/hyperparams/ddpo.yml, DreamRec-v0; a freshly initialised
DreamRec, chain respaced to K = 10 as bench_cost.py --inference-steps 10): one warm-up rollout + update, then
ROLLOUTS more under a profiler.
    python results/seq-beauty/probes/profile_ddpo/run_profile.py [ROLLOUTS]             # torch.profiler: operators
    python results/seq-beauty/probes/profile_ddpo/run_profile.py [ROLLOUTS] --python    # cProfile: Python functions
(this file is not named profile.py: that would shadow the standard library's module that torch imports)"""
import cProfile
import io
import pstats
import sys
import time

import torch

from agents import ALGOS
from refit_gym.data import load_dataset
from refit_gym.envs.batched import BatchedDenoisingEnv
from refit_gym.experiments.hyperparams import load_hyperparams, split_hyperparams
from refit_gym.scenarios import SCENARIOS

torch.set_num_threads(1)
python_level = "--python" in sys.argv
numbers = [a for a in sys.argv[1:] if a.isdigit()]
rollouts = int(numbers[0]) if numbers else (20 if python_level else 4)
data = load_dataset("../shared/datasets/seq-beauty")
scenario = SCENARIOS["sequential"]
torch.manual_seed(0)
adapter = scenario.build_backbone(scenario.check_data(data))
adapter.set_inference_steps(10)
zoo, kwargs = split_hyperparams(load_hyperparams("ddpo", "refit_gym/DreamRec-v0"))
n_envs = int(zoo["n_envs"])
env = BatchedDenoisingEnv(data, adapter, n_envs, zoo.get("reward") or "refit", "cpu", zoo.get("reward_kwargs"), seed=0)
model = ALGOS["ddpo"](adapter, env, seed=0, device="cpu", **kwargs)
per = n_envs * adapter.schedule.chain_steps
model.learn(per)
if python_level:
    prof = cProfile.Profile()
    t = time.perf_counter()
    prof.enable()
    model.learn(rollouts * per, reset_num_timesteps=True)
    prof.disable()
    print(f"{rollouts} rollouts + updates: {(time.perf_counter() - t) / rollouts * 1e3:.0f} ms each under cProfile")
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(20)
    print(out.getvalue())
else:
    t = time.perf_counter()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=False) as prof:
        model.learn(rollouts * per, reset_num_timesteps=True)
    wall = time.perf_counter() - t
    print(f"{rollouts} rollouts + updates: {wall:.2f} s under the profiler ({wall / rollouts * 1e3:.0f} ms each)")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30, max_name_column_width=60))
    t = time.perf_counter()
    model.learn(rollouts * per, reset_num_timesteps=True)
    print(f"without the profiler: {(time.perf_counter() - t) / rollouts * 1e3:.0f} ms a rollout + update")
