"""Probe l: does the score-function (REINFORCE) estimate point where the exact reward gradient points?

On the same model, users and reward, the gradient of E[R(x0)] in the chain's parameters (encoder + denoiser; the
item embeddings that score x0 are held fixed, so both estimators see the same objective) is estimated
* exactly along sampled chains (pathwise: reparameterised noise, dR/dx0 back through all K steps), and
* by REINFORCE: (R - per-user mean over copies) x sum_t grad log N(x_{t-1}; mu_theta(x_t), sigma_t^2), actions fixed.
Both are unbiased for the same vector. A reference is the pathwise mean over many copies; the cosine of each
estimate with it, for N copies per user, says how many chains REINFORCE needs to carry the signal the exact
gradient carries with one. Reward: ReFiT's sequential log-likelihood at tau 1, log softmax(x0 E^T)[next item], with
the condition the train sequence less its last item and the target that item.

    python results/seq-beauty/probes/probe_l_grad_alignment/grad_alignment.py /work/runs/dreamrec-seqbeauty-ce01-k10.pt OUT.json [LAST_K]

LAST_K (default: all K steps): both estimators differentiate only the last LAST_K reverse steps (pathwise: the
state entering them is detached; REINFORCE: only their log-probabilities), as ``train_last_k`` does.
"""
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from grad_setup import gradient_probe  # noqa: E402

torch.set_num_threads(1)
ckpt, out = sys.argv[1], sys.argv[2]
last_k = int(sys.argv[3]) if len(sys.argv) > 3 else None
B, REF_COPIES, COPIES, REPEATS = 32, 512, (1, 8, 64, 512), 3
probe = gradient_probe(ckpt, B)
adapter, cond, target, K, reward, flat_grad = probe.adapter, probe.cond, probe.target, probe.K, probe.reward, probe.flat_grad


def rollout(n, gen, reparam):
    """n copies of each user: rewards (B n,) and, if reparam, the graph through the noise; else the REINFORCE
    surrogate sum_t log pi(a_t | s_t) with actions detached."""
    c = cond.repeat_interleave(n, 0)
    tgt = target.repeat_interleave(n, 0)
    ctx = adapter.context(c)
    x = adapter.start(c, ctx, gen)
    logp = torch.zeros(len(c))
    for i in reversed(range(K)):
        trained = last_k is None or i < last_k
        if not trained:
            x = x.detach()
        idx = torch.full((len(c),), i, dtype=torch.long)
        mean, std = adapter.reverse_step(x if reparam else x.detach(), idx, ctx)
        noise = torch.randn(mean.shape, generator=gen)
        nxt = mean + std * noise
        if not reparam:
            a = nxt.detach()
            if trained:
                logp = logp + (-((a - mean) ** 2) / (2 * std ** 2)).sum(-1)
            nxt = a
        x = nxt
    r = reward(x if reparam else x.detach(), tgt)
    return r, logp


def pathwise(n, seed):
    r, _ = rollout(n, torch.Generator().manual_seed(seed), True)
    return flat_grad(r.mean()), float(r.detach().mean())


def reinforce(n, seed):
    r, logp = rollout(n, torch.Generator().manual_seed(seed), False)
    adv = (r - r.view(B, n).mean(1).repeat_interleave(n)).detach() if n > 1 else (r - r.mean()).detach()
    return flat_grad((adv * logp).mean())


cos = lambda a, b: float(a @ b / (a.norm() * b.norm() + 1e-30))
t0 = time.time()
ref, r_mean = pathwise(REF_COPIES, 1000)
ref2, _ = pathwise(REF_COPIES, 2000)
res = dict(users=B, steps=K, last_k=last_k, reward_mean=r_mean, reference_copies=REF_COPIES,
           reference_self_cosine=cos(ref, ref2), reference_norm=float(ref.norm()), rows=[])
for n in COPIES:
    for est in ("pathwise", "reinforce"):
        cs, norms = [], []
        for rep in range(REPEATS):
            g = pathwise(n, rep)[0] if est == "pathwise" else reinforce(n, rep)
            cs.append(cos(g, ref)), norms.append(float(g.norm()))
        res["rows"].append(dict(estimator=est, copies=n, chains=B * n, cosine_mean=float(np.mean(cs)),
                                cosine_values=cs, norm_mean=float(np.mean(norms))))
        print(f"{est:9s} copies {n:4d}: cosine with the reference {np.mean(cs):+.3f} ({', '.join(f'{c:+.3f}' for c in cs)}), "
              f"norm {np.mean(norms):.3g} (reference {ref.norm():.3g})", flush=True)
res["seconds"] = time.time() - t0
json.dump(res, open(out, "w"), indent=1)
print("reference self-cosine (two independent 512-copy means): %.3f" % res["reference_self_cosine"])
