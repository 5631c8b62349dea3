"""Probe n: can a per-step critic give REINFORCE the signal that probe l found it loses?

Same setup as probe l (32 users, the ``ce01`` start on the 10-step chain, reward log softmax(x0 E^T)[next item] at
tau 1, item embeddings fixed, reference = the pathwise mean over 512 chains per user). Score-function estimators of
grad E[R], each sum_t A_t grad log pi(a_t | s_t) with actions fixed, differing only in the advantage A_t:

* ``reinforce``: A_t = R - mean_copies(R) (probe l's per-user group baseline; unbiased);
* ``value-baseline``: A_t = R - V(x_t), V(x) = r(x0_hat(x)) the reward of the denoiser's own x0 estimate at the
  state (a baseline that depends only on the state: unbiased);
* ``td``: A_t = V(x_{t-1}) - V(x_t), V(x_0) = R (one-step bootstrap with that critic, GAE lambda = 0: biased
  where V is not the value, but each step's advantage holds only its own step's noise).

x0_hat(x_t) is what a DreamRec step computes anyway (x0 parameterisation), so the critic costs one reward
evaluation per step and no network.

Last step only (``train_last_k = 1``), against the pathwise gradient through the last step: ``crn-last``, the
copies of a user sharing x_T and the earlier steps' noise (common random numbers: one x_1 per user) so that the
per-user mean baseline removes everything but the trained step's noise; ``antithetic``, the same with the last
step's noise drawn in pairs eps, -eps.

    python results/seq-beauty/probes/probe_n_step_critic/critic_alignment.py /work/runs/dreamrec-seqbeauty-ce01-k10.pt OUT.json [last]
(``last``: only the last-step estimators)
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
B, REF_COPIES, COPIES, REPEATS = 32, 512, (1, 8, 64), 3
probe = gradient_probe(ckpt, B)
adapter, cond, target, K, reward, flat_grad = probe.adapter, probe.cond, probe.target, probe.K, probe.reward, probe.flat_grad


def rollout(n, gen, reparam):
    """n copies per user. Returns the final rewards (B n,), per-step log-probs (K, B n) (actions detached unless
    reparam) and per-step critic values V(x_t) = r(x0_hat(x_t)) (K, B n), step order K-1 .. 0."""
    c = cond.repeat_interleave(n, 0)
    tgt = target.repeat_interleave(n, 0)
    ctx = adapter.context(c)
    x = adapter.start(c, ctx, gen)
    logps, values = [], []
    for i in reversed(range(K)):
        idx = torch.full((len(c),), i, dtype=torch.long)
        xin = x if reparam else x.detach()
        with torch.no_grad():
            values.append(reward(adapter.denoise(xin, adapter.schedule.model_index(idx), ctx), tgt))
        mean, std = adapter.reverse_step(xin, idx, ctx)
        nxt = mean + std * torch.randn(mean.shape, generator=gen)
        if not reparam:
            a = nxt.detach()
            logps.append((-((a - mean) ** 2) / (2 * std ** 2)).sum(-1))
            nxt = a
        x = nxt
    return reward(x if reparam else x.detach(), tgt), logps, torch.stack(values)


def pathwise(n, seed):
    r, _, _ = rollout(n, torch.Generator().manual_seed(seed), True)
    return flat_grad(r.mean())


def score_function(n, seed, kind):
    r, logps, v = rollout(n, torch.Generator().manual_seed(seed), False)
    r = r.detach()
    if kind == "reinforce":
        base = r.view(B, n).mean(1).repeat_interleave(n) if n > 1 else r.mean().expand_as(r)
        adv = (r - base).expand(K, -1)
    elif kind == "value-baseline":
        adv = r[None] - v
    else:  # td
        nxt = torch.cat([v[1:], r[None]])
        adv = nxt - v
    return flat_grad(sum((a * lp).mean() for a, lp in zip(adv, logps)))


def last_step(n, seed, kind):
    """Last step only, copies sharing their prefix (common random numbers): one x_1 per user from one chain, then
    n copies of the last step's noise (``antithetic``: eps and -eps in pairs); per-user mean baseline. Against
    the last-step reference (``reference_last``: the pathwise gradient through the last step only)."""
    gen = torch.Generator().manual_seed(seed)
    ctx = adapter.context(cond)
    x = adapter.start(cond, ctx, gen)
    with torch.no_grad():
        for i in reversed(range(1, K)):
            idx = torch.full((B,), i, dtype=torch.long)
            mean, std = adapter.reverse_step(x, idx, ctx)
            x = mean + std * torch.randn(mean.shape, generator=gen)
    x1 = x.repeat_interleave(n, 0)
    ctx_n = adapter.context(cond.repeat_interleave(n, 0))
    mean, std = adapter.reverse_step(x1, torch.zeros(B * n, dtype=torch.long), ctx_n)
    if kind == "antithetic":
        half = torch.randn((B, n // 2, 1, mean.shape[1]), generator=gen)
        eps = torch.cat([half, -half], dim=2).reshape(B * n, -1)
    else:
        eps = torch.randn(mean.shape, generator=gen)
    a = (mean + std * eps).detach()
    r = reward(a, target.repeat_interleave(n, 0))
    adv = r - r.view(B, n).mean(1).repeat_interleave(n)
    logp = (-((a - mean) ** 2) / (2 * std ** 2)).sum(-1)
    return flat_grad((adv * logp).mean())


def pathwise_last(n, seed):
    """The pathwise gradient through the last step only (earlier steps detached), n chains per user."""
    gen = torch.Generator().manual_seed(seed)
    c = cond.repeat_interleave(n, 0)
    ctx = adapter.context(c)
    x = adapter.start(c, ctx, gen)
    for i in reversed(range(K)):
        idx = torch.full((len(c),), i, dtype=torch.long)
        if i > 0:
            with torch.no_grad():
                mean, std = adapter.reverse_step(x, idx, ctx)
        else:
            mean, std = adapter.reverse_step(x, idx, ctx)
        x = mean + std * torch.randn(mean.shape, generator=gen)
    return flat_grad(reward(x, target.repeat_interleave(n, 0)).mean())


cos = lambda a, b: float(a @ b / (a.norm() * b.norm() + 1e-30))
t0 = time.time()
ref = pathwise(REF_COPIES, 1000)
res = dict(users=B, steps=K, reference_copies=REF_COPIES, reference_norm=float(ref.norm()), rows=[])
for n in (COPIES if len(sys.argv) < 4 else ()):
    for est in ("reinforce", "value-baseline", "td"):
        cs, norms = [], []
        for rep in range(REPEATS):
            g = score_function(n, rep, est)
            cs.append(cos(g, ref)), norms.append(float(g.norm()))
        res["rows"].append(dict(estimator=est, copies=n, chains=B * n, cosine_mean=float(np.mean(cs)),
                                cosine_values=cs, norm_mean=float(np.mean(norms))))
        print(f"{est:14s} copies {n:4d}: cosine {np.mean(cs):+.3f} ({', '.join(f'{c:+.3f}' for c in cs)}), "
              f"norm {np.mean(norms):.3g} (reference {ref.norm():.3g})", flush=True)
ref_last = pathwise_last(REF_COPIES, 1000)
res["reference_last_norm"] = float(ref_last.norm())
for n in (8, 64):
    for est in ("crn-last", "antithetic"):
        cs, norms = [], []
        for rep in range(REPEATS):
            g = last_step(n, rep, est)
            cs.append(cos(g, ref_last)), norms.append(float(g.norm()))
        res["rows"].append(dict(estimator=est, copies=n, chains=B * n, cosine_mean=float(np.mean(cs)),
                                cosine_values=cs, norm_mean=float(np.mean(norms)), reference="last step"))
        print(f"{est:14s} copies {n:4d}: cosine with the last-step reference {np.mean(cs):+.3f} "
              f"({', '.join(f'{c:+.3f}' for c in cs)}), norm {np.mean(norms):.3g} (reference {ref_last.norm():.3g})",
              flush=True)
res["seconds"] = time.time() - t0
json.dump(res, open(out, "w"), indent=1)
