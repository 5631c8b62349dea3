"""Matmul rate of DiffRec's two large products (ml-1m: 2,820 x 600 and 600 x 2,810) at 16, 64 and 256 rows, one thread:
a @ W^T as nn.Linear runs it (weight (out, in), with bias) against a contiguous (in, out) weight, as bench_cost's rate.
    OMP_NUM_THREADS=1 python results/ml-1m/cost/matmul-rows/rates.py
"""
import time, torch
torch.set_num_threads(1)
import torch.nn.functional as F
def bench(f, n=300):
    for _ in range(10): f()
    t=time.perf_counter()
    for _ in range(n): f()
    return (time.perf_counter()-t)/n*1e3
for rows in (16, 64, 256):
  for (k, n) in ((2820, 600), (600, 2810)):
    a = torch.randn(rows, k); W = torch.randn(n, k)*0.02; b = torch.randn(n); Wt = W.t().contiguous()
    r = lambda ms: 2*rows*k*n/ms/1e6
    t1 = bench(lambda: a @ Wt); t2 = bench(lambda: a @ W.t()); t3 = bench(lambda: F.linear(a, W, b)); t4 = bench(lambda: torch.addmm(b, a, Wt))
    print(f"rows {rows} ({k},{n}): a@Wt {t1:.3f} ms ({r(t1):.0f} GF/s)  a@W.t() {t2:.3f} ({r(t2):.0f})  linear {t3:.3f} ({r(t3):.0f})  addmm(Wt) {t4:.3f} ({r(t4):.0f})")
