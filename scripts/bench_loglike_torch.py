#!/usr/bin/python3
"""bench_loglike_torch: the PyTorch autograd yardstick for `cerberus bench loglike`.

usage: bench_loglike_torch.py [-N 64] [-repeat 3] [-threads 1]

The same model, on the same inputs, as `cerberus bench loglike -N N` with its defaults (the
paper's engine: one 3^3 multipole-tied convolution, lmax 0, one channel, softplus; the MDN head
with 2 Gaussians and 1 feature; MODEL.md sections 3-5), written the straightforward way in float64
torch: x0 = ln(1 + delta + eps), the convolution as 27 periodic shifts (torch.roll) each times its
tied weight (centre, face, edge, corner by |r|^2 = 0, 1, 2, 3), psi = softplus, the head as
tensor expressions, Nbar = V sum_i alpha_i / 2 erfc((ln Mth - mu_i) / (sqrt 2 sigma_i)) summed
over the voxels, ln dn/dlnM by logsumexp at the halos' voxels, and ln L = sum - sum; the gradients
with respect to the weights and to delta by autograd (one backward). The field, halos and weights
come from the same hash as src/bench/bench_loglike.c (a field in a box of 2 N Mpc/h,
delta = exp(1.2 (h - 1/2)) - 1; N^3 / 20 halos, uniform positions, M = 2e12 e^(4 h);
weights 0.3 (2 h - 1)), so ln L must equal the bench's lnL column to ~1e-12 relative.

Times R evaluations of ln L alone (under torch.no_grad) and R of ln L with both gradients, after
one untimed call of each, on `-threads` intra-op threads, and prints one CSV row:
  bench,n_grid,threads,repeat,fwd_s,fwd_grad_s,grad_over_fwd,lnL,cpu_fwd_s,cpu_fwd_grad_s
(cpu_*: the process's CPU seconds per evaluation, all threads: on a shared, oversubscribed
machine they show the work when wall times only show the share of the cores the run was given,
as bench loglike's cpu_* columns do)
Uses /usr/bin/python3 with Debian's python3-torch and python3-numpy.
"""
import math
import sys
import time

import numpy as np

try:
    import torch
except ImportError:
    print("bench_loglike_torch: needs PyTorch (Debian package python3-torch)", file=sys.stderr)
    sys.exit(1)

M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def hash01(a, b):
    """bench_loglike.c's hash01(a, b) for an array b (uint64 arithmetic, wrapping)."""
    b = np.asarray(b, dtype=np.uint64)
    with np.errstate(over="ignore"):
        x = np.uint64(a + 1) * np.uint64(0x9E3779B97F4A7C15) ^ (b + np.uint64(7)) * np.uint64(
            0xC2B2AE3D27D4EB4F)
        x ^= x >> np.uint64(31)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
    return (x >> np.uint64(11)).astype(np.float64) / 9007199254740992.0


def inputs(n):
    box = 2.0 * n
    delta = np.exp(1.2 * (hash01(3, np.arange(n ** 3)) - 0.5)) - 1.0
    nh = n ** 3 // 20
    pos = box * hash01(4, np.arange(3 * nh)).reshape(nh, 3)
    mass = 2e12 * np.exp(4.0 * hash01(5, np.arange(nh)))
    w = 0.3 * (2.0 * hash01(6, np.arange(17)) - 1.0)
    vox = np.floor(pos * n / box).astype(np.int64) % n
    flat = (vox[:, 0] * n + vox[:, 1]) * n + vox[:, 2]
    return box, delta.reshape(n, n, n), flat, np.log(mass), w


def loglike(delta, w, flat, lnm, n, box):
    eps, A0, M0, S0, smin, mth = 1e-3, 1e-3, 2e12, 1.0, 0.05, 2e12
    x0 = torch.log(1.0 + delta + eps)
    z = torch.zeros_like(x0) + w[4]
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            for dk in (-1, 0, 1):
                g = di * di + dj * dj + dk * dk
                z = z + w[g] * torch.roll(x0, shifts=(-di, -dj, -dk), dims=(0, 1, 2))
    psi = torch.nn.functional.softplus(z).reshape(-1)
    sp = torch.nn.functional.softplus
    h = w[5:]  # a1 a2 ba1 ba2 m1 m2 bm1 bm2 s1 s2 bs1 bs2
    alpha = [sp(h[i] * psi + h[2 + i] + math.log(A0)) for i in range(2)]
    mu1 = h[4] * psi + h[6] + math.log(M0)
    mu = [mu1, mu1 + sp(h[5] * psi + h[7])]
    soff = math.log(math.expm1(S0 - smin))
    sigma = [smin + sp(h[8 + i] * psi + h[10 + i] + soff) for i in range(2)]
    lnV, uth = 3.0 * math.log(box / n), math.log(mth)
    nbar = sum(0.5 * alpha[i] * torch.special.erfc((uth - mu[i]) / (math.sqrt(2.0) * sigma[i]))
               for i in range(2)) * math.exp(lnV)
    lc = torch.stack([torch.log(alpha[i][flat]) - 0.5 * ((lnm - mu[i][flat]) / sigma[i][flat]) ** 2
                      - torch.log(sigma[i][flat]) - 0.5 * math.log(2 * math.pi) for i in range(2)])
    return torch.logsumexp(lc, dim=0).sum() - nbar.sum()


def main(argv):
    opts = {"-N": 64, "-repeat": 3, "-threads": 1}
    args = argv[1:]
    if len(args) % 2 or any(a not in opts for a in args[::2]):
        print(__doc__.split("\n")[2], file=sys.stderr)
        sys.exit(2)
    for k, v in zip(args[::2], args[1::2]):
        opts[k] = int(v)
    n, reps = opts["-N"], opts["-repeat"]
    torch.set_num_threads(opts["-threads"])
    box, d, flat, lnm, w = inputs(n)
    delta = torch.tensor(d, dtype=torch.float64, requires_grad=True)
    wt = torch.tensor(w, dtype=torch.float64, requires_grad=True)
    flat_t, lnm_t = torch.tensor(flat), torch.tensor(lnm, dtype=torch.float64)

    def fwd():
        with torch.no_grad():
            return loglike(delta, wt, flat_t, lnm_t, n, box).item()

    def both():
        delta.grad, wt.grad = None, None
        lnl = loglike(delta, wt, flat_t, lnm_t, n, box)
        lnl.backward()
        return lnl.item()

    value = fwd()
    both()
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(reps):
        fwd()
    tf, cf = (time.perf_counter() - t0) / reps, (time.process_time() - c0) / reps
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(reps):
        both()
    tb, cb = (time.perf_counter() - t0) / reps, (time.process_time() - c0) / reps
    print("bench,n_grid,threads,repeat,fwd_s,fwd_grad_s,grad_over_fwd,lnL,cpu_fwd_s,cpu_fwd_grad_s")
    print(f"torch,{n},{opts['-threads']},{reps},{tf:.5g},{tb:.5g},{tb / tf:.3f},{value:.17g},"
          f"{cf:.5g},{cb:.5g}")


if __name__ == "__main__":
    main(sys.argv)
